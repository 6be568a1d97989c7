#!/usr/bin/env python3
"""Benchmark: where a frame's CPU time goes in the driver, stage by stage, in one process.

The simulator's encoder makes ``--frames`` HT40 frames (8 sensor packets each); each stage then
runs over all of them alone and its CPU time (time.process_time) is divided by the frame count:

  receive    recvfrom of the frame's 8 datagrams from a UDP socket on loopback (sent beforehand)
  parse      split the sensor packets, reassemble, decode the TLV messages (8 per frame), MAX_BATCH
             datagrams at a time as the receive loop hands them over (runs of alike ones together)
  cluster    group the 8 reports into a frame, decode the CSI bytes, remove the STO (reports handed
             over MAX_BATCH at a time, as the receive loop reads datagrams: frames decoded together)
  calibrate  apply a phase/time/gain calibration
  layout     the frame in the array's rows x cols
  serialize  CsiArray bytes (CsiArraySerializer)
  publish    the bytes to a reliable subscriber in another process (benchmarks/csi_counter.py)

Stages the driver adds around them (locks, the receive loop, sequence-gap and reboot checks, the
clock) show as the difference between the sum and driver_throughput.py's CPU per frame.

Run: source tools/env.sh && python benchmarks/driver_stages.py [--frames 2000]
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from process_stats import isolate_ros_graph

isolate_ros_graph()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from espargos_driver.calibration import Calibration  # noqa: E402
from espargos_driver.cluster import FrameClusterer  # noqa: E402
from espargos_driver.driver import BoardDriver, DriverConfig  # noqa: E402
from espargos_driver.layout import single_board_layout  # noqa: E402
from espargos_driver.messages import CsiArraySerializer  # noqa: E402
from espargos_driver.protocol.gen3 import Reassembler, parse_csi_message, split_sensor_packet  # noqa: E402
from espargos_driver.protocol.gen3_batch import BatchDecoder  # noqa: E402
from espargos_driver.sim.board import SimulatedRig  # noqa: E402
from espargos_driver.sim.scenario import Scenario  # noqa: E402
from espargos_driver.transport.link import MAX_BATCH  # noqa: E402
from espargos_msgs.msg import CsiArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

HERE = Path(__file__).resolve().parent


def timed(stages: dict[str, float], name: str, frames: int, work):
    """Run ``work`` with the cyclic garbage collector paused: a stage here holds all its frames'
    objects at once, which the driver (one frame at a time) never does."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        result = work()
        stages[name] = (time.process_time() - start) / frames * 1e6
    finally:
        gc.enable()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2000)
    args = ap.parse_args()
    n = args.frames
    rig = SimulatedRig(Scenario.from_dict({}), single_board_layout("bench", "127.0.0.1"))
    rig.precompute(n)
    packets = [p for _, entry in rig.boards[0].replay for p in entry]
    stages: dict[str, float] = {}

    rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    rx.bind(("127.0.0.1", 0))
    received: list[bytes] = []

    def receive_all() -> None:
        for _ in range(len(batch)):
            received.append(rx.recvfrom(65536)[0])

    total = 0.0
    for start in range(0, len(packets), 800):                 # 100 frames at a time: within the socket buffer
        batch = packets[start:start + 800]
        for p in batch:
            tx.sendto(p, rx.getsockname())
        timed(stages, "receive", n, receive_all)
        total += stages["receive"]
    stages["receive"] = total
    assert received == packets

    counters: Counter = Counter()
    reassembler = Reassembler(counters)
    decoder = BatchDecoder()

    def parse_all() -> list:
        """As BoardReceiver.feed_batch: MAX_BATCH datagrams at a time through gen3_batch, any it
        leaves one at a time."""
        out = []
        for start in range(0, len(packets), MAX_BATCH):
            batch = packets[start:start + MAX_BATCH]
            for packet, report in zip(batch, decoder.decode(batch)):
                out += [report] if report is not None else [
                    parse_csi_message(reassembler.add(f, 0.0), f.uid >> 29) for f in split_sensor_packet(packet)]
        return out
    reports = timed(stages, "parse", n, parse_all)
    clusterer = FrameClusterer(counters)
    batches = [[(r, 0.0, 0.0) for r in reports[k:k + MAX_BATCH]] for k in range(0, len(reports), MAX_BATCH)]
    frames = timed(stages, "cluster", n, lambda: [f for batch in batches for f in clusterer.add_many(batch)])
    assert len(frames) == n, counters

    shape = frames[0].mask.shape
    rng = np.random.default_rng(1)
    cal = Calibration(channel=frames[0].channel, secondary=frames[0].secondary, array_id="bench",
                      phase_rad=rng.uniform(-np.pi, np.pi, shape), time_s=rng.normal(0, 1e-9, shape),
                      reference_delay_s=np.zeros(shape), residual_deg=0.2, frames_used=100,
                      gain=np.exp(rng.normal(0, 0.1, shape)))
    timed(stages, "calibrate", n, lambda: [cal.apply(f) for f in frames])
    driver = BoardDriver(DriverConfig(calibration_policy="none"), publish=lambda _: None, log=print, warn=print)
    laid_out = timed(stages, "layout", n, lambda: [driver.in_layout(f) for f in frames])
    serialize = CsiArraySerializer("espargos_array", "bench")
    stamp = time.time_ns()
    data = timed(stages, "serialize", n, lambda: [serialize(f, stamp) for f in laid_out])

    rclpy.init()
    node = rclpy.create_node("driver_stages_benchmark")
    pub = node.create_publisher(CsiArray, "/csi", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    counter = subprocess.Popen([sys.executable, str(HERE / "csi_counter.py"), "/csi"], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)

        def publish_all() -> None:
            for k, d in enumerate(data):
                pub.publish(d)
                if k % 100 == 99:
                    time.sleep(0.02)            # ~5,000 frames/s, the target rate: the subscriber keeps up
        timed(stages, "publish", n, publish_all)
        time.sleep(1.0)
    finally:
        os.killpg(counter.pid, signal.SIGINT)
        out = counter.communicate(timeout=10)[0].split()
        node.destroy_node()
        rclpy.shutdown()
    delivered = int(out[-2]) if len(out) >= 2 else 0
    print(f"HT40, 8 antennas, {n} frames; CPU µs per frame (this process only); the subscriber received {delivered} of {n}")
    for name, us in stages.items():
        print(f"  {name:10s} {us:7.1f}")
    driver_only = sum(us for name, us in stages.items() if name not in ("serialize", "publish"))
    print(f"  {'sum':10s} {sum(stages.values()):7.1f}  -> board_node: {1e6 / sum(stages.values()):,.0f} frames/s per core "
          f"at best; the pure driver (no serialize, publish): {driver_only:.1f} -> {1e6 / driver_only:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
