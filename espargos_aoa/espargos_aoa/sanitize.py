"""Phase sanitising of single-antenna CSI (swarm nodes): STO slope and common phase of one report.

The sampling time offset (packet detection) adds a phase linear in the subcarrier index; the
receiver's LO and per-packet detection add a phase common to all subcarriers. The slope is
estimated robustly from adjacent-subcarrier products (no unwrapping, insensitive to outliers on
single bins); the common phase is the amplitude-weighted mean phase after the slope is removed.
"""
from __future__ import annotations

import cmath
from dataclasses import dataclass

import numpy as np


@dataclass
class Sanitized:
    """slope_rad: phase per subcarrier index (STO = -slope / (2 pi spacing)); common_phase_rad:
    phase at k = 0; csi: complex ``(S,)`` with slope and common phase removed; power: mean |csi|^2."""

    slope_rad: float
    common_phase_rad: float
    csi: np.ndarray
    power: float


def sanitize(csi: np.ndarray, k: np.ndarray, valid: np.ndarray) -> Sanitized:
    """csi: complex ``(S,)``; k: subcarrier indices ``(S,)`` (contiguous); valid: bool ``(S,)`` measured bins.

    Scalars go through cmath and sums through ndarray methods: at hundreds of reports per second
    numpy's per-call overhead on 57 bins is most of the cost."""
    x = np.asarray(csi, complex)
    products = x[1:] * x[:-1].conj()
    pairs = valid[1:] & valid[:-1]
    slope = cmath.phase(complex(products[pairs].sum()))
    y = x * np.exp(-1j * slope * np.asarray(k, float))
    measured = y[valid]
    total = complex(measured.sum())
    common = cmath.phase(total)
    power = float((measured.real ** 2 + measured.imag ** 2).mean())      # |y| = |x|
    return Sanitized(slope, common, y * cmath.exp(-1j * common), power)
