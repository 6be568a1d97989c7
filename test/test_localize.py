"""Localisation end to end over DDS, judged against the simulator's ground truth: four simulated
boards at the walls of a 10 x 8 m room whose walls reflect, a static and a walking transmitter,
the rig of config/room.yaml (simulators, drivers, aoa_nodes, locator_node) started one process per
node, as localize.launch.py starts it."""
import socket
import time
from pathlib import Path

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from espargos_msgs.msg import TransmitterPositionArray
from scipy.stats import chi2

from conftest import free_port, spin_until
from espargos_driver.graph import Graph, read_yaml, robot_graph
from espargos_driver.sim.scene import Scene

ROOT = Path(__file__).resolve().parents[1] / "espargos_driver"
FRAME_RATE_HZ = 20.0
"""Frames per second per transmitter and board: four boards' simulators, drivers and MUSIC must fit
on two busy cores (the shipped scene runs 50)."""
AOA = {"update_rate": 5.0, "window_frames": 8, "min_frames": 4}
"""aoa_node: 5 bearings per second per transmitter and array, from windows of 0.4 s."""
JUDGED_S = 20.0
MAX_MEDIAN_M, MAX_R95_M = 0.3, 0.8
MIN_NEES_INSIDE = 0.6
"""Share of positions whose horizontal NEES lies in its two-sided 95 % band. Consistency would put
0.95 there; measured here 0.85-0.88 (static) and 0.65-0.75 (walking): a walking transmitter's
bearing errors are correlated from update to update (its wall reflections move with it), which
the filter, fusing them as independent, does not know. The bound catches a covariance that is
off by a large factor either way, not the remaining gap."""


def room_rig(tmp_path: Path) -> Path:
    """config/room.yaml and room_scene.yaml at the test's rates, on free ports."""
    scene = yaml.safe_load((ROOT / "config" / "room_scene.yaml").read_text())
    scene["scenario"].update(frame_rate_hz=FRAME_RATE_HZ, reference_rate_hz=FRAME_RATE_HZ)
    (tmp_path / "scene.yaml").write_text(yaml.safe_dump(scene))
    params = yaml.safe_load((ROOT / "config" / "board.yaml").read_text())
    params["/**/aoa_node"]["ros__parameters"].update(AOA)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rig = yaml.safe_load((ROOT / "config" / "room.yaml").read_text())
    rig["robot"]["scene"] = str(tmp_path / "scene.yaml")
    for array in rig["robot"]["arrays"]:
        array.update(sim_http_port=free_port(), sim_stream_port=free_port(socket.SOCK_DGRAM),
                     config=str(tmp_path / "params.yaml"))
    (tmp_path / "room.yaml").write_text(yaml.safe_dump(rig))
    return tmp_path / "room.yaml"


def unflatten(params: dict) -> dict:
    """Dotted parameter names -> the nested mapping of a parameters file."""
    out: dict = {}
    for name, value in params.items():
        *parents, leaf = name.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def start_graph(processes, graph: Graph, tmp_path: Path) -> None:
    """Every node of ``graph`` in its own process, as ``ros2 launch`` starts it: its parameters
    files, then the graph's values in one more file."""
    for i, spec in enumerate(graph.nodes):
        if not spec.ros:
            processes.start(spec.executable, *spec.arguments)
            continue
        overrides = tmp_path / f"{spec.name}-{i}.yaml"
        overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": unflatten(spec.parameters)}}))
        files = [a for f in (*spec.params_files, overrides) for a in ("--params-file", str(f))]
        processes.start(spec.executable, "--ros-args", "-r", f"__ns:={spec.namespace or '/'}", "-r",
                        f"__node:={spec.name}", *files)


def test_four_arrays_at_the_walls_locate_a_static_and_a_walking_transmitter(ros_node, processes, tmp_path):
    rig = room_rig(tmp_path)
    paths = {t.mac: t.path for t in Scene.from_file(tmp_path / "scene.yaml").transmitters}
    fixes: dict[str, list] = {mac: [] for mac in paths}
    diagnostics: dict[str, str] = {}

    def on_positions(msg: TransmitterPositionArray) -> None:
        for p in msg.positions:
            mac = ":".join(f"{b:02x}" for b in p.transmitter_mac)
            stamp = p.header.stamp.sec + p.header.stamp.nanosec * 1e-9
            fixes[mac].append((stamp, np.array([p.position.x, p.position.y, p.position.z]),
                               np.array(p.covariance).reshape(3, 3), p.header.frame_id))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "locator" in status.name:
                diagnostics["message"] = status.message
                diagnostics.update({kv.key: kv.value for kv in status.values})

    ros_node.create_subscription(TransmitterPositionArray, "/room/positions", on_positions, 100)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    start_graph(processes, robot_graph(read_yaml(rig, "rig"), ROOT), tmp_path)
    located = spin_until(ros_node, lambda: all(fixes.values()), 90)
    assert located, diagnostics
    start = max(f[0][0] for f in fixes.values())
    spin_until(ros_node, lambda: all(f[-1][0] > start + JUDGED_S for f in fixes.values()), 3 * JUDGED_S)
    band = chi2.ppf([0.025, 0.975], 2)
    report = {}
    for mac, path in paths.items():
        judged = [(t, pos, cov, frame) for t, pos, cov, frame in fixes[mac] if start <= t <= start + JUDGED_S]
        assert len(judged) >= 2 * JUDGED_S, (mac, len(judged), diagnostics)    # at least 2 positions per second
        assert {frame for *_, frame in judged} == {"map"}
        errors = np.array([pos[:2] - path.position(t)[:2] for t, pos, _, _ in judged])
        distance = np.linalg.norm(errors, axis=1)
        nees = np.array([e @ np.linalg.solve(cov[:2, :2], e) for e, (_, _, cov, _) in zip(errors, judged)])
        report[mac] = dict(median=np.median(distance), r95=np.percentile(distance, 95),
                           nees_inside=np.mean((nees >= band[0]) & (nees <= band[1])), n=len(judged))
    print({mac: {k: round(float(v), 3) for k, v in r.items()} for mac, r in report.items()})
    for mac, r in report.items():
        assert r["median"] <= MAX_MEDIAN_M and r["r95"] <= MAX_R95_M, (mac, report, diagnostics)
        assert r["nees_inside"] >= MIN_NEES_INSIDE, (mac, report, diagnostics)
    assert diagnostics.get("message") == "2 of 2 transmitters located", diagnostics
