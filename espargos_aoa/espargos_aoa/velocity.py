"""Radial velocity of swarm links from sanitised CSI phase, and the closing/static/separating state.

Bidirectional links: the common phases of A->B and of B's reply B->A add up to
-4 pi f d / c plus a constant: each node's oscillator enters both with opposite signs and
cancels. The two reports of one exchange are paired by the nodes' own clocks (ExchangePairer:
the reply reaches A a near-constant time after A's frame reached B), never by host arrival
time, and the pairs are put back in sensor-time order (ReorderBuffer) before filtering, so
network delay, jitter, bursts and reordering do not matter. A Kalman filter on the unwrapped
sum (state: phase, phase rate) gives v = -lambda / (4 pi) * rate (positive = separating); it
learns the measurement noise from its own innovations, and a link whose phase sum is too noisy
(reply-time jitter times the crystals' frequency offset: 1 us at 40 ppm is ~35 deg) is
reported UNKNOWN with no velocity. One-way links: the common phase carries the two crystals'
frequency offset, which a constant velocity cannot be told apart from, so no velocity is
claimed; motion is detected from the fading of the CSI amplitude instead.
"""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

CLOSING, STATIC, SEPARATING, MOVING, UNKNOWN = "CLOSING", "STATIC", "SEPARATING", "MOVING", "UNKNOWN"


def wrap(phase: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(phase) + np.pi) % (2 * np.pi) - np.pi


