"""Record topics of the suite into a rosbag2 bag (mcap or sqlite3) with the `rosbags` library.

    bag_record -o my_bag [--storage mcap|sqlite3] [--duration 10] [/espargos/csi /espargos/array_geometry ...]

Subscribes raw (serialized CDR, no decoding) and writes each message with its receive time,
the message definitions (so any rosbag2 reader can decode espargos_msgs), the publishers' own
QoS profiles (so `ros2 bag play` re-latches array_geometry), the type hashes (also in the MCAP
channels, as rosbag2 Jazzy writes them) and ``ros_distro``. Without topics: every topic whose type is
known, as it appears.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import rclpy
from espargos_aoa.runtime import spin_node
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from ..bags import STORAGES, BagWriter, espargos_typestore

DISCOVERY_PERIOD_S = 0.5


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the installed Python class, or None."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def _qos_time(duration) -> QosTime:
    sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
    return QosTime(sec=sec, nsec=nsec)


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's QoS profile as rosbag2 records it (offered_qos_profiles)."""
    return Qos(history=QosHistory(int(profile.history)), depth=profile.depth,
               reliability=QosReliability(int(profile.reliability)), durability=QosDurability(int(profile.durability)),
               deadline=_qos_time(profile.deadline), lifespan=_qos_time(profile.lifespan),
               liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions)


class BagRecorder(Node):
    def __init__(self, output: Path, storage: str, topics: list[str]) -> None:
        super().__init__("bag_record")
        self.store = espargos_typestore()
        self.writer = BagWriter(output, version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self.wanted = set(topics)
        self.connections = {}
        self.subscriptions_by_topic = {}
        self.counts: dict[str, int] = {}
        self.create_timer(DISCOVERY_PERIOD_S, self._discover)
        self._discover()

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.connections or (self.wanted and topic not in self.wanted) or len(types) != 1:
                continue
            msgtype = types[0]
            cls = message_class(msgtype)
            publishers = self.get_publishers_info_by_topic(topic)
            if cls is None or msgtype not in self.store.types or not publishers:
                continue
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
            self.connections[topic] = self.writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=[offered_qos(p.qos_profile) for p in publishers])
            qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.counts[topic] = 0
            self.subscriptions_by_topic[topic] = self.create_subscription(
                cls, topic, lambda raw, t=topic: self._write(t, raw), qos, raw=True)
            self.get_logger().info(f"recording {topic} ({msgtype})")

    def _write(self, topic: str, raw: bytes) -> None:
        self.writer.write(self.connections[topic], time.time_ns(), raw)
        self.counts[topic] += 1

    def destroy_node(self) -> None:
        self.writer.close()
        summary = ", ".join(f"{t}: {n}" for t, n in sorted(self.counts.items())) or "nothing"
        print(f"bag_record: wrote {summary}", flush=True)
        super().destroy_node()


def _stop() -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Record topics into a rosbag2 bag (mcap or sqlite3).")
    p.add_argument("topics", nargs="*", help="topics to record (default: every topic of a known type)")
    p.add_argument("-o", "--output", required=True, help="bag directory to create (must not exist)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    args, ros_args = p.parse_known_args(argv)
    output = Path(args.output)
    if output.exists():
        print(f"bag_record: {output} exists; choose a new bag directory", file=sys.stderr)
        return 2
    rclpy.init(args=ros_args)
    node = BagRecorder(output, args.storage, args.topics)
    if args.duration > 0:
        node.create_timer(args.duration, _stop)
    return spin_node(node)


if __name__ == "__main__":
    sys.exit(main())
