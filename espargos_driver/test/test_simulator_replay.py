"""The simulator's ``--precompute`` replay offers whole frames at the stated rate (what the
throughput benchmarks rely on), checked by decoding its packets with the driver's receiver."""
from __future__ import annotations

from collections import Counter

import pytest

from espargos_driver.cluster import FrameClusterer
from espargos_driver.protocol.constants import ANTENNAS
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import SimulatedBoard
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
