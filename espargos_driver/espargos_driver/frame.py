"""The one in-memory representation of a received WiFi frame across an antenna array."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .wifi import GRIDS, CsiFormat, SubcarrierGrid, grid_center_hz, lo_center_hz

FrameKey = tuple[bytes, bytes, int, int, bool]
"""(transmitter MAC, receiver MAC, sequence number, fragment number, retry)."""


@dataclass(slots=True)
class CsiFrame:
    """One WiFi frame as received by every antenna of ``boards`` 2x4 boards.

    Per-antenna arrays have shape ``(boards, rows, cols)``; ``csi`` is complex64
    ``(boards, rows, cols, bins)`` on the format's grid, NaN where an antenna did not report.
    """

    key: FrameKey
    format: CsiFormat
    channel: int
    secondary: int
    """+1 above, -1 below, 0 none."""
    csi: np.ndarray
    mask: np.ndarray
    timestamps_ns: np.ndarray
    """float64 sensor time of frame start, ns (uncalibrated), NaN where missing."""
    rssi_dbm: np.ndarray
    noise_floor_dbm: np.ndarray
    rx_gain_db: np.ndarray
    fft_gain_db: np.ndarray
    cfo_hz: np.ndarray
    is_reference: bool
    host_time: float
    """Wall-clock time (s since epoch) when the first report of the frame arrived."""
    completed_at: float
    """time.perf_counter() when the report that completed (or timed out) the frame arrived."""
    calibrated: bool = False

    @property
    def grid(self) -> SubcarrierGrid:
        return GRIDS[self.format]

    @property
    def center_frequency_hz(self) -> float:
        return grid_center_hz(self.format, self.channel, self.secondary)

    @property
    def lo_frequency_hz(self) -> float:
        return lo_center_hz(self.channel, self.secondary)

    def frequencies_hz(self) -> np.ndarray:
        """Absolute frequency of every grid bin, Hz, shape ``(bins,)``."""
        return self.center_frequency_hz + self.grid.indices * self.grid.spacing_hz
