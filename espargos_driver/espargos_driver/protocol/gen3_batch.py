"""Generation-3 sensor packets decoded many at a time.

The usual stream is datagrams of one length, each carrying one whole CSI message laid out like
the others (one fragment; the same TLVs in the same order). A run of them is checked and read
with numpy in one pass; only the CRC, the rx_ctrl range check and the report objects are per
datagram. Every datagram this does not accept (another layout, a fragment, a wrong magic, CRC
or channel, anything) is left to the one-at-a-time path (``split_sensor_packet``,
``parse_csi_message``), which gives the same report or names what is wrong: the two paths are
compared on valid and corrupted streams by the tests.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import fields

import numpy as np

from .constants import CSI_TYPE_HEADER, SENSOR_PACKET_MAGIC, g3_antenna_row_col
from .errors import ProtocolError
from .gen3 import (FLAG_FIRST_WORD_INVALID, FLAG_IS_CALIB, FRAME_CTRL_RETRY, TLV_CRC32, TLV_CSI_RAW,
                   LAYOUT_FIELDS, MessageLayout, split_sensor_packet)
from .report import RxControl, SensorReport, check_rx_ctrl, rx_ctrl_v3_from_words, sensor_time_ns

MIN_BATCH = 16
"""Fewer datagrams of one length than this are left to the one-at-a-time path: numpy's fixed cost
per call would exceed what it saves (HT40 frames through BoardReceiver.feed_batch, µs per frame
together / one at a time: 8 datagrams 154 / 120, 16: 100 / 102, 32: 72 / 93, 64: 58 / 88)."""
MAX_TEMPLATES = 16
"""Datagram lengths whose template is kept."""
MESSAGE_AT = 12
"""Byte offset of the message in a one-fragment sensor packet: magic (4) and fragment header (8)."""
TERMINATOR_BYTES = 8
_RX_FIELDS = [f.name for f in fields(RxControl)]
_NUMPY_TYPES = {"B": "u1", "H": "<u2", "I": "<u4", "Q": "<u8"}
"""numpy's little-endian type of each numeric struct format code in LAYOUT_FIELDS."""


def _numpy_format(fmt: str) -> str | tuple[str, tuple[int]]:
    """The numpy dtype of one struct format item: "6s" -> "V6" (raw bytes: "S6" would strip trailing
    NULs), "H" -> "<u2", "16I" -> ("<u4", (16,))."""
    count, code = re.fullmatch(r"(\d*)(\D)", fmt).groups()
    if code == "s":
        return f"V{count or 1}"
    return (_NUMPY_TYPES[code], (int(count),)) if count else _NUMPY_TYPES[code]


