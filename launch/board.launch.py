"""One ESPARGOS board: driver + aoa_node under a namespace, the array's static transform, optional rviz2.

    ros2 launch espargos_driver board.launch.py                      # built-in board simulator
    ros2 launch espargos_driver board.launch.py host:=192.168.1.2 parent_frame:=base_link x:=0.2 rviz:=true
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from espargos_driver.graph import array_graph, read_yaml
from espargos_driver.launch_actions import graph_actions

SHARE = Path(get_package_share_directory("espargos_driver"))
ARGUMENTS = {
    "host": ("", "board address; empty: start the built-in board simulator"),
    "namespace": ("espargos", "namespace of the array's nodes and topics"),
    "config": (str(SHARE / "config" / "board.yaml"), "parameters file of board_node and aoa_node"),
    "frame_id": ("espargos_array", "TF frame of the array (x boresight, y left, z up)"),
    "parent_frame": ("base_link", "frame the array is mounted on (empty: no static transform)"),
    "x": ("0.0", "m"), "y": ("0.0", "m"), "z": ("0.0", "m"),
    "roll": ("0.0", "rad"), "pitch": ("0.0", "rad"), "yaw": ("0.0", "rad"),
    "rviz": ("false", "start rviz2 with the shipped view of bearings and spectrum"),
    "scenario": ("", "simulator scenario YAML (default config/sim_scenario.yaml)"),
}


def _graph(context):
    v = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    graph = array_graph(namespace=v["namespace"], params=read_yaml(v["config"], "parameters file"),
                        frame_id=v["frame_id"], parent_frame=v["parent_frame"],
                        pose={"xyz": [v["x"], v["y"], v["z"]], "rpy": [v["roll"], v["pitch"], v["yaw"]]},
                        host=v["host"], share_dir=SHARE, scenario=v["scenario"], rviz=v["rviz"].lower() == "true")
    return graph_actions(graph)


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in ARGUMENTS.items()] + [OpaqueFunction(function=_graph)])
