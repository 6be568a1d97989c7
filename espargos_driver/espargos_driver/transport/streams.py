"""Sensor-packet streams: UDP with handshake and keep-alive, or WebSocket (spec section 1.2)."""
from __future__ import annotations

import socket
import time

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from ..protocol.constants import STREAM_KEEPALIVE_S, STREAM_MAGIC
from .http_control import BoardError, BoardHttp

RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 3.0


class UdpStream:
    """UDP sensor stream: bind, punch (empty datagram), POST /stream_udp, wait for the magic."""

    def __init__(self, http: BoardHttp, host: str, stream_port: int, bind_host: str = "0.0.0.0") -> None:
        self.http = http
        self.peer = (socket.gethostbyname(host), stream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        self.sock.bind((bind_host, 0))
        self._last_keepalive = 0.0
        self._buffer = bytearray(65536)

    def open(self) -> None:
        self.sock.sendto(b"", self.peer)
        port = self.sock.getsockname()[1]
        try:
            self.http.command("/stream_udp", {"enable": True, "port": port})
        except BoardError as err:
            if err.reason != "http_status":
                raise
            self.http.command("/csi_udp", {"enable": True, "port": port})
        self.sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            first, _ = self.sock.recvfrom(65536)
        except socket.timeout as err:
            raise BoardError("handshake", "no stream magic within 3 s of /stream_udp") from err
        if first != STREAM_MAGIC:
            raise BoardError("handshake", f"first datagram is not the stream magic: {first[:8].hex()}")
        self._last_keepalive = time.monotonic()

    def recv(self, timeout_s: float) -> bytes | None:
        self.sock.settimeout(timeout_s)
        try:
            n = self.sock.recv_into(self._buffer)
        except socket.timeout:
            return None
        return bytes(self._buffer[:n])

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
