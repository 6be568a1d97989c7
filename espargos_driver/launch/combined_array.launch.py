"""Several ESPARGOS boards as one phase-coherent array (pyespargos combined-array YAML in config/).

ros2 launch espargos_driver combined_array.launch.py simulate:=true      # built-in simulated rig
ros2 launch espargos_driver combined_array.launch.py array_config:=/path/aperture-kit-8x4.yml
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from espargos_driver.launch_actions import array_launch_description

SHARE = Path(get_package_share_directory("espargos_driver"))


def generate_launch_description():
    return array_launch_description("combined_array.launch.py", SHARE, host=lambda v: "",
                                    array_config=lambda v: v["array_config"])
