"""A board connection that stays up: identify, stream, detect silence, reconnect with back-off;
and the one thread that reads the UDP streams of every board of a driver."""
from __future__ import annotations

import selectors
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable

from ..protocol.constants import STREAM_TIMEOUT_S
from ..reader_thread import ReaderThread
from ..receiver import Datagram
from .http_control import BoardError, BoardHttp, BoardInfo
from .streams import RECEIVE_BUFFER_BYTES, UdpStream, WebSocketStream

TRANSPORTS = ("udp", "websocket", "auto")
MAX_BACKOFF_S = 8.0
POLL_S = 0.005
HOUSEKEEPING_S = 1.0
"""How often the receive loop reads the kernel's drop counter and reports strangers."""
MAX_BATCH = 64
"""Datagrams read from one board before the loop turns to the next board and its chores; they are
handed on together (one lock, one call, frames built together)."""


class BoardLink(ReaderThread):
    """Runs the receive loop of one board in its own thread.

    ``on_batch(datagrams)`` gets the stream messages read in one turn (at most MAX_BATCH, each a
    ``Datagram``); ``on_tick(now)`` runs at least every few ms (expiry work);
    ``on_connected(info)`` runs once per successful connection, before streaming.
    Failures are counted in ``counters`` (``reconnects``, ``silence`` and the BoardError
    reasons) and reported through ``state`` / ``state_detail``. Liveness comes from the board
    alone: datagrams from strangers are dropped (``foreign_source``) and never reset the
    silence timer. Kernel receive-buffer drops are added to ``kernel_drops``. Any other
    exception in the loop is counted (``reader_error``), logged, and answered by a
    reconnect; should the thread die anyway, ``restart_if_dead`` starts a new one.
    """

    def __init__(self, host: str, http_port: int, stream_port: int, transport: str,
                 on_batch: Callable[[list[Datagram]], None], on_tick: Callable[[float], None],
                 on_connected: Callable[[BoardInfo], None], counters: Counter,
                 log: Callable[[str], None], silence_timeout_s: float = STREAM_TIMEOUT_S,
                 receive_buffer: int = RECEIVE_BUFFER_BYTES, hub: ReceiveHub | None = None) -> None:
        """``hub``: the thread that reads this board's UDP stream together with the other boards'
        (None: this link's own thread reads it)."""
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.host, self.http_port, self.stream_port, self.transport = host, http_port, stream_port, transport
        super().__init__(f"board-{host}", counters, log)
        self.http = BoardHttp(host, http_port)
        self.on_batch, self.on_tick, self.on_connected = on_batch, on_tick, on_connected
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
        self.hub = hub
        self._last_data = self._last_housekeeping = 0.0
        self._drops_seen = 0
        self._failure: BaseException | None = None
        self._failed = threading.Event()

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
            try:
                self.state, self.state_detail = "connecting", f"{self.host}:{self.http_port}"
                info = self.http.identify()
                self.info = info
                stream = self._open_stream(info)
                self.on_connected(info)
                self.state, self.state_detail = "streaming", f"{type(stream).__name__} API {info.api_version}"
                self.log(f"streaming from {info.hostname or self.host} ({self.state_detail})")
                backoff = 1.0
                self._last_data = self._last_housekeeping = time.perf_counter()
                self._drops_seen = 0
                if self.hub is not None and isinstance(stream, UdpStream):
                    self._stream_through_hub(stream)
                else:
                    while not self._stop.is_set():
                        self.serve(stream, POLL_S)
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
                    self._housekeeping(stream, self._drops_seen)
                    stream.close()
                    self.receive_buffer_granted = self.local_port = 0
            if self._stop.wait(backoff):
                break
            self.counters["reconnects"] += 1
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def serve(self, stream: UdpStream | WebSocketStream, timeout_s: float) -> None:
        """One turn of the receive loop: read what the board sent (waiting up to ``timeout_s`` for
        the first datagram, at most MAX_BATCH), hand it on, run the chores (expiry, keep-alive,
        housekeeping). Raises BoardError after ``silence_timeout_s`` without the board's data."""
        data = stream.recv(timeout_s)
        batch: list[Datagram] = []
        while data is not None:
            batch.append((data, time.perf_counter(), stream.last_arrival))
            if len(batch) == MAX_BATCH:
                break
            data = stream.recv(0.0)
        if batch:
            self._last_data = batch[-1][1]
            self.on_batch(batch)
        now = time.perf_counter()
        if now - self._last_data > self.silence_timeout_s:
            raise BoardError("silence", f"no data from the board for {self.silence_timeout_s:.0f} s")
        self.on_tick(now)
        stream.keepalive()
        if now - self._last_housekeeping >= HOUSEKEEPING_S:
            self._last_housekeeping = now
            self._drops_seen = self._housekeeping(stream, self._drops_seen)

    def _stream_through_hub(self, stream: UdpStream) -> None:
        """Let the hub read ``stream`` until this link stops or the hub reports its failure, which
        is raised here (and handled like one in this thread's own loop)."""
        self._failure = None
        self._failed.clear()
        self.hub.attach(self, stream)
        try:
            while not self._stop.is_set():
                if self._failed.wait(POLL_S * 20):
                    raise self._failure
        finally:
            self.hub.detach(self)

    def fail(self, err: BaseException) -> None:
        """The hub's report that serving this link raised ``err``."""
        self._failure = err
        self._failed.set()

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


class ReceiveHub(ReaderThread):
    """One thread reads the UDP streams of every board of a driver, in turn (at most MAX_BATCH
    datagrams each), waiting on all of them at once when they are quiet.

    Why: with a thread per board the readers compete for the GIL, and at 300 frames/s one of
    four fell up to 1.1 s behind the others: the combined array's frames were cut as incomplete
    for want of that board's reports. A link's connection management (identify, open, reconnect)
    stays on its own thread; an exception while serving it is handed back to that thread
    (``BoardLink.fail``), which counts it and reconnects.
    """

    def __init__(self, counters: Counter, log: Callable[[str], None]) -> None:
        super().__init__("board-receiver", counters, log)
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._streams: dict[BoardLink, UdpStream] = {}

    def attach(self, link: BoardLink, stream: UdpStream) -> None:
        with self._lock:
            self._streams[link] = stream
            self._selector.register(stream.sock, selectors.EVENT_READ, link)

    def detach(self, link: BoardLink) -> None:
        with self._lock:
            stream = self._streams.pop(link, None)
            if stream is not None:
                try:
                    self._selector.unregister(stream.sock)
                except (KeyError, ValueError, OSError):
                    pass

    def stop(self) -> None:
        super().stop()
        self._selector.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                streams = list(self._streams.items())
            if not streams:
                self._stop.wait(POLL_S)
                continue
            try:
                self._selector.select(POLL_S)
            except (OSError, ValueError):                  # a stream closed while waiting: look again
                continue
            for link, stream in streams:
                with self._lock:
                    if self._streams.get(link) is not stream:
                        continue
                try:
                    link.serve(stream, 0.0)
                except Exception as err:  # noqa: BLE001 - the link's thread counts it and reconnects
                    self.detach(link)
                    link.fail(err)
