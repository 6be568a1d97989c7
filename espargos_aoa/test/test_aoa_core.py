"""Pure AoA core on plane waves made here, independently of the board simulator (whose channel
model the system tests in test/ judge the estimator against).

Geometry: the 2x4 board grid (6 cm spacing) in the array's y-z plane; HT40 subcarriers -58..58
around 2447 MHz, the three DC bins left out as the ESP32 interpolates them. Steering convention
of espargos_aoa.steering: antenna p, direction u -> phase exp(+j 2 pi f u.p / c).
"""
from __future__ import annotations

import numpy as np
import pytest

from espargos_aoa.bearing import crb_std
from espargos_aoa.covariance import CovarianceError, exchange_permutation, forward_backward, sample_covariance
from espargos_aoa.estimator import AoaConfig, AoaEstimator
from espargos_aoa.sources import source_count

SPEED_OF_LIGHT = 299_792_458.0
"""m/s, written out here so that the generator shares nothing with the code under test."""
SPACING_M = 0.06
ROWS, COLS = 2, 4
BOARD = np.zeros((ROWS, COLS, 3))
BOARD[..., 1] = (np.arange(COLS) - (COLS - 1) / 2)[None, :] * SPACING_M
BOARD[..., 2] = ((ROWS - 1) / 2 - np.arange(ROWS))[:, None] * SPACING_M
BINS = np.arange(-58, 59)
FREQS_HZ = 2.447e9 + BINS * 312.5e3
VALID = np.abs(BINS) > 1


def direction(azimuth_deg: float, elevation_deg: float = 0.0) -> np.ndarray:
    """Unit vector (REP 103: azimuth from +x towards +y, elevation towards +z)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def frames(sources: list[tuple[float, float, float]], count: int, snr_db: float, seed: int = 0,
           positions: np.ndarray = BOARD) -> np.ndarray:
    """``count`` frames, complex ``(count, antennas, bins)``: one plane wave per (azimuth deg,
    elevation deg, gain dB) source, each with its own delay (30 ns apart) and a random phase per
    frame; complex white noise ``snr_db`` below the first source's unit power."""
    rng = np.random.default_rng(seed)
    pos = positions.reshape(-1, 3)
    csi = np.zeros((count, len(pos), FREQS_HZ.size), complex)
    for i, (azimuth_deg, elevation_deg, gain_db) in enumerate(sources):
        wave = np.exp(2j * np.pi * np.outer(pos @ direction(azimuth_deg, elevation_deg), FREQS_HZ) / SPEED_OF_LIGHT)
        delay = np.exp(-2j * np.pi * FREQS_HZ * 30e-9 * i)
        phases = np.exp(2j * np.pi * rng.random(count))
        csi += 10 ** (gain_db / 20) * phases[:, None, None] * (wave * delay)[None]
    noise = rng.standard_normal(csi.shape) + 1j * rng.standard_normal(csi.shape)
    return csi + noise * 10 ** (-snr_db / 20) / np.sqrt(2)


def source(azimuth_deg: float, elevation_deg: float = 0.0) -> list[tuple[float, float, float]]:
    return [(azimuth_deg, elevation_deg, 0.0)]


def estimate(csi: np.ndarray, mask: np.ndarray | None = None, **config) -> list:
    est = AoaEstimator(AoaConfig(**config), BOARD)
    mask = np.ones(csi.shape[:2], bool) if mask is None else mask
    return est.estimate(csi, mask, FREQS_HZ, VALID)


@pytest.mark.parametrize("mode", ["narrowband", "wideband"])
@pytest.mark.parametrize("azimuth_deg", [-55.0, -10.0, 0.0, 35.0, 60.0])
def test_single_source_azimuth(mode, azimuth_deg):
    result = estimate(frames(source(azimuth_deg), 20, 10.0), mode=mode)
    assert result.sources == 1 and len(result.bearings) == 1
    b = result.bearings[0]
    err = np.degrees(b.azimuth_rad) - azimuth_deg
    std = np.degrees(b.azimuth_std_rad)
    assert 0.005 < std < 0.2
    assert abs(err) < 5 * std, f"error {err:.4f} deg against CRB std {std:.4f} deg"
    assert abs(b.snr_db - 10.0) < 1.0


