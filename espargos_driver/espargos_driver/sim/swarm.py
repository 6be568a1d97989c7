"""Swarm simulator: single-antenna nodes exchanging frames, with crystals, moving on scripted paths.

Channel model of a frame X -> Y at time t (subcarrier k, absolute frequency f_k):

    H_k = [exp(-j 2 pi f_k d/c) + G exp(-j 2 pi f_k d_g/c)] * exp(j (Phi_Y(t) - Phi_X(t)))
          * exp(-j 2 pi k df tau) * exp(j rho) + noise

d: distance X-Y; d_g: the ground-reflected path (heights = z); G: ground reflection coefficient;
people (sim/person.py) add a path each, and the receiver's AGC may step its gain;
Phi_N(t) = 2 pi f_c int eps_N dt: the LO phase of node N with crystal error eps_N (ppm, slow
drift); tau: per-packet detection (STO) jitter; rho: per-packet phase jitter, and with a small
probability a uniformly random packet-sync jump. In a bidirectional exchange Y answers X after
a reply delay delta, so phase(X->Y) + phase(Y->X) = -4 pi f d/c - 2 pi f_c (eps_Y - eps_X) delta
+ noise: the oscillators cancel up to a slowly drifting constant, which is what makes radial
velocity observable. Ground truth: ``range_m`` and ``range_rate_m_s`` of every pair.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ..swarm.binary import build_datagram
from ..swarm.text import classic_line
from ..wifi import SPEED_OF_LIGHT, SUBCARRIER_SPACING_HZ, channel_center_hz
from .person import PersonSpec

K_NATURAL = np.where(np.arange(64) < 32, np.arange(64), np.arange(64) - 64)
"""Classic ESP32 buffer order of one 20 MHz LTF (spec section 1): 0..31, -32..-1."""
HT20_VALID = (np.abs(K_NATURAL) >= 1) & (np.abs(K_NATURAL) <= 28)
LLTF_VALID = (np.abs(K_NATURAL) >= 1) & (np.abs(K_NATURAL) <= 26)
AMPLITUDE_COUNTS = 40.0


@dataclass
class SwarmNodeSpec:
    """A node: id (1..255), MAC, waypoints [[t, x, y, z], ...] in s and m (held before/after)."""

    id: int
    mac: str
    waypoints: list = field(default_factory=lambda: [[0.0, 0.0, 0.0, 1.0]])
    crystal_ppm: float | None = None
    """None: uniform in +-crystal_ppm_limit of the scenario."""

    def position(self, t_s: float) -> np.ndarray:
        w = np.asarray(self.waypoints, float).reshape(-1, 4)
        return np.array([np.interp(t_s, w[:, 0], w[:, i]) for i in (1, 2, 3)])

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))


@dataclass
class SwarmLink:
    """Node ``a`` sends at the scenario rate; with ``bidirectional`` node ``b`` answers every frame."""

    a: int
    b: int
    bidirectional: bool = True
    reply_jitter_s: float | None = None
    """This link's reply-time jitter (s, 1-sigma); None: the scenario's."""


@dataclass
class SimReport:
    """One frame as measured by its receiver: scenario time, transmitter and receiver ids, the
    receiver's sequence counter, raw int8 CSI (ESP-IDF order) and its µs clock."""

    t_s: float
    tx: int
    rx: int
    sequence: int
    values: np.ndarray
    sensor_time_us: int


