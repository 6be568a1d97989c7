"""Where swarm-node reports come from (no ROS): a UDP socket, a serial port, or a log file.

Each source runs ``feed(data, source_name, now)`` for every datagram / line on its own thread
and never raises out of it; a serial port that vanishes is reopened with back-off. Text is
split into lines in linear time with a bounded buffer (LineSplitter).
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import serial

from ..reader_thread import ReaderThread
from ..transport.streams import udp_kernel_drops
from .ingest import MAX_SENDERS

Feed = Callable[[bytes, str, float], None]
REOPEN_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
MAX_LINE_BYTES = 64 * 1024
"""Longest text line kept. The longest real line (esp-csi HE20 STBC: 1,024 values) is ~5 kB;
text beyond this without a newline is discarded up to the next newline (``line_too_long``)."""
READ_CHUNK_BYTES = 4096


class LineSplitter:
    """Bytes in arbitrary chunks -> complete lines, in time linear in the input and memory
    bounded by ``max_line`` (a longer line is dropped whole and counted as ``line_too_long``)."""

    def __init__(self, counters: Counter, max_line: int = MAX_LINE_BYTES) -> None:
        self.counters, self.max_line = counters, max_line
        self._pending = bytearray()
        self._discarding = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The lines (without newline) completed by ``chunk``."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if self._discarding or len(self._pending) + end - start > self.max_line:
                self._discarding = False
                self._pending.clear()
                self.counters["line_too_long"] += 1
            else:
                self._pending += chunk[start:end]
                yield bytes(self._pending).rstrip(b"\r")
                self._pending.clear()
            start = end + 1
        if not self._discarding:
            self._pending += chunk[start:]
            if len(self._pending) > self.max_line:
                self._pending.clear()
                self._discarding = True

    def flush(self) -> Iterator[bytes]:
        """The last line of a stream that did not end in a newline."""
        if self._pending and not self._discarding:
            yield bytes(self._pending).rstrip(b"\r")
        elif self._discarding:
            self.counters["line_too_long"] += 1
        self._pending.clear()
        self._discarding = False


class Source(ReaderThread):
    """A reader thread; ``state`` / ``state_detail`` for diagnostics. ``guarded_feed`` is the
    last-resort guard: whatever ``feed`` raises is counted (``reader_error``) and logged, and
    reading goes on; should the thread die anyway, ``restart_if_dead`` starts a new one."""

    join_timeout_s = 2.0

    def __init__(self, feed: Feed, counters: Counter, log: Callable[[str], None]) -> None:
        super().__init__(type(self).__name__, counters, log)
        self.feed = feed
        self.state = "starting"

    def finished(self) -> bool:
        return self.state == "finished"

    def guarded_feed(self, data: bytes, name: str, now: float) -> None:
        try:
            self.feed(data, name, now)
        except Exception as err:  # noqa: BLE001 - last-resort guard: the reader must not die
            self.counters["reader_error"] += 1
            where = traceback.extract_tb(err.__traceback__)[-1]
            self.log(f"unexpected {type(err).__name__} at {where.filename}:{where.lineno} for input from {name} "
                     f"(first bytes {bytes(data[:32]).hex()}): {err}")


def icmp_echo(identifier: int, sequence: int) -> bytes:
    """An ICMP echo request (type 8) with its checksum."""
    body = struct.pack("!BBHHH", 8, 0, 0, identifier & 0xFFFF, sequence & 0xFFFF) + b"espargos-keepalive"
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    total = (total >> 16) + (total & 0xFFFF)
    checksum = ~(total + (total >> 16)) & 0xFFFF
    return body[:2] + struct.pack("!H", checksum) + body[4:]


class KeepAlive:
    """ICMP echo requests to every node address seen, ``rate_hz`` per node (RuView ADR-106): a node
    that receives unicast frames reports CSI for them, which holds its CSI rate up. Uses an
    unprivileged ping socket where the system allows one, else a raw socket (root)."""

    def __init__(self, rate_hz: float, counters: Counter, log: Callable[[str], None]) -> None:
        self.rate_hz, self.counters, self.log = rate_hz, counters, log
        self.addresses: OrderedDict[str, None] = OrderedDict()
        """Node addresses to ping, least recently heard first (at most MAX_SENDERS)."""
        self.sequence = 0
        self.sock: socket.socket | None = None
        for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
            try:
                self.sock = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
                break
            except OSError:
                continue
        if self.sock is None:
            counters["keepalive_unavailable"] += 1
            log("keep-alive disabled: this system allows neither ping sockets nor raw sockets for this user")

    def run(self, stop: threading.Event) -> None:
        while self.sock is not None and not stop.wait(1.0 / self.rate_hz):
            self.sequence += 1
            for address in list(self.addresses):
                try:
                    self.sock.sendto(icmp_echo(0xE5A7, self.sequence), (address, 0))
                    self.counters["keepalive_sent"] += 1
                except OSError:
                    self.counters["keepalive_errors"] += 1

    def heard(self, address: str) -> None:
        """A node at ``address`` sent a usable report."""
        self.addresses.pop(address, None)
        self.addresses[address] = None
        if len(self.addresses) > MAX_SENDERS:
            self.addresses.popitem(last=False)


DROP_CHECK_S = 1.0
"""How often a UDP source reads the kernel's drop counter of its socket (/proc/net/udp)."""


