"""ROS 2 node for single-antenna ESP32 / ESP32-C5 / ESP32-C6 swarm nodes: UDP, serial or file -> CsiArray."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_aoa.diagnostic_counters import CounterWarnings
from espargos_aoa.common_messages import csi_qos, diagnostic_status
from espargos_aoa.runtime import run_node
from espargos_msgs.msg import CsiArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..diagnostic_counters import OTHER_PREFIX, SWARM_COUNTERS
from ..messages import node_frame_to_msg
from ..swarm.ingest import NodeConfig, SwarmIngest
from ..swarm.sources import FileSource, SerialSource, Source, UdpSource
from .managed import ManagedDriverNode

TRANSPORTS = ("udp", "serial", "file")


def _desc(text: str, **ranges) -> ParameterDescriptor:
    return ParameterDescriptor(description=text, read_only=True, **ranges)


def _node_map(entries: list[str], what: str) -> dict[str, str]:
    """["node3:c6", ...] -> {"node3": "c6"}; ValueError naming the bad entry."""
    out = {}
    for entry in entries:
        if entry.strip():
            name, sep, value = entry.rpartition(":")
            if not sep or not name or not value:
                raise ValueError(f"{what}: expected '<node>:<value>', got {entry!r}")
            out[name] = value
    return out


class SwarmNode(ManagedDriverNode):
    """Thin managed shell around SwarmIngest and one source (see nodes.managed)."""

    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("swarm_node", **node_options)
        p = self.declare_parameter
        p("transport", "udp", _desc("udp, serial or file"))
        p("udp_host", "0.0.0.0", _desc("address to receive node datagrams on"))
        p("udp_port", 5005, _desc("UDP port of the nodes' datagrams", integer_range=[IntegerRange(from_value=0, to_value=65535)]))
        p("keepalive_rate", 0.0, _desc("ICMP echo requests per second to every node address seen over UDP, to hold "
                                       "the nodes' CSI rate up (0: off)",
                                       floating_point_range=[FloatingPointRange(from_value=0.0, to_value=200.0)]))
        p("serial_port", "/dev/ttyUSB0", _desc("serial device of one node (text lines)"))
        p("baud", 921600, _desc("serial baud rate", integer_range=[IntegerRange(from_value=300, to_value=10_000_000)]))
        p("file", "", _desc("log file of text lines (offline replay)"))
        p("file_rate", 0.0, _desc("lines per second when reading a file (0: as fast as possible)",
                                  floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1e6)]))
        p("node_name", "", _desc("name of the node behind a serial port or file (default: its file name)"))
        p("chip", "esp32", _desc("chip family of the nodes: esp32 (ESP32/S2/S3/C3), c5 (C5/C61), c6"))
        p("secondary_channel", 0, _desc("secondary channel of the nodes where reports do not say: +1, -1, 0"))
        p("channel", 0, _desc("channel of the nodes where reports do not say (0: unknown)"))
        p("node_chips", [""], _desc("per-node chip family, e.g. ['node3:c6']"))
        p("node_secondary", [""], _desc("per-node secondary channel, e.g. ['node3:-1']"))
        p("allow", [""], _desc("allowlist (empty: all). IP addresses: only datagrams from these are parsed; node "
                               "names or transmitter MACs: only reports of these are used"))
        p("node_timeout", 5.0, _desc("s of silence after which a node counts as lost",
                                     floating_point_range=[FloatingPointRange(from_value=0.1, to_value=3600.0)]))
        p("frame_id", "swarm_node", _desc("TF frame put in CsiArray headers"))
        self.ingest = self._make_ingest()
        self.source: Source | None = None
        self.csi_pub = None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_counts: Counter = Counter()
        self._last_diag = time.monotonic()
        self._warnings = CounterWarnings(SWARM_COUNTERS)
        self.create_timer(1.0, self._tick)
        self.autostart()

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _make_ingest(self) -> SwarmIngest:
        """The report decoder from the parameters; ValueError if they cannot work."""
        g = self._param
        if g("transport") not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {g('transport')!r}")
        if g("transport") == "file" and not g("file"):
            raise ValueError("transport file needs the parameter file")
        default = NodeConfig(g("chip"), g("secondary_channel"), g("channel"))
        default.validate()
        chips = _node_map(g("node_chips"), "node_chips")
        secondaries = _node_map(g("node_secondary"), "node_secondary")
        nodes = {}
        for name in set(chips) | set(secondaries):
            try:
                config = NodeConfig(chips.get(name, default.chip), int(secondaries.get(name, default.secondary)),
                                    default.channel)
            except ValueError as err:
                raise ValueError(f"node_secondary of {name}: {err}") from err
            config.validate()
            nodes[name] = config
        self.frame_id = g("frame_id")
        self.node_timeout = g("node_timeout")
        return SwarmIngest(self.counters, default, nodes, {a for a in g("allow") if a.strip()})

    def _open_source(self) -> Source:
        """The configured input, opened (UDP port bound); ValueError if it cannot be."""
        g, log = self._param, self.get_logger().info
        if g("transport") == "udp":
            try:
                return UdpSource(g("udp_host"), g("udp_port"), self._feed_datagram, self.counters, log,
                                 g("keepalive_rate"))
            except OSError as err:
                raise ValueError(f"cannot receive on UDP {g('udp_host')}:{g('udp_port')}: {err}") from err
        if g("transport") == "serial":
            return SerialSource(g("serial_port"), g("baud"), g("node_name") or Path(g("serial_port")).name,
                                self._feed_line, self.counters, log)
        return FileSource(g("file"), g("file_rate"), g("node_name") or Path(g("file")).stem,
                          self._feed_line, self.counters, log)

    # --- lifecycle ---------------------------------------------------------------------
    def configure(self) -> None:
        """Check the parameters, make the report decoder and the csi publisher."""
        self.ingest = self._make_ingest()
        self.csi_pub = self.create_lifecycle_publisher(CsiArray, "csi",
                                                       csi_qos())
        self.published: dict[str, int] = {}
        """CsiArrays published per node (source_id): the next one's source_sequence."""

    def activate(self) -> None:
        """Open the input (bind the UDP port, open the serial port or file) and read it."""
        self.source = self._open_source()
        self.source.start()

    def deactivate(self) -> None:
        """Stop reading; the UDP port is closed (another process may take it)."""
        source, self.source = self.source, None
        if source is not None:
            source.stop()
            self.get_logger().info("deactivated: input closed")

    def _feed_datagram(self, data: bytes, source: str, now: float) -> None:
        frames = self.ingest.datagram(data, source, now)
        for frame in frames:
            self._publish(frame)
        keepalive = getattr(self.source, "keepalive", None)             # self.source is None while deactivating
        if frames and keepalive is not None:
            keepalive.heard(source.split(":")[1])

    def _feed_line(self, line: bytes, source: str, now: float) -> None:
        frame = self.ingest.line(line, source, now)
        if frame is not None:
            self._publish(frame)

    def _publish(self, frame) -> None:
        """Called on the reader thread; after Ctrl-C the context goes away under it: frames are then dropped."""
        try:
            number = self.published.get(frame.node, 0)
            self.csi_pub.publish(node_frame_to_msg(frame, self.get_clock().now().to_msg(), self.frame_id, number))
            self.published[frame.node] = number + 1
        except Exception:
            if self.context.ok():
                raise

    def _tick(self) -> None:
        for node in self.ingest.lost(time.time(), self.node_timeout):
            self.get_logger().warning(f"{node}: no report for {self.node_timeout:.1f} s (lost)")
        now = time.monotonic()
        counts = Counter(self.counters)
        rate = (counts["reports"] - self._last_counts["reports"]) / max(now - self._last_diag, 1e-3)
        self._last_counts, self._last_diag = counts, now
        errors = {k: counts.get(k, 0) for k in SWARM_COUNTERS}
        for key, new in self._warnings.due(errors, now):
            detail = self.ingest.last_error if self.ingest.last_error and self.ingest.last_error.reason == key else None
            self.get_logger().warning(f"{key}: {new} new ({SWARM_COUNTERS[key]}" + (f"; {detail})" if detail else ")"))
        source = self.source
        dead = source is not None and source.dead
        if dead:
            self.get_logger().error(f"the reader thread died ({source.state_detail}); restarting it")
            source.restart_if_dead()
        other = {k: v for k, v in counts.items() if k.startswith(OTHER_PREFIX)}
        nodes = self.ingest.nodes_heard()
        state = source.state if source is not None else f"{self.lifecycle_state}: not reading"
        detail = source.state_detail if source is not None else ""
        values = {"lifecycle_state": self.lifecycle_state, "source": state, "source_detail": detail,
                  "reports_per_s": f"{rate:.1f}", "reports": counts["reports"],
                  "nodes": ",".join(nodes), "keepalive_sent": counts["keepalive_sent"],
                  **errors, **other}
        if dead:
            level = DiagnosticStatus.ERROR
        elif source is not None and source.state in ("receiving", "reading", "finished"):
            level = DiagnosticStatus.OK
        else:
            level = DiagnosticStatus.WARN
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(f"espargos_swarm: {self.get_fully_qualified_name()}", detail, level,
                                        f"{state}; {len(nodes)} nodes", values)]
        self.diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(SwarmNode, "espargos swarm_node", args)
