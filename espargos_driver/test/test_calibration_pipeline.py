"""Simulator channel -> bytes -> decode -> cluster -> calibrate, checked against the scenario's truth.

Pure (no sockets): the wire-level path is covered by the system tests.
"""
from collections import Counter

import numpy as np
import pytest

from espargos_driver.calibration import CalibrationError, estimate_calibration, reference_delays_s, Calibration
from espargos_driver.cluster import FrameClusterer
from espargos_driver.geometry import board_antenna_positions, direction_vector
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import RF_REFERENCE, SimulatedBoard
from espargos_driver.sim.scenario import ChannelModel, Impairments, Scenario, Transmitter
from espargos_driver.wifi import SPEED_OF_LIGHT

IDEAL = ChannelModel.preset("ideal")
"""Calibration is checked against the plane wave of a constant direct path."""


def run(board: SimulatedBoard, receiver: BoardReceiver, t0: float, t1: float, step=0.01):
    frames = []
    t = t0
    while t < t1:
        t += step
        for pkt in board.packets_due(t):
            frames += receiver.feed(pkt, t)
        frames += receiver.expire(t)
    return frames


def plane_wave_phase(frame, azimuth_deg, elevation_deg):
    """Truth: exp(+j 2 pi f u.p / c) per antenna and bin, from the scenario's direction."""
    u = direction_vector(np.radians(azimuth_deg), np.radians(elevation_deg))
    delay = board_antenna_positions().reshape(-1, 3) @ u / SPEED_OF_LIGHT
    return np.exp(2j * np.pi * np.outer(delay, frame.frequencies_hz()))


def inter_antenna_errors_deg(frames, azimuth_deg, elevation_deg):
    errs = []
    for frame in frames:
        x = frame.csi.reshape(8, -1) * np.conj(plane_wave_phase(frame, azimuth_deg, elevation_deg))
        per_antenna = np.sum(x * np.conj(x[:1]), axis=1)
        errs.append(np.degrees(np.angle(per_antenna[1:])))
    return np.array(errs)


@pytest.mark.parametrize("secondary,fmt", [(1, "auto"), (-1, "auto"), (0, "auto"), (0, "lltf"), (0, "he20")])
def test_calibration_removes_lo_phase_and_timing(secondary, fmt):
    scenario = Scenario(secondary=secondary, format=fmt, snr_db=20.0,
                        transmitters=[Transmitter(azimuth_deg=25.0, elevation_deg=10.0, channel=IDEAL)],
                        impairments=Impairments(timing_offset_std_ns=3.0), seed=7)
    board = SimulatedBoard(scenario)
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    board.rfswitch = RF_REFERENCE
    refs = run(board, receiver, 0.0, 0.3)
    assert len(refs) >= 20 and all(f.is_reference for f in refs)
    cal = estimate_calibration(refs, scenario.channel, secondary, "sim", reference_delays_s(1))
    assert cal.residual_deg < 2.0
    board.rfswitch = 2
    frames = run(board, receiver, 0.3, 0.6)
    assert len(frames) >= 20
    raw_err = inter_antenna_errors_deg(frames, 25.0, 10.0)
    assert np.sqrt(np.mean(raw_err ** 2)) > 30      # uncalibrated: random LO phases
    for f in frames:
        cal.apply(f)
    err = inter_antenna_errors_deg(frames, 25.0, 10.0)
    assert np.sqrt(np.mean(err ** 2)) < 3.0


def test_calibration_fails_with_reasons(tmp_path):
    board = SimulatedBoard(Scenario(seed=3))
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    ota = run(board, receiver, 0.0, 0.1)
    with pytest.raises(CalibrationError, match="only 0 reference frames"):
        estimate_calibration(ota, 6, 1, "sim", reference_delays_s(1))
    board.rfswitch = RF_REFERENCE
    refs = run(board, receiver, 0.1, 0.3)
    with pytest.raises(CalibrationError, match="channel 11"):
        estimate_calibration(refs, 11, 1, "sim", reference_delays_s(1))
    for f in refs:
        f.mask[0, 1, 2] = False
    with pytest.raises(CalibrationError, match="never reported: 0.1.2"):
        estimate_calibration(refs, 6, 1, "sim", reference_delays_s(1))


def test_calibration_file_round_trip(tmp_path):
    board = SimulatedBoard(Scenario(seed=5))
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    board.rfswitch = RF_REFERENCE
    cal = estimate_calibration(run(board, receiver, 0.0, 0.2), 6, 1, "sim", reference_delays_s(1))
    path = tmp_path / "cal.json"
    cal.save(path)
    loaded = Calibration.load(path)
    assert loaded.matches(6, 1, "sim", 1, "") and not loaded.matches(6, 0, "sim", 1, "")
    assert not loaded.matches(6, 1, "sim", 1, "espargos-other@10.0.0.9:80")
    assert np.allclose(loaded.phase_rad, cal.phase_rad) and np.allclose(loaded.time_s, cal.time_s)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        Calibration.load(path)


def test_power_calibration_removes_the_sensor_gains(tmp_path):
    scenario = Scenario(snr_db=25.0, transmitters=[Transmitter(azimuth_deg=-15.0, channel=IDEAL)],
                        impairments=Impairments(gain_std_db=2.0), seed=17)
    board = SimulatedBoard(scenario)
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    board.rfswitch = RF_REFERENCE
    cal = estimate_calibration(run(board, receiver, 0.0, 0.5), 6, 1, "sim", reference_delays_s(1))
    truth_db = 20 * np.log10(board.rig.channel.gain)
    truth_db -= truth_db.mean()
    assert np.ptp(truth_db) > 3.0                                    # the impairment is there
    np.testing.assert_allclose(cal.gain_db.reshape(-1), truth_db, atol=0.2)
    board.rfswitch = 2
    frames = [f for f in run(board, receiver, 0.5, 1.0) if f.mask.all()]
    raw_db = [20 * np.log10(np.mean(np.abs(f.csi.reshape(8, -1)), axis=1)) for f in frames]
    for f in frames:
        cal.apply(f)
    calibrated_db = [20 * np.log10(np.mean(np.abs(f.csi.reshape(8, -1)), axis=1)) for f in frames]
    assert np.ptp(np.mean(raw_db, axis=0)) > 3.0
    assert np.ptp(np.mean(calibrated_db, axis=0)) < 0.5
    cal.save(tmp_path / "cal.json")
    np.testing.assert_allclose(Calibration.load(tmp_path / "cal.json").gain, cal.gain)
