"""Simulation scenario: transmitters with ground-truth positions and motion, and impairments."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import direction_vector


@dataclass
class Reflection:
    """A second propagation path of a transmitter's frames (multipath), a plane wave.

    Its complex gain relative to the direct path is ``10**(gain_db/20)`` times a phase that is
    fixed, or new for every frame with ``random_phase`` (a moving reflector).
    """

    azimuth_deg: float = 45.0
    elevation_deg: float = 0.0
    excess_delay_ns: float = 30.0
    """Extra propagation delay over the direct path, ns (decorrelates the paths across subcarriers)."""
    gain_db: float = -3.0
    random_phase: bool = True


@dataclass
class Transmitter:
    """A WiFi transmitter seen by the array. Angles in degrees, distance in metres.

    Motion: the azimuth changes at ``azimuth_rate_deg_s``; with ``sweep_limit_deg`` set it
    sweeps back and forth (triangle wave) between -limit and +limit.
    """

    mac: str = "02:00:00:00:00:01"
    azimuth_deg: float = 20.0
    elevation_deg: float = 0.0
    distance_m: float = 10.0
    azimuth_rate_deg_s: float = 0.0
    sweep_limit_deg: float | None = None
    spherical_wave: bool = False
    snr_db: float | None = None
    """Overrides the scenario SNR for this transmitter."""
    reflections: list[Reflection] = field(default_factory=list)

    def azimuth_at(self, t_s: float) -> float:
        """Ground-truth azimuth in degrees at scenario time ``t_s``."""
        az = self.azimuth_deg + self.azimuth_rate_deg_s * t_s
        if self.sweep_limit_deg is None:
            return az
        lim = self.sweep_limit_deg
        period = 4 * lim
        phase = np.mod(az + lim, period)
        return float(np.where(phase < 2 * lim, phase - lim, 3 * lim - phase))

    def position_at(self, t_s: float) -> np.ndarray:
        """Ground-truth position (m) in the array frame at scenario time ``t_s``."""
        u = direction_vector(np.radians(self.azimuth_at(t_s)), np.radians(self.elevation_deg))
        return self.distance_m * u

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))


@dataclass
class Impairments:
    """Per-sensor receiver errors that calibration must remove, and link imperfections."""

    lo_phase: bool = True
    """Random LO phase per sensor, uniform in [-pi, pi)."""
    timing_offset_std_ns: float = 5.0
    """Std of the per-sensor timing offset delta (not visible in timestamps), ns."""
    clock_offset_std_ns: float = 30.0
    """Std of the per-sensor timestamp clock offset (visible in timestamps, removed as STO), ns."""
    report_loss: float = 0.0
    """Probability that one sensor's report of a frame is missing."""
    gain_std_db: float = 0.0
    """Std of the per-sensor receiver gain (sensitivity) error, dB: what power calibration removes."""


@dataclass
class Faults:
    """Probabilities (per sensor packet) of deliberately corrupt output, for robustness tests."""

    truncate: float = 0.0
    bad_magic: float = 0.0
    bad_crc: float = 0.0
    unknown_tlv: float = 0.0
    drop_fragment: float = 0.0
    repeat_fragment: float = 0.0


@dataclass
class Scenario:
    """Everything the simulated board transmits: channel, rates, transmitters, impairments."""

    channel: int = 6
    secondary: int = 1
    """+1 above, -1 below, 0 none."""
    frame_rate_hz: float = 100.0
    """OTA frames per second per transmitter."""
    reference_rate_hz: float = 100.0
    """Reference packets per second while the RF switch is in REFERENCE."""
    snr_db: float = 20.0
    format: str = "auto"
    """"auto" (HT40 with a secondary channel, else HT20), or one of "lltf", "ht20", "ht40", "he20"."""
    transmitters: list[Transmitter] = field(default_factory=lambda: [Transmitter()])
    impairments: Impairments = field(default_factory=Impairments)
    faults: Faults = field(default_factory=Faults)
    seed: int = 1

    @classmethod
    def from_dict(cls, data: dict) -> "Scenario":
        """Build from a plain dict (YAML); unknown keys raise TypeError with their name."""
        data = dict(data)
        txs = []
        for t in data.pop("transmitters", [{}]):
            t = dict(t)
            reflections = [Reflection(**r) for r in t.pop("reflections", [])]
            txs.append(Transmitter(reflections=reflections, **t))
        imp = Impairments(**data.pop("impairments", {}))
        faults = Faults(**data.pop("faults", {}))
        return cls(transmitters=txs, impairments=imp, faults=faults, **data)
