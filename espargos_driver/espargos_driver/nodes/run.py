"""Single-process runner: the graph a launch file builds, from the same YAML, in one rclpy executor.

    espargos_run board [--host H | --simulate] [--namespace espargos] [--config board.yaml] [--monitor] [--vitals]
    espargos_run combined [--array-config combined_array.yaml] [--simulate] [--vitals]
    espargos_run robot [--robot-config robot.yaml]
    espargos_run localize [--robot-config room.yaml]
    espargos_run swarm [--config swarm.yaml] [--simulate]

For small companion computers (one Python process instead of one per node) and wherever
``ros2 launch`` is not installed. Built-in simulators run as child processes (they stand for the
boards), and every node has its own executor thread.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import rclpy
from ament_index_python.packages import get_package_share_directory
from espargos_aoa.runtime import warn_unknown_parameters
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter

from ..graph import (ARRAY_ARGUMENTS, SIM_HTTP_PORT, SIM_STREAM_PORT, Graph, GraphError, NodeSpec, array_graph,
                     in_config, read_yaml, robot_graph, swarm_graph)

NODE_CLASSES = {
    ("espargos_driver", "board_node"): "espargos_driver.nodes.board_node:BoardNode",
    ("espargos_driver", "csi_monitor"): "espargos_driver.nodes.csi_monitor:CsiMonitor",
    ("espargos_driver", "swarm_node"): "espargos_driver.nodes.swarm_node:SwarmNode",
    ("espargos_driver", "scene_pose"): "espargos_driver.nodes.scene_pose:ScenePoseNode",
    ("espargos_aoa", "aoa_node"): "espargos_aoa.nodes.aoa_node:AoaNode",
    ("espargos_aoa", "velocity_node"): "espargos_aoa.nodes.velocity_node:VelocityNode",
    ("espargos_aoa", "vital_signs_node"): "espargos_aoa.nodes.vital_signs_node:VitalSignsNode",
    ("espargos_aoa", "locator_node"): "espargos_aoa.nodes.locator_node:LocatorNode",
}
PROGRAMS = {("espargos_driver", "board_simulator"): "espargos_driver.nodes.board_simulator",
            ("espargos_driver", "swarm_simulator"): "espargos_driver.nodes.swarm_simulator"}
"""Plain programs (the simulators: they are the boards, not nodes) -> module run as a child process,
so that they never compete with the drivers for this process's GIL."""
log = logging.getLogger("espargos_run")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run an espargos graph (board, combined array or robot) in one process.")
    sub = p.add_subparsers(dest="graph", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namespace", default=ARRAY_ARGUMENTS["namespace"][0], help="namespace of the array's topics")
    common.add_argument("--config", default="board.yaml", help="parameters file (driver + aoa_node), path or name in config/")
    common.add_argument("--frame-id", default=ARRAY_ARGUMENTS["frame_id"][0], help="TF frame of the array")
    common.add_argument("--parent-frame", default=ARRAY_ARGUMENTS["parent_frame"][0], help="frame the array is mounted on")
    common.add_argument("--no-tf", action="store_true",
                        help="publish no static transform parent frame -> array frame (launch: publish_tf:=false)")
    common.add_argument("--no-autostart", action="store_true",
                        help="leave the managed drivers unconfigured, for lifecycle transitions (launch: autostart:=false)")
    common.add_argument("--pose", nargs=6, type=float, default=[0.0] * 6, metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                        help="array pose in the parent frame, m and rad")
    common.add_argument("--scenario", default="", help="simulator scenario YAML (default config/sim_scenario.yaml)")
    for name in ("board", "combined", "robot", "localize", "swarm"):
        sp = sub.add_parser(name, parents=[common])
        sp.add_argument("--monitor", action="store_true", help="print one status line per second per array")
        sp.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
        if name in ("board", "combined"):
            sp.add_argument("--vitals", action="store_true",
                            help="also run vital_signs_node on the array's CSI (launch: vitals:=true)")
        if name == "board":
            sp.add_argument("--host", default="", help="board address (default: host in the parameters file)")
            sp.add_argument("--simulate", action="store_true", help="start the built-in board simulator and use it")
            sp.add_argument("--sim-http-port", type=int, default=int(ARRAY_ARGUMENTS["sim_http_port"][0]),
                            help="simulator HTTP port")
            sp.add_argument("--sim-stream-port", type=int, default=int(ARRAY_ARGUMENTS["sim_stream_port"][0]),
                            help="simulator UDP stream port")
        elif name == "combined":
            sp.add_argument("--array-config", default="combined_array.yaml", help="combined-array YAML")
            sp.add_argument("--simulate", action="store_true", help="simulate the combined array's boards")
        elif name == "swarm":
            sp.add_argument("--simulate", action="store_true", help="start the swarm simulator (config/swarm_scenario.yaml)")
        else:
            sp.add_argument("--robot-config", default="room.yaml" if name == "localize" else "robot.yaml",
                            help="rig YAML: arrays and their poses (localize: with a locator)")
    return p.parse_args(argv)


def build_graph(args: argparse.Namespace, share: Path) -> Graph:
    """The graph of the launch file of the same name, from the same functions and defaults."""
    publish_tf, autostart = not args.no_tf, not args.no_autostart
    if args.graph in ("robot", "localize"):
        graph = robot_graph(read_yaml(in_config(args.robot_config, share), "robot YAML"), share,
                            publish_tf=publish_tf, autostart=autostart)
    elif args.graph == "swarm":
        graph = swarm_graph(namespace=args.namespace if args.namespace != "espargos" else "swarm",
                            params_file=in_config("swarm.yaml" if args.config == "board.yaml" else args.config, share),
                            share_dir=share, simulate=args.simulate, scenario=args.scenario, autostart=autostart)
    else:
        graph = array_graph(
            namespace=args.namespace, params_file=in_config(args.config, share),
            frame_id=args.frame_id, parent_frame=args.parent_frame, publish_tf=publish_tf, autostart=autostart,
            pose={"xyz": args.pose[:3], "rpy": args.pose[3:]}, share_dir=share,
            scenario=str(in_config(args.scenario, share)) if args.scenario else "",
            host=getattr(args, "host", ""), simulate=args.simulate, vitals=args.vitals,
            sim_ports=(getattr(args, "sim_http_port", SIM_HTTP_PORT), getattr(args, "sim_stream_port", SIM_STREAM_PORT)),
            array_config=str(in_config(args.array_config, share)) if args.graph == "combined" else "")
    if args.monitor:
        graph.nodes += [NodeSpec("espargos_driver", "csi_monitor", "csi_monitor", spec.namespace)
                        for spec in graph.nodes if spec.executable == "board_node"]
    return graph


def make_node(spec: NodeSpec):
    """The node of ``spec`` in this process, with the arguments ``ros2 run`` would give it: its
    parameters files (``--params-file``, rcl's parsing), then the graph's values, then remappings."""
    module, cls = NODE_CLASSES[(spec.package, spec.executable)].split(":")
    node_class = getattr(importlib.import_module(module), cls)
    overrides = [Parameter(name, value=value) for name, value in spec.parameters.items()]
    ros_args = [a for path in spec.params_files for a in ("--params-file", str(path))]
    ros_args += [a for old, new in spec.remappings for a in ("-r", f"{old}:={new}")]
    return node_class(namespace=spec.namespace or "/", parameter_overrides=overrides,
                      cli_args=["--ros-args", *ros_args] if ros_args else None)


def publish_transforms(graph: Graph, node) -> object | None:
    """Static transforms through tf2_ros where installed; otherwise say once what is missing."""
    if not graph.transforms:
        return None
    try:
        from geometry_msgs.msg import TransformStamped
        from tf2_ros import StaticTransformBroadcaster
    except ImportError:
        node.get_logger().warning("tf2_ros is not installed: static transforms not published ("
                                  + ", ".join(f"{t.parent} -> {t.child}" for t in graph.transforms) + ")")
        return None
    import numpy as np
    broadcaster = StaticTransformBroadcaster(node)
    msgs = []
    for t in graph.transforms:
        msg = TransformStamped()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id, msg.child_frame_id = t.parent, t.child
        msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t.xyz
        r, p, y = (v / 2 for v in t.rpy)
        q = (np.cos(r) * np.cos(p) * np.cos(y) + np.sin(r) * np.sin(p) * np.sin(y),
             np.sin(r) * np.cos(p) * np.cos(y) - np.cos(r) * np.sin(p) * np.sin(y),
             np.cos(r) * np.sin(p) * np.cos(y) + np.sin(r) * np.cos(p) * np.sin(y),
             np.cos(r) * np.cos(p) * np.sin(y) - np.sin(r) * np.sin(p) * np.cos(y))
        rot = msg.transform.rotation
        rot.w, rot.x, rot.y, rot.z = (float(v) for v in q)
        msgs.append(msg)
    broadcaster.sendTransform(msgs)
    return broadcaster


def _run_program(spec: NodeSpec, failed: list[str], stop: threading.Event,
                 children: list[subprocess.Popen]) -> None:
    """A plain program (a simulator) as a child process, watched from a thread: if it ends with an
    error (e.g. its ports are taken) the runner stops with that reason instead of running on without it."""
    child = subprocess.Popen([sys.executable, "-m", PROGRAMS[(spec.package, spec.executable)], *spec.arguments])
    children.append(child)
    status = child.wait()
    if status and not stop.is_set():
        failed.append(f"{spec.executable} exited with status {status} (see its message above)")
        stop.set()


def _stop_programs(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            child.kill()


def _spin(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, RuntimeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[espargos_run] %(message)s")
    share = Path(get_package_share_directory("espargos_driver"))
    try:
        graph = build_graph(args, share)
    except (GraphError, ValueError) as err:
        print(f"espargos_run: {err}", file=sys.stderr)
        return 2
    stop, failed, children = threading.Event(), [], []
    for spec in graph.nodes:
        if not spec.ros:
            threading.Thread(target=_run_program, args=(spec, failed, stop, children), name=spec.executable,
                             daemon=True).start()
    if graph.rviz_configs:
        log.info("rviz2 is started by the launch files only; run: rviz2 -d config/espargos.rviz")
    rclpy.init()
    nodes = []
    try:
        for spec in graph.nodes:
            if spec.ros:
                nodes.append(make_node(spec))
                warn_unknown_parameters(nodes[-1])
    except (ValueError, ParameterException) as err:
        print(f"espargos_run: invalid parameter: {err}", file=sys.stderr)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        stop.set()
        _stop_programs(children)
        return 2
    keep = publish_transforms(graph, nodes[0]) if nodes else None
    # One single-threaded executor per node, each in its own thread: rclpy's MultiThreadedExecutor
    # busy-polls while a callback group is busy (measured here: it held the GIL so long that the
    # driver's receive thread fell to half the frame rate); waiting executors release the GIL.
    executors = [SingleThreadedExecutor() for _ in nodes]
    for node, executor in zip(nodes, executors):
        executor.add_node(node)
        threading.Thread(target=_spin, args=(executor,), name=node.get_name(), daemon=True).start()
    log.info("running %s", ", ".join(f"{n.get_namespace().rstrip('/')}/{n.get_name()}" for n in nodes))
    try:
        stop.wait(args.duration if args.duration > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        for executor in executors:
            executor.shutdown(timeout_sec=1.0)
        del keep
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        stop.set()
        _stop_programs(children)
    if failed:
        print(f"espargos_run: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
