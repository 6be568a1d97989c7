"""Vital-signs sensitivity: breathing-rate error and presence against the swarm simulator's truth,
one factor at a time around a baseline, through the same core vital_signs_node runs (simulated
datagrams -> swarm ingest -> sanitise -> SwarmLinkVitals), without ROS. Also draws the README's
figure (``--plot``).

    source tools/env.sh && python benchmarks/vitals.py                       # the table
    python benchmarks/vitals.py --plot docs/vitals.png --seeds 1              # the figure only
    python benchmarks/vitals.py --array-cost                                 # CPU of an array's beams

Baseline: one bidirectional link 5 m long, a person 2 m from its line of sight breathing 15 /min
(5 % slow wander) with a 5 mm chest excursion, 50 exchanges/s, 25 dB SNR per subcarrier, 3 dB
AGC steps every 5 s; 30 s windows. Each row changes one factor; each cell pools ``--seeds`` runs
of ``--seconds`` (windows from 35 s on, every second). 'rate ok' is the share of still windows
whose rate is within 1 /min of the truth (a window without a rate counts as wrong); 'present' the
share said STILL; 'empty room' the share of windows said EMPTY without the person.

``--array-cost``: the CPU time of one window estimate of ArrayVitals (espargos_aoa.array_vitals)
per beam, on frames of the board simulator's channel (one transmitter, a breathing person, HT40,
50 frames/s, 8 antennas), after it counts the frames the window really holds.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from espargos_driver.sim.swarm import SwarmScenario, SwarmSimulation
from espargos_driver.swarm.ingest import NodeConfig, SwarmIngest
from espargos_driver.wifi import GRIDS

from espargos_aoa.sanitize import sanitize
from espargos_aoa.swarm_vitals import BIDIRECTIONAL, SwarmLinkVitals
from espargos_aoa.vitals import STILL, VitalsConfig

BASELINE = {"displacement_mm": 5.0, "distance_m": 2.0, "rate_hz": 50.0, "snr_db": 25.0, "breathing_bpm": 15.0}
FACTORS = {"displacement_mm": [2.0, 3.0, 5.0, 10.0], "distance_m": [1.0, 2.0, 3.0], "rate_hz": [10.0, 20.0, 50.0, 100.0],
           "snr_db": [15.0, 20.0, 25.0, 35.0], "breathing_bpm": [8.0, 15.0, 25.0]}


def scenario(seed: int, present: bool = True, **factors) -> SwarmScenario:
    f = {**BASELINE, **factors}
    people = [{"position": [2.3, f["distance_m"], 1.0], "breathing_rate_bpm": f["breathing_bpm"],
               "chest_displacement_m": f["displacement_mm"] * 1e-3, "seed": seed}] if present else []
    return SwarmScenario.from_dict({
        "rate_hz": f["rate_hz"], "snr_db": f["snr_db"], "seed": seed, "agc_step_db": 3.0,
        "nodes": [{"id": 1, "mac": "02:00:00:00:00:01", "waypoints": [[0, 0, 0, 1]]},
                  {"id": 2, "mac": "02:00:00:00:00:02", "waypoints": [[0, 5, 0, 1]]}],
        "links": [{"a": 1, "b": 2}], "people": people})


def run(sc: SwarmScenario, seconds: float, trace: dict | None = None) -> list:
    """(window end s, VitalsEstimate, true mean rate /min) of every window; ``trace`` (if given)
    collects the link's last window for the figure."""
    sim, ingest = SwarmSimulation(sc), SwarmIngest(Counter(), NodeConfig("esp32", 0, 0))
    link = SwarmLinkVitals(BIDIRECTIONAL, VitalsConfig(), 0.002)
    person = sc.people[0] if sc.people else None
    out, t = [], 0.0
    while t < seconds:
        t += 0.1
        for report in sim.due(t):
            for frame in ingest.datagram(sim.datagram(report), "sim", report.t_s):
                grid = GRIDS[frame.csi.format]
                valid = np.isin(np.arange(grid.size), frame.csi.interpolated, invert=True)
                s = sanitize(frame.csi.csi, grid.indices.astype(float), valid)
                link.add(frame.node == "node1", report.t_s, frame.report.sensor_time_us * 1e-6, s, grid.indices)
        for e in link.due(1.0):
            truth = person.mean_rate_bpm(e.t_end_s - e.window_s, e.t_end_s) if person and e.window_s else np.nan
            out.append((e.t_end_s, e, truth))
    if trace is not None:
        trace["link"] = link
    return out


