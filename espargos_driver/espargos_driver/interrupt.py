"""Plain (non-ROS) programs stop on SIGINT however they were started."""
from __future__ import annotations

import signal


def stop_on_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt even where this process inherited it ignored. A shell
    script starts its background jobs (``cmd &``) with SIGINT ignored, and Python keeps an inherited
    SIG_IGN: a simulator started that way ran on after ``kill -INT`` (how the tests, the benchmarks
    and ``ros2 launch`` stop it) until it was killed. The ROS nodes need no such call: rclpy installs
    its own handler."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
