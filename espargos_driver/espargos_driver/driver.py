"""BoardDriver: one board (real or simulated) -> calibrated CsiFrames, with its health counters.

No ROS here: the node hands in a ``publish`` callback and reads ``counters``, ``link.state``,
``calibration_state`` and ``latency_percentiles_ms()`` for diagnostics.
Threads: the BoardLink thread receives, decodes, calibrates and publishes; calibrations
run on the caller's thread (service) or a start-up worker and only talk HTTP.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import Calibration, CalibrationError, estimate_calibration, reference_delays_s
from .cluster import FrameClusterer
from .frame import CsiFrame
from .receiver import BoardReceiver
from .transport.http_control import BoardError, BoardInfo
from .transport.link import TRANSPORTS, BoardLink
from .wifi import secondary_from_code, secondary_to_code

CALIBRATION_POLICIES = ("auto", "startup", "file", "none")
RF_REFERENCE = 1
EXPIRE_EVERY_S = 0.005
STREAM_WAIT_S = 10.0
G1_UNCALIBRATED = ("calibration of generation-1 (prototype) boards is not implemented "
                   "(they use /set_calib and a per-subcarrier model); publishing uncalibrated CSI")


@dataclass
class DriverConfig:
    host: str = "127.0.0.1"
    http_port: int = 80
    stream_port: int = 53330
    transport: str = "auto"
    board_id: str = "espargos"
    antennas_required: int = 8
    frame_timeout_s: float = 0.05
    channel: int = 0
    """0 keeps the board's channel."""
    secondary_channel: int = 0
    calibration_policy: str = "auto"
    calibration_duration_s: float = 2.0
    calibration_file: str = ""

    def validate(self) -> None:
        """Raise ValueError naming the first parameter that cannot work."""
        if not self.host:
            raise ValueError("host must not be empty")
        for name in ("http_port", "stream_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be 1..65535, got {getattr(self, name)}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be udp, websocket or auto, got {self.transport!r}")
        if not 1 <= self.antennas_required <= 8:
            raise ValueError(f"antennas_required must be 1..8, got {self.antennas_required}")
        if not 0.001 <= self.frame_timeout_s <= 5.0:
            raise ValueError(f"frame_timeout must be 0.001..5 s, got {self.frame_timeout_s}")
        if self.channel and not (1 <= self.channel <= 13):
            raise ValueError(f"channel must be 1..13 (0 keeps the board's), got {self.channel}")
        if self.secondary_channel not in (-1, 0, 1):
            raise ValueError(f"secondary_channel must be -1, 0 or +1, got {self.secondary_channel}")
        if self.calibration_policy not in CALIBRATION_POLICIES:
            raise ValueError(f"calibration.policy must be one of {CALIBRATION_POLICIES}, got {self.calibration_policy!r}")
        if not 0.1 <= self.calibration_duration_s <= 60:
            raise ValueError(f"calibration.duration must be 0.1..60 s, got {self.calibration_duration_s}")


