"""Window of CSI frames -> MUSIC spectrum and bearings: the whole AoA core behind one call."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtri  # chi-square quantile: chdtri(dof, 1 - p); lighter than scipy.stats

from .bearing import crb_std, grid_peaks, refine_peak, source_powers, subband_spread
from .covariance import Covariance, exchange_permutation, forward_backward, sample_covariance
from .music import SpectrumGrid, eigen_decomposition, music_denominator
from .sources import METHODS, source_count
from .steering import steering_vectors, unit_vectors

MODES = ("narrowband", "wideband")
SPREAD_SEARCH_RAD = np.radians(10.0)
"""Each subband's own azimuth is searched within this distance of the joint estimate."""


@dataclass
class AoaConfig:
    """Estimator settings. Angles in degrees (the node's parameters), grids inclusive."""

    mode: str = "wideband"
    """wideband (default): one covariance per subband with its own steering frequency, MUSIC
    projections averaged over subbands (incoherent); narrowband: all bins are snapshots of one
    covariance at the mean frequency. Narrowband is biased at high SNR away from broadside: the
    steering phase changes by +-0.8 % over an HT40 band, which turns one source into a
    covariance of rank > 1 (RMSE 3-20x the bound at 25-30 dB, |az| >= 40 deg; benchmark
    ``aoa_accuracy.py --set mode=narrowband``)."""
    subbands: int = 8
    forward_backward: bool = False
    source_count: str = "mdl"
    max_sources: int = 3
    """Upper limit of the source count (MDL/AIC), or the count itself with source_count=fixed. The
    board's four antenna columns resolve at most three directions in azimuth."""
    two_d: bool = False
    azimuth_min_deg: float = -90.0
    azimuth_max_deg: float = 90.0
    azimuth_step_deg: float = 0.5
    elevation_min_deg: float = -90.0
    elevation_max_deg: float = 90.0
    elevation_step_deg: float = 1.0
    min_peak_db: float = 3.0
    """A spectrum peak must stand this far above the spectrum's median to become a bearing."""
    phase_noise_deg: float = 0.5
    """1-sigma phase error of each antenna per frame, common to its subcarriers (PLL jitter of
    each sensor about the shared reference): an error the per-bin noise of the CRB does not
    contain. It adds the bound of a noise of power 2 P phase_noise^2 (a phase-only error
    equals, in the phase direction that moves a bearing, a circular noise of twice its
    variance) with one snapshot per frame. ASSUMED (no hardware figure yet): the simulator's
    realistic channel uses the same 0.5 deg; set it from the calibration's verified residual
    where one is known."""
    uncertainty_floor_deg: float = 0.0
    """Added in quadrature to the std (fixed model errors: calibration, geometry)."""

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        checks = [
            (self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}"),
            (self.source_count in METHODS, f"source_count must be one of {METHODS}, got {self.source_count!r}"),
            (1 <= self.subbands <= 512, f"subbands must be 1..512, got {self.subbands}"),
            (1 <= self.max_sources <= 8, f"max_sources must be 1..8, got {self.max_sources}"),
            (-180 <= self.azimuth_min_deg < self.azimuth_max_deg <= 180,
             f"need -180 <= azimuth_min < azimuth_max <= 180, got {self.azimuth_min_deg}..{self.azimuth_max_deg}"),
            (-90 <= self.elevation_min_deg < self.elevation_max_deg <= 90,
             f"need -90 <= elevation_min < elevation_max <= 90, got {self.elevation_min_deg}..{self.elevation_max_deg}"),
            (0.01 <= self.azimuth_step_deg <= 10, f"azimuth_step must be 0.01..10 deg, got {self.azimuth_step_deg}"),
            (0.1 <= self.elevation_step_deg <= 10, f"elevation_step must be 0.1..10 deg, got {self.elevation_step_deg}"),
            (self.min_peak_db >= 0, f"min_peak_db must be >= 0, got {self.min_peak_db}"),
            (self.uncertainty_floor_deg >= 0, f"uncertainty_floor must be >= 0, got {self.uncertainty_floor_deg}"),
            (0 <= self.phase_noise_deg <= 30, f"phase_noise must be 0..30 deg, got {self.phase_noise_deg}"),
        ]
        for ok, reason in checks:
            if not ok:
                raise ValueError(reason)

    def grid(self) -> SpectrumGrid:
        return SpectrumGrid.from_degrees(
            (self.azimuth_min_deg, self.azimuth_max_deg), self.azimuth_step_deg,
            (self.elevation_min_deg, self.elevation_max_deg) if self.two_d else None, self.elevation_step_deg)


