"""CsiArray bytes read without rclpy (csi_wire, CsiArrayReader) against rclpy's own serializer."""
from __future__ import annotations

import array

import numpy as np
import pytest
from rclpy.serialization import serialize_message

from espargos_aoa.common_messages import CsiArrayReader
from espargos_aoa.csi_wire import SCHEMA, scan_sizes
from espargos_msgs.msg import CsiArray

ROS_TYPES = {"i4": "int32", "u4": "uint32", "u2": "uint16", "u1": "uint8", "b1": "boolean", "i1": "int8", "f8": "double",
             "string": "string", "u1[6]": "uint8[6]", "i2[]": "sequence<int16>", "u2[]": "sequence<uint16>",
             "f4[]": "sequence<float>", "b1[]": "sequence<boolean>", "f8[]": "sequence<double>"}


def test_the_schema_is_csiarray_in_message_order():
    fields = list(CsiArray.get_fields_and_field_types().items())
    assert fields[0] == ("header", "std_msgs/Header")
    flat = [("header.stamp.sec", "int32"), ("header.stamp.nanosec", "uint32"), ("header.frame_id", "string")] + fields[1:]
    assert [(name, ROS_TYPES[kind]) for name, kind in SCHEMA] == flat


def message(rows: int, cols: int, bins: int, rng: np.random.Generator, frame_id: str = "espargos_array",
            source_id: str = "espargos", gains: bool = True) -> CsiArray:
    n = rows * cols
    msg = CsiArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9))
    msg.header.frame_id = frame_id
    msg.source_id = source_id
    msg.source_sequence = int(rng.integers(0, 2**32))
    msg.transmitter_mac = [int(v) for v in rng.integers(0, 256, 6)]
    msg.receiver_mac = [255] * 6
    msg.sequence_number, msg.fragment_number, msg.retry, msg.is_reference = int(rng.integers(0, 4096)), 3, True, False
    msg.channel, msg.secondary_channel, msg.format = 13, -1, 2
    msg.center_frequency_hz, msg.subcarrier_spacing_hz = 2.462e9 - 10e6, 312500.0
    msg.subcarrier_indices = array.array("h", range(-(bins // 2), bins - bins // 2))
    msg.interpolated_bins = array.array("H", [bins // 2] if bins > 2 else [])
    msg.rows, msg.cols = rows, cols
    csi = rng.normal(size=2 * n * bins).astype(np.float32)
    csi[:2 * bins] = np.nan                                  # an antenna that did not report
    msg.csi = array.array("f", csi.tobytes())
    msg.antenna_mask = [bool(v) for v in rng.random(n) < 0.7]
    for name in ("rssi_dbm", "noise_floor_dbm", "rx_gain_db", "fft_gain_db", "cfo_hz"):
        setattr(msg, name, array.array("f", rng.normal(size=n if gains else 0).astype(np.float32).tobytes()))
    msg.sensor_timestamps = array.array("d", rng.uniform(0, 1e4, n).tobytes())
    msg.calibrated = True
    return msg


def same(view, msg: CsiArray) -> None:
    assert (view.header.stamp.sec, view.header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert view.header.frame_id == msg.header.frame_id
    for name, kind in SCHEMA:
        if name.startswith("header."):
            continue
        got, want = getattr(view, name), getattr(msg, name)
        if kind.endswith("[]"):
            assert np.asarray(got).tobytes() == np.asarray(want, got.dtype).tobytes(), name
        elif kind == "u1[6]":
            assert got == bytes(want), name
        else:
            assert got == want, name


@pytest.mark.parametrize(("rows", "cols", "bins", "frame_id", "source_id", "gains"), [
    (2, 4, 117, "espargos_array", "espargos", True),        # one board, HT40
    (8, 4, 117, "array", "combined", True),                 # four boards as one array
    (1, 1, 53, "swarm", "node-a", False),                   # a swarm node, gains unknown (empty sequences)
    (2, 4, 245, "", "", True),                              # HE20, empty strings
    (1, 3, 1, "x" * 301, "é", True),                        # odd sizes: every alignment case, a non-ASCII id
])
def test_the_reader_reads_what_rclpy_serializes(rows, cols, bins, frame_id, source_id, gains):
    rng = np.random.default_rng(rows * 100 + bins)
    read = CsiArrayReader()
    for _ in range(3):                                      # the cached layout is reused for the later ones
        msg = message(rows, cols, bins, rng, frame_id, source_id, gains)
        same(read(serialize_message(msg)), msg)


def test_a_reader_switches_layouts_between_messages():
    rng = np.random.default_rng(5)
    read = CsiArrayReader()
    for rows, bins in [(2, 117), (2, 53), (8, 117), (2, 117), (1, 245)]:
        msg = message(rows, 4, bins, rng)
        same(read(serialize_message(msg)), msg)


def test_bytes_that_are_no_csiarray_raise_valueerror_only():
    """Truncations, flipped bytes and garbage: the reader returns a view or raises ValueError
    (counted as bad_csi_message by aoa_node), never another exception, never a huge allocation."""
    rng = np.random.default_rng(9)
    good = serialize_message(message(2, 4, 117, rng))
    read = CsiArrayReader()
    for cut in range(0, len(good), 7):
        with pytest.raises(ValueError):
            read(good[:cut])
    with pytest.raises(ValueError, match="little-endian"):
        read(b"\x00\x00" + good[2:])                         # big-endian CDR
    outcomes = {"ok": 0, "ValueError": 0}
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        try:
            read(bytes(data))
            outcomes["ok"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 0 and outcomes["ok"] > 0
    huge = bytearray(good)
    huge[4 + 8:4 + 12] = (0xFFFFFFF0).to_bytes(4, "little")  # frame_id length
    with pytest.raises(ValueError, match="runs past"):
        scan_sizes(bytes(huge))


def test_padding_after_the_last_field_is_ignored():
    """Messages from DDS can carry up to 3 bytes of padding after the last field (seen from Fast
    DDS): the cached layout is still used for them, and they read as without it."""
    rng = np.random.default_rng(3)
    read = CsiArrayReader()
    for pad in (0, 1, 3, 0, 3):
        msg = message(2, 4, 117, rng)
        same(read(serialize_message(msg) + bytes(pad)), msg)
