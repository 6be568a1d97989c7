#!/usr/bin/env python3
"""Where to put the verification threshold: reference-phase residual of a calibration, checked
with a verification burst (0.3 s) on the same board, after that board rebooted (new LO phases),
and on another board, over many seeds and SNRs of the reference signal.

The decoding path is the driver's (simulator bytes -> BoardReceiver -> FrameClusterer ->
usable_reference -> reference_residual_deg), without sockets.

Run: source tools/env.sh && python benchmarks/calibration_verification.py [--seeds 50]
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from espargos_driver.calibration import estimate_calibration, reference_delays_s, reference_residual_deg, usable_reference
from espargos_driver.cluster import FrameClusterer
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import RF_REFERENCE, SimulatedBoard
from espargos_driver.sim.scenario import Scenario
from espargos_driver.supervisor import VERIFY_MAX_RESIDUAL_DEG, VERIFY_S


def burst(board: SimulatedBoard, receiver: BoardReceiver, t0: float, duration_s: float) -> list:
    board.rfswitch = RF_REFERENCE
    frames, t = [], t0
    while t < t0 + duration_s:
        t += 0.01
        for pkt in board.packets_due(t):
            frames += receiver.feed(pkt, t)
        frames += receiver.expire(t)
    return usable_reference(frames, board.primary, board.secondary)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=50)
    args = p.parse_args()
    cases: dict[str, list[float]] = {"fresh calibration": [], "same board, new burst": [],
                                     "same board after a reboot": [], "another board": []}
    delays = reference_delays_s(1)
    for seed in range(args.seeds):
        board = SimulatedBoard(Scenario(seed=seed))
        other = SimulatedBoard(Scenario(seed=10_000 + seed))
        receiver = BoardReceiver(FrameClusterer(Counter()))
        board.start(0.0)
        other.start(0.0)
        cal = estimate_calibration(burst(board, receiver, 0.0, 2.0), 6, 1, "b", delays)
        cases["fresh calibration"].append(cal.residual_deg)
        cases["same board, new burst"].append(reference_residual_deg(cal, burst(board, receiver, 2.0, VERIFY_S)))
        board.reboot(2.5)
        cases["same board after a reboot"].append(reference_residual_deg(cal, burst(board, receiver, 2.5, VERIFY_S)))
        cases["another board"].append(reference_residual_deg(cal, burst(other, BoardReceiver(FrameClusterer(Counter())),
                                                                        0.0, VERIFY_S)))
    print(f"reference residual, deg, over {args.seeds} seeds (threshold {VERIFY_MAX_RESIDUAL_DEG} deg, "
          f"burst {VERIFY_S} s):")
    for name, values in cases.items():
        v = np.array(values)
        print(f"  {name:28s} min {v.min():7.2f}  median {np.median(v):7.2f}  max {v.max():7.2f}  "
              f"> threshold: {np.mean(v > VERIFY_MAX_RESIDUAL_DEG) * 100:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