@dataclass
class VelocityConfig:
    """Filter and state-machine settings (SI units)."""

    accel_noise: float = 0.05
    """m/s^(3/2): square root of the spectral density of the white acceleration driving the
    constant-velocity model (larger follows changes faster, with more noise). 0.05 gives RMSE
    ~0.011 m/s and a 1-sigma covering 76-78 % of errors on the simulator's piecewise-constant
    motion; abrupt changes are caught by the re-acquisition after REACQUIRE_AFTER rejections."""
    phase_noise_deg: float = 8.0
    """1-sigma of one measured phase sum."""
    gate_sigma: float = 4.0
    """Innovations beyond this many sigma are packet-sync jumps: rejected."""
    pair_tolerance_s: float = 0.001
    """Sensor-clock tolerance of the pairing: the reply's A-clock time minus the request's B-clock
    time may differ by this much from the link's running offset (reply-time jitter and crystal
    drift between updates are microseconds; exchanges are >= 10 ms apart)."""
    reorder_delay_s: float = 0.15
    """Pairs are filtered in sensor-time order once this much newer sensor time has arrived:
    covers network jitter and reordering up to this delay (later pairs are dropped, counted)."""
    max_phase_noise_deg: float = 25.0
    """A link whose learnt phase-sum noise exceeds this (or that rejects > 20 % of its phase sums)
    cannot support velocity: UNKNOWN, NaN velocity."""
    warmup_s: float = 1.0
    """After a (re)start the filter learns the noise for this long before it claims a velocity."""
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
        for name in ("accel_noise", "phase_noise_deg", "gate_sigma", "pair_tolerance_s", "moving_threshold",
                     "static_threshold", "max_gap_s", "motion_window_s", "motion_factor", "max_phase_noise_deg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.static_threshold >= self.moving_threshold:
            raise ValueError(f"static_threshold ({self.static_threshold}) must be below moving_threshold "
                             f"({self.moving_threshold}) for hysteresis")
        for name in ("min_dwell_s", "reorder_delay_s", "warmup_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pair_tolerance_s > 0.005:
            raise ValueError(f"pair_tolerance_s must be <= 0.005 s (exchanges are >= 10 ms apart), "
                             f"got {self.pair_tolerance_s}")


REACQUIRE_AFTER = 3
"""Consecutive rejected measurements after which the filter restarts from the measurements
(a real change of motion, not a packet-sync jump, which is a single outlier)."""


NOISE_ADAPT = 0.03
"""EMA weight of one innovation in the learnt measurement noise (~1 s at 30-50 Hz)."""
MIN_NOISE_RAD = np.radians(0.5)
MAX_REJECT_RATE = 0.2
"""More rejected phase sums than this (EMA) and the link cannot support velocity."""


class PhaseKalman:
    """Constant-rate model on an unwrapped phase: state [phase rad, rate rad/s].

    The measurement noise ``r`` starts at ``measurement_noise`` and is learnt from the accepted
    innovations (E[nu^2] = P00 + r), so the reported covariance follows the real noise;
    ``reject_rate`` is the EMA of the gate's rejections."""

    def __init__(self, rate_noise: float, measurement_noise: float, adapt: float = NOISE_ADAPT) -> None:
        self.q, self.r0 = rate_noise ** 2, measurement_noise ** 2
        self.adapt = adapt
        self.r = self.r0
        self.x: np.ndarray | None = None
        self.P = np.eye(2)
        self.t: float | None = None
        self.started: float | None = None
        self.rejected_in_row = 0
        self.reject_rate = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=REACQUIRE_AFTER)

    def reset(self) -> None:
        self.x, self.t, self.started = None, None, None
        self.r, self.reject_rate = self.r0, 0.0
        self.rejected_in_row = 0
        self.recent.clear()

    def update(self, t: float, z: float, gate: float) -> bool:
        """Fuse a wrapped phase ``z`` at time ``t``; False if rejected as a jump."""
        self.recent.append((t, z))
        if self.x is None or self.t is None:
            self.x, self.P, self.t, self.started = np.array([z, 0.0]), np.diag([self.r, 50.0 ** 2]), t, t
            return True
        dt = max(t - self.t, 1e-6)
        F = np.array([[1.0, dt], [0.0, 1.0]])
        Q = self.q * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
        x, P = F @ self.x, F @ self.P @ F.T + Q
        innovation = float(wrap(z - x[0]))
        s = P[0, 0] + self.r
        rejected = innovation ** 2 > gate ** 2 * s
        self.reject_rate += self.adapt * (float(rejected) - self.reject_rate)
        if rejected:
            self.rejected_in_row += 1
            if self.rejected_in_row >= REACQUIRE_AFTER:
                self._reacquire()
            else:
                self.x, self.P, self.t = x, P, t           # keep the prediction, skip the measurement
            return False
        self.rejected_in_row = 0
        self.r = max(self.r + self.adapt * (innovation ** 2 - P[0, 0] - self.r), MIN_NOISE_RAD ** 2)
        s = P[0, 0] + self.r
        gain = P[:, 0] / s
        self.x = x + gain * innovation
        self.P = P - np.outer(gain, P[0, :])
        self.t = t
        return True

    @property
    def noise_deg(self) -> float:
        """The learnt 1-sigma of one measurement, degrees."""
        return float(np.degrees(np.sqrt(self.r)))

    def _reacquire(self) -> None:
        """Restart from the recent measurements: phase from the last, rate from their increments."""
        (t0, z0), *_, (t1, z1) = self.recent
        steps = np.diff([z for _, z in self.recent])
        rate = float(np.sum(wrap(steps)) / max(t1 - t0, 1e-6))
        self.x, self.t = np.array([z1, rate]), t1
        self.P = np.diag([self.r, 2 * self.r / max(t1 - t0, 1e-3) ** 2])
        self.rejected_in_row = 0


DWELL_MAJORITY = 0.8
"""A new state is reported once it makes up this share of the proposals of the last min_dwell_s."""


class StateMachine:
    """CLOSING / STATIC / SEPARATING (or MOVING) with hysteresis and a minimum dwell time: a new
    state is reported once it has been proposed for ``min_dwell_s`` (by a DWELL_MAJORITY of the
    proposals, so that one noisy sample does not restart the wait)."""

    def __init__(self, config: VelocityConfig) -> None:
        self.config = config
        self.state = UNKNOWN
        self._recent: deque[tuple[float, str]] = deque()

    def update(self, t: float, proposed: str) -> str:
        recent = self._recent
        recent.append((t, proposed))
        while recent and t - recent[0][0] > self.config.min_dwell_s:
            recent.popleft()
        if self.state == UNKNOWN:
            self.state = proposed
        elif proposed != self.state and t - recent[0][0] >= 0.9 * self.config.min_dwell_s:
            if sum(p == proposed for _, p in recent) >= DWELL_MAJORITY * len(recent):
                self.state = proposed
        return self.state

    def propose(self, v: float, std: float) -> str:
        """From a velocity and its std, with hysteresis around the current state: entering a
        motion (from STATIC or the opposite direction) needs |v| above ``moving_threshold`` and 2
        sigma; staying in it only |v| above ``static_threshold`` with the same sign."""
        c = self.config
        direction = SEPARATING if v > 0 else CLOSING
        if direction == self.state and abs(v) > c.static_threshold:
            return direction
        if abs(v) > c.moving_threshold and abs(v) > 2 * std:
            return direction
        return STATIC


@dataclass
class Estimate:
    t: float
    velocity: float
    """m/s, positive = separating; NaN when not observable (one-way)."""
    std: float
    state: str
    method: str


SENSOR_CLOCK_PERIOD_S = 2 ** 32 * 1e-6
"""ESP32 nodes report a u32 microsecond clock: it wraps every ~71.6 min."""
ACQUIRE_REPORTS = 12
"""Reports per direction collected before the pairing offset is chosen (~0.25 s at 50 Hz)."""
PENDING_S = 2.0
"""Unpaired reports that arrived this long ago (host time) are given up (``unpaired``). Longer
than ACQUIRE_REPORTS frames at 10 Hz: with 1 s, links below 12 Hz never paired."""


def clock_diff(a: float, b: float) -> float:
    """a - b on the nodes' wrapping clock, in (-period/2, period/2], s."""
    return (a - b + SENSOR_CLOCK_PERIOD_S / 2) % SENSOR_CLOCK_PERIOD_S - SENSOR_CLOCK_PERIOD_S / 2


class Exchange(NamedTuple):
    """One paired exchange: A-clock time (s), wrapped phase sum of its two reports (rad), and the
    payloads given with the report received by A and the one received by B."""

    t: float
    phase_sum: float
    received_by_a: object
    received_by_b: object


class ExchangePairer:
    """Pairs A->B reports (B's clock) with B's replies B->A (A's clock) by sensor time.

    In one exchange the reply reaches A at A-time ``t_a`` and A's frame reached B at B-time
    ``t_b``; ``t_a - t_b`` is the clocks' offset plus the reply delay: nearly constant (microseconds
    of reply jitter, tens of ppm of drift), while other exchanges are a whole exchange period away.
    The offset is acquired from the first reports (the tightest cluster of differences; of several,
    the one whose host arrival times agree best) and then tracked. Arrival order does not matter.
    """

    def __init__(self, tolerance_s: float) -> None:
        self.tolerance_s = tolerance_s
        self.offset: float | None = None
        self.pending: dict[bool, deque[tuple[float, float, float, object]]] = {True: deque(), False: deque()}
        """received_by_a -> (sensor time, phase, host time, payload) of unpaired reports."""
        self.unpaired = 0
        self.acquisitions = 0
        self._last_pair_host = -np.inf

    def add(self, received_by_a: bool, host_t: float, t: float, phase: float, payload: object = None) -> list[Exchange]:
        """One report (``payload``: anything the caller wants back with the pair); returns the
        exchanges it completes."""
        mine, other = self.pending[received_by_a], self.pending[not received_by_a]
        if self.offset is not None:
            for i, (t_o, phase_o, _, payload_o) in enumerate(other):
                t_a, t_b = (t, t_o) if received_by_a else (t_o, t)
                d = clock_diff(t_a, t_b) - self.offset
                if abs(d) <= self.tolerance_s:
                    del other[i]
                    self.offset += 0.1 * d
                    self._last_pair_host = host_t
                    by_a, by_b = (payload, payload_o) if received_by_a else (payload_o, payload)
                    return [Exchange(t_a, float(wrap(phase + phase_o)), by_a, by_b)]
        mine.append((t, phase, host_t, payload))
        self._prune(host_t)
        if self.offset is not None and host_t - self._last_pair_host > 2 * PENDING_S \
                and min(len(mine), len(other)) >= ACQUIRE_REPORTS:
            self.offset = None                       # a clock jumped (node reboot): acquire again
        if self.offset is None and min(len(mine), len(other)) >= ACQUIRE_REPORTS:
            self._acquire()
            if self.offset is not None:
                return self._match_pending()
        return []

    def _prune(self, host_t: float) -> None:
        """Give up reports that arrived more than PENDING_S (host time) before this one: their
        partner is lost (network delays are well below that)."""
        for queue in self.pending.values():
            while queue and host_t - queue[0][2] > PENDING_S:
                queue.popleft()
                self.unpaired += 1

    def _acquire(self) -> None:
        """Choose the offset: among the clusters of clock differences that recur for most reports
        (the true one, and with periodic sending its neighbours a whole period away), the one whose
        phase sums are steady from exchange to exchange: only in the true pairing do the two
        oscillators cancel; a pairing one exchange off keeps the crystals' offset times the send
        time, which wanders."""
        a_side, b_side = list(self.pending[True]), list(self.pending[False])
        diffs = np.array([[clock_diff(ta, tb) for tb, *_ in b_side] for ta, *_ in a_side])
        flat = diffs.ravel()
        support = np.array([np.sum(np.abs(flat - d) <= self.tolerance_s) for d in flat])
        best, best_score = None, -1.0
        taken = np.zeros(flat.size, bool)
        for i in np.argsort(-support):
            if support[i] < ACQUIRE_REPORTS // 2:
                break
            if taken[i]:
                continue
            members = np.abs(flat - flat[i]) <= self.tolerance_s
            taken |= members
            ia, ib = np.unravel_index(np.flatnonzero(members), diffs.shape)
            pairs = sorted((a_side[j][0], a_side[j][1] + b_side[k][1]) for j, k in zip(ia, ib))
            steps = np.diff([z for _, z in pairs])
            # How many exchange-to-exchange steps agree with the most common step (within 0.5 rad):
            # robust to a packet-sync jump, and a steady motion gives steady steps too.
            score = max((int(np.sum(np.abs(wrap(steps - step)) < 0.5)) for step in steps), default=0)
            if score > best_score:
                best, best_score = float(np.median(flat[members])), score
        if best is not None:
            self.offset = best
            self.acquisitions += 1

    def _match_pending(self) -> list[Exchange]:
        out = []
        a_left, b_left = list(self.pending[True]), list(self.pending[False])
        for entry in list(a_left):
            match = next((i for i, other in enumerate(b_left)
                          if abs(clock_diff(entry[0], other[0]) - self.offset) <= self.tolerance_s), None)
            if match is not None:
                other = b_left.pop(match)
                a_left = [e for e in a_left if e is not entry]
                out.append(Exchange(entry[0], float(wrap(entry[1] + other[1])), entry[3], other[3]))
        self.pending = {True: deque(a_left), False: deque(b_left)}
        return sorted(out, key=lambda exchange: exchange.t)


RESTART_S = 10.0
"""Sensor time going back by more than this is a restarted clock (node reboot), not reordering."""


class ReorderBuffer:
    """Holds items keyed by sensor time until ``delay_s`` of newer sensor time has arrived, then
    releases them in time order; an item older than the last released one is dropped (``late``).

    Times are unwrapped across the nodes' u32 microsecond clock, so released times increase
    through a wrap; a clock that goes back by more than RESTART_S starts the buffer over."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.items: list[tuple[float, float]] = []
        self.released: float | None = None
        self.newest: float | None = None
        self.late = 0

    def push(self, t: float, value: float) -> list[tuple[float, float]]:
        u = t if self.newest is None else self.newest + clock_diff(t, self.newest)
        if self.released is not None and u < self.released:
            if self.released - u < RESTART_S:
                self.late += 1
                return []
            self.items, self.released, self.newest = [], None, None    # the clock restarted
            u = t
        self.newest = u if self.newest is None else max(self.newest, u)
        self.items.append((u, value))
        self.items.sort()
        ready = [item for item in self.items if self.newest - item[0] >= self.delay_s]
        self.items = self.items[len(ready):]
        if ready:
            self.released = ready[-1][0]
        return ready


class BidirectionalLink:
    """A <-> B: pairs the two directions of each exchange by sensor time, puts the pairs in order
    and filters the phase sum on the clock of end A; says UNKNOWN when the link cannot support a
    velocity."""

    def __init__(self, config: VelocityConfig, wavelength_m: float) -> None:
        self.config = config
        self.wavelength = wavelength_m
        rate_noise = config.accel_noise * 4 * np.pi / wavelength_m
        self.kf = PhaseKalman(rate_noise, np.radians(config.phase_noise_deg))
        self.states = StateMachine(config)
        self.pairer = ExchangePairer(config.pair_tolerance_s)
        self.order = ReorderBuffer(config.reorder_delay_s)
        self.rejected = 0
        self.restarts = 0
        self.unsupported = ""
        """Why the link cannot support velocity now ('' when it can)."""

    def add(self, received_by_a: bool, host_t: float, t: float, phase: float) -> list[Estimate]:
        """One report (B->A if ``received_by_a``, else A->B) with its host receive time, the
        receiver's clock ``t`` (s) and common phase; returns the estimates of the exchanges that
        are now complete and in order."""
        out = []
        for t_a, z, _, _ in self.pairer.add(received_by_a, host_t, t, phase):
            for t_ready, z_ready in self.order.push(t_a, z):
                out.append(self._filter(t_ready, z_ready))
        return out

    def _filter(self, t: float, z: float) -> Estimate:
        c = self.config
        if self.kf.t is not None and not 0 <= t - self.kf.t <= c.max_gap_s:
            self.kf.reset()                             # a long silence, or the node's clock wrapped
            self.restarts += 1
            self.states = StateMachine(c)
        if not self.kf.update(t, z, c.gate_sigma):
            self.rejected += 1
        scale = self.wavelength / (4 * np.pi)
        v, std = -scale * self.kf.x[1], scale * np.sqrt(self.kf.P[1, 1])
        noise, rejects = self.kf.noise_deg, self.kf.reject_rate
        if noise > c.max_phase_noise_deg or rejects > MAX_REJECT_RATE:
            self.unsupported = (f"phase-sum noise {noise:.0f} deg (limit {c.max_phase_noise_deg:.0f}), "
                                f"{100 * rejects:.0f} % rejected: reply-time jitter x crystal offset or "
                                f"multipath too large for velocity")
        elif noise < 0.7 * c.max_phase_noise_deg and rejects < MAX_REJECT_RATE / 2:
            self.unsupported = ""
        if self.unsupported or t - self.kf.started < c.warmup_s:
            self.states = StateMachine(c)
            return Estimate(t, float("nan"), float("nan"), UNKNOWN, "bidirectional")
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
        if self.levels and self.levels[-1][0] - t > RESTART_S:
            self.levels.clear()                         # the node's clock wrapped (u32 microseconds)
        if self.levels and t < self.levels[-1][0]:      # delayed by the network: put it in order
            bisect.insort(self.levels, (t, level_db))
            t = self.levels[-1][0]
        else:
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
