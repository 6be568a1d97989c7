"""Raw channel-estimate bytes to complex CSI: on every measured bin the values pyespargos
deserialises; gap and DC bins differ by design (interpolated from their neighbours here and
listed as interpolated, zeros in pyespargos).

All decoders take a batch of equally long raw buffers, shape ``(n, nbytes)`` uint8, and
return complex64 of shape ``(n, bins)`` on the format's grid (``wifi.GRIDS``), with gap
and DC bins interpolated. Complex convention of the int8 formats: each pair is
(imag, real) as the chip writes it, and the library value is ``-j * conj(b0 + j b1)``,
i.e. the chip value rotated by pi; 12-bit L-LTF values are taken as (real, imag) directly.
"""
from __future__ import annotations

import enum
from functools import lru_cache

import numpy as np

from ..wifi import GRIDS, CsiFormat, baseband_offsets_hz, secondary_from_code
from .errors import ProtocolError
from .report import SensorReport, dec_fraction_ns


class Decoding(enum.Enum):
    """How a report's CSI bytes are laid out: value = (name, format, byte length)."""

    LLTF_8BIT = ("lltf-8bit", CsiFormat.LLTF, 106)
    LLTF_12BIT = ("lltf-12bit", CsiFormat.LLTF, 106)
    LLTF_FORCED_12BIT = ("lltf-forced-12bit", CsiFormat.LLTF, 104)
    HT20 = ("ht20", CsiFormat.HT20, 114)
    HT40 = ("ht40", CsiFormat.HT40, 234)
    HE20 = ("he20", CsiFormat.HE20, 490)
    G1_LLTF = ("g1-lltf", CsiFormat.LLTF, 384)
    G1_HT40 = ("g1-ht40", CsiFormat.HT40, 384)

    def __init__(self, label: str, fmt: CsiFormat, nbytes: int) -> None:
        self.format = fmt
        self.nbytes = nbytes


ACQUIRE_FORCED_LLTF = 0x1
ACQUIRE_LLTF_8BIT = 0x2


def report_decoding(report: SensorReport) -> Decoding | None:
    """The widest CSI format a report carries, or None if it carries none (e.g. 802.11b)."""
    if report.generation == 1:
        return Decoding.G1_HT40 if report.rx.bandwidth_40mhz else Decoding.G1_LLTF
    if not report.csi:
        return None
    bb = report.rx.cur_bb_format
    forced = report.acquire_flags & ACQUIRE_FORCED_LLTF
    if report.acquire_flags & ACQUIRE_LLTF_8BIT and (forced or bb == 1):
        return Decoding.LLTF_8BIT
    if forced:
        return Decoding.LLTF_FORCED_12BIT
    if bb == 1:
        return Decoding.LLTF_12BIT
    if bb == 2:
        return Decoding.HT40 if report.rx.bandwidth_40mhz else Decoding.HT20
    if 4 <= bb <= 7 and report.rx.secondary_code == 0 and len(report.csi) >= Decoding.HE20.nbytes:
        return Decoding.HE20
    return None


