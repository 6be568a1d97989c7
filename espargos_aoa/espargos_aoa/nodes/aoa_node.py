"""ROS 2 node: CsiArray + ArrayGeometry -> BearingArray, SpatialSpectrum, rviz MarkerArray and LaserScan."""
from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_msgs.msg import ArrayGeometry, BearingArray, CsiArray, SpatialSpectrum
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..common_messages import CsiArrayView, CsiInput, csi_qos, diagnostic_status
from ..covariance import CovarianceError
from ..diagnostic_counters import AOA_COUNTERS as ERROR_COUNTERS
from ..diagnostic_counters import CounterWarnings
from ..estimator import AoaConfig, AoaEstimator
from ..messages import (bearing_array_msg, bearing_markers, checked_csi, csi_arrays, geometry_positions, laser_scan_msg,
                        mac_text, parse_mac, spectrum_msg, stamp_seconds)
from ..runtime import events_executor, run_node
from ..window import FrameCheck, TransmitterWindows, frame_problem

MAX_TRANSMITTERS = 1024
"""Transmitters whose last taken stamp is kept for load shedding (least recent forgotten)."""
NO_BEARING_WARN_S = 3
"""Seconds (diagnostics periods) with CSI but no bearing after which the status turns WARN."""

# Parameter name -> (AoaConfig field, description). Angles in degrees.
ESTIMATOR_PARAMS = {
    "mode": ("mode", "wideband (per-subband MUSIC, default) or narrowband (one covariance over all subcarriers; "
                     "biased at high SNR off broadside)"),
    "subbands": ("subbands", "Subbands in wideband mode (1..512; the number of subcarriers = per subcarrier)"),
    "forward_backward": ("forward_backward", "Forward-backward averaging (needs a centro-symmetric array)"),
    "source_count": ("source_count", "mdl, aic, or fixed (= max_sources)"),
    "max_sources": ("max_sources", "Maximum sources (bearings) per transmitter, or the fixed count"),
    "two_d": ("two_d", "Search azimuth x elevation (2-D) instead of azimuth at elevation 0"),
    "azimuth_min": ("azimuth_min_deg", "Grid start, deg"),
    "azimuth_max": ("azimuth_max_deg", "Grid end, deg"),
    "azimuth_step": ("azimuth_step_deg", "Azimuth grid resolution, deg (refined continuously after the grid)"),
    "elevation_min": ("elevation_min_deg", "2-D grid start, deg"),
    "elevation_max": ("elevation_max_deg", "2-D grid end, deg"),
    "elevation_step": ("elevation_step_deg", "Elevation grid resolution, deg"),
    "min_peak_db": ("min_peak_db", "A peak must exceed the spectrum median by this many dB to be a bearing"),
    "phase_noise": ("phase_noise_deg", "Assumed 1-sigma phase error per antenna and frame, deg (enters the std)"),
    "uncertainty_floor": ("uncertainty_floor_deg", "deg added in quadrature to the std (fixed model errors)"),
}
DEFAULT_CONFIG = AoaConfig()
EARLY_FRAMES = 200
"""CSI that arrives before a usable ArrayGeometry (DDS does not order topics) is kept, up to this
many frames, and processed once the geometry is there; older ones are dropped (no_geometry)."""


def _desc(text: str, **ranges) -> ParameterDescriptor:
    return ParameterDescriptor(description=text, read_only=False, **ranges)


