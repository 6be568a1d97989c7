"""Swarm simulator -> swarm_node (real UDP) -> velocity_node over real DDS, against the simulator's
ground truth; and swarm_node fed bad datagrams, a serial port that vanishes, and a real log file.

One 32 s simulation carries five links at 50 frames/s per direction with +-20 ppm crystals:
1-2 bidirectional (approach 0.5 m/s for 4 s, hold 4 s, separate 4 s), 3-4 bidirectional and
static for 30 s, 5->6 one-way with the motion of 1-2, and two static bidirectional links whose
crystals are 40 ppm apart with 1 us (7-8) and 10 us (9-10) of reply-time jitter: too noisy for
velocity. Every datagram crosses a network model: 5 ms delay plus up to 100 ms of jitter, 1 %
held back by 1-3 frame periods, and every 2 s all traffic held for 80 ms and delivered at once.
"""
from __future__ import annotations

import os
import pty
import random
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from espargos_driver.sim.swarm import SwarmScenario
from espargos_driver.swarm.binary import build_datagram
from espargos_msgs.msg import CsiArray, RadialVelocity
from rclpy.qos import QoSProfile, ReliabilityPolicy

from conftest import ROOT, Processes, free_port, spin_until

DATA = ROOT.parent / "shared" / "data" / "esp32"
"""The real public captures, read in place beside the project."""
needs_captures = pytest.mark.skipif(not DATA.is_dir(), reason=f"real ESP32 captures not found at {DATA}")
CHANGES = (3.0, 7.0, 11.0, 15.0)
MOTION = [[0, 6, 0, 1], [3, 6, 0, 1], [7, 4, 0, 1], [11, 4, 0, 1], [15, 6, 0, 1], [70, 6, 0, 1]]
MACS = {i: f"02:00:00:00:00:{i:02x}" for i in range(1, 11)}
SCENARIO = {"swarm": {"rate_hz": 50, "crystal_ppm_limit": 20, "seed": 5, "network_delay_s": 0.005,
                      "network_jitter_s": 0.1, "reorder_probability": 0.01, "burst_period_s": 2.0,
                      "burst_hold_s": 0.08, "nodes": [
                          {"id": 1, "mac": MACS[1], "waypoints": [[0, 0, 0, 1]]}, {"id": 2, "mac": MACS[2], "waypoints": MOTION},
                          {"id": 3, "mac": MACS[3], "waypoints": [[0, 10, 0, 1]]},
                          {"id": 4, "mac": MACS[4], "waypoints": [[0, 15, 3, 1.5]]},
                          {"id": 5, "mac": MACS[5], "waypoints": [[0, 0, 20, 1]]}, {"id": 6, "mac": MACS[6], "waypoints":
                                                                                    [[t, x, y + 20, z] for t, x, y, z in MOTION]},
                          {"id": 7, "mac": MACS[7], "waypoints": [[0, 0, 40, 1]], "crystal_ppm": 20.0},
                          {"id": 8, "mac": MACS[8], "waypoints": [[0, 5, 40, 1]], "crystal_ppm": -20.0},
                          {"id": 9, "mac": MACS[9], "waypoints": [[0, 0, 60, 1]], "crystal_ppm": 20.0},
                          {"id": 10, "mac": MACS[10], "waypoints": [[0, 5, 60, 1]], "crystal_ppm": -20.0}],
                      "links": [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "b": 6, "bidirectional": False},
                                {"a": 7, "b": 8, "reply_jitter_s": 1e-6}, {"a": 9, "b": 10, "reply_jitter_s": 1e-5}]}}


def truth_state(rate: np.ndarray) -> np.ndarray:
    return np.where(rate > 0.01, RadialVelocity.STATE_SEPARATING,
                    np.where(rate < -0.01, RadialVelocity.STATE_CLOSING, RadialVelocity.STATE_STATIC))


