"""Replay a rosbag2 bag (mcap or sqlite3, e.g. from bag_record or `ros2 bag record`) with rclpy.

    bag_play my_bag [--rate 1.0 | --rate 0] [--topics /espargos/csi ...] [--wait-subscribers] [--delay 1]

Publishes each message's recorded bytes unchanged, with the recorded QoS (array_geometry stays
latched), at the original pace times ``--rate`` (0: as fast as possible). Topics whose type is
not installed, or was recorded with another definition of the message, are skipped with a
reason; nothing is ever re-encoded.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosbags.highlevel.anyreader import AnyReaderError
from rosbags.interfaces import QosDurability, QosReliability

from ..bags import espargos_typestore, replay_problem
from .bag_record import message_class

SUBSCRIBER_WAIT_S = 15.0


def rclpy_qos(connection) -> QoSProfile:
    """The recorded (offered) QoS of a topic, as a publisher profile."""
    offered = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
    reliable = not offered or all(q.reliability != QosReliability.BEST_EFFORT for q in offered)
    latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Replay a rosbag2 bag's messages unchanged.")
    p.add_argument("bag", help="bag directory")
    p.add_argument("--topics", nargs="*", default=[], help="only these topics")
    p.add_argument("--rate", type=float, default=1.0, help="pace relative to the recording (0: as fast as possible)")
    p.add_argument("--delay", type=float, default=0.0, help="s to wait before playing (lets subscribers match)")
    p.add_argument("--wait-subscribers", action="store_true",
                   help=f"wait (up to {SUBSCRIBER_WAIT_S:.0f} s) until every topic has a subscriber before playing")
    args, ros_args = p.parse_known_args(argv)
    if args.rate < 0:
        print("bag_play: --rate must be >= 0", file=sys.stderr)
        return 2
    store = espargos_typestore()
    try:
        reader = AnyReader([Path(args.bag)], default_typestore=store)
        reader.open()
    except (AnyReaderError, OSError) as err:
        print(f"bag_play: cannot read bag {args.bag}: {err}", file=sys.stderr)
        return 1
    rclpy.init(args=ros_args)
    node = rclpy.create_node("bag_play")
    publishers, played = {}, {}
    for conn in reader.connections:
        if args.topics and conn.topic not in args.topics:
            continue
        cls = message_class(conn.msgtype) if conn.msgtype.count("/") == 2 else None
        problem = replay_problem(conn, store, cls is not None)
        if problem:
            print(f"bag_play: {problem}", file=sys.stderr)
            continue
        publishers[conn.id] = node.create_publisher(cls, conn.topic, rclpy_qos(conn))
        played[conn.id] = 0
    if not publishers:
        print(f"bag_play: nothing to play in {args.bag}", file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        reader.close()
        return 1
    try:
        if args.wait_subscribers:
            deadline = time.monotonic() + SUBSCRIBER_WAIT_S
            while time.monotonic() < deadline and any(pub.get_subscription_count() == 0 for pub in publishers.values()):
                time.sleep(0.05)
        time.sleep(max(args.delay, 0.0))
        conns = [c for c in reader.connections if c.id in publishers]
        start_wall, start_bag = time.monotonic(), None
        for conn, timestamp, raw in reader.messages(connections=conns):
            if args.rate > 0:
                start_bag = timestamp if start_bag is None else start_bag
                delay = start_wall + (timestamp - start_bag) * 1e-9 / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            publishers[conn.id].publish(bytes(raw))
            played[conn.id] += 1
        time.sleep(0.5)                   # let the last messages leave before the publishers go
    except KeyboardInterrupt:
        pass
    finally:
        topics = {c.id: c.topic for c in reader.connections}
        print("bag_play: played " + ", ".join(f"{topics[i]}: {n}" for i, n in played.items()), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
