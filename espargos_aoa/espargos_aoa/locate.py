"""Transmitter positions with covariance from bearings of several arrays, or of one moving array.
Pure (no ROS).

Every bearing is a ray from its array's position at its stamp. Each ray gives linear constraints
on the transmitter's position ``x`` (pseudo-linear bearing measurements): for a direction of
azimuth ``az`` and elevation ``el`` in the array frame, ``e_az . (x - p) = 0`` with ``e_az`` the
azimuth's tangent, 1-sigma ``sigma_az * r * cos(el)`` at range ``r``, and, when the elevation was
estimated, ``e_el . (x - p) = 0`` with 1-sigma ``sigma_el * r``. A Kalman filter per transmitter
fuses them in stamp order under a motion model (:data:`MOTION_MODELS`): several arrays intersect
their rays at once; one moving array builds its baseline over time. A bearing whose innovation
falls outside the filter's gate (reflection, wrong peak) or whose ray points away from the
estimate is rejected and counted. Without elevations the height is the prior's (``height``,
``height_std``) and the covariance says so.

A position is only reported once its largest 1-sigma is below ``max_position_std``: one array
standing still, or rays near parallel, leave the range unobservable, and no position comes out.
"""
from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections import Counter, deque
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.special import chdtri  # chi-square quantile: chdtri(dof, 1 - p); lighter than scipy.stats

from .diagnostic_counters import LOCATOR_COUNTERS
from .poses import ArrayPose, PoseHistory

MAX_ORIGINS = 64
"""Ray origins a track keeps for its parallax (the oldest go first)."""
MAX_NOISE_SCALE = 100.0
"""The learnt bearing variance factor stops here (10x the reported 1-sigma)."""
VELOCITY_STEP_S = 0.05
"""s either side of a bearing's time between the platform poses that give an array's velocity."""
STAMP_TOLERANCE_S = 1e-6
"""Rounding allowed in differences of stamps (epoch seconds as float64 resolve ~0.2 µs)."""
ORIGIN_SPACING_M = 0.25
"""A ray origin closer than this to a kept one is not kept again."""


