"""Vital-signs core without ROS: the physics of the features (blind spots), AGC steps, the rate
estimator against a wandering rate, the swarm simulator's people, and parameter refusals."""
import numpy as np
import pytest
from espargos_driver.sim.person import EMPTY, MOVING, STILL, PersonSpec

from espargos_aoa.vitals import (EMPTY as SAID_EMPTY, MOVING as SAID_MOVING, STILL as SAID_STILL, GainTracker,
                                 VitalsConfig, VitalsLink, exchange_features, mean_rate, report_features)

RATE_HZ = 50.0
WAVELENGTH_M = 0.124


def channel(t: np.ndarray, excess_path_m: float, person: PersonSpec, seed: int, snr_db: float = 25.0):
    """One link's reciprocal channel over ``t`` (56 subcarriers): a unit direct path and the
    person's path (amplitude 0.1, ``excess_path_m`` longer, minus twice the chest displacement),
    with white noise per direction: (H seen by A, H seen by B), each ``(T, 56)``."""
    rng = np.random.default_rng(seed)
    f = 2.437e9 + np.arange(-28, 28) * 312500.0
    chest = np.array([person.chest_m(x) for x in t])
    length = excess_path_m - 2 * chest[:, None]
    h = 1.0 + 0.1 * np.exp(-2j * np.pi * f[None, :] * length / 299792458.0)
    sigma = 10 ** (-snr_db / 20) / np.sqrt(2)
    noise = [sigma * (rng.standard_normal(h.shape) + 1j * rng.standard_normal(h.shape)) for _ in range(2)]
    return h + noise[0], h + noise[1]


def verdicts(t: np.ndarray, features: np.ndarray, config: VitalsConfig) -> list:
    """Estimates once per second of ``t`` from the first full window on."""
    link, out = VitalsLink(config), []
    for x, z in zip(t, features):
        link.add(float(x), z)
        if x >= config.window_s and abs(x - round(x)) < 1e-9:
            out.append(link.estimate(float(x)))
    return out


@pytest.mark.parametrize("quarter_waves", [0, 1, 2, 3])
def test_exchange_features_have_no_blind_spot_and_one_direction_does(quarter_waves):
    """The person a quarter wavelength further each time: the product of both directions (both
    quadratures of the breathing path) finds 15 /min at every spot; one direction with its common
    phase removed (the oscillator's phase takes the quadrature part with it) keeps only the
    amplitude change, which vanishes to first order at every second spot."""
    person = PersonSpec(breathing_rate_bpm=15.0, rate_variability=0.0, chest_displacement_m=0.004)
    t = np.arange(0, 50, 1 / RATE_HZ)
    excess = 1.0 + quarter_waves * WAVELENGTH_M / 4 + 0.01
    by_a, by_b = channel(t, excess, person, seed=quarter_waves)
    rng = np.random.default_rng(10 + quarter_waves)
    lo = rng.uniform(-np.pi, np.pi, t.size)                       # each frame's oscillator phase
    seen_a, seen_b = by_a * np.exp(1j * lo)[:, None], by_b * np.exp(-1j * lo)[:, None]
    both = [exchange_features(a, 1.0, b, 1.0, 0.0) for a, b in zip(seen_a, seen_b)]
    one = [report_features(a * np.exp(-1j * np.angle(np.sum(a))), 1.0) for a in seen_a]
    config = VitalsConfig()
    both_said = verdicts(t, np.array(both), config)
    assert all(v.state == SAID_STILL and abs(v.rate_bpm - 15.0) < 0.5 for v in both_said), \
        [(v.state, v.rate_bpm, v.snr_db) for v in both_said]
    one_snr = np.median([v.snr_db for v in verdicts(t, np.array(one), config)])
    both_snr = np.median([v.snr_db for v in both_said])
    print(f"excess path +{quarter_waves} quarter waves: breathing SNR both directions {both_snr:.1f} dB, "
          f"one direction {one_snr:.1f} dB")
    if quarter_waves % 2 == 1:                              # the person's path in quadrature with the direct one
        assert one_snr < both_snr - 8


def test_agc_steps_are_undone_and_breathing_kept():
    tracker = GainTracker()
    rng = np.random.default_rng(3)
    t = np.arange(0, 20, 1 / RATE_HZ)
    breathing = 1 + 0.02 * np.sin(2 * np.pi * 0.25 * t)           # 0.17 dB of breathing modulation
    gain_db = np.where(t < 7, 0.0, np.where(t < 13, 3.0, -2.0))   # two AGC steps
    power = breathing ** 2 * 10 ** (gain_db / 10) * (1 + 0.01 * rng.standard_normal(t.size))
    corrected = np.array([p * tracker.scale(p) ** 2 for p in power])
    assert tracker.steps == 2
    np.testing.assert_allclose(corrected / np.mean(corrected), breathing ** 2 / np.mean(breathing ** 2), atol=0.04)
    correlation = np.corrcoef(corrected, breathing ** 2)[0, 1]
    assert correlation > 0.7, correlation                       # the breathing is kept, the steps are gone


