#!/usr/bin/env python3
"""The pure BoardDriver (no ROS) as a consumer for driver_throughput.py: connects to a (simulated)
board or combined array, calibrates at start-up, then counts the calibrated frames it hands out
for ``--seconds`` and prints one JSON line: frames, CPU seconds of this process (all threads,
from /proc), wall seconds and the driver's loss counters.

Run: python benchmarks/pure_driver.py --http-port P --stream-port Q [--array-config F] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from process_stats import cpu_seconds

from espargos_driver.driver import BoardDriver, DriverConfig
from espargos_driver.layout import load_layout_file

LOSS_COUNTERS = ("incomplete_frame", "partial_frame", "kernel_drops", "frames_missed", "evicted_frame")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--http-port", type=int, default=8400)
    ap.add_argument("--stream-port", type=int, default=53330)
    ap.add_argument("--array-config", help="combined-array YAML")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    calibrated = [0]

    def publish(frame) -> None:
        calibrated[0] += frame.calibrated

    tmp = tempfile.mkdtemp()
    config = DriverConfig(http_port=args.http_port, stream_port=args.stream_port, calibration_policy="startup",
                          calibration_duration_s=1.0, calibration_file=f"{tmp}/cal.json",
                          layout=load_layout_file(args.array_config) if args.array_config else None)
    driver = BoardDriver(config, publish, log=lambda _: None, warn=lambda text: print(text, file=sys.stderr))
    driver.start()
    try:
        deadline = time.monotonic() + 60
        while driver.calibration_status != "verified":
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"not calibrated: {driver.calibration_state}"}))
                return 1
            time.sleep(0.1)
        time.sleep(2.0)
        before = dict(driver.counters), calibrated[0], cpu_seconds(os.getpid()), time.monotonic()
        time.sleep(args.seconds)
        after = dict(driver.counters), calibrated[0], cpu_seconds(os.getpid()), time.monotonic()
    finally:
        driver.stop()
    result = {"frames": after[1] - before[1], "cpu_s": after[2] - before[2], "wall_s": after[3] - before[3],
              "uncalibrated": (after[0].get("frames", 0) - before[0].get("frames", 0)) - (after[1] - before[1])}
    result.update({k: after[0].get(k, 0) - before[0].get(k, 0) for k in LOSS_COUNTERS})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
