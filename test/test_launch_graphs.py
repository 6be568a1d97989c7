"""The graphs of board.launch.py, combined_array.launch.py and robot.launch.py (pure functions of
their YAML and arguments), the single-process runner that starts them, and, where launch_ros is
installed, the launch files themselves."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from espargos_driver.graph import (GraphError, array_graph, missing_packages, node_parameters, read_yaml, robot_graph,
                                   swarm_graph)
from espargos_aoa.poses import parse_array_pose
from espargos_msgs.msg import BearingArray, RadialVelocity, TransmitterPositionArray
from nav_msgs.msg import Odometry

from conftest import ROOT, executable, free_port, spin_until

SHARE = Path(get_package_share_directory("espargos_driver"))
BOARD_YAML = ROOT / "config" / "board.yaml"


def by_executable(graph):
    return {spec.executable: spec for spec in graph.nodes}


def test_board_graph_simulates_only_when_asked():
    graph = array_graph(namespace="espargos", params_file=BOARD_YAML, frame_id="espargos_array", parent_frame="base_link",
                        pose={"xyz": [0.2, 0.0, 0.1], "rpy": [0.0, 0.0, 1.0]}, share_dir=SHARE, rviz=True, simulate=True)
    nodes = by_executable(graph)
    assert set(nodes) == {"board_simulator", "board_node", "aoa_node"}
    sim, driver, aoa = nodes["board_simulator"], nodes["board_node"], nodes["aoa_node"]
    assert not sim.ros and sim.arguments[:4] == ["--http-port", "8400", "--stream-port", "53330"]
    assert sim.arguments[-1].endswith("config/sim_scenario.yaml")
    assert driver.namespace == aoa.namespace == "/espargos" and driver.name == "board_node"
    assert driver.params_files == aoa.params_files == [str(BOARD_YAML)]          # given to the nodes as a file
    assert driver.parameters == {"frame_id": "espargos_array", "autostart": True, "host": "127.0.0.1",
                                 "http_port": 8400, "stream_port": 53330} and aoa.parameters == {}
    effective = driver.effective_parameters()
    assert (effective["host"], effective["http_port"], effective["calibration.policy"]) == ("127.0.0.1", 8400, "auto")
    assert aoa.effective_parameters()["window_frames"] == 20 and aoa.effective_parameters()["mode"] == "wideband"
    [tf] = graph.transforms
    assert (tf.parent, tf.child, tf.xyz, tf.rpy) == ("base_link", "espargos_array", (0.2, 0.0, 0.1), (0.0, 0.0, 1.0))
    assert tf.arguments()[-4:] == ["--frame-id", "base_link", "--child-frame-id", "espargos_array"]
    assert "/espargos/bearing_markers" in graph.rviz_configs[0]


def test_board_graph_with_vitals_adds_vital_signs_node_with_the_board_file():
    """vitals:=true (espargos_run board --vitals) adds vital_signs_node next to the driver, with the
    board parameters file's section: its beams and window."""
    from espargos_driver.nodes.run import build_graph, parse_args

    graph = array_graph(namespace="espargos", params_file=BOARD_YAML, frame_id="espargos_array", parent_frame="base_link",
                        pose=None, share_dir=SHARE, simulate=True, vitals=True)
    vitals = by_executable(graph)["vital_signs_node"]
    assert (vitals.package, vitals.namespace, vitals.params_files) == ("espargos_aoa", "/espargos", [str(BOARD_YAML)])
    effective = vitals.effective_parameters()
    assert effective["beams"] == [-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0] and effective["window"] == 30.0
    runner = build_graph(parse_args(["board", "--simulate", "--vitals"]), SHARE)
    assert [n.executable for n in runner.nodes] == [n.executable for n in graph.nodes]


