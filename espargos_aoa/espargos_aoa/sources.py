"""Number of sources from covariance eigenvalues: MDL and AIC (Wax & Kailath, 1985)."""
from __future__ import annotations

import numpy as np

METHODS = ("mdl", "aic", "fixed")


def information_criterion(eigvals: np.ndarray, snapshots: float, method: str) -> np.ndarray:
    """MDL or AIC value for k = 0..N-1 sources; eigvals: ``(N,)`` real, any order."""
    lam = np.clip(np.sort(np.asarray(eigvals, float))[::-1], 1e-12 * max(np.max(eigvals), 1e-30), None)
    n = lam.size
    values = np.empty(n)
    for k in range(n):
        noise = lam[k:]
        log_ratio = np.mean(np.log(noise)) - np.log(np.mean(noise))          # log(geometric / arithmetic)
        likelihood = -snapshots * (n - k) * log_ratio
        free = k * (2 * n - k)
        values[k] = likelihood + (0.5 * free * np.log(snapshots) if method == "mdl" else free)
    return values


def source_count(eigvals: np.ndarray, snapshots: float, method: str, max_sources: int) -> int:
    """Estimated number of sources, at most ``min(max_sources, N - 1)``; ``method`` "fixed"
    returns ``max_sources``."""
    limit = min(max_sources, np.asarray(eigvals).size - 1)
    if method == "fixed":
        return limit
    return int(np.argmin(information_criterion(eigvals, snapshots, method)[:limit + 1]))
