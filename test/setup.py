"""The system tests as a colcon package (``colcon test`` runs them; nothing to install)."""
from setuptools import setup

package_name = "espargos_system_tests"

setup(
    name=package_name,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},          # colcon test runs the tests with pytest
    zip_safe=True,
    maintainer="espargos-ros maintainers",
    maintainer_email="maintainers@espargos-ros.org",
    description="System tests of espargos-ros that span packages",
    license="Apache-2.0",
)