@dataclass
class BearingEstimate:
    """One source: angles and 1-sigma std in radians, estimated SNR per antenna and snapshot,
    and the MUSIC peak height above the spectrum median in dB."""

    azimuth_rad: float
    elevation_rad: float
    azimuth_std_rad: float
    elevation_std_rad: float
    snr_db: float
    peak_db: float


@dataclass
class AoaResult:
    """spectrum_db: ``(E, A)`` MUSIC pseudo-spectrum normalised to a 0 dB maximum."""

    grid: SpectrumGrid
    spectrum_db: np.ndarray
    bearings: list[BearingEstimate]
    """Strongest source first (by estimated power, :attr:`BearingEstimate.snr_db`)."""
    sources: int
    """Source count from MDL/AIC (or fixed); may exceed len(bearings) if peaks were too weak."""
    covariance: Covariance


class AoaEstimator:
    """MUSIC on one array geometry. Steering vectors of the grid are cached per band frequencies."""

    def __init__(self, config: AoaConfig, positions_m: np.ndarray) -> None:
        config.validate()
        self.config = config
        self.positions_m = np.asarray(positions_m, float).reshape(-1, 3)
        if self.positions_m.shape[0] < 2:
            raise ValueError(f"MUSIC needs at least 2 antennas, the geometry has {self.positions_m.shape[0]}")
        self.grid = config.grid()
        self.perm = exchange_permutation(self.positions_m) if config.forward_backward else None
        if config.forward_backward and self.perm is None:
            raise ValueError("forward_backward needs a centro-symmetric array; this geometry is not")
        self._steering_key: tuple | None = None
        self._steering: np.ndarray | None = None

    def _grid_steering(self, band_freqs_hz: np.ndarray) -> np.ndarray:
        key = tuple(np.round(band_freqs_hz, -3))
        if key != self._steering_key:
            self._steering = steering_vectors(self.positions_m, band_freqs_hz, self.grid.directions())
            self._steering_key = key
        return self._steering

    def estimate(self, csi: np.ndarray, mask: np.ndarray, freqs_hz: np.ndarray, valid_bins: np.ndarray) -> AoaResult:
        """csi: complex ``(F, N, S)``; mask: bool ``(F, N)``; freqs_hz: ``(S,)`` Hz; valid_bins: bool ``(S,)``.

        Raises CovarianceError when the window cannot give a covariance.
        """
        cfg = self.config
        cov = sample_covariance(csi, mask, freqs_hz, valid_bins, cfg.subbands if cfg.mode == "wideband" else 1)
        matrices = forward_backward(cov.matrices, self.perm) if self.perm is not None else cov.matrices
        eigvals, eigvecs = eigen_decomposition(matrices)
        mean_eigvals = eigvals.mean(axis=0)
        # Snapshot count of the MDL/AIC test: every measured bin of every frame in one band. The
        # sorted noise eigenvalues of each band spread as the band's own snapshot count says;
        # averaging bands lowers their variance but not that spread, so the band count is right.
        sources = source_count(mean_eigvals, cov.snapshots, cfg.source_count, cfg.max_sources)
        subspaces = eigvecs[:, :, :max(sources, 1)]
        denominator = music_denominator(subspaces, self._grid_steering(cov.freqs_hz))
        spectrum_db = -10 * np.log10(denominator / denominator.min())
        bearings = self._bearings(spectrum_db, sources, subspaces, cov, matrices, mean_eigvals) if sources else []
        return AoaResult(self.grid, spectrum_db, bearings, sources, cov)

    def _same_direction(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether two refined (azimuth, elevation) in rad lie within one grid step of each other."""
        az_step = float(np.diff(self.grid.azimuths_rad[:2])[0]) if self.grid.azimuths_rad.size > 1 else 0.0
        el_step = float(np.diff(self.grid.elevations_rad[:2])[0]) if self.grid.elevations_rad.size > 1 else 0.0
        d_az = abs(float(np.angle(np.exp(1j * (a[0] - b[0])))))
        return d_az <= az_step and abs(a[1] - b[1]) <= el_step

    def _bearings(self, spectrum_db: np.ndarray, sources: int, subspaces: np.ndarray, cov: Covariance,
                  matrices: np.ndarray, eigvals: np.ndarray) -> list[BearingEstimate]:
        cfg = self.config
        median_db = float(np.median(spectrum_db))
        peaks, refined = [], []
        for p in grid_peaks(spectrum_db, self.grid.wraps_azimuth):
            if len(peaks) == sources or spectrum_db[p] - median_db < cfg.min_peak_db:
                break
            angle = refine_peak(self.grid, p[0], p[1], self.positions_m, cov.freqs_hz, subspaces)
            if not any(self._same_direction(angle, other) for other in refined):   # two grid maxima, one source
                peaks.append(p)
                refined.append(angle)
        if not peaks:
            return []
        angles = np.array(refined)
        centre_hz = float(np.mean(cov.freqs_hz))
        noise = float(np.mean(eigvals[sources:]))
        steering = steering_vectors(self.positions_m, [centre_hz], unit_vectors(angles[:, 0], angles[:, 1]))[0]
        powers = source_powers(matrices.mean(axis=0), steering.T, noise)
        std = crb_std(self.positions_m, centre_hz, angles[:, 0], angles[:, 1], powers, noise,
                      cov.snapshots * len(cov.freqs_hz), self.grid.two_d)
        if cfg.phase_noise_deg > 0:
            jitter_power = 2 * np.radians(cfg.phase_noise_deg) ** 2 * float(np.real(np.trace(powers)))
            std = np.sqrt(std ** 2 + crb_std(self.positions_m, centre_hz, angles[:, 0], angles[:, 1], powers,
                                             jitter_power, cov.frames, self.grid.two_d) ** 2)
        bands = len(cov.freqs_hz)
        if bands > 1 and not self.grid.two_d:
            # The subbands' own azimuths scatter as the bound says unless something the bound
            # does not model moves them: then (a chi-square test at 5 % on their spread) the
            # spread is the std.
            spread = np.array([subband_spread(az, el, self.positions_m, cov.freqs_hz, subspaces,
                                              SPREAD_SEARCH_RAD) for az, el in angles])
            excess = spread ** 2 > std[:, 0] ** 2 * chdtri(bands - 1, 0.05) / (bands - 1)
            std[:, 0] = np.where(excess, spread, std[:, 0])
        floor = np.radians(cfg.uncertainty_floor_deg)
        std = np.sqrt(std ** 2 + floor ** 2)
        bearings = [BearingEstimate(float(az), float(el), float(s[0]), float(s[1]),
                                    float(10 * np.log10(max(np.real(powers[i, i]) / noise, 1e-12))),
                                    float(spectrum_db[p] - median_db))
                    for i, ((az, el), s, p) in enumerate(zip(angles, std, peaks))]
        # Strongest first: MUSIC peak heights measure how orthogonal a direction is to the noise
        # subspace, not power (at high SNR every resolved peak is as high as the grid lets it be).
        return sorted(bearings, key=lambda b: b.snr_db, reverse=True)
