"""Spatial covariance of a window of CSI frames, tolerant of antennas missing from some frames.

Missing antennas are handled as in the ESPARGOS paper: entry (i, j) of the sample covariance
averages x_i x_j^* over the frames in which both antennas reported, instead of dropping
every incomplete frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CovarianceError(ValueError):
    """The window cannot give a covariance; ``reason`` is a diagnostics counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class Covariance:
    """Per-band spatial covariance.

    matrices: complex128 ``(B, N, N)``; freqs_hz: ``(B,)`` centre frequency of each band;
    snapshots: effective snapshots per band (frames x bins, averaged over antenna pairs);
    frames: frames in the window.
    """

    matrices: np.ndarray
    freqs_hz: np.ndarray
    snapshots: float
    frames: int


def band_slices(valid_bins: np.ndarray, subbands: int) -> list[np.ndarray]:
    """Indices of the valid bins split into ``subbands`` contiguous groups of near-equal size."""
    valid = np.flatnonzero(valid_bins)
    return [b for b in np.array_split(valid, min(subbands, valid.size)) if b.size]


def sample_covariance(csi: np.ndarray, mask: np.ndarray, freqs_hz: np.ndarray, valid_bins: np.ndarray,
                      subbands: int = 1) -> Covariance:
    """Entry-wise sample covariance per subband.

    csi: complex ``(F, N, S)`` (values of masked-out antennas are ignored); mask: bool ``(F, N)``;
    freqs_hz: ``(S,)`` absolute bin frequencies; valid_bins: bool ``(S,)`` measured bins.
    Frames keep their relative power: a faded frame carries less signal over the same noise,
    and scaling it up to the others would scale up its noise too (the estimator then loses
    efficiency on a fading source). Receiver gain changes must be taken out before
    (:func:`espargos_aoa.gains.compensate_gains`); the whole window is scaled to unit mean
    power for numerical range only. With ``subbands=1`` all valid bins are snapshots of one
    narrowband covariance at their mean frequency.
    """
    frames, antennas, _ = csi.shape
    mask = np.asarray(mask, bool)
    x = np.where(mask[:, :, None], csi, 0)[:, :, valid_bins]
    power = np.sum(np.abs(x) ** 2, axis=(1, 2)) / np.maximum(mask.sum(axis=1) * x.shape[2], 1)
    usable = power > 0
    if not usable.any():
        raise CovarianceError("no_signal", "every frame in the window has zero power")
    x = x[usable] / np.sqrt(np.mean(power[usable]))
    m = mask[usable].astype(float)
    pair_frames = m.T @ m                                                    # (N, N)
    if np.any(pair_frames == 0):
        i, j = np.argwhere(pair_frames == 0)[0]
        raise CovarianceError("antenna_pair_missing",
                              f"antennas {i} and {j} never reported in the same frame of the window")
    bands = band_slices(np.ones(x.shape[2], bool), subbands)
    valid_freqs = np.asarray(freqs_hz, float)[valid_bins]
    matrices = np.empty((len(bands), antennas, antennas), complex)
    for b, idx in enumerate(bands):
        y = x[:, :, idx].transpose(1, 0, 2).reshape(antennas, -1)
        matrices[b] = (y @ y.conj().T) / (pair_frames * idx.size)
    snapshots = float(np.mean(pair_frames)) * x.shape[2] / len(bands)
    return Covariance(matrices, np.array([valid_freqs[idx].mean() for idx in bands]), snapshots, int(usable.sum()))


def exchange_permutation(positions_m: np.ndarray, tol_m: float = 1e-4) -> np.ndarray | None:
    """Permutation J with p[J[i]] - c = -(p[i] - c) about the array centre c, or None if the
    array is not centro-symmetric (forward-backward averaging then does not apply)."""
    p = np.asarray(positions_m, float)
    mirrored = 2 * p.mean(axis=0) - p
    dist = np.linalg.norm(p[None, :, :] - mirrored[:, None, :], axis=2)       # (i, j)
    perm = np.argmin(dist, axis=1)
    if np.any(dist[np.arange(len(p)), perm] > tol_m) or len(set(perm.tolist())) != len(p):
        return None
    return perm


def forward_backward(matrices: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """(R + J R^* J) / 2 for every band; ``perm`` from :func:`exchange_permutation`."""
    return 0.5 * (matrices + np.conj(matrices[:, perm][:, :, perm]))
