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
                    estimates = link.add(frame.node == "node1", when, clock, s.common_phase_rad)
                elif frame.node == "node2":
                    estimates = [one_way.add(clock, 10 * np.log10(s.power))]
                else:
                    estimates = []
                for e in estimates:
                    true_t = e.t / (1 + sim.crystal_ppm[1] * 1e-6) if sc.links[0].bidirectional else when
                    out.append((true_t, e.velocity, e.state, sc.range_rate_m_s(1, 2, true_t), e.std))
    return out, link


@pytest.mark.parametrize("seed", [1, 2])
def test_bidirectional_velocity_and_states(seed):
    out, link = run(scenario(True, seed), 14.0)
    t, v, state, rate, _ = (np.array(x) for x in zip(*out))
    far = np.min(np.abs(t[:, None] - np.array([1, 5, 9, 13])[None, :]), axis=1) > 0.5
    truth = np.where(rate > 0.01, SEPARATING, np.where(rate < -0.01, CLOSING, STATIC))
    assert not np.any((state != truth) & far & (t > 1.2))
    moving = far & (np.abs(rate) > 0.01)
    assert np.sqrt(np.mean((v[moving] - rate[moving]) ** 2)) < 0.05
    assert link.rejected > 0                           # the simulated packet-sync jumps were seen and rejected


def test_one_way_detects_onset_and_never_claims_a_velocity():
    out, _ = run(scenario(False, 3), 6.0)
    t, v, state, _, _ = (np.array(x, dtype=object) for x in zip(*out))
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


def test_a_wrapping_sensor_clock_neither_breaks_pairing_nor_restarts_the_filter():
    link = BidirectionalLink(VelocityConfig(), 0.123)
    period = 2 ** 32 * 1e-6
    times = []
    for i in range(60):                                  # B's clock is 2 s behind A's; A's wraps at i = 30
        t_a = (period - 0.6 + i * 0.02 + 0.0003) % period
        t_b = (period - 2.6 + i * 0.02) % period
        link.add(False, i * 0.02, t_b, 0.1)
        times += [e.t for e in link.add(True, i * 0.02 + 0.0003, t_a, 0.2)]
    assert len(times) > 40 and np.all(np.diff(times) > 0) and link.restarts == 0
    one_way = OneWayLink(VelocityConfig())
    for i in range(50):
        one_way.add(4294.0 + i * 0.02, 30.0)
    one_way.add(0.5, 30.0)
    assert len(one_way.levels) == 1


# --- sensor-time pairing under network jitter, and links too noisy for velocity --------------

def run_network(sc: SwarmScenario, duration_s: float, nodes: tuple[int, int] = (1, 2)):
    """Like run(), but every datagram takes the scenario's network path: host time is its
    delivery time, in delivery order (jitter, reordering, bursts)."""
    from espargos_driver.sim.swarm import Network
    sim, ingest = SwarmSimulation(sc), SwarmIngest(Counter(), NodeConfig("esp32", 0, 0))
    link = BidirectionalLink(VelocityConfig(), 299_792_458.0 / 2437e6)
    network, out, t = Network(), [], 0.0
    a, b = (f"node{n}" for n in nodes)
    while t < duration_s:
        t += 0.01
        for report in sim.due(t):
            if {report.tx, report.rx} == set(nodes):
                network.send(sim.delivery_time(report.t_s), report)
        for report in network.arrived(t):
            for frame in ingest.datagram(sim.datagram(report), "sim", t):
                grid = GRIDS[frame.csi.format]
                valid = np.isin(np.arange(grid.size), frame.csi.interpolated, invert=True)
                s = sanitize(frame.csi.csi, grid.indices, valid)
                for e in link.add(frame.node == a, t, frame.report.sensor_time_us * 1e-6, s.common_phase_rad):
                    true_t = e.t / (1 + sim.crystal_ppm[nodes[0]] * 1e-6)
                    out.append((true_t, e.velocity, e.state, sc.range_rate_m_s(*nodes, true_t), e.std))
    return out, link


def jittery(seed: int, **network) -> SwarmScenario:
    sc = scenario(True, seed)
    for name, value in network.items():
        setattr(sc, name, value)
    return sc


