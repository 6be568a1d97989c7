#!/usr/bin/env python3
"""A subscriber that only counts: CsiArray messages on a topic, as serialized bytes (raw=True) on
rclpy's EventsExecutor, so that it keeps up with far more than a driver publishes and never
throttles a reliable publisher. Prints ``<messages> <bytes>`` every 0.2 s (flushed) until SIGINT.

Run: python benchmarks/csi_counter.py [/csi] [--best-effort]
"""
from __future__ import annotations

import argparse
import sys
import time

import rclpy
from espargos_aoa.runtime import SPIN_SLICE_S, events_executor
from espargos_msgs.msg import CsiArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("topic", nargs="?", default="/csi")
    ap.add_argument("--best-effort", action="store_true", help="sensor-data QoS instead of reliable (depth 1000)")
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("csi_counter")
    counts = [0, 0]

    def on_message(data: bytes) -> None:
        counts[0] += 1
        counts[1] += len(data)

    qos = qos_profile_sensor_data if args.best_effort else QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(CsiArray, args.topic, on_message, qos, raw=True)
    executor = events_executor()
    executor.add_node(node)
    last = 0.0
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
            if time.monotonic() - last >= 0.2:
                last = time.monotonic()
                print(counts[0], counts[1], flush=True)
    except KeyboardInterrupt:
        pass
    print(counts[0], counts[1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
