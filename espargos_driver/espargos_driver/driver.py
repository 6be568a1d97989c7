"""BoardDriver: one board, or several boards forming one combined array -> calibrated CsiFrames.

No ROS here: the node hands in a ``publish`` callback and reads ``counters``, ``state``,
``calibration_state`` and ``latency_percentiles_ms()`` for diagnostics.
Threads: one ReceiveHub thread reads every board's UDP stream and decodes (each board's BoardLink
thread connects and reconnects it; a WebSocket stream is read on its link's thread); clustering across boards,
calibration and publishing happen under one lock. Calibrations run on the caller's thread
(service) or a start-up worker and only talk HTTP.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from .calibration import Calibration, CalibrationError, reference_delays_s
from .cluster import FrameClusterer
from .frame import CsiFrame
from .layout import ArrayLayout, single_board_layout
from .protocol.constants import ANTENNAS
from .receiver import BoardReceiver, Datagram
from .supervisor import REBOOT_BACKSTEP_S, RF_ANTENNAS, RF_REFERENCE, CalibrationSupervisor, board_identity
from .transport.http_control import BoardError, BoardInfo
from .transport.link import TRANSPORTS, BoardLink, ReceiveHub
from .transport.streams import RECEIVE_BUFFER_BYTES
from .wifi import secondary_from_code, secondary_to_code

CALIBRATION_POLICIES = ("auto", "startup", "file", "none")
MIN_CALIBRATION_S, MAX_CALIBRATION_S = 0.1, 60.0
"""Range of a calibration's duration, s (parameter and service request)."""
EXPIRE_EVERY_S = 0.005
STREAM_WAIT_S = 10.0
SEQUENCE_SPACE = 4096
"""802.11 sequence numbers are 12 bits."""
MAX_TRACKED_TRANSMITTERS = 256
"""Transmitters whose last sequence number is kept for ``frames_missed`` (least recent forgotten)."""
G1_UNCALIBRATED = ("calibration of generation-1 (prototype) boards is not implemented "
                   "(they use /set_calib and a per-subcarrier model); publishing uncalibrated CSI")


@dataclass
class DriverConfig:
    host: str = "127.0.0.1"
    http_port: int = 80
    stream_port: int = 53330
    transport: str = "auto"
    board_id: str = "espargos"
    antennas_required: int = 0
    """Publish an incomplete frame if at least this many antennas reported; 0: all of the array."""
    frame_timeout_s: float = 0.05
    channel: int = 0
    """0 keeps the board's channel."""
    secondary_channel: int = 0
    calibration_policy: str = "auto"
    calibration_duration_s: float = 2.0
    calibration_file: str = ""
    reverify_period_s: float = 0.0
    """Re-verify the calibration this often, s (0: only after reconnects, reboots, channel changes);
    each verification is a ~0.3 s gap in the OTA frames."""
    layout: ArrayLayout | None = None
    """Boards of a combined array; None: the one board at host/http_port/stream_port."""
    receive_buffer_bytes: int = RECEIVE_BUFFER_BYTES
    """SO_RCVBUF of each board's UDP stream socket."""

    def boards(self) -> ArrayLayout:
        return self.layout or single_board_layout(self.board_id, self.host, self.http_port, self.stream_port)

    def validate(self) -> None:
        """Raise ValueError naming the first parameter that cannot work."""
        if not self.host and self.layout is None:
            raise ValueError("host must not be empty")
        for name in ("http_port", "stream_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be 1..65535, got {getattr(self, name)}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be udp, websocket or auto, got {self.transport!r}")
        antennas = len(self.boards().boards) * ANTENNAS
        if not 0 <= self.antennas_required <= antennas:
            raise ValueError(f"antennas_required must be 1..{antennas} (0: all), got {self.antennas_required}")
        if not 0.001 <= self.frame_timeout_s <= 5.0:
            raise ValueError(f"frame_timeout must be 0.001..5 s, got {self.frame_timeout_s}")
        if self.channel and not (1 <= self.channel <= 13):
            raise ValueError(f"channel must be 1..13 (0 keeps the board's), got {self.channel}")
        if self.secondary_channel not in (-1, 0, 1):
            raise ValueError(f"secondary_channel must be -1, 0 or +1, got {self.secondary_channel}")
        if self.calibration_policy not in CALIBRATION_POLICIES:
            raise ValueError(f"calibration.policy must be one of {CALIBRATION_POLICIES}, got {self.calibration_policy!r}")
        if not MIN_CALIBRATION_S <= self.calibration_duration_s <= MAX_CALIBRATION_S:
            raise ValueError(f"calibration.duration must be {MIN_CALIBRATION_S}..{MAX_CALIBRATION_S:.0f} s, "
                             f"got {self.calibration_duration_s}")
        if not (self.reverify_period_s == 0 or 1.0 <= self.reverify_period_s <= 86400):
            raise ValueError(f"calibration.reverify_period must be 0 (off) or 1..86400 s, got {self.reverify_period_s}")
        if not 65536 <= self.receive_buffer_bytes <= 1 << 30:
            raise ValueError(f"receive_buffer must be 65536..1073741824 bytes, got {self.receive_buffer_bytes}")