class BoardDriver:
    """Connects to one board, keeps it streaming, calibrates it and hands out calibrated frames."""

    def __init__(self, config: DriverConfig, publish: Callable[[CsiFrame], None],
                 log: Callable[[str], None], warn: Callable[[str], None]) -> None:
        config.validate()
        self.config = config
        self.publish = publish
        self.log, self.warn = log, warn
        self.counters: Counter = Counter()
        self.clusterer = FrameClusterer(self.counters, antennas_required=config.antennas_required,
                                        frame_timeout_s=config.frame_timeout_s)
        self.receiver = BoardReceiver(self.clusterer)
        self.link = BoardLink(config.host, config.http_port, config.stream_port, config.transport,
                              self._on_packet, self._on_tick, self._on_connected, self.counters, log)
        self.channel = 0
        self.secondary = 0
        self.hostname = ""
        self.calibration: Calibration | None = None
        self.calibration_state = "none"
        self.latencies_s: deque[float] = deque(maxlen=4096)
        self._collecting: list[CsiFrame] | None = None
        self._calibration_lock = threading.Lock()
        self._last_expire = 0.0
        self._connections = 0

    @property
    def calibration_path(self) -> Path:
        if self.config.calibration_file:
            return Path(self.config.calibration_file).expanduser()
        return Path("~/.ros/espargos").expanduser() / f"{self.config.board_id}.calibration.json"

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def set_frame_policy(self, antennas_required: int, frame_timeout_s: float) -> None:
        """Change the incomplete-frame policy at run time (values validated by the caller)."""
        self.clusterer.antennas_required = antennas_required
        self.clusterer.frame_timeout_s = frame_timeout_s

    # --- link thread -------------------------------------------------------------
    def _on_connected(self, info: BoardInfo) -> None:
        self.hostname = info.hostname
        self.receiver.generation = info.generation
        http = self.link.http
        if info.generation == 3:
            if self.config.channel:
                http.command("/set_wificonf", {"channel-primary": self.config.channel,
                                               "channel-secondary": secondary_to_code(self.config.secondary_channel)})
            http.command("/set_csi_acquire_config", {"enable": True, "compress_csi": False})
            conf = http.get_json("/get_wificonf")
            self.channel = int(conf.get("channel-primary", 0))
            self.secondary = secondary_from_code(int(conf.get("channel-secondary", 0)))
        self._connections += 1
        if info.generation == 1:
            self.calibration_state = G1_UNCALIBRATED
            return
        if self._connections == 1 and self.config.calibration_policy != "none":
            threading.Thread(target=self._startup_calibration, name="calibration", daemon=True).start()

    def _on_packet(self, data: bytes, now: float) -> None:
        for frame in self.receiver.feed(data, now):
            self._handle(frame, complete=True)

    def _on_tick(self, now: float) -> None:
        if now - self._last_expire >= EXPIRE_EVERY_S:
            self._last_expire = now
            for frame in self.receiver.expire(now):
                self._handle(frame, complete=False)

    def _handle(self, frame: CsiFrame, complete: bool) -> None:
        if frame.is_reference:
            collecting = self._collecting
            if collecting is not None:
                collecting.append(frame)
            else:
                self.counters["reference_frames_ignored"] += 1
            return
        cal = self.calibration
        if cal is not None and (cal.channel, cal.secondary) == (frame.channel, frame.secondary):
            cal.apply(frame)
        self.publish(frame)
        self.counters["frames"] += 1
        if complete:
            self.latencies_s.append(time.perf_counter() - frame.completed_at)

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
        if not cal.matches(self.channel, self.secondary, self.config.board_id, 1):
            self.log(f"stored calibration {path} is for channel {cal.channel}/{cal.secondary:+d}, "
                     f"board {cal.array_id}; recalibrating")
            return False
        self.calibration = cal
        self.calibration_state = f"loaded from {path} (residual {cal.residual_deg:.2f} deg)"
        self.log(f"calibration {self.calibration_state}")
        return True

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + STREAM_WAIT_S
        while self.link.state != "streaming":
            if time.monotonic() > deadline:
                raise BoardError("unreachable", f"board not streaming ({self.link.state}: {self.link.state_detail})")
            time.sleep(0.05)

    def calibrate(self, duration_s: float) -> Calibration:
        """Switch the board to its reference signal for ``duration_s``, estimate, apply and store.

        Raises CalibrationError or BoardError with the reason; the previous calibration stays
        in force on failure.
        """
        if self.receiver.generation == 1:
            raise CalibrationError(G1_UNCALIBRATED)
        if not self._calibration_lock.acquire(blocking=False):
            raise CalibrationError("a calibration is already running")
        try:
            self._wait_streaming()
            self.calibration_state = "calibrating"
            http = self.link.http
            mac_filter = http.get_json("/get_mac_filter")
            rfswitch = http.request("/get_rfswitch").strip()
            collected: list[CsiFrame] = []
            try:
                http.command("/set_mac_filter", {"enable": False})
                self._collecting = collected
                http.command("/set_rfswitch", str(RF_REFERENCE))
                time.sleep(duration_s)
            finally:
                self._collecting = None
                http.command("/set_rfswitch", rfswitch if rfswitch.isdigit() and rfswitch != "1" else "2")
                http.command("/set_mac_filter", mac_filter)
            try:
                cal = estimate_calibration(collected, self.channel, self.secondary, self.config.board_id,
                                           reference_delays_s(1))
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
