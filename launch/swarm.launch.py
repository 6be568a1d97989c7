"""Swarm nodes: swarm_node (UDP, serial or file) + velocity_node, optionally the built-in swarm simulator.

    ros2 launch espargos_driver swarm.launch.py simulate:=true
    ros2 launch espargos_driver swarm.launch.py config:=/path/my_swarm.yaml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from espargos_driver.graph import node_parameters, read_yaml, swarm_graph
from espargos_driver.launch_actions import graph_actions

SHARE = Path(get_package_share_directory("espargos_driver"))
ARGUMENTS = {
    "namespace": ("swarm", "namespace of swarm_node and velocity_node"),
    "config": (str(SHARE / "config" / "swarm.yaml"), "parameters file of swarm_node and velocity_node"),
    "simulate": ("false", "start the built-in swarm simulator (UDP on loopback)"),
    "scenario": ("", "swarm simulator scenario YAML (default config/swarm_scenario.yaml)"),
}


def _graph(context):
    v = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params = read_yaml(v["config"], "parameters file")
    return graph_actions(swarm_graph(namespace=v["namespace"], swarm_params=node_parameters(params, "swarm_node"),
                                     velocity_params=node_parameters(params, "velocity_node"), share_dir=SHARE,
                                     simulate=v["simulate"].lower() == "true", scenario=v["scenario"]))


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in ARGUMENTS.items()] + [OpaqueFunction(function=_graph)])