class BoardDriver:
    """Connects to the board(s), keeps them streaming, calibrates the array (pool-wide, with cable
    delays, for a combined array) and hands out calibrated frames in the layout's rows x cols."""

    def __init__(self, config: DriverConfig, publish: Callable[[CsiFrame], None],
                 log: Callable[[str], None], warn: Callable[[str], None], counters: Counter | None = None) -> None:
        """``counters``: where to count (a node passes the same one to each driver it starts, so
        that its totals span reconfigurations); a new one by default."""
        config.validate()
        self.config = config
        self.layout = config.boards()
        self.publish = publish
        self.log, self.warn = log, warn
        self.counters: Counter = Counter() if counters is None else counters
        boards = len(self.layout.boards)
        self.clusterer = FrameClusterer(self.counters, boards=boards, antennas_required=config.antennas_required or None,
                                        frame_timeout_s=config.frame_timeout_s)
        self.receivers = [BoardReceiver(self.clusterer, board=b) for b in range(boards)]
        self.hub = ReceiveHub(self.counters, log)
        self.links = [BoardLink(spec.host, spec.http_port, spec.stream_port, config.transport,
                                partial(self._on_batch, b), self._on_tick, partial(self._on_connected, b),
                                self.counters, log, receive_buffer=config.receive_buffer_bytes, hub=self.hub)
                      for b, spec in enumerate(self.layout.boards)]
        self.reference_delay_s = reference_delays_s(
            boards, cable_lengths_m=[spec.cable_length_m for spec in self.layout.boards],
            velocity_factors=[spec.velocity_factor for spec in self.layout.boards])
        self._lock = threading.Lock()
        self.channel = 0
        self.secondary = 0
        self.hostname = ""
        self.identities = [""] * boards
        """Each board's identity (supervisor.board_identity), once connected."""
        self._g1 = False
        self._last_sensor_ns = [float("nan")] * boards
        self.supervisor = CalibrationSupervisor(
            policy=config.calibration_policy, duration_s=config.calibration_duration_s, file=config.calibration_file,
            array_id=config.board_id, https=[link.http for link in self.links], reference_delay_s=self.reference_delay_s,
            channel=lambda: (self.channel, self.secondary), streaming=lambda: self.state == "streaming",
            counters=self.counters, log=log, warn=warn, reverify_s=config.reverify_period_s)
        self.latencies_s: deque[float] = deque(maxlen=4096)
        self._last_expire = 0.0
        self._last_sequence: dict[bytes, int] = {}

    @property
    def calibration_path(self) -> Path:
        """Where the calibration is stored: calibration.file, else one file per array id and board identity."""
        return self.supervisor.path

    @property
    def state(self) -> str:
        """The connection state: "streaming" when every board streams, "reader_dead" when a receive thread died, else the
        state of the first board that does not stream."""
        if self.hub.dead or any(link.dead for link in self.links):
            return "reader_dead"
        return next((link.state for link in self.links if link.state != "streaming"), "streaming")

    def restart_dead_readers(self) -> int:
        """Restart every board's receive thread that died; returns how many."""
        return self.hub.restart_if_dead() + sum(link.restart_if_dead() for link in self.links)

    @property
    def state_detail(self) -> str:
        if len(self.links) == 1:
            return self.links[0].state_detail
        return "; ".join(f"{spec.name}: {link.state} {link.state_detail}" for spec, link in zip(self.layout.boards, self.links))

    @property
    def host(self) -> str:
        return ",".join(link.host for link in self.links)

    def start(self) -> None:
        self.supervisor.start()
        self.hub.start()
        for link in self.links:
            link.start()

    def stop(self) -> None:
        """Stop: a calibration burst ends at once and restores the boards; then the links stop."""
        self.supervisor.stop()
        for link in self.links:
            link.stop()
        self.hub.stop()

    def set_frame_policy(self, antennas_required: int, frame_timeout_s: float) -> None:
        """Change the incomplete-frame policy at run time (values validated by the caller; 0: all antennas)."""
        self.clusterer.antennas_required = antennas_required or self.clusterer.antennas
        self.clusterer.frame_timeout_s = frame_timeout_s

    # --- link thread -------------------------------------------------------------
    def _on_connected(self, board: int, info: BoardInfo) -> None:
        if board == self.layout.reference_board:
            self.hostname = info.hostname
        self.receivers[board].generation = info.generation
        http = self.links[board].http
        if info.generation == 3:
            if self.config.channel:
                http.command("/set_wificonf", {"channel-primary": self.config.channel,
                                               "channel-secondary": secondary_to_code(self.config.secondary_channel)})
            http.command("/set_csi_acquire_config", {"enable": True, "compress_csi": False})
            conf = http.get_json("/get_wificonf")
            if board == self.layout.reference_board:
                self.channel = int(conf.get("channel-primary", 0))
                self.secondary = secondary_from_code(int(conf.get("channel-secondary", 0)))
        if info.generation == 1:
            self._g1 = True
            return
        self.identities[board] = board_identity(http, info.hostname)
        self.supervisor.identity = "+".join(self.identities)
        self._check_rf_switch(board, http)
        self._last_sensor_ns[board] = float("nan")
        self.supervisor.invalidate("reconnect", f"board {self.layout.boards[board].name} (re)connected")

    def _check_rf_switch(self, board: int, http) -> None:
        """Put a switch found on REFERENCE or ISOLATION (e.g. a run interrupted mid-calibration)
        back on the antennas; a calibration burst in progress restores it itself."""
        if self.supervisor.status in ("verifying", "calibrating"):
            return
        state = http.request("/get_rfswitch").strip()
        if state in ("0", str(RF_REFERENCE)):
            self.counters["rf_switch_restored"] += 1
            self.warn(f"board {self.layout.boards[board].name}: RF switch found on "
                      f"{'REFERENCE' if state == '1' else 'ISOLATION'}; switching it to the antennas")
            http.command("/set_rfswitch", RF_ANTENNAS)

    def _on_batch(self, board: int, datagrams: list[Datagram]) -> None:
        with self._lock:
            for frame in self.receivers[board].feed_batch(datagrams):
                self._handle(frame, complete=True)

    def _on_tick(self, now: float) -> None:
        if now - self._last_expire >= EXPIRE_EVERY_S:
            with self._lock:
                self._last_expire = now
                for receiver in self.receivers:
                    for frame in receiver.expire(now):
                        self._handle(frame, complete=False)

    def _handle(self, frame: CsiFrame, complete: bool) -> None:
        self._watch_reboot(frame)
        if frame.is_reference:
            if not self.supervisor.offer(frame):
                self.counters["reference_frames_ignored"] += 1
            return
        self._count_missed(frame.key[0], frame.key[2])
        cal = self.supervisor.applies(frame)
        if cal is not None:
            cal.apply(frame)
        self.publish(self.in_layout(frame))
        self.counters["frames"] += 1
        if complete:
            self.latencies_s.append(time.perf_counter() - frame.completed_at)

    def _watch_reboot(self, frame: CsiFrame) -> None:
        """A board whose sensor clock goes back by more than REBOOT_BACKSTEP_S has rebooted (new LO
        phases): its calibration is stale until re-verified."""
        for board in range(len(self.links)):
            now_ns = float(np.fmax.reduce(frame.timestamps_ns[board], axis=None))    # NaN-skipping max
            if now_ns != now_ns:                                                      # no antenna of it reported
                continue
            last = self._last_sensor_ns[board]
            if now_ns < last - REBOOT_BACKSTEP_S * 1e9:
                self.counters["board_reboots"] += 1
                self.supervisor.invalidate("reboot", f"board {self.layout.boards[board].name} rebooted "
                                                     f"(sensor clock went back {(last - now_ns) * 1e-9:.1f} s)")
            self._last_sensor_ns[board] = now_ns

    def _count_missed(self, transmitter: bytes, sequence: int) -> None:
        """Count gaps in a transmitter's sequence numbers (``frames_missed``: frames it sent that
        were not published, lost over the air, in the kernel or as incomplete) and frames that
        arrive after a later one (``frames_out_of_order``, e.g. a partial frame closed late)."""
        last = self._last_sequence.pop(transmitter, None)
        if last is None:
            if len(self._last_sequence) >= MAX_TRACKED_TRANSMITTERS:
                self._last_sequence.pop(next(iter(self._last_sequence)))
            self._last_sequence[transmitter] = sequence
            return
        step = (sequence - last) % SEQUENCE_SPACE
        if step >= SEQUENCE_SPACE // 2:
            self.counters["frames_out_of_order"] += 1
            sequence = last
        elif step > 1:
            self.counters["frames_missed"] += step - 1
        self._last_sequence[transmitter] = sequence

    def in_layout(self, frame: CsiFrame) -> CsiFrame:
        """The frame with every per-antenna array as ``(rows, cols, ...)`` of the layout."""
        g = self.layout.gather
        return replace(frame, csi=g(frame.csi), mask=g(frame.mask), timestamps_ns=g(frame.timestamps_ns),
                       rssi_dbm=g(frame.rssi_dbm), noise_floor_dbm=g(frame.noise_floor_dbm),
                       rx_gain_db=g(frame.rx_gain_db), fft_gain_db=g(frame.fft_gain_db), cfo_hz=g(frame.cfo_hz))

    # --- calibration ---------------------------------------------------------------
    @property
    def calibration(self) -> Calibration | None:
        """The calibration in force, verified or not (``calibration_status`` says which)."""
        return self.supervisor.calibration

    @property
    def calibration_status(self) -> str:
        """One of supervisor.STATUSES; "g1" for generation-1 boards (not implemented)."""
        return "g1" if self._g1 else self.supervisor.status

    @property
    def calibration_state(self) -> str:
        """Human-readable calibration state with its reason."""
        return G1_UNCALIBRATED if self._g1 else f"{self.supervisor.status}: {self.supervisor.detail}"

    def calibrate(self, duration_s: float) -> Calibration:
        """Switch every board to the reference signal for ``duration_s``, estimate (pool-wide,
        including cable delays), apply and store; waits for the supervisor thread to do it.

        Raises CalibrationError or BoardError with the reason; the previous calibration stays
        in force on failure.
        """
        if self._g1:
            raise CalibrationError(G1_UNCALIBRATED)
        if self.state != "streaming":
            raise BoardError("unreachable", f"board not streaming ({self.state}: {self.state_detail})")
        return self.supervisor.calibrate_now(duration_s, timeout_s=duration_s + STREAM_WAIT_S + 20)

    def latency_percentiles_ms(self) -> tuple[float, float]:
        """(p50, p99) of last-report-to-publish latency over recent complete frames, ms."""
        if not self.latencies_s:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(np.array(tuple(self.latencies_s)), [50, 99])
        return p50 * 1e3, p99 * 1e3
