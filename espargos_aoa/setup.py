from setuptools import find_packages, setup

package_name = "espargos_aoa"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},          # colcon test runs the package's tests with pytest
    zip_safe=True,
    maintainer="espargos-ros maintainers",
    maintainer_email="maintainers@espargos-ros.org",
    description="Angle of arrival from calibrated ESPARGOS CSI: MUSIC spectra, bearings, rviz views",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "aoa_node = espargos_aoa.nodes.aoa_node:main",
            "velocity_node = espargos_aoa.nodes.velocity_node:main",
            "locator_node = espargos_aoa.nodes.locator_node:main",
            "vital_signs_node = espargos_aoa.nodes.vital_signs_node:main",
        ],
    },
)
