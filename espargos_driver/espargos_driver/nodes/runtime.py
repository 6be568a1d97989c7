"""Shared life cycle of the console entry points' nodes."""
from __future__ import annotations

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_node(node: Node, executor: Executor | None = None) -> int:
    """Spin until Ctrl-C, shutdown or SystemExit, then destroy the node and shut rclpy down; returns 0."""
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