def test_config_host_is_honoured(tmp_path):
    """An empty host argument means the parameters file's host, never the simulator."""
    params = tmp_path / "host.yaml"
    params.write_text("/**/board_node:\n  ros__parameters:\n    host: 127.0.0.9\n    http_port: 8080\n")
    graph = array_graph(namespace="espargos", params_file=params, frame_id="f", parent_frame="", pose=None,
                        share_dir=SHARE, publish_tf=False)
    nodes = by_executable(graph)
    assert set(nodes) == {"board_node", "aoa_node"} and "host" not in nodes["board_node"].parameters
    effective = nodes["board_node"].effective_parameters()
    assert (effective["host"], effective["http_port"]) == ("127.0.0.9", 8080)
    empty = tmp_path / "empty.yaml"
    empty.write_text("/**:\n  ros__parameters: {}\n")
    with pytest.raises(GraphError, match="no board address"):
        array_graph(namespace="e", params_file=empty, frame_id="f", parent_frame="", pose=None, share_dir=SHARE,
                    publish_tf=False)
    with pytest.raises(GraphError, match="exclude each other"):
        array_graph(namespace="e", params_file=params, frame_id="f", parent_frame="", pose=None, share_dir=SHARE,
                    host="10.0.0.1", simulate=True, publish_tf=False)
    with pytest.raises(GraphError, match="parent_frame is empty"):
        array_graph(namespace="e", params_file=params, frame_id="f", parent_frame="", pose=None, share_dir=SHARE)


def test_runner_connects_to_the_config_host_and_starts_no_simulator(tmp_path, processes):
    config = tmp_path / "my.yaml"
    config.write_text("/**/board_node:\n  ros__parameters:\n    host: 127.0.0.9\n    http_port: 8099\n"
                      "    calibration:\n      policy: none\n")
    runner = processes.start("espargos_run", "board", "--config", str(config), "--namespace", "cfg", "--duration", "6")
    assert runner.wait(timeout=60) == 0
    log = processes.log_of(runner)
    assert "connecting to board at 127.0.0.9:8099" in log and "simulated board" not in log, log[-2000:]


def test_runner_stops_when_its_simulator_cannot_bind(processes):
    http_port, stream_port = free_port(), free_port(socket.SOCK_DGRAM)
    taken = processes.start("board_simulator", "--http-port", str(http_port), "--stream-port", str(stream_port))
    time.sleep(2.0)
    assert taken.poll() is None
    second = processes.start("board_simulator", "--http-port", str(http_port), "--stream-port", str(stream_port))
    assert second.wait(timeout=30) == 1 and "cannot serve" in processes.log_of(second)
    runner = processes.start("espargos_run", "board", "--simulate", "--sim-http-port", str(http_port),
                             "--sim-stream-port", str(stream_port), "--namespace", "clash", "--duration", "60")
    assert runner.wait(timeout=40) == 1
    assert "board_simulator exited with status 1" in processes.log_of(runner)


def test_board_graph_with_host_and_other_namespace():
    graph = array_graph(namespace="drone/front", params_file=BOARD_YAML, frame_id="front_array", parent_frame="",
                        pose=None, host="192.168.1.7", share_dir=SHARE, rviz=True, remappings={"bearings": "/all/bearings"},
                        publish_tf=False)
    nodes = by_executable(graph)
    assert set(nodes) == {"board_node", "aoa_node"} and not graph.transforms
    assert nodes["board_node"].parameters["host"] == "192.168.1.7" and nodes["board_node"].namespace == "/drone/front"
    assert nodes["board_node"].effective_parameters()["board_id"] == "espargos"        # from board.yaml
    assert nodes["aoa_node"].remappings == [("bearings", "/all/bearings")]
    assert "/drone/front/spectrum_scan" in graph.rviz_configs[0] and "Fixed Frame: front_array" in graph.rviz_configs[0]


def test_combined_graph():
    layout = SHARE / "config" / "combined_array.yaml"
    graph = array_graph(namespace="rig", params_file=BOARD_YAML, frame_id="rig_array", parent_frame="base_link",
                        pose=None, simulate=True, array_config=str(layout), share_dir=SHARE)
    nodes = by_executable(graph)
    assert nodes["board_simulator"].arguments[:2] == ["--combined", str(layout)]
    assert nodes["board_node"].parameters["array_config"] == str(layout)
    with pytest.raises(GraphError, match="hosts come from that file"):
        array_graph(namespace="rig", params_file=BOARD_YAML, frame_id="f", parent_frame="", pose=None,
                    host="10.0.0.1", array_config=str(layout), share_dir=SHARE, publish_tf=False)


