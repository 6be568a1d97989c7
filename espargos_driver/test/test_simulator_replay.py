"""The simulator's ``--precompute`` replay offers whole frames at the stated rate (what the
throughput benchmarks rely on), checked by decoding its packets with the driver's receiver."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from espargos_driver.cluster import FrameClusterer
from espargos_driver.protocol.constants import ANTENNAS
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import REPLAY_SPAN_S, SimulatedBoard
from espargos_driver.supervisor import REBOOT_BACKSTEP_S
from espargos_driver.sim.scenario import Scenario, Transmitter


@pytest.mark.parametrize("transmitters", [1, 2])
def test_precomputed_replay_offers_whole_frames_at_the_frame_rate(transmitters):
    rate_hz, seconds = 500.0, 2.0
    scenario = Scenario(frame_rate_hz=rate_hz, seed=4,
                        transmitters=[Transmitter(mac=f"02:00:00:00:00:0{i + 1}") for i in range(transmitters)])
    board = SimulatedBoard(scenario)
    board.precompute(50)
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    packets, frames = 0, []
    t = 0.0
    while t < seconds - 1e-9:
        t += 0.01
        due = board.packets_due(t)
        packets += len(due)
        for pkt in due:
            frames += receiver.feed(pkt, t)
    frames += receiver.expire(t + 1.0)
    offered = rate_hz * seconds * transmitters
    assert abs(packets - ANTENNAS * offered) <= ANTENNAS * transmitters     # 8 sensor packets per frame
    complete = [f for f in frames if f.mask.all()]
    assert abs(len(complete) - offered) <= transmitters
    assert {f.key[0] for f in complete} == {t.mac_bytes for t in scenario.transmitters}


def test_a_replay_runs_on_the_live_sensor_clock_with_its_csi_unchanged():
    """The replay used to repeat the sensor times it was encoded with: at 10 frames/s its clock
    went back 2 s at every wrap, and against the live reference frames at every calibration, which
    the driver takes for a reboot (calibration invalidated). Now the replayed packets are moved to
    the live time in whole OFDM symbols, so the decoded CSI (after STO removal) is unchanged."""
    board = SimulatedBoard(Scenario(frame_rate_hz=10.0, seed=4))
    board.precompute(20)
    receiver = BoardReceiver(FrameClusterer(Counter()))
    board.start(0.0)
    frames = []
    for k in range(1, 41):
        for pkt in board.packets_due(k * 0.1):
            frames += receiver.feed(pkt, k * 0.1)
    assert len(frames) >= 38
    stamps_ns = np.array([float(f.timestamps_ns.max()) for f in frames])
    assert (np.diff(stamps_ns) > 0).all()
    assert stamps_ns[-1] - stamps_ns[0] == pytest.approx((len(frames) - 1) * 0.1e9, abs=0.2e6)
    assert REPLAY_SPAN_S < REBOOT_BACKSTEP_S
    first, again = frames[0], frames[20]                 # one precomputed frame, replayed after the wrap
    assert first.key[2] == again.key[2]
    np.testing.assert_allclose(again.csi, first.csi, atol=1e-3 * np.abs(first.csi).max())
