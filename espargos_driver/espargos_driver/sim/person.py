"""A person as a moving reflector: breathing chest, occasional gross motion, entering and leaving.

The person adds one path transmitter -> chest -> receiver to a channel. Its amplitude relative
to a direct path of length d0 is the bistatic radar ratio ``reflectivity * d0 / (d1 * d2)``
(d1, d2: transmitter-chest and chest-receiver distances; ``reflectivity`` in m is sqrt(RCS / 4 pi),
about 0.2 m for a torso at 2.4 GHz). While still, the chest moves along the bisector of the
two rays, so the path length changes by ``2 x(t) cos(beta / 2)`` (beta: the bistatic angle,
x(t): chest displacement). Breathing is not a pure tone: the rate wanders slowly around its mean
and exhaling takes longer than inhaling. Ground truth: ``state`` and ``mean_rate_bpm``
(the mean rate over a window, what a window estimator can know).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EMPTY, STILL, MOVING = "EMPTY", "STILL", "MOVING"
WANDER_HZ = (0.011, 0.023, 0.037)
"""Frequencies of the slow rate wander (Hz): periods of 27-90 s, longer than any window."""
MOTION_RADIUS_M = 0.6
"""Gross motion: the chest wanders this far around its still position at about 1 m/s."""


@dataclass
class PersonSpec:
    """A person at ``position`` (m, x y z of the chest, in the scenario's frame)."""

    position: list = field(default_factory=lambda: [0.0, 2.0, 1.0])
    breathing_rate_bpm: float = 15.0
    """Mean breathing rate, breaths per minute."""
    rate_variability: float = 0.05
    """Relative 1-sigma of the slow wander of the rate around its mean."""
    chest_displacement_m: float = 0.005
    """Peak-to-peak chest excursion of one breath, m."""
    reflectivity_m: float = 0.2
    """sqrt(RCS / 4 pi) of the torso, m."""
    present: list = field(default_factory=lambda: [[0.0, 1e9]])
    """[[t_enter, t_leave], ...] s: when the person is in the room."""
    moving: list = field(default_factory=list)
    """[[t_start, t_end], ...] s: gross motion (walking about, turning) while present."""
    seed: int = 0

    def __post_init__(self) -> None:
        """ValueError for intervals that are not [start, end] pairs of numbers."""
        self.present = [[float(a), float(b)] for a, b in self.present]
        self.moving = [[float(a), float(b)] for a, b in self.moving]
        rng = np.random.default_rng([self.seed, 7])
        self._wander_phase = rng.uniform(0, 2 * np.pi, len(WANDER_HZ))
        self._wander_amp = self.rate_variability * np.sqrt(2.0 / len(WANDER_HZ))
        self._motion_phase = rng.uniform(0, 2 * np.pi, 2)

    @staticmethod
    def _inside(t_s: float, intervals: list) -> bool:
        return any(a <= t_s < b for a, b in intervals)

    def state(self, t_s: float) -> str:
        """EMPTY, STILL or MOVING at scenario time ``t_s``."""
        if not self._inside(t_s, self.present):
            return EMPTY
        return MOVING if self._inside(t_s, self.moving) else STILL

    def breath_cycles(self, t_s: np.ndarray | float) -> np.ndarray:
        """Breaths taken since t = 0 (the integral of the wandering rate)."""
        t = np.asarray(t_s, float)
        f0 = self.breathing_rate_bpm / 60.0
        wander = sum(self._wander_amp / (2 * np.pi * f) * (np.sin(2 * np.pi * f * t + p) - np.sin(p))
                     for f, p in zip(WANDER_HZ, self._wander_phase))
        return f0 * (t + wander)

    def mean_rate_bpm(self, t0_s: float, t1_s: float) -> float:
        """True mean breathing rate over [t0, t1], breaths per minute."""
        return float(60.0 * (self.breath_cycles(t1_s) - self.breath_cycles(t0_s)) / (t1_s - t0_s))

    def chest_m(self, t_s: float) -> float:
        """Chest displacement (m, 0 = fully exhaled): a quick inhale, a slower exhale."""
        phase = float(np.mod(self.breath_cycles(t_s), 1.0))
        shape = 0.5 - 0.5 * np.cos(2 * np.pi * phase ** 0.8)          # inhale ~ 40 %, exhale ~ 60 %
        return self.chest_displacement_m * shape

    def chest_position(self, t_s: float) -> np.ndarray:
        """Where the chest is (m): its still position, or wandering about it in gross motion."""
        p = np.asarray(self.position, float)
        if self._inside(t_s, self.moving):
            w = 1.0 / MOTION_RADIUS_M                                     # ~1 m/s along the wander
            p = p + MOTION_RADIUS_M * np.array([np.sin(w * t_s + self._motion_phase[0]),
                                                np.sin(0.77 * w * t_s + self._motion_phase[1]), 0.0])
        return p

    def path(self, tx: np.ndarray, rx: np.ndarray, t_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The reflected path tx -> chest -> rx at ``t_s``: (length m, amplitude relative to a unit
        direct path of the same link), or None when the person is not in the room. ``rx``: one
        receiver (3,) or several (N, 3) (the antennas of an array); the results have its leading shape."""
        if not self._inside(t_s, self.present):
            return None
        tx, rx = np.asarray(tx, float), np.asarray(rx, float)
        c = self.chest_position(t_s)
        u1, u2 = tx - c, rx - c
        d1, d2 = float(np.linalg.norm(u1)), np.linalg.norm(u2, axis=-1)
        d0 = np.maximum(np.linalg.norm(tx - rx, axis=-1), 1e-3)
        cos_half = np.sqrt(np.maximum(0.0, 0.5 * (1 + (u2 @ u1) / (d1 * d2))))
        length = d1 + d2 - 2 * self.chest_m(t_s) * cos_half                # the chest moves towards both ends
        return length, self.reflectivity_m * d0 / (d1 * d2)
