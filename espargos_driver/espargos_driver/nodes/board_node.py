"""ROS 2 node for one ESPARGOS board: parameters, CsiArray/ArrayGeometry publishers, Calibrate service, diagnostics."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import replace

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_aoa.diagnostic_counters import CounterWarnings
from espargos_aoa.common_messages import csi_qos, diagnostic_status
from espargos_aoa.runtime import run_node
from espargos_msgs.msg import ArrayGeometry, CsiArray
from espargos_msgs.srv import Calibrate
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ..calibration import CalibrationError
from ..diagnostic_counters import BOARD_COUNTERS
from ..driver import MAX_CALIBRATION_S, MIN_CALIBRATION_S, BoardDriver, DriverConfig
from ..frame import CsiFrame
from ..layout import load_layout_file
from ..protocol.constants import ANTENNAS
from ..messages import CsiArraySerializer, frame_to_msg, geometry_msg, serializer_matches_middleware
from ..transport.http_control import BoardError, BoardHttp
from ..transport.streams import RECEIVE_BUFFER_BYTES
from .managed import ManagedDriverNode

PROBE_TIMEOUT_S = 2.0
"""How long configure waits for each board's identity."""


def _desc(text: str, read_only: bool = True, **ranges) -> ParameterDescriptor:
    return ParameterDescriptor(description=text, read_only=read_only, **ranges)


