"""Several ESPARGOS boards as one phase-coherent array (pyespargos combined-array YAML in config/).

    ros2 launch espargos_driver combined_array.launch.py simulate:=true      # built-in simulated rig
    ros2 launch espargos_driver combined_array.launch.py array_config:=/path/aperture-kit-8x4.yml
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
    "array_config": (str(SHARE / "config" / "combined_array.yaml"), "combined-array YAML: boards, layout, cables"),
    "simulate": ("false", "simulate every board of the combined array (built-in simulator)"),
    "namespace": ("espargos", "namespace of the array's nodes and topics"),
    "config": (str(SHARE / "config" / "board.yaml"), "parameters file of board_node and aoa_node"),
    "frame_id": ("espargos_array", "TF frame of the combined array"),
    "parent_frame": ("base_link", "frame the array is mounted on (empty: no static transform)"),
    "x": ("0.0", "m"), "y": ("0.0", "m"), "z": ("0.0", "m"),
    "roll": ("0.0", "rad"), "pitch": ("0.0", "rad"), "yaw": ("0.0", "rad"),
    "rviz": ("false", "start rviz2 with the shipped view"),
    "scenario": ("", "simulator scenario YAML (default config/sim_scenario.yaml)"),
}


def _graph(context):
    v = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    graph = array_graph(namespace=v["namespace"], params=read_yaml(v["config"], "parameters file"),
                        frame_id=v["frame_id"], parent_frame=v["parent_frame"],
                        pose={"xyz": [v["x"], v["y"], v["z"]], "rpy": [v["roll"], v["pitch"], v["yaw"]]},
                        host="sim" if v["simulate"].lower() == "true" else "", array_config=v["array_config"],
                        share_dir=SHARE, scenario=v["scenario"], rviz=v["rviz"].lower() == "true")
    return graph_actions(graph)


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in ARGUMENTS.items()] + [OpaqueFunction(function=_graph)])
