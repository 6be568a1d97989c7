"""Graph -> launch_ros actions, for the thin launch files in launch/ (needs launch and launch_ros)."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from .graph import Graph, GraphError, array_graph, launch_arguments, missing_packages


def installed(package: str) -> bool:
    """Whether the sourced ROS environment has ``package``."""
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


def graph_actions(graph: Graph) -> list:
    """One launch_ros Node per graph node (the simulator too: it ignores ROS arguments), one
    tf2_ros static_transform_publisher per transform, one rviz2 per rviz configuration.

    Parameters files go to the nodes as files (``Node(parameters=[file, ..., overrides])``, the
    ``ros2 run --params-file`` semantics). Nothing starts if a package the graph needs is missing:
    the GraphError names each one.
    """
    missing = missing_packages(graph, installed)
    if missing:
        raise GraphError("cannot start: " + "; ".join(missing))
    actions = []
    for spec in graph.nodes:
        parameters = [*spec.params_files, spec.parameters] if spec.ros else None
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            namespace=spec.namespace or None, parameters=parameters,
                            arguments=spec.arguments or None, remappings=spec.remappings or None, output="screen"))
    for t in graph.transforms:
        actions.append(Node(package="tf2_ros", executable="static_transform_publisher",
                            name=f"static_tf_{t.child}", arguments=t.arguments(), output="log"))
    for text in graph.rviz_configs:
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="espargos_", delete=False) as f:
            f.write(text)
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", f.name], output="log"))
    return actions


def launch_description(arguments: dict[str, tuple[str, str]], make: Callable[[dict], Graph]) -> LaunchDescription:
    """Declared ``arguments`` (name -> (default, description)) and one OpaqueFunction that turns
    their resolved values into the graph ``make`` builds, checked before anything starts."""
    def actions(context):
        return graph_actions(make({name: LaunchConfiguration(name).perform(context) for name in arguments}))

    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in arguments.items()] + [OpaqueFunction(function=actions)])


def flag(value: str, name: str) -> bool:
    """A true/false launch argument; GraphError for anything else."""
    if value.lower() not in ("true", "false"):
        raise GraphError(f"{name}:={value}: expected true or false")
    return value.lower() == "true"


def array_launch_description(launch_file: str, share: Path, host: Callable[[dict], str],
                             array_config: Callable[[dict], str]) -> LaunchDescription:
    """The launch description of one array (board or combined) with ``launch_file``'s arguments;
    ``host`` / ``array_config`` map the resolved argument values to :func:`array_graph`'s."""
    def make(v: dict) -> Graph:
        return array_graph(namespace=v["namespace"], params_file=v["config"], frame_id=v["frame_id"],
                           parent_frame=v["parent_frame"],
                           pose={"xyz": [v["x"], v["y"], v["z"]], "rpy": [v["roll"], v["pitch"], v["yaw"]]},
                           host=host(v), array_config=array_config(v), share_dir=share, scenario=v["scenario"],
                           simulate=flag(v["simulate"], "simulate"), publish_tf=flag(v["publish_tf"], "publish_tf"),
                           autostart=flag(v["autostart"], "autostart"),
                           sim_ports=(int(v["sim_http_port"]), int(v["sim_stream_port"])), rviz=flag(v["rviz"], "rviz"))

    return launch_description(launch_arguments(launch_file, share), make)