@dataclass
class SwarmScenario:
    channel: int = 6
    rate_hz: float = 50.0
    """Frames per second per direction of every link."""
    send_jitter_s: float = 0.002
    reply_delay_s: float = 300e-6
    reply_jitter_s: float = 50e-9
    snr_db: float = 25.0
    packet_loss: float = 0.0
    detection_jitter_ns: float = 25.0
    phase_jitter_deg: float = 3.0
    jump_probability: float = 0.005
    crystal_ppm_limit: float = 20.0
    crystal_drift_ppm_s: float = 0.002
    ground_reflection: float = -0.3
    network_delay_s: float = 0.0
    """Network model between the nodes and the collector: fixed one-way delay, s ..."""
    network_jitter_s: float = 0.0
    """... plus a uniform random delay in [0, this], s (reorders datagrams closer than that) ..."""
    reorder_probability: float = 0.0
    """... a datagram held back by this probability by another 1-3 frame periods ..."""
    burst_period_s: float = 0.0
    burst_hold_s: float = 0.0
    """... and every burst_period_s (0: never) all datagrams are held for burst_hold_s and then
    delivered at once (a congested access point)."""
    agc_step_db: float = 0.0
    """Receiver AGC: every ``agc_interval_s`` each receiver's gain moves to -1, 0 or +1 times this
    many dB (at random; 0: fixed gain), unknown to the CSI reader."""
    agc_interval_s: float = 5.0
    seed: int = 1
    nodes: list[SwarmNodeSpec] = field(default_factory=list)
    links: list[SwarmLink] = field(default_factory=list)
    people: list[PersonSpec] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "SwarmScenario":
        data = dict(data)
        nodes = [SwarmNodeSpec(**n) for n in data.pop("nodes", [])]
        links = [SwarmLink(**link) for link in data.pop("links", [])]
        people = [PersonSpec(**{"seed": i, **person}) for i, person in enumerate(data.pop("people", []))]
        return cls(nodes=nodes, links=links, people=people, **data)

    def node(self, node_id: int) -> SwarmNodeSpec:
        return next(n for n in self.nodes if n.id == node_id)

    def range_m(self, a: int, b: int, t_s: float) -> float:
        return float(np.linalg.norm(self.node(a).position(t_s) - self.node(b).position(t_s)))

    def range_rate_m_s(self, a: int, b: int, t_s: float, dt: float = 1e-3) -> float:
        return (self.range_m(a, b, t_s + dt) - self.range_m(a, b, t_s - dt)) / (2 * dt)


