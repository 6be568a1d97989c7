"""Encode simulated CSI into byte-exact generation-3 sensor packets (the inverse of the decoder)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..protocol.constants import CSI_TYPE_HEADER, HARDWARE_TIMESTAMP_LAG_NS, RXSTART_CYCLE_NS, SENSOR_PACKET_MAGIC
from ..wifi import GRIDS, CsiFormat, baseband_offsets_hz, secondary_to_code

_BB_FORMAT = {CsiFormat.LLTF: 1, CsiFormat.HT20: 2, CsiFormat.HT40: 2, CsiFormat.HE20: 4}
_SIG_MODE = {CsiFormat.LLTF: 0, CsiFormat.HT20: 1, CsiFormat.HT40: 1, CsiFormat.HE20: 2}
ACQUIRE_LLTF_8BIT = 0x2
TERMINATOR = struct.pack("<IHBB", 0, 0, 0, 0)


def quantise_timestamp(t_ns: float) -> tuple[int, int, float]:
    """Sensor time (ns) -> (global_timestamp_us, rxstart_time_cyc, the time the decoder will read)."""
    total = t_ns + HARDWARE_TIMESTAMP_LAG_NS
    us = int(total // 1000)
    cyc = min(int(round((total - us * 1000) / RXSTART_CYCLE_NS)), 127)
    return us, cyc, us * 1000.0 - HARDWARE_TIMESTAMP_LAG_NS + cyc * RXSTART_CYCLE_NS


def apply_timestamp_slope(z: np.ndarray, fmt: CsiFormat, secondary: int, t_ns: np.ndarray) -> np.ndarray:
    """Multiply each antenna's CSI by exp(+j 2 pi T_i f_bb), which the driver removes as STO."""
    grid = GRIDS[fmt]
    period = 1e9 / grid.spacing_hz
    k_lo = baseband_offsets_hz(fmt, secondary) / grid.spacing_hz
    cycles = np.mod(t_ns, period) / period
    return z * np.exp(2j * np.pi * np.outer(cycles, k_lo))


def csi_to_bytes(z: np.ndarray, fmt: CsiFormat) -> list[bytes]:
    """Library-domain CSI ``(n, bins)`` (already scaled to counts) -> raw int8 (imag, real) buffers."""
    z = np.array(z, np.complex128)
    if fmt == CsiFormat.HT40:
        z[:, :57] *= -1j
        z[:, 57:60] = 0
    elif fmt == CsiFormat.HE20:
        z[:, 121:124] = 0
    pairs = np.empty((z.shape[0], z.shape[1], 2), np.int8)
    pairs[..., 0] = np.clip(np.round(-z.imag), -128, 127)
    pairs[..., 1] = np.clip(np.round(-z.real), -128, 127)
    return [row.tobytes() for row in pairs]


def rx_ctrl_v3(*, fmt: CsiFormat, channel: int, secondary: int, csi_len: int, rssi_dbm: int,
               noise_floor_dbm: int, rxstart_cyc: int, timestamp_us: int, rx_gain_db: int = 20,
               fft_gain_q: int = 0, mcs: int = 7) -> bytes:
    """The 64-byte PHY-v3 rx_ctrl with the fields the driver reads."""
    w = [0] * 16
    w[0] = (rssi_dbm & 0xFF) | (_SIG_MODE[fmt] << 14) | ((0 if fmt != CsiFormat.LLTF else 11) << 8)
    w[1] = (mcs & 0x7F) | (0x80 if fmt == CsiFormat.HT40 else 0)
    w[2] = (rxstart_cyc & 0x7F) << 24
    w[3] = timestamp_us & 0xFFFFFFFF
    w[5] = (noise_floor_dbm & 0xFF) | ((fft_gain_q & 0xFF) << 16) | ((rx_gain_db & 0xFF) << 24)
    w[7] = channel | (secondary_to_code(secondary) << 8)
    w[9] = (_BB_FORMAT[fmt] << 12) | (csi_len << 16) | (1 << 26)
    return struct.pack("<16I", *w)


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("<BH", kind, len(value)) + value


def csi_message(*, src: bytes, dst: bytes, seq: int, is_calib: bool, global_us: int, rf_switch: int,
                rx_ctrl: bytes, csi: bytes, acquire_flags: int = 0, extra_tlvs: bytes = b"") -> bytes:
    """One CSI message: type header, FRAME/TIMING/ACQUIRE meta, rx_ctrl, CSI, CRC-32 last."""
    body = struct.pack("<I", CSI_TYPE_HEADER)
    body += _tlv(2, src + dst + struct.pack("<HHH", (seq & 0xFFF) << 4, 1 if is_calib else 0, 0x0008))
    body += _tlv(3, struct.pack("<Q", global_us))
    body += _tlv(4, struct.pack("<HBB", acquire_flags, 0, rf_switch))
    body += _tlv(5, rx_ctrl)
    body += _tlv(6, csi)
    body += extra_tlvs
    return body + _tlv(255, struct.pack("<I", zlib.crc32(body)))


def sensor_packets(message: bytes, uid: int, fragment_size: int = 0) -> list[bytes]:
    """Wrap a message into sensor packets, one fragment per packet when ``fragment_size`` > 0."""
    magic = struct.pack("<I", SENSOR_PACKET_MAGIC)
    if fragment_size <= 0 or len(message) <= fragment_size:
        return [magic + struct.pack("<IHBB", uid, len(message), 0, 1) + message + TERMINATOR]
    chunks = [message[i:i + fragment_size] for i in range(0, len(message), fragment_size)]
    return [magic + struct.pack("<IHBB", uid, len(c), i, len(chunks)) + c + TERMINATOR
            for i, c in enumerate(chunks)]


_TIMING_AT = 4 + 8 + 4 + 3 + 18
"""Offset of the TIMING_META TLV in a one-fragment sensor packet of ``csi_message``."""
_RX_TIMESTAMP_AT = _TIMING_AT + 3 + 8 + 3 + 4 + 3 + 12
"""Offset of rx_ctrl word 3 (32-bit µs timestamp) in such a packet."""
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def can_restamp(packet: bytes) -> bool:
    """Whether ``packet`` is one whole ``csi_message`` in one fragment, which ``restamp`` can shift."""
    return (len(packet) > _RX_TIMESTAMP_AT + 4 and packet[10] == 0 and packet[11] == 1
            and packet[_TIMING_AT] == 3 and packet[_TIMING_AT + 1:_TIMING_AT + 3] == b"\x08\x00"
            and packet[_TIMING_AT + 11] == 4 and packet[_TIMING_AT + 18] == 5)


def restamp(packet: bytes, shift_us: int) -> bytes:
    """A one-fragment CSI packet (``can_restamp``) with its sensor time moved by ``shift_us`` (a
    multiple of 64 µs keeps the STO phase of every format) and its CRC recomputed."""
    out = bytearray(packet)
    _U64.pack_into(out, _TIMING_AT + 3, _U64.unpack_from(out, _TIMING_AT + 3)[0] + shift_us)
    _U32.pack_into(out, _RX_TIMESTAMP_AT, (_U32.unpack_from(out, _RX_TIMESTAMP_AT)[0] + shift_us) & 0xFFFFFFFF)
    end = len(out) - len(TERMINATOR)
    _U32.pack_into(out, end - 4, zlib.crc32(memoryview(out)[12:end - 7]))
    return bytes(out)
