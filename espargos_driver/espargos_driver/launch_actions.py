"""Graph -> launch_ros actions, for the thin launch files in launch/ (needs launch and launch_ros)."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
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
    the GraphError names each one. A simulator that exits with an error (e.g. its ports are taken)
    shuts the whole launch down, rather than leaving the driver talking to whatever holds them.
    """
    missing = missing_packages(graph, installed)
    if missing:
        raise GraphError("cannot start: " + "; ".join(missing))
    actions = []
    for spec in graph.nodes:
        parameters = [*spec.params_files, spec.parameters] if spec.ros else None
        node = Node(package=spec.package, executable=spec.executable, name=spec.name,
                    namespace=spec.namespace or None, parameters=parameters,
                    arguments=spec.arguments or None, remappings=spec.remappings or None, output="screen")
        actions.append(node)
        if not spec.ros:
            actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_shutdown_on_failure)))
    for t in graph.transforms:
        actions.append(Node(package="tf2_ros", executable="static_transform_publisher",
                            name=f"static_tf_{t.child}", arguments=t.arguments(), output="log"))
    for text in graph.rviz_configs:
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="espargos_", delete=False) as f:
            f.write(text)
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", f.name], output="log"))
    return actions


def _shutdown_on_failure(event, context) -> list:
    """Shut the launch down when a simulator exits with an error status."""
    if event.returncode:
        reason = f"{event.action.name} exited with status {event.returncode} (see its message above): stopping the launch"
        return [LogInfo(msg=reason), Shutdown(reason=reason)]
    return []


def port(value: str, name: str) -> int:
    """A TCP/UDP port launch argument; GraphError naming the argument otherwise."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise GraphError(f"{name}:={value}: expected a port number 1..65535")
    return number


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
                           sim_ports=(port(v["sim_http_port"], "sim_http_port"),
                                      port(v["sim_stream_port"], "sim_stream_port")),
                           rviz=flag(v["rviz"], "rviz"), vitals=flag(v["vitals"], "vitals"))

    return launch_description(launch_arguments(launch_file, share), make)