class SwarmSimulation:
    """Frames in time order, as UDP datagrams (ADR-018 v2: with the transmitter MAC)."""

    def __init__(self, scenario: SwarmScenario) -> None:
        self.sc = scenario
        self.rng = np.random.default_rng(scenario.seed)
        self.network_rng = np.random.default_rng([scenario.seed, 1])
        """The network model's own stream, so that it leaves the channel's draws as they were."""
        self.f_c = channel_center_hz(scenario.channel)
        self.crystal_ppm = {n.id: (n.crystal_ppm if n.crystal_ppm is not None
                                   else self.rng.uniform(-1, 1) * scenario.crystal_ppm_limit) for n in scenario.nodes}
        self.lo_phase0 = {n.id: self.rng.uniform(-np.pi, np.pi) for n in scenario.nodes}
        self.drift = {n.id: self.rng.choice([-1.0, 1.0]) * scenario.crystal_drift_ppm_s for n in scenario.nodes}
        self.seq = {n.id: 0 for n in scenario.nodes}
        self.next_send = [0.0 for _ in scenario.links]
        self._agc_steps: dict[tuple[int, int], int] = {}
        """(node, AGC interval) -> its gain step in units of agc_step_db."""

    def lo_phase(self, node: int, t_s: float) -> float:
        """Phi_N(t) in rad (only its value mod 2 pi matters)."""
        cycles = self.f_c * 1e-6 * (self.crystal_ppm[node] * t_s + 0.5 * self.drift[node] * t_s ** 2)
        return self.lo_phase0[node] + 2 * np.pi * np.mod(cycles, 1.0)

    def agc_gain_db(self, node: int, t_s: float) -> float:
        """The AGC gain step of receiver ``node`` at ``t_s`` (dB; its own random stream)."""
        if not self.sc.agc_step_db:
            return 0.0
        key = (node, int(t_s // self.sc.agc_interval_s))
        if key not in self._agc_steps:
            self._agc_steps[key] = int(np.random.default_rng([self.sc.seed, 2, *key]).integers(-1, 2))
        return self._agc_steps[key] * self.sc.agc_step_db

    def sensor_time_us(self, node: int, t_s: float) -> int:
        """The node's own microsecond clock (runs fast or slow with its crystal)."""
        return int(t_s * 1e6 * (1 + self.crystal_ppm[node] * 1e-6)) & 0xFFFFFFFF

    def csi(self, tx: int, rx: int, t_s: float) -> np.ndarray:
        """Buffer entries (complex, natural 64-point order) of one 20 MHz LTF."""
        sc = self.sc
        pa, pb = self.sc.node(tx).position(t_s), self.sc.node(rx).position(t_s)
        d = float(np.linalg.norm(pa - pb))
        d_ground = float(np.hypot(np.linalg.norm((pa - pb)[:2]), pa[2] + pb[2]))
        f = self.f_c + K_NATURAL * SUBCARRIER_SPACING_HZ
        h = (np.exp(-2j * np.pi * np.mod(f * d / SPEED_OF_LIGHT, 1.0))
             + sc.ground_reflection * np.exp(-2j * np.pi * np.mod(f * d_ground / SPEED_OF_LIGHT, 1.0)))
        for person in sc.people:
            path = person.path(pa, pb, t_s)
            if path is not None:
                h = h + path[1] * np.exp(-2j * np.pi * np.mod(f * path[0] / SPEED_OF_LIGHT, 1.0))
        rho = self.rng.normal(0, np.radians(sc.phase_jitter_deg))
        if self.rng.random() < sc.jump_probability:
            rho += self.rng.uniform(-np.pi, np.pi)
        tau = self.rng.normal(0, sc.detection_jitter_ns * 1e-9)
        common = self.lo_phase(rx, t_s) - self.lo_phase(tx, t_s) + rho
        h = h * np.exp(1j * common - 2j * np.pi * K_NATURAL * SUBCARRIER_SPACING_HZ * tau)
        sigma = 10 ** (-sc.snr_db / 20) / np.sqrt(2)
        h = h + sigma * (self.rng.standard_normal(64) + 1j * self.rng.standard_normal(64))
        h = h * 10 ** (self.agc_gain_db(rx, t_s) / 20)             # the AGC scales signal and noise alike
        return np.where(HT20_VALID, h, 0)

    def report(self, tx: int, rx: int, t_s: float) -> SimReport | None:
        """What node ``rx`` measures of a frame from ``tx`` at time ``t_s`` (None: lost)."""
        if self.rng.random() < self.sc.packet_loss:
            return None
        ht = self.csi(tx, rx, t_s) * AMPLITUDE_COUNTS
        lltf = np.where(LLTF_VALID, ht, 0)
        entries = np.concatenate([lltf, ht])
        values = np.empty(2 * entries.size)
        values[0::2], values[1::2] = entries.imag, entries.real            # ESP-IDF: imaginary byte first
        self.seq[rx] += 1
        return SimReport(t_s, tx, rx, self.seq[rx], np.clip(np.round(values), -128, 127).astype(np.int8),
                         self.sensor_time_us(rx, t_s))

    def datagram(self, report: SimReport) -> bytes:
        """This node's ADR-018 v2 datagram, with the transmitter MAC and its µs timestamp."""
        return build_datagram(report.rx, report.sequence, int(self.f_c / 1e6), -50, -92, report.values,
                              sensor_time_us=report.sensor_time_us, transmitter_mac=self.sc.node(report.tx).mac_bytes)

    def text_line(self, report: SimReport) -> bytes:
        """The node's esp-csi (classic) serial line for the same report."""
        return classic_line(report.sequence, self.sc.node(report.tx).mac, -50, -92, self.sc.channel, 0,
                            report.sensor_time_us, report.values)

    def delivery_time(self, t_s: float) -> float:
        """When a datagram sent at scenario time ``t_s`` reaches the collector (network model)."""
        sc = self.sc
        rng = self.network_rng
        t = t_s + sc.network_delay_s + rng.uniform(0, sc.network_jitter_s)
        if rng.random() < sc.reorder_probability:
            t += rng.integers(1, 4) / sc.rate_hz
        if sc.burst_period_s > 0 and sc.burst_hold_s > 0:
            phase = t % sc.burst_period_s
            if phase < sc.burst_hold_s:
                t += sc.burst_hold_s - phase
        return t

    def due(self, t_s: float) -> list[SimReport]:
        """Every report of the frames scheduled up to ``t_s``, in time order."""
        out = []
        for i, link in enumerate(self.sc.links):
            while self.next_send[i] <= t_s:
                t = self.next_send[i] + self.rng.uniform(0, self.sc.send_jitter_s)
                jitter = self.sc.reply_jitter_s if link.reply_jitter_s is None else link.reply_jitter_s
                for tx, rx, when in ([(link.a, link.b, t)] + ([(link.b, link.a, t + self.sc.reply_delay_s
                                                               + self.rng.normal(0, jitter))]
                                                              if link.bidirectional else [])):
                    report = self.report(tx, rx, when)
                    if report is not None:
                        out.append(report)
                self.next_send[i] += 1.0 / self.sc.rate_hz
        return sorted(out, key=lambda r: r.t_s)


class Network:
    """Datagrams in flight: each is delivered at its SwarmSimulation.delivery_time, in that order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._count = 0

    def send(self, deliver_at: float, item: object) -> None:
        heapq.heappush(self._heap, (deliver_at, self._count, item))
        self._count += 1

    def arrived(self, t_s: float) -> list:
        """Every item due by scenario time ``t_s``, in delivery order."""
        out = []
        while self._heap and self._heap[0][0] <= t_s:
            out.append(heapq.heappop(self._heap)[2])
        return out
