"""Radial-velocity core on the swarm simulator's channel model, without ROS or sockets:
simulated datagrams -> ingest -> sanitise -> link filters, against the scenario's truth."""
from collections import Counter

import numpy as np
import pytest
from espargos_driver.sim.swarm import SwarmScenario, SwarmSimulation
from espargos_driver.swarm.ingest import NodeConfig, SwarmIngest
from espargos_driver.wifi import GRIDS

from espargos_aoa.sanitize import sanitize
from espargos_aoa.velocity import (CLOSING, MOVING, SEPARATING, STATIC, BidirectionalLink, OneWayLink, PhaseKalman,
                                   VelocityConfig, wrap)

MOTION = [[0, 6, 0, 1], [1, 6, 0, 1], [5, 4, 0, 1], [9, 4, 0, 1], [13, 6, 0, 1], [20, 6, 0, 1]]


def scenario(bidirectional: bool, seed: int) -> SwarmScenario:
    return SwarmScenario.from_dict({"seed": seed, "nodes": [
        {"id": 1, "mac": "02:00:00:00:00:01", "waypoints": [[0, 0, 0, 1]]},
        {"id": 2, "mac": "02:00:00:00:00:02", "waypoints": MOTION}],
        "links": [{"a": 1, "b": 2, "bidirectional": bidirectional}]})


def run(sc: SwarmScenario, duration_s: float):
    sim, ingest = SwarmSimulation(sc), SwarmIngest(Counter(), NodeConfig("esp32", 0, 0))
    link = BidirectionalLink(VelocityConfig(), 299_792_458.0 / 2437e6)
    one_way = OneWayLink(VelocityConfig())
    out, t = [], 0.0
    while t < duration_s:
        t += 0.01
        for report in sim.due(t):
            when = report.t_s
            for frame in ingest.datagram(sim.datagram(report), "sim", when):
                grid = GRIDS[frame.csi.format]
                valid = np.isin(np.arange(grid.size), frame.csi.interpolated, invert=True)
                s = sanitize(frame.csi.csi, grid.indices, valid)
                clock = frame.report.sensor_time_us * 1e-6
                if sc.links[0].bidirectional:
                    e = link.add(frame.node == "node1", when, clock, s.common_phase_rad)
                elif frame.node == "node2":
                    e = one_way.add(clock, 10 * np.log10(s.power))
                else:
                    e = None
                if e is not None:
                    out.append((when, e.velocity, e.state, sc.range_rate_m_s(1, 2, when)))
    return out, link


@pytest.mark.parametrize("seed", [1, 2])
def test_bidirectional_velocity_and_states(seed):
    out, link = run(scenario(True, seed), 14.0)
    t, v, state, rate = (np.array(x) for x in zip(*out))
    far = np.min(np.abs(t[:, None] - np.array([1, 5, 9, 13])[None, :]), axis=1) > 0.5
    truth = np.where(rate > 0.01, SEPARATING, np.where(rate < -0.01, CLOSING, STATIC))
    assert not np.any((state != truth) & far & (t > 0.5))
    moving = far & (np.abs(rate) > 0.01)
    assert np.sqrt(np.mean((v[moving] - rate[moving]) ** 2)) < 0.05
    assert link.rejected > 0                           # the simulated packet-sync jumps were seen and rejected


def test_one_way_detects_onset_and_never_claims_a_velocity():
    out, _ = run(scenario(False, 3), 6.0)
    t, v, state, _ = (np.array(x, dtype=object) for x in zip(*out))
    assert all(np.isnan(float(x)) for x in v)
    assert all(s == STATIC for s in state[(t > 0.6) & (t < 1.0)])
    onset = [x for x, s in zip(t, state) if x > 1.0 and s == MOVING]
    assert onset and onset[0] - 1.0 < 1.0


def test_kalman_rejects_a_single_jump_and_follows_a_real_step():
    kf = PhaseKalman(rate_noise=20.0, measurement_noise=0.05)
    t = np.arange(0, 2, 0.02)
    phase = np.where(t < 1, 0.0, 30.0 * (t - 1))       # starts moving at t = 1 (30 rad/s)
    accepted = []
    for i, (ti, zi) in enumerate(zip(t, phase)):
        z = zi + (2.5 if i == 20 else 0.0)              # one packet-sync jump at t = 0.4
        accepted.append(kf.update(ti, float(wrap(z)), 4.0))
    assert not accepted[20] and all(accepted[:20]) and accepted[21]
    assert kf.x[1] == pytest.approx(30.0, abs=2.0)


def test_config_refuses_settings_that_cannot_work():
    with pytest.raises(ValueError, match="hysteresis"):
        VelocityConfig(static_threshold=0.2, moving_threshold=0.1).validate()
    with pytest.raises(ValueError, match="accel_noise"):
        VelocityConfig(accel_noise=0.0).validate()


def test_a_wrapping_sensor_clock_restarts_the_filters():
    link = BidirectionalLink(VelocityConfig(), 0.123)
    for i in range(10):
        link.add(False, i * 0.02, 4294.9 + i * 0.02, 0.1)
        link.add(True, i * 0.02 + 0.0003, 4294.9 + i * 0.02, 0.2)
    assert link.add(False, 0.3, 0.01, 0.1) is None and link.add(True, 0.3003, 0.01, 0.2) is not None
    assert link.restarts == 1
    one_way = OneWayLink(VelocityConfig())
    for i in range(50):
        one_way.add(4294.0 + i * 0.02, 30.0)
    one_way.add(0.5, 30.0)
    assert len(one_way.levels) == 1
