"""Plane-wave steering vectors of an arbitrary antenna array and their angle derivatives.

Convention (the driver's): a plane wave arriving from unit direction ``u`` gives antenna
``p`` the phase ``exp(+j 2 pi f u.p / c)``. Directions follow REP 103 in the array frame:
azimuth from +x towards +y, elevation from the x-y plane towards +z, radians.
"""
from __future__ import annotations

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0


def direction_vectors(azimuths_rad: np.ndarray, elevations_rad: np.ndarray) -> np.ndarray:
    """Unit vectors for every (elevation, azimuth) pair, shape ``(E, A, 3)``."""
    az = np.asarray(azimuths_rad, float)[None, :]
    el = np.asarray(elevations_rad, float)[:, None]
    return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1)


def unit_vectors(azimuths_rad: np.ndarray, elevations_rad: np.ndarray) -> np.ndarray:
    """Unit vectors of element-wise (azimuth, elevation) pairs, shape ``(K, 3)``."""
    az, el = np.asarray(azimuths_rad, float), np.asarray(elevations_rad, float)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def direction_derivatives(azimuth_rad: float, elevation_rad: float) -> np.ndarray:
    """d u / d azimuth and d u / d elevation at one direction, shape ``(2, 3)``."""
    ca, sa, ce, se = np.cos(azimuth_rad), np.sin(azimuth_rad), np.cos(elevation_rad), np.sin(elevation_rad)
    return np.array([[-ce * sa, ce * ca, 0.0], [-se * ca, -se * sa, ce]])


def steering_vectors(positions_m: np.ndarray, freqs_hz: np.ndarray, directions: np.ndarray,
                     dtype: type = np.complex64) -> np.ndarray:
    """Steering vectors ``(B, *directions.shape[:-1], N)`` (unit-modulus entries).

    positions_m: ``(N, 3)`` antenna positions in metres; freqs_hz: ``(B,)`` absolute frequencies;
    directions: ``(..., 3)`` unit vectors. complex64 suits grids; peak refinement needs
    complex128, since float32 rounding flattens the cost near its minimum (~0.005 deg).
    """
    delays_s = directions @ np.asarray(positions_m, float).T / SPEED_OF_LIGHT          # (..., N)
    phase = 2 * np.pi * np.asarray(freqs_hz, float).reshape((-1,) + (1,) * delays_s.ndim) * delays_s
    return np.exp(1j * phase).astype(dtype)
