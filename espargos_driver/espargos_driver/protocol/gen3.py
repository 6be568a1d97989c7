"""Generation-3 (API 3) ESPARGOS stream: sensor packets, fragment reassembly, TLV CSI messages.

Pure functions and one small stateful reassembler; no I/O. Layouts follow
shared/spec/espargos-protocol.md sections 2.1 and 2.2.
"""
from __future__ import annotations

import operator
import struct
import zlib
from dataclasses import dataclass

from .constants import (CSI_TYPE_HEADER, IGNORE_BYTES_AFTER_CRC, RADAR_TYPE_HEADER,
                        REASSEMBLY_TIMEOUT_S, SENSOR_PACKET_MAGIC, g3_antenna_row_col)
from .errors import ProtocolError
from .report import (RxControl, SensorReport, check_rx_ctrl, parse_rx_ctrl_compact, parse_rx_ctrl_v3, rx_ctrl_v3_from_words,
                     sensor_time_ns)

_U32 = struct.Struct("<I")
_FRAG = struct.Struct("<IHBB")
_TLV = struct.Struct("<BH")
_META = struct.Struct("<6s6sHH")
_U16 = struct.Struct("<H")
_Q = struct.Struct("<Q")
_ACQ = struct.Struct("<HBB")

TLV_FRAME_META = 2
TLV_TIMING_META = 3
TLV_ACQUIRE_META = 4
TLV_RX_CTRL_RAW = 5
TLV_CSI_RAW = 6
TLV_CSI_COMPRESSED = 7
TLV_RX_CTRL_COMPRESSED = 8
TLV_GAIN_TABLE_ENTRY = 9
TLV_CRC32 = 255

MAX_MESSAGE_BYTES = 16 * 1024
"""Largest reassembled message accepted. The largest real CSI message (HE20 with both rx_ctrl
forms and a gain-table entry) is under 1.2 kB; 16 KiB leaves room for TLVs yet unknown. A
message that grows past it is dropped (``oversize_message``)."""
MAX_PENDING_BYTES = 4 * 1024 * 1024
"""Byte budget of all partial messages of one board. At 5,000 frames/s x 8 sensors x ~1 kB a
second of traffic is ~40 MB, but fragments of one message arrive within microseconds, so the
partial ones at any moment are a few kB; 4 MiB holds thousands of stalled messages. Beyond
it the oldest partial message is dropped (``reassembly_overflow``)."""

FLAG_IS_CALIB = 0x1
FLAG_IS_RADAR = 0x2
FLAG_FIRST_WORD_INVALID = 0x4
FRAME_CTRL_RETRY = 1 << 11


@dataclass(slots=True)
class Fragment:
    """One fragment of a sensor message; ``uid`` bits 31..29 are the antenna ID."""

    uid: int
    index: int
    total: int
    payload: bytes


def split_sensor_packet(packet: bytes | memoryview) -> list[Fragment]:
    """Split one sensor packet (UDP datagram / WebSocket message) into its fragments.

    Raises ProtocolError for a wrong magic, a fragment running past the end, a missing
    terminator, fragments of several antennas, or an invalid fragment index.
    """
    if len(packet) < 4 or _U32.unpack_from(packet)[0] != SENSOR_PACKET_MAGIC:
        raise ProtocolError("bad_magic", f"sensor packet of {len(packet)} bytes without 0xDECAFBAD")
    fragments: list[Fragment] = []
    pos = 4
    end = len(packet)
    while True:
        if pos + 8 > end:
            raise ProtocolError("truncated", "sensor packet ends before its terminator")
        uid, size, index, total = _FRAG.unpack_from(packet, pos)
        pos += 8
        if uid == 0:
            break
        if pos + size > end:
            raise ProtocolError("truncated", f"fragment of {size} bytes runs past the packet end")
        if total == 0 or index >= total:
            raise ProtocolError("bad_fragment", f"fragment index {index} of {total}")
        if fragments and (uid >> 29) != (fragments[0].uid >> 29):
            raise ProtocolError("mixed_antennas", "fragments from several antennas in one packet")
        fragments.append(Fragment(uid, index, total, bytes(packet[pos:pos + size])))
        pos += size
    return fragments


class _Partial:
    """Fragments received so far of one message."""

    __slots__ = ("stamp", "total", "parts", "size")

    def __init__(self, stamp: float, total: int) -> None:
        self.stamp, self.total = stamp, total
        self.parts: dict[int, bytes] = {}
        self.size = 0