@pytest.fixture(scope="module")
def swarm_run(ros_context, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("swarm")
    procs = Processes(tmp)
    node = rclpy.create_node(f"swarm_watch_{os.getpid()}_{random.randint(0, 1 << 30)}")
    msgs: list[RadialVelocity] = []
    node.create_subscription(RadialVelocity, "/swarm/radial_velocity", msgs.append, 1000)
    diag: dict[str, dict[str, str]] = {}

    def on_diag(msg) -> None:
        for status in msg.status:
            diag[status.name] = {kv.key: kv.value for kv in status.values} | {"level": status.level, "message": status.message}
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    scenario = tmp / "swarm.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    port = free_port(socket.SOCK_DGRAM)
    try:
        procs.start_node({"transport": "udp", "udp_host": "127.0.0.1", "udp_port": port}, "/swarm", "swarm_node")
        nodes = ",".join(f'"node{i}={mac}"' for i, mac in MACS.items())
        procs.start_node({"nodes": f"[{nodes}]"}, "/swarm", "velocity_node")
        assert spin_until(node, lambda: node.count_subscribers("/swarm/csi") >= 1
                          and node.count_publishers("/swarm/csi") >= 1
                          and node.count_publishers("/swarm/radial_velocity") >= 1, 30)
        spin_until(node, lambda: False, 1.0)
        sim = procs.start("swarm_simulator", "--scenario", str(scenario), "--target", f"127.0.0.1:{port}",
                          "--duration", "32")
        assert spin_until(node, lambda: sim.poll() is not None, 45), "simulator did not finish"
        spin_until(node, lambda: False, 1.5)
        for name, values in diag.items():
            print(name, values)
        yield SwarmScenario.from_dict(SCENARIO["swarm"]), msgs, diag
    finally:
        node.destroy_node()
        procs.stop_all()


def link(msgs, a: str, b: str, method: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sel = [m for m in msgs if (m.endpoint_a, m.endpoint_b, m.method) == (a, b, method)]
    return (np.array([m.sensor_time for m in sel]), np.array([m.velocity for m in sel]),
            np.array([m.state for m in sel]), np.array([m.velocity_std for m in sel]))


def test_bidirectional_link_tracks_closing_static_separating(swarm_run):
    scenario, msgs, _ = swarm_run
    t, v, state, std = link(msgs, "node1", "node2", RadialVelocity.METHOD_BIDIRECTIONAL)
    t = t / (1 + SwarmSimulationClock(scenario).ppm(1) * 1e-6)          # node 1's clock -> scenario time
    assert len(t) > 500, f"only {len(t)} bidirectional updates"
    keep = (t > 1.5) & (t < 17.0)
    t, v, state, std = t[keep], v[keep], state[keep], std[keep]
    rate = np.array([scenario.range_rate_m_s(1, 2, x) for x in t])
    far = np.min(np.abs(t[:, None] - np.array(CHANGES)[None, :]), axis=1) > 0.5
    wrong = (state != truth_state(rate)) & far
    assert not wrong.any(), f"state wrong at t = {t[wrong][:10]}"
    moving = far & (np.abs(rate) > 0.01)
    rmse = float(np.sqrt(np.mean((v[moving] - rate[moving]) ** 2)))
    within = np.abs(v[far] - rate[far]) < std[far]
    print(f"bidirectional through the network model: {len(t)} updates, velocity RMSE {rmse:.4f} m/s while moving, "
          f"median 1-sigma {np.median(std):.4f} m/s, within 1-sigma {100 * np.mean(within):.0f} %, "
          f"within 2-sigma {100 * np.mean(np.abs(v[far] - rate[far]) < 2 * std[far]):.0f} %")
    assert moving.sum() > 200 and rmse <= 0.03, f"velocity RMSE {rmse:.3f} m/s while moving"
    assert 0.6 <= np.mean(within) <= 0.85, f"1-sigma covers {100 * np.mean(within):.0f} % of errors"


def test_static_link_stays_static(swarm_run):
    _, msgs, _ = swarm_run
    t, v, state, _ = link(msgs, "node3", "node4", RadialVelocity.METHOD_BIDIRECTIONAL)
    state = state[t > 2.0]
    assert len(state) > 1200, f"only {len(state)} updates in 30 s"
    not_static = float(np.mean(state != RadialVelocity.STATE_STATIC))
    print(f"static: {len(state)} updates, {100 * not_static:.2f} % not STATIC, |v| p99 {np.nanpercentile(np.abs(v), 99):.4f} m/s")
    assert not_static < 0.01, f"{100 * not_static:.2f} % of static updates not STATIC"


def test_reports_lost_on_the_way_to_velocity_node_are_counted(swarm_run):
    """Every report swarm_node published reached velocity_node or is counted in its input_lost."""
    _, _, diags = swarm_run
    swarm = next(values for name, values in diags.items() if name.startswith("espargos_swarm"))
    velocity = next(values for name, values in diags.items() if name.startswith("espargos_velocity"))
    published, received, lost = int(swarm["reports"]), int(velocity["reports"]), int(velocity["input_lost"])
    print(f"swarm_node published {published}, velocity_node received {received}, counted lost {lost}")
    assert published > 14000 and received + lost == published


def test_one_way_link_detects_motion_onset_and_claims_no_velocity(swarm_run):
    _, msgs, _ = swarm_run
    t, v, state, std = link(msgs, "node5", "node6", RadialVelocity.METHOD_ONE_WAY)
    assert len(t) > 500 and np.all(np.isnan(v)) and np.all(np.isnan(std))
    before = state[(t > 2.0) & (t < CHANGES[0])]
    assert len(before) and np.all(before == RadialVelocity.STATE_STATIC)
    onset = t[(t > CHANGES[0]) & (state == RadialVelocity.STATE_MOVING)]
    assert len(onset) and onset[0] - CHANGES[0] < 1.0, f"motion onset seen {onset[:1] - CHANGES[0]} s late"
    print(f"one-way: motion onset reported {onset[0] - CHANGES[0]:.2f} s after it began")
    assert not np.any(np.isin(state, [RadialVelocity.STATE_CLOSING, RadialVelocity.STATE_SEPARATING]))


@pytest.mark.parametrize("a, b", [("node7", "node8"), ("node10", "node9")])      # endpoints in name order
def test_links_too_noisy_for_velocity_say_unknown(swarm_run, a, b):
    """Reply-time jitter of 1 us and 10 us with crystals 40 ppm apart: never CLOSING or SEPARATING,
    UNKNOWN with NaN velocity from 2 s on, and the diagnostics say which link and why."""
    _, msgs, diags = swarm_run
    diag = next(values for name, values in diags.items() if name.startswith("espargos_velocity"))
    t, v, state, _ = link(msgs, a, b, RadialVelocity.METHOD_BIDIRECTIONAL)
    assert len(t) > 1000, f"only {len(t)} updates"
    assert not np.any(np.isin(state, [RadialVelocity.STATE_CLOSING, RadialVelocity.STATE_SEPARATING]))
    late = t - t[0] > 2.0
    assert np.all(state[late] == RadialVelocity.STATE_UNKNOWN) and np.all(np.isnan(v[late]))
    assert f"{a}-{b}: phase-sum noise" in diag["unsupported_links"] and int(diag["unsupported_updates"]) > 0


def test_a_burst_velocity_node_cannot_keep_up_with_is_counted_as_lost(ros_node, processes):
    """20,000 reports published as fast as rclpy can into a writer history of 10: velocity_node
    falls behind and the writer drops what it has not taken; each one is counted in input_lost."""
    processes.start_node({"nodes": f'["node1={MACS[1]}", "node2={MACS[2]}"]'}, "/burst", "velocity_node")
    values: dict[str, str] = {}

    def on_diag(msg) -> None:
        for status in msg.status:
            if status.name == "espargos_velocity: /burst/velocity_node":
                values.update({kv.key: kv.value for kv in status.values})
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = ros_node.create_publisher(CsiArray, "/burst/csi", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(ros_node, lambda: pub.get_subscription_count() >= 1 and values, 20)
    total = 20_000
    msg = CsiArray(source_id="node1", rows=1, cols=1, subcarrier_indices=list(range(-28, 29)), center_frequency_hz=2.437e9,
                   subcarrier_spacing_hz=312500.0, antenna_mask=[True], transmitter_mac=list(bytes.fromhex("020000000002")),
                   csi=[1.0, 0.5] * 57)
    for number in range(total):
        msg.source_sequence = number
        msg.sensor_timestamps = [number * 0.02]
        pub.publish(msg)
    counted = lambda: int(values.get("reports", 0)) + int(values.get("input_lost", 0))  # noqa: E731
    assert spin_until(ros_node, lambda: counted() >= total, 60), values
    print(f"burst of {total}: velocity_node took {values['reports']}, counted {values['input_lost']} lost")
    assert counted() == total and int(values["input_lost"]) > 0


class SwarmSimulationClock:
    """The crystal of each simulated node, as the simulator draws it (for converting node time)."""

    def __init__(self, scenario: SwarmScenario) -> None:
        from espargos_driver.sim.swarm import SwarmSimulation
        self.sim = SwarmSimulation(scenario)

    def ppm(self, node: int) -> float:
        return self.sim.crystal_ppm[node]


class Diag:
    """The latest diagnostics values of the swarm_node in namespace ``ns``."""

    def __init__(self, node, ns: str) -> None:
        self.name = f"espargos_swarm: {ns}/swarm_node"
        self.values: dict[str, str] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg) -> None:
        for status in msg.status:
            if status.name == self.name:
                self.values = {kv.key: kv.value for kv in status.values}

    def count(self, key: str) -> int:
        return int(self.values.get(key, 0))


def udp_swarm_node(ros_node, processes, ns: str, **params) -> tuple[int, list, Diag]:
    """A swarm_node on a free loopback UDP port under ``ns`` (extra ``params``), once its ``csi``
    publisher matches our subscription: (port, received CsiArray list, its diagnostics)."""
    port = free_port(socket.SOCK_DGRAM)
    processes.start_node({"transport": "udp", "udp_host": "127.0.0.1", "udp_port": port, **params}, ns, "swarm_node")
    frames, diag = [], Diag(ros_node, ns)
    ros_node.create_subscription(CsiArray, f"{ns}/csi", frames.append, 100)
    assert spin_until(ros_node, lambda: ros_node.count_publishers(f"{ns}/csi") >= 1 and diag.values, 20)
    spin_until(ros_node, lambda: False, 0.5)          # let the publisher match our subscription
    return port, frames, diag


def test_bad_datagrams_and_a_vanishing_node_are_counted(ros_node, processes):
    port, frames, diag = udp_swarm_node(ros_node, processes, "/bad", node_timeout=1.0)
    good = build_datagram(7, 1, 2437, -40, -90, np.tile(np.array([3, 20], np.int8), 128), sensor_time_us=123)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = [struct.pack("<I", 0x12345678) + good[4:], good[:15], good[:-5], good + b"\x00",
           struct.pack("<I", 0xC511A110) + bytes(28), b"CSI_DATA,1,aa:bb:cc:dd:ee:ff,-50,\xff\xfe\n",
           b"CSI_DATA,56,70:3a:73:0c:6c:fb,-52,11,1,7,0,1,1,1,1,0,1,-91,1,1,0,56307647,0,100,0,384,1,[ 100 -64 5"]
    for data in [good] + bad + [good]:
        sock.sendto(data, ("127.0.0.1", port))
        time.sleep(0.01)
    keys = ("wrong_magic", "truncated", "odd_length", "other_sync", "not_utf8", "cut_line")
    assert spin_until(ros_node, lambda: all(diag.count(k) >= 1 for k in keys) and len(frames) >= 2, 10), \
        ({k: diag.count(k) for k in keys}, len(frames))
    m = frames[0]
    assert (m.rows, m.cols, m.source_id, m.format) == (1, 1, "node7", CsiArray.FORMAT_HT20)
    assert m.sensor_timestamps[0] == pytest.approx(123e-6) and m.channel == 6
    assert spin_until(ros_node, lambda: diag.count("node_lost") >= 1, 5), diag.values   # node7 went silent


@needs_captures
def test_datagrams_the_kernel_drops_while_swarm_node_stalls_are_counted(ros_node, processes):
    """swarm_node stopped (SIGSTOP) while 20,000 datagrams arrive: its 4 MiB socket buffer holds a
    few thousand, the kernel drops the rest, and once it runs again every datagram sent is either
    a report or counted in kernel_drops."""
    port, _, diag = udp_swarm_node(ros_node, processes, "/stall")
    node = processes.procs[-1][0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = 20_000
    os.killpg(node.pid, signal.SIGSTOP)
    try:
        for i in range(total):
            sock.sendto(build_datagram(7, i, 2437, -40, -90, np.tile(np.array([3, 20], np.int8), 128),
                                       sensor_time_us=i * 20_000), ("127.0.0.1", port))
    finally:
        os.killpg(node.pid, signal.SIGCONT)
    assert spin_until(ros_node, lambda: diag.count("reports") + diag.count("kernel_drops") >= total, 30), diag.values
    print(f"{total} datagrams sent to a stopped swarm_node: {diag.count('reports')} reports, "
          f"{diag.count('kernel_drops')} dropped by the kernel")
    assert diag.count("reports") + diag.count("kernel_drops") == total and diag.count("kernel_drops") > 0


def test_serial_port_that_vanishes_is_reopened(ros_node, processes, tmp_path):
    link_path = tmp_path / "ttyESP"
    master, slave = pty.openpty()
    link_path.symlink_to(os.ttyname(slave))
    processes.start_node({"transport": "serial", "serial_port": str(link_path), "baud": 921600,
                          "node_name": "esp_a"}, "/ser", "swarm_node")
    frames, diag = [], Diag(ros_node, "/ser")
    ros_node.create_subscription(CsiArray, "/ser/csi", frames.append, 100)
    lines = (DATA / "esp-csi_ht20-stbc_with-head.csv").read_bytes().splitlines(keepends=True)
    assert spin_until(ros_node, lambda: diag.values.get("source") == "receiving"
                      and ros_node.count_publishers("/ser/csi") >= 1, 20), diag.values
    spin_until(ros_node, lambda: False, 0.5)          # let the publisher match our subscription
    os.write(master, b"".join(lines[:20]))
    assert spin_until(ros_node, lambda: len(frames) >= 19, 10), diag.values
    os.close(master)                                  # the port vanishes
    os.close(slave)
    link_path.unlink()
    assert spin_until(ros_node, lambda: diag.count("serial_errors") >= 1, 10), diag.values
    master, slave = pty.openpty()                     # ... and comes back
    link_path.symlink_to(os.ttyname(slave))
    assert spin_until(ros_node, lambda: diag.count("serial_reopened") >= 1, 15), diag.values
    os.write(master, b"".join(lines[20:40]))
    assert spin_until(ros_node, lambda: len(frames) >= 39, 10), diag.values
    assert frames[-1].source_id == "esp_a" and bytes(frames[-1].transmitter_mac).hex(":") == "70:3a:73:0c:6c:fb"
    os.close(master)
    os.close(slave)


@needs_captures
def test_file_transport_reads_a_real_log(ros_node, processes):
    processes.start_node({"transport": "file", "file": str(DATA / "esp-csi_console-test_ht40-below.csv"),
                          "file_rate": 400.0}, "/file", "swarm_node")
    frames, diag = [], Diag(ros_node, "/file")
    ros_node.create_subscription(CsiArray, "/file/csi", frames.append, 2000)
    assert spin_until(ros_node, lambda: diag.values.get("source") == "finished" and diag.count("reports") == 1684, 30), \
        diag.values                                   # every CSI line of the log, nothing counted as bad
    assert diag.count("cut_line") == diag.count("bad_field") == 0
    assert len(frames) > 100                          # those published after this subscription matched
    m = frames[-1]
    assert m.format == CsiArray.FORMAT_HT40 and m.channel == 13 and m.secondary_channel == -1
    assert len(m.subcarrier_indices) == 117 and m.source_id == Path("esp-csi_console-test_ht40-below").name


def test_invalid_parameters_are_rejected(processes):
    cases = (("swarm_node", "chip:=esp8266", "chip must be one of"),
             ("swarm_node", "transport:=pigeon", "transport must be one of"),
             ("swarm_node", "node_chips:=[node3]", "node_chips: expected"),
             ("velocity_node", "nodes:=[node1]", "nodes: expected"),
             ("velocity_node", "static_threshold:=0.5", "hysteresis"))
    started = [(processes.start(node, "--ros-args", "-p", param), message) for node, param, message in cases]
    for proc, message in started:
        assert processes.exit_status(proc, 30) == 2, processes.log_of(proc)
        assert message in processes.log_of(proc) and "Traceback" not in processes.log_of(proc)


def test_keepalive_pings_the_nodes_it_hears(ros_node, processes):
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        pytest.skip("a raw ICMP socket (to watch the pings) needs root")
    listener.settimeout(0.2)
    port = free_port(socket.SOCK_DGRAM)
    processes.start_node({"transport": "udp", "udp_host": "127.0.0.1", "udp_port": port, "keepalive_rate": 20.0},
                         "/ka", "swarm_node")
    assert spin_until(ros_node, lambda: ros_node.count_publishers("/ka/csi") >= 1, 20)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(build_datagram(4, 1, 2437, -40, -90, np.ones(256, np.int8)), ("127.0.0.1", port))
    requests, deadline = 0, time.monotonic() + 5
    while requests < 10 and time.monotonic() < deadline:
        try:
            packet = listener.recv(2048)
        except TimeoutError:
            continue
        icmp = packet[(packet[0] & 0x0F) * 4:]
        requests += icmp[0] == 8 and icmp[8:].startswith(b"espargos-keepalive")
    assert requests >= 10, "no keep-alive echo requests to the node's address"


def test_simulated_node_on_a_pseudo_terminal(ros_node, processes, tmp_path):
    """The swarm simulator's node 2 prints esp-csi lines on a pty; swarm_node reads them as a serial port."""
    scenario = tmp_path / "swarm.yaml"
    scenario.write_text(yaml.safe_dump({"swarm": {"nodes": [{"id": 1, "mac": MACS[1]}, {"id": 2, "mac": MACS[2]}],
                                                  "links": [{"a": 1, "b": 2, "bidirectional": False}]}}))
    link_path = tmp_path / "ttyESP2"
    processes.start("swarm_simulator", "--scenario", str(scenario), "--target", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                    "--pty-node", "2", "--pty-link", str(link_path), "--duration", "30")
    frames = []
    ros_node.create_subscription(CsiArray, "/pty/csi", frames.append, 100)
    assert spin_until(ros_node, lambda: link_path.is_symlink(), 10)
    processes.start_node({"transport": "serial", "serial_port": str(link_path), "node_name": "node2", "channel": 6},
                         "/pty", "swarm_node")
    assert spin_until(ros_node, lambda: len(frames) >= 20, 20), "no CSI from the pseudo-terminal"
    m = frames[-1]
    assert m.source_id == "node2" and bytes(m.transmitter_mac).hex(":") == MACS[1] and m.format == CsiArray.FORMAT_HT20
