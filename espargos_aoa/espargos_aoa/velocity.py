"""Radial velocity of swarm links from sanitised CSI phase, and the closing/static/separating state.

Bidirectional links: the common phases of A->B and of B's reply B->A add up to
-4 pi f d / c plus a constant: each node's oscillator enters both with opposite signs and
cancels. A Kalman filter on that unwrapped sum (state: phase, phase rate) gives
v = -lambda / (4 pi) * rate (positive = separating). One-way links: the common phase carries the
two crystals' frequency offset, which a constant velocity cannot be told apart from, so no
velocity is claimed; motion is detected from the fading of the CSI amplitude instead.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

CLOSING, STATIC, SEPARATING, MOVING, UNKNOWN = "CLOSING", "STATIC", "SEPARATING", "MOVING", "UNKNOWN"


def wrap(phase: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(phase) + np.pi) % (2 * np.pi) - np.pi


@dataclass
class VelocityConfig:
    """Filter and state-machine settings (SI units)."""

    accel_noise: float = 0.3
    """m/s^(3/2): square root of the spectral density of the white acceleration driving the
    constant-velocity model (larger follows changes faster, with more noise)."""
    phase_noise_deg: float = 8.0
    """1-sigma of one measured phase sum."""
    gate_sigma: float = 4.0
    """Innovations beyond this many sigma are packet-sync jumps: rejected."""
    pair_window_s: float = 0.01
    """Host-time window in which A->B and B->A reports form one exchange."""
    moving_threshold: float = 0.15
    """m/s: |v| above this (by more than 2 sigma) leaves STATIC."""
    static_threshold: float = 0.08
    """m/s: |v| below this returns to STATIC (hysteresis)."""
    min_dwell_s: float = 0.3
    """A new state must hold this long before it is reported."""
    max_gap_s: float = 1.0
    """A longer silence restarts the filter."""
    motion_window_s: float = 0.5
    motion_factor: float = 4.0
    """One-way: amplitude fluctuation beyond this many times the static baseline means MOVING."""

    def validate(self) -> None:
        for name in ("accel_noise", "phase_noise_deg", "gate_sigma", "pair_window_s", "moving_threshold",
                     "static_threshold", "max_gap_s", "motion_window_s", "motion_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.static_threshold >= self.moving_threshold:
            raise ValueError(f"static_threshold ({self.static_threshold}) must be below moving_threshold "
                             f"({self.moving_threshold}) for hysteresis")
        if self.min_dwell_s < 0:
            raise ValueError(f"min_dwell_s must be >= 0, got {self.min_dwell_s}")


REACQUIRE_AFTER = 3
"""Consecutive rejected measurements after which the filter restarts from the measurements
(a real change of motion, not a packet-sync jump, which is a single outlier)."""


class PhaseKalman:
    """Constant-rate model on an unwrapped phase: state [phase rad, rate rad/s]."""

    def __init__(self, rate_noise: float, measurement_noise: float) -> None:
        self.q, self.r = rate_noise ** 2, measurement_noise ** 2
        self.x: np.ndarray | None = None
        self.P = np.eye(2)
        self.t: float | None = None
        self.rejected_in_row = 0
        self.recent: deque[tuple[float, float]] = deque(maxlen=REACQUIRE_AFTER)

    def reset(self) -> None:
        self.x, self.t = None, None
        self.rejected_in_row = 0
        self.recent.clear()

    def update(self, t: float, z: float, gate: float) -> bool:
        """Fuse a wrapped phase ``z`` at time ``t``; False if rejected as a jump."""
        self.recent.append((t, z))
        if self.x is None or self.t is None:
            self.x, self.P, self.t = np.array([z, 0.0]), np.diag([self.r, 50.0 ** 2]), t
            return True
        dt = max(t - self.t, 1e-6)
        F = np.array([[1.0, dt], [0.0, 1.0]])
        Q = self.q * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
        x, P = F @ self.x, F @ self.P @ F.T + Q
        innovation = float(wrap(z - x[0]))
        s = P[0, 0] + self.r
        if innovation ** 2 > gate ** 2 * s:
            self.rejected_in_row += 1
            if self.rejected_in_row >= REACQUIRE_AFTER:
                self._reacquire()
            else:
                self.x, self.P, self.t = x, P, t           # keep the prediction, skip the measurement
            return False
        self.rejected_in_row = 0
        gain = P[:, 0] / s
        self.x = x + gain * innovation
        self.P = P - np.outer(gain, P[0, :])
        self.t = t
        return True


    def _reacquire(self) -> None:
        """Restart from the recent measurements: phase from the last, rate from their increments."""
        (t0, z0), *_, (t1, z1) = self.recent
        steps = np.diff([z for _, z in self.recent])
        rate = float(np.sum(wrap(steps)) / max(t1 - t0, 1e-6))
        self.x, self.t = np.array([z1, rate]), t1
        self.P = np.diag([self.r, 2 * self.r / max(t1 - t0, 1e-3) ** 2])
        self.rejected_in_row = 0


class StateMachine:
    """CLOSING / STATIC / SEPARATING (or MOVING) with hysteresis and a minimum dwell time."""

    def __init__(self, config: VelocityConfig) -> None:
        self.config = config
        self.state = UNKNOWN
        self._candidate, self._since = UNKNOWN, 0.0

    def update(self, t: float, proposed: str) -> str:
        if proposed == self.state:
            self._candidate = self.state
            return self.state
        if proposed != self._candidate:
            self._candidate, self._since = proposed, t
        if self.state == UNKNOWN or t - self._since >= self.config.min_dwell_s:
            self.state = proposed
        return self.state

    def propose(self, v: float, std: float) -> str:
        """From a velocity and its std, with hysteresis around the current state."""
        c = self.config
        moving = abs(v) > c.moving_threshold and abs(v) > 2 * std if self.state in (STATIC, UNKNOWN) \
            else abs(v) > c.static_threshold
        if not moving:
            return STATIC
        return SEPARATING if v > 0 else CLOSING


@dataclass
class Estimate:
    t: float
    velocity: float
    """m/s, positive = separating; NaN when not observable (one-way)."""
    std: float
    state: str
    method: str


class BidirectionalLink:
    """A <-> B: pairs each report with the latest unpaired report of the other direction (within
    ``pair_window_s`` of host time) and filters the phase sum on the clock of end A."""

    def __init__(self, config: VelocityConfig, wavelength_m: float) -> None:
        self.config = config
        self.wavelength = wavelength_m
        rate_noise = config.accel_noise * 4 * np.pi / wavelength_m
        self.kf = PhaseKalman(rate_noise, np.radians(config.phase_noise_deg))
        self.states = StateMachine(config)
        self.pending: dict[bool, tuple[float, float, float]] = {}
        self.rejected = 0
        self.restarts = 0

    def add(self, received_by_a: bool, host_t: float, t: float, phase: float) -> Estimate | None:
        """One report (B->A if ``received_by_a``, else A->B) with its host receive time, the
        receiver's clock ``t`` and common phase; returns an estimate when an exchange completes."""
        other = self.pending.pop(not received_by_a, None)
        if other is None or abs(host_t - other[0]) > self.config.pair_window_s:
            self.pending[received_by_a] = (host_t, t, phase)
            return None
        t = t if received_by_a else other[1]
        z = float(wrap(other[2] + phase))
        if self.kf.t is not None and not 0 <= t - self.kf.t <= self.config.max_gap_s:
            self.kf.reset()                             # a long silence, or the node's clock wrapped
            self.restarts += 1
        if not self.kf.update(t, z, self.config.gate_sigma):
            self.rejected += 1
        scale = self.wavelength / (4 * np.pi)
        v, std = -scale * self.kf.x[1], scale * np.sqrt(self.kf.P[1, 1])
        return Estimate(t, v, std, self.states.update(t, self.states.propose(v, std)), "bidirectional")


