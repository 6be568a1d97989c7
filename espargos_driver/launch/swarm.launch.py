"""Swarm nodes: swarm_node (UDP, serial or file) + velocity_node + vital_signs_node, optionally the built-in swarm simulator.

ros2 launch espargos_driver swarm.launch.py simulate:=true
ros2 launch espargos_driver swarm.launch.py config:=/path/my_swarm.yaml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.graph import launch_arguments, swarm_graph
from espargos_driver.launch_actions import flag, launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))


def generate_launch_description():
    return launch_description(launch_arguments("swarm.launch.py", SHARE), lambda v: swarm_graph(
        namespace=v["namespace"], params_file=v["config"], share_dir=SHARE, simulate=flag(v["simulate"], "simulate"),
        scenario=v["scenario"], autostart=flag(v["autostart"], "autostart")))
