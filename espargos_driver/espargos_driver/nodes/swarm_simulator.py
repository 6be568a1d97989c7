"""Console entry point of the swarm simulator: nodes sending ADR-018 UDP datagrams to a collector.

    swarm_simulator --scenario swarm.yaml --target 127.0.0.1:5005 [--duration 20] [--truth truth.csv]
                    [--pty-node 2 --pty-link /tmp/ttyESP2]

``--truth`` writes the ground truth (scenario time, link, range, range rate) at 10 Hz. With
``--pty-node`` that node prints esp-csi text lines on a pseudo-terminal (its path is linked at
``--pty-link``) instead of sending datagrams, as a node on a USB serial port would.
"""
from __future__ import annotations

import argparse
import os
import pty
import socket
import sys
import time
from pathlib import Path

import yaml

from ..interrupt import stop_on_sigint
from ..sim.swarm import Network, SwarmScenario, SwarmSimulation

TICK_S = 0.002


def main(argv: list[str] | None = None) -> int:
    stop_on_sigint()
    p = argparse.ArgumentParser(description="Simulated ESP32 swarm nodes sending ADR-018 CSI datagrams over UDP.")
    p.add_argument("--scenario", required=True, help="YAML swarm scenario (see config/swarm_scenario.yaml)")
    p.add_argument("--target", default="127.0.0.1:5005", help="host:port of the collector (swarm_node)")
    p.add_argument("--duration", type=float, default=0.0, help="s to run (0: until Ctrl-C)")
    p.add_argument("--truth", help="CSV file for the ground truth (t, a, b, range_m, range_rate_m_s) at 10 Hz")
    p.add_argument("--pty-node", type=int, help="this node writes esp-csi text lines to a pseudo-terminal")
    p.add_argument("--pty-link", help="with --pty-node: symlink to create to the pseudo-terminal's path")
    argv = sys.argv[1:] if argv is None else argv
    if "--ros-args" in argv:
        argv = argv[:argv.index("--ros-args")]
    args = p.parse_args(argv)
    try:
        with open(args.scenario) as f:
            data = yaml.safe_load(f) or {}
        scenario = SwarmScenario.from_dict(data.get("swarm", data))
        host, port = args.target.rsplit(":", 1)
        target = (host, int(port))
    except (OSError, TypeError, ValueError, yaml.YAMLError) as err:
        print(f"swarm_simulator: bad scenario or target: {err}", file=sys.stderr)
        return 2
    sim = SwarmSimulation(scenario)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pty_fd = None
    if args.pty_node is not None:
        pty_fd, slave = pty.openpty()
        path = os.ttyname(slave)
        if args.pty_link:
            Path(args.pty_link).unlink(missing_ok=True)
            Path(args.pty_link).symlink_to(path)
        print(f"swarm_simulator: node {args.pty_node} writes text lines to {path}", flush=True)
    truth = open(args.truth, "w") if args.truth else None
    if truth:
        truth.write("t_s,a,b,range_m,range_rate_m_s\n")
    start = time.monotonic()
    next_truth = 0.0
    network = Network()
    try:
        while args.duration <= 0 or time.monotonic() - start < args.duration:
            now = time.monotonic() - start
            for report in sim.due(now):
                if report.rx == args.pty_node:
                    os.write(pty_fd, sim.text_line(report))
                else:
                    network.send(sim.delivery_time(report.t_s), sim.datagram(report))
            for datagram in network.arrived(now):
                sock.sendto(datagram, target)
            while truth and next_truth <= now:
                for link in scenario.links:
                    truth.write(f"{next_truth:.3f},{link.a},{link.b},{scenario.range_m(link.a, link.b, next_truth):.4f},"
                                f"{scenario.range_rate_m_s(link.a, link.b, next_truth):.4f}\n")
                truth.flush()
                next_truth += 0.1
            time.sleep(TICK_S)
    except KeyboardInterrupt:
        pass
    finally:
        if truth:
            truth.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