def test_combined_graph_refuses_a_bad_layout(tmp_path):
    data = yaml.safe_load((SHARE / "config" / "combined_array.yaml").read_text())
    data["combined-array"]["array"][3][3] = "top.0.0"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="overlapping antennas"):
        array_graph(namespace="rig", params_file=BOARD_YAML, frame_id="f", parent_frame="", pose=None,
                    simulate=True, array_config=str(bad), share_dir=SHARE, publish_tf=False)


def test_robot_graph():
    graph = robot_graph(read_yaml(SHARE / "config" / "robot.yaml", "robot YAML"), SHARE)
    drivers = [n for n in graph.nodes if n.executable == "board_node"]
    assert [d.namespace for d in drivers] == ["/robot/front", "/robot/left"]
    assert [d.parameters["board_id"] for d in drivers] == ["front", "left"]
    assert [d.parameters["http_port"] for d in drivers] == [8420, 8421]
    assert not robot_graph(read_yaml(SHARE / "config" / "robot.yaml", "robot YAML"), SHARE, publish_tf=False).transforms
    assert sum(not n.ros for n in graph.nodes) == 3                     # two board simulators, one swarm simulator
    assert [(t.parent, t.child) for t in graph.transforms] == [("base_link", "espargos_front"), ("base_link", "espargos_left")]
    assert graph.transforms[1].rpy == (0.0, 0.0, 1.5708)
    swarm = {n.executable: n for n in graph.nodes if n.namespace == "/robot/swarm"}
    assert set(swarm) == {"swarm_simulator", "swarm_node", "velocity_node", "vital_signs_node"}
    assert swarm["swarm_node"].parameters["udp_port"] == 5015 and swarm["swarm_simulator"].arguments[-1] == "127.0.0.1:5015"
    assert swarm["velocity_node"].parameters["nodes"][0] == "node1=02:00:00:00:00:01"
    locator = next(n for n in graph.nodes if n.executable == "locator_node")
    assert locator.namespace == "/robot" and locator.parameters["fixed_frame"] == "odom"
    assert locator.parameters["platform_pose_topic"] == "/robot/odom" and locator.parameters["platform_pose_type"] == "odometry"
    assert locator.parameters["bearing_topics"] == ["/robot/front/bearings", "/robot/left/bearings"]
    assert locator.parameters["array_poses"][1] == "espargos_left: 0.0 0.15 0.15 0.0 0.0 1.5708"   # mounts on base_link


def test_localize_graph_places_simulated_boards_in_the_scene_and_feeds_the_locator():
    rig = read_yaml(SHARE / "config" / "room.yaml", "rig YAML")
    graph = robot_graph(rig, SHARE)
    arrays = rig["robot"]["arrays"]
    simulators = [n for n in graph.nodes if n.executable == "board_simulator"]
    assert len(simulators) == 4
    for sim, array in zip(simulators, arrays):
        assert sim.arguments[sim.arguments.index("--scene") + 1] == str(SHARE / "config" / "room_scene.yaml")
        pose = sim.arguments[sim.arguments.index("--pose") + 1:][:6]
        assert [float(v) for v in pose] == [*array["pose"]["xyz"], *array["pose"]["rpy"]]
    (locator,) = [n for n in graph.nodes if n.executable == "locator_node"]
    assert locator.namespace == "/room" and locator.parameters["fixed_frame"] == "map"
    assert locator.parameters["bearing_topics"] == [f"/room/{a['name']}/bearings" for a in arrays]
    assert locator.parameters["accel_noise"] == 2.0
    for text, array in zip(locator.parameters["array_poses"], arrays):
        frame_id, pose = parse_array_pose(text)
        assert frame_id == array["frame_id"] and list(pose.position) == array["pose"]["xyz"]
    rig["robot"]["arrays"][0]["array_config"] = "combined_array.yaml"
    with pytest.raises(GraphError, match="a combined array cannot use"):
        robot_graph(rig, SHARE)
    rig["robot"]["locator"] = ["not", "a", "mapping"]
    del rig["robot"]["arrays"][0]["array_config"]
    with pytest.raises(GraphError, match="locator must be a mapping"):
        robot_graph(rig, SHARE)


