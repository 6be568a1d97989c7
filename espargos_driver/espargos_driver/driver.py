"""BoardDriver: one board, or several boards forming one combined array -> calibrated CsiFrames.

No ROS here: the node hands in a ``publish`` callback and reads ``counters``, ``state``,
``calibration_state`` and ``latency_percentiles_ms()`` for diagnostics.
Threads: each board's BoardLink thread receives and decodes; clustering across boards,
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

from .calibration import Calibration, CalibrationError, estimate_calibration, reference_delays_s
from .cluster import FrameClusterer
from .frame import CsiFrame
from .layout import ArrayLayout, single_board_layout
from .protocol.constants import ANTENNAS
from .receiver import BoardReceiver
from .transport.http_control import BoardError, BoardInfo
from .transport.link import TRANSPORTS, BoardLink
from .transport.streams import RECEIVE_BUFFER_BYTES
from .wifi import secondary_from_code, secondary_to_code

CALIBRATION_POLICIES = ("auto", "startup", "file", "none")
MIN_CALIBRATION_S, MAX_CALIBRATION_S = 0.1, 60.0
"""Range of a calibration's duration, s (parameter and service request)."""
RF_REFERENCE = 1
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
        if not 65536 <= self.receive_buffer_bytes <= 1 << 30:
            raise ValueError(f"receive_buffer must be 65536..1073741824 bytes, got {self.receive_buffer_bytes}")


