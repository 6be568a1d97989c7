"""Console entry point of the board simulator (not a ROS node: it is the board)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import yaml

from ..interrupt import stop_on_sigint
from ..layout import LayoutError, load_layout_file, single_board_layout
from ..sim.board import SimulatedRig
from ..sim.scenario import ChannelModel, Scenario, Transmitter
from ..sim.scene import Scene, board_scenario
from ..sim.server import BoardServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Simulated ESPARGOS board speaking the real wire protocol.")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8400, help="HTTP/WebSocket port (default 8400)")
    p.add_argument("--stream-port", type=int, default=53330, help="UDP stream source port (default 53330)")
    p.add_argument("--scenario", help="YAML scenario file (see config/sim_scenario.yaml)")
    p.add_argument("--scene", help="world scene YAML (see config/room_scene.yaml): transmitters and walls in a fixed "
                                   "frame; the board stands at --pose in it (scene time is wall-clock time)")
    p.add_argument("--pose", nargs=6, type=float, default=[0.0] * 6, metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                   help="with --scene: the board's pose in the scene frame, m and rad")
    p.add_argument("--combined", help="combined-array YAML (see config/combined_array.yaml): simulate all its boards, "
                                      "sharing one clock and reference signal, each on its host and ports")
    p.add_argument("--azimuth", type=float, help="single transmitter azimuth, degrees")
    p.add_argument("--elevation", type=float, default=0.0, help="single transmitter elevation, degrees")
    p.add_argument("--channel", choices=("realistic", "ideal"),
                   help="channel model of every transmitter (default: the scenario's; realistic without one): "
                        "realistic = fading, multipath, AGC, phase noise; ideal = constant direct path")
    p.add_argument("--snr", type=float, help="SNR per subcarrier, dB")
    p.add_argument("--rate", type=float, help="OTA frames per second per transmitter")
    p.add_argument("--seed", type=int, help="random seed of impairments and noise")
    p.add_argument("--api-major", type=int, default=3, help="API major version to claim (test older firmware)")
    p.add_argument("--fragment-size", type=int, default=0, help="split messages into fragments of this size")
    p.add_argument("--hostname", default="espargos-sim")
    p.add_argument("--precompute", type=int, default=0,
                   help="encode this many frames up front and replay them (throughput benchmarks; 4096, the "
                        "802.11 sequence space, makes the replay gap-free to the driver)")
    argv = sys.argv[1:] if argv is None else argv
    if "--ros-args" in argv:                      # started as a launch_ros Node: ROS arguments are not ours
        argv = argv[:argv.index("--ros-args")]
    return p.parse_args(argv)


def build_scenario(args: argparse.Namespace, clock_origin_s: float = 0.0) -> Scenario:
    """The scenario of the arguments; with ``--scene``, as the board at ``--pose`` sees the scene,
    scenario time zero being scene time ``clock_origin_s``."""
    if args.scene and args.scenario:
        raise ValueError("--scene and --scenario exclude each other (a scene holds its scenario section)")
    if args.scene and args.precompute:
        raise ValueError("--precompute replays frames and would freeze a scene's motion")
    if args.scene:
        scenario = board_scenario(Scene.from_file(args.scene), args.pose[:3], args.pose[3:], clock_origin_s)
    else:
        scenario = Scenario.from_file(args.scenario) if args.scenario else Scenario.from_dict({})
    if args.azimuth is not None:
        scenario.transmitters = [Transmitter(azimuth_deg=args.azimuth, elevation_deg=args.elevation)]
    if args.channel is not None:
        for tx in scenario.transmitters:
            tx.channel = ChannelModel.preset(args.channel)
    for name, attr in (("snr", "snr_db"), ("rate", "frame_rate_hz"), ("seed", "seed")):
        if getattr(args, name) is not None:
            setattr(scenario, attr, getattr(args, name))
    return scenario


def main(argv: list[str] | None = None) -> int:
    stop_on_sigint()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[board_simulator] %(message)s")
    t0, clock_origin_s = time.monotonic(), time.time()
    try:
        scenario = build_scenario(args, clock_origin_s)
    except (OSError, TypeError, ValueError, yaml.YAMLError) as err:
        print(f"board_simulator: bad scenario: {err}", file=sys.stderr)
        return 2
    try:
        layout = (load_layout_file(args.combined) if args.combined else
                  single_board_layout("board", args.host, args.http_port, args.stream_port))
    except LayoutError as err:
        print(f"board_simulator: bad combined-array file: {err}", file=sys.stderr)
        return 2
    rig = SimulatedRig(scenario, layout, hostname=args.hostname, api_major=args.api_major,
                       fragment_size=args.fragment_size)
    if args.precompute:
        rig.precompute(args.precompute)
        t0 = time.monotonic()
    try:
        servers = [BoardServer(board, spec.host, spec.http_port, spec.stream_port, t0)
                   for board, spec in zip(rig.boards, layout.boards)]
        asyncio.run(_serve(servers))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"board_simulator: cannot serve: {err}", file=sys.stderr)
        return 1
    return 0


async def _serve(servers: list[BoardServer]) -> None:
    await asyncio.gather(*(server.run() for server in servers))


if __name__ == "__main__":
    sys.exit(main())
