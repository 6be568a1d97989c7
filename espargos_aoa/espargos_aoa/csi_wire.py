"""CsiArray in its serialized (CDR) form, written from and read into numpy arrays without building
an rclpy message object.

Why: at thousands of frames per second, filling a ``CsiArray`` field by field (each setter checks
its value in Python) and converting it to C on publish costs more than decoding the frame; the
same holds in reverse for a subscriber. ``Publisher.publish`` takes serialized bytes and a
subscription created with ``raw=True`` hands them over, so the nodes on the hot path write and
read the bytes themselves.

The layout is plain CDR as the ROS 2 middlewares (Fast DDS, Cyclone DDS) serialize ROS messages:
a 4-byte encapsulation header (``00 01 00 00``, little-endian CDR), then the fields in order,
each aligned to its own size counted from the end of the header; strings are a uint32 length
(including the NUL) and the bytes with their NUL; sequences a uint32 count and the elements.
Padding bytes carry no meaning (Fast DDS leaves them as it finds them; here they are zero).
``SCHEMA`` lists CsiArray's fields in the order of CsiArray.msg. Tests check it against the
generated message and against rclpy's serializer in both directions, and the board driver checks
one frame against the middleware in use before it relies on it.

The strings and sequences of a stream keep their sizes (one board: one format, eight antennas),
so a ``Layout`` compiles the whole message into one ``struct`` format per set of sizes.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

ENCAPSULATION = b"\x00\x01\x00\x00"
"""CDR, little endian, no options."""

SCHEMA: tuple[tuple[str, str], ...] = (
    ("header.stamp.sec", "i4"), ("header.stamp.nanosec", "u4"), ("header.frame_id", "string"),
    ("source_id", "string"), ("source_sequence", "u4"), ("transmitter_mac", "u1[6]"), ("receiver_mac", "u1[6]"),
    ("sequence_number", "u2"), ("fragment_number", "u1"), ("retry", "b1"), ("is_reference", "b1"),
    ("channel", "u1"), ("secondary_channel", "i1"), ("format", "u1"),
    ("center_frequency_hz", "f8"), ("subcarrier_spacing_hz", "f8"),
    ("subcarrier_indices", "i2[]"), ("interpolated_bins", "u2[]"), ("rows", "u2"), ("cols", "u2"),
    ("csi", "f4[]"), ("antenna_mask", "b1[]"), ("rssi_dbm", "f4[]"), ("noise_floor_dbm", "f4[]"),
    ("rx_gain_db", "f4[]"), ("fft_gain_db", "f4[]"), ("cfo_hz", "f4[]"), ("sensor_timestamps", "f8[]"),
    ("calibrated", "b1"),
)
"""(field, kind) in message order; kind is a numpy type code, ``[n]`` a fixed array, ``[]`` a
sequence, ``string`` a string. ``header.*`` flattens std_msgs/Header (builtin_interfaces/Time stamp)."""

_U32 = struct.Struct("<I")
_CODES = {"i4": "i", "u4": "I", "u2": "H", "u1": "B", "b1": "?", "i1": "b", "f8": "d", "i2": "h", "f4": "f"}
_SIZES = {kind: struct.calcsize(code) for kind, code in _CODES.items()}
_DTYPES = {kind: np.dtype(bool if kind == "b1" else "<" + kind) for kind in ("i2", "u2", "f4", "f8", "b1")}
VARIABLE = tuple(name for name, kind in SCHEMA if kind == "string" or kind.endswith("[]"))
"""The fields whose size varies: strings (bytes, NUL included) and sequences (elements)."""


class Layout:
    """The byte layout of every CsiArray whose strings and sequences have the given sizes: one
    ``struct`` format for the whole message, so that writing or reading one is a single call.

    Arguments of ``pack`` / results of ``unpack``, per field in SCHEMA order: a scalar is one value;
    a string is (size with NUL, bytes without NUL); a sequence is (count, bytes); a fixed array, bytes.
    """

    def __init__(self, sizes: tuple[int, ...]) -> None:
        """``sizes``: for each field of VARIABLE, its size (strings: bytes with NUL; sequences: elements)."""
        self.sizes = sizes
        variable = dict(zip(VARIABLE, sizes))
        fmt, pos = ["<"], 0
        self.count_at: list[int] = []
        """Index in the unpacked tuple of each VARIABLE field's size."""
        self.value_at: dict[str, int] = {}
        """Index in the unpacked tuple of each field's value (the bytes of a string or sequence)."""
        slots = 0

        def align(n: int) -> None:
            nonlocal pos
            pad = -pos % n
            if pad:
                fmt.append(f"{pad}x")
                pos += pad

        for name, kind in SCHEMA:
            if kind == "string" or kind.endswith("[]"):
                align(4)
                fmt.append("I")
                pos += 4
                self.count_at.append(slots)
                self.value_at[name] = slots + 1
                slots += 2
                if kind == "string":
                    nbytes = variable[name]
                else:
                    itemsize = _SIZES[kind[:-2]]
                    nbytes = variable[name] * itemsize
                    if nbytes:
                        align(itemsize)
                fmt.append(f"{nbytes}s")
                pos += nbytes
            elif kind.endswith("]"):
                nbytes = int(kind[kind.index("[") + 1:-1])
                fmt.append(f"{nbytes}s")
                pos += nbytes
                self.value_at[name] = slots
                slots += 1
            else:
                align(_SIZES[kind])
                fmt.append(_CODES[kind])
                pos += _SIZES[kind]
                self.value_at[name] = slots
                slots += 1
        self.struct = struct.Struct("".join(fmt))
        self.size = len(ENCAPSULATION) + self.struct.size

        self._converters = tuple((name.removeprefix("header."), self.value_at[name], _converter(kind))
                                 for name, kind in SCHEMA)

    def fields(self, values: tuple) -> dict[str, object]:
        """Field name (``header.`` dropped: ``stamp.sec``, ``stamp.nanosec``, ``frame_id``) -> value:
        strings as str, sequences as read-only numpy arrays, fixed arrays as bytes."""
        return {name: convert(values[i]) for name, i, convert in self._converters}

    def pack(self, *values) -> bytes:
        return ENCAPSULATION + self.struct.pack(*values)

    def unpack(self, data: bytes | memoryview) -> tuple:
        """The values (see the class) of a message of this layout; ValueError if it has another."""
        if len(data) < self.size:
            raise ValueError(f"{len(data)} bytes, layout needs {self.size}")
        values = self.struct.unpack_from(data, len(ENCAPSULATION))
        if tuple(values[i] for i in self.count_at) != self.sizes:
            raise ValueError("sizes differ from the layout's")
        return values