class UdpSource(Source):
    """Datagrams on ``host:port`` (binary frames, or text lines); the sender's address names text
    sources. With ``keepalive_hz`` > 0, ``keepalive`` sends ICMP echo requests at that rate to the
    addresses the node reports as heard."""

    def __init__(self, host: str, port: int, feed: Feed, counters: Counter, log: Callable[[str], None],
                 keepalive_hz: float = 0.0) -> None:
        super().__init__(feed, counters, log)
        self.keepalive = KeepAlive(keepalive_hz, counters, log) if keepalive_hz > 0 else None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self._inode = os.fstat(self.sock.fileno()).st_ino
        self._drops_seen = udp_kernel_drops(self._inode) or 0

    def _count_kernel_drops(self) -> None:
        """Add the datagrams the kernel dropped since the last look (receive buffer full) to ``kernel_drops``."""
        drops = udp_kernel_drops(self._inode)
        if drops is not None and drops > self._drops_seen:
            self.counters["kernel_drops"] += drops - self._drops_seen
            self._drops_seen = drops

    def _run(self) -> None:
        self.state, self.state_detail = "receiving", f"UDP {self.address[0]}:{self.address[1]}"
        if self.keepalive is not None:
            threading.Thread(target=self.keepalive.run, args=(self._stop,), name="keepalive", daemon=True).start()
        next_drop_check = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_drop_check:
                self._count_kernel_drops()
                next_drop_check = time.monotonic() + DROP_CHECK_S
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as err:
                self.counters["socket_error"] += 1
                self.state_detail = str(err)
                time.sleep(0.1)
                continue
            self.guarded_feed(data, f"udp:{addr[0]}:{addr[1]}", time.time())
        self.sock.close()


class SerialSource(Source):
    """Text lines from a serial port; reopened with back-off whenever it fails or vanishes."""

    def __init__(self, port: str, baud: int, name: str, feed: Feed, counters: Counter, log: Callable[[str], None]) -> None:
        super().__init__(feed, counters, log)
        self.port, self.baud, self.name = port, baud, name

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with serial.Serial(self.port, self.baud, timeout=0.2) as port:
                    if attempt:
                        self.counters["serial_reopened"] += 1
                        self.log(f"serial port {self.port} reopened")
                    attempt = 0
                    self.state, self.state_detail = "receiving", f"serial {self.port} @ {self.baud}"
                    self._read(port)
            except (serial.SerialException, OSError) as err:
                self.counters["serial_errors"] += 1
                self.state, self.state_detail = "reopening", f"{self.port}: {err}"
                self._stop.wait(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                attempt += 1

    def _read(self, port: serial.Serial) -> None:
        lines = LineSplitter(self.counters)
        while not self._stop.is_set():
            chunk = port.read(READ_CHUNK_BYTES)
            if not chunk:
                continue
            now = time.time()
            for line in lines.feed(chunk):
                self.guarded_feed(line, self.name, now)


class FileSource(Source):
    """Text lines of a log file, at ``rate_hz`` lines per second (0: as fast as possible)."""

    def __init__(self, path: str, rate_hz: float, name: str, feed: Feed, counters: Counter,
                 log: Callable[[str], None]) -> None:
        super().__init__(feed, counters, log)
        self.path, self.rate_hz, self.name = Path(path), rate_hz, name

    def _run(self) -> None:
        try:
            with self.path.open("rb") as f:
                self.state, self.state_detail = "reading", str(self.path)
                lines = LineSplitter(self.counters)
                for chunk in iter(lambda: f.read(READ_CHUNK_BYTES), b""):
                    for line in lines.feed(chunk):
                        if self._stop.is_set():
                            return
                        self.guarded_feed(line, self.name, time.time())
                        if self.rate_hz > 0:
                            time.sleep(1.0 / self.rate_hz)
                for line in lines.flush():
                    self.guarded_feed(line, self.name, time.time())
            self.state, self.state_detail = "finished", f"{self.path} read to the end"
        except OSError as err:
            self.counters["file_errors"] += 1
            self.state, self.state_detail = "failed", str(err)
            self.log(f"cannot read {self.path}: {err}")
