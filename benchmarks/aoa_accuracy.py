#!/usr/bin/env python3
"""Benchmark: MUSIC azimuth accuracy, 1-sigma honesty, detection and false bearings on fading
channels, against the Cramer-Rao bound of the generator actually used.

Array: one 2x4 board, HT40 on channel 6 (114 measured subcarriers), ideally calibrated (what a
perfect calibration delivers). Estimator: the AoA node's defaults (``AoaConfig()``).

Channels (``--channels``):
  constant   one source of constant modulus and random phase per frame (this benchmark's own
             generator, independent of the simulator);
  rayleigh   one complex-Gaussian source per frame, shared by all subcarriers of the frame: the
             standard stochastic model of a fading WiFi channel (own generator);
  realistic  the board simulator's ``realistic`` channel (espargos_driver.sim): Rician direct
             path, three Rayleigh-fading specular paths (22.8 ns RMS delay spread), per-frame
             AGC steps per sensor (taken out again from the reported gains, as aoa_node does)
             and 1 deg phase noise per sensor and frame.
Every frame also gets a random common phase and detection delay (a phase ramp over subcarriers,
common to all antennas), as real frames do.

The CRB (printed alongside, and checked against a numerical Slepian-Bangs evaluation at start):
each frame is one snapshot of the stacked antennas x subcarriers vector b(theta) (N*S entries,
b = a(theta, f_k) per subcarrier), with source power P and white noise sigma^2 per entry:

    CRB(theta) = sigma^2 (sigma^2 + P |b|^2) / (2 F P^2 |b|^2 (|d|^2 - |b^H d|^2 / |b|^2)),

d = db/dtheta, F frames. For the realistic channel it is the bound of the direct path alone at
the same SNR (the extra paths and the phase noise make the true bound larger).

The estimator is told the generator's phase noise (``phase_noise_deg``: 0 for the own
generators, the channel's for the realistic one): the case where that assumption is right.

Per cell (SNR 0..30 dB x azimuth -60..60 deg x frames), printed as tables:
  RMSE/CRB   over the windows with a bearing near the direct path;
  cov1/cov2  fraction of those errors within the reported 1-sigma / 2-sigma (targets 60-80 %, 90-98 %);
  detect     fraction of windows with a bearing within max(4 CRB, 2 deg) of the direct path
             (or of a specular path, for the realistic channel);
  spurious   fraction of windows with a bearing farther than max(4 CRB, 2 deg) from every true
             path (each path's CRB at its own mean power).
Also: resolution of two equal-power paths 15 and 25 deg apart (10 and 50 ns excess delay).
Targets (issue 11): RMSE/CRB <= 1.1 (constant) / 1.2 (rayleigh) at >= 10 dB; detection >= 95 %
at 0 dB with 20 frames; spurious < 0.1 % of windows up to 40 dB (``--high-snr`` adds 35 and 40 dB).

Run: source tools/env.sh && python benchmarks/aoa_accuracy.py [--trials 200] [--frames 5 20 100]
     [--channels constant rayleigh realistic] [--jobs 2]
"""
from __future__ import annotations

import argparse
import multiprocessing
from dataclasses import dataclass

import numpy as np
from espargos_aoa.estimator import AoaConfig, AoaEstimator
from espargos_aoa.gains import compensate_gains
from espargos_driver.geometry import board_antenna_positions
from espargos_driver.sim.channel import ArrayChannel
from espargos_driver.sim.scenario import ChannelModel, Impairments, Reflection, Transmitter
from espargos_driver.wifi import GRIDS, SPEED_OF_LIGHT, CsiFormat, grid_center_hz

FMT = CsiFormat.HT40
FREQS_HZ = grid_center_hz(FMT, 6, 1) + GRIDS[FMT].indices * GRIDS[FMT].spacing_hz
VALID = np.isin(np.arange(FREQS_HZ.size), GRIDS[FMT].interpolated, invert=True)
POSITIONS = board_antenna_positions().reshape(-1, 3)
AZIMUTHS_DEG = (-60, -40, -20, 0, 20, 40, 60)
SNRS_DB = (0, 5, 10, 15, 20, 25, 30)
HIGH_SNRS_DB = (35, 40)