MIN_BASELINE_DB = 0.05
"""Floor of the static amplitude spread (dB): quantisation and noise never give less."""


class OneWayLink:
    """A -> B only: MOVING / STATIC from the fading of the CSI amplitude (dB) over a short window,
    against the spread seen while static. No velocity: a constant frequency offset between the
    crystals and a constant velocity give the same phase."""

    def __init__(self, config: VelocityConfig) -> None:
        self.config = config
        self.levels: deque[tuple[float, float]] = deque()
        self.baseline: float | None = None
        self.states = StateMachine(config)

    def add(self, t: float, level_db: float) -> Estimate:
        c = self.config
        if self.levels and t < self.levels[-1][0]:
            self.levels.clear()                         # the node's clock wrapped (u32 microseconds)
        self.levels.append((t, level_db))
        while self.levels and t - self.levels[0][0] > c.motion_window_s:
            self.levels.popleft()
        spread = float(np.std([lv for _, lv in self.levels])) if len(self.levels) > 3 else 0.0
        if self.baseline is None and len(self.levels) > 3 and t - self.levels[0][0] >= 0.9 * c.motion_window_s:
            self.baseline = max(spread, MIN_BASELINE_DB)
        moving = self.baseline is not None and spread > c.motion_factor * self.baseline
        if self.baseline is not None and spread < 2 * self.baseline:      # clearly static: adapt slowly (~10 s)
            self.baseline = 0.998 * self.baseline + 0.002 * max(spread, MIN_BASELINE_DB)
        proposed = UNKNOWN if self.baseline is None else (MOVING if moving else STATIC)
        return Estimate(t, float("nan"), float("nan"), self.states.update(t, proposed), "one_way")
