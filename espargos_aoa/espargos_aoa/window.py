"""Per-transmitter sliding windows of CSI frames and their stamp-driven update schedule.

Everything here depends on message stamps only (never on arrival or wall-clock time), so a
replayed bag gives the same windows, and hence the same bearings, as the live stream. Updates
fall due at whole multiples of the update period in stamp time, so the schedule does not
depend on which frame a node saw first: two nodes that joined a stream at different times
agree on every update once their windows have filled.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameCheck:
    """Limits a frame must meet before it enters a window."""

    antennas: int
    """Antennas of the array geometry (rows x cols)."""
    min_antennas: int = 4
    require_calibrated: bool = True


def frame_problem(antennas: int, mask: np.ndarray, calibrated: bool, check: FrameCheck) -> str | None:
    """Why a frame cannot be used (a diagnostics counter name), or None; from its header alone
    (its CSI is converted, and checked for NaN, only if it is still in a window when an update
    is due). antennas: rows x cols of the frame; mask: bool ``(antennas,)``."""
    if antennas != check.antennas or len(mask) != antennas:
        return "geometry_mismatch"
    if antennas < 2:
        return "single_antenna"
    if check.require_calibrated and not calibrated:
        return "uncalibrated"
    if int(np.count_nonzero(mask)) < check.min_antennas:
        return "too_few_antennas"
    return None


@dataclass
class Window:
    """Frames of one transmitter, oldest first, as the caller added them (aoa_node: messages,
    converted to arrays only when an update is due, so frames that leave the window first cost
    nothing but their arrival)."""

    stamps_s: deque = field(default_factory=deque)
    frames: deque = field(default_factory=deque)
    grid: Hashable = None
    next_update_s: float = 0.0


class TransmitterWindows:
    """One window per transmitter MAC: at most ``window_frames`` frames, none older than
    ``max_age_s`` before the newest; an update is due every ``update_period_s`` of stamp time."""

    def __init__(self, window_frames: int, max_age_s: float, update_period_s: float, min_frames: int) -> None:
        """ValueError when ``min_frames`` exceeds ``window_frames`` (no update could ever be due)."""
        if min_frames > window_frames:
            raise ValueError(f"min_frames ({min_frames}) exceeds window_frames ({window_frames})")
        self.window_frames = window_frames
        self.max_age_s = max_age_s
        self.update_period_s = update_period_s
        self.min_frames = min_frames
        self.windows: dict[bytes, Window] = {}
        self.restarts: dict[str, int] = {"grid_change": 0, "stamp_back": 0}
        """Windows restarted with frames in them: a new subcarrier grid or antenna count, or a
        stamp older than the newest (a restarted bag, or frames delivered out of order)."""

    def add(self, mac: bytes, stamp_s: float, frame: object, grid: Hashable) -> Window | None:
        """Add one frame; returns the window when an update is due (else None).

        ``grid``: what the frames of one window must share (subcarrier grid and antenna count);
        a change restarts the window, and so does a stamp older than the newest one (a time jump
        back, e.g. a restarted bag).
        """
        w = self.windows.setdefault(mac, Window())
        back = bool(w.stamps_s) and stamp_s < w.stamps_s[-1]
        if w.grid != grid or back:
            if w.stamps_s:
                self.restarts["stamp_back" if back else "grid_change"] += 1
            w = self.windows[mac] = Window(grid=grid, next_update_s=self._next_due(stamp_s))
        w.stamps_s.append(stamp_s)
        w.frames.append(frame)
        while len(w.stamps_s) > self.window_frames or stamp_s - w.stamps_s[0] > self.max_age_s:
            w.stamps_s.popleft()
            w.frames.popleft()
        if stamp_s < w.next_update_s:
            return None
        w.next_update_s = self._next_due(stamp_s)
        return w

    def _next_due(self, stamp_s: float) -> float:
        """The first whole multiple of the update period after ``stamp_s``."""
        return (np.floor(stamp_s / self.update_period_s) + 1) * self.update_period_s
