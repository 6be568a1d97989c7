"""Where swarm-node reports come from (no ROS): a UDP socket, a serial port, or a log file.

Each source runs ``feed(data, source_name, now)`` for every datagram / line on its own thread
and never raises out of it; a serial port that vanishes is reopened with back-off.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import serial

Feed = Callable[[bytes, str, float], None]
REOPEN_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


class Source:
    """A reader thread; ``state`` / ``state_detail`` for diagnostics."""

    def __init__(self, feed: Feed, counters: Counter, log: Callable[[str], None]) -> None:
        self.feed, self.counters, self.log = feed, counters, log
        self.state, self.state_detail = "starting", ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        raise NotImplementedError


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
        self.addresses: set[str] = set()
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
            for address in sorted(self.addresses):
                try:
                    self.sock.sendto(icmp_echo(0xE5A7, self.sequence), (address, 0))
                    self.counters["keepalive_sent"] += 1
                except OSError:
                    self.counters["keepalive_errors"] += 1


class UdpSource(Source):
    """Datagrams on ``host:port`` (binary frames, or text lines); the sender's address names text
    sources. With ``keepalive_hz`` > 0, every sender gets ICMP echo requests at that rate."""

    def __init__(self, host: str, port: int, feed: Feed, counters: Counter, log: Callable[[str], None],
                 keepalive_hz: float = 0.0) -> None:
        super().__init__(feed, counters, log)
        self.keepalive = KeepAlive(keepalive_hz, counters, log) if keepalive_hz > 0 else None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()

    def _run(self) -> None:
        self.state, self.state_detail = "receiving", f"UDP {self.address[0]}:{self.address[1]}"
        if self.keepalive is not None:
            threading.Thread(target=self.keepalive.run, args=(self._stop,), name="keepalive", daemon=True).start()
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as err:
                self.counters["socket_error"] += 1
                self.state_detail = str(err)
                time.sleep(0.1)
                continue
            if self.keepalive is not None:
                self.keepalive.addresses.add(addr[0])
            self.feed(data, f"udp:{addr[0]}:{addr[1]}", time.time())
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
        pending = b""
        while not self._stop.is_set():
            chunk = port.read(4096)
            if not chunk:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            now = time.time()
            for line in lines:
                self.feed(line, self.name, now)


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
                for line in f:
                    if self._stop.is_set():
                        return
                    self.feed(line.rstrip(b"\r\n"), self.name, time.time())
                    if self.rate_hz > 0:
                        time.sleep(1.0 / self.rate_hz)
            self.state, self.state_detail = "finished", f"{self.path} read to the end"
        except OSError as err:
            self.counters["file_errors"] += 1
            self.state, self.state_detail = "failed", str(err)
            self.log(f"cannot read {self.path}: {err}")
