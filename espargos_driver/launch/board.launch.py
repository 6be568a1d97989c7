"""One ESPARGOS board: driver + aoa_node under a namespace, the array's static transform, optional rviz2.

ros2 launch espargos_driver board.launch.py simulate:=true       # built-in board simulator
ros2 launch espargos_driver board.launch.py host:=192.168.1.2 parent_frame:=base_link x:=0.2 rviz:=true
ros2 launch espargos_driver board.launch.py config:=my_board.yaml publish_tf:=false
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.launch_actions import array_launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))


def generate_launch_description():
    return array_launch_description("board.launch.py", SHARE, host=lambda v: v["host"], array_config=lambda v: "")