def test_drone_graph_publishes_the_scene_platform_as_the_locators_odometry():
    rig = read_yaml(SHARE / "config" / "drone.yaml", "rig YAML")
    graph = robot_graph(rig, SHARE)
    (pose,) = [n for n in graph.nodes if n.executable == "scene_pose"]
    (locator,) = [n for n in graph.nodes if n.executable == "locator_node"]
    assert pose.namespace == "/drone" and pose.parameters["scene"] == str(SHARE / "config" / "drone_scene.yaml")
    assert pose.remappings == [("odom", locator.parameters["platform_pose_topic"])] == [("odom", "/drone/odom")]
    assert pose.parameters["frame_id"] == locator.parameters["fixed_frame"] == "odom"
    assert not [n for n in robot_graph(read_yaml(SHARE / "config" / "robot.yaml", "rig YAML"), SHARE).nodes
                if n.executable == "scene_pose"]                      # a standing robot: its odometry is the user's


@pytest.mark.parametrize("change, message", [
    (lambda r: r["arrays"].append(dict(r["arrays"][0])), "array name 'front' is used twice"),
    (lambda r: r["arrays"][1].__setitem__("sim_http_port", 8420), "simulator ports"),
    (lambda r: r["arrays"][1].__setitem__("frame_id", "espargos_front"), "frame_id 'espargos_front' is used twice"),
    (lambda r: r["arrays"][0].__setitem__("pose", {"xyz": [1, 2]}), "pose needs xyz"),
    (lambda r: r.__setitem__("arrays", []), "needs robot"),
])
def test_robot_graph_refusals(change, message):
    robot = read_yaml(SHARE / "config" / "robot.yaml", "robot YAML")
    change(robot["robot"])
    with pytest.raises(GraphError, match=message):
        robot_graph(robot, SHARE)


def test_swarm_graph():
    graph = swarm_graph(namespace="swarm", params_file=ROOT / "config" / "swarm.yaml", share_dir=SHARE, simulate=True)
    nodes = by_executable(graph)
    assert set(nodes) == {"swarm_simulator", "swarm_node", "velocity_node", "vital_signs_node"}
    assert nodes["vital_signs_node"].effective_parameters()["nodes"] == ["node1=02:00:00:00:00:01",
                                                                         "node2=02:00:00:00:00:02"]
    assert nodes["swarm_node"].parameters["udp_host"] == "127.0.0.1" and nodes["swarm_node"].namespace == "/swarm"
    assert nodes["swarm_simulator"].arguments[-1] == "127.0.0.1:5005"
    assert nodes["velocity_node"].effective_parameters()["nodes"] == ["node1=02:00:00:00:00:01",
                                                                      "node2=02:00:00:00:00:02"]
    with pytest.raises(GraphError, match="sends UDP"):
        swarm_graph(namespace="s", swarm_params={"transport": "serial"}, velocity_params={}, share_dir=SHARE,
                    simulate=True)


def test_runner_starts_the_swarm_graph(ros_node, processes, tmp_path):
    got = []
    ros_node.create_subscription(RadialVelocity, "/swarm/radial_velocity", got.append, 100)
    config = yaml.safe_load((ROOT / "config" / "swarm.yaml").read_text())
    config["/**/swarm_node"]["ros__parameters"]["udp_port"] = free_port(socket.SOCK_DGRAM)   # no clash with other runs
    (tmp_path / "swarm.yaml").write_text(yaml.safe_dump(config))
    runner = processes.start("espargos_run", "swarm", "--simulate", "--config", str(tmp_path / "swarm.yaml"),
                             "--duration", "30")
    assert spin_until(ros_node, lambda: sum(m.method == RadialVelocity.METHOD_BIDIRECTIONAL for m in got) >= 20, 30), \
        processes.log_of(runner)[-2000:]
    assert {(m.endpoint_a, m.endpoint_b) for m in got} == {("node1", "node2")}


