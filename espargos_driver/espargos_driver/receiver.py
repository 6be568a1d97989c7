"""Sensor packets of one board -> CsiFrames: framing, reassembly, message parsing, clustering.

Pure (no I/O, no ROS). Every input that cannot be used is counted under a reason in
``counters`` and dropped; nothing raises out of ``feed`` or ``expire``: an exception that no
decoding step declared is counted as ``unexpected_error`` with the input's first bytes (a bug
to report, never a reason for the reader thread to die).
"""
from __future__ import annotations

from collections import Counter
from itertools import zip_longest

from .cluster import FrameClusterer
from .frame import CsiFrame
from .protocol.constants import STREAM_MAGIC
from .protocol.errors import ProtocolError
from .protocol.gen1 import parse_g1_message
from .protocol.gen3 import Reassembler, parse_csi_message, split_sensor_packet
from .protocol.gen3_batch import BatchDecoder
from .protocol.report import SensorReport

Datagram = tuple[bytes, float, float | None]
"""A stream message, the ``time.perf_counter()`` when it was read, and the wall-clock time (s) the
kernel received it (None: when read)."""


class BoardReceiver:
    """Decodes one board's stream. ``generation`` is 3 (sensor packets) or 1 (516-byte records)."""

    def __init__(self, clusterer: FrameClusterer, generation: int = 3, board: int = 0) -> None:
        self.clusterer = clusterer
        self.counters: Counter = clusterer.counters
        self.generation = generation
        self.board = board
        self._reassembler = Reassembler(self.counters)
        self._batch = BatchDecoder()
        self.last_error: ProtocolError | None = None

    def feed(self, packet: bytes, now: float, arrival: float | None = None) -> list[CsiFrame]:
        """Process one datagram / WebSocket message received at ``now`` (time.perf_counter());
        ``arrival``: when it reached the host (wall clock, s; None: now), its frames' host_time."""
        return self.feed_batch([(packet, now, arrival)])

    def feed_batch(self, datagrams: list[Datagram]) -> list[CsiFrame]:
        """Process datagrams read in one turn, in order: runs of alike datagrams are decoded together
        (``gen3_batch``), the rest one at a time; the frames they complete are built together
        (``FrameClusterer.add_many``)."""
        reports: list[tuple[SensorReport, float, float | None]] = []
        decoded = self._decode_together([packet for packet, _, _ in datagrams])
        fast = 0
        for (packet, now, arrival), report in zip_longest(datagrams, decoded):
            if report is None:
                self._parse(packet, now, arrival, reports)
            else:
                report.board = self.board
                reports.append((report, now, arrival))
                fast += 1
        self.counters["packets"] += fast
        self.counters["reports"] += fast
        try:
            return self.clusterer.add_many(reports)
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, f"while clustering {len(reports)} reports")
        return []

    def _decode_together(self, packets: list[bytes]) -> list[SensorReport | None]:
        """gen3_batch's report per packet (None: decode it alone); on a failure of its own, none
        (counted as ``unexpected_error``: every packet then takes the one-at-a-time path)."""
        if self.generation != 3:
            return []
        try:
            return self._batch.decode(packets)
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, f"while decoding {len(packets)} datagrams together")
            return []

    def _parse(self, packet: bytes, now: float, arrival: float | None,
               out: list[tuple[SensorReport, float, float | None]]) -> None:
        """Append the reports in ``packet`` to ``out``; count what cannot be used."""
        self.counters["packets"] += 1
        try:
            if self.generation == 1:
                reports = parse_g1_message(packet)
            else:
                if packet == STREAM_MAGIC:
                    return
                reports = []
                for fragment in split_sensor_packet(packet):
                    message = self._reassembler.add(fragment, now)
                    if message is not None:
                        report = parse_csi_message(message, fragment.uid >> 29)
                        if report is not None:
                            reports.append(report)
            for report in reports:
                report.board = self.board
                out.append((report, now, arrival))
            self.counters["reports"] += len(reports)
        except ProtocolError as err:
            self.counters[err.reason] += 1
            self.last_error = err
        except Exception as err:  # noqa: BLE001 - last-resort guard of the reader thread
            self._unexpected(err, f"first bytes {bytes(packet[:32]).hex()}")

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
