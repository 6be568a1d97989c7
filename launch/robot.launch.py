"""A robot (or drone) rig: several arrays under one namespace with their static transforms, from one YAML.

    ros2 launch espargos_driver robot.launch.py                          # config/robot.yaml
    ros2 launch espargos_driver robot.launch.py robot_config:=/path/my_drone.yaml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from espargos_driver.graph import read_yaml, robot_graph
from espargos_driver.launch_actions import graph_actions

SHARE = Path(get_package_share_directory("espargos_driver"))


def _graph(context):
    path = LaunchConfiguration("robot_config").perform(context)
    return graph_actions(robot_graph(read_yaml(path, "robot YAML"), SHARE))


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("robot_config", default_value=str(SHARE / "config" / "robot.yaml"),
                              description="robot YAML: namespace, base frame, arrays with hosts and poses"),
        OpaqueFunction(function=_graph)])