def test_node_parameters_match_keys_the_way_rcl_does():
    """rcl: a key is a fully qualified node name with ``/**`` (any namespace depth) and ``*`` (one
    token); a key without a leading slash is absolute (``aoa_node`` = ``/aoa_node``)."""
    params = {"/**": {"ros__parameters": {"a": 1}}, "/x/aoa_node": {"ros__parameters": {"b": {"c": 2}}},
              "aoa_node": {"ros__parameters": {"d": 3}}, "/*/aoa_node": {"ros__parameters": {"e": 4}},
              "/**/aoa_node": {"ros__parameters": {"f": 5}}, "other": {"ros__parameters": {"g": 6}}}
    assert node_parameters(params, "aoa_node", "/x") == {"a": 1, "b.c": 2, "e": 4, "f": 5}
    assert node_parameters(params, "aoa_node") == {"a": 1, "d": 3, "f": 5}
    assert node_parameters(params, "aoa_node", "/x/y") == {"a": 1, "f": 5}
    with pytest.raises(GraphError, match="ros__parameters"):
        node_parameters({"aoa_node": {"nope": 1}}, "aoa_node")


def test_runner_starts_the_robot_graph(ros_node, processes, tmp_path):
    """The robot rig in one process: both arrays give bearings, the swarm links velocities, and the
    locator says it cannot place bearings without odometry, then (odometry of a robot standing
    still) that it cannot range the transmitter, and publishes no position."""
    counts = {"front": 0, "left": 0, "swarm": 0}
    locator: dict[str, str] = {}
    positions: list = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "espargos_locator: /robot/locator_node":
                locator.update({kv.key: kv.value for kv in status.values}, message=status.message)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    ros_node.create_subscription(TransmitterPositionArray, "/robot/positions",
                                 lambda m: positions.extend(m.positions), 10)
    for name in ("front", "left"):
        ros_node.create_subscription(BearingArray, f"/robot/{name}/bearings",
                                     lambda m, n=name: counts.__setitem__(n, counts[n] + 1), 10)
    ros_node.create_subscription(RadialVelocity, "/robot/swarm/radial_velocity",
                                 lambda m: counts.__setitem__("swarm", counts["swarm"] + 1), 10)
    robot = yaml.safe_load((ROOT / "config" / "robot.yaml").read_text())
    for array in robot["robot"]["arrays"]:                  # ports no other run on this host uses
        array.update(sim_http_port=free_port(), sim_stream_port=free_port(socket.SOCK_DGRAM),
                     config=str(ROOT / "config" / array["config"]))
    robot["robot"]["swarm"]["udp_port"] = free_port(socket.SOCK_DGRAM)
    robot["robot"]["swarm"]["scenario"] = str(ROOT / "config" / robot["robot"]["swarm"]["scenario"])
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(robot))
    runner = processes.start("espargos_run", "robot", "--robot-config", str(tmp_path / "robot.yaml"), "--duration", "60")
    assert spin_until(ros_node, lambda: min(counts.values()) >= 5, 40), (counts, processes.log_of(runner)[-2000:])
    assert spin_until(ros_node, lambda: "no platform pose on /robot/odom" in locator.get("message", ""), 10), locator
    odom = ros_node.create_publisher(Odometry, "/robot/odom", 10)

    def still() -> None:
        msg = Odometry(child_frame_id="base_link")
        msg.header.stamp, msg.header.frame_id = ros_node.get_clock().now().to_msg(), "odom"
        msg.pose.pose.orientation.w = 1.0
        odom.publish(msg)
    timer = ros_node.create_timer(0.1, still)
    try:
        assert spin_until(ros_node, lambda: locator.get("message", "").startswith("no position yet")
                          and int(locator.get("poor_geometry", 0)) > 0, 15), str(locator)
        spin_until(ros_node, lambda: False, 5.0)                # and it stays so
    finally:
        ros_node.destroy_timer(timer)
    assert not positions and int(locator["poor_geometry"]) > 0, (
        [(round(p.position.x, 2), round(p.position.y, 2), round(p.covariance[0], 3), round(p.covariance[4], 3), p.bearings_used)
         for p in positions], str(locator))
    log = processes.log_of(runner)
    assert "tf2_ros is not installed: static transforms not published (base_link -> espargos_front" in log


