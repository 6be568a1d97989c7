"""Localisation end to end over DDS, judged against the simulator's ground truth: four simulated
boards at the walls of a 10 x 8 m room whose walls reflect, a static and a walking transmitter,
the rig of config/room.yaml (simulators, drivers, aoa_nodes, locator_node) started one process per
node, as localize.launch.py starts it."""
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_msgs.msg import Bearing, BearingArray, SpatialSpectrum, TransmitterPositionArray
from scipy.stats import chi2

from conftest import executable, free_port, spin_until
from espargos_driver.graph import Graph, process_arguments, read_yaml, robot_graph
from espargos_driver.sim.scene import Scene

ROOT = Path(__file__).resolve().parents[1] / "espargos_driver"
FRAME_RATE_HZ = 20.0
"""Frames per second per transmitter and board: four boards' simulators, drivers and MUSIC must fit
on two busy cores (the shipped scene runs 50)."""
AOA = {"update_rate": 5.0, "window_frames": 8, "min_frames": 4}
"""aoa_node: 5 bearings per second per transmitter and array, from windows of 0.4 s."""
JUDGED_S = 20.0
MAX_MEDIAN_M = 0.3
MAX_R95_M = {"02:00:00:00:00:0a": 0.8, "02:00:00:00:00:0b": 0.8}
"""The issue's target. benchmarks/localization.py measures R95 0.03 m (static) and 0.29-0.34 m
(walking) per 30 s run since aoa_node ranks bearings by power (before: 0.67-0.77 m walking, when a
wall reflection was rank 0 in some windows)."""
MIN_NEES_INSIDE = 0.8
"""Share of positions whose horizontal NEES lies in its two-sided 95 % band (the issue asks for
0.9). benchmarks/localization.py measures 0.89-0.94 per 30 s run for both transmitters, since the
locator counts overlapping windows' bearings once and gives a moving transmitter's bearings an
error each array's bearings share (``motion_bias``); before, the walker's was 0.67-0.75. One 20 s
run here scatters more: the bound catches the filter falling back to fusing correlated bearings as
independent, not a few points."""


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


def start_graph(processes, graph: Graph, tmp_path: Path) -> None:
    """Every node of ``graph`` in its own process, as ``ros2 launch`` starts it."""
    for i, spec in enumerate(graph.nodes):
        processes.start(spec.executable, *process_arguments(spec, tmp_path, i))


GRID = {"method": "spectrum_grid", "grid_bounds": [0.0, 10.0, 0.0, 8.0]}
"""A second locator_node beside the rig's, on the same bearings: the spectrum grid over the room."""
GRID_MIN_NEES_INSIDE = {"02:00:00:00:00:0a": 0.8, "02:00:00:00:00:0b": 0.65}
"""The spectrum grid's NEES bounds: benchmarks/localization.py --part room --room-method spectrum_grid
measures 0.86-0.91 per 30 s run for the static transmitter (the rest below the band: cautious) and
0.75-0.83 for the walking one (its constant-velocity fit over grid_memory misses the rectangle's
corners)."""


