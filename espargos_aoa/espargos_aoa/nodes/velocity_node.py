"""ROS 2 node: single-antenna CsiArray (swarm_node) -> RadialVelocity per link, with diagnostics."""
from __future__ import annotations

from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_msgs.msg import CsiArray, RadialVelocity
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Header

from ..common_messages import CsiArrayView, CsiInput, csi_qos, diagnostic_status
from ..diagnostic_counters import VELOCITY_COUNTERS as ERROR_COUNTERS
from ..diagnostic_counters import CounterWarnings
from ..messages import mac_text, node_names, single_antenna_csi, stamp_seconds
from ..runtime import events_executor, run_node
from ..sanitize import sanitize
from ..steering import SPEED_OF_LIGHT
from ..velocity import CLOSING, MOVING, SEPARATING, STATIC, BidirectionalLink, Estimate, OneWayLink, VelocityConfig

STATES = {"UNKNOWN": RadialVelocity.STATE_UNKNOWN, STATIC: RadialVelocity.STATE_STATIC,
          CLOSING: RadialVelocity.STATE_CLOSING, SEPARATING: RadialVelocity.STATE_SEPARATING,
          MOVING: RadialVelocity.STATE_MOVING}
ONE_WAY_AFTER_S = 2.0
"""A direction whose opposite has not been heard for this long is reported as a one-way link."""
ONE_WAY_WAIT_S = 0.5
"""... once it has been heard alone this long (a bidirectional link's replies come within ms), so
that the first reports of a bidirectional link are not announced as one-way."""
CONFIG_PARAMS = {
    "accel_noise": "m/s^(3/2), process noise of the constant-velocity filter",
    "phase_noise": "deg, 1-sigma of one measured phase sum",
    "gate_sigma": "innovations beyond this many sigma are rejected as packet-sync jumps",
    "pair_tolerance": "s of sensor-clock tolerance when pairing the two directions of an exchange",
    "reorder_delay": "s of newer sensor time to wait for late exchanges before filtering (network jitter)",
    "max_phase_noise": "deg; a link whose learnt phase-sum noise is larger cannot support velocity (UNKNOWN)",
    "warmup": "s a (re)started link learns its noise before it claims a velocity",
    "moving_threshold": "m/s above which a link leaves STATIC",
    "static_threshold": "m/s below which a link returns to STATIC (hysteresis)",
    "min_dwell": "s a new state must hold before it is reported",
    "max_gap": "s of silence that restarts a link's filter",
    "motion_window": "s of amplitude history of the one-way motion detector",
    "motion_factor": "one-way: amplitude spread beyond this many times the static baseline is MOVING",
}
FIELD = {"phase_noise": "phase_noise_deg", "pair_tolerance": "pair_tolerance_s", "min_dwell": "min_dwell_s",
         "max_gap": "max_gap_s", "motion_window": "motion_window_s", "reorder_delay": "reorder_delay_s",
         "max_phase_noise": "max_phase_noise_deg", "warmup": "warmup_s"}