def test_runner_refuses_bad_configuration_without_traceback(tmp_path):
    bad = tmp_path / "robot.yaml"
    bad.write_text("robot: {arrays: [{name: a}, {name: a}]}\n")
    done = subprocess.run([str(executable("espargos_run")), "robot", "--robot-config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "array name 'a' is used twice" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([str(executable("espargos_run")), "combined", "--array-config", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "cannot read combined-array file" in done.stderr


LAUNCH_RUNNER = """
import sys
from ros2launch.api import launch_a_launch_file
sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:], noninteractive=True))
"""
"""What ``ros2 launch <package> <file> <name:=value>...`` runs once it has found the file: ros2launch's own
argument parsing and LaunchService (ros2cli's command-line layer adds nothing to either)."""


@pytest.mark.parametrize("launch_file, topic", [("board.launch.py", "/espargos/bearings"),
                                                ("combined_array.launch.py", "/espargos/bearings"),
                                                ("robot.launch.py", "/robot/front/bearings"),
                                                ("localize.launch.py", "/room/positions"),
                                                ("swarm.launch.py", "/swarm/radial_velocity")])
def test_launch_file_with_launch_service(ros_node, processes, tmp_path, launch_file, topic):
    """What `ros2 launch espargos_driver <file>` does: a LaunchService (in its own process, as it
    must own the main thread) runs the installed launch file; bearings appear on the topic."""
    for module in ("launch", "launch_ros", "ros2launch"):
        pytest.importorskip(module, reason=f"{module} is not installable from PyPI here (it is part of ros-<distro>-ros-base)")
    args = {"board.launch.py": ["simulate:=true", "publish_tf:=false"],
            "combined_array.launch.py": ["simulate:=true", "publish_tf:=false"],
            "robot.launch.py": ["publish_tf:=false"], "localize.launch.py": ["publish_tf:=false"],
            "swarm.launch.py": ["simulate:=true"]}[launch_file]
    got = []
    kind = {"swarm.launch.py": RadialVelocity, "localize.launch.py": TransmitterPositionArray}.get(launch_file, BearingArray)
    ros_node.create_subscription(kind, topic, got.append, 10)
    log = tmp_path / "launch.log"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH_RUNNER, str(SHARE / "launch" / launch_file), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    processes.procs.append((proc, log))
    assert spin_until(ros_node, lambda: len(got) >= 3, 60), f"no bearings on {topic}: {log.read_text()[-3000:]}"


def test_missing_optional_packages_are_named_before_anything_starts():
    graph = array_graph(namespace="e", params_file=BOARD_YAML, frame_id="f", parent_frame="base_link", pose=None,
                        share_dir=SHARE, simulate=True, rviz=True)
    assert missing_packages(graph, lambda package: True) == []
    missing = missing_packages(graph, lambda package: package not in ("rviz2", "tf2_ros"))
    assert [m.split(" (")[0] for m in missing] == ["package tf2_ros is not installed", "package rviz2 is not installed"]
    assert "publish_tf:=false" in missing[0] and "rviz" in missing[1]
    without = array_graph(namespace="e", params_file=BOARD_YAML, frame_id="f", parent_frame="", pose=None,
                          share_dir=SHARE, simulate=True, publish_tf=False)
    assert missing_packages(without, lambda package: package not in ("rviz2", "tf2_ros")) == []


def test_launch_with_rviz_but_no_rviz2_starts_nothing(tmp_path):
    """ros-base has no rviz2: rviz:=true must fail before the simulator or a node holds a port."""
    for module in ("launch", "launch_ros", "ros2launch"):
        pytest.importorskip(module, reason=f"{module} is not installable from PyPI here (it is part of ros-<distro>-ros-base)")
    from espargos_driver.launch_actions import installed
    if installed("rviz2"):
        pytest.skip("rviz2 is installed here")
    http_port, stream_port = free_port(), free_port(socket.SOCK_DGRAM)
    done = subprocess.run([sys.executable, "-c", LAUNCH_RUNNER, str(SHARE / "launch" / "board.launch.py"),
                           "simulate:=true", "rviz:=true", f"sim_http_port:={http_port}",
                           f"sim_stream_port:={stream_port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "package rviz2 is not installed" in done.stdout + done.stderr
    assert "process started" not in done.stdout + done.stderr
    with socket.socket() as s:                           # the simulator never bound its port
        s.bind(("127.0.0.1", http_port))


def test_readme_lists_every_launch_argument():
    from espargos_driver.graph import update_readme
    text = (ROOT / "README.md").read_text()
    assert update_readme(text) == text, "README launch arguments differ: run python -m espargos_driver.graph README.md"


@pytest.mark.parametrize("graph, launch_file", [("board", "board.launch.py"), ("combined", "combined_array.launch.py"),
                                                ("swarm", "swarm.launch.py"), ("robot", "robot.launch.py"),
                                                ("localize", "localize.launch.py")])
def test_runner_has_the_launch_files_defaults(graph, launch_file):
    """espargos_run <graph> and ros2 launch espargos_driver <launch_file> build the same graph by default."""
    from espargos_driver.graph import launch_arguments
    from espargos_driver.nodes.run import build_graph, parse_args

    defaults = {name: default for name, (default, _) in launch_arguments(launch_file, SHARE).items()}
    args = parse_args([graph])
    if "namespace" in defaults and graph != "swarm":
        assert (args.namespace, args.frame_id, args.parent_frame) == \
            (defaults["namespace"], defaults["frame_id"], defaults["parent_frame"])
    if "sim_http_port" in defaults and graph == "board":
        assert (str(args.sim_http_port), str(args.sim_stream_port)) == (defaults["sim_http_port"],
                                                                        defaults["sim_stream_port"])
    assert str(not args.no_autostart).lower() == defaults["autostart"]
    if "publish_tf" in defaults:
        assert str(not args.no_tf).lower() == defaults["publish_tf"]
    if graph in ("board", "combined"):
        args.simulate = True                                           # the launch files' graph with simulate:=true
        runner = build_graph(args, SHARE)
        launched = array_graph(namespace=defaults["namespace"], params_file=defaults["config"],
                               frame_id=defaults["frame_id"], parent_frame=defaults["parent_frame"], pose=None,
                               share_dir=SHARE, simulate=True,
                               array_config=defaults.get("array_config", ""))
        assert [(n.executable, n.namespace, n.parameters, [str(p) for p in n.params_files]) for n in runner.nodes] == \
            [(n.executable, n.namespace, n.parameters, n.params_files) for n in launched.nodes]
        assert runner.transforms == launched.transforms


def test_launch_stops_when_its_simulator_cannot_bind(processes):
    """Like espargos_run: a simulator that cannot bind its ports ends the launch, instead of leaving
    board_node and aoa_node talking to whatever holds them."""
    for module in ("launch", "launch_ros", "ros2launch"):
        pytest.importorskip(module, reason=f"{module} is not installable from PyPI here (it is part of ros-<distro>-ros-base)")
    http_port, stream_port = free_port(), free_port(socket.SOCK_DGRAM)
    taken = processes.start("board_simulator", "--http-port", str(http_port), "--stream-port", str(stream_port))
    time.sleep(2.0)
    assert taken.poll() is None
    done = subprocess.run([sys.executable, "-c", LAUNCH_RUNNER, str(SHARE / "launch" / "board.launch.py"),
                           "simulate:=true", "publish_tf:=false", "namespace:=clash_launch",
                           f"sim_http_port:={http_port}", f"sim_stream_port:={stream_port}"],
                          capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert "cannot serve" in out and "exited with status 1" in out and "stopping the launch" in out, out[-3000:]
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"__ns:=/clash_launch" in p.read_bytes()]
    assert not left, "nodes of the launch are still running"
    bad = subprocess.run([sys.executable, "-c", LAUNCH_RUNNER, str(SHARE / "launch" / "board.launch.py"),
                          "simulate:=true", "sim_http_port:=abc"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "sim_http_port:=abc: expected a port number" in bad.stdout + bad.stderr
