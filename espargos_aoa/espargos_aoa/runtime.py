"""Shared life cycle of the console entry points' nodes."""
from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.node import Node


def unknown_parameters(node: Node) -> list[str]:
    """Parameters given to ``node`` (parameters file, command line, launch) that it does not declare:
    a typo or a key of another node, which rclpy would ignore without a word."""
    return sorted(set(node._parameter_overrides) - set(node._parameters))


def warn_unknown_parameters(node: Node) -> None:
    unknown = unknown_parameters(node)
    if unknown:
        node.get_logger().warning(f"ignoring parameters this node does not have: {', '.join(unknown)} "
                                  f"(a typo, or a section meant for another node?)")


SPIN_SLICE_S = 0.2
"""The events executor is spun in slices of this length: in the Jazzy wheels its spin() without a
timeout can hang (spec/ros-toolchain.md)."""


def events_executor():
    """rclpy's EventsExecutor: about 4x the default executor's subscription rate (spec/ros-toolchain.md)."""
    return EventsExecutor()


def spin_node(node: Node, executor: Executor | None = None) -> int:
    """Spin until Ctrl-C, shutdown or SystemExit, then destroy the node and shut rclpy down; returns 0."""
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if type(executor).__name__ == "EventsExecutor":     # rclpy.experimental's is a factory, not a class
            while node.context.ok():
                executor.spin_once(timeout_sec=SPIN_SLICE_S)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run_node(factory: Callable[[], Node], program: str, args: list[str] | None = None,
             executor_factory: Callable[[], Executor] | None = None) -> int:
    """Console entry point body: init rclpy, build the node (and executor, after init) and spin.
    A ValueError from the factory (an invalid parameter) or rclpy's ParameterException (a value
    of the wrong type or outside its declared range) is printed as
    ``<program>: invalid parameter: ...`` and gives exit status 2, without a traceback."""
    rclpy.init(args=args)
    try:
        node = factory()
    except (ValueError, ParameterException) as err:
        print(f"{program}: invalid parameter: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    warn_unknown_parameters(node)
    return spin_node(node, executor_factory() if executor_factory else None)