def test_four_arrays_at_the_walls_locate_a_static_and_a_walking_transmitter(ros_node, processes, tmp_path):
    """Both methods on one run: the rig's Kalman locator, and a spectrum-grid locator (``GRID``)."""
    rig = room_rig(tmp_path)
    paths = {t.mac: t.path for t in Scene.from_file(tmp_path / "scene.yaml").transmitters}
    fixes: dict[str, dict[str, list]] = {method: {mac: [] for mac in paths} for method in ("kalman", "grid")}
    diagnostics: dict[str, dict[str, str]] = {"kalman": {}, "grid": {}}

    def on_positions(method: str, msg: TransmitterPositionArray) -> None:
        for p in msg.positions:
            mac = ":".join(f"{b:02x}" for b in p.transmitter_mac)
            stamp = p.header.stamp.sec + p.header.stamp.nanosec * 1e-9
            fixes[method][mac].append((stamp, np.array([p.position.x, p.position.y, p.position.z]),
                                       np.array(p.covariance).reshape(3, 3), p.header.frame_id))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "locator" in status.name:
                method = "grid" if "grid_locator_node" in status.name else "kalman"
                diagnostics[method]["message"] = status.message
                diagnostics[method].update({kv.key: kv.value for kv in status.values})

    ros_node.create_subscription(TransmitterPositionArray, "/room/positions", lambda m: on_positions("kalman", m), 100)
    ros_node.create_subscription(TransmitterPositionArray, "/room/grid_positions", lambda m: on_positions("grid", m), 100)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    graph = robot_graph(read_yaml(rig, "rig"), ROOT)
    start_graph(processes, graph, tmp_path)
    locator = next(spec for spec in graph.nodes if spec.executable == "locator_node")
    grid = replace(locator, name="grid_locator_node", parameters={**locator.parameters, **GRID})
    processes.start(grid.executable, *process_arguments(grid, tmp_path, len(graph.nodes)),
                    "-r", "positions:=grid_positions", "-r", "position_markers:=grid_position_markers")
    every = [f for by_mac in fixes.values() for f in by_mac.values()]
    assert spin_until(ros_node, lambda: all(every), 90), diagnostics
    start = max(f[0][0] for f in every)
    spin_until(ros_node, lambda: all(f[-1][0] > start + JUDGED_S for f in every), 3 * JUDGED_S)
    band = chi2.ppf([0.025, 0.975], 2)
    report = {}
    for method, by_mac in fixes.items():
        for mac, path in paths.items():
            judged = [(t, pos, cov, frame) for t, pos, cov, frame in by_mac[mac] if start <= t <= start + JUDGED_S]
            assert len(judged) >= 2 * JUDGED_S, (method, mac, len(judged), diagnostics)  # at least 2 positions per s
            assert {frame for *_, frame in judged} == {"map"}
            errors = np.array([pos[:2] - path.position(t)[:2] for t, pos, _, _ in judged])
            distance = np.linalg.norm(errors, axis=1)
            nees = np.array([e @ np.linalg.solve(cov[:2, :2], e) for e, (_, _, cov, _) in zip(errors, judged)])
            report[method, mac] = {"median": np.median(distance), "r95": np.percentile(distance, 95),
                                   "nees_inside": np.mean((nees >= band[0]) & (nees <= band[1])), "n": len(judged)}
    print({key: {k: round(float(v), 3) for k, v in r.items()} for key, r in report.items()})
    print("locator diagnostics:", diagnostics)          # shown in full when an assertion below fails
    for (method, mac), r in report.items():
        assert r["median"] <= MAX_MEDIAN_M and r["r95"] <= MAX_R95_M[mac], (method, mac, report, diagnostics)
        least = MIN_NEES_INSIDE if method == "kalman" else GRID_MIN_NEES_INSIDE[mac]
        assert r["nees_inside"] >= least, (method, mac, report, diagnostics)
    for method in fixes:
        assert diagnostics[method].get("message") == "2 of 2 transmitters located", diagnostics
    assert diagnostics["grid"]["method"] == "music-grid"


def bearing_array(stamp_s: float, frame_id: str, azimuth: float, std: float = 0.01) -> BearingArray:
    msg = BearingArray(source_id=frame_id, transmitter_mac=[2, 0, 0, 0, 0, 0x0C], window_span=0.2)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int((stamp_s % 1) * 1e9)
    msg.bearings = [Bearing(transmitter_mac=msg.transmitter_mac, azimuth=azimuth, azimuth_std=std,
                            elevation_std=float("nan"), rank=0)]
    return msg


def test_locator_node_counts_bad_bearings_and_claims_no_position_from_one_still_array(ros_node, processes, tmp_path):
    params = tmp_path / "locator.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "bearing_topics": ["/loc/a/bearings"], "array_poses": ["espargos_a: 0 0 1 0 0 0"]}}}))
    node = processes.start("locator_node", "--ros-args", "-r", "__ns:=/loc", "--params-file", str(params))
    pub = ros_node.create_publisher(BearingArray, "/loc/a/bearings", 100)
    positions, diagnostics = [], {}
    ros_node.create_subscription(TransmitterPositionArray, "/loc/positions", positions.append, 10)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {s.name: (s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in m.status if "locator" in s.name}), 10)
    assert spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 20), processes.log_of(node)
    t0 = 1_000_000.0
    messages = [bearing_array(t0 + 0.2 * k, "espargos_a", 0.3 + 0.01 * np.sin(k)) for k in range(100)]
    messages += [bearing_array(t0 + 30.0, "espargos_a", float("nan")),          # 20 s of one still array, then
                 bearing_array(t0 + 30.0, "espargos_a", 0.3, std=-1.0),         # bad ones
                 bearing_array(t0 + 30.0, "espargos_elsewhere", 0.3),
                 bearing_array(t0 + 5.0, "espargos_a", 0.3)]                    # older than what was fused
    for msg in messages:
        pub.publish(msg)
        time.sleep(0.002)                              # within the subscription's queue

    def counted() -> bool:
        values = next(iter(diagnostics.values()), (0, "", {}))[2]
        return values.get("invalid_bearing") == "2" and values.get("unknown_pose") == "1" and \
            values.get("out_of_order") == "1"
    assert spin_until(ros_node, counted, 20), (next(iter(diagnostics.values()), (0, "", {}))[2], processes.log_of(node)[-2000:])
    level, message, values = next(iter(diagnostics.values()))
    assert level == DiagnosticStatus.WARN and "no position yet" in message
    assert int(values["poor_geometry"]) > 50 and values["tracks_located"] == "0"
    assert not any(p.positions for p in positions)
    assert node.poll() is None


