"""A robot (or drone) rig: several arrays under one namespace with their static transforms, from one YAML.

ros2 launch espargos_driver robot.launch.py                          # config/robot.yaml
ros2 launch espargos_driver robot.launch.py robot_config:=drone.yaml          # a name in config/, or a path
ros2 launch espargos_driver robot.launch.py robot_config:=/path/my_drone.yaml publish_tf:=false
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.graph import in_config, launch_arguments, read_yaml, robot_graph
from espargos_driver.launch_actions import flag, launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))


def generate_launch_description():
    return launch_description(launch_arguments("robot.launch.py", SHARE), lambda v: robot_graph(
        read_yaml(in_config(v["robot_config"], SHARE), "robot YAML"), SHARE, publish_tf=flag(v["publish_tf"], "publish_tf"),
        autostart=flag(v["autostart"], "autostart")))
