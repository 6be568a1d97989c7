"""A board connection that stays up: identify, stream, detect silence, reconnect with back-off."""
from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable

from ..protocol.constants import STREAM_TIMEOUT_S
from ..reader_thread import ReaderThread
from .http_control import BoardError, BoardHttp, BoardInfo
from .streams import RECEIVE_BUFFER_BYTES, UdpStream, WebSocketStream

TRANSPORTS = ("udp", "websocket", "auto")
MAX_BACKOFF_S = 8.0
POLL_S = 0.005
HOUSEKEEPING_S = 1.0
"""How often the receive loop reads the kernel's drop counter and reports strangers."""


class BoardLink(ReaderThread):
    """Runs the receive loop of one board in its own thread.

    ``on_packet(data, now)`` gets every stream message with its ``time.perf_counter()``
    receive time; ``on_tick(now)`` runs at least every few ms (expiry work);
    ``on_connected(info)`` runs once per successful connection, before streaming.
    Failures are counted in ``counters`` (``reconnects``, ``silence`` and the BoardError
    reasons) and reported through ``state`` / ``state_detail``. Liveness comes from the board
    alone: datagrams from strangers are dropped (``foreign_source``) and never reset the
    silence timer. Kernel receive-buffer drops are added to ``kernel_drops``. Any other
    exception in the loop is counted (``reader_error``), logged, and answered by a
    reconnect; should the thread die anyway, ``restart_if_dead`` starts a new one.
    """

    def __init__(self, host: str, http_port: int, stream_port: int, transport: str,
                 on_packet: Callable[[bytes, float], None], on_tick: Callable[[float], None],
                 on_connected: Callable[[BoardInfo], None], counters: Counter,
                 log: Callable[[str], None], silence_timeout_s: float = STREAM_TIMEOUT_S,
                 receive_buffer: int = RECEIVE_BUFFER_BYTES) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.host, self.http_port, self.stream_port, self.transport = host, http_port, stream_port, transport
        super().__init__(f"board-{host}", counters, log)
        self.http = BoardHttp(host, http_port)
        self.on_packet, self.on_tick, self.on_connected = on_packet, on_tick, on_connected
        self.silence_timeout_s = silence_timeout_s
        self.receive_buffer = receive_buffer
        self.receive_buffer_granted = 0
        """SO_RCVBUF the kernel granted the current UDP stream, bytes (0: none open)."""
        self.local_port = 0
        """Local UDP port of the current stream (0: none open)."""
        self.state = "connecting"
        self.info: BoardInfo | None = None
        self.strangers: Counter = Counter()
        """Datagrams dropped per stranger "ip:port"."""

    def _open_stream(self, info: BoardInfo) -> UdpStream | WebSocketStream:
        if info.generation == 1:
            stream = WebSocketStream(self.host, self.http_port, ("/csi",))
            stream.open()
            return stream
        if self.transport in ("udp", "auto"):
            stream = UdpStream(self.http, self.host, self.stream_port, receive_buffer=self.receive_buffer)
            self.receive_buffer_granted = stream.receive_buffer_granted
            self.local_port = stream.sock.getsockname()[1]
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
            drops_seen = 0
            try:
                self.state, self.state_detail = "connecting", f"{self.host}:{self.http_port}"
                info = self.http.identify()
                self.info = info
                stream = self._open_stream(info)
                self.on_connected(info)
                self.state, self.state_detail = "streaming", f"{type(stream).__name__} API {info.api_version}"
                self.log(f"streaming from {info.hostname or self.host} ({self.state_detail})")
                backoff = 1.0
                last_data = last_housekeeping = time.perf_counter()
                while not self._stop.is_set():
                    data = stream.recv(POLL_S)
                    now = time.perf_counter()
                    if data is not None:
                        last_data = now
                        self.on_packet(data, now)
                    elif now - last_data > self.silence_timeout_s:
                        raise BoardError("silence", f"no data from the board for {self.silence_timeout_s:.0f} s")
                    self.on_tick(now)
                    stream.keepalive()
                    if now - last_housekeeping >= HOUSEKEEPING_S:
                        last_housekeeping = now
                        drops_seen = self._housekeeping(stream, drops_seen)
            except BoardError as err:
                self.counters[err.reason] += 1
                self.state, self.state_detail = ("incompatible" if err.reason == "api_version" else "disconnected"), str(err)
                self.log(f"board {self.host}: {err}; reconnecting in {backoff:.0f} s")
            except OSError as err:
                self.counters["socket_error"] += 1
                self.state, self.state_detail = "disconnected", str(err)
                self.log(f"board {self.host}: {err}; reconnecting in {backoff:.0f} s")
            except Exception as err:  # noqa: BLE001 - last-resort guard: the reader must not die
                self.counters["reader_error"] += 1
                self.state, self.state_detail = "disconnected", f"{type(err).__name__}: {err}"
                where = traceback.extract_tb(err.__traceback__)[-1]
                self.log(f"board {self.host}: unexpected {type(err).__name__} in the receive loop at "
                         f"{where.filename}:{where.lineno}: {err}; reconnecting in {backoff:.0f} s")
            finally:
                if stream is not None:
                    self._housekeeping(stream, drops_seen)
                    stream.close()
                    self.receive_buffer_granted = self.local_port = 0
            if self._stop.wait(backoff):
                break
            self.counters["reconnects"] += 1
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _housekeeping(self, stream: UdpStream | WebSocketStream, drops_seen: int) -> int:
        """Add new kernel drops and strangers' datagrams to the counters; log strangers (at most
        once per HOUSEKEEPING_S). Returns the kernel drop count now."""
        if not isinstance(stream, UdpStream):
            return drops_seen
        drops = stream.kernel_drops()
        if drops is not None and drops > drops_seen:
            self.counters["kernel_drops"] += drops - drops_seen
            drops_seen = drops
        new = Counter(stream.strangers)
        stream.strangers.clear()
        if new:
            self.strangers.update(new)
            self.counters["foreign_source"] += sum(new.values())
            who = ", ".join(f"{sender} x{n}" for sender, n in new.most_common(3))
            self.log(f"board {self.host}: dropped {sum(new.values())} datagrams not from the board "
                     f"{stream.peer[0]}:{stream.peer[1]} ({who})")
        return drops_seen
