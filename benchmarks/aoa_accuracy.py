#!/usr/bin/env python3
"""Benchmark: MUSIC azimuth accuracy against the Cramer-Rao bound, Monte Carlo on the board
simulator's channel model (espargos_driver.sim.channel.ArrayChannel, the model the board
simulator streams), 2x4 board, HT40 on channel 6, ideally calibrated (no LO phase or timing
offsets left: what a perfect calibration would deliver).

Prints
  * one source: azimuth RMSE / stochastic CRB over azimuths -60..60 deg and SNR 0..30 dB
    (SNR per antenna and subcarrier), ``--frames`` snapshots (CSI frames) per estimate; the
    CRB counts every measured subcarrier of every frame as a snapshot, as the estimator does;
  * two sources 25 deg apart at 20 dB (a direct path and a reflection of equal power with a
    10 ns excess delay, fixed or per-frame random phase): resolution rate, a trial counting
    as resolved when two bearings come out, each within 12.5 deg of its own source.

Run: source tools/env.sh && python benchmarks/aoa_accuracy.py [--trials 100] [--mode narrowband]
"""
from __future__ import annotations

import argparse

import numpy as np
from espargos_aoa.bearing import crb_std
from espargos_aoa.estimator import AoaConfig, AoaEstimator
from espargos_driver.geometry import board_antenna_positions
from espargos_driver.sim.channel import ArrayChannel
from espargos_driver.sim.scenario import Impairments, Reflection, Transmitter
from espargos_driver.wifi import GRIDS, CsiFormat, grid_center_hz

FMT = CsiFormat.HT40
FREQS_HZ = grid_center_hz(FMT, 6, 1) + GRIDS[FMT].indices * GRIDS[FMT].spacing_hz
VALID = np.isin(np.arange(FREQS_HZ.size), GRIDS[FMT].interpolated, invert=True)
AZIMUTHS_DEG = (-60, -40, -20, 0, 20, 40, 60)
SNRS_DB = (0, 5, 10, 15, 20, 25, 30)


def window(channel: ArrayChannel, tx: Transmitter, frames: int, snr_db: float) -> np.ndarray:
    return np.stack([channel.ota(tx, 0.0, FMT, 6, 1, snr_db) for _ in range(frames)])


def single_source(estimator: AoaEstimator, channel: ArrayChannel, trials: int, frames: int):
    positions = estimator.positions_m
    ratio = np.empty((len(SNRS_DB), len(AZIMUTHS_DEG)))
    rmse = np.empty_like(ratio)
    crb = np.empty_like(ratio)
    for i, snr in enumerate(SNRS_DB):
        for j, az in enumerate(AZIMUTHS_DEG):
            errors = []
            for _ in range(trials):
                result = estimator.estimate(window(channel, Transmitter(azimuth_deg=az), frames, snr),
                                            np.ones((frames, 8), bool), FREQS_HZ, VALID)
                got = np.degrees(result.bearings[0].azimuth_rad) if result.bearings else np.nan
                errors.append(got - az)
            rmse[i, j] = np.sqrt(np.mean(np.square(errors)))
            bound = crb_std(positions, float(np.mean(FREQS_HZ[VALID])), np.radians([az]), np.zeros(1),
                            np.array([[10 ** (snr / 10)]]), 1.0, frames * int(VALID.sum()), False)
            crb[i, j] = np.degrees(bound[0, 0])
            ratio[i, j] = rmse[i, j] / crb[i, j]
    return rmse, crb, ratio


def resolution_rate(estimator: AoaEstimator, channel: ArrayChannel, trials: int, frames: int,
                    random_phase: bool, rng: np.random.Generator) -> float:
    resolved = 0
    for _ in range(trials):
        first = rng.uniform(-60, 35)
        tx = Transmitter(azimuth_deg=first, reflections=[
            Reflection(azimuth_deg=first + 25, excess_delay_ns=10.0, gain_db=0.0, random_phase=random_phase)])
        result = estimator.estimate(window(channel, tx, frames, 20.0), np.ones((frames, 8), bool), FREQS_HZ, VALID)
        got = sorted(np.degrees(b.azimuth_rad) for b in result.bearings)
        resolved += len(got) == 2 and abs(got[0] - first) < 12.5 and abs(got[1] - first - 25) < 12.5
    return resolved / trials


def table(title: str, values: np.ndarray, fmt: str) -> None:
    print(f"\n{title}")
    print("SNR dB | " + " ".join(f"{az:>7}" for az in AZIMUTHS_DEG))
    for snr, row in zip(SNRS_DB, values):
        print(f"{snr:>6} | " + " ".join(format(v, fmt) for v in row))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100, help="trials per (azimuth, SNR) cell and for resolution")
    p.add_argument("--frames", type=int, default=20, help="CSI frames (snapshots) per estimate")
    p.add_argument("--mode", default="narrowband", choices=("narrowband", "wideband"))
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    channel = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), rng)
    estimator = AoaEstimator(AoaConfig(mode=args.mode, source_count="mdl", max_sources=2), board_antenna_positions())
    print(f"MUSIC {args.mode}, 2x4 board, HT40 ch 6 ({int(VALID.sum())} measured subcarriers), "
          f"{args.frames} frames per estimate, {args.trials} trials per cell")
    rmse, crb, ratio = single_source(estimator, channel, args.trials, args.frames)
    table("azimuth RMSE, deg", rmse, "7.4f")
    table("stochastic CRB (1-sigma), deg", crb, "7.4f")
    table("RMSE / CRB", ratio, "7.2f")
    at10 = ratio[np.array(SNRS_DB) >= 10]
    print(f"\nworst RMSE/CRB at >= 10 dB: {at10.max():.2f} (target <= 1.5)")
    for random_phase in (False, True):
        rate = resolution_rate(estimator, channel, args.trials, args.frames, random_phase, rng)
        kind = "per-frame random" if random_phase else "fixed"
        print(f"two sources 25 deg apart, 20 dB, reflection with {kind} phase: resolved in {100 * rate:.0f} % "
              f"of {args.trials} trials (target >= 90 %)")


if __name__ == "__main__":
    main()
