#!/usr/bin/env python3
"""Benchmark: swarm-node reports parsed and published per second on one core.

Offers N simulated nodes at R reports/s each (default 16 x 50 Hz = 800/s, then more to find the
ceiling) to a swarm_node pinned to one core, over real UDP (binary ADR-018 frames) or as text
lines (esp-csi classic HT20 lines over UDP), and reads the node's CPU time and published rate.

Run: source tools/env.sh && python benchmarks/swarm_ingest.py [--seconds 8]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time

from process_stats import cpu_seconds as cpu_s
from process_stats import installed_executables, isolate_ros_graph

isolate_ros_graph()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from espargos_driver.swarm.binary import build_datagram  # noqa: E402
from espargos_msgs.msg import CsiArray  # noqa: E402


def payloads(kind: str, nodes: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    values = rng.integers(-40, 40, 256).astype(np.int8)
    if kind == "binary":
        return [build_datagram(n + 1, 1, 2437, -50, -90, values, sensor_time_us=1000) for n in range(nodes)]
    data = " ".join(str(v) for v in values)
    return [f"CSI_DATA,{n},02:00:00:00:00:{n:02x},-50,11,1,7,0,1,1,1,0,0,1,-91,0,6,0,1000,0,100,0,256,0,[{data} ]".encode()
            for n in range(nodes)]


def measure(kind: str, offered: float, nodes: int, seconds: float) -> tuple[float, float, float]:
    """(published reports/s, node CPU %, µs CPU per report)."""
    port = random.randint(40000, 50000)
    node = subprocess.Popen(["taskset", "-c", "1", str(installed_executables("espargos_driver") / "swarm_node"),
                             "--ros-args", "-p", "udp_host:=127.0.0.1", "-p", f"udp_port:={port}", "-p", "channel:=6"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rclpy.init()
    watcher = rclpy.create_node("swarm_bench")
    got = [0]
    watcher.create_subscription(CsiArray, "/csi", lambda _: got.__setitem__(0, got[0] + 1), 1000)
    try:
        deadline = time.monotonic() + 20
        while watcher.count_publishers("/csi") == 0 and time.monotonic() < deadline:
            rclpy.spin_once(watcher, timeout_sec=0.1)
        os.sched_setaffinity(0, {0})
        data = payloads(kind, nodes)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start_cpu, start = cpu_s(node.pid), time.monotonic()
        got[0], sent, i = 0, 0, 0
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * offered)
            while sent < due:
                sock.sendto(data[i % nodes], ("127.0.0.1", port))
                sent, i = sent + 1, i + 1
            rclpy.spin_once(watcher, timeout_sec=0.0005)
        elapsed = time.monotonic() - start
        cpu = cpu_s(node.pid) - start_cpu
        published = got[0] / elapsed
        return published, 100 * cpu / elapsed, 1e6 * cpu / max(got[0], 1)
    finally:
        os.killpg(node.pid, signal.SIGINT)
        node.wait(timeout=10)
        watcher.destroy_node()
        rclpy.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--nodes", type=int, default=16)
    args = p.parse_args()
    print(f"swarm_node pinned to cpu 1; sender and counting subscriber on cpu 0; {args.nodes} nodes")
    for kind in ("binary", "text"):
        for offered in (args.nodes * 50.0, 4000.0):
            published, load, us = measure(kind, offered, args.nodes, args.seconds)
            print(f"{kind:>6}: offered {offered:6.0f}/s -> published {published:7.1f}/s, node core load {load:5.1f} %, "
                  f"{us:6.0f} us CPU per report", flush=True)


if __name__ == "__main__":
    sys.exit(main())
