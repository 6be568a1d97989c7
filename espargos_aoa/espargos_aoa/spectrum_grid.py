"""Positions from the arrays' MUSIC spectra on a horizontal grid: locator_node's multipath-robust
method (``method: spectrum_grid``). Pure (no ROS).

Each *look* is one array's update for one transmitter: its SpatialSpectrum and the BearingArray
of the same window. A look is drawn on a horizontal grid in the fixed frame (at the transmitters'
prior height): every cell gets the spectrum's power, in dB below its maximum and clipped at
``grid_floor_db``, in the direction in which the array saw that cell (the spectrum widened by
``grid_widen`` degrees either side first, so that a peak narrower than a cell still lands in
it). The looks of the last ``grid_memory`` seconds are averaged per array, and the arrays' maps
are added. A cell in which every array sees a peak (the direct paths) outscores a crossing of one
array's reflection with another's direct path, whichever of them an array ranked first.

The best cell does not give the covariance (MUSIC dB are no likelihood). It picks, in each look,
the bearing (of any rank) pointing at it within ``grid_gate`` 1-sigma; those bearings, by
generalised least squares from the cell, give the position and its covariance: each bearing's
reported 1-sigma with ``bearing_std_floor``, windows of one array that share frames counted once
(as the Kalman method does), and an error ``grid_array_bias`` that all of one array's looks share.
The transmitter is taken to stand still over ``grid_memory``: looks that do not agree with that
(a chi-square test at ``gate_probability``) give no position (``inconsistent_looks``), nor do
matched bearings from places spanning less than ``min_parallax``.
"""
from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.special import chdtri  # chi-square quantile: chdtri(dof, 1 - p)

from .locate import ORIGIN_SPACING_M, BearingObservation, Estimate, Locator, overlap_factor, parallax_deg
from .poses import ArrayPose

MAX_LOOKS_PER_TRANSMITTER = 512
"""Looks kept per transmitter at most (the oldest go first), whatever ``grid_memory`` says."""
GAUSS_NEWTON_STEPS = 3
"""Iterations of each least-squares refinement (from the best cell, then along the fitted track)."""
VELOCITY_PRIOR_STD = 1.5
"""m/s, 1-sigma of the velocity prior of the fit (people walk at up to ~1.5 m/s), as the Kalman
method's constant-velocity prior."""


def _param(default, description: str):
    return field(default=default, metadata={"description": description})


