"""Swarm nodes: swarm_node (UDP, serial or file) + velocity_node, optionally the built-in swarm simulator.

    ros2 launch espargos_driver swarm.launch.py simulate:=true
    ros2 launch espargos_driver swarm.launch.py config:=/path/my_swarm.yaml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.graph import swarm_graph
from espargos_driver.launch_actions import AUTOSTART, flag, launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))
ARGUMENTS = {
    "namespace": ("swarm", "namespace of swarm_node and velocity_node"),
    "config": (str(SHARE / "config" / "swarm.yaml"), "parameters file of swarm_node and velocity_node"),
    "simulate": ("false", "start the built-in swarm simulator (UDP on loopback)"),
    "scenario": ("", "swarm simulator scenario YAML (default config/swarm_scenario.yaml)"),
    "autostart": AUTOSTART,
}


def generate_launch_description():
    return launch_description(ARGUMENTS, lambda v: swarm_graph(
        namespace=v["namespace"], params_file=v["config"], share_dir=SHARE, simulate=flag(v["simulate"], "simulate"),
        scenario=v["scenario"], autostart=flag(v["autostart"], "autostart")))
