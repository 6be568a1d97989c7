"""Simulation scenario: transmitters with ground-truth positions and motion, and impairments."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..geometry import direction_vector
from .person import PersonSpec


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


MAX_PATH_AZIMUTH_DEG = 85.0


@dataclass
class ChannelModel:
    """How a transmitter's frames reach the array beyond the geometric direct path, frame by frame.

    ``ideal`` (:meth:`preset`): a constant-modulus direct path and the transmitter's own
    ``reflections``, the receiver gains fixed: for unit checks of calibration and geometry.
    ``realistic`` (the default): an indoor channel as the ESP32 sees it:

    * the direct path fades per frame (Rician, ``k_factor_db``; ``fading: rayleigh`` for none
      of it specular); its mean power is 1, the unit of the SNR;
    * ``paths``: specular paths added to the transmitter's ``reflections``, each a Rayleigh-fading
      plane wave relative to the direct path (azimuth offset, excess delay, mean power); the
      default's RMS delay spread is 22.6 ns (-10 dB at 40 ns, -13 dB at 100 ns), inside the
      20-80 ns measured indoors. Two paths besides the direct one: the board's four antenna
      columns resolve at most three directions in azimuth;
    * AGC: every sensor sets its gain per frame so that its CSI lands at the same level, with
      ``agc_jitter_db`` (1-sigma, dB) of scatter around that target, and reports it in rx_ctrl
      (rx_gain in 1 dB steps, fft_gain in 1/4 dB steps), as the ESP32 does;
    * ``phase_noise_deg``: 1-sigma phase error per sensor and frame, common to its subcarriers
      (each ESP32's PLL jitters about the shared 40 MHz reference).

    Residual carrier frequency offset is common to all sensors (they share one reference clock)
    and is part of the per-frame common phase every frame already has, so it needs no parameter.
    """

    fading: str = "rician"
    """"none" (constant modulus), "rician" (``k_factor_db``) or "rayleigh" (complex Gaussian)."""
    k_factor_db: float = 6.0
    """Rician K of the direct path: specular power over scattered power, dB."""
    paths: list[dict] = field(default_factory=lambda: [
        {"azimuth_offset_deg": 50.0, "excess_delay_ns": 40.0, "gain_db": -10.0},
        {"azimuth_offset_deg": -70.0, "excess_delay_ns": 100.0, "gain_db": -13.0}])
    """Extra Rayleigh-fading paths: azimuth relative to the direct path (deg), excess delay (ns),
    mean power relative to the direct path (dB)."""
    agc: bool = True
    agc_jitter_db: float = 1.0
    phase_noise_deg: float = 0.5

    FADINGS = ("none", "rician", "rayleigh")

    @classmethod
    def preset(cls, name: str) -> "ChannelModel":
        """``realistic`` or ``ideal``; ValueError names the choices."""
        if name == "realistic":
            return cls()
        if name == "ideal":
            return cls(fading="none", paths=[], agc=False, agc_jitter_db=0.0, phase_noise_deg=0.0)
        raise ValueError(f"channel preset must be 'realistic' or 'ideal', got {name!r}")

    @classmethod
    def from_value(cls, value: "str | dict | ChannelModel") -> "ChannelModel":
        """A preset name, or a dict of fields over a ``preset`` (default realistic)."""
        if isinstance(value, ChannelModel):
            return value
        if isinstance(value, str):
            return cls.preset(value)
        data = dict(value)
        base = cls.preset(data.pop("preset", "realistic"))
        for key, item in data.items():
            if key not in cls.__dataclass_fields__:
                raise TypeError(f"unknown channel field {key!r}")
            setattr(base, key, item)
        base.__post_init__()
        return base

    def __post_init__(self) -> None:
        if self.fading not in self.FADINGS:
            raise ValueError(f"channel fading must be one of {self.FADINGS}, got {self.fading!r}")
        for path in self.paths:
            if set(path) != {"azimuth_offset_deg", "excess_delay_ns", "gain_db"}:
                raise ValueError(f"a channel path needs exactly azimuth_offset_deg, excess_delay_ns and gain_db, "
                                 f"got {sorted(path)}")
        if self.agc_jitter_db < 0 or self.phase_noise_deg < 0:
            raise ValueError("agc_jitter_db and phase_noise_deg must be >= 0")

    def path_directions(self, azimuth_deg: float) -> list[float]:
        """Azimuths (deg) of the extra paths for a direct path at ``azimuth_deg``: the offset is
        mirrored to the other side of the direct path where it would leave the front half-space
        (|azimuth| > 85 deg), so that no path folds back onto the direct one."""
        out = []
        for p in self.paths:
            az = azimuth_deg + p["azimuth_offset_deg"]
            out.append(az if abs(az) <= MAX_PATH_AZIMUTH_DEG else azimuth_deg - p["azimuth_offset_deg"])
        return out


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
    channel: ChannelModel = field(default_factory=ChannelModel)
    """Fading, extra paths, AGC and phase noise (YAML: a preset name or a dict, see ChannelModel)."""
    track: Callable[[float], tuple[np.ndarray, list[tuple[np.ndarray, float]]]] | None = None
    """Set by a scene (sim/scene.py), not by YAML: scenario time (s) -> position (3,) m in the array
    frame and mirror-image sources [(position (3,) m, gain dB relative to the direct path)]. It
    overrides azimuth, elevation and distance."""

    def azimuth_at(self, t_s: float) -> float:
        """Ground-truth azimuth in degrees at scenario time ``t_s``."""
        if self.track is not None:
            p = self.track(t_s)[0]
            return float(np.degrees(np.arctan2(p[1], p[0])))
        az = self.azimuth_deg + self.azimuth_rate_deg_s * t_s
        if self.sweep_limit_deg is None:
            return az
        lim = self.sweep_limit_deg
        period = 4 * lim
        phase = np.mod(az + lim, period)
        return float(np.where(phase < 2 * lim, phase - lim, 3 * lim - phase))

    def elevation_at(self, t_s: float) -> float:
        """Ground-truth elevation in degrees at scenario time ``t_s``."""
        if self.track is None:
            return self.elevation_deg
        p = self.track(t_s)[0]
        return float(np.degrees(np.arctan2(p[2], np.hypot(p[0], p[1]))))

    def images_at(self, t_s: float) -> list[tuple[np.ndarray, float]]:
        """Mirror-image sources of the scene's walls (none without a track)."""
        return [] if self.track is None else self.track(t_s)[1]

    def position_at(self, t_s: float) -> np.ndarray:
        """Ground-truth position (m) in the array frame at scenario time ``t_s``."""
        if self.track is not None:
            return self.track(t_s)[0]
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
    people: list[PersonSpec] = field(default_factory=list)
    """People in the room (sim/person.py), positions in the array frame (m): each adds a path
    transmitter -> chest -> antenna to every transmitter's frames, with breathing and gross motion."""
    seed: int = 1

    @classmethod
    def from_dict(cls, data: dict) -> "Scenario":
        """Build from a plain dict (YAML); unknown keys raise TypeError with their name."""
        data = dict(data)
        txs = []
        for t in data.pop("transmitters", [{}]):
            t = dict(t)
            reflections = [Reflection(**r) for r in t.pop("reflections", [])]
            channel = ChannelModel.from_value(t.pop("channel", "realistic"))
            txs.append(Transmitter(reflections=reflections, channel=channel, **t))
        imp = Impairments(**data.pop("impairments", {}))
        faults = Faults(**data.pop("faults", {}))
        people = [PersonSpec(**{"seed": i, **person}) for i, person in enumerate(data.pop("people", None) or [])]
        return cls(transmitters=txs, impairments=imp, faults=faults, people=people, **data)

    @classmethod
    def from_file(cls, path: str | Path) -> "Scenario":
        """Read a scenario YAML (the mapping itself or under ``scenario:``); OSError, yaml.YAMLError,
        TypeError (unknown key) or ValueError (bad value) otherwise."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data.get("scenario", data))
