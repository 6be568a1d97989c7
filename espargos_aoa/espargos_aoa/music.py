"""MUSIC pseudo-spectrum on an azimuth (x elevation) grid, narrowband or wideband (per subband)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .steering import direction_vectors


@dataclass(frozen=True)
class SpectrumGrid:
    """Search grid in radians: ``azimuths_rad`` ``(A,)``; ``elevations_rad`` ``(E,)`` (``[0.0]`` for 1-D)."""

    azimuths_rad: np.ndarray
    elevations_rad: np.ndarray

    @classmethod
    def from_degrees(cls, azimuth_range: tuple[float, float], azimuth_step: float,
                     elevation_range: tuple[float, float] | None = None, elevation_step: float = 1.0) -> "SpectrumGrid":
        """Inclusive grids; ``elevation_range`` None gives the 1-D azimuth grid at elevation 0."""
        az = np.radians(np.arange(azimuth_range[0], azimuth_range[1] + azimuth_step / 2, azimuth_step))
        el = (np.zeros(1) if elevation_range is None else
              np.radians(np.arange(elevation_range[0], elevation_range[1] + elevation_step / 2, elevation_step)))
        return cls(az, el)

    @property
    def wraps_azimuth(self) -> bool:
        """True when the azimuth grid covers the full circle (its axis is then circular)."""
        az = self.azimuths_rad
        step = az[1] - az[0] if az.size > 1 else 2 * np.pi
        return bool(az[-1] - az[0] + step >= 2 * np.pi - 1e-9)

    @property
    def two_d(self) -> bool:
        return self.elevations_rad.size > 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.elevations_rad.size, self.azimuths_rad.size

    def directions(self) -> np.ndarray:
        """Unit vectors ``(E, A, 3)``."""
        return direction_vectors(self.azimuths_rad, self.elevations_rad)


def eigen_decomposition(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(B, N)`` in descending order and eigenvectors ``(B, N, N)`` (columns)."""
    values, vectors = np.linalg.eigh(matrices)
    return values[:, ::-1], vectors[:, :, ::-1]


def music_denominator(signal_subspaces: np.ndarray, steering: np.ndarray) -> np.ndarray:
    """Mean over bands of the normalised noise-subspace projection 1 - |E_s^H a|^2 / N.

    signal_subspaces: ``(B, N, K)`` orthonormal columns; steering: ``(B, ..., N)`` unit-modulus
    entries. Returns ``(...)``, in [0, 1]; MUSIC's pseudo-spectrum is its inverse. Computed
    through the K-dimensional signal subspace, so the cost is O(G N K) per band.
    """
    bands, antennas = steering.shape[0], steering.shape[-1]
    flat = steering.reshape(bands, -1, antennas)
    proj = flat @ np.conj(signal_subspaces).astype(steering.dtype)             # (B, G, K)
    captured = np.sum(proj.real ** 2 + proj.imag ** 2, axis=2) / antennas
    return np.clip(1.0 - captured.mean(axis=0), 1e-12, None).reshape(steering.shape[1:-1])
