"""Breathing and presence seen by a calibrated antenna array, per beam (pure core, no ROS).

Each frame of one transmitter gives the array's CSI ``H`` ``(N antennas, S subcarriers)``,
calibrated and with the reported receiver gains taken out. It still holds a factor common to all
antennas that changes from frame to frame (the packet's random phase, detection delay and
residual CFO, the AGC). Dividing by a reference beam removes it:

    X[n, k] = H[n, k] conj(r[k]) / mean_k |r[k]|^2,   r = w_ref^H H,

with ``w_ref`` the array's principal spatial direction over its first frames (the transmitter's
direct path). X is the channel relative to the direct path, and it keeps both quadratures of
a chest's path: no blind spots, unlike one direction of a swarm link.

Per window and beam, MVDR weights toward the beam's bearing (``w = R^-1 a / a^H R^-1 a``, from
the covariance ``R`` of the window's change of X, diagonally loaded so that the beam's own
weak breathing is kept) put nulls on whatever else changes, such as a second person walking
elsewhere in the room; the beam's signal ``w^H X`` ``(F, K)`` is then judged like a link's
features (vitals.WindowJudge). Motion is measured against the noise each beam lets through
(``|w|^2``), with one still baseline for all beams of the array: a beam at someone who walks
about from the start has no still history of its own.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from .steering import steering_vectors, unit_vectors
from .velocity import RESTART_S
from .vitals import EstimateSchedule, FrameWindow, VitalsConfig, VitalsEstimate, WindowJudge

SUBCARRIERS = 16
"""Subcarriers kept per frame, spread evenly over the measured ones (breathing changes the
channel alike across a few MHz; more only cost memory and time)."""
REFERENCE_FRAMES = 20
"""Frames that set the reference beam (dropped from the estimate while it is learned)."""
DIAGONAL_LOADING = 0.1
"""MVDR diagonal loading, as a fraction of the change covariance's mean eigenvalue."""


def principal_direction(csi: np.ndarray) -> np.ndarray:
    """Frames of CSI ``(F, N, K)`` -> the unit weight vector ``(N,)`` of their strongest common
    spatial direction (principal eigenvector of the spatial covariance)."""
    covariance = np.einsum("fnk,fmk->nm", csi, csi.conj())
    return np.linalg.eigh(covariance)[1][:, -1]


def relative_channel(csi: np.ndarray, reference_w: np.ndarray) -> np.ndarray:
    """CSI ``(N, K)`` -> the channel relative to the reference beam ``r = w^H H`` ``(N, K)``:
    free of every factor common to the antennas (phase, delay, gain of the frame)."""
    r = reference_w.conj() @ csi
    return csi * r.conj()[None, :] / max(float(np.mean(np.abs(r) ** 2)), 1e-30)


def change_covariance(x: np.ndarray) -> np.ndarray:
    """Frames ``(F, N, K)`` -> the spatial covariance ``(N, N)`` of their change about the mean."""
    change = np.moveaxis(x - x.mean(axis=0), 1, 0).reshape(x.shape[1], -1)      # (N, F K)
    return (change @ change.conj().T) / max(1, change.shape[1])


def mvdr_weights(covariance: np.ndarray, steering: np.ndarray, loading: float = DIAGONAL_LOADING) -> np.ndarray:
    """The change covariance ``(N, N)`` and a steering vector ``(N,)`` -> MVDR weights ``(N,)`` (unit
    gain toward the steering direction, least power of the change from elsewhere)."""
    n = covariance.shape[0]
    loaded = covariance + loading * max(float(np.trace(covariance).real) / n, 1e-30) * np.eye(n)
    v = np.linalg.solve(loaded, steering)
    return v / np.vdot(steering, v)