def _int8_pairs(raw: np.ndarray) -> np.ndarray:
    """(n, 2m) uint8 of (imag, real) int8 pairs -> (n, m) complex64 ``-(re + j im)``."""
    v = raw.view(np.int8).astype(np.float32)
    out = np.empty((raw.shape[0], raw.shape[1] // 2), np.complex64)
    out.real = -v[:, 1::2]
    out.imag = -v[:, 0::2]
    return out


def _int12_words(raw: np.ndarray) -> np.ndarray:
    """(n, 2m) uint8 of u16 LE words holding signed 12-bit values -> (n, m) float32."""
    words = raw.view("<u2").astype(np.int32) & 0xFFF
    return (((words ^ 0x800) - 0x800)).astype(np.float32)


def _interpolate_odd(x: np.ndarray) -> None:
    x[:, 1:-1:2] = (x[:, 0:-2:2] + x[:, 2::2]) / 2


def _fill_linear(x: np.ndarray, first: int, last: int) -> None:
    """Replace bins first..last by a straight line between bins first-1 and last+1."""
    lo, hi = x[:, first - 1:first], x[:, last + 1:last + 2]
    weights = np.arange(1, last - first + 2, dtype=np.float32) / np.float32(last - first + 2)
    x[:, first:last + 1] = lo + (hi - lo) * weights


def _decode_lltf_8bit(raw: np.ndarray) -> np.ndarray:
    x = _int8_pairs(raw)
    x[:, 26] = (x[:, 25] + x[:, 27]) / 2
    return x


def _decode_lltf_12bit(raw: np.ndarray) -> np.ndarray:
    v = _int12_words(raw)
    x = np.zeros((raw.shape[0], 53), np.complex64)
    x[:, 0:52:2].real = v[:, 0:52:2]
    x[:, 0:52:2].imag = v[:, 1:52:2]
    x[:, 52] = v[:, 52] + 1j * x[:, 50].imag
    x[:, 26] = (x[:, 24] + x[:, 28]) / 2
    _interpolate_odd(x)
    return x


def _decode_lltf_forced_12bit(raw: np.ndarray) -> np.ndarray:
    v = _int12_words(raw)
    x = np.zeros((raw.shape[0], 53), np.complex64)
    x[:, 0:52:2].real = v[:, 0:52:2]
    x[:, 0:52:2].imag = v[:, 1:52:2]
    x[:, 52] = 2 * x[:, 50] - x[:, 48]
    _interpolate_odd(x)
    return x


def _decode_ht20(raw: np.ndarray) -> np.ndarray:
    x = _int8_pairs(raw)
    x[:, 28] = (x[:, 27] + x[:, 29]) / 2
    return x


def _decode_ht40(raw: np.ndarray) -> np.ndarray:
    x = _int8_pairs(raw)
    x[:, :57] *= np.complex64(1j)
    _fill_linear(x, 57, 59)
    return x


def _decode_he20(raw: np.ndarray) -> np.ndarray:
    x = _int8_pairs(raw)
    _fill_linear(x, 121, 123)
    return x


_G1_LLTF = slice(12, 118)


def _decode_g1_lltf(raw: np.ndarray) -> np.ndarray:
    """Generation 1: buffer entries 6..58 are L-LTF subcarriers -26..26."""
    return _int8_pairs(raw[:, _G1_LLTF])


def _decode_g1_ht40(raw: np.ndarray, secondary_codes: np.ndarray) -> np.ndarray:
    """Generation 1: HT-LTF in FFT order; the primary half is rotated by -pi/2."""
    entries = _int8_pairs(raw)
    x = np.zeros((raw.shape[0], 117), np.complex64)
    x[:, 0:57] = entries[:, 134:191]
    x[:, 60:117] = entries[:, 66:123]
    above = secondary_codes == 1
    below = secondary_codes == 2
    x[above, 0:57] *= np.complex64(-1j)
    x[below, 60:117] *= np.complex64(-1j)
    _fill_linear(x, 57, 59)
    return x


_DECODERS = {
    Decoding.LLTF_8BIT: _decode_lltf_8bit,
    Decoding.LLTF_12BIT: _decode_lltf_12bit,
    Decoding.LLTF_FORCED_12BIT: _decode_lltf_forced_12bit,
    Decoding.HT20: _decode_ht20,
    Decoding.HT40: _decode_ht40,
    Decoding.HE20: _decode_he20,
    Decoding.G1_LLTF: _decode_g1_lltf,
}


def decode_csi(decoding: Decoding, reports: list[SensorReport]) -> np.ndarray:
    """Decode the raw CSI of reports sharing one decoding -> complex64 ``(len(reports), bins)``.

    Generation-3 CSI additionally gets the per-sensor STO removal of the spec (2.2.3):
    multiplication by ``exp(-j 2 pi T_i f_bb)`` with ``T_i`` the sensor timestamp and
    ``f_bb`` the LO-relative bin frequency. Raises ProtocolError if a buffer is too short.
    """
    n = decoding.nbytes
    for r in reports:
        if len(r.csi) < n:
            raise ProtocolError("short_csi", f"{decoding.name} needs {n} CSI bytes, got {len(r.csi)}")
    raw = np.frombuffer(b"".join(r.csi[:n] for r in reports), np.uint8).reshape(len(reports), n)
    if decoding == Decoding.G1_HT40:
        return _decode_g1_ht40(raw, np.array([r.rx.secondary_code for r in reports]))
    x = _DECODERS[decoding](raw)
    if reports[0].generation == 3:
        remove_sto(x, decoding.format, reports)
    return x


@lru_cache(maxsize=16)
def _lo_bins(fmt: CsiFormat, secondary: int) -> np.ndarray:
    """Each grid bin's offset from the LO, in subcarrier spacings, ``(bins,)``."""
    return baseband_offsets_hz(fmt, secondary) / GRIDS[fmt].spacing_hz


def remove_sto(x: np.ndarray, fmt: CsiFormat, reports: list[SensorReport]) -> None:
    """In place: ``x[i] *= exp(-j 2 pi T_i f_bb)`` with each report's timestamp (HE20 with its fraction).

    The phase is reduced to whole turns in float64 (T_i f_bb is up to ~60 turns) and only then
    rounded to float32: its error stays below 1e-6 rad.
    """
    period_ns = 1e9 / GRIDS[fmt].spacing_hz
    t_ns = np.array([r.timestamp_ns for r in reports], np.float64)
    if fmt == CsiFormat.HE20:
        t_ns = t_ns + np.array([dec_fraction_ns(r.rx.rxstart_time_cyc_dec) for r in reports])
    lo_bins = _lo_bins(fmt, secondary_from_code(reports[0].rx.secondary_code))
    turns = np.multiply.outer(np.mod(t_ns, period_ns) / period_ns, lo_bins)
    phase = ((turns - np.floor(turns)) * (-2 * np.pi)).astype(np.float32)
    rotation = np.empty(phase.shape, np.complex64)
    rotation.real = np.cos(phase)
    rotation.imag = np.sin(phase)
    x *= rotation