def cell(seeds: list[int], seconds: float, **factors) -> tuple[float, float, float]:
    """(median |rate error| /min, share of still windows within 1 /min, share said STILL)."""
    errors, present = [], []
    for seed in seeds:
        for t_end, e, truth in run(scenario(seed, **factors), seconds):
            if t_end >= 35.0:
                present.append(e.state == STILL)
                errors.append(abs(e.rate_bpm - truth) if e.state == STILL else np.inf)
    errors = np.array(errors)
    finite = errors[np.isfinite(errors)]
    return (float(np.median(finite)) if finite.size else float("nan"), float(np.mean(errors <= 1.0)),
            float(np.mean(present)))


def empty_room(seeds: list[int], seconds: float, **factors) -> float:
    said = [e.state == "EMPTY" for seed in seeds for t, e, _ in run(scenario(seed, present=False, **factors), seconds)
            if t >= 35.0]
    return float(np.mean(said))


def table(seeds: list[int], seconds: float) -> None:
    print(f"seeds {seeds}, {seconds:.0f} s each, windows from 35 s; baseline {BASELINE}")
    print("| factor | value | median rate error (/min) | rate within 1 /min | said STILL | empty room said EMPTY |")
    print("|---|---|---|---|---|---|")
    for name, values in FACTORS.items():
        for value in values:
            median, within, present = cell(seeds, seconds, **{name: value})
            empty = empty_room(seeds, seconds, **{name: value}) if name in ("rate_hz", "snr_db") else float("nan")
            empty_text = "" if np.isnan(empty) else f"{100 * empty:.0f} %"
            print(f"| {name} | {value:g} | {median:.2f} | {100 * within:.0f} % | {100 * present:.0f} % | {empty_text} |",
                  flush=True)


