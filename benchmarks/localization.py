"""Localisation figures: error CDFs of the two scenes over seeds, and positions per CPU second.

    source tools/env.sh && python benchmarks/localization.py                 # all four parts
    python benchmarks/localization.py --part room --seeds 1 2 3 --seconds 30 [--room-method spectrum_grid]
    python benchmarks/localization.py --part drone --seeds 1 2 3 --seconds 20

* ``room``: config/room.yaml over DDS, every node in its own process (as localize.launch.py
  starts them): four simulated boards at the walls of a 10 x 8 m room whose walls reflect, a static
  and a walking transmitter; errors against the scene's truth at each position's stamp, once both
  transmitters are located. ``--frame-rate`` and the aoa_node rates as in test/test_localize.py.
* ``drone``: config/drone.yaml over DDS, every node in its own process: one simulated board on a
  drone flying 20 m at 2 m/s, there and back, past an access point 10 m off its line, scene_pose
  publishing the drone's odometry; errors from 5 s after the first bearing (10 m flown), with
  drone.yaml's locator parameters and with ``--drone-locator`` overrides (the noise the simulated
  drone really has: no mount, odometry or calibration error).
* ``flight``: the same flight in the pure core: bearings from the truth with Gaussian errors of
  ``--bearing-std`` deg reported honestly; errors once the platform has covered 10 m.
* ``throughput``: the pure core fusing 4 arrays x 10 transmitters at 5 bearings/s each: positions
  and bearings per CPU second; and the same with the spectrum grid (looks per CPU second).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from process_stats import ROOT, installed_executables, isolate_ros_graph
from scipy.stats import chi2

CONFIG = ROOT / "espargos_driver" / "config"
BAND_2D = chi2.ppf([0.025, 0.975], 2)


def summary(errors: list[float], nees: list[float]) -> str:
    e, n = np.array(errors), np.array(nees)
    inside = np.mean((n >= BAND_2D[0]) & (n <= BAND_2D[1])) if len(n) else float("nan")
    below = np.mean(n < BAND_2D[0]) if len(n) else float("nan")
    return (f"n {len(e)}, median {np.median(e):.3f} m, R95 {np.percentile(e, 95):.3f} m, max {e.max():.3f} m, "
            f"NEES in 95 % band {100 * inside:.0f} % (below it, cautious: {100 * below:.0f} %)")


def scene_run(rig_name: str, seed: int, seconds: float, workdir: Path, frame_rate: float | None = None,
              locator: dict | None = None, after_first_bearing: float | None = None) -> dict[str, tuple[list, list]]:
    """One run of config/``rig_name`` (a robot YAML with a simulated scene) over DDS, every node in its
    own process; per MAC (horizontal errors m, horizontal NEES) over ``seconds`` of position stamps.
    They are judged from once every transmitter is located, or ``after_first_bearing`` s after the
    first bearing. ``locator`` overrides the rig's locator parameters."""
    import rclpy
    from espargos_driver.graph import process_arguments, read_yaml, robot_graph
    from espargos_driver.sim.scene import Scene
    from espargos_msgs.msg import BearingArray, TransmitterPositionArray

    rig = yaml.safe_load((CONFIG / rig_name).read_text())
    scene = yaml.safe_load((CONFIG / rig["robot"]["scene"]).read_text())
    scene["scenario"]["seed"] = seed
    if frame_rate is not None:
        scene["scenario"].update(frame_rate_hz=frame_rate, reference_rate_hz=frame_rate)
    (workdir / "scene.yaml").write_text(yaml.safe_dump(scene))
    rig["robot"]["scene"] = str(workdir / "scene.yaml")
    rig["robot"]["locator"].update(locator or {})
    params = yaml.safe_load((CONFIG / rig["robot"]["arrays"][0].get("config", "board.yaml")).read_text())
    if frame_rate is not None:
        params["/**/aoa_node"]["ros__parameters"].update(update_rate=5.0, window_frames=8, min_frames=4)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for i, array in enumerate(rig["robot"]["arrays"]):
        array.update(config=str(workdir / "params.yaml"), sim_http_port=18430 + i, sim_stream_port=18530 + i)
    (workdir / "rig.yaml").write_text(yaml.safe_dump(rig))
    graph = robot_graph(read_yaml(workdir / "rig.yaml", "rig"), ROOT / "espargos_driver")
    namespace = rig["robot"]["namespace"]
    paths = {t.mac: t.path for t in Scene.from_file(workdir / "scene.yaml").transmitters}
    procs = []
    for i, spec in enumerate(graph.nodes):
        exe = installed_executables("espargos_aoa" if spec.package == "espargos_aoa" else "espargos_driver") / spec.executable
        procs.append(subprocess.Popen([str(exe), *process_arguments(spec, workdir, i)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
    fixes: dict[str, list] = {mac: [] for mac in paths}
    first_bearing: list[float] = []
    rclpy.init()
    node = rclpy.create_node("localization_benchmark")

    def on_positions(msg) -> None:
        for p in msg.positions:
            mac = ":".join(f"{b:02x}" for b in p.transmitter_mac)
            stamp = p.header.stamp.sec + p.header.stamp.nanosec * 1e-9
            fixes[mac].append((stamp, np.array([p.position.x, p.position.y]), np.array(p.covariance).reshape(3, 3)))

    def on_bearings(msg) -> None:
        if not first_bearing and msg.bearings:
            first_bearing.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    node.create_subscription(TransmitterPositionArray, f"/{namespace}/positions", on_positions, 100)
    for array in rig["robot"]["arrays"]:
        node.create_subscription(BearingArray, f"/{namespace}/{array['name']}/bearings", on_bearings, 10)
    try:
        deadline = time.monotonic() + 120
        while not all(fixes.values()) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if after_first_bearing is not None:
            start = first_bearing[0] + after_first_bearing if first_bearing else np.inf
        else:
            start = max(f[0][0] for f in fixes.values()) if all(fixes.values()) else np.inf
        deadline = time.monotonic() + 3 * seconds + (after_first_bearing or 0.0)
        while time.monotonic() < deadline and not all(f[-1][0] > start + seconds for f in fixes.values() if f):
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        for p in procs:
            os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"warning: {Path(p.args[0]).name} did not stop within 15 s of SIGINT: killed", flush=True)
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    out = {}
    for mac, path in paths.items():
        judged = [(t, pos, cov) for t, pos, cov in fixes[mac] if start <= t <= start + seconds]
        errors = [pos - path.position(t)[:2] for t, pos, _ in judged]
        out[mac] = ([float(np.linalg.norm(e)) for e in errors],
                    [float(e @ np.linalg.solve(cov[:2, :2], e)) for e, (_, _, cov) in zip(errors, judged)])
    return out


def pooled_runs(label: str, seeds: list[int], run) -> None:
    """Print ``run(seed, workdir)``'s errors per seed and MAC, then pooled over the seeds."""
    isolate_ros_graph()
    pooled: dict[str, tuple[list, list]] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(seed, Path(tmp))
        for mac, (errors, nees) in result.items():
            print(f"{label} seed {seed} {mac}: {summary(errors, nees)}", flush=True)
            pooled.setdefault(mac, ([], []))
            pooled[mac][0].extend(errors)
            pooled[mac][1].extend(nees)
    for mac, (errors, nees) in pooled.items():
        print(f"{label} all seeds {mac}: {summary(errors, nees)}", flush=True)


def flight(seed: int, bearing_std_deg: float) -> tuple[list, list]:
    """Horizontal errors (m) and NEES of the positions once the platform has covered 10 m."""
    from espargos_aoa.locate import BearingObservation, Locator, LocatorConfig
    from espargos_aoa.poses import ArrayPose

    rng = np.random.default_rng(seed)
    sigma = np.radians(bearing_std_deg)
    loc = Locator(LocatorConfig(motion_model="constant_position", position_noise=0.0, height=1.0, height_std=0.5))
    loc.set_mount("drone", ArrayPose.from_xyz_rpy((0.0, 0.0, 0.0), (0.0, 0.0, np.pi / 2)))
    truth = np.array([10.0, 10.0, 1.0])
    errors, nees = [], []
    for k in range(101):                                   # 20 m at 2 m/s, 10 bearings/s
        t = 0.1 * k
        loc.add_platform_pose(t, ArrayPose.from_xyz_rpy((2.0 * t, 0.0, 1.0), (0.0, 0.0, 0.0)))
        az = loc.pose("drone", t).bearing_to(truth)[0] + sigma * rng.standard_normal()
        loc.add(BearingObservation(t, "drone", "ap", az, sigma))
        for e in loc.fuse():
            if e.observable and 2.0 * e.stamp >= 10.0:
                err = e.position[:2] - truth[:2]
                errors.append(float(np.linalg.norm(err)))
                nees.append(float(err @ np.linalg.solve(e.covariance[:2, :2], err)))
    return errors, nees


def throughput(seconds: float = 60.0) -> str:
    """Pure core: 4 arrays x 10 static transmitters, 5 bearings/s each, ``seconds`` of stamp time."""
    from espargos_aoa.locate import BearingObservation, Locator, LocatorConfig
    from espargos_aoa.poses import ArrayPose

    rng = np.random.default_rng(1)
    walls = {"s": ((5, 0, 1.2), np.pi / 2), "n": ((5, 8, 1.2), -np.pi / 2), "w": ((0, 4, 1.2), 0.0),
             "e": ((10, 4, 1.2), np.pi)}
    poses = {k: ArrayPose.from_xyz_rpy(xyz, (0, 0, yaw)) for k, (xyz, yaw) in walls.items()}
    transmitters = {f"tx{i}": np.array([rng.uniform(2, 8), rng.uniform(2, 6), 1.2]) for i in range(10)}
    observations = []
    for k in range(int(seconds * 5)):
        for j, (name, pose) in enumerate(poses.items()):
            for mac, truth in transmitters.items():
                az = pose.bearing_to(truth)[0] + np.radians(1.0) * rng.standard_normal()
                observations.append(BearingObservation(0.2 * k + 0.01 * j, name, mac, az, np.radians(1.0), window_span=0.4))
    loc = Locator(LocatorConfig())
    for name, pose in poses.items():
        loc.set_static_pose(name, pose)
    positions = 0
    cpu = time.process_time()
    for obs in observations:
        loc.add(obs)
        positions += len(loc.fuse())
    cpu = time.process_time() - cpu
    return (f"{len(observations)} bearings ({len(observations) / seconds:.0f}/s of stamp time) fused in {cpu:.2f} CPU s: "
            f"{len(observations) / cpu:.0f} bearings and {positions / cpu:.0f} position updates per CPU second "
            f"({100 * cpu / seconds:.1f} % of a core at this rate)")


def grid_throughput(seconds: float = 20.0) -> str:
    """Pure core, method spectrum_grid: 4 arrays x 10 static transmitters, 5 looks/s each (a spectrum on
    aoa_node's 0.5 deg grid and one bearing), over the 10 x 8 m room at 0.1 m, a fit per transmitter
    every 0.2 s as locator_node does; looks per CPU second."""
    from espargos_aoa.locate import BearingObservation, Locator, LocatorConfig
    from espargos_aoa.poses import ArrayPose
    from espargos_aoa.spectrum_grid import GridConfig, Look, SpectrumGrid

    rng = np.random.default_rng(1)
    walls = {"s": ((5, 0, 1.2), np.pi / 2), "n": ((5, 8, 1.2), -np.pi / 2), "w": ((0, 4, 1.2), 0.0),
             "e": ((10, 4, 1.2), np.pi)}
    loc = Locator(LocatorConfig(height=1.2))
    for name, (xyz, yaw) in walls.items():
        loc.set_static_pose(name, ArrayPose.from_xyz_rpy(xyz, (0, 0, yaw)))
    grid = SpectrumGrid(loc, GridConfig(grid_bounds=[0.0, 10.0, 0.0, 8.0]))
    azimuths = np.radians(np.arange(-90.0, 90.01, 0.5))
    transmitters = {f"tx{i}": np.array([rng.uniform(2, 8), rng.uniform(2, 6), 1.2]) for i in range(10)}
    looks = []
    for k in range(int(seconds * 5)):
        for j, name in enumerate(walls):
            pose = loc.static_poses[name]
            for mac, truth in transmitters.items():
                az = pose.bearing_to(truth)[0]
                power = 10 * np.log10(1 / (1 + ((azimuths - az) / np.radians(1.0)) ** 2) + 1e-3)
                stamp = 0.2 * k + 0.01 * j
                bearing = BearingObservation(stamp, name, mac, az + np.radians(0.2) * rng.standard_normal(), np.radians(0.2),
                                             window_span=0.4, window_frames=8)
                looks.append(Look(stamp, name, mac, azimuths, power - power.max(), [bearing], 0.4, 8))
    positions, fitted = 0, {}
    cpu = time.process_time()
    for look in looks:                     # as locator_node: a fit per transmitter per publish interval (0.2 s)
        if grid.add(look) and look.time - fitted.get(look.mac, -np.inf) >= 0.2:
            fitted[look.mac] = look.time
            positions += grid.locate(look.mac) is not None
    cpu = time.process_time() - cpu
    return (f"spectrum grid: {len(looks)} looks ({len(looks) / seconds:.0f}/s of stamp time, {len(grid.cells)} cells), "
            f"{positions} positions (a fit per transmitter every 0.2 s) in {cpu:.2f} CPU s: {len(looks) / cpu:.0f} looks per CPU "
            f"second ({100 * cpu / seconds:.0f} % of a core at this rate)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("room", "drone", "flight", "throughput", "all"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--seconds", type=float, default=30.0, help="room, drone: seconds judged per seed")
    p.add_argument("--frame-rate", type=float, default=20.0, help="room: frames/s per transmitter and board")
    p.add_argument("--room-method", choices=("kalman", "spectrum_grid"), default="kalman",
                   help="room: locator_node's method (spectrum_grid over the room's 10 x 8 m)")
    p.add_argument("--drone-locator", default="bearing_std_floor=0.3 motion_bias=0.0",
                   help="drone: locator overrides of the second run of each seed, 'name=value ...'")
    p.add_argument("--bearing-std", type=float, default=2.0, help="flight: bearing 1-sigma, deg")
    args = p.parse_args(argv)
    if args.part in ("room", "all"):
        room_locator = {"method": args.room_method}
        if args.room_method == "spectrum_grid":
            room_locator["grid_bounds"] = [0.0, 10.0, 0.0, 8.0]
        pooled_runs(f"room ({args.room_method})", args.seeds, lambda seed, tmp: scene_run(
            "room.yaml", seed, args.seconds, tmp, args.frame_rate, locator=room_locator))
    if args.part in ("drone", "all"):
        overrides = {k: float(v) for k, v in (item.split("=") for item in args.drone_locator.split())}
        pooled_runs("drone (drone.yaml)", args.seeds, lambda seed, tmp: scene_run(
            "drone.yaml", seed, args.seconds, tmp, after_first_bearing=5.0))
        pooled_runs(f"drone ({args.drone_locator})", args.seeds, lambda seed, tmp: scene_run(
            "drone.yaml", seed, args.seconds, tmp, locator=overrides, after_first_bearing=5.0))
    if args.part in ("flight", "all"):
        errors, nees = [], []
        for seed in args.seeds:
            e, n = flight(seed, args.bearing_std)
            errors += e
            nees += n
        print(f"flight ({len(args.seeds)} seeds, bearings {args.bearing_std} deg), after 10 m: {summary(errors, nees)}")
    if args.part in ("throughput", "all"):
        print("throughput:", throughput())
        print("throughput:", grid_throughput())
    return 0


if __name__ == "__main__":
    sys.exit(main())