class Reassembler:
    """Joins message fragments by UID. Partial messages expire after ``timeout_s`` of inactivity.

    Bounded: at most ``max_pending`` partial messages and ``max_bytes`` bytes of fragments
    (oldest dropped first, ``reassembly_overflow``), messages of at most ``MAX_MESSAGE_BYTES``
    (``oversize_message``). ``counters`` also receives ``duplicate_fragment``,
    ``fragment_restart`` and ``incomplete_message``.
    """

    def __init__(self, counters: dict[str, int], timeout_s: float = REASSEMBLY_TIMEOUT_S,
                 max_pending: int = 4096, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self._pending: dict[int, _Partial] = {}
        self._counters = counters
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        self._max_bytes = max_bytes
        self.pending_bytes = 0
        """Bytes held in partial messages now."""

    def add(self, fragment: Fragment, now: float) -> bytes | None:
        """Add a fragment received at ``now`` (s); return the whole message once complete."""
        if fragment.total == 1:
            return fragment.payload
        entry = self._pending.pop(fragment.uid, None)
        if entry is not None and entry.total != fragment.total:
            self._count("fragment_restart")
            self._drop(entry)
            entry = None
        if entry is None:
            entry = _Partial(now, fragment.total)
        entry.stamp = now
        old = entry.parts.get(fragment.index)
        if old is not None:
            self._count("duplicate_fragment")
            if old == fragment.payload:
                self._pending[fragment.uid] = entry
                return None
            entry.size -= len(old)
            self.pending_bytes -= len(old)
        entry.parts[fragment.index] = fragment.payload
        entry.size += len(fragment.payload)
        self.pending_bytes += len(fragment.payload)
        if entry.size > MAX_MESSAGE_BYTES:
            self._count("oversize_message")
            self._drop(entry)
            return None
        if len(entry.parts) == entry.total:
            self._drop(entry)
            return b"".join(entry.parts[i] for i in range(entry.total))
        self._pending[fragment.uid] = entry
        while len(self._pending) > self._max_pending or self.pending_bytes > self._max_bytes:
            self._drop(self._pending.pop(next(iter(self._pending))))
            self._count("reassembly_overflow")
        return None

    def expire(self, now: float) -> None:
        """Drop partial messages idle for longer than the timeout (counted as incomplete)."""
        while self._pending:
            uid, entry = next(iter(self._pending.items()))
            if now - entry.stamp <= self._timeout_s:
                break
            del self._pending[uid]
            self._drop(entry)
            self._count("incomplete_message")

    def _drop(self, entry: _Partial) -> None:
        self.pending_bytes -= entry.size

    def _count(self, reason: str) -> None:
        self._counters[reason] = self._counters.get(reason, 0) + 1


RX_CTRL_PREFERENCE = "raw"
"""With both a raw (TLV 5) and a compact (TLV 8) rx_ctrl in one message, the raw one is used (it
has every field; the compact one is derived from it). The vendor client takes whichever comes
last. Which the firmware sends together is UNCONFIRMED."""


def timing_fallback_us(rx: RxControl) -> int:
    """Sensor time (µs) of a message without TIMING_META (optional in the spec): rx_ctrl's own
    32-bit µs timestamp. That it runs on the same clock as global_timestamp_us is UNCONFIRMED;
    it wraps every 71.6 min, which the per-frame STO removal (phase modulo one symbol) does not
    mind, but published sensor_timestamps then wrap too."""
    return rx.timestamp_us32


def parse_csi_message(message: bytes, antenna_id: int) -> SensorReport | None:
    """Decode one reassembled message of antenna ``antenna_id`` (0..7).

    Returns None for message types the driver ignores (radar TX reports, unknown type
    headers). Raises ProtocolError for malformed TLVs, a missing or wrong CRC, a missing
    rx_ctrl, and compressed CSI (not supported: keep ``compress_csi`` off).

    A message laid out like the previous ones of its length (the usual case) is read by its
    ``MessageLayout`` in one struct call; anything else, and any message that layout does not
    accept, goes through the general TLV walk, which also names what is wrong.
    """
    layout = _layouts.get(len(message))
    if layout is None:
        layout = MessageLayout.learn(message)
        if layout is not None and len(_layouts) < MAX_LAYOUTS:
            _layouts[len(message)] = layout
    if layout is not None:
        report = layout.parse(message, antenna_id)
        if report is not None:
            return report
    return _parse_tlvs(message, antenna_id)


def _parse_tlvs(message: bytes, antenna_id: int) -> SensorReport | None:
    """parse_csi_message by walking the TLVs: any layout, every check."""
    if len(message) < 4:
        raise ProtocolError("truncated", "message shorter than its type header")
    header = _U32.unpack_from(message)[0]
    if header != CSI_TYPE_HEADER:
        if header == RADAR_TYPE_HEADER:
            return None
        raise ProtocolError("unknown_message", f"type header 0x{header:08X}")
    tlvs: dict[int, bytes] = {}
    pos = 4
    end = len(message)
    crc_ok = False
    while pos < end:
        if pos + 3 > end:
            raise ProtocolError("truncated", "TLV header runs past the message end")
        kind, length = _TLV.unpack_from(message, pos)
        value_start = pos + 3
        if value_start + length > end:
            raise ProtocolError("truncated", f"TLV {kind} of {length} bytes runs past the message end")
        if kind == TLV_CRC32:
            if length != 4:
                raise ProtocolError("bad_crc", f"CRC TLV of length {length}")
            stored = _U32.unpack_from(message, value_start)[0]
            if zlib.crc32(memoryview(message)[:pos]) != stored:
                raise ProtocolError("bad_crc", "CRC-32 mismatch")
            crc_ok = True
            if not IGNORE_BYTES_AFTER_CRC and value_start + 4 != end:
                raise ProtocolError("bad_crc", "TLVs after the CRC")
            break
        tlvs[kind] = message[value_start:value_start + length]
        pos = value_start + length
    if not crc_ok:
        raise ProtocolError("missing_crc", "CSI message without CRC TLV")
    if TLV_CSI_COMPRESSED in tlvs and TLV_CSI_RAW not in tlvs:
        raise ProtocolError("compressed_csi", "compressed CSI is not supported; set compress_csi false")
    if TLV_RX_CTRL_RAW in tlvs:                          # both present: the raw one (see RX_CTRL_PREFERENCE)
        raw = tlvs[TLV_RX_CTRL_RAW]
        if len(raw) < 64:
            raise ProtocolError("truncated", f"rx_ctrl TLV of {len(raw)} bytes")
        rx = parse_rx_ctrl_v3(raw)
    elif TLV_RX_CTRL_COMPRESSED in tlvs:
        raw = tlvs[TLV_RX_CTRL_COMPRESSED]
        if len(raw) < 22:
            raise ProtocolError("truncated", f"compact rx_ctrl TLV of {len(raw)} bytes")
        rx = parse_rx_ctrl_compact(raw)
    else:
        raise ProtocolError("missing_rx_ctrl", "CSI message without rx_ctrl TLV")
    check_rx_ctrl(rx)
    meta = tlvs.get(TLV_FRAME_META)
    if meta is None or len(meta) < 16:
        # Optional in the spec (only rx_ctrl and CRC are), but without the transmitter MAC and
        # sequence number a report cannot be grouped with the other antennas' reports of its frame.
        raise ProtocolError("missing_frame_meta", "CSI message without frame metadata (MAC and sequence "
                                                  "number): it cannot be grouped into a frame")
    src, dst, seq_ctrl, flags = _META.unpack_from(meta)
    frame_ctrl = _U16.unpack_from(meta, 16)[0] if len(meta) >= 18 else 0
    timing = tlvs.get(TLV_TIMING_META)
    global_us = _Q.unpack_from(timing)[0] if timing is not None and len(timing) >= 8 else timing_fallback_us(rx)
    acquire_flags, rf_switch = 0, 255
    acquire = tlvs.get(TLV_ACQUIRE_META)
    if acquire is not None and len(acquire) >= 4:
        acquire_flags, _, rf_switch = _ACQ.unpack_from(acquire)
    return _report(message, antenna_id, rx, src, dst, seq_ctrl, flags, frame_ctrl, global_us, acquire_flags, rf_switch,
                   tlvs.get(TLV_CSI_RAW, b""))


def _report(message: bytes, antenna_id: int, rx: RxControl, src: bytes, dst: bytes, seq_ctrl: int, flags: int,
            frame_ctrl: int, global_us: int, acquire_flags: int, rf_switch: int, csi: bytes) -> SensorReport:
    """The SensorReport of a decoded message (both parsing paths end here)."""
    row, col = g3_antenna_row_col(antenna_id)
    return SensorReport(
        antenna_id=antenna_id, row=row, col=col, src_mac=src, dst_mac=dst, seq_ctrl=seq_ctrl,
        retry=bool(frame_ctrl & FRAME_CTRL_RETRY), is_calib=bool(flags & FLAG_IS_CALIB),
        first_word_invalid=bool(flags & FLAG_FIRST_WORD_INVALID), rx=rx,
        timestamp_ns=sensor_time_ns(global_us, rx.rxstart_time_cyc), acquire_flags=acquire_flags,
        rf_switch_state=rf_switch, csi=csi[:min(rx.csi_len, len(csi))], generation=3, raw=message)


LAYOUT_FIELDS: dict[int, dict[int, tuple[tuple[str, str], ...]]] = {
    TLV_FRAME_META: {16: (("src_mac", "6s"), ("dst_mac", "6s"), ("seq_ctrl", "H"), ("flags", "H")),
                     18: (("src_mac", "6s"), ("dst_mac", "6s"), ("seq_ctrl", "H"), ("flags", "H"), ("frame_ctrl", "H"))},
    TLV_TIMING_META: {8: (("global_us", "Q"),)},
    TLV_ACQUIRE_META: {4: (("acquire", "H"), ("reserved", "B"), ("rf_switch", "B"))},
    TLV_RX_CTRL_RAW: {64: (("rx", "16I"),)}}
"""The values of the TLVs that a MessageLayout (and gen3_batch's PacketTemplate) reads, by kind and
length: (name, little-endian struct format) in byte order. CSI_RAW (any length) and the final
CRC are read besides. A message with any other TLV (or length) takes the general path."""
MAX_LAYOUTS = 64
"""Message lengths whose layout is kept (a stream has a few; garbage of many lengths adds none)."""
_layouts: dict[int, MessageLayout] = {}


class MessageLayout:
    """Where every field sits in CSI messages of one length and TLV order: one ``struct`` reads a
    whole message; it is accepted only if its type header, every TLV kind and length, and its
    CRC are the ones expected, and its rx_ctrl passes ``check_rx_ctrl``."""

    __slots__ = ("tlvs", "_struct", "_structure", "_expected", "_crc_at", "_at", "_frame_ctrl")

    def __init__(self, tlvs: list[tuple[int, int]]) -> None:
        """``tlvs``: (kind, length) in message order, ending with the CRC."""
        self.tlvs = tlvs
        fmt, structure, expected = "<I", [0], [CSI_TYPE_HEADER]
        self._at: dict[int, int] = {}
        """Index in the unpacked fields of each TLV's first value."""
        for kind, length in tlvs:
            value = "I" if kind == TLV_CRC32 else f"{length}s" if kind == TLV_CSI_RAW else \
                "".join(fmt for _, fmt in LAYOUT_FIELDS[kind][length])
            items = _item_count(fmt)
            structure += [items, items + 1]
            expected += [kind, length]
            self._at[kind] = items + 2
            fmt += "BH" + value
        self._struct = struct.Struct(fmt)
        self._structure = operator.itemgetter(*structure)
        self._expected = tuple(expected)
        self._crc_at = self._struct.size - 7                       # the CRC covers everything before its TLV
        self._frame_ctrl = dict(tlvs)[TLV_FRAME_META] == 18

    @classmethod
    def learn(cls, message: bytes) -> MessageLayout | None:
        """The layout of ``message``, or None if it is not a CSI message of TLVs this class reads."""
        if len(message) < 4 or _U32.unpack_from(message)[0] != CSI_TYPE_HEADER:
            return None
        tlvs: list[tuple[int, int]] = []
        pos, end = 4, len(message)
        while pos + 3 <= end:
            kind, length = _TLV.unpack_from(message, pos)
            pos += 3 + length
            if pos > end or any(kind == seen for seen, _ in tlvs):
                return None
            tlvs.append((kind, length))
            if kind == TLV_CRC32:
                break
            if kind != TLV_CSI_RAW and length not in LAYOUT_FIELDS.get(kind, {}):
                return None
        kinds = {kind for kind, _ in tlvs}
        if not tlvs or tlvs[-1] != (TLV_CRC32, 4) or pos != end or not {TLV_RX_CTRL_RAW, TLV_FRAME_META} <= kinds:
            return None
        return cls(tlvs)

    def parse(self, message: bytes, antenna_id: int) -> SensorReport | None:
        """The report in ``message``, or None if the message is not laid out as expected or its CRC
        is wrong (the general path then says why). Raises ProtocolError for a bad rx_ctrl."""
        fields = self._struct.unpack_from(message)
        if self._structure(fields) != self._expected or zlib.crc32(memoryview(message)[:self._crc_at]) != fields[-1]:
            return None
        at = self._at
        i = at[TLV_RX_CTRL_RAW]
        rx = check_rx_ctrl(rx_ctrl_v3_from_words(fields[i:i + 16]))
        i = at[TLV_FRAME_META]
        src, dst, seq_ctrl, flags = fields[i:i + 4]
        frame_ctrl = fields[i + 4] if self._frame_ctrl else 0
        i = at.get(TLV_TIMING_META)
        global_us = fields[i] if i is not None else timing_fallback_us(rx)
        i = at.get(TLV_ACQUIRE_META)
        acquire_flags, rf_switch = (fields[i], fields[i + 2]) if i is not None else (0, 255)
        i = at.get(TLV_CSI_RAW)
        return _report(message, antenna_id, rx, src, dst, seq_ctrl, flags, frame_ctrl, global_us, acquire_flags,
                       rf_switch, fields[i] if i is not None else b"")


def _item_count(fmt: str) -> int:
    """How many values ``struct.unpack(fmt, ...)`` returns."""
    return len(struct.unpack(fmt, bytes(struct.calcsize(fmt))))
