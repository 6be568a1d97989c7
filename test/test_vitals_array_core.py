"""The array path of the vital-signs estimator (espargos_aoa.array_vitals) on the board simulator's
channel model, without ROS: what the reference beam removes, what MVDR nulls, and that a beam
has no blind spots where a one-way swarm link has them."""
from __future__ import annotations

import numpy as np
from espargos_driver.geometry import board_antenna_positions
from espargos_driver.sim.channel import ArrayChannel
from espargos_driver.sim.person import PersonSpec
from espargos_driver.sim.scenario import ChannelModel, Impairments, Reflection, Transmitter
from espargos_driver.wifi import GRIDS, CsiFormat, grid_center_hz

from espargos_aoa.array_vitals import ArrayVitals, change_covariance, mvdr_weights, principal_direction, relative_channel
from espargos_aoa.gains import compensate_gains
from espargos_aoa.steering import steering_vectors, unit_vectors
from espargos_aoa.vitals import STILL, VitalsConfig

FMT = CsiFormat.HT40
FREQS = grid_center_hz(FMT, 6, 1) + GRIDS[FMT].indices * GRIDS[FMT].spacing_hz
POSITIONS = board_antenna_positions().reshape(-1, 3)
STILL_ROOM = ChannelModel(fading="none", paths=[], agc=True, agc_jitter_db=1.0, phase_noise_deg=0.5)


def at(azimuth_deg: float, distance_m: float) -> list[float]:
    a = np.radians(azimuth_deg)
    return [float(distance_m * np.cos(a)), float(distance_m * np.sin(a)), 0.0]


def steering(azimuth_deg: float) -> np.ndarray:
    direction = unit_vectors(np.radians([azimuth_deg]), np.zeros(1))
    return steering_vectors(POSITIONS, np.array([FREQS.mean()]), direction, np.complex128)[0, 0]


def transmitter() -> Transmitter:
    return Transmitter(azimuth_deg=-20.0, distance_m=6.0, channel=STILL_ROOM, reflections=[
        Reflection(azimuth_deg=60.0, excess_delay_ns=20.0, gain_db=-8.0, random_phase=False)])


def run(people: list[PersonSpec], beams_deg: list[float], seconds: float, rate_hz: float = 25.0, seed: int = 3,
        snr_db: float = 25.0) -> list[list]:
    """Frames of the simulated board (calibrated: no LO phases) through ArrayVitals; the estimates
    of the windows that end after the first full window, per window a list per beam."""
    channel = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), np.random.default_rng(seed))
    vitals = ArrayVitals(VitalsConfig(), POSITIONS, np.radians(beams_deg))
    tx, valid, out = transmitter(), np.ones(len(FREQS), bool), []
    for i in range(int(seconds * rate_hz)):
        z, gain_db = channel.receive(tx, i / rate_hz, FMT, 6, 1, snr_db, people)
        vitals.add(i / rate_hz, compensate_gains(z, gain_db, np.zeros_like(gain_db)), FREQS, valid)
        out += [e for e in vitals.due(1.0) if e[0].t_end_s >= 30.5]
    return out


def test_the_relative_channel_holds_no_factor_common_to_the_antennas():
    """A frame's random phase, detection delay (a phase slope over the subcarriers) and gain, common
    to all antennas, leave the channel relative to the reference beam unchanged."""
    rng = np.random.default_rng(1)
    h = rng.standard_normal((8, 16)) + 1j * rng.standard_normal((8, 16))
    w = principal_direction(h[None])
    common = 3.0 * np.exp(1j * (rng.uniform(-np.pi, np.pi) - 2 * np.pi * np.arange(16) * 0.07))
    assert np.allclose(relative_channel(h * common[None, :], w), relative_channel(h, w))


def test_mvdr_keeps_the_beam_and_nulls_what_changes_elsewhere():
    """Frames whose only change is a reflector wandering at -50 deg: the MVDR beam toward 35 deg
    has unit gain there and lets at least 20 dB less of the wandering path through than the
    plain (delay-and-sum) beam."""
    rng = np.random.default_rng(2)
    static = np.outer(steering(-20.0), np.ones(16))
    frames = []
    for _ in range(400):
        wander = 0.3 * np.exp(1j * rng.uniform(-np.pi, np.pi)) * np.outer(steering(-50.0 + rng.normal(0, 2)), np.ones(16))
        noise = 0.01 * (rng.standard_normal((8, 16)) + 1j * rng.standard_normal((8, 16)))
        frames.append(static + wander + noise)
    a = steering(35.0)
    w = mvdr_weights(change_covariance(np.stack(frames)), a)
    plain = a / 8
    assert abs(np.vdot(w, a) - 1.0) < 1e-9
    leak_mvdr, leak_plain = abs(np.vdot(w, steering(-50.0))), abs(np.vdot(plain, steering(-50.0)))
    assert 20 * np.log10(leak_plain / leak_mvdr) > 20.0, (leak_plain, leak_mvdr)


def test_a_beam_has_no_blind_spot_over_half_a_wavelength():
    """A one-way swarm link loses the breathing where the chest's excess path sits at odd quarter
    wavelengths (test_vitals_core). The beam, relative to the direct path, keeps both quadratures:
    at four positions an eighth of a wavelength apart along the line to the board, every full
    window is STILL with the rate within 1 /min, and the breathing SNR varies by less than 6 dB."""
    wavelength = 299792458.0 / FREQS.mean()
    snrs = []
    for step in range(4):
        person = PersonSpec(position=at(35.0, 2.0 + step * wavelength / 8), breathing_rate_bpm=15.0, seed=4)
        windows = run([person], [35.0], 42.0, seed=10 + step)
        estimates = [w[0] for w in windows]
        assert len(estimates) >= 10
        for e in estimates:
            assert e.state == STILL and abs(e.rate_bpm - person.mean_rate_bpm(e.t_end_s - 30.0, e.t_end_s)) <= 1.0, e
        snrs.append(np.median([e.snr_db for e in estimates]))
    print(f"\n[vitals array] breathing SNR over half a wavelength: {np.round(snrs, 1)} dB")
    assert max(snrs) - min(snrs) < 6.0, snrs