class ArrayVitals:
    """One transmitter's frames at one calibrated array -> a verdict per beam.

    positions_m: ``(N, 3)`` antenna positions in the array frame; beams_rad: the beams' azimuths
    (rad, array frame, REP 103: x boresight, y left), at elevation 0."""

    def __init__(self, config: VitalsConfig, positions_m: np.ndarray, beams_rad: Sequence[float]) -> None:
        self.config = config
        self.positions = np.asarray(positions_m, float).reshape(-1, 3)
        self.beams_rad = [float(b) for b in beams_rad]
        self.grid_mismatch = 0
        """Frames dropped for another subcarrier grid or antenna count than the array's first ones."""
        self.restarts = 0
        """Times the frames' time went back by more than RESTART_S (a bag looped, a clock reset)."""
        self._start()

    def _start(self) -> None:
        self.frames = FrameWindow(self.config)
        history: deque[tuple[float, float, float]] = deque()
        self.judges = [WindowJudge(self.config, history) for _ in self.beams_rad]
        self.schedule: EstimateSchedule | None = None
        self.reference_w: np.ndarray | None = None
        self._learning: list[np.ndarray] = []
        self._grid: tuple[int, int] | None = None
        self._pick: np.ndarray | None = None
        self._steering: np.ndarray | None = None

    def add(self, t_s: float, csi: np.ndarray, freqs_hz: np.ndarray, valid: np.ndarray) -> bool:
        """One frame at time ``t_s`` (s): CSI complex ``(N, S)`` (calibrated, receiver gains taken
        out, finite), subcarrier frequencies ``(S,)`` Hz and measured bins ``(S,)`` bool. False if it
        was not used (reference beam still learned, a phase jump, another grid: ``grid_mismatch``)."""
        if t_s < self.frames.newest_t - RESTART_S:
            self.restarts += 1
            self._start()
        if self._grid is None:
            self._set_grid(csi.shape, np.asarray(freqs_hz, float), np.asarray(valid, bool))
        if csi.shape != self._grid:
            self.grid_mismatch += 1
            return False
        h = np.asarray(csi, complex)[:, self._pick]
        if self.reference_w is None:
            self._learning.append(h)
            if len(self._learning) >= REFERENCE_FRAMES:
                self.reference_w = principal_direction(np.stack(self._learning))
                self._learning = []
            return False
        return self.frames.add(t_s, relative_channel(h, self.reference_w).ravel())

    def _set_grid(self, shape: tuple[int, int], freqs_hz: np.ndarray, valid: np.ndarray) -> None:
        if shape[0] != self.positions.shape[0]:
            raise ValueError(f"CSI of {shape[0]} antennas for a geometry of {self.positions.shape[0]}")
        measured = np.flatnonzero(valid)
        if measured.size == 0:
            raise ValueError("no measured subcarrier")
        self._grid = shape
        self._pick = measured[np.unique(np.round(np.linspace(0, measured.size - 1, SUBCARRIERS)).astype(int))]
        directions = unit_vectors(np.array(self.beams_rad), np.zeros(len(self.beams_rad)))
        centre_hz = float(np.mean(freqs_hz[self._pick]))
        self._steering = steering_vectors(self.positions, np.array([centre_hz]), directions, np.complex128)[0]

    def due(self, period_s: float) -> list[list[VitalsEstimate]]:
        """For every ``period_s`` of frame time passed since the last call: one estimate per beam."""
        if self.schedule is None:
            self.schedule = EstimateSchedule(period_s)
        return [self.estimate(t_end) for t_end in self.schedule.due(self.frames.newest_t)]

    def estimate(self, t_end: float) -> list[VitalsEstimate]:
        """The window ending at ``t_end`` (s): one estimate per beam, in the order of ``beams_rad``."""
        t, x = self.frames.window(t_end)
        n, k = self.positions.shape[0], len(self._pick) if self._pick is not None else 0
        x = x.reshape(len(t), n, k)
        covariance = change_covariance(x) if len(t) > n else None
        out = []
        for beam, judge in enumerate(self.judges):
            if covariance is not None:
                w = mvdr_weights(covariance, self._steering[beam])
                z = np.tensordot(w.conj(), x, axes=(0, 1))                # (F, K)
            else:
                w, z = np.ones(n), np.zeros((len(t), k), complex)   # too few frames: the judge says so
            result = judge.judge(t, z, t_end, noise_scale=float(np.vdot(w, w).real))
            result.t_end_s = t_end
            out.append(result)
        return out