def test_two_d_finds_elevation():
    result = estimate(frames(source(25.0, 30.0), 20, 20.0), two_d=True)
    b = result.bearings[0]
    assert result.spectrum_db.shape == (181, 361)
    assert abs(np.degrees(b.azimuth_rad) - 25.0) < 0.2 and abs(np.degrees(b.elevation_rad) - 30.0) < 0.3
    assert 0 < b.elevation_std_rad < np.radians(0.2)


def test_one_d_has_no_elevation_std():
    b = estimate(frames(source(5.0), 10, 20.0)).bearings[0]
    assert b.elevation_rad == 0.0 and np.isnan(b.elevation_std_rad)


def test_missing_antennas_use_pairwise_covariance():
    csi = frames(source(-20.0), 30, 20.0, seed=3)
    rng = np.random.default_rng(4)
    mask = rng.random(csi.shape[:2]) > 0.2
    csi[~mask] = np.nan
    result = estimate(csi, mask)
    assert abs(np.degrees(result.bearings[0].azimuth_rad) + 20.0) < 0.3


def test_covariance_of_complete_frames_is_the_plain_sample_covariance():
    csi = frames(source(0.0), 5, 10.0)
    cov = sample_covariance(csi, np.ones((5, 8), bool), FREQS_HZ, VALID)
    x = csi[:, :, VALID]
    x = x / np.sqrt(np.mean(np.abs(x) ** 2))                 # the window as a whole, not frame by frame
    plain = np.einsum("fns,fms->nm", x, x.conj()) / (5 * x.shape[2])
    np.testing.assert_allclose(cov.matrices[0], plain, atol=1e-6)
    assert cov.snapshots == 5 * VALID.sum()


def test_antennas_never_together_are_refused():
    csi = frames(source(0.0), 4, 10.0)
    mask = np.ones((4, 8), bool)
    mask[:, 3] = False
    with pytest.raises(CovarianceError) as err:
        sample_covariance(csi, mask, FREQS_HZ, VALID)
    assert err.value.reason == "antenna_pair_missing"


def test_forward_backward_needs_centro_symmetry():
    pos = BOARD.reshape(-1, 3)
    perm = exchange_permutation(pos)
    np.testing.assert_allclose(pos[perm], -pos)
    assert exchange_permutation(pos[:5]) is None
    with pytest.raises(ValueError, match="centro-symmetric"):
        AoaEstimator(AoaConfig(forward_backward=True), pos[:5])
    r = np.random.default_rng(0).standard_normal((1, 8, 8)) * (1 + 1j)
    fb = forward_backward(r, perm)
    np.testing.assert_allclose(fb, forward_backward(fb, perm))


@pytest.mark.parametrize("method", ["mdl", "aic"])
def test_source_count(method):
    single = frames(source(10.0), 20, 10.0)
    two = frames([(-20.0, 0.0, 0.0), (20.0, 0.0, -3.0)], 20, 10.0)
    assert estimate(single, source_count=method, max_sources=3).sources == 1
    result = estimate(two, source_count=method, max_sources=3)
    assert result.sources == 2
    got = sorted(np.degrees(b.azimuth_rad) for b in result.bearings)
    assert abs(got[0] + 20.0) < 1.5 and abs(got[1] - 20.0) < 1.5
    noise_only = np.ones(8)
    assert source_count(noise_only, 100, method, 3) == 0


def test_crb_matches_closed_form_for_one_source_on_a_line():
    """Single source on a 4-element line along y at broadside: var = (1 + 1/(N snr)) / (2 L snr h)."""
    pos = np.zeros((4, 3))
    pos[:, 1] = np.arange(4) * 0.06
    f, snr, snapshots = 2.44e9, 10.0, 1000
    k = 2 * np.pi * f / SPEED_OF_LIGHT
    h = k ** 2 * np.sum((pos[:, 1] - pos[:, 1].mean()) ** 2)
    expected = np.sqrt((1 + 1 / (4 * snr)) / (2 * snapshots * snr * h))
    std = crb_std(pos, f, np.zeros(1), np.zeros(1), np.array([[snr]]), 1.0, snapshots, False)
    assert std[0, 0] == pytest.approx(expected, rel=1e-9)


