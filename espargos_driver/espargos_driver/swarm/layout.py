"""Where each subcarrier sits in a node's CSI buffer, by chip family (spec section 1), and the
decoding of a NodeReport onto the suite's subcarrier grids (espargos_driver.wifi.GRIDS).

Every layout choice the spec marks UNCONFIRMED is made here and nowhere else: the ascending
C5 order, the C6 layouts with guard bins, and how an ambiguous C6 length is read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..wifi import GRIDS, CsiFormat
from .report import NodeReport, ReportError

CHIPS = ("esp32", "c5", "c6")
"""esp32: the classic family (ESP32, S2, S3, C3; wifi_csi_config_t); c5: ESP32-C5/C61 (MAC v3,
one LTF, no guard bins); c6: ESP32-C6 (MAC v2, ascending with guard bins)."""
MIN_VALID_FRACTION = 0.5


@dataclass
class Segment:
    """One LTF in the buffer: first entry, subcarrier index of every entry, entries to mask."""

    format: CsiFormat
    start: int
    k: np.ndarray
    masked: tuple[int, ...] = ()


@dataclass
class NodeCsi:
    """A report's CSI on the format's grid: ``csi`` complex64 ``(bins,)``; ``interpolated``:
    grid positions not measured (DC, guards, first-word-invalid, STBC CSD) and interpolated."""

    format: CsiFormat
    csi: np.ndarray
    interpolated: tuple[int, ...]


def pairs_to_complex(values: np.ndarray) -> np.ndarray:
    """ESP-IDF byte pairs (imaginary first, then real) -> complex entries."""
    v = np.asarray(values, np.float32)
    return (v[1::2] + 1j * v[0::2]).astype(np.complex64)


def _natural(n: int) -> np.ndarray:
    """n-point FFT order: entries 0..n/2-1 are k = 0.., the rest negative."""
    e = np.arange(n)
    return np.where(e < n // 2, e, e - n)


def classic_segments(entries: int, secondary: int, ht40: bool, stbc: bool) -> list[Segment]:
    """ESP-IDF's table for classic chips, keyed by the buffer length (entries = bytes / 2)."""
    lltf = Segment(CsiFormat.LLTF, 0, _natural(64) if secondary == 0 else np.arange(64) - 32)
    segments = [lltf]
    if entries <= 64:
        return segments
    if secondary == 0:                                   # HT20, natural order (+ STBC copy)
        segments.append(Segment(CsiFormat.HT20, 64, _natural(64), (0,) if stbc else ()))
    elif ht40 or entries in (192, 306):
        if entries >= 306:                               # HT40 STBC: 0..60, -60..-1
            k = np.concatenate([np.arange(61), np.arange(-60, 0)])
            segments.append(Segment(CsiFormat.HT40, 64, k, (0,)))
        else:
            segments.append(Segment(CsiFormat.HT40, 64, _natural(128)))
    elif secondary < 0:                                  # HT20 below: 0..63 (STBC: 0..62), DC at entry 32
        n = 63 if stbc or entries == 190 else 64
        segments.append(Segment(CsiFormat.HT20, 64, np.arange(n) - 32, (0,) if n == 63 else ()))
    else:                                                # HT20 above: -64..-1 (STBC: -62..-1)
        n = 62 if stbc or entries == 188 else 64
        segments.append(Segment(CsiFormat.HT20, 64, np.arange(n) - 32 + (64 - n), (0,) if n == 62 else ()))
    return segments


C5_FORMATS = {53: CsiFormat.LLTF, 57: CsiFormat.HT20, 117: CsiFormat.HT40, 245: CsiFormat.HE20}


def chip_segments(chip: str, report: NodeReport, secondary: int) -> list[Segment]:
    """Segments of the report's buffer, from its declared length and flags (UNCONFIRMED for c5/c6)."""
    entries = report.declared_len // 2
    if chip == "esp32":
        return classic_segments(entries, secondary, bool(report.bandwidth_40), bool(report.stbc))
    if chip == "c5":                                     # ascending -N..N; STBC doubles
        single = entries // 2 if report.stbc else entries
        fmt = C5_FORMATS.get(single)
        if fmt is None:
            raise ReportError("unknown_layout", f"C5 buffer of {entries} entries matches no LTF")
        return [Segment(fmt, 0, np.arange(single) - single // 2)]
    if chip == "c6":                                     # ascending with guard bins
        single = entries // 2 if report.stbc else entries
        if single == 64:
            fmt = CsiFormat.HT20 if report.ht or (report.bb_format or 0) >= 2 else CsiFormat.LLTF
            return [Segment(fmt, 0, np.arange(64) - 32)]
        if single == 128:
            return [Segment(CsiFormat.HT40, 0, np.arange(128) - 64)]
        if single == 256:
            return [Segment(CsiFormat.HE20, 0, np.arange(256) - 128)]
        raise ReportError("unknown_layout", f"C6 buffer of {entries} entries matches no LTF")
    raise ReportError("unknown_chip", f"chip family {chip!r} is not one of {CHIPS}")


def decode_report(report: NodeReport, chip: str, secondary: int = 0) -> NodeCsi:
    """The widest LTF the report carries (HT/HE before L-LTF), on its grid with unmeasured bins
    interpolated. ``secondary``: the node's secondary channel where the report does not say."""
    secondary = report.secondary if report.secondary is not None else secondary
    entries = pairs_to_complex(report.values)
    segments = [s for s in chip_segments(chip, report, secondary) if s.start + s.k.size <= entries.size]
    if not segments:
        raise ReportError("short_csi", f"{entries.size} entries printed, fewer than the first LTF needs")
    seg = segments[-1]
    values = entries[seg.start:seg.start + seg.k.size].copy()
    measured = values != 0
    measured[list(seg.masked)] = False
    if report.first_word_invalid and seg.start == 0:
        measured[:2] = False
    grid = GRIDS[seg.format]
    pos = seg.k - grid.k_min
    inside = (pos >= 0) & (pos < grid.size) & measured
    valid = np.zeros(grid.size, bool)
    valid[pos[inside]] = True
    for p in grid.interpolated:
        valid[p] = False
    if valid.sum() < MIN_VALID_FRACTION * grid.size:
        raise ReportError("no_csi", f"only {int(valid.sum())} of {grid.size} {seg.format.name} bins measured")
    csi = np.zeros(grid.size, np.complex64)
    csi[pos[inside]] = values[inside]
    k = np.arange(grid.size)
    missing = ~valid
    csi[missing] = (np.interp(k[missing], k[valid], csi[valid].real)
                    + 1j * np.interp(k[missing], k[valid], csi[valid].imag))
    return NodeCsi(seg.format, csi, tuple(int(i) for i in np.flatnonzero(missing)))


def channel_of_mhz(freq_mhz: int) -> int:
    """Primary channel number of a centre frequency in MHz (inverse of wifi.channel_center_hz)."""
    if freq_mhz == 2484:
        return 14
    if 2412 <= freq_mhz <= 2472:
        return (freq_mhz - 2407) // 5
    if 5180 <= freq_mhz <= 5885:
        return (freq_mhz - 5000) // 5
    raise ReportError("bad_channel", f"{freq_mhz} MHz is not a WiFi channel centre")