class MotionModel(ABC):
    """How a transmitter moves between bearings: state layout, transition and process noise."""

    dim: int

    @classmethod
    @abstractmethod
    def from_config(cls, config: "LocatorConfig") -> "MotionModel":
        """The model with its noise from locator parameters."""

    @abstractmethod
    def transition(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(F, Q) over ``dt`` seconds, each ``(dim, dim)``."""

    def initial(self, position: np.ndarray, position_cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State and covariance for a prior position (3,) with covariance (3, 3)."""
        x = np.zeros(self.dim)
        x[:3] = position
        p = np.zeros((self.dim, self.dim))
        p[:3, :3] = position_cov
        if self.dim > 3:
            p[3:, 3:] = np.eye(self.dim - 3) * self.initial_velocity_std ** 2
        return x, p


@dataclass
class ConstantPosition(MotionModel):
    """A transmitter that stays put but may drift: random walk of ``position_noise`` m^2/s per axis."""

    position_noise: float = 0.01
    dim: int = 3

    @classmethod
    def from_config(cls, config: "LocatorConfig") -> "ConstantPosition":
        return cls(position_noise=config.position_noise)

    def transition(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3), np.eye(3) * self.position_noise * dt


@dataclass
class ConstantVelocity(MotionModel):
    """A walking person, a drone: white-noise acceleration of spectral density ``accel_noise`` m^2/s^3."""

    accel_noise: float = 0.5
    initial_velocity_std: float = 1.5
    """m/s, 1-sigma of the velocity prior of a new track (people walk at up to ~1.5 m/s)."""
    dim: int = 6

    @classmethod
    def from_config(cls, config: "LocatorConfig") -> "ConstantVelocity":
        return cls(accel_noise=config.accel_noise)

    def transition(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        f = np.eye(6)
        f[:3, 3:] = np.eye(3) * dt
        q = self.accel_noise * np.block([[np.eye(3) * dt ** 3 / 3, np.eye(3) * dt ** 2 / 2],
                                         [np.eye(3) * dt ** 2 / 2, np.eye(3) * dt]])
        return f, q


MOTION_MODELS = {"constant_position": ConstantPosition, "constant_velocity": ConstantVelocity}
"""Motion model name (locator_node's ``motion_model``) -> class; add a model here."""


def _param(default, description: str):
    """A LocatorConfig field: its default and the description locator_node declares it with."""
    return field(default=default, metadata={"description": description})


@dataclass
class LocatorConfig:
    """Parameters of :class:`Locator`; locator_node declares each field as a parameter with its
    default and description (:func:`parameter_descriptions`)."""

    motion_model: str = _param("constant_velocity", "constant_velocity (walking people, drones) or constant_position")
    accel_noise: float = _param(0.5, "m^2/s^3, constant_velocity's white-noise acceleration")
    position_noise: float = _param(0.01, "m^2/s, constant_position's random walk")
    bearing_std_floor: float = _param(0.0, "deg added in quadrature to every bearing's 1-sigma (array pose errors, "
                                           "multipath bias)")
    motion_bias: float = _param(0.5, "deg of azimuth error per m/s between transmitter and array that the array's "
                                     "bearings share for about bias_time (a state per array and track; 0: none). "
                                     "Measured in the room scene: bearings of a person walking at 1 m/s err by 1.0-1.5 "
                                     "deg, correlated over 1-2 s; those of a transmitter and array that stand do not")
    bias_time: float = _param(1.0, "s, correlation time of the motion_bias states")
    noise_adaptation: float = _param(0.02, "rate at which a track scales its bearings' variance so that their "
                                           "normalised innovations average one (0: trust the reported 1-sigma)")
    gate_probability: float = _param(0.999, "bearings whose innovation lies beyond this chi-square quantile are "
                                            "rejected")
    max_position_std: float = _param(2.0, "m; positions whose largest 1-sigma exceeds this are withheld "
                                          "(poor_geometry)")
    min_parallax: float = _param(15.0, "deg; positions are withheld until the fused bearings' array positions span "
                                       "this angle seen from the transmitter (one array standing still spans none; "
                                       "rays of wrong paths of two arrays 25 cm apart met at 10-14 deg)")
    min_bearings: int = _param(10, "a (re)started track is reported once it has fused this many bearings (a few early "
                                   "rays, reflections among them, can cross far from the transmitter)")
    reorder_delay: float = _param(1.0, "s of stamp time to wait at most for an array whose bearings lag the others' "
                                       "(each array's bearings arrive in order, the arrays' streams are merged "
                                       "in stamp order)")
    height: float = _param(float("nan"), "m, prior height of transmitters in the fixed frame (NaN: the arrays' mean)")
    height_std: float = _param(1.0, "m, 1-sigma of the height prior (the height's 1-sigma without elevation bearings)")
    prior_std: float = _param(50.0, "m, 1-sigma of a new track's horizontal prior (uninformative)")
    max_rejections: int = _param(20, "a track restarts after this many rejected bearings in a row")
    max_gap: float = _param(10.0, "s without a fused bearing after which a track restarts")
    min_range: float = _param(0.3, "m; closer ranges are clipped when weighting a bearing")
    far_field: float = _param(1.0, "m; positions closer than this to an array whose bearings they fuse are withheld "
                                   "(poor_geometry): bearings assume a plane wave, which a 2 x 4 board sees from about "
                                   "1 m on, and wrong bearings of arrays close together (a reflection) meet there")

    def validate(self) -> None:
        """ValueError naming the parameter that cannot work."""
        if self.motion_model not in MOTION_MODELS:
            raise ValueError(f"motion_model must be one of {sorted(MOTION_MODELS)}, got {self.motion_model!r}")
        if not 0.5 < self.gate_probability < 1.0:
            raise ValueError(f"gate_probability must be in (0.5, 1), got {self.gate_probability}")
        for name in ("accel_noise", "position_noise", "bearing_std_floor", "reorder_delay", "height_std",
                     "noise_adaptation", "motion_bias"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_position_std", "prior_std", "max_gap", "min_range", "min_parallax", "far_field", "bias_time"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_rejections", "min_bearings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def motion(self) -> MotionModel:
        return MOTION_MODELS[self.motion_model].from_config(self)


def parameter_descriptions() -> dict[str, tuple[object, str]]:
    """LocatorConfig's fields: name -> (default, description)."""
    return {f.name: (f.default, f.metadata["description"]) for f in fields(LocatorConfig)}


PLATFORM_POSE_TYPES = ("pose_stamped", "odometry")
LOCATOR_METHODS = {
    "kalman": "each array's strongest bearing (rank 0), fused over time by a Kalman filter per transmitter",
    "spectrum_grid": "the arrays' MUSIC spectra added on a grid pick each array's bearing of the transmitter, of any "
                     "rank (multipath-robust; a transmitter standing still over grid_memory; espargos_aoa/spectrum_grid.py)",
}
"""locator_node's ``method`` -> what it does."""
NODE_PARAMETERS = {
    "method": ("kalman", "; ".join(f"{name}: {text}" for name, text in LOCATOR_METHODS.items())),
    "bearing_topics": (["bearings"], "BearingArray topics of the arrays to fuse"),
    "spectrum_topics": ([""], "SpatialSpectrum topics (method spectrum_grid), one per bearing topic (empty: each bearing "
                              "topic with its last name replaced by spatial_spectrum)"),
    "array_poses": ([""], "'frame_id: x y z roll pitch yaw' (m, rad) per array: its pose in fixed_frame, or on the "
                          "platform when platform_pose_topic is set"),
    "fixed_frame": ("map", "frame of the positions (REP 105: map, or odom on a moving robot)"),
    "platform_pose_topic": ("", "pose of the platform carrying the arrays in fixed_frame (empty: arrays fixed)"),
    "platform_pose_type": ("pose_stamped", "message of platform_pose_topic: pose_stamped or odometry"),
    "publish_rate": (5.0, "Hz of bearing-stamp time: at most this many TransmitterPositionArray per second"),
    "markers": (True, "publish rviz markers on position_markers"),
}
"""locator_node's parameters besides LocatorConfig's: name -> (default, description)."""


def parameter_table() -> str:
    """The README's Markdown table of locator_node's parameters."""
    from .spectrum_grid import grid_parameter_descriptions       # it builds on this module
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for name, (default, text) in {**NODE_PARAMETERS, **parameter_descriptions(), **grid_parameter_descriptions()}.items():
        rows.append(f"| `{name}` | `{default}` | {text} |")
    return "\n".join(rows)


@dataclass(order=True)
class BearingObservation:
    """One bearing (the strongest source of one array's BearingArray), angles in rad in the array frame."""

    stamp: float
    """s (the BearingArray header stamp)."""
    array_id: str = field(compare=False)
    """The array's TF frame (BearingArray header frame_id)."""
    mac: str = field(compare=False)
    azimuth: float = field(compare=False)
    azimuth_std: float = field(compare=False)
    elevation: float = field(default=float("nan"), compare=False)
    """NaN when the elevation was not estimated."""
    elevation_std: float = field(default=float("nan"), compare=False)
    window_span: float = field(default=0.0, compare=False)
    """s of CSI stamps behind the bearing (BearingArray.window_span)."""
    window_frames: int = field(default=1, compare=False)
    """CSI frames behind the bearing (BearingArray.window_frames)."""

    @property
    def window_duration(self) -> float:
        """s the window's frames stand for, one frame interval each (the span plus one interval)."""
        n = max(self.window_frames, 1)
        return self.window_span * n / (n - 1) if n > 1 else self.window_span

    @property
    def time(self) -> float:
        """When the bearing was true (s): the middle of its window. Bearings are merged in stamp
        order; the filter takes each at this time."""
        return self.stamp - self.window_span / 2

    @property
    def valid(self) -> bool:
        az_ok = np.isfinite(self.azimuth) and np.isfinite(self.azimuth_std) and self.azimuth_std >= 0
        el_ok = np.isnan(self.elevation) or (np.isfinite(self.elevation_std) and self.elevation_std >= 0)
        return bool(az_ok and el_ok)


def ray_constraints(pose: ArrayPose, obs: BearingObservation) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``h`` (k, 3) with ``h @ x == h @ pose.position`` on the bearing's ray (k = 1, or 2 with
    an elevation), and the angular 1-sigma of each row (rad)."""
    az = obs.azimuth
    el = 0.0 if np.isnan(obs.elevation) else obs.elevation
    rows = [pose.rotation @ np.array([-np.sin(az), np.cos(az), 0.0])]
    stds = [obs.azimuth_std]
    if not np.isnan(obs.elevation):
        rows.append(pose.rotation @ np.array([-np.cos(az) * np.sin(el), -np.sin(az) * np.sin(el), np.cos(el)]))
        stds.append(obs.elevation_std)
    return np.array(rows), np.array(stds)


def angle_measurement(pose: ArrayPose, obs: BearingObservation, position: np.ndarray,
                      min_range: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bearing as angles about a predicted ``position`` (3,): Jacobian rows (k, 3) of azimuth
    (and elevation) with respect to the fixed-frame position, the innovations (rad; azimuth
    wrapped to (-pi, pi]) and their 1-sigma (rad)."""
    dx, dy, dz = pose.rotation.T @ (position - pose.position)
    rh = max(float(np.hypot(dx, dy)), min_range)
    rows = [np.array([-dy, dx, 0.0]) / rh ** 2]
    innovations = [float(np.angle(np.exp(1j * (obs.azimuth - np.arctan2(dy, dx)))))]
    stds = [obs.azimuth_std]
    if not np.isnan(obs.elevation):
        r2 = max(rh ** 2 + dz ** 2, min_range ** 2)
        rows.append(np.array([-dx * dz / rh, -dy * dz / rh, rh]) / r2)
        innovations.append(obs.elevation - float(np.arctan2(dz, rh)))
        stds.append(obs.elevation_std)
    return np.array(rows) @ pose.rotation.T, np.array(innovations), np.array(stds)


def overlap_factor(obs: BearingObservation, previous_stamp: float | None) -> float:
    """Factor (>= 1) on the variance of a bearing whose window shares frames with its array's bearing
    fused before it (stamped ``previous_stamp``, None: none): aoa_node slides its window by fewer
    frames than it holds (8 frames, 4 new per bearing in config/room.yaml), so consecutive bearings'
    errors are correlated and only the new frames' share of a window is new information. Its
    window's duration over the stamp step, at most its frame count (a repeated stamp: all frames
    shared)."""
    if previous_stamp is None:
        return 1.0
    step = obs.stamp - previous_stamp
    most = float(max(obs.window_frames, 1))
    return most if step <= 0 else float(np.clip(obs.window_duration / step, 1.0, most))


def parallax_deg(origins: np.ndarray, position: np.ndarray) -> float:
    """Angle (deg) the ray ``origins`` (k, 3) m span seen from ``position`` (3,) m: twice the largest
    angle of one of them from their mean direction (0 for fewer than two)."""
    if len(origins) < 2:
        return 0.0
    d = np.asarray(origins, float) - position
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    mean = d.mean(axis=0)
    mean /= max(np.linalg.norm(mean), 1e-9)
    return float(2 * np.degrees(np.arccos(np.clip(d @ mean, -1.0, 1.0)).max()))


@dataclass
class Estimate:
    """A transmitter's position (3,) m and covariance (3, 3) m^2 in the fixed frame at ``stamp`` (s)."""

    mac: str
    stamp: float
    position: np.ndarray
    covariance: np.ndarray
    velocity: np.ndarray | None
    arrays: list[str]
    """Arrays whose bearings were fused into this track since its start."""
    bearings_used: int
    observable: bool
    """False when the largest 1-sigma exceeds max_position_std or the parallax is below min_parallax."""
    parallax_deg: float
    height_estimated: bool
    """False: no elevation bearings, the height is the prior's."""
    origins: dict[str, np.ndarray]
    """Array id -> its position (m) at the last bearing of it fused (for drawing the rays)."""


class Track:
    """The Kalman filter of one transmitter."""

    def __init__(self, mac: str, motion: MotionModel, prior_position: np.ndarray, prior_cov: np.ndarray,
                 config: LocatorConfig) -> None:
        self.mac = mac
        self.motion = motion
        self.config = config
        self.x, self.p = motion.initial(prior_position, prior_cov)
        self.bias_index: dict[str, int] = {}
        """Array id -> index in the state of the azimuth error its bearings share (motion_bias), rad."""
        self.array_velocity: dict[str, np.ndarray] = {}
        """Array id -> its velocity (3,) m/s in the fixed frame at its last bearing."""
        self.height_prior = (float(prior_position[2]), float(prior_cov[2, 2]))
        self.elevations = False
        """Whether an elevation has been fused: until then the height is the prior's."""
        self.stamp: float | None = None
        self.bearings_used = 0
        self.rejections_in_a_row = 0
        self.noise_scale = 1.0
        """Factor (>= 1) on the bearings' variance, learnt from the innovations: multipath that moves
        with the transmitter makes bearings scatter more than their reported 1-sigma."""
        self.arrays: set[str] = set()
        self.last_origins: dict[str, np.ndarray] = {}
        self.origins: deque[np.ndarray] = deque(maxlen=MAX_ORIGINS)
        """Distinct positions (m) the fused bearings were taken from."""
        self.last_fused_stamp: dict[str, float] = {}
        """Array id -> stamp (s) of its newest bearing fused (:meth:`_overlap`)."""

    def predict(self, stamp: float) -> None:
        if self.stamp is not None and stamp > self.stamp:
            dt, m, n = stamp - self.stamp, self.motion.dim, len(self.x)
            f, q = np.eye(n), np.zeros((n, n))
            f[:m, :m], q[:m, :m] = self.motion.transition(dt)
            decay = np.exp(-dt / self.config.bias_time)          # first-order Gauss-Markov biases
            f[m:, m:] *= decay
            for array_id, i in self.bias_index.items():
                q[i, i] = self._bias_std(array_id) ** 2 * (1 - decay ** 2)
            self.x = f @ self.x
            self.p = f @ self.p @ f.T + q
        self.stamp = stamp if self.stamp is None else max(self.stamp, stamp)
        if not self.elevations:
            self._hold_height()

    def _hold_height(self) -> None:
        """Without elevations the height is unobserved: keep it at the prior (mean and variance)
        instead of letting the motion model's noise grow it without bound."""
        vertical = [2, 5] if self.motion.dim >= 6 else [2]
        self.p[vertical, :] = 0.0
        self.p[:, vertical] = 0.0
        self.x[2], self.p[2, 2] = self.height_prior
        if self.motion.dim >= 6:
            self.x[5], self.p[5, 5] = 0.0, 1e-6

    @property
    def position_std_max(self) -> float:
        return float(np.sqrt(max(np.linalg.eigvalsh(self.p[:3, :3]).max(), 0.0)))

    @property
    def parallax_deg(self) -> float:
        """Angle (deg) the fused bearings' origins span seen from the estimate (:func:`parallax_deg`)."""
        return parallax_deg(np.array(self.origins).reshape(-1, 3), self.x[:3])

    @property
    def ranged(self) -> bool:
        """The covariance is small enough to gate bearings with."""
        return self.position_std_max <= self.config.max_position_std

    @property
    def nearest_array_m(self) -> float:
        """Horizontal distance (m) from the estimate to the nearest array whose bearings it fused."""
        if not self.last_origins:
            return float("inf")
        origins = np.array(list(self.last_origins.values()))
        return float(np.min(np.linalg.norm(origins[:, :2] - self.x[:2], axis=1)))

    @property
    def observable(self) -> bool:
        """The position is worth reporting: small covariance from enough rays that really cross, in
        the arrays' far field."""
        return self.ranged and self.bearings_used >= self.config.min_bearings and \
            self.parallax_deg >= self.config.min_parallax and self.nearest_array_m >= self.config.far_field

    def update(self, pose: ArrayPose, obs: BearingObservation, array_velocity: np.ndarray | None = None) -> str:
        """Fuse one bearing (after :meth:`predict` to its time): "used", "rejected_inconsistent" or
        "rejected_behind".

        Until the track is ranged, the bearing is a pseudo-linear constraint (linear in the
        position: any prior converges). Once ranged, it is an extended Kalman update on the angles
        themselves: the pseudo-linear form weights an array's rays more the closer the estimate is
        to it, and every ray of an array passes through the array, so a track could collapse onto
        an array and stay there."""
        self.array_velocity[obs.array_id] = np.zeros(3) if array_velocity is None else array_velocity
        bias = self._bias_state(obs.array_id)
        offset = self.x[:3] - pose.position
        direction = pose.direction(obs.azimuth, 0.0 if np.isnan(obs.elevation) else obs.elevation)
        along = float(direction @ offset)
        spread = float(np.sqrt(max(direction @ self.p[:3, :3] @ direction, 0.0)))
        ranged = self.ranged
        if ranged:
            h3, innovation, angle_std = angle_measurement(pose, obs, self.x[:3], self.config.min_range)
            scale = np.ones(len(innovation))
            rng = max(float(np.linalg.norm(offset)), self.config.min_range)
        else:
            h3, angle_std = ray_constraints(pose, obs)
            innovation = h3 @ (pose.position - self.x[:3])
            # Range of the lateral error: the predicted range plus its 1-sigma (the track is unranged).
            rng = max(float(np.linalg.norm(offset)) + spread, self.config.min_range)
            cos_el = np.cos(0.0 if np.isnan(obs.elevation) else obs.elevation)
            scale = np.array([rng * cos_el] + [rng] * (len(angle_std) - 1))
        floor = np.radians(self.config.bearing_std_floor)
        r = self.noise_scale * self._overlap(obs) * np.diag(
            (scale ** 2) * (angle_std ** 2 + floor ** 2 + self._smear(direction, rng, obs.window_span) ** 2))
        h = np.zeros((len(h3), len(self.x)))
        h[:, :3] = h3
        if bias is not None:                                    # azimuth measured = true + the array's bias
            h[0, bias] = scale[0]
            innovation[0] -= scale[0] * self.x[bias]
        s = h @ self.p @ h.T + r
        if ranged:
            if along < -3 * spread:
                self.rejections_in_a_row += 1
                return "rejected_behind"
            nis = float(innovation @ np.linalg.solve(s, innovation))
            if nis > chdtri(len(innovation), 1.0 - self.config.gate_probability):
                self.rejections_in_a_row += 1
                return "rejected_inconsistent"
            # Covariance matching: drive the mean normalised innovation per dimension towards 1.
            step = 1.0 + self.config.noise_adaptation * (nis / len(innovation) - 1.0)
            self.noise_scale = float(np.clip(self.noise_scale * step, 1.0, MAX_NOISE_SCALE))
        gain = self.p @ h.T @ np.linalg.inv(s)
        self.x = self.x + gain @ innovation
        i_kh = np.eye(len(self.x)) - gain @ h
        self.p = i_kh @ self.p @ i_kh.T + gain @ r @ gain.T          # Joseph form: stays symmetric, PSD
        self.bearings_used += 1
        self.elevations = self.elevations or not np.isnan(obs.elevation)
        self.rejections_in_a_row = 0
        self.arrays.add(obs.array_id)
        self.last_origins[obs.array_id] = pose.position.copy()
        self.last_fused_stamp[obs.array_id] = obs.stamp
        if not self.origins or np.linalg.norm(np.array(self.origins) - pose.position, axis=1).min() >= ORIGIN_SPACING_M:
            self.origins.append(pose.position.copy())
        return "used"

    def _bias_std(self, array_id: str) -> float:
        """Stationary 1-sigma (rad) of ``array_id``'s motion_bias state at the present speed between
        the track and the array."""
        velocity = self.x[3:6] if self.motion.dim >= 6 else np.zeros(3)
        return np.radians(self.config.motion_bias) * float(np.linalg.norm(velocity - self.array_velocity[array_id]))

    def _bias_state(self, array_id: str) -> int | None:
        """Index of ``array_id``'s bias in the state, added (mean 0, :meth:`_bias_std`) once the
        transmitter and the array move relative to each other; None before, or without ``motion_bias``."""
        if self.config.motion_bias <= 0:
            return None
        if array_id not in self.bias_index:
            std = self._bias_std(array_id)
            if std <= 0:
                return None
            n = len(self.x)
            self.bias_index[array_id] = n
            self.x = np.append(self.x, 0.0)
            p = np.zeros((n + 1, n + 1))
            p[:n, :n] = self.p
            p[n, n] = std ** 2
            self.p = p
        return self.bias_index[array_id]

    def _overlap(self, obs: BearingObservation) -> float:
        """:func:`overlap_factor` against the array's last bearing fused."""
        return overlap_factor(obs, self.last_fused_stamp.get(obs.array_id))

    def _smear(self, direction: np.ndarray, rng: float, window_span: float) -> float:
        """1-sigma (rad) of a bearing of a transmitter that moved across the ray during the window:
        the angle it swept, as a uniform spread over the window (0 without a velocity estimate)."""
        if self.motion.dim < 6 or window_span <= 0:
            return 0.0
        v = self.x[3:6]
        lateral = float(np.linalg.norm(v - (v @ direction) * direction))
        return lateral / rng * window_span / np.sqrt(12.0)

    def estimate(self) -> Estimate:
        return Estimate(self.mac, float(self.stamp), self.x[:3].copy(), self.p[:3, :3].copy(),
                        self.x[3:6].copy() if self.motion.dim >= 6 else None, sorted(self.arrays),
                        self.bearings_used, self.observable, self.parallax_deg, self.elevations,
                        dict(self.last_origins))


class Locator:
    """Bearings of any number of arrays -> one :class:`Track` per transmitter MAC, fused in stamp order.

    Array poses: :meth:`set_static_pose` (rig YAML) for an array fixed in the fixed frame, or
    :meth:`set_mount` plus :meth:`add_platform_pose` for arrays on a moving platform (the
    platform's pose over time from a pose topic, composed with the array's mount on it).
    """

    def __init__(self, config: LocatorConfig | None = None) -> None:
        self.config = config or LocatorConfig()
        self.config.validate()
        self.counters: Counter = Counter(dict.fromkeys(LOCATOR_COUNTERS, 0))
        self.tracks: dict[str, Track] = {}
        self.static_poses: dict[str, ArrayPose] = {}
        self.mounts: dict[str, ArrayPose] = {}
        self.platform = PoseHistory()
        self._pending: list[BearingObservation] = []
        self._fused_until = -np.inf
        self._newest_by_array: dict[str, float] = {}

    def set_static_pose(self, array_id: str, pose: ArrayPose) -> None:
        self.static_poses[array_id] = pose

    def set_mount(self, array_id: str, mount: ArrayPose) -> None:
        """``array_id`` rides on the platform at ``mount`` (its pose in the platform's frame)."""
        self.mounts[array_id] = mount

    def add_platform_pose(self, stamp: float, pose: ArrayPose) -> bool:
        """The platform's pose in the fixed frame at ``stamp`` (s); False (counted) if not newer than the newest."""
        kept = self.platform.add(stamp, pose)
        self.counters["stale_platform_pose"] += not kept
        return kept

    def pose(self, array_id: str, stamp: float) -> ArrayPose | None:
        if array_id in self.static_poses:
            return self.static_poses[array_id]
        if array_id in self.mounts:
            platform = self.platform.at(stamp)
            return None if platform is None else platform.compose(self.mounts[array_id])
        return None

    def velocity(self, array_id: str, stamp: float) -> np.ndarray | None:
        """Velocity (3,) m/s of an array at ``stamp`` (s): zero for a static one; for one on the
        platform, the mean over its poses 2 * :data:`VELOCITY_STEP_S` apart around ``stamp``. Where
        that window reaches past an end of the platform's pose history it is moved inside it, not
        cut (a bearing just after the newest pose gets the newest velocity; holding the end pose
        would slow it). None where the history spans less than :data:`VELOCITY_STEP_S`, or the array has
        no pose at ``stamp``."""
        if array_id not in self.mounts:
            return np.zeros(3)
        stamps = self.platform.stamps
        if len(stamps) < 2 or stamps[-1] - stamps[0] < VELOCITY_STEP_S - STAMP_TOLERANCE_S or self.pose(array_id, stamp) is None:
            return None
        span = min(2 * VELOCITY_STEP_S, stamps[-1] - stamps[0])
        start = min(max(stamp - VELOCITY_STEP_S, stamps[0]), stamps[-1] - span)
        before, after = self.pose(array_id, start), self.pose(array_id, start + span)
        if before is None or after is None:
            return None
        return (after.position - before.position) / span

    def velocity_or_zero(self, array_id: str, stamp: float) -> np.ndarray:
        """:meth:`velocity`, or zero where it is unknown, counted as ``no_platform_velocity``: call
        it once per bearing or look."""
        velocity = self.velocity(array_id, stamp)
        if velocity is None:
            self.counters["no_platform_velocity"] += 1
            return np.zeros(3)
        return velocity

    def add(self, obs: BearingObservation) -> None:
        """Queue a bearing; it is fused once stamps ``reorder_delay`` newer have arrived (:meth:`fuse`)."""
        if not obs.valid or not np.isfinite(obs.window_span) or obs.window_span < 0:
            self.counters["invalid_bearing"] += 1
            return
        if obs.array_id not in self.static_poses and obs.array_id not in self.mounts:
            self.counters["unknown_pose"] += 1                # a stranger: it holds back no one's bearings
            return
        if obs.stamp <= self._fused_until:
            self.counters["out_of_order"] += 1
            return
        heapq.heappush(self._pending, obs)
        self._newest_by_array[obs.array_id] = max(self._newest_by_array.get(obs.array_id, -np.inf), obs.stamp)

    @property
    def horizon(self) -> float:
        """Bearings up to this stamp can be fused: every array has delivered up to it, or the
        laggards are more than ``reorder_delay`` behind the newest and no longer waited for."""
        if not self._newest_by_array:
            return -np.inf
        newest = self._newest_by_array.values()
        return max(min(newest), max(newest) - self.config.reorder_delay)

    def fuse(self, flush: bool = False) -> list[Estimate]:
        """Fuse the queued bearings up to :attr:`horizon` (all of them with ``flush``) in stamp
        order; the estimates of the tracks that changed, newest state."""
        horizon = np.inf if flush else self.horizon
        changed: dict[str, Track] = {}
        while self._pending and self._pending[0].stamp <= horizon:
            obs = heapq.heappop(self._pending)
            self._fused_until = max(self._fused_until, obs.stamp)
            pose = self.pose(obs.array_id, obs.time)
            if pose is None:
                self.counters["unknown_pose"] += 1
                continue
            track = self._track(obs)
            track.predict(obs.time)
            outcome = track.update(pose, obs, self.velocity_or_zero(obs.array_id, obs.time))
            if outcome != "used":
                self.counters[outcome] += 1
                if track.rejections_in_a_row >= self.config.max_rejections:
                    self.counters["track_resets"] += 1
                    del self.tracks[obs.mac]
                continue
            changed[obs.mac] = track
        estimates = [t.estimate() for t in changed.values()]
        self.counters["poor_geometry"] += sum(not e.observable for e in estimates)
        return estimates

    def _track(self, obs: BearingObservation) -> Track:
        track = self.tracks.get(obs.mac)
        if track is not None and obs.time - (track.stamp or obs.time) > self.config.max_gap:
            self.counters["track_resets"] += 1
            track = None
        if track is None:
            track = self.tracks[obs.mac] = Track(obs.mac, self.config.motion(), *self._prior(obs), self.config)
        return track

    def _prior(self, obs: BearingObservation) -> tuple[np.ndarray, np.ndarray]:
        """An uninformative horizontal prior around the arrays, and the height prior."""
        positions = [p.position for p in self.static_poses.values()]
        platform = self.platform.at(obs.time)
        if platform is not None:
            positions += [platform.compose(m).position for m in self.mounts.values()]
        centre = np.mean(positions, axis=0) if positions else np.zeros(3)
        if np.isfinite(self.config.height):
            centre[2] = self.config.height
        cov = np.diag([self.config.prior_std ** 2, self.config.prior_std ** 2, self.config.height_std ** 2])
        return centre, cov