class BoardDriver:
    """Connects to the board(s), keeps them streaming, calibrates the array (pool-wide, with cable
    delays, for a combined array) and hands out calibrated frames in the layout's rows x cols."""

    def __init__(self, config: DriverConfig, publish: Callable[[CsiFrame], None],
                 log: Callable[[str], None], warn: Callable[[str], None]) -> None:
        config.validate()
        self.config = config
        self.layout = config.boards()
        self.publish = publish
        self.log, self.warn = log, warn
        self.counters: Counter = Counter()
        boards = len(self.layout.boards)
        self.clusterer = FrameClusterer(self.counters, boards=boards, antennas_required=config.antennas_required or None,
                                        frame_timeout_s=config.frame_timeout_s)
        self.receivers = [BoardReceiver(self.clusterer, board=b) for b in range(boards)]
        self.links = [BoardLink(spec.host, spec.http_port, spec.stream_port, config.transport,
                                partial(self._on_packet, b), self._on_tick, partial(self._on_connected, b),
                                self.counters, log, receive_buffer=config.receive_buffer_bytes)
                      for b, spec in enumerate(self.layout.boards)]
        self.reference_delay_s = reference_delays_s(
            boards, cable_lengths_m=[spec.cable_length_m for spec in self.layout.boards],
            velocity_factors=[spec.velocity_factor for spec in self.layout.boards])
        self._lock = threading.Lock()
        self._connected: set[int] = set()
        self.channel = 0
        self.secondary = 0
        self.hostname = ""
        self.calibration: Calibration | None = None
        self.calibration_state = "none"
        self.latencies_s: deque[float] = deque(maxlen=4096)
        self._collecting: list[CsiFrame] | None = None
        self._calibration_lock = threading.Lock()
        self._last_expire = 0.0
        self._last_sequence: dict[bytes, int] = {}

    @property
    def calibration_path(self) -> Path:
        if self.config.calibration_file:
            return Path(self.config.calibration_file).expanduser()
        return Path("~/.ros/espargos").expanduser() / f"{self.config.board_id}.calibration.json"

    @property
    def state(self) -> str:
        """"streaming" when every board streams, "reader_dead" when a receive thread died, else the
        state of the first board that does not stream."""
        if any(link.started and not link.alive for link in self.links):
            return "reader_dead"
        return next((link.state for link in self.links if link.state != "streaming"), "streaming")

    def restart_dead_readers(self) -> int:
        """Restart every board's receive thread that died; returns how many."""
        return sum(link.restart_if_dead() for link in self.links)

    @property
    def state_detail(self) -> str:
        if len(self.links) == 1:
            return self.links[0].state_detail
        return "; ".join(f"{spec.name}: {link.state} {link.state_detail}" for spec, link in zip(self.layout.boards, self.links))

    @property
    def host(self) -> str:
        return ",".join(link.host for link in self.links)

    def start(self) -> None:
        for link in self.links:
            link.start()

    def stop(self) -> None:
        for link in self.links:
            link.stop()

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
            self.calibration_state = G1_UNCALIBRATED
            return
        first_time_all = board not in self._connected and len(self._connected) == len(self.links) - 1
        self._connected.add(board)
        if first_time_all and self.config.calibration_policy != "none":
            threading.Thread(target=self._startup_calibration, name="calibration", daemon=True).start()

    def _on_packet(self, board: int, data: bytes, now: float) -> None:
        with self._lock:
            for frame in self.receivers[board].feed(data, now):
                self._handle(frame, complete=True)

    def _on_tick(self, now: float) -> None:
        if now - self._last_expire >= EXPIRE_EVERY_S:
            with self._lock:
                self._last_expire = now
                for receiver in self.receivers:
                    for frame in receiver.expire(now):
                        self._handle(frame, complete=False)

    def _handle(self, frame: CsiFrame, complete: bool) -> None:
        if frame.is_reference:
            collecting = self._collecting
            if collecting is not None:
                collecting.append(frame)
            else:
                self.counters["reference_frames_ignored"] += 1
            return
        self._count_missed(frame.key[0], frame.key[2])
        cal = self.calibration
        if cal is not None and (cal.channel, cal.secondary) == (frame.channel, frame.secondary):
            cal.apply(frame)
        self.publish(self.in_layout(frame))
        self.counters["frames"] += 1
        if complete:
            self.latencies_s.append(time.perf_counter() - frame.completed_at)

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
    def _startup_calibration(self) -> None:
        policy = self.config.calibration_policy
        if policy in ("auto", "file") and self._load_calibration():
            return
        if policy == "file":
            self.calibration_state = f"uncalibrated: no matching calibration in {self.calibration_path}"
            self.warn(self.calibration_state)
            return
        try:
            self.calibrate(self.config.calibration_duration_s)
        except (CalibrationError, BoardError) as err:
            self.warn(f"start-up calibration failed: {err}")

    def _load_calibration(self) -> bool:
        path = self.calibration_path
        if not path.exists():
            return False
        try:
            cal = Calibration.load(path)
        except CalibrationError as err:
            self.warn(str(err))
            return False
        if not cal.matches(self.channel, self.secondary, self.config.board_id, len(self.links)):
            self.log(f"stored calibration {path} is for channel {cal.channel}/{cal.secondary:+d}, "
                     f"board {cal.array_id}; recalibrating")
            return False
        self.calibration = cal
        self.calibration_state = f"loaded from {path} (residual {cal.residual_deg:.2f} deg)"
        self.log(f"calibration {self.calibration_state}")
        return True

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + STREAM_WAIT_S
        while self.state != "streaming":
            if time.monotonic() > deadline:
                raise BoardError("unreachable", f"board not streaming ({self.state}: {self.state_detail})")
            time.sleep(0.05)

    def calibrate(self, duration_s: float) -> Calibration:
        """Switch every board to the reference signal for ``duration_s``, estimate (pool-wide,
        including cable delays), apply and store.

        Raises CalibrationError or BoardError with the reason; the previous calibration stays
        in force on failure.
        """
        if any(r.generation == 1 for r in self.receivers):
            raise CalibrationError(G1_UNCALIBRATED)
        if not self._calibration_lock.acquire(blocking=False):
            raise CalibrationError("a calibration is already running")
        try:
            self._wait_streaming()
            self.calibration_state = "calibrating"
            https = [link.http for link in self.links]
            saved = [(http.get_json("/get_mac_filter"), http.request("/get_rfswitch").strip()) for http in https]
            collected: list[CsiFrame] = []
            try:
                for http in https:
                    http.command("/set_mac_filter", {"enable": False})
                self._collecting = collected
                for http in https:
                    http.command("/set_rfswitch", str(RF_REFERENCE))
                time.sleep(duration_s)
            finally:
                self._collecting = None
                for http, (mac_filter, rfswitch) in zip(https, saved):
                    http.command("/set_rfswitch", rfswitch if rfswitch.isdigit() and rfswitch != "1" else "2")
                    http.command("/set_mac_filter", mac_filter)
            try:
                cal = estimate_calibration(collected, self.channel, self.secondary, self.config.board_id,
                                           self.reference_delay_s)
            except CalibrationError as err:
                self.calibration_state = f"failed: {err}"
                self.counters["calibration_failures"] += 1
                raise
            self.calibration = cal
            self.calibration_state = (f"calibrated from {cal.frames_used} reference frames "
                                      f"(residual {cal.residual_deg:.2f} deg)")
            self.log(self.calibration_state)
            try:
                cal.save(self.calibration_path)
            except OSError as err:
                self.warn(f"cannot store calibration in {self.calibration_path}: {err}")
            return cal
        finally:
            self._calibration_lock.release()

    def latency_percentiles_ms(self) -> tuple[float, float]:
        """(p50, p99) of last-report-to-publish latency over recent complete frames, ms."""
        if not self.latencies_s:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(np.array(tuple(self.latencies_s)), [50, 99])
        return p50 * 1e3, p99 * 1e3