def plot(path: str, seed: int, seconds: float) -> None:
    """The README figure: one window's motion signal, its periodogram with the breathing band, and
    the estimated rate with its 1-sigma against the truth over a run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from espargos_aoa.vitals import bin_frames, motion_signal

    trace: dict = {}
    sc = scenario(seed, breathing_bpm=12.0)
    results = run(sc, seconds, trace)
    vitals = trace["link"].vitals
    cfg = vitals.config
    t_end = results[-1][0]
    frames = [(t, z) for t, z in vitals.frames if t_end - cfg.window_s <= t < t_end]
    t = np.array([f[0] for f in frames])
    binned = bin_frames(t, np.stack([f[1] for f in frames]), t_end - cfg.window_s,
                        int(cfg.window_s * cfg.sample_rate_hz), cfg.sample_rate_hz)
    band = (cfg.min_rate_bpm / 60, cfg.max_rate_bpm / 60)
    signal = motion_signal(binned.means, cfg.sample_rate_hz, (0.7 * band[0], 1.0))
    chest = np.array([sc.people[0].chest_m(x) for x in t_end - cfg.window_s + np.arange(signal.size) / cfg.sample_rate_hz])
    signal = signal * np.sign(np.corrcoef(signal, chest)[0, 1])       # a principal axis has no sign of its own
    fig, axes = plt.subplots(3, 1, figsize=(8, 8))
    time_axis = np.arange(signal.size) / cfg.sample_rate_hz
    axes[0].plot(time_axis, signal / np.std(signal), label="motion signal (CSI, normalised, sign aligned)")
    axes[0].plot(time_axis, (chest - chest.mean()) / np.std(chest), "--", label="true chest displacement (normalised)")
    axes[0].set(xlabel="s in the last window", title="breathing in the product of both directions' CSI")
    axes[0].legend(loc="upper right", fontsize=8)
    power = np.abs(np.fft.rfft((signal - signal.mean()) * np.hanning(signal.size), 8 * signal.size)) ** 2
    freqs = 60 * np.fft.rfftfreq(8 * signal.size, 1 / cfg.sample_rate_hz)
    axes[1].semilogy(freqs, power)
    axes[1].axvspan(cfg.min_rate_bpm, cfg.max_rate_bpm, alpha=0.15, label="breathing band")
    axes[1].set(xlim=(0, 150), xlabel="/min", title="periodogram of that window")
    axes[1].legend(fontsize=8)
    still = [(x, e, truth) for x, e, truth in results if e.state == STILL]
    axes[2].errorbar([x for x, _, _ in still], [e.rate_bpm for _, e, _ in still],
                     yerr=[e.rate_std_bpm for _, e, _ in still], fmt=".", label="estimate, 1-sigma")
    axes[2].plot([x for x, _, _ in still], [truth for _, _, truth in still], "k-", label="truth (window mean)")
    axes[2].set(xlabel="s", ylabel="breaths /min", title="breathing rate, 30 s windows")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def array_cost(beams: int = 7, rate_hz: float = 50.0) -> None:
    import time

    from espargos_driver.geometry import board_antenna_positions
    from espargos_driver.sim.channel import ArrayChannel
    from espargos_driver.sim.person import PersonSpec
    from espargos_driver.sim.scenario import ChannelModel, Impairments, Transmitter
    from espargos_driver.wifi import CsiFormat, grid_center_hz

    from espargos_aoa.array_vitals import ArrayVitals

    fmt = CsiFormat.HT40
    freqs = grid_center_hz(fmt, 6, 1) + GRIDS[fmt].indices * GRIDS[fmt].spacing_hz
    channel = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), np.random.default_rng(1))
    tx = Transmitter(azimuth_deg=-20.0, distance_m=6.0, channel=ChannelModel(fading="none", paths=[]))
    people = [PersonSpec(position=[1.6, 1.2, 0.0])]
    vitals = ArrayVitals(VitalsConfig(), board_antenna_positions().reshape(-1, 3), np.radians(np.linspace(-60, 60, beams)))
    valid = np.ones(len(freqs), bool)
    for i in range(int(35 * rate_hz)):
        z, _ = channel.receive(tx, i / rate_hz, fmt, 6, 1, 25.0, people)
        vitals.add(i / rate_hz, z, freqs, valid)
    frames = len(vitals.frames.window(35.0)[0])
    repeats = 20
    start = time.process_time()
    for k in range(repeats):
        vitals.estimate(35.0 - 0.01 * k)
    per_estimate = (time.process_time() - start) / repeats
    print(f"window of {frames} frames ({VitalsConfig().window_s:.0f} s at {rate_hz:.0f} frames/s), {beams} beams: "
          f"{1e3 * per_estimate:.0f} ms CPU per estimate, {1e3 * per_estimate / beams:.1f} ms per beam; "
          f"at one estimate per second {100 * per_estimate:.0f} % of a core per transmitter")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=70.0)
    p.add_argument("--plot", help="write the README figure to this PNG and skip the table")
    p.add_argument("--array-cost", action="store_true", help="measure the CPU of an array's beams and skip the table")
    args = p.parse_args()
    if args.array_cost:
        array_cost()
    elif args.plot:
        plot(args.plot, args.seeds[0], 100.0)
    else:
        table(args.seeds, args.seconds)


if __name__ == "__main__":
    main()