def test_the_rate_is_the_windows_mean_even_when_it_wanders():
    """Rate wandering +-15 %: the cycle count over the window is the mean rate; the 1-sigma is of
    the right size."""
    errors, sigmas = [], []
    for seed in range(12):
        person = PersonSpec(breathing_rate_bpm=18.0, rate_variability=0.15, seed=seed)
        t = np.arange(0, 30, 0.1)
        signal = np.array([person.chest_m(x) for x in t]) + 2e-4 * np.random.default_rng(seed).standard_normal(t.size)
        rate = mean_rate(signal, 10.0, 0.3)
        trim = 0.5 / 0.3
        truth = person.mean_rate_bpm(trim, 30 - trim - 0.1)
        errors.append(60 * rate.frequency_hz - truth)
        sigmas.append(60 * rate.std_hz)
    errors = np.abs(errors)
    assert np.max(errors) < 1.0 and np.median(errors) < 0.3, errors
    assert np.mean(errors <= np.hypot(sigmas, VitalsConfig().rate_floor_bpm)) >= 0.5


@pytest.mark.parametrize("rate_bpm", [8.0, 9.0])
def test_slow_breathing_is_found_at_every_phase_of_the_window(rate_bpm):
    """A 30 s window holds only four breaths at 8 /min: every window, whatever phase the breaths
    fall at, is STILL with the window's mean rate (a fixed half-breath trim per end left three
    breaths to count, and one window in seven lost its third crossing: EMPTY)."""
    person = PersonSpec(breathing_rate_bpm=rate_bpm, chest_displacement_m=0.005, seed=4)
    t = np.arange(0, 70, 1 / RATE_HZ)
    by_a, by_b = channel(t, 1.3, person, seed=5)
    said = verdicts(t, np.array([exchange_features(a, 1.0, b, 1.0, 0.0) for a, b in zip(by_a, by_b)]), VitalsConfig())
    assert len(said) == 40
    wrong = [(round(v.t_end_s), v.state, round(v.rate_bpm, 2)) for v in said
             if v.state != SAID_STILL or abs(v.rate_bpm - person.mean_rate_bpm(v.t_end_s - 30, v.t_end_s)) > 1.0]
    assert not wrong, wrong


def test_person_truth():
    p = PersonSpec(breathing_rate_bpm=12.0, rate_variability=0.1, present=[[5, 50]], moving=[[20, 25]], seed=1)
    assert [p.state(t) for t in (1, 10, 22, 30, 60)] == [EMPTY, STILL, MOVING, STILL, EMPTY]
    assert p.mean_rate_bpm(0, 600) == pytest.approx(12.0, abs=0.3)
    assert 0 <= min(p.chest_m(t) for t in np.arange(0, 10, 0.05)) < 1e-4
    assert p.chest_displacement_m - 1e-4 < max(p.chest_m(t) for t in np.arange(0, 10, 0.05)) <= p.chest_displacement_m
    assert p.path(np.zeros(3), np.array([5.0, 0, 1]), 60.0) is None


def test_empty_and_moving():
    """No person: EMPTY; a sudden large change for 3 s (gross motion): MOVING, and no rate
    until min_window of clean CSI has passed."""
    rng = np.random.default_rng(5)
    t = np.arange(0, 80, 1 / RATE_HZ)
    base = np.exp(1j * rng.uniform(-np.pi, np.pi, 56))
    z = base + 0.03 * (rng.standard_normal((t.size, 56)) + 1j * rng.standard_normal((t.size, 56)))
    moving = (t >= 50) & (t < 53)
    z[moving] += 0.2 * np.exp(1j * 2 * np.pi * 12 * t[moving])[:, None] * base
    link = VitalsLink(VitalsConfig())
    said = {}
    for x, zz in zip(t, z):
        link.add(float(x), zz)
        if abs(x - round(x)) < 1e-6 and x >= 30:
            said[round(x)] = link.estimate(float(x))
    assert all(said[s].state == SAID_EMPTY for s in range(30, 50)), [(s, said[s].state, said[s].reason) for s in said]
    assert said[52].state == SAID_MOVING
    assert all(not np.isfinite(said[s].rate_bpm) for s in range(50, 80))


@pytest.mark.parametrize("change, reason", [({"window_s": 10.0}, "must be 15-60 s"),
                                            ({"min_window_s": 40.0}, "min_window"),
                                            ({"min_rate_bpm": 30.0}, "empty"),
                                            ({"max_rate_bpm": 100.0}, "noise band"),
                                            ({"sample_rate_hz": 5.0}, "sample_rate"),
                                            ({"motion_factor": 0.5}, "motion_factor")])
def test_config_refuses_settings_that_cannot_work(change, reason):
    with pytest.raises(ValueError, match=reason):
        VitalsConfig(**change).validate()


def test_non_finite_features_are_refused():
    link = VitalsLink(VitalsConfig())
    with pytest.raises(ValueError):
        link.add(0.0, np.array([np.nan, 1.0]))
    link.add(0.0, np.ones(3))
    with pytest.raises(ValueError):
        link.add(0.1, np.ones(4))
