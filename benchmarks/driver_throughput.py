#!/usr/bin/env python3
"""Benchmark: board simulator -> driver over UDP on loopback, each consumer on its own core.

HT40 frames, 8 antennas per board, calibrated output. Simulator on core 0, the consumer on core 1,
a counting subscriber (benchmarks/csi_counter.py: raw bytes, EventsExecutor, reliable) on core 0.
Every figure is measured over ``--seconds`` after calibration:

  * offered: what the simulator really sends, read by a bare UDP reader (the driver's UdpStream:
    handshake and peer filter, no decoding): datagrams/s; one frame is 8 datagrams per board
    (espargos_driver/test/test_simulator_replay.py checks that the replay sends whole frames);
  * pure driver: BoardDriver without ROS (benchmarks/pure_driver.py): calibrated frames/s and CPU
    per frame (µs, /proc utime+stime of the process, all threads);
  * board_node: frames/s it published (its /diagnostics, over their stamps), frames/s the
    subscriber in another process received, and board_node's CPU per frame received;
  * board_node offered ``--node-rate`` frames/s (5,000: the airtime limit of one channel): does it
    keep up; the same figures and every loss counter;
  * four boards as one combined array (32 antennas) at ``--array-rate`` frames/s: the same, plus
    every loss counter (kernel drops, incomplete frames, gaps in sequence numbers);
  * latency at ``--latency-rate`` frames/s: p50/p99 from the receive time of a frame's last sensor
    report to the return of its publish (measured inside board_node, read from /diagnostics).

Run: source tools/env.sh && python benchmarks/driver_throughput.py [--offered 8000] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from process_stats import cpu_seconds, installed_executables, isolate_ros_graph

BIN = installed_executables("espargos_driver")
HERE = Path(__file__).resolve().parent
isolate_ros_graph()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from espargos_driver.protocol.constants import ANTENNAS  # noqa: E402
from espargos_driver.transport.http_control import BoardHttp  # noqa: E402
from espargos_driver.transport.streams import UdpStream  # noqa: E402

SIM_CORE, CONSUMER_CORE = 0, 1
LOSS_COUNTERS = ("incomplete_frame", "partial_frame", "kernel_drops", "frames_missed", "evicted_frame")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core % os.cpu_count()})


class Rig:
    """The simulated board(s) on SIM_CORE: one board, or ``boards`` boards as one combined array
    (a YAML written here with free ports), replaying 4096 pre-encoded frames (sequence numbers
    without gaps) at ``rate`` frames/s."""

    def __init__(self, rate: float, boards: int = 1) -> None:
        self.http, self.stream = free_port(), free_port(socket.SOCK_DGRAM)
        self.array_config = ""
        args = ["--rate", str(rate), "--precompute", "4096"]
        if boards > 1:
            names = [f"b{i}" for i in range(boards)]
            lines = ["combined-array:", "  reference: b0", "  boards:"]
            lines += [f"    {n}: {{host: 127.0.0.1, http_port: {free_port()}, stream_port: {free_port(socket.SOCK_DGRAM)}}}"
                      for n in names]
            lines += ["  array:"] + [f"    - [{', '.join(f'{n}.{r}.{c}' for c in range(4))}]" for n in names for r in range(2)]
            handle, self.array_config = tempfile.mkstemp(suffix=".yaml")
            os.write(handle, "\n".join(lines).encode() + b"\n")
            os.close(handle)
            args += ["--combined", self.array_config]
        else:
            args += ["--http-port", str(self.http), "--stream-port", str(self.stream)]
        self.process = subprocess.Popen([str(BIN / "board_simulator"), *args], preexec_fn=pinned(SIM_CORE),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def driver_args(self) -> list[str]:
        """board_node parameters that reach this rig."""
        if self.array_config:
            return ["-p", f"array_config:={self.array_config}"]
        return ["-p", f"http_port:={self.http}", "-p", f"stream_port:={self.stream}"]

    def stop(self) -> None:
        stop(self.process)
        if self.array_config:
            os.unlink(self.array_config)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def offered(rate: float, seconds: float) -> dict:
    """Datagrams/s and frames/s the simulator really sends, read by a bare UDP reader on CONSUMER_CORE."""
    rig = Rig(rate)
    http, stream_port = rig.http, rig.stream
    os.sched_setaffinity(0, {CONSUMER_CORE % os.cpu_count()})
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
        rig.stop()


def pure_driver(rate: float, seconds: float, boards: int = 1) -> dict:
    """BoardDriver without ROS on CONSUMER_CORE (benchmarks/pure_driver.py)."""
    rig = Rig(rate, boards)
    try:
        args = ["--array-config", rig.array_config] if rig.array_config else \
            ["--http-port", str(rig.http), "--stream-port", str(rig.stream)]
        out = subprocess.run([sys.executable, str(HERE / "pure_driver.py"), *args, "--seconds", str(seconds)],
                             preexec_fn=pinned(CONSUMER_CORE), capture_output=True, text=True, timeout=seconds + 120)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        rig.stop()
    if "error" in result:
        raise RuntimeError(result["error"])
    result["frames_per_s"] = result["frames"] / result["wall_s"]
    result["cpu_us_per_frame"] = result["cpu_s"] / max(result["frames"], 1) * 1e6
    return result


class Counter:
    """benchmarks/csi_counter.py on SIM_CORE; ``count`` is the latest number of messages it received."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "csi_counter.py"), "/csi"],
                                        preexec_fn=pinned(SIM_CORE), stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.count = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.count = int(line.split()[0])


