"""WiFi channel and OFDM subcarrier grids (2.4 GHz and 5 GHz), shared by driver, simulator and AoA.

Frequencies are in Hz. A "grid" is a contiguous range of integer bin offsets ``k`` around a
centre frequency with a fixed spacing, so bin ``k`` sits at ``center + k * spacing``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

SUBCARRIER_SPACING_HZ = 312_500.0
"""Legacy/HT OFDM subcarrier spacing in Hz."""

HE_SUBCARRIER_SPACING_HZ = SUBCARRIER_SPACING_HZ / 4
"""HE (802.11ax) subcarrier spacing in Hz."""

SPEED_OF_LIGHT = 299_792_458.0
"""m/s."""


class CsiFormat(enum.IntEnum):
    """CSI training-field formats; values equal ``espargos_msgs/CsiArray.FORMAT_*``."""

    LLTF = 0
    HT20 = 1
    HT40 = 2
    HE20 = 3


@dataclass(frozen=True)
class SubcarrierGrid:
    """Bins ``k_min..k_max`` (inclusive) around the format's centre, and the bins that are interpolated."""

    k_min: int
    k_max: int
    spacing_hz: float
    interpolated: tuple[int, ...]
    """Positions (0-based index into the grid) that carry interpolated, not measured, values."""

    @property
    def indices(self) -> np.ndarray:
        """Bin offsets ``k`` as int16, shape ``(n,)``."""
        return np.arange(self.k_min, self.k_max + 1, dtype=np.int16)

    @property
    def size(self) -> int:
        return self.k_max - self.k_min + 1


GRIDS: dict[CsiFormat, SubcarrierGrid] = {
    CsiFormat.LLTF: SubcarrierGrid(-26, 26, SUBCARRIER_SPACING_HZ, (26,)),
    CsiFormat.HT20: SubcarrierGrid(-28, 28, SUBCARRIER_SPACING_HZ, (28,)),
    CsiFormat.HT40: SubcarrierGrid(-58, 58, SUBCARRIER_SPACING_HZ, (57, 58, 59)),
    CsiFormat.HE20: SubcarrierGrid(-122, 122, HE_SUBCARRIER_SPACING_HZ, (121, 122, 123)),
}


def is_channel(channel: int) -> bool:
    """True for the channel numbers :func:`channel_center_hz` knows (1..14, 32..177)."""
    return 1 <= channel <= 14 or 32 <= channel <= 177


def channel_center_hz(channel: int) -> float:
    """Centre frequency in Hz of a 20 MHz WiFi channel (1..13, 14, and 5 GHz channels 32..177)."""
    if 1 <= channel <= 13:
        return 2412e6 + 5e6 * (channel - 1)
    if channel == 14:
        return 2484e6
    if 32 <= channel <= 177:
        return 5000e6 + 5e6 * channel
    raise ValueError(f"unknown WiFi channel {channel}")


def lo_center_hz(channel: int, secondary: int) -> float:
    """Receiver LO centre in Hz: the primary centre, or the 40 MHz centre when a secondary is set.

    ``secondary`` is +1 (above), -1 (below) or 0 (none).
    """
    return channel_center_hz(channel) + secondary * 10e6


def grid_center_hz(fmt: CsiFormat, channel: int, secondary: int) -> float:
    """Centre frequency in Hz of a format's grid: 40 MHz centre for HT40, primary centre otherwise."""
    if fmt == CsiFormat.HT40:
        return lo_center_hz(channel, secondary)
    return channel_center_hz(channel)


def baseband_offsets_hz(fmt: CsiFormat, secondary: int) -> np.ndarray:
    """Frequency of every grid bin relative to the receiver LO, in Hz, shape ``(n,)``.

    HT40 bins are already LO-relative; for the 20 MHz formats the primary channel sits
    32 bins (10 MHz) away from a 40 MHz LO, towards the side opposite the secondary.
    """
    grid = GRIDS[fmt]
    k = grid.indices.astype(np.float64)
    if fmt != CsiFormat.HT40:
        k = k - 32 * secondary * (SUBCARRIER_SPACING_HZ / grid.spacing_hz)
    return k * grid.spacing_hz


_SECONDARY_BY_CODE = {0: 0, 1: 1, 2: -1}
_CODE_BY_SECONDARY = {v: k for k, v in _SECONDARY_BY_CODE.items()}


def is_secondary_code(code: int) -> bool:
    """True for the rx_ctrl / wificonf secondary codes 0 (none), 1 (above), 2 (below)."""
    return code in _SECONDARY_BY_CODE


def secondary_from_code(code: int) -> int:
    """Map the rx_ctrl / wificonf secondary code (0 none, 1 above, 2 below) to +1/-1/0; unknown -> 0."""
    return _SECONDARY_BY_CODE.get(code, 0)


def secondary_to_code(secondary: int) -> int:
    """Map +1 (above) / -1 (below) / 0 (none) to the wificonf / rx_ctrl code 1 / 2 / 0."""
    try:
        return _CODE_BY_SECONDARY[secondary]
    except KeyError:
        raise ValueError(f"secondary channel must be -1, 0 or +1, got {secondary}") from None