@pytest.mark.parametrize("seed", [1, 2])
def test_velocity_holds_under_network_jitter_reordering_and_bursts(seed):
    sc = jittery(seed, network_delay_s=0.005, network_jitter_s=0.1, reorder_probability=0.01,
                 burst_period_s=2.0, burst_hold_s=0.08)
    out, link = run_network(sc, 14.0)
    t, v, state, rate, std = (np.array(x) for x in zip(*out))
    assert len(t) > 600 and link.pairer.acquisitions == 1
    far = np.min(np.abs(t[:, None] - np.array([1, 5, 9, 13])[None, :]), axis=1) > 0.5
    truth = np.where(rate > 0.01, SEPARATING, np.where(rate < -0.01, CLOSING, STATIC))
    assert not np.any((state != truth) & far & (t > 1.5))
    moving = far & (np.abs(rate) > 0.01) & (t > 1.5)
    assert np.sqrt(np.mean((v[moving] - rate[moving]) ** 2)) <= 0.03
    ok = far & (t > 1.5)
    assert 0.6 <= np.mean(np.abs(v[ok] - rate[ok]) < std[ok]) <= 0.85          # the 1-sigma means ~68 %


@pytest.mark.parametrize("reply_jitter_s", [1e-6, 10e-6])
def test_a_link_too_noisy_for_velocity_says_unknown(reply_jitter_s):
    """Crystals 40 ppm apart: 1 us of reply jitter is ~35 deg on the phase sum, 10 us is random."""
    sc = SwarmScenario.from_dict({"seed": 4, "reply_jitter_s": reply_jitter_s, "nodes": [
        {"id": 1, "mac": "02:00:00:00:00:01", "waypoints": [[0, 0, 0, 1]], "crystal_ppm": 20.0},
        {"id": 2, "mac": "02:00:00:00:00:02", "waypoints": [[0, 5, 0, 1]], "crystal_ppm": -20.0}],
        "links": [{"a": 1, "b": 2}]})
    out, link = run_network(sc, 10.0)
    t, v, state, _, _ = (np.array(x) for x in zip(*out))
    assert not np.any(np.isin(state, [CLOSING, SEPARATING]))
    assert np.all(state[t > 2.0] == "UNKNOWN") and np.all(np.isnan(v[t > 2.0]))
    assert link.unsupported and "phase-sum noise" in link.unsupported


def test_static_link_with_modest_reply_jitter_stays_static_with_velocity():
    sc = SwarmScenario.from_dict({"seed": 6, "reply_jitter_s": 200e-9, "nodes": [
        {"id": 1, "mac": "02:00:00:00:00:01", "waypoints": [[0, 0, 0, 1]], "crystal_ppm": 20.0},
        {"id": 2, "mac": "02:00:00:00:00:02", "waypoints": [[0, 5, 0, 1]], "crystal_ppm": -20.0}],
        "links": [{"a": 1, "b": 2}]})
    out, link = run_network(sc, 12.0)
    t, v, state, _, _ = (np.array(x) for x in zip(*out))
    assert np.mean(state[t > 1.5] != STATIC) < 0.01 and np.all(np.isfinite(v[t > 1.5]))
    assert not link.unsupported


def test_pairing_ignores_arrival_order():
    link = BidirectionalLink(VelocityConfig(reorder_delay_s=0.1), 0.123)
    rng = np.random.default_rng(0)
    reports, sent = [], []
    for i in range(200):                              # B's clock runs 3.2 s behind A's; 50 exchanges/s
        t_b = 10.0 + i * 0.02
        reports += [(False, t_b, 0.1), (True, t_b + 3.2 + 0.0003, 0.2 + 0.001 * i)]
        sent += [i * 0.02, i * 0.02 + 0.0003]
    arrival = np.array(sent) + rng.uniform(0, 0.1, len(reports))     # up to 100 ms of network jitter
    estimates = []
    for k in np.argsort(arrival):
        received_by_a, t, phase = reports[k]
        estimates += link.add(received_by_a, float(arrival[k]), t, phase)
    times = [e.t for e in estimates]
    assert len(times) >= 190 and np.all(np.diff(times) > 0) and link.order.late == 0
    assert link.pairer.offset == pytest.approx(3.2003, abs=1e-5)


def test_a_ten_hertz_link_pairs():
    """12 reports per direction are needed to acquire the pairing: at 10 Hz that is 1.2 s, and
    reports pending for longer than 1 s used to be given up, so slow links never paired."""
    link = BidirectionalLink(VelocityConfig(), 0.123)
    estimates = []
    for i in range(60):                               # 10 exchanges/s for 6 s, B's clock 3.2 s behind A's
        t_b = 10.0 + i * 0.1
        estimates += link.add(False, i * 0.1, t_b, 0.1)
        estimates += link.add(True, i * 0.1 + 0.0003, t_b + 3.2 + 0.0003, 0.2)
    assert len(estimates) >= 50 and link.pairer.acquisitions == 1