class BoardNode(ManagedDriverNode):
    """Thin managed shell around BoardDriver: one driver per activation (see nodes.managed)."""

    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("board_node", **node_options)
        p = self.declare_parameter
        p("host", "127.0.0.1", _desc("Board (controller) address; change needs a restart"))
        p("array_config", "", _desc("Combined-array YAML (pyespargos format, see config/combined_array.yaml): "
                                    "several boards as one array; host/http_port/stream_port are then unused"))
        p("http_port", 80, _desc("HTTP/WebSocket port of the controller",
                                 integer_range=[IntegerRange(from_value=1, to_value=65535)]))
        p("stream_port", 53330, _desc("Controller's UDP stream port", integer_range=[IntegerRange(from_value=1, to_value=65535)]))
        p("transport", "auto", _desc("Sensor stream transport: udp, websocket, or auto (UDP, then WebSocket)"))
        p("receive_buffer", RECEIVE_BUFFER_BYTES, _desc("SO_RCVBUF of the UDP stream socket, bytes (the kernel may grant "
                                                        "less: see receive_buffer_granted in /diagnostics)",
                                                        integer_range=[IntegerRange(from_value=65536, to_value=1 << 30)]))
        p("board_id", "espargos", _desc("Array id put in CsiArray.source_id; names the calibration file"))
        p("frame_id", "espargos_array", _desc("TF frame of the array (x boresight, y left, z up)"))
        p("antennas_required", 0, _desc("Publish an incomplete frame after frame_timeout if at least this many antennas "
                                        "reported (0: all antennas of the array)", read_only=False,
                                        integer_range=[IntegerRange(from_value=0, to_value=1024)]))
        p("frame_timeout", 0.05, _desc("s to wait for missing antennas of a frame", read_only=False,
                                       floating_point_range=[FloatingPointRange(from_value=0.001, to_value=5.0)]))
        p("channel", 0, _desc("WiFi primary channel to set on the board (0 keeps the board's)"))
        p("secondary_channel", 0, _desc("Secondary channel with `channel`: +1 above, -1 below, 0 none"))
        p("calibration.policy", "auto", _desc("auto: load matching file else calibrate; startup: always calibrate; "
                                              "file: load only; none"))
        p("calibration.duration", 2.0, _desc("s of reference packets per calibration"))
        p("calibration.file", "", _desc("Calibration file (default ~/.ros/espargos/<board_id>-<board identity>"
                                        ".calibration.json)"))
        p("calibration.reverify_period", 0.0, _desc("s between re-verifications of the calibration with a 0.3 s "
                                                    "reference burst (0: only after reconnects, reboots and "
                                                    "channel changes)"))
        self.config = self._read_config()
        self.driver: BoardDriver | None = None
        self.csi_pub = self.geometry_pub = None
        self.serializer: CsiArraySerializer | None = None
        """Writes CsiArray bytes directly; None where the middleware reads them differently."""
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Calibrate, "calibrate", self._on_calibrate, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup())
        self._last_counts: dict[str, int] = {}
        self._last_diag = time.monotonic()
        self._warnings = CounterWarnings(BOARD_COUNTERS)
        self.autostart()

    def _read_config(self) -> DriverConfig:
        """The driver configuration from the parameters; ValueError if it cannot work."""
        g = self.get_parameter
        self.frame_id = g("frame_id").value
        self.board_id = g("board_id").value
        layout = load_layout_file(g("array_config").value) if g("array_config").value else None
        config = DriverConfig(
            host=g("host").value, http_port=g("http_port").value, stream_port=g("stream_port").value,
            transport=g("transport").value, board_id=self.board_id,
            antennas_required=g("antennas_required").value, frame_timeout_s=g("frame_timeout").value,
            channel=g("channel").value, secondary_channel=g("secondary_channel").value,
            calibration_policy=g("calibration.policy").value,
            calibration_duration_s=g("calibration.duration").value, calibration_file=g("calibration.file").value,
            reverify_period_s=g("calibration.reverify_period").value,
            layout=layout, receive_buffer_bytes=g("receive_buffer").value)
        config.validate()
        return config

    # --- lifecycle ---------------------------------------------------------------------
    def configure(self) -> None:
        """Check the parameters, create the publishers, and ask each board who it is (a board that
        does not answer yet is reported; activation keeps trying to reach it)."""
        self.config = self._read_config()
        self.csi_pub = self.create_lifecycle_publisher(
            CsiArray, "csi", csi_qos())
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self.geometry_pub = self.create_lifecycle_publisher(ArrayGeometry, "array_geometry", latched)
        self.serializer = CsiArraySerializer(self.frame_id, self.board_id)
        self.published = 0
        """CsiArrays published on csi so far: the next one's source_sequence."""
        if not serializer_matches_middleware(self.serializer):
            self.serializer = None
            self.get_logger().warning("the middleware reads CsiArray bytes differently from espargos_aoa.csi_wire: "
                                      "publishing rclpy messages instead (slower)")
        for spec in self.config.boards().boards:
            try:
                info = BoardHttp(spec.host, spec.http_port, timeout_s=PROBE_TIMEOUT_S).identify()
            except BoardError as err:
                self.get_logger().warning(f"board at {spec.host}:{spec.http_port} does not answer yet ({err}); "
                                          "once active the driver keeps trying to reach it")
            else:
                self.get_logger().info(f"found {info.hostname or spec.host} at {spec.host}:{spec.http_port} "
                                       f"(generation {info.generation}, API {info.api_version})")

    def activate(self) -> None:
        """Connect, calibrate (by policy) and stream; publish the array geometry (latched)."""
        config = self.config
        self.driver = BoardDriver(config, self._publish, self.get_logger().info, self.get_logger().warning,
                                  counters=self.counters)
        layout = self.driver.layout
        labels = layout.labels() if len(layout.boards) > 1 else [f"{self.board_id}.{r}.{c}" for r in range(2) for c in range(4)]
        self.geometry_pub.publish(geometry_msg(layout.positions(), labels, self.get_clock().now().to_msg(),
                                               self.frame_id, self.board_id))
        self.get_logger().info(
            "connecting to board at " + ", ".join(f"{b.host}:{b.http_port} (stream port {b.stream_port})"
                                                  for b in layout.boards)
            + f" over {config.transport}; calibration policy {config.calibration_policy}")
        self.driver.start()

    def deactivate(self) -> None:
        """Stop streaming; a calibration burst in progress ends and restores RF switch and MAC filter."""
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.stop()
            self.get_logger().info("deactivated: not streaming; the board is left as found")

    def _publish(self, frame: CsiFrame) -> None:
        """Called on a receive thread; after Ctrl-C the context goes away under it: frames are then dropped."""
        try:
            # The header stamp is when the frame's first report arrived (CsiArray.msg), on the node's
            # clock: now, less the frame's age. Publish time would shift every frame of a backlog.
            stamp_ns = self.get_clock().now().nanoseconds - int((time.time() - frame.host_time) * 1e9)
            if self.serializer is not None:
                self.csi_pub.publish(self.serializer(frame, stamp_ns, self.published))
            else:
                self.csi_pub.publish(frame_to_msg(frame, Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                                  self.frame_id, self.board_id, self.published))
            self.published += 1
        except Exception:
            if self.context.ok():
                raise

    def _on_set_parameters(self, params) -> SetParametersResult:
        antennas = len(self.config.boards().boards) * ANTENNAS
        required = self.config.antennas_required or antennas
        timeout = self.config.frame_timeout_s
        for param in params:
            if param.name == "antennas_required":
                required = param.value or antennas
            elif param.name == "frame_timeout":
                timeout = param.value
        if not 1 <= required <= antennas:
            return SetParametersResult(successful=False, reason=f"antennas_required must be 1..{antennas} "
                                                                f"(0: all), got {required}")
        if not 0.001 <= timeout <= 5.0:
            return SetParametersResult(successful=False, reason=f"frame_timeout must be 0.001..5 s, got {timeout}")
        self.config = replace(self.config, antennas_required=required, frame_timeout_s=timeout)
        if self.driver is not None:
            self.driver.set_frame_policy(required, timeout)
        return SetParametersResult(successful=True)

    def _on_calibrate(self, request: Calibrate.Request, response: Calibrate.Response) -> Calibrate.Response:
        driver = self.driver
        if driver is None:
            response.success = False
            response.message = f"board_node is {self.lifecycle_state}: activate it to calibrate"
            self.get_logger().warning(f"calibrate request refused: {response.message}")
            return response
        duration = request.duration_s or driver.config.calibration_duration_s
        if not (math.isfinite(duration) and MIN_CALIBRATION_S <= duration <= MAX_CALIBRATION_S):
            response.success = False
            response.message = (f"duration_s must be {MIN_CALIBRATION_S}..{MAX_CALIBRATION_S:.0f} s "
                                f"(0: calibration.duration), got {request.duration_s}")
            self.get_logger().warning(f"calibrate request refused: {response.message}")
            return response
        try:
            cal = driver.calibrate(duration)
        except (CalibrationError, BoardError) as err:
            response.success = False
            response.message = str(err)
            self.get_logger().warning(f"calibration failed: {err}")
            return response
        response.success = True
        response.message = driver.calibration_state
        response.phase_residual_deg = cal.residual_deg
        response.phase_offsets_rad = cal.phase_rad.reshape(-1).astype(float).tolist()
        response.time_offsets_s = cal.time_s.reshape(-1).astype(float).tolist()
        response.gains_db = cal.gain_db.reshape(-1).astype(float).tolist()
        response.reference_frames = cal.frames_used
        return response

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        dt = max(now - self._last_diag, 1e-3)
        counts = dict(self.counters)
        rate = {k: (counts.get(k, 0) - self._last_counts.get(k, 0)) / dt for k in ("packets", "reports", "frames")}
        self._last_counts, self._last_diag = counts, now
        errors = {k: counts.get(k, 0) for k in BOARD_COUNTERS}
        driver = self.driver
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        if driver is None:
            msg.status = [diagnostic_status(f"espargos_driver: {self.board_id}", self.config.boards().boards[0].host,
                                            DiagnosticStatus.WARN, f"{self.lifecycle_state}: not streaming",
                                            {"lifecycle_state": self.lifecycle_state, "frames_total": counts.get("frames", 0),
                                             **errors})]
            self.diag_pub.publish(msg)
            return
        p50, p99 = driver.latency_percentiles_ms()
        for key, new in self._warnings.due(errors, now):
            self.get_logger().warning(f"{key}: {new} new ({BOARD_COUNTERS[key]}; {self._detail(driver, key)})")
        state = driver.state
        if state == "reader_dead":
            self.get_logger().error(f"a receive thread died ({driver.state_detail}); restarting it")
            driver.restart_dead_readers()
        calibration = driver.calibration_status
        if state != "streaming" or calibration == "failed":
            level = DiagnosticStatus.ERROR
        elif calibration == "verified":
            level = DiagnosticStatus.OK
        else:
            level = DiagnosticStatus.WARN
        values = {"lifecycle_state": self.lifecycle_state, "connection": state, "connection_detail": driver.state_detail,
                  "boards": len(driver.links),
                  "sensor_packets_per_s": f"{rate['packets']:.1f}", "reports_per_s": f"{rate['reports']:.1f}",
                  "frames_per_s": f"{rate['frames']:.1f}", "frames_total": counts.get("frames", 0),
                  "calibration_status": calibration, "calibration": driver.calibration_state,
                  "board_identity": driver.supervisor.identity,
                  "calibration_residual_deg": f"{driver.calibration.residual_deg:.2f}" if driver.calibration else "nan",
                  "calibration_gains_db": (" ".join(f"{g:+.2f}" for g in driver.calibration.gain_db.reshape(-1))
                                           if driver.calibration else ""),
                  "channel": driver.channel, "secondary_channel": driver.secondary,
                  "csi_serialization": "direct CDR" if self.serializer is not None else "rclpy message",
                  "latency_p50_ms": f"{p50:.3f}", "latency_p99_ms": f"{p99:.3f}",
                  "stream_local_port": ",".join(str(link.local_port) for link in driver.links),
                  "receive_buffer_granted": ",".join(str(link.receive_buffer_granted) for link in driver.links),
                  "strangers": "; ".join(f"{who} x{n}" for link in driver.links for who, n in link.strangers.most_common(5)),
                  **errors}
        msg.status = [diagnostic_status(f"espargos_driver: {self.board_id}", driver.hostname or driver.host,
                                        level, f"{state}; {driver.calibration_state}", values)]
        self.diag_pub.publish(msg)

    @staticmethod
    def _detail(driver: BoardDriver, key: str) -> str:
        for err in [r.last_error for r in driver.receivers] + [driver.clusterer.last_error]:
            if err is not None and err.reason == key:
                return err.detail
        if key == "foreign_source":
            return "from " + ", ".join(f"{who} x{n}" for link in driver.links for who, n in link.strangers.most_common(3))
        return driver.state_detail if key in ("silence", "unreachable", "api_version", "reconnects", "reader_error") \
            else "see /diagnostics"


def main(args: list[str] | None = None) -> int:
    return run_node(BoardNode, "espargos board_node", args, lambda: MultiThreadedExecutor(num_threads=3))


if __name__ == "__main__":
    sys.exit(main())