class VelocityNode(Node):
    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("velocity_node", **node_options)
        defaults = VelocityConfig()
        for name, text in CONFIG_PARAMS.items():
            self.declare_parameter(name, float(getattr(defaults, FIELD.get(name, name))),
                                   ParameterDescriptor(description=text, read_only=True, floating_point_range=[
                                       FloatingPointRange(from_value=0.0, to_value=1e6)]))
        self.declare_parameter("nodes", [""], ParameterDescriptor(
            description="node name = its MAC, e.g. ['node1=02:00:00:00:00:01']: pairs the two directions of a link",
            read_only=True))
        self.config = VelocityConfig(**{FIELD.get(n, n): self.get_parameter(n).value for n in CONFIG_PARAMS})
        self.config.validate()
        self.node_of_mac = node_names(self.get_parameter("nodes").value)
        self.counters: Counter = Counter()
        self.bidirectional: dict[tuple[str, str], BidirectionalLink] = {}
        self.one_way: dict[tuple[str, str], OneWayLink] = {}
        self.last_pair: dict[tuple[str, str], float] = {}
        self.heard: dict[tuple[str, str, bool], float] = {}
        """(a, b, received by a) -> host time of the latest report of that direction."""
        self.first_heard: dict[tuple[str, str, bool], float] = {}
        self.updates: dict[tuple[str, str, str], deque] = {}
        self.pub = self.create_publisher(RadialVelocity, "radial_velocity", 50)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.csi_input = CsiInput(self.counters)
        self.create_subscription(CsiArray, "csi", self._on_csi_bytes,
                                 csi_qos(), raw=True)
        self.create_timer(1.0, self._diagnostics)
        self._warnings = CounterWarnings(ERROR_COUNTERS)

    def _on_csi_bytes(self, data: bytes) -> None:
        """The csi subscription delivers serialized bytes: read without building an rclpy message
        (a fifth of the cost; swarm links bring hundreds of reports per second)."""
        msg = self.csi_input(data)
        if msg is not None:
            self._on_csi(msg)

    def _on_csi(self, msg: CsiArrayView) -> None:
        usable = single_antenna_csi(msg, self.counters)
        if usable is None:
            return
        csi, valid = usable
        s = sanitize(csi, np.asarray(msg.subcarrier_indices, float), valid)
        host_t = stamp_seconds(msg.header.stamp)
        sensor = msg.sensor_timestamps[0] if len(msg.sensor_timestamps) else float("nan")
        t = sensor if np.isfinite(sensor) else host_t
        rx, tx_mac = msg.source_id, mac_text(bytes(msg.transmitter_mac))
        tx = self.node_of_mac.get(tx_mac)
        publish = True
        header = Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id)
        if tx is not None:
            a, b = sorted((tx, rx))
            link = self.bidirectional.get((a, b))
            if link is None:
                link = self.bidirectional[(a, b)] = BidirectionalLink(self.config, SPEED_OF_LIGHT / msg.center_frequency_hz)
            estimates = link.add(rx == a, host_t, t, s.common_phase_rad)
            for estimate in estimates:
                self.last_pair[(a, b)] = host_t
                self.counters["unsupported_updates"] += estimate.state == "UNKNOWN" and bool(link.unsupported)
                self._publish(header, a, b, estimate, link.rejected)
            direction = (a, b, rx == a)
            self.heard[direction] = host_t
            self.first_heard.setdefault(direction, host_t)
            if host_t - self.heard.get((a, b, rx != a), -np.inf) < ONE_WAY_AFTER_S:
                return                                  # both directions are heard: a bidirectional link
            publish = host_t - self.first_heard[direction] >= ONE_WAY_WAIT_S
        elif self.node_of_mac:
            self.counters["unknown_transmitter"] += 1
        key = (tx or tx_mac, rx)
        detector = self.one_way.setdefault(key, OneWayLink(self.config))
        gains = sum(g for g in (*msg.rx_gain_db, *msg.fft_gain_db) if np.isfinite(g))
        estimate = detector.add(t, 10 * np.log10(max(s.power, 1e-12)) - gains)
        if publish:
            self._publish(header, key[0], key[1], estimate, 0)

    def _publish(self, header: Header, a: str, b: str, e: Estimate, rejected: int) -> None:
        times = self.updates.setdefault((a, b, e.method), deque())
        times.append(e.t)
        while times and e.t - times[0] > 1.0:
            times.popleft()
        self.counters["updates"] += 1
        self.counters["rejected_jumps"] = sum(link.rejected for link in self.bidirectional.values())
        self.pub.publish(RadialVelocity(
            header=header, endpoint_a=a, endpoint_b=b, velocity=float(e.velocity), velocity_std=float(e.std),
            state=STATES[e.state], method=RadialVelocity.METHOD_BIDIRECTIONAL if e.method == "bidirectional"
            else RadialVelocity.METHOD_ONE_WAY, update_rate_hz=float(len(times)), sensor_time=float(e.t),
            rejected_jumps=rejected))

    def _diagnostics(self) -> None:
        links = self.bidirectional.values()
        self.counters["unpaired"] = sum(link.pairer.unpaired for link in links)
        self.counters["late_pairs"] = sum(link.order.late for link in links)
        for key, new in self._warnings.due(self.counters, self.get_clock().now().nanoseconds * 1e-9):
            self.get_logger().warning(f"{key}: {new} new ({ERROR_COUNTERS[key]})")
        unsupported = {f"{a}-{b}": link.unsupported for (a, b), link in self.bidirectional.items() if link.unsupported}
        values = {"links_bidirectional": len(self.last_pair), "links_one_way": len(self.one_way),
                  "restarts": sum(link.restarts for link in links),
                  "phase_noise_deg": ", ".join(f"{a}-{b} {link.kf.noise_deg:.1f}" for (a, b), link in self.bidirectional.items()),
                  "unsupported_links": "; ".join(f"{k}: {v}" for k, v in unsupported.items()),
                  **{k: self.counters[k] for k in ("reports", "updates", "rejected_jumps", *ERROR_COUNTERS)}}
        if not self.counters["updates"]:
            level, text = DiagnosticStatus.WARN, "no updates yet"
        elif unsupported:
            level, text = DiagnosticStatus.WARN, f"no velocity on {', '.join(unsupported)}: too noisy"
        else:
            level, text = DiagnosticStatus.OK, f"{len(self.last_pair)} bidirectional, {len(self.one_way)} one-way links"
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(f"espargos_velocity: {self.get_fully_qualified_name()}", self.get_fully_qualified_name(),
                                        level, text, values)]
        self.diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(VelocityNode, "espargos velocity_node", args, events_executor)
