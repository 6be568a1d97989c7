"""ROS 2 node: CsiArray -> VitalSigns (breathing, presence), with diagnostics. Single-antenna
reports (swarm_node) give one VitalSigns per link; calibrated array frames (board_node, with its
ArrayGeometry) one per transmitter and beam. The estimation is espargos_aoa.vitals,
espargos_aoa.swarm_vitals and espargos_aoa.array_vitals."""
from __future__ import annotations

from collections import Counter

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_msgs.msg import ArrayGeometry, CsiArray, VitalSigns
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from ..common_messages import CsiArrayView, CsiInput, csi_qos, diagnostic_status
from ..array_vitals import ArrayVitals
from ..diagnostic_counters import VITALS_COUNTERS, CounterWarnings
from ..messages import csi_arrays, geometry_positions, mac_text, node_names, single_antenna_csi, stamp_seconds
from ..runtime import events_executor, run_node
from ..sanitize import sanitize
from ..swarm_vitals import BIDIRECTIONAL, NODE_PARAMETERS, ONE_WAY, SwarmLinkVitals
from ..vitals import EMPTY, MOVING, STILL, UNKNOWN, VitalsConfig, VitalsEstimate, bandpass, config_parameters

PRESENCE = {UNKNOWN: VitalSigns.PRESENCE_UNKNOWN, EMPTY: VitalSigns.PRESENCE_EMPTY,
            STILL: VitalSigns.PRESENCE_STILL, MOVING: VitalSigns.PRESENCE_MOVING}
METHODS = {ONE_WAY: VitalSigns.METHOD_ONE_WAY, BIDIRECTIONAL: VitalSigns.METHOD_BIDIRECTIONAL}
MAX_BEAMS = 32


