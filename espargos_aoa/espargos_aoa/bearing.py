"""Bearings from a MUSIC spectrum: grid peaks, continuous refinement, Cramer-Rao uncertainty."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.optimize import minimize, minimize_scalar

from .music import SpectrumGrid, music_denominator
from .steering import SPEED_OF_LIGHT, direction_derivatives, direction_vectors, steering_vectors, unit_vectors


def grid_peaks(spectrum_db: np.ndarray, wraps_azimuth: bool = False) -> list[tuple[int, int]]:
    """Interior local maxima (elevation index, azimuth index) of ``(E, A)``, strongest first.

    A maximum on the edge of the search grid is no peak: the spectrum may just keep rising
    beyond it (model errors push a spurious subspace towards endfire), so no bearing can be
    read from it. With ``wraps_azimuth`` (the grid covers the full circle) the azimuth axis is
    circular and has no edge; the first and last elevation rows of a 2-D grid are edges.
    """
    rows = spectrum_db.shape[0]
    extended = np.pad(spectrum_db, ((1, 1), (0, 0)), mode="edge")
    extended = np.pad(extended, ((0, 0), (1, 1)), mode="wrap" if wraps_azimuth else "edge")
    is_peak = spectrum_db == maximum_filter(extended, size=3)[1:-1, 1:-1]
    interior = np.ones_like(is_peak)
    if not wraps_azimuth:
        interior[:, [0, -1]] = False
    if rows > 1:
        interior[[0, -1], :] = False
    flat = np.isfinite(spectrum_db) & is_peak & interior & (spectrum_db > np.min(spectrum_db))
    idx = np.argwhere(flat)
    order = np.argsort(spectrum_db[flat])[::-1]
    return [tuple(map(int, idx[i])) for i in order]


def refine_peak(grid: SpectrumGrid, el_index: int, az_index: int, positions_m: np.ndarray, freqs_hz: np.ndarray,
                signal_subspaces: np.ndarray) -> tuple[float, float]:
    """Continuous (azimuth, elevation) in radians minimising the MUSIC denominator within one
    grid step of the grid peak. 1-D grids keep the grid's elevation."""

    def cost(az: float, el: float) -> float:
        a = steering_vectors(positions_m, freqs_hz, direction_vectors([az], [el]), np.complex128)
        return float(music_denominator(signal_subspaces, a)[0, 0])

    az0, el0 = grid.azimuths_rad[az_index], grid.elevations_rad[el_index]
    az_step = np.diff(grid.azimuths_rad[:2])[0] if grid.azimuths_rad.size > 1 else np.radians(1.0)
    if not grid.two_d:
        res = minimize_scalar(lambda az: cost(az, el0), bounds=(az0 - az_step, az0 + az_step), method="bounded",
                              options={"xatol": 1e-7})
        return float(res.x), float(el0)
    el_step = np.diff(grid.elevations_rad[:2])[0]
    res = minimize(lambda v: cost(v[0], v[1]), np.array([az0, el0]), method="Nelder-Mead",
                   bounds=[(az0 - az_step, az0 + az_step), (el0 - el_step, el0 + el_step)],
                   options={"xatol": 1e-7, "fatol": 1e-14, "initial_simplex": np.array(
                       [[az0, el0], [az0 + az_step / 2, el0], [az0, el0 + el_step / 2]])})
    return float(res.x[0]), float(res.x[1])