class AoaNode(Node):
    """Thin shell around AoaEstimator and TransmitterWindows; all processing runs in the CSI callback."""

    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("aoa_node", **node_options)
        p = self.declare_parameter
        for name, (attr, text) in ESTIMATOR_PARAMS.items():
            p(name, getattr(DEFAULT_CONFIG, attr), _desc(text))
        p("window_frames", 20, _desc("CSI frames per covariance window",
                                     integer_range=[IntegerRange(from_value=2, to_value=10000)]))
        p("min_frames", 5, _desc("Fewer frames in the window: no update (counted as too_few_frames)",
                                 integer_range=[IntegerRange(from_value=1, to_value=10000)]))
        p("window_max_age", 1.0, _desc("s; frames older than this before the newest leave the window",
                                       floating_point_range=[FloatingPointRange(from_value=0.001, to_value=3600.0)]))
        p("update_rate", 10.0, _desc("Hz of message-stamp time: bearings per transmitter per second",
                                     floating_point_range=[FloatingPointRange(from_value=0.01, to_value=1000.0)]))
        p("min_antennas", 4, _desc("Frames with fewer reported antennas are skipped",
                                   integer_range=[IntegerRange(from_value=2, to_value=1024)]))
        p("require_calibrated", True, _desc("Skip CSI whose `calibrated` flag is false"))
        p("mac_allowlist", [""], _desc("Transmitter MACs (aa:bb:cc:dd:ee:ff) to process; empty = all"))
        p("max_frame_rate", 1000.0, _desc("Hz per transmitter, by the receivers' sensor clock (else the header stamp): a "
                                          "frame sooner than 1/max_frame_rate after the last one taken is shed before any "
                                          "work (frames_shed); 0 takes all",
                                          floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1e6)]))
        p("csi_qos", "sensor_data", ParameterDescriptor(description="sensor_data (best effort) or reliable; needs a restart",
                                                        read_only=True))
        p("scan_dynamic_range", 30.0, _desc("dB of spectrum shown by the LaserScan view",
                                            floating_point_range=[FloatingPointRange(from_value=1.0, to_value=200.0)]))
        p("marker_length", 1.0, _desc("m, arrow length of the strongest bearing",
                                      floating_point_range=[FloatingPointRange(from_value=0.01, to_value=100.0)]))
        p("marker_lifetime", 1.0, _desc("s before a bearing marker disappears unless refreshed",
                                        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=3600.0)]))
        qos_name = self.get_parameter("csi_qos").value
        if qos_name not in ("sensor_data", "reliable"):
            raise ValueError(f"csi_qos must be sensor_data or reliable, got {qos_name!r}")
        self.config = self._config_from({})
        self.config.validate()
        self.counters: dict[str, int] = dict.fromkeys(ERROR_COUNTERS, 0) | {"frames": 0, "updates": 0, "bearings": 0}
        self.last_detail: dict[str, str] = {}
        self._warnings = CounterWarnings(ERROR_COUNTERS)
        self._previous: dict[str, int] = dict(self.counters)
        self._quiet_s = 0
        self.config_problem = ""
        """A setting that cannot work with the array in use (ERROR while set)."""
        self.positions: np.ndarray | None = None
        self.estimator: AoaEstimator | None = None
        self.check: FrameCheck | None = None
        self.windows = self._new_windows({})
        self.allowlist = self._allowlist(self.get_parameter("mac_allowlist").value)
        self.compute_ms: list[float] = []
        self.early: deque[CsiArrayView] = deque()
        self.last_sequence: dict[bytes, int] = {}
        self.last_taken_s: dict[bytes, float] = {}
        """Stamp of each transmitter's last frame taken in (load shedding by max_frame_rate)."""
        self.csi_input = CsiInput(self.counters, received="frames")
        self.max_frame_rate = self.get_parameter("max_frame_rate").value
        self.add_on_set_parameters_callback(self._on_set_parameters)

        qos = qos_profile_sensor_data if qos_name == "sensor_data" else csi_qos()
        self.create_subscription(CsiArray, "csi", self._on_csi_bytes, qos, raw=True)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(ArrayGeometry, "array_geometry", self._on_geometry, latched)
        self.bearing_pub = self.create_publisher(BearingArray, "bearings", 10)
        self.spectrum_pub = self.create_publisher(SpatialSpectrum, "spatial_spectrum", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "bearing_markers", 10)
        self.scan_pub = self.create_publisher(LaserScan, "spectrum_scan", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)

    def _config_from(self, overrides: dict) -> AoaConfig:
        values = {attr: overrides.get(name, self.get_parameter(name).value) for name, (attr, _) in ESTIMATOR_PARAMS.items()}
        return AoaConfig(**values)

    def _new_windows(self, overrides: dict) -> TransmitterWindows:
        g = lambda name: overrides.get(name, self.get_parameter(name).value)  # noqa: E731
        return TransmitterWindows(g("window_frames"), g("window_max_age"), 1.0 / g("update_rate"), g("min_frames"))

    @staticmethod
    def _allowlist(values: list[str]) -> set[bytes]:
        macs = set()
        for text in values:
            if text.strip():
                raw = parse_mac(text)
                if raw is None:
                    raise ValueError(f"mac_allowlist: not a MAC address (aa:bb:cc:dd:ee:ff): {text!r}")
                macs.add(raw)
        return macs

    def _on_set_parameters(self, params) -> SetParametersResult:
        overrides = {p.name: p.value for p in params}
        try:
            config = self._config_from(overrides)
            config.validate()
            estimator = self.estimator
            if self.positions is not None and any(name in overrides for name in ESTIMATOR_PARAMS):
                estimator = AoaEstimator(config, self.positions)   # new grid or method: new steering cache
            allowlist = self._allowlist(overrides.get("mac_allowlist", self.get_parameter("mac_allowlist").value))
            windows = self._new_windows(overrides)
            min_antennas = overrides.get("min_antennas", self.get_parameter("min_antennas").value)
        except (ValueError, TypeError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.config, self.estimator, self.allowlist = config, estimator, allowlist
        self.max_frame_rate = overrides.get("max_frame_rate", self.max_frame_rate)
        if any(k in overrides for k in ("window_frames", "window_max_age", "update_rate", "min_frames")):
            self.windows = windows
        if self.check is not None:
            if min_antennas > self.check.antennas:
                return SetParametersResult(successful=False, reason=f"min_antennas {min_antennas} exceeds the "
                                                                    f"{self.check.antennas} antennas of the array")
            self.check.min_antennas = min_antennas
            self._check_min_antennas(min_antennas)
            self.check.require_calibrated = overrides.get("require_calibrated", self.check.require_calibrated)
        return SetParametersResult(successful=True)

    def _check_min_antennas(self, min_antennas: int) -> None:
        antennas = self.check.antennas
        if min_antennas > antennas:
            self.config_problem = (f"min_antennas {min_antennas} exceeds the {antennas} antennas of the array: "
                                   f"no bearing can be published; set min_antennas <= {antennas}")
            self.get_logger().error(self.config_problem)
        else:
            self.config_problem = ""

    def _count(self, key: str, detail: str, n: int = 1) -> None:
        self.counters[key] += n
        self.last_detail[key] = detail

    def _on_geometry(self, msg: ArrayGeometry) -> None:
        try:
            positions = geometry_positions(msg)
            estimator = AoaEstimator(self.config, positions)
        except ValueError as err:
            self._count("bad_geometry", str(err))
            self.get_logger().warning(f"unusable array geometry from {msg.source_id!r}: {err}")
            self.positions = self.estimator = self.check = None
            return
        self.positions, self.estimator = positions, estimator
        self.check = FrameCheck(positions.shape[0], self.get_parameter("min_antennas").value,
                                self.get_parameter("require_calibrated").value)
        self._check_min_antennas(self.check.min_antennas)
        self.get_logger().info(f"array geometry of {msg.source_id!r}: {msg.rows} x {msg.cols} antennas")
        early, self.early = self.early, deque()
        for frame in early:
            self._process(frame)

    def _on_csi_bytes(self, data: bytes) -> None:
        """The csi subscription delivers serialized bytes: read without building an rclpy message."""
        msg = self.csi_input(data)
        if msg is None:
            self.last_detail["bad_csi_message"] = self.csi_input.last_error
        else:
            self._on_csi(msg)

    def _on_csi(self, msg: CsiArrayView) -> None:
        if msg.is_reference:
            return
        if self.allowlist and bytes(msg.transmitter_mac) not in self.allowlist:
            return
        self._check_sequence(msg)
        if self._shed(msg):
            return
        if self.estimator is None or self.check is None:
            if len(self.early) == EARLY_FRAMES:
                self.early.popleft()
                self._count("no_geometry", f"no usable ArrayGeometry on array_geometry for {EARLY_FRAMES} frames")
            self.early.append(msg)
            return
        self._process(msg)

    def _check_sequence(self, msg: CsiArrayView) -> None:
        """Count the frames missing between a transmitter's consecutive sequence numbers (12 bit);
        a repeated or older number (a retry, reordering) is no gap."""
        mac = bytes(msg.transmitter_mac)
        last = self.last_sequence.get(mac)
        gap = None if last is None else (msg.sequence_number - last) % 4096
        if gap is None or 0 < gap < 2048:
            self.last_sequence[mac] = msg.sequence_number
            if gap and gap > 1:
                self._count("frames_missed", f"{gap - 1} frames of {mac_text(mac)} before sequence number "
                                             f"{msg.sequence_number} never arrived", gap - 1)

    def _shed(self, msg: CsiArrayView) -> bool:
        """Whether to drop ``msg`` unprocessed: it comes sooner than 1/max_frame_rate after the last
        frame of its transmitter that was taken in (counted as frames_shed). Time is the receivers'
        own sensor clock (the first finite sensor timestamp), which keeps the spacing of the frames
        on air: header stamps are publish times, which a driver catching up after a stall bunches
        together. Without a sensor timestamp the header stamp is used. A clock that jumps (another
        board's antenna first) only ever lets a frame through."""
        rate = self.max_frame_rate
        if rate <= 0:
            return False
        mac = bytes(msg.transmitter_mac)
        sensor = np.asarray(msg.sensor_timestamps, float)
        finite = np.flatnonzero(np.isfinite(sensor))
        stamp = float(sensor[finite[0]]) if finite.size else stamp_seconds(msg.header.stamp)
        last = self.last_taken_s.get(mac)
        if last is not None and 0 <= stamp - last < 1.0 / rate:
            self._count("frames_shed", f"{mac_text(mac)} sends faster than max_frame_rate {rate:g} Hz")
            return True
        if last is None and len(self.last_taken_s) >= MAX_TRANSMITTERS:
            self.last_taken_s.pop(next(iter(self.last_taken_s)))
        self.last_taken_s[mac] = stamp
        return False

    def _process(self, msg: CsiArrayView) -> None:
        """Header checks only: the CSI is converted when an update is due (see Window)."""
        mac = bytes(msg.transmitter_mac)
        antennas = msg.rows * msg.cols
        problem = frame_problem(antennas, msg.antenna_mask, msg.calibrated, self.check)
        if problem is not None:
            self._count(problem, f"frame {msg.sequence_number} from {mac_text(mac)}: {antennas} antennas, "
                                 f"{sum(msg.antenna_mask)} reported, calibrated={msg.calibrated}, "
                                 f"geometry has {self.check.antennas}")
            return
        try:
            csi = checked_csi(msg)
        except ValueError as err:
            self._count("bad_csi_message", f"from {mac_text(mac)}: {err}")
            return
        if not np.isfinite(csi[np.asarray(msg.antenna_mask, bool)]).all():
            self._count("nan_csi", f"frame {msg.sequence_number} from {mac_text(mac)} has NaN or infinite CSI "
                                   f"on a reported antenna")
            return
        grid = (msg.center_frequency_hz, msg.subcarrier_spacing_hz, *csi.shape, msg.format)
        window = self.windows.add(mac, stamp_seconds(msg.header.stamp), [msg, None], grid)
        if window is None:
            return
        self._update(msg, mac, window)

    def _window_arrays(self, window) -> tuple | None:
        """The window's frames as csi ``(F, N, S)``, mask ``(F, N)``, freqs_hz, valid_bins. Each
        frame ([message, arrays]) is converted once, the first time an update needs it; frames
        whose CSI cannot be used are counted then and left out. None if no frame is left."""
        usable = []
        for entry in window.frames:
            if entry[1] is None:
                entry[1] = self._converted(entry[0])
            if entry[1] is not False:
                usable.append(entry[1])
        if not usable:
            return None
        csi, mask, freqs_hz, valid = zip(*usable)
        return np.stack(csi), np.stack(mask), freqs_hz[-1], valid[-1]

    def _converted(self, msg: CsiArrayView) -> tuple | bool:
        """csi_arrays of one message (its size and values were checked on arrival), or False
        (counted) if its other arrays disagree with it."""
        try:
            return csi_arrays(msg)
        except ValueError as err:
            self._count("bad_csi_message", str(err))
            return False

    def _update(self, msg: CsiArrayView, mac: bytes, window) -> None:
        start = time.perf_counter()
        arrays = self._window_arrays(window)
        frames = 0 if arrays is None else arrays[0].shape[0]
        if frames < self.windows.min_frames:
            self._count("too_few_frames", f"{frames} usable frames of {mac_text(mac)} in the window, "
                                          f"min_frames is {self.windows.min_frames}")
            return
        csi, mask, freqs_hz, valid = arrays
        try:
            result = self.estimator.estimate(csi, mask, freqs_hz, valid)
        except CovarianceError as err:
            self._count(err.reason, str(err))
            return
        self.compute_ms = (self.compute_ms + [1e3 * (time.perf_counter() - start)])[-100:]
        header = Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id)
        method = f"music-{self.config.mode}"
        self.counters["updates"] += 1
        self.spectrum_pub.publish(spectrum_msg(result, header, msg.source_id, mac, method))
        self.scan_pub.publish(laser_scan_msg(result, header, self.get_parameter("scan_dynamic_range").value, 1.0))
        if not result.bearings:
            self._count("no_source", f"no spectrum peak of {mac_text(mac)} above min_peak_db "
                                     f"(sources detected: {result.sources})")
            return
        self.counters["bearings"] += len(result.bearings)
        self.bearing_pub.publish(bearing_array_msg(result, header, msg.source_id, mac, method,
                                                   window.stamps_s[-1] - window.stamps_s[0]))
        self.marker_pub.publish(bearing_markers(result, header, mac, self.get_parameter("marker_length").value,
                                                self.get_parameter("marker_lifetime").value))

    def _publish_diagnostics(self) -> None:
        for reason, n in self.windows.restarts.items():
            self.counters[f"window_restart_{reason}"] = n
        for key, new in self._warnings.due(self.counters, time.monotonic()):
            self.get_logger().warning(f"{key}: {new} new ({ERROR_COUNTERS[key]}; {self.last_detail.get(key, '')})")
        level, message = self._status()
        values = {"mode": self.config.mode, "two_d": self.config.two_d, "transmitters": len(self.windows.windows),
                  "waiting_for_geometry": len(self.early),
                  "compute_ms_p50": f"{np.median(self.compute_ms):.2f}" if self.compute_ms else "nan",
                  **self.counters}
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(f"espargos_aoa: {self.get_namespace().rstrip('/')}/{self.get_name()}",
                                        self.get_fully_qualified_name(), level, message, values)]
        self.diag_pub.publish(msg)

    def _status(self) -> tuple[bytes, str]:
        """OK only while bearings come out; otherwise WARN (or ERROR for a setting that cannot work)
        with the most frequent reason of the last seconds."""
        delta = {k: v - self._previous.get(k, 0) for k, v in self.counters.items()}
        self._previous = dict(self.counters)
        self._quiet_s = 0 if delta["bearings"] else self._quiet_s + 1
        if self.config_problem:
            return DiagnosticStatus.ERROR, self.config_problem
        if self.estimator is None:
            return DiagnosticStatus.WARN, "waiting for geometry"
        if not self.counters["frames"]:
            return DiagnosticStatus.WARN, "waiting for CSI"
        if self._quiet_s < NO_BEARING_WARN_S:
            return DiagnosticStatus.OK, "estimating"
        if not delta["frames"]:
            return DiagnosticStatus.WARN, f"no CSI for {self._quiet_s} s"
        reason = max(ERROR_COUNTERS, key=lambda k: delta.get(k, 0))
        if not delta.get(reason):
            return DiagnosticStatus.WARN, f"no bearing for {self._quiet_s} s (windows filling)"
        return DiagnosticStatus.WARN, (f"no bearing for {self._quiet_s} s: {ERROR_COUNTERS[reason]} "
                                       f"({delta[reason]} in the last second)")


def main(args: list[str] | None = None) -> int:
    return run_node(AoaNode, "espargos aoa_node", args, events_executor)


if __name__ == "__main__":
    sys.exit(main())