def _converter(kind: str) -> Callable[[object], object]:
    if kind == "string":
        return lambda raw: raw[:-1].decode(errors="replace")
    if kind.endswith("[]"):
        dtype = _DTYPES[kind[:-2]]
        return lambda raw: np.frombuffer(raw, dtype)
    return lambda value: value


def scan_sizes(data: bytes | memoryview) -> tuple[int, ...]:
    """The sizes (see Layout) of the strings and sequences of a serialized CsiArray, read by walking
    it field by field; ValueError if it is not little-endian CDR or a size runs past the end."""
    if bytes(data[:2]) != ENCAPSULATION[:2]:
        raise ValueError(f"not little-endian CDR (encapsulation {bytes(data[:4]).hex()})")
    body = memoryview(data)[len(ENCAPSULATION):]
    pos, sizes = 0, []
    for name, kind in SCHEMA:
        if kind == "string" or kind.endswith("[]"):
            pos += -pos % 4
            if pos + 4 > len(body):
                raise ValueError(f"message ends before field {name}")
            (count,) = _U32.unpack_from(body, pos)
            pos += 4
            nbytes = count if kind == "string" else count * _SIZES[kind[:-2]]
            if kind != "string" and count:
                pos += -pos % _SIZES[kind[:-2]]
            if (kind == "string" and count == 0) or pos + nbytes > len(body):
                raise ValueError(f"field {name} of {count} {'bytes' if kind == 'string' else 'elements'} "
                                 "runs past the message end")
            sizes.append(count)
            pos += nbytes
        elif kind.endswith("]"):
            pos += int(kind[kind.index("[") + 1:-1])
        else:
            pos += -pos % _SIZES[kind] + _SIZES[kind]
    if pos > len(body):
        raise ValueError("message ends inside its last fields")
    return tuple(sizes)


class LayoutCache:
    """Layouts by sizes, at most ``limit`` (a stream has a handful: one per format and array; a
    swarm stream one per node-name length)."""

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._layouts: dict[tuple[int, ...], Layout] = {}
        self._by_length: dict[int, Layout] = {}
        """The layout that last read a message of each byte length: tried first."""

    def get(self, sizes: tuple[int, ...]) -> Layout:
        layout = self._layouts.get(sizes)
        if layout is None:
            if len(self._layouts) >= self.limit:
                self._layouts.pop(next(iter(self._layouts)))
            layout = self._layouts[sizes] = Layout(sizes)
        return layout

    def unpack(self, data: bytes | memoryview) -> tuple[Layout, tuple]:
        """The layout and values of a serialized CsiArray (the layout that last read a message of
        this length is tried first); ValueError if the bytes are no CsiArray."""
        known = self._by_length.get(len(data))
        if known is not None:
            try:
                return known, known.unpack(data)
            except ValueError:
                pass
        layout = self.get(scan_sizes(data))
        values = layout.unpack(data)
        if len(self._by_length) >= 4 * self.limit:
            self._by_length.pop(next(iter(self._by_length)))
        self._by_length[len(data)] = layout
        return layout, values