def spatial_spectrum(stamp_s: float, frame_id: str, azimuth: float, power_db: np.ndarray | None = None) -> SpatialSpectrum:
    """A 1-D spectrum on aoa_node's 0.5 deg grid with one peak at ``azimuth`` (or ``power_db`` as given)."""
    azimuths = np.radians(np.arange(-90.0, 90.01, 0.5))
    if power_db is None:
        power_db = 10 * np.log10(1 / (1 + ((azimuths - azimuth) / np.radians(1.0)) ** 2) + 1e-3)
        power_db -= power_db.max()
    msg = SpatialSpectrum(source_id=frame_id, transmitter_mac=[2, 0, 0, 0, 0, 0x0C], method="music-wideband",
                          elevations=[0.0], sources_detected=1, window_frames=8)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int((stamp_s % 1) * 1e9)
    msg.azimuths = azimuths.tolist()
    msg.power_db = np.asarray(power_db, np.float32).tolist()
    return msg


def test_grid_locator_node_counts_bad_looks_and_claims_no_position_from_one_still_array(ros_node, processes, tmp_path):
    params = tmp_path / "locator.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "method": "spectrum_grid", "grid_bounds": [-5.0, 5.0, -5.0, 5.0],
        "bearing_topics": ["/grid/a/bearings"], "array_poses": ["espargos_a: 0 0 1 0 0 0"]}}}))
    node = processes.start("locator_node", "--ros-args", "-r", "__ns:=/grid", "--params-file", str(params))
    bearings = ros_node.create_publisher(BearingArray, "/grid/a/bearings", 100)
    spectra = ros_node.create_publisher(SpatialSpectrum, "/grid/a/spatial_spectrum", 100)
    positions, diagnostics = [], {}
    ros_node.create_subscription(TransmitterPositionArray, "/grid/positions", positions.append, 10)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {s.name: (s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in m.status if "locator" in s.name}), 10)
    assert spin_until(ros_node, lambda: bearings.get_subscription_count() > 0 and spectra.get_subscription_count() > 0,
                      20), processes.log_of(node)
    t0 = 1_000_000.0
    messages = []
    for k in range(60):                                           # 12 s of one array standing still
        azimuth = 0.3 + 0.01 * np.sin(k)
        messages += [spatial_spectrum(t0 + 0.2 * k, "espargos_a", azimuth), bearing_array(t0 + 0.2 * k, "espargos_a", azimuth)]
    messages += [spatial_spectrum(t0 + 20.0, "espargos_a", 0.3, power_db=np.zeros(10)),       # disagrees with its grid
                 bearing_array(t0 + 20.0, "espargos_a", 0.3),
                 spatial_spectrum(t0 + 20.2, "espargos_a", 0.3, power_db=np.full(361, np.nan)),
                 bearing_array(t0 + 20.2, "espargos_a", 0.3),
                 spatial_spectrum(t0 + 20.4, "espargos_elsewhere", 0.3), bearing_array(t0 + 20.4, "espargos_elsewhere", 0.3),
                 bearing_array(t0 + 20.6, "espargos_a", 0.3),                                 # its spectrum never comes
                 spatial_spectrum(t0 + 23.0, "espargos_a", 0.3), bearing_array(t0 + 23.0, "espargos_a", float("nan"))]
    for msg in messages:
        (bearings if isinstance(msg, BearingArray) else spectra).publish(msg)
        time.sleep(0.01)                               # a look takes the node a few ms: within the queues

    def counted() -> bool:
        values = next(iter(diagnostics.values()), (0, "", {}))[2]
        return values.get("invalid_spectrum") == "2" and values.get("unknown_pose") == "1" and \
            values.get("unpaired_look") == "1" and values.get("invalid_bearing") == "1"
    assert spin_until(ros_node, counted, 20), (next(iter(diagnostics.values()), (0, "", {}))[2], processes.log_of(node)[-2000:])
    level, message, values = next(iter(diagnostics.values()))
    assert level == DiagnosticStatus.WARN and "no position yet" in message, (message, values)
    assert int(values["poor_geometry"]) > 30 and values["tracks_located"] == "0" and values["method"] == "music-grid"
    assert not any(p.positions for p in positions)
    assert node.poll() is None


