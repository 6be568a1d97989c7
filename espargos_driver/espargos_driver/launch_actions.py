"""Graph -> launch_ros actions, for the thin launch files in launch/ (needs launch_ros)."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from launch_ros.actions import Node

from .graph import SIM_HTTP_PORT, SIM_STREAM_PORT, Graph, array_graph, read_yaml


def graph_actions(graph: Graph) -> list:
    """One launch_ros Node per graph node (the simulator too: it ignores ROS arguments), one
    tf2_ros static_transform_publisher per transform, one rviz2 per rviz configuration."""
    actions = []
    for spec in graph.nodes:
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            namespace=spec.namespace or None, parameters=[spec.parameters] if spec.ros else None,
                            arguments=spec.arguments or None, remappings=spec.remappings or None, output="screen"))
    for t in graph.transforms:
        actions.append(Node(package="tf2_ros", executable="static_transform_publisher",
                            name=f"static_tf_{t.child}", arguments=t.arguments(), output="log"))
    for text in graph.rviz_configs:
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="espargos_", delete=False) as f:
            f.write(text)
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", f.name], output="log"))
    return actions


def array_launch_description(share: Path, arguments: dict[str, tuple[str, str]],
                             host: Callable[[dict], str], array_config: Callable[[dict], str]):
    """The launch description of one array (board or combined): ``arguments`` (name -> (default,
    description)) specific to the file, then the common ones (with ``simulate``); ``host`` /
    ``array_config`` map the resolved argument values to :func:`array_graph`'s."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    every = {**arguments, **common_arguments(share)}

    def make(context):
        v = {name: LaunchConfiguration(name).perform(context) for name in every}
        graph = array_graph(namespace=v["namespace"], params=read_yaml(v["config"], "parameters file"),
                            frame_id=v["frame_id"], parent_frame=v["parent_frame"],
                            pose={"xyz": [v["x"], v["y"], v["z"]], "rpy": [v["roll"], v["pitch"], v["yaw"]]},
                            host=host(v), array_config=array_config(v), share_dir=share, scenario=v["scenario"],
                            simulate=v["simulate"].lower() == "true",
                            sim_ports=(int(v["sim_http_port"]), int(v["sim_stream_port"])),
                            rviz=v["rviz"].lower() == "true")
        return graph_actions(graph)

    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in every.items()] + [OpaqueFunction(function=make)])


def common_arguments(share: Path) -> dict[str, tuple[str, str]]:
    return {
        "namespace": ("espargos", "namespace of the array's nodes and topics"),
        "config": (str(share / "config" / "board.yaml"), "parameters file of board_node and aoa_node"),
        "frame_id": ("espargos_array", "TF frame of the array (x boresight, y left, z up)"),
        "parent_frame": ("base_link", "frame the array is mounted on (empty: no static transform)"),
        "x": ("0.0", "m"), "y": ("0.0", "m"), "z": ("0.0", "m"),
        "roll": ("0.0", "rad"), "pitch": ("0.0", "rad"), "yaw": ("0.0", "rad"),
        "rviz": ("false", "start rviz2 with the shipped view of bearings and spectrum"),
        "simulate": ("false", "start the built-in simulator and use it instead of a board"),
        "sim_http_port": (str(SIM_HTTP_PORT), "simulator HTTP port (one board)"),
        "sim_stream_port": (str(SIM_STREAM_PORT), "simulator UDP stream port (one board)"),
        "scenario": ("", "simulator scenario YAML (default config/sim_scenario.yaml)"),
    }
