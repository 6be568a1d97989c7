"""Datagrams and lines from swarm nodes -> decoded single-antenna CSI frames, with counters.

Pure (no I/O, no ROS), like BoardReceiver: every input that cannot be used is counted under a
reason in ``counters`` and dropped; nothing raises out of ``datagram`` / ``line``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .binary import parse_datagram
from ..wifi import channel_center_hz, grid_center_hz
from .layout import CHIPS, NodeCsi, channel_of_mhz, decode_report
from .report import NodeReport, ReportError
from .text import LineParser



@dataclass
class NodeConfig:
    """What a node's reports do not say: its chip family, secondary channel and (fallback) channel."""

    chip: str = "esp32"
    secondary: int = 0
    channel: int = 0

    def validate(self) -> None:
        if self.chip not in CHIPS:
            raise ValueError(f"chip must be one of {CHIPS}, got {self.chip!r}")
        if self.secondary not in (-1, 0, 1):
            raise ValueError(f"secondary must be -1, 0 or 1, got {self.secondary}")
        if self.channel:
            channel_center_hz(self.channel)


@dataclass
class NodeFrame:
    """One decoded report: ``node`` names the receiving node (binary: ``node<id>``, text: its source)."""

    node: str
    report: NodeReport
    csi: NodeCsi
    channel: int
    secondary: int
    center_frequency_hz: float
    """Centre of the grid (40 MHz centre for HT40)."""
    host_time: float


@dataclass
class SwarmIngest:
    counters: Counter
    default: NodeConfig = field(default_factory=NodeConfig)
    nodes: dict[str, NodeConfig] = field(default_factory=dict)
    allow: set[str] = field(default_factory=set)
    """Node names, transmitter MACs (aa:bb:cc:dd:ee:ff) or sender IP addresses; empty: everything."""
    last_seen: dict[str, float] = field(default_factory=dict)
    last_error: ReportError | None = None
    _parsers: dict[str, LineParser] = field(default_factory=dict)

    def datagram(self, data: bytes, source: str, now: float) -> list[NodeFrame]:
        """One UDP datagram: text lines if it starts as printable text (CSI_DATA, type, ...), else
        a binary frame (whose magic says what it is)."""
        self.counters["datagrams"] += 1
        if not _looks_like_text(data[:16]):
            try:
                report = parse_datagram(data)
            except ReportError as err:
                self._fail(err)
                return []
            frame = self._frame(f"node{report.node_id}", report, now, _address(source))
            return [frame] if frame else []
        return [f for line in data.splitlines() if (f := self.line(line, source, now)) is not None]

    def line(self, raw: bytes, source: str, now: float) -> NodeFrame | None:
        """One text line from ``source`` (serial port, file or UDP sender), which names the node."""
        self.counters["lines"] += 1
        try:
            report = self._parsers.setdefault(source, LineParser()).parse(raw)
        except ReportError as err:
            self._fail(err)
            return None
        if report is None:
            self.counters["other_lines"] += 1
            return None
        return self._frame(source, report, now, _address(source))

    def lost(self, now: float, timeout_s: float) -> list[str]:
        """Nodes silent for longer than ``timeout_s`` (each counted once as node_lost, then forgotten)."""
        gone = [n for n, t in self.last_seen.items() if now - t > timeout_s]
        for node in gone:
            del self.last_seen[node]
            self.counters["node_lost"] += 1
        return gone

    def _fail(self, err: ReportError) -> None:
        self.counters[err.reason] += 1
        self.last_error = err

    def _frame(self, node: str, report: NodeReport, now: float, address: str = "") -> NodeFrame | None:
        mac = ":".join(f"{b:02x}" for b in report.transmitter_mac) if report.transmitter_mac else ""
        if self.allow and not self.allow & {node, mac, address}:
            self.counters["not_allowed"] += 1
            return None
        config = self.nodes.get(node, self.default)
        try:
            channel = report.channel or (channel_of_mhz(report.freq_mhz) if report.freq_mhz else config.channel)
            if not channel:
                raise ReportError("no_channel", f"{node}: report carries no channel and none is configured")
            csi = decode_report(report, config.chip, config.secondary)
            secondary = report.secondary if report.secondary is not None else config.secondary
            centre = grid_center_hz(csi.format, channel, secondary)
        except ValueError as err:
            err = err if isinstance(err, ReportError) else ReportError("bad_channel", str(err))
            self._fail(err)
            return None
        self.counters["reports"] += 1
        self.last_seen[node] = now
        return NodeFrame(node, report, csi, channel, secondary, centre, now)


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _address(source: str) -> str:
    """The sender IP of a ``udp:<ip>:<port>`` source name, else ""."""
    return source.split(":")[1] if source.startswith("udp:") else ""
