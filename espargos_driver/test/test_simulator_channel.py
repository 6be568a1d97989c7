"""The simulator's realistic channel as the driver decodes it: AGC gains travel in rx_ctrl and
undo the per-sensor scaling; the direct path fades from frame to frame."""
from __future__ import annotations

from collections import Counter

import numpy as np

from espargos_driver.cluster import FrameClusterer
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import NOMINAL_RX_GAIN_DB, SimulatedBoard
from espargos_driver.sim.scenario import ChannelModel, Impairments, Scenario, Transmitter


def decoded_frames(channel: ChannelModel, seconds: float = 1.0) -> list:
    scenario = Scenario(seed=8, snr_db=30.0, transmitters=[Transmitter(azimuth_deg=10.0, channel=channel)],
                        impairments=Impairments(lo_phase=False, timing_offset_std_ns=0.0))
    board = SimulatedBoard(scenario)
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    frames, t = [], 0.0
    while t < seconds:
        t += 0.01
        for pkt in board.packets_due(t):
            frames += receiver.feed(pkt, t)
    return [f for f in frames if f.mask.all()]


def antenna_power_db(frame, gains: bool) -> np.ndarray:
    power = np.nanmean(np.abs(frame.csi.reshape(8, -1)) ** 2, axis=1)
    db = 10 * np.log10(power)
    return db - (frame.rx_gain_db + frame.fft_gain_db).reshape(-1) if gains else db


def test_agc_gains_are_reported_and_taken_out_again():
    model = ChannelModel(fading="rician", paths=[], agc=True, agc_jitter_db=4.0, phase_noise_deg=0.0)
    frames = decoded_frames(model)
    assert len(frames) >= 90
    gains = np.stack([(f.rx_gain_db + f.fft_gain_db).reshape(-1) for f in frames]) - NOMINAL_RX_GAIN_DB
    assert np.all(np.abs(gains * 4 - np.round(gains * 4)) < 1e-6) and np.std(gains) > 3.0
    # One frame reaches all antennas with nearly the same power: the AGC scatter (4 dB) shows
    # between antennas in the raw CSI and is gone once the reported gains are taken out.
    raw_spread = np.mean([np.std(antenna_power_db(f, gains=False)) for f in frames])
    spread = np.mean([np.std(antenna_power_db(f, gains=True)) for f in frames])
    assert raw_spread > 3.0 and spread < 0.5, (raw_spread, spread)


def test_the_direct_path_fades_from_frame_to_frame():
    frames = decoded_frames(ChannelModel(fading="rayleigh", paths=[], agc=True, agc_jitter_db=0.0, phase_noise_deg=0.0))
    power_db = np.array([np.mean(antenna_power_db(f, gains=True)) for f in frames])
    # Rayleigh: the power is exponential, its dB value has a 5.6 dB standard deviation.
    assert 4.0 < np.std(power_db) < 7.5
    ideal = decoded_frames(ChannelModel.preset("ideal"))
    assert np.std([np.mean(antenna_power_db(f, gains=True)) for f in ideal]) < 0.3
