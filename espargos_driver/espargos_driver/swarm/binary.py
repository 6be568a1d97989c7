"""RuView ADR-018 binary UDP frames (magic 0xC5110001), see shared/spec/esp32-node-formats.md section 2."""
from __future__ import annotations

import struct

import numpy as np

from .report import NodeReport, ReportError

CSI_MAGIC = 0xC5110001
CSI_V2_MAGIC = 0xC5110008
"""Proposed v2: the v1 header, then the transmitter MAC (6 bytes), then the CSI."""
CSI_V3_MAGIC = 0xC511000A
"""Proposed v3: v2, then the 802.11 sequence control (u16), then the CSI."""
EXTRA_HEADER = {CSI_MAGIC: 0, CSI_V2_MAGIC: 6, CSI_V3_MAGIC: 8}
HEADER = struct.Struct("<IBBHIIbbBB")
"""magic, node_id, n_antennas, n_subcarriers, freq_mhz, sequence, rssi, noise_floor, ppdu_type, flags."""
FLAG_40MHZ, FLAG_STBC, FLAG_FIRST_WORD_INVALID = 0x01, 0x04, 0x20
KNOWN_OTHER_MAGICS = {
    0xC511A110: "sync", 0xC5110002: "vitals", 0xC5110003: "features", 0xC5110004: "fused_vitals",
    0xC5110005: "compressed_csi", 0xC5110006: "feature_state", 0xC5110007: "ruview_0007",
    0xC5118100: "mesh_envelope", 0xC5111001: "node_diagnostics",
}
"""Other packets that share the port: recognised, counted under ``other_<name>``, never parsed as CSI."""


def parse_datagram(data: bytes) -> NodeReport:
    """One datagram -> NodeReport; ReportError (reason: wrong_magic, other_<name>, truncated,
    odd_length, bad_antennas) for anything else."""
    if len(data) < 4:
        raise ReportError("truncated", f"{len(data)}-byte datagram, shorter than a magic")
    magic = struct.unpack_from("<I", data)[0]
    if magic not in EXTRA_HEADER:
        name = KNOWN_OTHER_MAGICS.get(magic)
        if name is not None:
            raise ReportError(f"other_{name}", f"{name} packet (magic {magic:#010x}), not CSI")
        raise ReportError("wrong_magic", f"unknown magic {magic:#010x}")
    head = HEADER.size + EXTRA_HEADER[magic]
    if len(data) < head:
        raise ReportError("truncated", f"{len(data)}-byte CSI datagram, shorter than its {head}-byte header")
    _, node_id, antennas, subcarriers, freq_mhz, seq, rssi, noise, _ppdu, flags = HEADER.unpack_from(data)
    mac = data[HEADER.size:HEADER.size + 6] if magic != CSI_MAGIC else None
    if antennas != 1:
        raise ReportError("bad_antennas", f"node {node_id}: {antennas} antennas per frame, only 1 is supported")
    payload = 2 * antennas * subcarriers
    extra = len(data) - head - payload
    if extra < 0:
        raise ReportError("truncated", f"node {node_id}: header says {payload} CSI bytes, datagram holds "
                                       f"{len(data) - head}")
    if extra not in (0, 4):
        kind = "odd_length" if extra % 2 else "bad_length"
        raise ReportError(kind, f"node {node_id}: {extra} bytes after the {payload}-byte CSI "
                                f"(0, or 4 for a timestamp, expected)")
    values = np.frombuffer(data, np.int8, payload, head).astype(np.int16)
    sensor_us = struct.unpack_from("<I", data, head + payload)[0] if extra == 4 else None
    return NodeReport(values=values, declared_len=payload, node_id=node_id, transmitter_mac=mac, sequence=seq,
                      rssi_dbm=float(rssi),
                      noise_floor_dbm=float(noise), freq_mhz=freq_mhz or None, bandwidth_40=bool(flags & FLAG_40MHZ),
                      stbc=bool(flags & FLAG_STBC), first_word_invalid=bool(flags & FLAG_FIRST_WORD_INVALID),
                      sensor_time_us=sensor_us)


def build_datagram(node_id: int, sequence: int, freq_mhz: int, rssi_dbm: int, noise_floor_dbm: int,
                   values: np.ndarray, flags: int = 0, sensor_time_us: int | None = None,
                   transmitter_mac: bytes | None = None) -> bytes:
    """The inverse of :func:`parse_datagram` (the swarm simulator's encoder): v1, or v2 with a
    transmitter MAC."""
    raw = np.asarray(values, np.int8).tobytes()
    if len(raw) % 2:
        raise ValueError("CSI bytes come in (imaginary, real) pairs")
    magic = CSI_MAGIC if transmitter_mac is None else CSI_V2_MAGIC
    head = HEADER.pack(magic, node_id, 1, len(raw) // 2, freq_mhz, sequence & 0xFFFFFFFF, rssi_dbm,
                       noise_floor_dbm, 0, flags) + (transmitter_mac or b"")
    tail = struct.pack("<I", sensor_time_us & 0xFFFFFFFF) if sensor_time_us is not None else b""
    return head + raw + tail
