"""Sensor-packet streams: UDP with handshake and keep-alive, or WebSocket (spec section 1.2).

Only the board is heard: the UDP stream accepts datagrams from the board's address and
stream port alone (others are counted per sender and dropped before any parsing), and the
WebSocket stream is the one connection the driver opened.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections import Counter

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from ..protocol.constants import STREAM_KEEPALIVE_S, STREAM_MAGIC
from .http_control import BoardError, BoardHttp

RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
"""Default socket receive buffer: at 5,000 frames/s a board sends 40,000 datagrams/s of ~0.6 kB,
whose kernel cost (estimated ~2.3 kB each on loopback) is ~90 MB/s; 16 MiB should ride
out a ~150 ms stall of the reader before the kernel drops (counted as ``kernel_drops``)."""
HANDSHAKE_TIMEOUT_S = 3.0


def local_address_towards(peer: tuple[str, int]) -> str:
    """This host's address on the interface that routes to ``peer`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(peer)
            return probe.getsockname()[0]
        except OSError:
            return "0.0.0.0"


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: the kernel attaches each datagram's receive time (struct timespec) to recvmsg."""
ANCILLARY_BYTES = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")


def _kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The receive time (s since the epoch) in recvmsg's ancillary data, else now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return time.time()


def udp_kernel_drops(inode: int) -> int | None:
    """The kernel's drop counter of the UDP socket with ``inode`` (/proc/net/udp, udp6), or None."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[12])
        except (OSError, StopIteration, ValueError):
            continue
    return None


class UdpStream:
    """UDP sensor stream: bind, punch (empty datagram), POST /stream_udp, wait for the magic.

    Datagrams from any address other than the board's ``(host, stream_port)`` are dropped and
    counted in ``strangers`` (per sender "ip:port"). ``receive_buffer`` is the SO_RCVBUF asked
    for (forced past net.core.rmem_max where the process may); ``receive_buffer_granted`` what
    the kernel gave.
    """

    def __init__(self, http: BoardHttp, host: str, stream_port: int, bind_host: str | None = None,
                 receive_buffer: int = RECEIVE_BUFFER_BYTES) -> None:
        """``bind_host``: local address to receive on (default: the one on the interface that
        reaches the board)."""
        self.http = http
        self.peer = (socket.gethostbyname(host), stream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUFFORCE, receive_buffer)
        except (OSError, AttributeError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.receive_buffer_granted = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._kernel_stamps = True
        except (OSError, AttributeError):
            self._kernel_stamps = False
        self.last_arrival = 0.0
        """Wall-clock time (s) the kernel received the datagram :meth:`recv` returned last (the time
        of reading where the kernel cannot say): a backlog in the socket buffer does not shift it."""
        self.sock.bind((bind_host or local_address_towards(self.peer), 0))
        self._inode = os.fstat(self.sock.fileno()).st_ino
        self.strangers: Counter = Counter()
        self._last_keepalive = 0.0
        self._buffer = bytearray(65536)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (receive buffer full), or None if unknown."""
        return udp_kernel_drops(self._inode)

    def open(self) -> None:
        self.sock.sendto(b"", self.peer)
        port = self.sock.getsockname()[1]
        try:
            self.http.command("/stream_udp", {"enable": True, "port": port})
        except BoardError as err:
            if err.reason != "http_status":
                raise
            self.http.command("/csi_udp", {"enable": True, "port": port})
        first = self.recv(HANDSHAKE_TIMEOUT_S)
        if first is None:
            raise BoardError("handshake", f"no stream magic from {self.peer[0]}:{self.peer[1]} within "
                                          f"{HANDSHAKE_TIMEOUT_S:.0f} s of /stream_udp")
        if first != STREAM_MAGIC:
            raise BoardError("handshake", f"first datagram is not the stream magic: {first[:8].hex()}")
        self._last_keepalive = time.monotonic()

    def recv(self, timeout_s: float) -> bytes | None:
        """The next datagram from the board within ``timeout_s``, else None; strangers' datagrams
        in between are counted and dropped. The socket is non-blocking: a datagram already queued
        costs one system call (no timeout to set), and only an empty queue waits, in poll."""
        deadline = None
        while True:
            try:
                n, ancillary, _, sender = self.sock.recvmsg_into([self._buffer], ANCILLARY_BYTES)
            except BlockingIOError:
                if deadline is None:
                    deadline = time.monotonic() + timeout_s
                remaining_ms = (deadline - time.monotonic()) * 1e3
                if remaining_ms <= 0 or not self._poll.poll(remaining_ms):
                    return None
                continue
            if sender == self.peer:
                self.last_arrival = _kernel_time(ancillary) if self._kernel_stamps else time.time()
                return bytes(self._buffer[:n])
            self.strangers[f"{sender[0]}:{sender[1]}"] += 1
            if deadline is None:
                deadline = time.monotonic() + timeout_s
            if time.monotonic() >= deadline:
                return None

    def keepalive(self) -> None:
        now = time.monotonic()
        if now - self._last_keepalive >= STREAM_KEEPALIVE_S:
            self.sock.sendto(b"", self.peer)
            self._last_keepalive = now

    def close(self) -> None:
        try:
            self.http.command("/stream_udp", {"enable": False})
        except BoardError:
            pass
        self.sock.close()


class WebSocketStream:
    """WebSocket sensor stream: ws://host:port/stream, falling back to /csi (generation 1 uses /csi)."""

    def __init__(self, host: str, http_port: int, paths: tuple[str, ...] = ("/stream", "/csi")) -> None:
        self.urls = [f"ws://{host}:{http_port}{p}" for p in paths]
        self.ws = None
        self.last_arrival = 0.0
        """Wall-clock time (s) the message :meth:`recv` returned last was read."""

    def open(self) -> None:
        errors = []
        for url in self.urls:
            try:
                self.ws = ws_connect(url, open_timeout=3.0, max_size=None, compression=None)
                return
            except (OSError, WebSocketException, TimeoutError) as err:
                errors.append(f"{url}: {err}")
        raise BoardError("unreachable", "; ".join(errors))

    def recv(self, timeout_s: float) -> bytes | None:
        try:
            data = self.ws.recv(timeout=timeout_s)
            self.last_arrival = time.time()
        except TimeoutError:
            return None
        except (WebSocketException, OSError) as err:
            raise BoardError("stream_closed", f"WebSocket closed: {err}") from err
        if isinstance(data, str):
            return None
        return None if data == STREAM_MAGIC else data

    def keepalive(self) -> None:
        """WebSocket needs no client keep-alive (the library answers pings)."""

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