def test_locator_node_refuses_parameters_that_cannot_work(tmp_path):
    for args, reason in ((["-p", "motion_model:=teleport"], "motion_model must be one of"),
                         (["-p", "method:=triangulate"], "method must be one of"),
                         (["-p", "method:=spectrum_grid", "-p", "grid_bounds:=[0.0, 1.0]"], "grid_bounds must be"),
                         (["-p", "method:=spectrum_grid", "-p", "grid_resolution:=0.0"], "grid_resolution must be > 0"),
                         (["-p", "array_poses:=['a: 1 2']"], "array pose must be"),
                         (["-p", "platform_pose_type:=twist"], "platform_pose_type must be one of")):
        done = subprocess.run([str(executable("locator_node")), "--ros-args", *args], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_one_array_flying_past_an_access_point_locates_it(ros_node, processes, tmp_path):
    """config/drone.yaml: one simulated board on a drone flying 20 m at 2 m/s, there and back,
    past an access point 10 m off its line (config/drone_scene.yaml); scene_pose publishes the
    drone's odometry from the same scene, the locator places the bearings with it. Once the drone
    has flown 10 m (5 s after the first bearing) every position is within 0.3 m of the access point
    and the covariance is consistent.

    drone.yaml's locator allows for what a real drone adds to a bearing (mount, odometry,
    calibration: a 1 deg floor, motion_bias). The simulated drone has none of these: its bearings
    err by 0.17 deg, independently once the windows' overlap is counted (measured over a 50 s
    run), so the test gives the locator that noise (0.3 deg floor, no motion_bias) to judge the
    covariance against the truth; with drone.yaml's it is only cautious (NEES below the band)."""
    rig = yaml.safe_load((ROOT / "config" / "drone.yaml").read_text())
    rig["robot"]["scene"] = str(ROOT / "config" / rig["robot"]["scene"])
    rig["robot"]["locator"].update(bearing_std_floor=0.3, motion_bias=0.0)
    for array in rig["robot"]["arrays"]:
        array.update(sim_http_port=free_port(), sim_stream_port=free_port(socket.SOCK_DGRAM),
                     config=str(ROOT / "config" / array["config"]))
    (tmp_path / "drone.yaml").write_text(yaml.safe_dump(rig))
    truth = Scene.from_file(rig["robot"]["scene"]).transmitters[0].path.position(0.0)
    fixes: list = []
    first_bearing: list[float] = []
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "locator" in status.name:
                diagnostics.update({kv.key: kv.value for kv in status.values}, message=status.message)

    ros_node.create_subscription(TransmitterPositionArray, "/drone/positions", lambda m: fixes.extend(
        (p.header.stamp.sec + p.header.stamp.nanosec * 1e-9, np.array([p.position.x, p.position.y]),
         np.array(p.covariance).reshape(3, 3)[:2, :2]) for p in m.positions), 100)
    ros_node.create_subscription(BearingArray, "/drone/belly/bearings", lambda m: first_bearing.append(
        m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) if not first_bearing else None, 10)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    start_graph(processes, robot_graph(read_yaml(tmp_path / "drone.yaml", "rig"), ROOT), tmp_path)
    assert spin_until(ros_node, lambda: bool(first_bearing), 60), diagnostics
    start = first_bearing[0] + 5.0
    assert spin_until(ros_node, lambda: bool(fixes) and fixes[-1][0] > start + JUDGED_S, 3 * JUDGED_S + 30), diagnostics
    judged = [(t, p, c) for t, p, c in fixes if t >= start]
    errors = np.array([np.linalg.norm(p - truth[:2]) for _, p, _ in judged])
    nees = np.array([(p - truth[:2]) @ np.linalg.solve(c, p - truth[:2]) for _, p, c in judged])
    band = chi2.ppf([0.025, 0.975], 2)
    inside = float(np.mean((nees >= band[0]) & (nees <= band[1])))
    print({"n": len(judged), "median": round(float(np.median(errors)), 3), "max": round(float(errors.max()), 3),
           "nees_inside": round(inside, 3)}, diagnostics)
    assert len(judged) > 40 and errors.max() <= 0.3 and inside >= 0.8, (errors.max(), inside, diagnostics)


@pytest.mark.parametrize("params, reason", [
    (["scene:=/nonexistent/scene.yaml"], "No such file"),
    ([f"scene:={ROOT / 'config' / 'room_scene.yaml'}"], "has no platform"),
    ([f"scene:={ROOT / 'config' / 'drone_scene.yaml'}", "rate:=0.0"], "rate must be > 0"),
])
def test_scene_pose_refuses_what_cannot_work(processes, params, reason):
    proc = processes.start("scene_pose", "--ros-args", *(a for p in params for a in ("-p", p)))
    assert processes.exit_status(proc, 20) == 2
    log = processes.log_of(proc)
    assert "invalid parameter" in log and reason in log and "Traceback" not in log