class PacketTemplate:
    """Byte positions of every field in one-fragment sensor packets of one length and message layout."""

    def __init__(self, length: int, layout: MessageLayout) -> None:
        self.length = length
        names, formats, offsets = ["magic", "uid", "size", "index", "total", "type"], ["<u4", "<u4", "<u2", "u1", "u1", "<u4"], \
            [0, 4, 8, 10, 11, MESSAGE_AT]
        structure = {0: SENSOR_PACKET_MAGIC.to_bytes(4, "little"),
                     8: (length - MESSAGE_AT - TERMINATOR_BYTES).to_bytes(2, "little") + b"\x00\x01",
                     MESSAGE_AT: CSI_TYPE_HEADER.to_bytes(4, "little")}
        self.value_at: dict[int, tuple[int, int]] = {}
        """Each TLV's value: (byte offset in the packet, length)."""
        pos = MESSAGE_AT + 4
        for kind, size in layout.tlvs:
            structure[pos] = bytes([kind]) + size.to_bytes(2, "little")
            self.value_at[kind] = (pos + 3, size)
            at = pos + 3
            for name, fmt in (("crc", "I"),) if kind == TLV_CRC32 else LAYOUT_FIELDS.get(kind, {}).get(size, ()):
                names.append(name)
                formats.append(_numpy_format(fmt))
                offsets.append(at)
                at += struct.calcsize("<" + fmt)
            pos += 3 + size
        names.append("terminator")
        formats.append("<u4")
        offsets.append(pos)
        self.crc_end = self.value_at[TLV_CRC32][0] - 3
        """The CRC covers the packet's bytes from MESSAGE_AT up to here (its own TLV excluded)."""
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": length})
        self._columns = np.array([at + i for at, expected in structure.items() for i in range(len(expected))])
        self._expected = np.frombuffer(b"".join(structure.values()), np.uint8)

    @classmethod
    def learn(cls, packet: bytes) -> PacketTemplate | None:
        """The template of ``packet``, or None if it is not one whole, readable CSI message."""
        try:
            fragments = split_sensor_packet(packet)
        except ProtocolError:
            return None
        if len(fragments) != 1 or fragments[0].total != 1 or \
                len(packet) != MESSAGE_AT + len(fragments[0].payload) + TERMINATOR_BYTES:
            return None
        layout = MessageLayout.learn(fragments[0].payload)
        return None if layout is None else cls(len(packet), layout)

    def decode(self, packets: list[bytes]) -> list[SensorReport | None]:
        """The report of each packet (all of this template's length), None where the packet is not
        laid out as expected or fails a check."""
        out: list[SensorReport | None] = [None] * len(packets)
        buffer = b"".join(packets)
        raw = np.frombuffer(buffer, np.uint8).reshape(len(packets), self.length)
        records = np.frombuffer(buffer, self.dtype)
        accepted = (raw[:, self._columns] == self._expected).all(axis=1) & (records["uid"] != 0) & (records["terminator"] == 0)
        rows = np.flatnonzero(accepted)
        if not len(rows):
            return out
        r = records[rows]
        rx = rx_ctrl_v3_from_words(list(r["rx"].astype(np.int64).T))
        names = r.dtype.names
        global_us = r["global_us"] if "global_us" in names else rx.timestamp_us32
        timestamps = sensor_time_ns(global_us, rx.rxstart_time_cyc)
        frame_ctrl = r["frame_ctrl"] if "frame_ctrl" in names else np.zeros(len(rows), np.uint16)
        acquire = r["acquire"] if "acquire" in names else np.zeros(len(rows), np.uint16)
        rf_switch = r["rf_switch"] if "rf_switch" in names else np.full(len(rows), 255, np.uint8)
        antenna = r["uid"] >> 29
        rows_on_board, cols_on_board = g3_antenna_row_col(antenna)
        csi_at, csi_size = self.value_at.get(TLV_CSI_RAW, (0, 0))
        csi_end = csi_at + np.minimum(rx.csi_len, csi_size)
        message_end = self.length - TERMINATOR_BYTES
        columns = zip(rows.tolist(), zip(*(getattr(rx, name).tolist() for name in _RX_FIELDS)), r["crc"].tolist(),
                      antenna.tolist(), rows_on_board.tolist(), cols_on_board.tolist(), r["src_mac"].tolist(),
                      r["dst_mac"].tolist(), r["seq_ctrl"].tolist(),
                      ((frame_ctrl & FRAME_CTRL_RETRY) != 0).tolist(), ((r["flags"] & FLAG_IS_CALIB) != 0).tolist(),
                      ((r["flags"] & FLAG_FIRST_WORD_INVALID) != 0).tolist(), timestamps.tolist(), acquire.tolist(),
                      rf_switch.tolist(), csi_end.tolist())
        for k, rx_values, crc, antenna_id, row, col, src, dst, seq_ctrl, retry, is_calib, first_invalid, t_ns, acq, rf, \
                end in columns:
            packet = packets[k]
            if zlib.crc32(memoryview(packet)[MESSAGE_AT:self.crc_end]) != crc:
                continue
            rx_control = RxControl(*rx_values)
            try:
                check_rx_ctrl(rx_control)
            except ProtocolError:
                continue
            out[k] = SensorReport(antenna_id, row, col, src, dst,
                                  seq_ctrl, retry, is_calib, first_invalid, rx_control, t_ns, acq, rf,
                                  packet[csi_at:end] if csi_size else b"", 3, packet[MESSAGE_AT:message_end])
        return out


class BatchDecoder:
    """Decodes the datagrams of one turn: runs of at least MIN_BATCH of one length through their
    PacketTemplate (learned from the first such datagram that has one)."""

    def __init__(self) -> None:
        self._templates: dict[int, PacketTemplate] = {}

    def decode(self, packets: list[bytes]) -> list[SensorReport | None]:
        """A report per packet, or None: left to the one-at-a-time path."""
        out: list[SensorReport | None] = [None] * len(packets)
        if len(packets) < MIN_BATCH:
            return out
        by_length: dict[int, list[int]] = {}
        for k, packet in enumerate(packets):
            by_length.setdefault(len(packet), []).append(k)
        for length, rows in by_length.items():
            if len(rows) < MIN_BATCH:
                continue
            template = self._template(length, [packets[k] for k in rows[:3]])
            if template is not None:
                for k, report in zip(rows, template.decode([packets[k] for k in rows])):
                    out[k] = report
        return out

    def _template(self, length: int, candidates: list[bytes]) -> PacketTemplate | None:
        template = self._templates.get(length)
        if template is None:
            template = next((t for t in map(PacketTemplate.learn, candidates) if t is not None), None)
            if template is not None and len(self._templates) < MAX_TEMPLATES:
                self._templates[length] = template
        return template
