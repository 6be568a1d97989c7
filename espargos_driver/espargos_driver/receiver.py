"""Sensor packets of one board -> CsiFrames: framing, reassembly, message parsing, clustering.

Pure (no I/O, no ROS). Every input that cannot be used is counted under a reason in
``counters`` and dropped; nothing raises out of ``feed`` or ``expire``: an exception that no
decoding step declared is counted as ``unexpected_error`` with the input's first bytes (a bug
to report, never a reason for the reader thread to die).
"""
from __future__ import annotations

from collections import Counter

from .cluster import FrameClusterer
from .frame import CsiFrame
from .protocol.constants import STREAM_MAGIC
from .protocol.errors import ProtocolError
from .protocol.gen1 import parse_g1_message
from .protocol.gen3 import Reassembler, parse_csi_message, split_sensor_packet


class BoardReceiver:
    """Decodes one board's stream. ``generation`` is 3 (sensor packets) or 1 (516-byte records)."""

    def __init__(self, clusterer: FrameClusterer, generation: int = 3, board: int = 0) -> None:
        self.clusterer = clusterer
        self.counters: Counter = clusterer.counters
        self.generation = generation
        self.board = board
        self._reassembler = Reassembler(self.counters)
        self.last_error: ProtocolError | None = None

    def feed(self, packet: bytes, now: float, arrival: float | None = None) -> list[CsiFrame]:
        """Process one datagram / WebSocket message received at ``now`` (time.perf_counter());
        ``arrival``: when it reached the host (wall clock, s; None: now), its frames' host_time."""
        self.counters["packets"] += 1
        try:
            if self.generation == 1:
                reports = parse_g1_message(packet)
            else:
                if packet == STREAM_MAGIC:
                    return []
                reports = []
                for fragment in split_sensor_packet(packet):
                    message = self._reassembler.add(fragment, now)
                    if message is not None:
                        report = parse_csi_message(message, fragment.uid >> 29)
                        if report is not None:
                            reports.append(report)
            frames = []
            for report in reports:
                report.board = self.board
                self.counters["reports"] += 1
                frame = self.clusterer.add(report, now, arrival)
                if frame is not None:
                    frames.append(frame)
            return frames
        except ProtocolError as err:
            self.counters[err.reason] += 1
            self.last_error = err
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, f"first bytes {bytes(packet[:32]).hex()}")
        return []

    def expire(self, now: float) -> list[CsiFrame]:
        """Close timed-out frames and partial messages; call periodically."""
        try:
            self._reassembler.expire(now)
            return self.clusterer.expire(now)
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, "while expiring frames")
            return []

    def _unexpected(self, err: Exception, context: str) -> None:
        self.counters["unexpected_error"] += 1
        self.last_error = ProtocolError("unexpected_error", f"{type(err).__name__}: {err} ({context})")