class VitalSignsNode(Node):
    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("vital_signs_node", **node_options)
        config_params = config_parameters()
        for name, (default, text) in NODE_PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        for name, (_, default, text) in config_params.items():
            self.declare_parameter(name, float(default), ParameterDescriptor(description=text, read_only=True))
        self.config = VitalsConfig(**{field: self.get_parameter(name).value for name, (field, _, _) in config_params.items()})
        self.config.validate()
        self.pair_tolerance = float(self.get_parameter("pair_tolerance").value)
        self.period = float(self.get_parameter("publish_period").value)
        if not 0.0 < self.pair_tolerance < 0.1:
            raise ValueError(f"pair_tolerance must be in (0, 0.1) s, got {self.pair_tolerance}")
        if not 0.0 < self.period <= self.config.window_s:
            raise ValueError(f"publish_period must be in (0, window] s, got {self.period}")
        self.node_of_mac = node_names(self.get_parameter("nodes").value)
        beams_deg = [float(b) for b in self.get_parameter("beams").value]
        if not 0 < len(beams_deg) <= MAX_BEAMS or not all(-90.0 <= b <= 90.0 for b in beams_deg):
            raise ValueError(f"beams must be 1-{MAX_BEAMS} azimuths in [-90, 90] deg, got {beams_deg}")
        self.beams_rad = np.radians(beams_deg)
        self.max_links = int(self.get_parameter("max_links").value)
        if self.max_links < 1:
            raise ValueError(f"max_links must be >= 1, got {self.max_links}")
        # Load scipy.signal now (about 2 s of CPU), not in the first window's callback while reports
        # queue up; after the parameter checks, so that a refused parameter exits at once.
        bandpass(self.config.min_rate_bpm / 60.0, self.config.max_rate_bpm / 60.0, self.config.sample_rate_hz)
        self.counters: Counter = Counter()
        self.links: dict[tuple[str, str], SwarmLinkVitals] = {}
        self.arrays: dict[tuple[str, str], ArrayVitals] = {}
        """(transmitter MAC, array source_id) -> its beams' estimator."""
        self.geometries: dict[str, np.ndarray] = {}
        """Antenna positions (N, 3) m by array source_id."""
        self.latest: dict[tuple, VitalsEstimate] = {}
        """Latest verdict by link (a, b) or by array beam (transmitter, source_id, azimuth rad)."""
        self.pub = self.create_publisher(VitalSigns, "vital_signs", 50)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.csi_input = CsiInput(self.counters)
        self.create_subscription(CsiArray, "csi", self._on_csi_bytes, csi_qos(), raw=True)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(ArrayGeometry, "array_geometry", self._on_geometry, latched)
        self.create_timer(1.0, self._diagnostics)
        self._warnings = CounterWarnings(VITALS_COUNTERS)

    def _on_csi_bytes(self, data: bytes) -> None:
        """The csi subscription delivers serialized bytes: read without building an rclpy message
        (a fifth of the cost; swarm links bring hundreds of reports per second)."""
        msg = self.csi_input(data)
        if msg is not None:
            self._on_csi(msg)

    def _on_geometry(self, msg: ArrayGeometry) -> None:
        try:
            positions = geometry_positions(msg)
        except ValueError as err:
            self.counters["bad_csi_message"] += 1
            self.get_logger().warning(f"unusable array geometry from {msg.source_id!r}: {err}")
            return
        old = self.geometries.get(msg.source_id)
        if old is None or old.shape != positions.shape or not np.allclose(old, positions):
            self.geometries[msg.source_id] = positions
            for key in [k for k in self.arrays if k[1] == msg.source_id]:
                del self.arrays[key]                           # a new geometry: its beams start afresh
            for key in [k for k in self.latest if len(k) == 3 and k[1] == msg.source_id]:
                del self.latest[key]                           # and their old verdicts leave the diagnostics
            self.get_logger().info(f"array geometry of {msg.source_id!r}: {len(positions)} antennas")

    def _room_for(self, key: tuple[str, str]) -> bool:
        """Whether a link or array ``key`` is followed (known, or a new one within max_links)."""
        if key in self.links or key in self.arrays or len(self.links) + len(self.arrays) < self.max_links:
            return True
        self.counters["links_over_limit"] += 1
        return False

    def _on_csi(self, msg: CsiArrayView) -> None:
        if msg.rows * msg.cols > 1:
            self._on_array_frame(msg)
            return
        usable = single_antenna_csi(msg, self.counters)
        if usable is None:
            return
        csi, valid = usable
        if not valid.any():
            self.counters["nan_csi"] += 1
            return
        subcarriers = np.asarray(msg.subcarrier_indices, float)
        report = sanitize(csi, subcarriers, valid)
        host_t = stamp_seconds(msg.header.stamp)
        sensor = msg.sensor_timestamps[0] if len(msg.sensor_timestamps) else float("nan")
        t = sensor if np.isfinite(sensor) else host_t
        rx, tx_mac = msg.source_id, mac_text(bytes(msg.transmitter_mac))
        tx = self.node_of_mac.get(tx_mac)
        if tx is not None:
            key, method = tuple(sorted((tx, rx))), BIDIRECTIONAL
        else:
            self.counters["unknown_transmitter"] += bool(self.node_of_mac)
            key, method = (tx_mac, rx), ONE_WAY
        if not self._room_for(key):
            return
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = SwarmLinkVitals(method, self.config, self.pair_tolerance)
        link.add(rx == key[0], host_t, t, report, subcarriers)
        for estimate in link.due(self.period):
            self.latest[key] = estimate
            self.counters["unknown_windows"] += estimate.state == UNKNOWN
            self._publish(msg, key, METHODS[method], float("nan"), estimate)

    def _on_array_frame(self, msg: CsiArrayView) -> None:
        """A frame of a calibrated array: fed to its transmitter's beams (ArrayVitals)."""
        if not msg.calibrated:
            self.counters["uncalibrated_array"] += 1
            return
        positions = self.geometries.get(msg.source_id)
        if positions is None:
            self.counters["no_geometry"] += 1
            return
        try:
            csi, mask, freqs_hz, valid = csi_arrays(msg)
        except ValueError:
            self.counters["bad_csi_message"] += 1
            return
        if not mask.all():
            self.counters["incomplete_array_frame"] += 1
            return
        if not np.all(np.isfinite(csi[:, valid])) or not np.all(np.isfinite(freqs_hz)):
            self.counters["nan_csi"] += 1
            return
        key = (mac_text(bytes(msg.transmitter_mac)), msg.source_id)
        if not self._room_for(key):
            return
        array = self.arrays.get(key)
        if array is None:
            array = self.arrays[key] = ArrayVitals(self.config, positions, self.beams_rad)
        try:
            array.add(stamp_seconds(msg.header.stamp), csi, freqs_hz, valid)
        except ValueError:
            self.counters["bad_csi_message"] += 1           # antenna count other than the geometry's
            return
        for estimates in array.due(self.period):
            for azimuth, estimate in zip(self.beams_rad, estimates):
                self.latest[(*key, azimuth)] = estimate
                self.counters["unknown_windows"] += estimate.state == UNKNOWN
                self._publish(msg, key, VitalSigns.METHOD_ARRAY_BEAM, azimuth, estimate)

    def _publish(self, msg: CsiArrayView, key: tuple[str, str], method: int, azimuth_rad: float,
                 estimate: VitalsEstimate) -> None:
        self.pub.publish(VitalSigns(
            header=Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id), endpoint_a=key[0], endpoint_b=key[1],
            beam_azimuth=float(azimuth_rad), method=method, presence=PRESENCE[estimate.state],
            breathing_rate=estimate.rate_bpm, breathing_rate_std=estimate.rate_std_bpm, breathing_snr_db=estimate.snr_db,
            motion_level=estimate.motion_level, window_length=estimate.window_s, frames=estimate.frames,
            sensor_time=estimate.t_end_s, reason=estimate.reason))

    def _diagnostics(self) -> None:
        links, arrays = self.links.values(), self.arrays.values()
        self.counters["unpaired"] = sum(link.pairer.unpaired for link in links)
        self.counters["phase_jumps"] = sum(link.vitals.jumps for link in links) + sum(a.frames.jumps for a in arrays)
        self.counters["agc_steps"] = sum(g.steps for link in links for g in link.gains.values())
        self.counters["link_restarts"] = sum(link.restarts for link in links) + sum(a.restarts for a in arrays)
        self.counters["grid_mismatch"] = sum(link.grid_mismatch for link in links) + sum(a.grid_mismatch for a in arrays)
        for key, new in self._warnings.due(self.counters, self.get_clock().now().nanoseconds * 1e-9):
            self.get_logger().warning(f"{key}: {new} new ({VITALS_COUNTERS[key]})")
        states = Counter(e.state for e in self.latest.values())
        values = {"links": len(self.links), "arrays": len(self.arrays),
                  "presence": ", ".join(f"{view_name(key)} {e.state}" + (f" {e.rate_bpm:.1f}/min" if e.state == STILL else "")
                                        for key, e in self.latest.items()),
                  **{k: self.counters[k] for k in ("reports", *VITALS_COUNTERS)}}
        if not self.latest:
            level, text = DiagnosticStatus.WARN, "no verdict yet (a window needs its frames first)"
        elif states[UNKNOWN] == len(self.latest):
            level, text = DiagnosticStatus.WARN, f"no link gives a verdict: {next(iter(self.latest.values())).reason}"
        else:
            level = DiagnosticStatus.OK
            text = f"{len(self.latest)} links and beams: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(f"espargos_vitals: {self.get_fully_qualified_name()}",
                                        self.get_fully_qualified_name(), level, text, values)]
        self.diag_pub.publish(msg)


def view_name(key: tuple) -> str:
    """A link ``(a, b)`` as ``a-b``; an array beam ``(transmitter, source_id, azimuth rad)`` as
    ``transmitter@source_id+30deg``."""
    if len(key) == 2:
        return f"{key[0]}-{key[1]}"
    return f"{key[0]}@{key[1]}{np.degrees(key[2]):+.0f}deg"


def main(args: list[str] | None = None) -> int:
    return run_node(VitalSignsNode, "espargos vital_signs_node", args, events_executor)
