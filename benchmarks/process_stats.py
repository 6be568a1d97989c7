"""Shared by the benchmarks that run nodes as processes: an isolated ROS graph and /proc CPU time."""
from __future__ import annotations

import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def isolate_ros_graph() -> None:
    """A random ROS_DOMAIN_ID on localhost only, so a benchmark does not meet other graphs; call
    before importing rclpy."""
    os.environ["ROS_DOMAIN_ID"] = str(random.randint(201, 230))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def installed_executables(package: str) -> Path:
    """Where colcon installs a package's console scripts."""
    return ROOT / "install" / package / "lib" / package


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK
