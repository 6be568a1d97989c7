#!/usr/bin/env python3
"""Benchmark: CPU per swarm report of velocity_node and vital_signs_node, in-process.

The swarm system test's scenario (five links at 50 reports/s per direction, 32 s) runs through the
swarm simulator, swarm ingest and swarm_node's own message serialisation (node_frame_to_msg, the
bytes rclpy would publish); each node then takes every serialized CsiArray through its raw-bytes
callback, as its subscription hands them over, without DDS. First it counts what it offers (the
reports and their rate), then the CPU seconds of each node's callbacks per report (process time,
one core): what a node must have to keep up with the stream, without the executor's own overhead.

    source tools/env.sh && python benchmarks/swarm_consumers.py [--seconds 32]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from espargos_driver.messages import node_frame_to_msg  # noqa: E402
from espargos_driver.sim.swarm import SwarmScenario, SwarmSimulation  # noqa: E402
from espargos_driver.swarm.ingest import NodeConfig, SwarmIngest  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from test_swarm_system import MACS, SCENARIO  # noqa: E402


def reports(seconds: float) -> list[bytes]:
    """The serialized CsiArrays swarm_node would publish for ``seconds`` of the scenario."""
    sim = SwarmSimulation(SwarmScenario.from_dict(SCENARIO["swarm"]))
    ingest = SwarmIngest(Counter(), NodeConfig("esp32", 0, 0))
    published: Counter = Counter()
    out = []
    for report in sim.due(seconds):
        for frame in ingest.datagram(sim.datagram(report), "sim", report.t_s):
            stamp = Time(sec=int(report.t_s), nanosec=int(report.t_s % 1 * 1e9))
            out.append(serialize_message(node_frame_to_msg(frame, stamp, "swarm", published[frame.node])))
            published[frame.node] += 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=32.0)
    args = p.parse_args()
    data = reports(args.seconds)
    print(f"offered: {len(data)} serialized CsiArrays for {args.seconds:.0f} s of five links "
          f"({len(data) / args.seconds:.0f} reports/s)")
    rclpy.init()
    from espargos_aoa.nodes.velocity_node import VelocityNode
    from espargos_aoa.nodes.vital_signs_node import VitalSignsNode
    nodes = [f"node{i}={mac}" for i, mac in MACS.items()]
    for factory in (VelocityNode, VitalSignsNode):
        node = factory(parameter_overrides=[Parameter("nodes", value=nodes)])
        start = time.process_time()
        for message in data:
            node._on_csi_bytes(message)
        cpu = time.process_time() - start
        counted = {k: node.counters[k] for k in ("reports", "bad_csi_message", "input_lost")}
        print(f"{node.get_name()}: {1e6 * cpu / len(data):.0f} us CPU per report ({cpu:.1f} s for {args.seconds:.0f} s "
              f"of input: {100 * cpu / args.seconds:.0f} % of a core); {counted}")
        node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