def subband_spread(azimuth_rad: float, elevation_rad: float, positions_m: np.ndarray, freqs_hz: np.ndarray,
                   signal_subspaces: np.ndarray, halfwidth_rad: float, points: int = 201) -> float:
    """Standard error (rad) of the mean of the per-subband azimuths of one bearing.

    Each subband's MUSIC cost is minimised on its own within ``halfwidth_rad`` of the joint
    estimate (a fine grid of ``points``, then a parabola through the minimum and its
    neighbours); the spread of those estimates is an estimate of the error of their
    combination that also contains what varies with frequency and the bound does not model
    (multipath whose phase against the direct path turns across the band).
    freqs_hz ``(B,)``, signal_subspaces ``(B, N, K)``; needs B >= 2.
    """
    az = azimuth_rad + np.linspace(-halfwidth_rad, halfwidth_rad, points)
    step = az[1] - az[0]
    a = steering_vectors(positions_m, freqs_hz, unit_vectors(az, np.full_like(az, elevation_rad)))  # (B, G, N)
    proj = a @ np.conj(signal_subspaces).astype(a.dtype)                                                 # (B, G, K)
    cost = 1.0 - np.sum(proj.real ** 2 + proj.imag ** 2, axis=2) / a.shape[-1]                          # (B, G)
    best = np.clip(np.argmin(cost, axis=1), 1, points - 2)
    rows = np.arange(cost.shape[0])
    left, mid, right = cost[rows, best - 1], cost[rows, best], cost[rows, best + 1]
    curvature = left - 2 * mid + right
    offset = np.where(curvature > 0, 0.5 * (left - right) / np.where(curvature > 0, curvature, 1.0), 0.0)
    estimates = az[best] + np.clip(offset, -1, 1) * step
    return float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))


def source_powers(covariance: np.ndarray, steering: np.ndarray, noise_power: float) -> np.ndarray:
    """Source covariance P = A^+ (R - sigma^2 I) A^+^H, ``(K, K)``; steering A: ``(N, K)``."""
    pinv = np.linalg.pinv(steering)
    p = pinv @ (covariance - noise_power * np.eye(covariance.shape[0])) @ pinv.conj().T
    p = 0.5 * (p + p.conj().T)
    values, vectors = np.linalg.eigh(p)
    return (vectors * np.clip(values, 1e-12 * noise_power, None)) @ vectors.conj().T


def crb_std(positions_m: np.ndarray, freq_hz: float, azimuths_rad: np.ndarray, elevations_rad: np.ndarray,
            powers: np.ndarray, noise_power: float, snapshots: float, two_d: bool) -> np.ndarray:
    """1-sigma stochastic Cramer-Rao bound (Stoica & Nehorai 1990) of every source's angles.

    positions_m ``(N, 3)``; azimuths/elevations ``(K,)``; powers: source covariance ``(K, K)``
    in the units of ``noise_power``. Returns ``(K, 2)`` std in radians (azimuth, elevation);
    the elevation column is NaN for a 1-D estimate.
    """
    k = len(azimuths_rad)
    pos = np.asarray(positions_m, float)
    u = unit_vectors(azimuths_rad, elevations_rad)                                                    # (K, 3)
    a = np.exp(2j * np.pi * freq_hz / SPEED_OF_LIGHT * (pos @ u.T))                                     # (N, K)
    params = 2 if two_d else 1
    d = np.empty((pos.shape[0], params * k), complex)
    for i, (az, el) in enumerate(zip(azimuths_rad, elevations_rad)):
        du = direction_derivatives(az, el)
        for q in range(params):
            d[:, q * k + i] = 2j * np.pi * freq_hz / SPEED_OF_LIGHT * (pos @ du[q]) * a[:, i]
    r = a @ powers @ a.conj().T + noise_power * np.eye(pos.shape[0])
    ortho = np.eye(pos.shape[0]) - a @ np.linalg.pinv(a)
    g = powers @ a.conj().T @ np.linalg.solve(r, a) @ powers
    fim = 2 * snapshots / noise_power * np.real((d.conj().T @ ortho @ d) * np.tile(g.T, (params, params)))
    var = np.diag(np.linalg.pinv(fim))
    std = np.full((k, 2), np.nan)
    std[:, 0] = np.sqrt(np.abs(var[:k]))
    if two_d:
        std[:, 1] = np.sqrt(np.abs(var[k:]))
    return std