@dataclass
class GridConfig:
    """Parameters of :class:`SpectrumGrid`; locator_node declares each with its default and description."""

    grid_bounds: list = _param(None, "[x_min, x_max, y_min, y_max] m of the grid in fixed_frame (method spectrum_grid); "
                                     "a position on its edge is withheld (grid_edge)")
    grid_resolution: float = _param(0.1, "m between grid cells")
    grid_memory: float = _param(0.5, "s of looks (spectrum + bearings of one array update) fused; the transmitter is "
                                     "taken to stand still over it")
    grid_floor_db: float = _param(-20.0, "dB below a spectrum's maximum at which it is clipped")
    grid_widen: float = _param(1.0, "deg either side over which a spectrum's peaks are widened before it is drawn")
    grid_gate: float = _param(3.0, "1-sigma within which a look's bearing must point at the best cell to be fused")
    grid_array_bias: float = _param(0.15, "deg of azimuth error all of one array's looks in grid_memory share "
                                          "(calibration residual, wall reflections of a transmitter standing still: "
                                          "0.08-0.14 deg per array in the room scene; board_node's calibration residual "
                                          "is 0.15-0.17 deg)")

    def validate(self) -> None:
        """ValueError naming the parameter that cannot work."""
        bounds = list(self.grid_bounds or [])
        if len(bounds) != 4 or not np.all(np.isfinite(bounds)) or not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
            raise ValueError(f"grid_bounds must be [x_min, x_max, y_min, y_max] with min < max, got {self.grid_bounds}")
        for name in ("grid_resolution", "grid_memory", "grid_gate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.grid_floor_db < 0:
            raise ValueError(f"grid_floor_db must be < 0, got {self.grid_floor_db}")
        for name in ("grid_widen", "grid_array_bias"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        cells = ((bounds[1] - bounds[0]) / self.grid_resolution + 1) * ((bounds[3] - bounds[2]) / self.grid_resolution + 1)
        if cells > 4e6:
            raise ValueError(f"grid_bounds and grid_resolution give {cells:.0f} cells (at most 4e6)")


def grid_parameter_descriptions() -> dict[str, tuple[object, str]]:
    """GridConfig's fields: name -> (default, description); ``grid_bounds`` defaults to a 20 m square."""
    defaults = {"grid_bounds": [-10.0, 10.0, -10.0, 10.0]}
    return {f.name: (defaults.get(f.name, f.default), f.metadata["description"]) for f in fields(GridConfig)}


@dataclass
class Look:
    """One array's update for one transmitter: its spectrum and its bearings (all ranks)."""

    stamp: float
    """s, the update's header stamp (its window's last frame)."""
    array_id: str
    mac: str
    azimuths: np.ndarray
    """(A,) rad, ascending."""
    power_db: np.ndarray
    """(A,) dB below the spectrum's maximum (a 2-D spectrum's maximum over elevation)."""
    bearings: list[BearingObservation]
    window_span: float = 0.0
    window_frames: int = 1

    @property
    def time(self) -> float:
        """When the look was true (s): the middle of its window."""
        return self.stamp - self.window_span / 2


@dataclass
class _DrawnLook:
    look: Look
    pose: ArrayPose
    cells_db: np.ndarray
    """(cells,) float32, the look's clipped dB at every cell."""
    array_velocity: np.ndarray
    """(3,) m/s, the array's velocity at the look's time (as its pose, taken when it was drawn)."""
    unmatched: bool = False
    """Counted as ``unmatched_look`` already (a look is matched again at every :meth:`SpectrumGrid.locate`)."""


@dataclass
class _Rays:
    """The bearings matched to a transmitter, one per look, as arrays of length n."""

    poses: list[ArrayPose]
    bearings: list[BearingObservation]
    origins: np.ndarray
    """(n, 3) m, the arrays' positions."""
    rotations: np.ndarray
    """(n, 3, 3), array -> fixed frame."""
    azimuths: np.ndarray
    """(n,) rad."""
    times: np.ndarray
    """(n,) s, the middles of the bearings' windows."""
    spans: np.ndarray
    """(n,) s, the windows' spans."""
    variances: np.ndarray
    """(n,) rad^2, each bearing's 1-sigma and bearing_std_floor."""
    overlaps: np.ndarray
    """(n,) >= 1, windows of one array sharing frames (:func:`overlap_factor`)."""
    array_velocities: np.ndarray
    """(n, 3) m/s."""
    array_index: np.ndarray
    """(n,) int, which array."""

    @classmethod
    def of(cls, rows: list[tuple]) -> "_Rays":
        """From (pose, bearing, variance, overlap, array velocity) rows."""
        poses = [r[0] for r in rows]
        bearings = [r[1] for r in rows]
        ids = {array_id: i for i, array_id in enumerate(dict.fromkeys(b.array_id for b in bearings))}
        return cls(poses, bearings, np.array([p.position for p in poses]).reshape(-1, 3),
                   np.array([p.rotation for p in poses]).reshape(-1, 3, 3), np.array([b.azimuth for b in bearings]),
                   np.array([b.time for b in bearings]), np.array([b.window_span for b in bearings]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
                   np.array([r[4] for r in rows]).reshape(-1, 3), np.array([ids[b.array_id] for b in bearings], int))

    def __len__(self) -> int:
        return len(self.bearings)


class SpectrumGrid:
    """The looks of every transmitter on one grid; poses, shared parameters and counters are the
    ``locator``'s (its ``unknown_pose``, ``invalid_bearing``, ``poor_geometry`` and the grid's own)."""

    def __init__(self, locator: Locator, config: GridConfig) -> None:
        config.validate()
        self.locator = locator
        self.config = config
        x_min, x_max, y_min, y_max = (float(v) for v in config.grid_bounds)
        self.xs = np.arange(x_min, x_max + config.grid_resolution / 2, config.grid_resolution)
        self.ys = np.arange(y_min, y_max + config.grid_resolution / 2, config.grid_resolution)
        gx, gy = np.meshgrid(self.xs, self.ys, indexing="ij")
        self.cells = np.stack([gx.ravel(), gy.ravel()], axis=1)
        """(cells, 2) m, x-major."""
        self.looks: dict[str, deque[_DrawnLook]] = defaultdict(lambda: deque(maxlen=MAX_LOOKS_PER_TRANSMITTER))

    @property
    def height(self) -> float:
        """m, the plane of the grid: the height prior, or the arrays' mean height."""
        if np.isfinite(self.locator.config.height):
            return float(self.locator.config.height)
        heights = [p.position[2] for p in self.locator.static_poses.values()]
        platform = self.locator.platform.poses[-1] if self.locator.platform.poses else None
        if platform is not None:
            heights += [platform.compose(m).position[2] for m in self.locator.mounts.values()]
        return float(np.mean(heights)) if heights else 0.0

    def add(self, look: Look) -> bool:
        """Draw a look on the grid; False (counted) if its array's pose is unknown or it is not finite."""
        if not (look.azimuths.ndim == 1 and look.azimuths.shape == look.power_db.shape and look.azimuths.size >= 2
                and np.all(np.isfinite(look.azimuths)) and np.all(np.diff(look.azimuths) > 0)
                and np.all(np.isfinite(look.power_db)) and np.isfinite(look.window_span) and look.window_span >= 0):
            self.locator.counters["invalid_spectrum"] += 1
            return False
        self.locator.counters["invalid_bearing"] += sum(not b.valid for b in look.bearings)
        pose = self.locator.pose(look.array_id, look.time)
        if pose is None:
            self.locator.counters["unknown_pose"] += 1
            return False
        step = float(np.mean(np.diff(look.azimuths)))
        widen = max(int(round(np.radians(self.config.grid_widen) / step)), 0)
        power = np.maximum(look.power_db - look.power_db.max(), self.config.grid_floor_db)
        if widen:
            power = maximum_filter1d(power, 2 * widen + 1, mode="nearest")
        local = (np.column_stack([self.cells, np.full(len(self.cells), self.height)]) - pose.position) @ pose.rotation
        azimuth = np.arctan2(local[:, 1], local[:, 0])
        cells_db = np.interp(azimuth, look.azimuths, power, left=self.config.grid_floor_db,
                             right=self.config.grid_floor_db).astype(np.float32)
        cells_db[local[:, 0] <= 0] = self.config.grid_floor_db            # behind the array: it faces the area
        self.looks[look.mac].append(_DrawnLook(look, pose, cells_db, self.locator.velocity_or_zero(look.array_id, look.time)))
        return True

    def locate(self, mac: str) -> Estimate | None:
        """The transmitter's position from its looks of the last ``grid_memory`` s, or None (counted
        once, under its reason) when the grid's best cell is on its edge (``grid_edge``), the matched
        bearings disagree (``inconsistent_looks``) or do not range it (``poor_geometry``)."""
        looks = self.looks.get(mac)
        if not looks:
            return None
        newest = max(d.look.time for d in looks)
        while looks and looks[0].look.time < newest - self.config.grid_memory:
            looks.popleft()
        by_array: dict[str, list[_DrawnLook]] = defaultdict(list)
        for drawn in looks:
            by_array[drawn.look.array_id].append(drawn)
        fused = sum(np.mean([d.cells_db for d in drawn], axis=0) for drawn in by_array.values())
        best = int(np.argmax(fused))
        i, j = divmod(best, len(self.ys))
        if i in (0, len(self.xs) - 1) or j in (0, len(self.ys) - 1):
            self.locator.counters["grid_edge"] += 1
            return None
        start = np.array([self.xs[i], self.ys[j], self.height])
        estimate = self._least_squares(mac, start, self._matched_rays(lambda _: start, np.zeros(3), by_array, False))
        if estimate is not None:      # match again along the fitted track: a walker's older looks point behind it
            track = estimate.position, estimate.velocity, estimate.stamp
            estimate = self._least_squares(mac, estimate.position, self._matched_rays(
                lambda t: track[0] + track[1] * (t - track[2]), track[1], by_array, True))
        return estimate

    def _matched_rays(self, target: Callable[[float], np.ndarray], velocity: np.ndarray,
                      by_array: dict[str, list[_DrawnLook]], count: bool) -> _Rays:
        """Each look's bearing pointing at ``target(time)`` (3,) m, where the transmitter moving at
        ``velocity`` (3,) m/s is taken to be at the look's time, within ``grid_gate`` times the
        bearing's 1-sigma and the error its array's looks share; with ``count``, looks without such a
        bearing are counted (once each) as ``unmatched_look``."""
        floor = np.radians(self.locator.config.bearing_std_floor)
        cell_angle = self.config.grid_resolution / 2
        rays = []
        for drawn in by_array.values():
            previous = None
            for d in sorted(drawn, key=lambda d: d.look.stamp):
                azimuth, _, rng = d.pose.bearing_to(target(d.look.time))
                valid = [b for b in d.look.bearings if b.valid]
                if not valid:
                    continue
                miss = [abs(float(np.angle(np.exp(1j * (b.azimuth - azimuth))))) for b in valid]
                k = int(np.argmin(miss))
                bearing = valid[k]
                std = float(np.hypot(bearing.azimuth_std, floor))
                speed = float(np.linalg.norm(velocity - d.array_velocity))
                spread = np.sqrt(std ** 2 + np.radians(self.config.grid_array_bias) ** 2
                                 + (np.radians(self.locator.config.motion_bias) * speed) ** 2)
                if miss[k] > self.config.grid_gate * spread + np.arctan2(cell_angle, max(rng, 1e-3)):
                    if count:
                        self.locator.counters["unmatched_look"] += not d.unmatched
                        d.unmatched = True
                    continue
                rays.append((d.pose, bearing, std ** 2, overlap_factor(bearing, previous), d.array_velocity))
                previous = d.look.stamp
        return _Rays.of(rays)

    def _weight(self, state: np.ndarray, height: float, reference: float, rays: _Rays) -> np.ndarray:
        """Inverse covariance (n, n) of the rays' azimuth errors for the transmitter ``state`` (x, y,
        vx, vy at time ``reference``): each bearing's variance with the angle it swept during its window
        (the Kalman method's smear), times its overlap factor; and an error all bearings of one array
        share: ``grid_array_bias``, with ``motion_bias`` per m/s between the transmitter and the array."""
        config = self.locator.config
        offset = self._positions(state, height, reference, rays) - rays.origins
        rng = np.maximum(np.linalg.norm(offset, axis=1), config.min_range)
        relative = np.array([state[2], state[3], 0.0]) - rays.array_velocities
        along = np.sum(relative * offset, axis=1) / rng ** 2
        lateral = np.linalg.norm(relative - along[:, None] * offset, axis=1)
        smear = lateral / rng * rays.spans / np.sqrt(12.0)
        speed = np.linalg.norm(relative, axis=1)
        bias = np.radians(self.config.grid_array_bias) ** 2 + (np.radians(config.motion_bias) * speed) ** 2
        shared = np.zeros(rays.array_index.max() + 1)
        np.maximum.at(shared, rays.array_index, bias)
        same = rays.array_index[:, None] == rays.array_index[None, :]
        return np.linalg.inv(np.diag((rays.variances + smear ** 2) * rays.overlaps) + same * shared[rays.array_index][:, None])

    @staticmethod
    def _positions(state: np.ndarray, height: float, reference: float, rays: _Rays) -> np.ndarray:
        """(n, 3) m, where the transmitter of ``state`` was at each ray's time."""
        dt = rays.times - reference
        return np.column_stack([state[0] + state[2] * dt, state[1] + state[3] * dt, np.full(len(dt), height)])

    def _linearise(self, state: np.ndarray, height: float, reference: float, rays: _Rays) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian (n, 4) of the rays' azimuths with respect to the ``state`` (x, y, vx, vy at time
        ``reference``; the transmitter at ``height``), and the azimuth residuals (n,) rad (wrapped)."""
        local = np.einsum("nij,ni->nj", rays.rotations, self._positions(state, height, reference, rays) - rays.origins)
        dx, dy = local[:, 0], local[:, 1]
        rh2 = np.maximum(dx * dx + dy * dy, self.locator.config.min_range ** 2)
        gradient = np.column_stack([-dy / rh2, dx / rh2, np.zeros(len(dx))])
        row = np.einsum("nkj,nj->nk", rays.rotations, gradient)[:, :2]
        dt = (rays.times - reference)[:, None]
        residual = np.angle(np.exp(1j * (rays.azimuths - np.arctan2(dy, dx))))
        return np.hstack([row, row * dt]), residual

    def _poor_geometry(self) -> None:
        self.locator.counters["poor_geometry"] += 1

    def _least_squares(self, mac: str, start: np.ndarray, rays: _Rays) -> Estimate | None:
        """Gauss-Newton on the matched azimuths from ``start`` for the position and velocity at the
        bearings' mean time (a weak prior of ``VELOCITY_PRIOR_STD`` on the velocity; a transmitter
        standing still gets a velocity near zero); None, counted, if they disagree or do not range
        the position. Stamped with the newest bearing, a moving transmitter's position would lag by
        half the memory."""
        config = self.locator.config
        origins: list[np.ndarray] = []
        for origin in rays.origins:
            if not origins or np.linalg.norm(np.array(origins) - origin, axis=1).min() >= ORIGIN_SPACING_M:
                origins.append(origin)
        if len(origins) < 2:
            return self._poor_geometry()
        reference = float(np.mean(rays.times))
        prior = np.diag([0.0, 0.0, 1.0, 1.0]) / VELOCITY_PRIOR_STD ** 2
        state = np.array([start[0], start[1], 0.0, 0.0])
        for _ in range(GAUSS_NEWTON_STEPS):
            weight = self._weight(state, start[2], reference, rays)
            j, r = self._linearise(state, start[2], reference, rays)
            information = j.T @ weight @ j + prior
            if np.linalg.cond(information) > 1e12:
                return self._poor_geometry()
            state = state + np.linalg.solve(information, j.T @ weight @ r - prior @ state)
        weight = self._weight(state, start[2], reference, rays)
        j, r = self._linearise(state, start[2], reference, rays)
        information = j.T @ weight @ j + prior
        # The looks must agree with the model: a chi-square test of the residuals over the independent
        # bearings (windows sharing frames count once) less the two coordinates (the velocity's two
        # are paid for by its prior).
        dof = float(np.sum(1.0 / rays.overlaps)) - 2.0
        if dof >= 1.0 and float(r @ weight @ r + state @ prior @ state) > chdtri(dof, 1.0 - config.gate_probability):
            self.locator.counters["inconsistent_looks"] += 1
            return None
        x = state[:2]
        covariance = np.zeros((3, 3))
        covariance[:2, :2] = np.linalg.inv(information)[:2, :2]
        covariance[2, 2] = config.height_std ** 2
        position = np.array([x[0], x[1], start[2]])
        parallax = parallax_deg(np.array(origins), position)
        nearest = float(np.min(np.linalg.norm(np.array(origins)[:, :2] - position[:2], axis=1)))
        if (np.sqrt(np.linalg.eigvalsh(covariance).max()) > config.max_position_std or parallax < config.min_parallax
                or nearest < config.far_field):
            return self._poor_geometry()
        last_origins = {bearing.array_id: pose.position.copy() for pose, bearing in zip(rays.poses, rays.bearings)}
        return Estimate(mac, reference, position, covariance, np.array([state[2], state[3], 0.0]), sorted(last_origins),
                        len(rays), True, parallax, False, last_origins)
