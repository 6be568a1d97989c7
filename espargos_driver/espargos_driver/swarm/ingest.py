"""Datagrams and lines from swarm nodes -> decoded single-antenna CSI frames, with counters.

Pure (no I/O, no ROS), like BoardReceiver: every input that cannot be used is counted under a
reason in ``counters`` and dropped; nothing raises out of ``datagram`` / ``line`` (an exception
no parser declared is counted as ``unexpected_error`` with the input's first bytes).
"""
from __future__ import annotations

import ipaddress
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from .binary import parse_datagram
from ..wifi import channel_center_hz, grid_center_hz
from .layout import CHIPS, NodeCsi, channel_of_mhz, decode_report
from .report import NodeReport, ReportError
from .text import LineParser

MAX_SENDERS = 1024
"""Per-sender state kept at most (text parsers with their header line, last-seen times). A swarm
is tens of nodes; beyond this the least recently heard sender is forgotten (``sender_evicted``),
so a flood of spoofed senders costs bounded memory."""


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
    """``allow``: node names, transmitter MACs (aa:bb:cc:dd:ee:ff) and sender IP addresses; empty:
    everything. Where it names addresses, only datagrams from those addresses are parsed at all
    (others: ``foreign_source``); where it names nodes or MACs, only reports of those are used
    (others: ``not_allowed``)."""

    counters: Counter
    default: NodeConfig = field(default_factory=NodeConfig)
    nodes: dict[str, NodeConfig] = field(default_factory=dict)
    allow: set[str] = field(default_factory=set)
    last_seen: OrderedDict[str, float] = field(default_factory=OrderedDict)
    last_error: ReportError | None = None
    _parsers: OrderedDict[str, LineParser] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.allowed_addresses = {a for a in self.allow if _is_address(a)}
        """Sender IP addresses heard (empty: any)."""
        self.allowed_ids = self.allow - self.allowed_addresses
        """Node names and transmitter MACs used (empty: any)."""
        self._seen_lock = threading.Lock()
        """``last_seen`` is written by the reader thread and read by the node's timer."""

    def nodes_heard(self) -> list[str]:
        """Nodes heard within the node timeout, sorted."""
        with self._seen_lock:
            return sorted(self.last_seen)

    def hears(self, address: str) -> bool:
        """Whether a datagram from IP ``address`` is parsed at all; counts ``foreign_source`` if not."""
        if not self.allowed_addresses or address in self.allowed_addresses:
            return True
        self.counters["foreign_source"] += 1
        self.last_error = ReportError("foreign_source", f"datagram from {address}, not in the allowlist")
        return False

    def datagram(self, data: bytes, source: str, now: float) -> list[NodeFrame]:
        """One UDP datagram from ``source`` (``udp:<ip>:<port>``): text lines if it starts as
        printable text (CSI_DATA, type, ...), else a binary frame (whose magic says what it is)."""
        self.counters["datagrams"] += 1
        if not self.hears(_address(source)):
            return []
        try:
            if _looks_like_text(data[:16]):
                return [f for line in data.splitlines() if (f := self.line(line, source, now)) is not None]
            report = parse_datagram(data)
            frame = self._frame(f"node{report.node_id}", report, now)
            return [frame] if frame else []
        except ReportError as err:
            self._fail(err)
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, data)
        return []

    def line(self, raw: bytes, source: str, now: float) -> NodeFrame | None:
        """One text line from ``source`` (serial port, file or UDP sender), which names the node."""
        self.counters["lines"] += 1
        try:
            report = self._parser(source).parse(raw)
            if report is None:
                self.counters["other_lines"] += 1
                return None
            return self._frame(source, report, now)
        except ReportError as err:
            self._fail(err)
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, raw)
        return None

    def _parser(self, source: str) -> LineParser:
        parser = self._parsers.pop(source, None) or LineParser()
        self._parsers[source] = parser
        if len(self._parsers) > MAX_SENDERS:
            self._parsers.popitem(last=False)
            self.counters["sender_evicted"] += 1
        return parser

    def _unexpected(self, err: Exception, data: bytes) -> None:
        self._fail(ReportError("unexpected_error", f"{type(err).__name__}: {err} (first bytes {bytes(data[:32]).hex()})"))

    def lost(self, now: float, timeout_s: float) -> list[str]:
        """Nodes silent for longer than ``timeout_s`` (each counted once as node_lost, then forgotten)."""
        with self._seen_lock:
            gone = [n for n, t in self.last_seen.items() if now - t > timeout_s]
            for node in gone:
                del self.last_seen[node]
        self.counters["node_lost"] += len(gone)
        return gone

    def _fail(self, err: ReportError) -> None:
        self.counters[err.reason] += 1
        self.last_error = err

    def _frame(self, node: str, report: NodeReport, now: float) -> NodeFrame | None:
        mac = ":".join(f"{b:02x}" for b in report.transmitter_mac) if report.transmitter_mac else ""
        if self.allowed_ids and not self.allowed_ids & {node, mac}:
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
        with self._seen_lock:
            self.last_seen.pop(node, None)
            self.last_seen[node] = now
            evicted = len(self.last_seen) > MAX_SENDERS
            if evicted:
                self.last_seen.popitem(last=False)
        self.counters["sender_evicted"] += evicted
        return NodeFrame(node, report, csi, channel, secondary, centre, now)


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _address(source: str) -> str:
    """The sender IP of a ``udp:<ip>:<port>`` source name, else ""."""
    return source.split(":")[1] if source.startswith("udp:") else ""
