#!/usr/bin/env python3
"""Benchmark: MUSIC spectra (with bearings) per second on one core.

For 8 antennas (one 2x4 board) and 32 antennas (a 4x8 layout of four boards, 60 mm pitch),
1-D azimuth at 0.5 deg and 2-D azimuth x elevation at 1 deg x 1 deg over the whole front
half-space (-90..90 x -90..90 deg), narrowband and wideband (8 subbands): the full
``AoaEstimator.estimate`` call (covariance of a 20-frame HT40 window, eigendecomposition,
MDL, spectrum, peak refinement, CRB) on the simulator's (realistic) channel model. The process is pinned
to one core and BLAS to one thread; the steering cache is warm (it is built once per channel).

Run: source tools/env.sh && python benchmarks/aoa_throughput.py [--seconds 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from espargos_aoa.estimator import AoaConfig, AoaEstimator  # noqa: E402
from espargos_aoa.steering import SPEED_OF_LIGHT, unit_vectors  # noqa: E402
from espargos_driver.wifi import GRIDS, CsiFormat, grid_center_hz  # noqa: E402

FMT = CsiFormat.HT40
FREQS_HZ = grid_center_hz(FMT, 6, 1) + GRIDS[FMT].indices * GRIDS[FMT].spacing_hz
VALID = np.isin(np.arange(FREQS_HZ.size), GRIDS[FMT].interpolated, invert=True)


def grid_positions(rows: int, cols: int, pitch_m: float = 0.06) -> np.ndarray:
    """URA in the y-z plane, ``(rows*cols, 3)``, centred."""
    pos = np.zeros((rows, cols, 3))
    pos[..., 1] = (np.arange(cols) - (cols - 1) / 2)[None, :] * pitch_m
    pos[..., 2] = ((rows - 1) / 2 - np.arange(rows))[:, None] * pitch_m
    return pos.reshape(-1, 3)


def window(positions: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    u = unit_vectors([np.radians(25.0)], [np.radians(10.0)])[0]
    steer = np.exp(2j * np.pi * np.outer(positions @ u / SPEED_OF_LIGHT, FREQS_HZ))
    x = steer[None] * np.exp(2j * np.pi * rng.random((frames, 1, FREQS_HZ.size)))
    return x + 0.1 * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))


def rate(config: AoaConfig, positions: np.ndarray, seconds: float) -> tuple[float, float]:
    """(spectra per second, ms per spectrum)."""
    rng = np.random.default_rng(0)
    estimator = AoaEstimator(config, positions)
    csi = window(positions, 20, rng)
    mask = np.ones(csi.shape[:2], bool)
    estimator.estimate(csi, mask, FREQS_HZ, VALID)            # builds the steering cache
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        estimator.estimate(csi, mask, FREQS_HZ, VALID)
        count += 1
    elapsed = time.perf_counter() - start
    return count / elapsed, 1e3 * elapsed / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    p.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    args = p.parse_args()
    os.sched_setaffinity(0, {args.core})
    print(f"one core (cpu {args.core}), 20-frame HT40 windows ({int(VALID.sum())} subcarriers)")
    print(f"{'antennas':>8} {'search':>26} {'mode':>11} {'spectra/s':>10} {'ms':>8}")
    for antennas, positions in ((8, grid_positions(2, 4)), (32, grid_positions(4, 8))):
        for two_d, label in ((False, "1-D az 0.5 deg (361)"), (True, "2-D 1x1 deg (181x181)")):
            for mode in ("narrowband", "wideband"):
                config = AoaConfig(mode=mode, two_d=two_d, azimuth_step_deg=0.5 if not two_d else 1.0,
                                   elevation_step_deg=1.0)
                per_s, ms = rate(config, positions, args.seconds)
                print(f"{antennas:>8} {label:>26} {mode:>11} {per_s:>10.1f} {ms:>8.2f}")


if __name__ == "__main__":
    main()
