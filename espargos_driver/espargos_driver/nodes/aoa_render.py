"""Console entry point: render a spatial spectrum and its bearings to a PNG, from a live topic or a bag.

aoa_render --namespace /espargos -o spectrum.png          # next spectrum on /espargos/spatial_spectrum
aoa_render --bag my_bag -o spectrum.png [--index -1]      # a spectrum recorded in a rosbag2 bag
... [--scenario config/sim_scenario.yaml | --truth 20]    # draw the true bearing too
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Render an espargos spatial spectrum and its bearings to a PNG.")
    p.add_argument("-o", "--output", default="spatial_spectrum.png", help="PNG file to write")
    p.add_argument("--namespace", default="/espargos", help="namespace of the aoa_node topics (live and bag)")
    p.add_argument("--mac", default="", help="only spectra of this transmitter MAC (aa:bb:cc:dd:ee:ff)")
    p.add_argument("--bag", help="read from this rosbag2 bag (directory) instead of the live topic")
    p.add_argument("--index", type=int, default=-1, help="with --bag: which matching spectrum (0 first, -1 last)")
    p.add_argument("--timeout", type=float, default=15.0, help="live: s to wait for a spectrum")
    p.add_argument("--dynamic-range", type=float, help="dB of spectrum shown (default: all of it, 30..80 dB)")
    p.add_argument("--truth", type=float, help="true azimuth to draw, deg")
    p.add_argument("--scenario", help="board simulator scenario YAML: draw the true azimuth of the spectrum's "
                                      "transmitter (static transmitters)")
    return p.parse_args(argv)


def scenario_truth(path: str, mac: bytes) -> float:
    """Azimuth (deg) of the transmitter ``mac`` in a board simulator scenario; ValueError if the
    scenario has no such static transmitter."""
    import yaml

    from ..sim.scenario import Scenario

    try:
        scenario = Scenario.from_file(path)
    except (OSError, TypeError, ValueError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read scenario {path}: {err}") from err
    for tx in scenario.transmitters:
        if tx.mac_bytes == mac:
            if tx.azimuth_rate_deg_s or tx.sweep_limit_deg is not None:
                raise ValueError(f"transmitter {tx.mac} moves in {path}: its true azimuth depends on scenario time")
            return tx.azimuth_deg
    raise ValueError(f"no transmitter {mac.hex(':')} in {path}")


def _matches(msg, mac: str) -> bool:
    return not mac or ":".join(f"{int(b):02x}" for b in msg.transmitter_mac) == mac.lower()


def _stamp(msg) -> tuple[int, int, bytes]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, bytes(int(b) for b in msg.transmitter_mac)


def from_bag(args: argparse.Namespace):
    """(spectrum, bearings or None) from a bag; ValueError with a reason if there is none."""
    from rosbags.highlevel import AnyReader
    from rosbags.highlevel.anyreader import AnyReaderError

    from ..bags import espargos_typestore

    ns = args.namespace.rstrip("/")
    try:
        with AnyReader([Path(args.bag)], default_typestore=espargos_typestore()) as reader:
            spectra, bearings = [], {}
            wanted = [c for c in reader.connections if c.topic in (f"{ns}/spatial_spectrum", f"{ns}/bearings")]
            if not any(c.topic.endswith("spatial_spectrum") for c in wanted):
                raise ValueError(f"no {ns}/spatial_spectrum topic in {args.bag} "
                                 f"(topics: {sorted({c.topic for c in reader.connections})})")
            for conn, _, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, conn.msgtype)
                if not _matches(msg, args.mac):
                    continue
                if conn.topic.endswith("spatial_spectrum"):
                    spectra.append(msg)
                else:
                    bearings[_stamp(msg)] = msg
    except (AnyReaderError, OSError) as err:
        raise ValueError(f"cannot read bag {args.bag}: {err}") from err
    if not spectra:
        raise ValueError(f"no spatial spectrum{' of ' + args.mac if args.mac else ''} in {args.bag}")
    try:
        spectrum = spectra[args.index]
    except IndexError:
        raise ValueError(f"--index {args.index} but the bag holds {len(spectra)} matching spectra") from None
    return spectrum, bearings.get(_stamp(spectrum))


def from_topic(args: argparse.Namespace):
    """(spectrum, bearings or None) live; waits for the bearings of the same update briefly."""
    import rclpy
    from espargos_msgs.msg import BearingArray, SpatialSpectrum

    rclpy.init()
    node = rclpy.create_node("aoa_render")
    ns = args.namespace.rstrip("/")
    spectra, bearings = [], {}
    node.create_subscription(SpatialSpectrum, f"{ns}/spatial_spectrum",
                             lambda m: spectra.append(m) if _matches(m, args.mac) else None, 10)
    node.create_subscription(BearingArray, f"{ns}/bearings", lambda m: bearings.__setitem__(_stamp(m), m), 10)
    try:
        deadline = time.monotonic() + args.timeout
        while not spectra and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not spectra:
            raise ValueError(f"no message on {ns}/spatial_spectrum within {args.timeout} s")
        settle = time.monotonic() + 0.5
        while _stamp(spectra[0]) not in bearings and time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.05)
        return spectra[0], bearings.get(_stamp(spectra[0]))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from espargos_aoa.render import render_png

    try:
        spectrum, bearings = from_bag(args) if args.bag else from_topic(args)
    except ValueError as err:
        print(f"aoa_render: {err}", file=sys.stderr)
        return 1
    try:
        truth = (scenario_truth(args.scenario, bytes(int(b) for b in spectrum.transmitter_mac)) if args.scenario
                 else args.truth)
    except ValueError as err:
        print(f"aoa_render: {err}", file=sys.stderr)
        return 1
    path = render_png(spectrum, bearings, args.output, args.dynamic_range, truth)
    count = len(bearings.bearings) if bearings is not None else 0
    print(f"aoa_render: wrote {path} ({count} bearing{'s' if count != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
