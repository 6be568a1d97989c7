#!/usr/bin/env python3
"""Benchmark: aoa_node fed at a given CSI rate over DDS (another process publishes), one core each.

The publisher first proves what it offers (messages published per second, counted as it
publishes); aoa_node's own diagnostics then say how many frames it took in (``frames``), how
many updates it made, and how many frames it counted as missing from the sequence numbers
(``frames_missed``: what DDS dropped must show there), and /proc gives its CPU time per input frame.
HT40, 8 antennas, one transmitter on the simulator's realistic channel,
20-frame windows at 10 Hz of stamp time.

Run: source tools/env.sh && python benchmarks/aoa_node_throughput.py [--rate 5000] [--seconds 10]
"""
from __future__ import annotations

import argparse
import array
import os
import signal
import subprocess
import sys
import time

from process_stats import cpu_seconds, installed_executables, isolate_ros_graph

BIN = installed_executables("espargos_aoa")
isolate_ros_graph()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from espargos_driver.geometry import board_antenna_positions  # noqa: E402
from espargos_driver.messages import frame_to_msg, geometry_msg  # noqa: E402
from espargos_driver.sim.channel import ArrayChannel  # noqa: E402
from espargos_driver.sim.scenario import Impairments, Transmitter  # noqa: E402
from espargos_driver.frame import CsiFrame  # noqa: E402
from espargos_driver.wifi import CsiFormat  # noqa: E402
from espargos_msgs.msg import ArrayGeometry, CsiArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402


def messages(count: int) -> list[CsiArray]:
    """``count`` calibrated CsiArray of one transmitter at 20 deg (stamps set when published)."""
    array = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), np.random.default_rng(1))
    tx = Transmitter(azimuth_deg=20.0)
    out = []
    for i in range(count):
        z, gain_db = array.receive(tx, 0.0, CsiFormat.HT40, 6, 1, 20.0)
        frame = CsiFrame(key=(tx.mac_bytes, b"\xff" * 6, i % 4096, 0, False), format=CsiFormat.HT40, channel=6,
                         secondary=1, csi=z.reshape(1, 2, 4, -1).astype(np.complex64), mask=np.ones((1, 2, 4), bool),
                         timestamps_ns=np.zeros((1, 2, 4)), rssi_dbm=np.full((1, 2, 4), -45.0),
                         noise_floor_dbm=np.full((1, 2, 4), -92.0), rx_gain_db=gain_db.reshape(1, 2, 4),
                         fft_gain_db=np.zeros((1, 2, 4)), cfo_hz=np.zeros((1, 2, 4)), is_reference=False,
                         host_time=0.0, completed_at=0.0, calibrated=True)
        out.append(frame_to_msg(frame, Time(), "espargos_array", "bench"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=5000, help="CSI messages per second offered")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--qos", default="sensor_data", choices=("sensor_data", "reliable"))
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    rclpy.init()
    node = rclpy.create_node("aoa_node_benchmark")
    ns = "/aoabench"
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    geo = node.create_publisher(ArrayGeometry, f"{ns}/array_geometry", latched)
    qos = qos_profile_sensor_data if args.qos == "sensor_data" else QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(CsiArray, f"{ns}/csi", qos)
    diag: dict[str, str] = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("espargos_aoa") and ns in st.name:
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pool = messages(400)
    aoa = subprocess.Popen([str(BIN / "aoa_node"), "--ros-args", "-r", f"__ns:={ns}", "-p", f"csi_qos:={args.qos}"],
                           preexec_fn=lambda: os.sched_setaffinity(0, {1 % os.cpu_count()}),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        geo.publish(geometry_msg(board_antenna_positions(), [f"a{i}" for i in range(8)],
                                 node.get_clock().now().to_msg(), "espargos_array", "bench"))
        deadline = time.monotonic() + 30
        while (pub.get_subscription_count() == 0 or not diag) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        f0, c0, m0 = int(diag.get("frames", 0)), cpu_seconds(aoa.pid), int(diag.get("frames_missed", 0))
        u0 = int(diag.get("updates", 0))
        t0 = time.monotonic()
        sent, k = 0, 0
        stamp_ns = time.time_ns()
        while time.monotonic() - t0 < args.seconds:
            due = int((time.monotonic() - t0) * args.rate)
            while sent < due:
                msg = pool[k % len(pool)]
                k += 1
                stamp_ns += int(1e9 / args.rate)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                msg.sensor_timestamps = array.array("d", [stamp_ns * 1e-9] * 8)     # the frames' spacing on air
                msg.sequence_number = sent % 4096
                pub.publish(msg)
                sent += 1
            rclpy.spin_once(node, timeout_sec=0.0)
        offered_s = time.monotonic() - t0
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        f1, c1, u1 = int(diag.get("frames", 0)), cpu_seconds(aoa.pid), int(diag.get("updates", 0))
        missed = int(diag.get("frames_missed", 0)) - m0
    finally:
        os.killpg(aoa.pid, signal.SIGINT)
        aoa.wait(timeout=10)
        node.destroy_node()
        rclpy.shutdown()
    got = f1 - f0
    print(f"offered: {sent} CsiArray in {offered_s:.1f} s = {sent / offered_s:.0f} /s (publisher on core 0, "
          f"aoa_node on core 1, csi_qos {args.qos})")
    print(f"aoa_node took in {got} frames ({100 * got / max(sent, 1):.1f} %), {u1 - u0} updates "
          f"({(u1 - u0) / offered_s:.1f} /s), {(c1 - c0) / max(got, 1) * 1e6:.0f} us CPU per frame taken in, "
          f"core load {(c1 - c0) / (offered_s + 2.5) * 100:.0f} %; frames_missed {missed} "
          f"(lost on the way: {sent - got})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