def test_combined_layout_two_boards_in_two_d():
    """A 4x4 layout of two boards (arbitrary geometry): 2-D MUSIC from the positions alone."""
    pos = BOARD.reshape(-1, 3)
    layout = np.concatenate([pos + [0, 0, 0.06], pos - [0, 0, 0.06]])               # (16, 3)
    u = np.array([np.cos(np.radians(10)) * np.cos(np.radians(-30)), np.cos(np.radians(10)) * np.sin(np.radians(-30)),
                  np.sin(np.radians(10))])
    rng = np.random.default_rng(5)
    steer = np.exp(2j * np.pi * np.outer(layout @ u / SPEED_OF_LIGHT, FREQS_HZ))
    csi = steer[None] * np.exp(2j * np.pi * rng.random((10, 1, FREQS_HZ.size)))
    csi = csi + 0.1 * (rng.standard_normal(csi.shape) + 1j * rng.standard_normal(csi.shape))
    est = AoaEstimator(AoaConfig(two_d=True), layout)
    b = est.estimate(csi, np.ones((10, 16), bool), FREQS_HZ, VALID).bearings[0]
    assert abs(np.degrees(b.azimuth_rad) + 30.0) < 0.2 and abs(np.degrees(b.elevation_rad) - 10.0) < 0.2


@pytest.mark.parametrize("bad, reason", [
    ({"mode": "broadband"}, "mode"), ({"subbands": 0}, "subbands"), ({"max_sources": 0}, "max_sources"),
    ({"azimuth_min_deg": 10.0, "azimuth_max_deg": -10.0}, "azimuth"), ({"azimuth_step_deg": 0.0}, "azimuth_step"),
    ({"source_count": "guess"}, "source_count"), ({"elevation_max_deg": 120.0}, "elevation"),
])
def test_config_rejects_settings_that_cannot_work(bad, reason):
    with pytest.raises(ValueError, match=reason):
        AoaConfig(**bad).validate()


def test_single_antenna_geometry_is_refused():
    with pytest.raises(ValueError, match="at least 2 antennas"):
        AoaEstimator(AoaConfig(), np.zeros((1, 3)))


def test_bearings_are_ranked_by_power_not_by_music_peak_height():
    """Rank 0 is the strongest source (Bearing.msg): a direct path and two reflections 10 and 13 dB
    weaker, all resolved. MUSIC's peak heights say nothing about power (at 20 dB each resolved
    peak is as high as the grid lets it be), so ranking by them made a reflection rank 0 in a third
    of the windows of the robot scene, and the locator fused it as the transmitter's bearing."""
    paths = [(46.0, 0.0, 0.0), (-4.0, 0.0, -10.0), (-24.0, 0.0, -13.0)]
    first = []
    for seed in range(30):
        bearings = estimate(frames(paths, 20, 20.0, seed=seed), phase_noise_deg=0.5).bearings
        assert len(bearings) == 3
        assert [b.snr_db for b in bearings] == sorted((b.snr_db for b in bearings), reverse=True)
        first.append(np.degrees(bearings[0].azimuth_rad))
    assert np.allclose(first, 46.0, atol=0.5), np.round(first, 1)


@pytest.mark.parametrize("seed", [32, 44])
def test_two_grid_peaks_of_one_source_give_one_bearing(seed):
    """A reflection near endfire (83 deg) has a broad MUSIC peak; two neighbouring grid maxima on
    it refined to the same direction and came out as two bearings. Their steering vectors being
    equal, the joint power estimate blew up (158 dB), and ranked by power the reflection was
    rank 0 (seed 44): a 50 deg error in test_aoa_system's sweeping transmitter, once in 100
    windows. One direction is one source."""
    paths = [(33.0, 0.0, 0.0), (83.0, 0.0, -10.0), (-37.0, 0.0, -13.0)]
    bearings = estimate(frames(paths, 10, 20.0, seed=seed), phase_noise_deg=0.5).bearings
    azimuths = np.sort(np.degrees([b.azimuth_rad for b in bearings]))
    assert np.all(np.diff(azimuths) > 1.0), azimuths
    assert abs(np.degrees(bearings[0].azimuth_rad) - 33.0) < 0.5 and bearings[0].snr_db < 30.0