def board_node(rate: float, seconds: float, node, boards: int = 1) -> dict:
    """board_node on CONSUMER_CORE, its csi counted by a subscriber in another process."""
    diag: dict[str, str] = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("espargos_driver"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})
                diag["stamp_s"] = str(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    sub = node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    tmp = tempfile.mkdtemp()
    rig = Rig(rate, boards)
    counter = Counter()
    drv = subprocess.Popen([str(BIN / "board_node"), "--ros-args", *rig.driver_args(), "-p", "calibration.policy:=startup",
                            "-p", "calibration.duration:=1.0", "-p", f"calibration.file:={tmp}/cal.json"],
                           preexec_fn=pinned(CONSUMER_CORE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)

    def spin(duration: float) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)

    try:
        deadline = time.monotonic() + 90
        while diag.get("calibration_status") != "verified" and time.monotonic() < deadline:
            spin(0.1)
        if diag.get("calibration_status") != "verified":
            raise RuntimeError(f"board_node did not calibrate: {diag.get('calibration')}")
        spin(3.0)
        before = dict(diag), counter.count, cpu_seconds(drv.pid), time.monotonic()
        spin(seconds)
        after_cpu, after_t = cpu_seconds(drv.pid), time.monotonic()
        after_count = counter.count
        spin(1.2)                                   # the next /diagnostics
        after = dict(diag), after_count
    finally:
        node.destroy_subscription(sub)
        for process in (drv, counter.process):
            stop(process)
        rig.stop()
    wall = after_t - before[3]
    published = int(after[0]["frames_total"]) - int(before[0]["frames_total"])
    received = after[1] - before[1]          # the counter's 0.2 s reports, over (nearly) the CPU's interval
    result = {"frames_per_s": published / (float(after[0]["stamp_s"]) - float(before[0]["stamp_s"])),
              "received_per_s": received / wall,
              "cpu_us_per_frame": (after_cpu - before[2]) / max(received, 1) * 1e6, "cpu_load": (after_cpu - before[2]) / wall,
              "p50_ms": float(after[0]["latency_p50_ms"]), "p99_ms": float(after[0]["latency_p99_ms"]),
              "serialization": after[0].get("csi_serialization", "")}
    result.update({k: int(after[0][k]) - int(before[0][k]) for k in LOSS_COUNTERS})
    return result


def losses(result: dict) -> str:
    return ", ".join(f"{k} {result[k]}" for k in LOSS_COUNTERS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offered", type=float, default=8000, help="frames/s the simulator offers at saturation")
    ap.add_argument("--node-rate", type=float, default=5000,
                    help="frames/s of the run that asks whether board_node keeps up (the airtime limit of one channel)")
    ap.add_argument("--array-rate", type=float, default=1000, help="frames/s of the four-board combined array")
    ap.add_argument("--latency-rate", type=float, default=1000, help="frames/s of the latency run")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; simulator and subscriber on core {SIM_CORE}, consumer on core {CONSUMER_CORE}; "
          "HT40, 8 antennas per board, calibrated", flush=True)
    offer = offered(args.offered, args.seconds)
    print(f"offered (bare UDP reader, asked for {args.offered:.0f} frames/s): {offer['datagrams_per_s']:.0f} datagrams/s "
          f"= {offer['frames_per_s']:.0f} frames/s, kernel drops while reading {offer['kernel_drops']}", flush=True)
    pure = pure_driver(args.offered, args.seconds)
    print(f"pure driver: {pure['frames_per_s']:.0f} calibrated frames/s, {pure['cpu_us_per_frame']:.0f} us CPU per frame, "
          f"core load {pure['cpu_s'] / pure['wall_s'] * 100:.0f} %; {losses(pure)}", flush=True)
    rclpy.init()
    node = rclpy.create_node("driver_throughput_benchmark")
    try:
        sat = board_node(args.offered, args.seconds, node)
        print(f"board_node: {sat['frames_per_s']:.0f} frames/s published, {sat['received_per_s']:.0f} frames/s received "
              f"by a reliable subscriber in another process, {sat['cpu_us_per_frame']:.0f} us CPU per frame "
              f"({sat['cpu_us_per_frame'] / pure['cpu_us_per_frame']:.2f} x the pure driver), core load "
              f"{sat['cpu_load'] * 100:.0f} %, csi as {sat['serialization']}; {losses(sat)}", flush=True)
        kept = board_node(args.node_rate, args.seconds, node)
        print(f"board_node offered {args.node_rate:.0f} frames/s: {kept['frames_per_s']:.0f} frames/s published, "
              f"{kept['received_per_s']:.0f} received, {kept['cpu_us_per_frame']:.0f} us CPU per frame, core load "
              f"{kept['cpu_load'] * 100:.0f} %; {losses(kept)}", flush=True)
        four = board_node(args.array_rate, args.seconds, node, boards=4)
        print(f"4 boards (32 antennas) at {args.array_rate:.0f} frames/s: {four['frames_per_s']:.0f} frames/s published, "
              f"{four['received_per_s']:.0f} received, {four['cpu_us_per_frame']:.0f} us CPU per frame, core load "
              f"{four['cpu_load'] * 100:.0f} %; {losses(four)}", flush=True)
        lat = board_node(args.latency_rate, args.seconds, node)
        print(f"board_node at {args.latency_rate:.0f} frames/s: {lat['frames_per_s']:.0f} frames/s, "
              f"{lat['cpu_us_per_frame']:.0f} us CPU per frame, latency last report -> publish p50 {lat['p50_ms']:.3f} ms, "
              f"p99 {lat['p99_ms']:.3f} ms; {losses(lat)}", flush=True)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
