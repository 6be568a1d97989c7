from glob import glob

from setuptools import find_packages, setup

package_name = "espargos_driver"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*")),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},          # colcon test runs the package's tests with pytest
    zip_safe=True,
    maintainer="espargos-ros maintainers",
    maintainer_email="maintainers@espargos-ros.org",
    description="ROS 2 driver for ESPARGOS WiFi CSI arrays",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "aoa_render = espargos_driver.nodes.aoa_render:main",
            "board_node = espargos_driver.nodes.board_node:main",
            "board_simulator = espargos_driver.nodes.board_simulator:main",
            "csi_monitor = espargos_driver.nodes.csi_monitor:main",
            "espargos_run = espargos_driver.nodes.run:main",
            "bag_record = espargos_driver.nodes.bag_record:main",
            "bag_play = espargos_driver.nodes.bag_play:main",
            "swarm_node = espargos_driver.nodes.swarm_node:main",
            "swarm_simulator = espargos_driver.nodes.swarm_simulator:main",
            "scene_pose = espargos_driver.nodes.scene_pose:main",
        ],
    },
)
