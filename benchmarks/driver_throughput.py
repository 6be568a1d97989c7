#!/usr/bin/env python3
"""Benchmark: board simulator -> board_node (the real driver process) over UDP on loopback.

Prints, for 8-antenna HT40 frames with calibration applied:
  * what the simulator really offers: a bare UDP reader (the driver's UdpStream: handshake and
    peer filter, no decoding) counts datagrams/s for the same seconds; one frame is 8 sensor
    datagrams (espargos_driver/test/test_simulator_replay.py checks the replay sends whole frames);
  * saturation: complete frames/s published by the driver pinned to one core while the
    simulator (pinned to the other core, replaying pre-encoded frames) offers more, how many of
    them a reliable subscriber in this (other) process received, and the driver's CPU time per
    frame (µs, from /proc utime+stime, all its threads);
  * latency at 200 frames/s: p50/p99 from the receive time of a frame's last sensor report
    to the return of CsiArray publish (measured inside the driver, read from /diagnostics).

Run: source tools/env.sh && python benchmarks/driver_throughput.py [--offered 4000] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from process_stats import cpu_seconds, installed_executables, isolate_ros_graph

BIN = installed_executables("espargos_driver")
isolate_ros_graph()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from espargos_driver.protocol.constants import ANTENNAS  # noqa: E402
from espargos_driver.transport.http_control import BoardHttp  # noqa: E402
from espargos_driver.transport.streams import UdpStream  # noqa: E402
from espargos_msgs.msg import CsiArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core % os.cpu_count()})


def simulator(rate: float, http: int, stream: int) -> subprocess.Popen:
    """The board simulator on core 0, replaying 4000 pre-encoded frames at ``rate`` frames/s."""
    return subprocess.Popen([str(BIN / "board_simulator"), "--http-port", str(http), "--stream-port", str(stream),
                             "--rate", str(rate), "--precompute", "4000"], preexec_fn=pinned(0),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def offered(rate: float, seconds: float) -> dict:
    """Datagrams/s and frames/s the simulator really sends, read by a bare UDP reader on core 1."""
    http, stream_port = free_port(), free_port(socket.SOCK_DGRAM)
    sim = simulator(rate, http, stream_port)
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                stream = UdpStream(BoardHttp("127.0.0.1", http), "127.0.0.1", stream_port)
                stream.open()
                break
            except Exception:  # noqa: BLE001 - the simulator is still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        time.sleep(1.0)
        while stream.recv(0.0) is not None:                  # what queued during start-up
            pass
        datagrams, drops0, t0 = 0, stream.kernel_drops() or 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            if stream.recv(0.005) is not None:
                datagrams += 1
            stream.keepalive()
        elapsed = time.monotonic() - t0
        return {"datagrams_per_s": datagrams / elapsed, "frames_per_s": datagrams / ANTENNAS / elapsed,
                "kernel_drops": (stream.kernel_drops() or 0) - drops0}
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
        os.killpg(sim.pid, signal.SIGINT)
        sim.wait(timeout=10)


def run(rate: float, seconds: float, node) -> dict:
    diag: dict[str, str] = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("espargos_driver"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})

    received = [0]
    sub = node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    csi = node.create_subscription(CsiArray, "/csi", lambda msg: received.__setitem__(0, received[0] + 1),
                                   QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    http, stream = free_port(), free_port(socket.SOCK_DGRAM)
    tmp = tempfile.mkdtemp()
    sim = simulator(rate, http, stream)
    drv = subprocess.Popen([str(BIN / "board_node"), "--ros-args", "-p", f"http_port:={http}",
                            "-p", f"stream_port:={stream}", "-p", "calibration.policy:=startup",
                            "-p", "calibration.duration:=1.0", "-p", f"calibration.file:={tmp}/cal.json"],
                           preexec_fn=pinned(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "calibrated from" not in diag.get("calibration", "") and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        f0, r0, c0, t0 = int(diag["frames_total"]), received[0], cpu_seconds(drv.pid), time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        f1, r1, c1, t1 = int(diag["frames_total"]), received[0], cpu_seconds(drv.pid), time.monotonic()
        frames = f1 - f0
        return {"frames_per_s": frames / (t1 - t0), "cpu_us_per_frame": (c1 - c0) / max(frames, 1) * 1e6,
                "received_per_s": (r1 - r0) / (t1 - t0),
                "cpu_load": (c1 - c0) / (t1 - t0), "p50_ms": float(diag["latency_p50_ms"]),
                "p99_ms": float(diag["latency_p99_ms"]), "incomplete": int(diag["incomplete_frame"]),
                "partial": int(diag["partial_frame"])}
    finally:
        node.destroy_subscription(sub)
        node.destroy_subscription(csi)
        for p in (drv, sim):
            os.killpg(p.pid, signal.SIGINT)
        for p in (drv, sim):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offered", type=float, default=4000, help="frames/s the simulator offers at saturation")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    offer = offered(args.offered, args.seconds)
    rclpy.init()
    node = rclpy.create_node("driver_throughput_benchmark")
    sat = run(args.offered, args.seconds, node)
    lat = run(200, args.seconds, node)
    node.destroy_node()
    rclpy.shutdown()
    print(f"cores: {os.cpu_count()}  simulator on core 0, driver on core 1; HT40, 8 antennas, calibrated")
    print(f"offered (bare UDP reader on core 1, asked for {args.offered:.0f} frames/s): "
          f"{offer['datagrams_per_s']:.0f} datagrams/s = {offer['frames_per_s']:.0f} frames/s, "
          f"kernel drops while reading {offer['kernel_drops']}")
    print(f"saturation (offered {args.offered:.0f} frames/s): {sat['frames_per_s']:.0f} complete frames/s published, "
          f"{sat['received_per_s']:.0f} frames/s received by a reliable subscriber in another process, "
          f"{sat['cpu_us_per_frame']:.0f} us CPU per frame, driver core load {sat['cpu_load'] * 100:.0f} %, "
          f"dropped incomplete {sat['incomplete']}")
    print(f"at 200 frames/s: {lat['frames_per_s']:.0f} frames/s, {lat['cpu_us_per_frame']:.0f} us CPU per frame, "
          f"latency last report -> publish p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
