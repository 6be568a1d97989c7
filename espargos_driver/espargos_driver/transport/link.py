"""A board connection that stays up: identify, stream, detect silence, reconnect with back-off."""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from ..protocol.constants import STREAM_TIMEOUT_S
from .http_control import BoardError, BoardHttp, BoardInfo
from .streams import UdpStream, WebSocketStream

TRANSPORTS = ("udp", "websocket", "auto")
MAX_BACKOFF_S = 8.0
POLL_S = 0.005


class BoardLink:
    """Runs the receive loop of one board in its own thread.

    ``on_packet(data, now)`` gets every stream message with its ``time.perf_counter()``
    receive time; ``on_tick(now)`` runs at least every few ms (expiry work);
    ``on_connected(info)`` runs once per successful connection, before streaming.
    Failures are counted in ``counters`` (``reconnects``, ``silence`` and the BoardError
    reasons) and reported through ``state`` / ``state_detail``.
    """

    def __init__(self, host: str, http_port: int, stream_port: int, transport: str,
                 on_packet: Callable[[bytes, float], None], on_tick: Callable[[float], None],
                 on_connected: Callable[[BoardInfo], None], counters: Counter,
                 log: Callable[[str], None], silence_timeout_s: float = STREAM_TIMEOUT_S) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.host, self.http_port, self.stream_port, self.transport = host, http_port, stream_port, transport
        self.http = BoardHttp(host, http_port)
        self.on_packet, self.on_tick, self.on_connected = on_packet, on_tick, on_connected
        self.counters = counters
        self.log = log
        self.silence_timeout_s = silence_timeout_s
        self.state = "connecting"
        self.state_detail = ""
        self.info: BoardInfo | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"board-{host}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _open_stream(self, info: BoardInfo) -> UdpStream | WebSocketStream:
        if info.generation == 1:
            stream = WebSocketStream(self.host, self.http_port, ("/csi",))
            stream.open()
            return stream
        if self.transport in ("udp", "auto"):
            stream = UdpStream(self.http, self.host, self.stream_port)
            try:
                stream.open()
                return stream
            except BoardError as err:
                stream.sock.close()
                if self.transport == "udp":
                    raise
                self.log(f"UDP stream failed ({err}); falling back to WebSocket")
        stream = WebSocketStream(self.host, self.http_port)
        stream.open()
        return stream

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            stream = None
            try:
                self.state, self.state_detail = "connecting", f"{self.host}:{self.http_port}"
                info = self.http.identify()
                self.info = info
                stream = self._open_stream(info)
                self.on_connected(info)
                self.state, self.state_detail = "streaming", f"{type(stream).__name__} API {info.api_version}"
                self.log(f"streaming from {info.hostname or self.host} ({self.state_detail})")
                backoff = 1.0
                last_data = time.perf_counter()
                while not self._stop.is_set():
                    data = stream.recv(POLL_S)
                    now = time.perf_counter()
                    if data is not None:
                        last_data = now
                        self.on_packet(data, now)
                    elif now - last_data > self.silence_timeout_s:
                        self.counters["silence"] += 1
                        raise BoardError("silence", f"no data for {self.silence_timeout_s:.0f} s")
                    self.on_tick(now)
                    stream.keepalive()
            except BoardError as err:
                self.counters[err.reason] += 1
                self.state, self.state_detail = ("incompatible" if err.reason == "api_version" else "disconnected"), str(err)
                self.log(f"board {self.host}: {err}; reconnecting in {backoff:.0f} s")
            except OSError as err:
                self.counters["socket_error"] += 1
                self.state, self.state_detail = "disconnected", str(err)
                self.log(f"board {self.host}: {err}; reconnecting in {backoff:.0f} s")
            finally:
                if stream is not None:
                    stream.close()
            if self._stop.wait(backoff):
                break
            self.counters["reconnects"] += 1
            backoff = min(backoff * 2, MAX_BACKOFF_S)