def steering(azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Stacked steering b ``(N, S)`` of the measured bins (elevation 0) and its azimuth derivative."""
    az = np.radians(azimuth_deg)
    u = np.array([np.cos(az), np.sin(az), 0.0])
    du = np.array([-np.sin(az), np.cos(az), 0.0])
    k = 2 * np.pi * FREQS_HZ[VALID] / SPEED_OF_LIGHT
    b = np.exp(1j * np.outer(POSITIONS @ u, k))
    return b, 1j * np.outer(POSITIONS @ du, k) * b


def crb_deg(azimuth_deg: float, snr_db: float, frames: int) -> float:
    """The stacked single-source stochastic CRB above, degrees (P = 1, sigma^2 = 10^(-snr/10))."""
    b, d = (v.reshape(-1) for v in steering(azimuth_deg))
    noise = 10 ** (-snr_db / 10)
    nb = np.vdot(b, b).real
    dpd = np.vdot(d, d).real - abs(np.vdot(b, d)) ** 2 / nb
    return float(np.degrees(np.sqrt(noise * (noise + nb) / (2 * frames * nb * dpd))))


def slepian_bangs_deg(azimuth_deg: float, snr_db: float, frames: int, subcarriers: int = 24) -> tuple[float, float]:
    """(closed form, numerical Slepian-Bangs) CRB on a subset of bins: an independent check of
    the formula, FIM = F tr(R^-1 dR R^-1 dR) with R = P b b^H + sigma^2 I."""
    b, d = steering(azimuth_deg)
    b, d = b[:, :subcarriers].reshape(-1), d[:, :subcarriers].reshape(-1)
    noise = 10 ** (-snr_db / 10)
    r = np.outer(b, b.conj()) + noise * np.eye(b.size)
    dr = np.outer(d, b.conj()) + np.outer(b, d.conj())
    ri_dr = np.linalg.solve(r, dr)
    numeric = np.degrees(1 / np.sqrt(frames * np.trace(ri_dr @ ri_dr).real))
    nb = np.vdot(b, b).real
    dpd = np.vdot(d, d).real - abs(np.vdot(b, d)) ** 2 / nb
    closed = np.degrees(np.sqrt(noise * (noise + nb) / (2 * frames * nb * dpd)))
    return float(closed), float(numeric)


def fold_front(azimuth_deg: float) -> float:
    """The direction a planar array in the y-z plane sees for an azimuth behind it."""
    az = (azimuth_deg + 180) % 360 - 180
    return 180 - az if az > 90 else (-180 - az if az < -90 else az)


@dataclass
class Window:
    csi: np.ndarray
    """complex ``(F, N, S)``"""
    paths_deg: list[float]
    """true directions: the direct path first"""
    path_gains_db: list[float]
    """mean power of each path relative to the direct one"""


class Generator:
    """Windows of one channel kind, seeded."""

    def __init__(self, kind: str, seed: int, channel: dict | None = None) -> None:
        self.kind = kind
        self.model = ChannelModel.from_value({"preset": "realistic", **(channel or {})})
        self.rng = np.random.default_rng(seed)
        self.array = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), self.rng)

    def window(self, azimuth_deg: float, snr_db: float, frames: int) -> Window:
        if self.kind == "realistic":
            tx = Transmitter(azimuth_deg=azimuth_deg, channel=self.model)
            out = []
            for _ in range(frames):
                z, gain_db = self.array.receive(tx, 0.0, FMT, 6, 1, snr_db)
                out.append(compensate_gains(z, gain_db, np.zeros_like(gain_db)))
            paths = [azimuth_deg] + [fold_front(a) for a in tx.channel.path_directions(azimuth_deg)]
            return Window(np.stack(out), paths, [0.0] + [p["gain_db"] for p in tx.channel.paths])
        b = np.exp(1j * np.outer(POSITIONS @ np.array([np.cos(np.radians(azimuth_deg)),
                                                       np.sin(np.radians(azimuth_deg)), 0.0]),
                                 2 * np.pi * FREQS_HZ / SPEED_OF_LIGHT))                      # (N, S)
        rng = self.rng
        if self.kind == "rayleigh":
            s = (rng.standard_normal(frames) + 1j * rng.standard_normal(frames)) / np.sqrt(2)
        else:
            s = np.exp(1j * rng.uniform(-np.pi, np.pi, frames))
        delay = rng.uniform(0, 50e-9, frames)
        common = np.exp(-2j * np.pi * np.outer(delay, FREQS_HZ - FREQS_HZ.mean()))              # (F, S)
        sigma = 10 ** (-snr_db / 20) / np.sqrt(2)
        noise = sigma * (rng.standard_normal((frames, *b.shape)) + 1j * rng.standard_normal((frames, *b.shape)))
        return Window(s[:, None, None] * b[None] * common[:, None, :] + noise, [azimuth_deg], [0.0])


def run_cell(args: tuple) -> dict:
    kind, snr_db, azimuth_deg, frames, trials, seed, overrides, channel = args
    gen = Generator(kind, seed, channel)
    truth = {"phase_noise_deg": gen.model.phase_noise_deg if kind == "realistic" else 0.0}
    estimator = AoaEstimator(AoaConfig(**{**truth, **overrides}), POSITIONS)
    bound = crb_deg(azimuth_deg, snr_db, frames)
    tol = max(4 * bound, 2.0)
    errors, sigmas, detected, spurious = [], [], 0, 0
    for _ in range(trials):
        w = gen.window(azimuth_deg, snr_db, frames)
        result = estimator.estimate(w.csi, np.ones(w.csi.shape[:2], bool), FREQS_HZ, VALID)
        got = [(np.degrees(b.azimuth_rad), np.degrees(b.azimuth_std_rad)) for b in result.bearings]
        near = [(abs(az - azimuth_deg), az, s) for az, s in got if abs(az - azimuth_deg) <= tol]
        if near:
            detected += 1
            _, az, s = min(near)
            errors.append(az - azimuth_deg)
            sigmas.append(s)
        tols = [max(4 * crb_deg(p, snr_db + g, frames), 2.0) for p, g in zip(w.paths_deg, w.path_gains_db)]
        spurious += any(all(abs(az - p) > t for p, t in zip(w.paths_deg, tols)) for az, _ in got)
    e, s = np.array(errors), np.array(sigmas)
    return {"kind": kind, "snr": snr_db, "az": azimuth_deg, "frames": frames, "trials": trials,
            "ratio": float(np.sqrt(np.mean(e ** 2)) / bound) if e.size else np.nan,
            "cov1": float(np.mean(np.abs(e) <= s)) if e.size else np.nan,
            "cov2": float(np.mean(np.abs(e) <= 2 * s)) if e.size else np.nan,
            "detect": detected / trials, "spurious": spurious / trials}


def resolution_rate(separation_deg: float, delay_ns: float, random_phase: bool, trials: int, frames: int,
                    seed: int) -> float:
    """Two equal-power paths ``separation_deg`` apart at 20 dB on the ideal channel (a direct path
    and a reflection with ``delay_ns`` excess delay, fixed or per-frame random phase): the fraction
    of windows with two bearings, each within half the separation of its own path."""
    rng = np.random.default_rng(seed)
    array = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), rng)
    estimator = AoaEstimator(AoaConfig(phase_noise_deg=0.0), POSITIONS)
    resolved = 0
    for _ in range(trials):
        first = rng.uniform(-60, 60 - separation_deg)
        tx = Transmitter(azimuth_deg=first, channel=ChannelModel.preset("ideal"), reflections=[
            Reflection(azimuth_deg=first + separation_deg, excess_delay_ns=delay_ns, gain_db=0.0,
                       random_phase=random_phase)])
        csi = np.stack([array.ota(tx, 0.0, FMT, 6, 1, 20.0) for _ in range(frames)])
        got = sorted(np.degrees(b.azimuth_rad) for b in
                     estimator.estimate(csi, np.ones(csi.shape[:2], bool), FREQS_HZ, VALID).bearings)
        half = separation_deg / 2
        resolved += any(abs(a - first) < half for a in got) and any(abs(a - first - separation_deg) < half for a in got)
    return resolved / trials


def table(cells: list[dict], key: str, snrs: tuple, fmt: str) -> None:
    print(f"  {key}")
    print("  SNR dB | " + " ".join(f"{az:>6}" for az in AZIMUTHS_DEG))
    for snr in snrs:
        row = {c["az"]: c[key] for c in cells if c["snr"] == snr}
        print(f"  {snr:>6} | " + " ".join(format(row[az], fmt) for az in AZIMUTHS_DEG))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=200, help="windows per cell with 5 or 20 frames")
    p.add_argument("--trials-100", type=int, default=100, help="windows per cell with 100 frames")
    p.add_argument("--frames", type=int, nargs="+", default=[5, 20, 100])
    p.add_argument("--channels", nargs="+", default=["constant", "rayleigh", "realistic"],
                   choices=["constant", "rayleigh", "realistic"])
    p.add_argument("--high-snr", action="store_true", help="add 35 and 40 dB rows (false-bearing check)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override AoaConfig defaults, e.g. mode=narrowband max_sources=2")
    p.add_argument("--channel-set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override fields of the realistic channel, e.g. phase_noise_deg=0 (numbers only)")
    args = p.parse_args()
    channel = {k: float(v) for k, v in (item.split("=", 1) for item in args.channel_set)}
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        default = getattr(AoaConfig(), key)
        overrides[key] = type(default)(value) if not isinstance(default, bool) else value.lower() == "true"
    closed, numeric = slepian_bangs_deg(20.0, 10.0, 20)
    print(f"CRB self-check (24 bins, az 20 deg, 10 dB, 20 frames): closed form {closed:.5f} deg, "
          f"numerical Slepian-Bangs {numeric:.5f} deg")
    cfg = AoaConfig(**overrides)
    print(f"estimator: AoaConfig() defaults{' with ' + ' '.join(args.set) if args.set else ''}, "
          f"mode {cfg.mode}, source_count {cfg.source_count}, "
          f"max_sources {cfg.max_sources}, uncertainty_floor {cfg.uncertainty_floor_deg} deg, "
          "phase_noise told the generator's")
    snrs = SNRS_DB + (HIGH_SNRS_DB if args.high_snr else ())
    jobs = [(kind, snr, az, frames, args.trials_100 if frames >= 100 else args.trials,
             args.seed + 1000 * i, overrides, channel)
            for i, (kind, frames, snr, az) in enumerate(
                (k, f, s, a) for k in args.channels for f in args.frames for s in snrs for a in AZIMUTHS_DEG)]
    with multiprocessing.Pool(args.jobs) as pool:
        cells = pool.map(run_cell, jobs, chunksize=1)
    print("\ntwo equal paths at 20 dB, 20 frames, ideal channel: resolved in (% of "
          f"{args.trials} windows)")
    for separation in (15.0, 25.0):
        for delay in (10.0, 50.0):
            rates = [resolution_rate(separation, delay, rp, args.trials, 20, args.seed) for rp in (False, True)]
            print(f"  {separation:.0f} deg apart, {delay:.0f} ns excess delay: fixed phase {100 * rates[0]:.0f} %, "
                  f"per-frame random phase {100 * rates[1]:.0f} %")
    for kind in args.channels:
        for frames in args.frames:
            part = [c for c in cells if c["kind"] == kind and c["frames"] == frames]
            print(f"\n{kind} channel, {frames} frames per window, {part[0]['trials']} windows per cell")
            for key, fmt in (("ratio", "6.2f"), ("cov1", "6.2f"), ("cov2", "6.2f"), ("detect", "6.2f"),
                             ("spurious", "6.3f")):
                table(part, key, snrs, fmt)
            at10 = [c["ratio"] for c in part if c["snr"] >= 10]
            c1 = [c["cov1"] for c in part]
            c2 = [c["cov2"] for c in part]
            print(f"  summary: worst RMSE/CRB at >= 10 dB {np.nanmax(at10):.2f}; 1-sigma coverage "
                  f"{np.nanmin(c1):.2f}..{np.nanmax(c1):.2f}; 2-sigma {np.nanmin(c2):.2f}..{np.nanmax(c2):.2f}; "
                  f"detection at 0 dB {min(c['detect'] for c in part if c['snr'] == 0):.3f}; "
                  f"spurious windows {sum(c['spurious'] * c['trials'] for c in part):.0f} of "
                  f"{sum(c['trials'] for c in part)}")


if __name__ == "__main__":
    main()
