"""Arrays placed anywhere (here: four boards at the walls of a room) and locator_node fusing their
bearings into transmitter positions in the fixed frame, from one rig YAML (the format of robot.yaml
with a locator: section).

ros2 launch espargos_driver localize.launch.py                       # config/room.yaml, simulated
ros2 launch espargos_driver localize.launch.py rig_config:=/path/my_building.yaml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.graph import launch_arguments, read_yaml, robot_graph
from espargos_driver.launch_actions import flag, launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))


def generate_launch_description():
    return launch_description(launch_arguments("localize.launch.py", SHARE), lambda v: robot_graph(
        read_yaml(v["rig_config"], "rig YAML"), SHARE, publish_tf=flag(v["publish_tf"], "publish_tf"),
        autostart=flag(v["autostart"], "autostart")))
