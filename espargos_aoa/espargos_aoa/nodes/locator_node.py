"""ROS 2 node: BearingArray (and, with ``method: spectrum_grid``, SpatialSpectrum) of any number of
arrays (+ their poses) -> TransmitterPositionArray, rviz markers and diagnostics. The estimation is
espargos_aoa.locate and espargos_aoa.spectrum_grid; this node only moves messages."""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from espargos_msgs.msg import BearingArray, SpatialSpectrum, TransmitterPositionArray
from geometry_msgs.msg import Pose, PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..common_messages import diagnostic_status
from ..diagnostic_counters import LOCATOR_COUNTERS, CounterWarnings
from ..locate import (LOCATOR_METHODS, NODE_PARAMETERS, PLATFORM_POSE_TYPES, Estimate, Locator, LocatorConfig,
                      parameter_descriptions)
from ..messages import stamp_seconds
from ..position_messages import look, observation, position_markers, position_msg
from ..poses import ArrayPose, parse_array_pose
from ..runtime import run_node
from ..spectrum_grid import GridConfig, SpectrumGrid, grid_parameter_descriptions

PAIRING_WINDOW_S = 2.0
"""s of stamp time a BearingArray waits for the SpatialSpectrum of its update (method spectrum_grid)."""


class LocatorNode(Node):
    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("locator_node", **node_options)
        for name, (default, text) in {**NODE_PARAMETERS, **parameter_descriptions(), **grid_parameter_descriptions()}.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        config = LocatorConfig(**{name: self.get_parameter(name).value for name in parameter_descriptions()})
        self.locator = Locator(config)                       # ValueError names a parameter that cannot work
        method = self.get_parameter("method").value
        if method not in LOCATOR_METHODS:
            raise ValueError(f"method must be one of {sorted(LOCATOR_METHODS)}, got {method!r}")
        self.grid: SpectrumGrid | None = None
        if method == "spectrum_grid":
            grid_config = GridConfig(**{name: self.get_parameter(name).value for name in grid_parameter_descriptions()})
            self.grid = SpectrumGrid(self.locator, grid_config)
        self.method = "music-grid" if self.grid is not None else f"kalman-{config.motion_model}"
        self.fixed_frame = self.get_parameter("fixed_frame").value
        platform_topic = self.get_parameter("platform_pose_topic").value
        self.platform_topic = platform_topic
        pose_type = self.get_parameter("platform_pose_type").value
        if pose_type not in PLATFORM_POSE_TYPES:
            raise ValueError(f"platform_pose_type must be one of {PLATFORM_POSE_TYPES}, got {pose_type!r}")
        for entry in self.get_parameter("array_poses").value:
            if entry.strip():
                frame_id, pose = parse_array_pose(entry)
                (self.locator.set_mount if platform_topic else self.locator.set_static_pose)(frame_id, pose)
        rate = self.get_parameter("publish_rate").value
        if not rate > 0:
            raise ValueError(f"publish_rate must be > 0, got {rate}")
        self.publish_interval = 1.0 / rate
        self.markers = bool(self.get_parameter("markers").value)
        topics = [t for t in self.get_parameter("bearing_topics").value if t.strip()]
        if not topics:
            raise ValueError("bearing_topics is empty: name the BearingArray topics to fuse")
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic in topics:
            self.create_subscription(BearingArray, topic, self._on_bearings, qos)
        self._halves: dict[tuple[str, str, int], BearingArray | SpatialSpectrum] = {}
        """(frame_id, MAC, stamp ns) -> the half of an update that came first (method spectrum_grid)."""
        if self.grid is not None:
            spectra = [t for t in self.get_parameter("spectrum_topics").value if t.strip()]
            for topic in spectra or [t.rsplit("/", 1)[0] + "/spatial_spectrum" if "/" in t else "spatial_spectrum"
                                     for t in topics]:
                self.create_subscription(SpatialSpectrum, topic, self._on_spectrum, qos)
        if platform_topic:
            if pose_type == "odometry":
                from nav_msgs.msg import Odometry
                self.create_subscription(Odometry, platform_topic, lambda m: self._on_pose(m.header, m.pose.pose), qos)
            else:
                self.create_subscription(PoseStamped, platform_topic, lambda m: self._on_pose(m.header, m.pose), qos)
        self.pub = self.create_publisher(TransmitterPositionArray, "positions", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "position_markers", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.latest: dict[str, Estimate] = {}
        self.located: dict[str, float] = {}
        """MAC -> stamp (s) of its latest grid position (method spectrum_grid)."""
        self._fitted: dict[str, float] = {}
        """MAC -> time (s) of the look at which its grid position was last fitted."""
        self.last_published = -math.inf
        self.published = 0
        self.bearing_arrays = 0
        self.create_timer(1.0, self._diagnostics)
        self._warnings = CounterWarnings(LOCATOR_COUNTERS)

    def _on_pose(self, header: Header, pose: Pose) -> None:
        if header.frame_id != self.fixed_frame:
            self.locator.counters["platform_pose_wrong_frame"] += 1
            return
        p, q = pose.position, pose.orientation
        try:
            platform = ArrayPose.from_xyz_quaternion((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        except ValueError:
            self.locator.counters["platform_pose_wrong_frame"] += 1
            return
        self.locator.add_platform_pose(stamp_seconds(header.stamp), platform)

    def _on_bearings(self, msg: BearingArray) -> None:
        self.bearing_arrays += 1
        if self.grid is not None:
            self._pair(msg)
            return
        obs = observation(msg)
        if obs is None:
            return
        self.locator.add(obs)
        for estimate in self.locator.fuse():
            if estimate.observable:
                self.latest[estimate.mac] = estimate
        self._publish_due()

    def _on_spectrum(self, msg: SpatialSpectrum) -> None:
        self._pair(msg)

    def _pair(self, msg: BearingArray | SpatialSpectrum) -> None:
        """Join the BearingArray and the SpatialSpectrum of one update into a look on the grid (aoa_node
        publishes a spectrum without bearings when it finds no source: such spectra expire uncounted)."""
        stamp = msg.header.stamp
        key = (msg.header.frame_id, bytes(msg.transmitter_mac).hex(), stamp.sec * 10**9 + stamp.nanosec)
        other = self._halves.pop(key, None)
        if other is None or type(other) is type(msg):
            self._halves[key] = msg
            newest = max(k[2] for k in self._halves)
            for old in [k for k in self._halves if k[2] < newest - PAIRING_WINDOW_S * 1e9]:
                self.locator.counters["unpaired_look"] += isinstance(self._halves.pop(old), BearingArray)
            return
        bearings, spectrum = (msg, other) if isinstance(msg, BearingArray) else (other, msg)
        update = look(bearings, spectrum)
        # A fit per transmitter at most every publish interval (of look time): positions leave no faster.
        if self.grid.add(update) and update.time - self._fitted.get(update.mac, -math.inf) >= self.publish_interval:
            self._fitted[update.mac] = update.time
            estimate = self.grid.locate(update.mac)
            if estimate is not None:
                self.latest[estimate.mac] = estimate
                self.located[estimate.mac] = estimate.stamp
        self._publish_due()

    def _publish_due(self) -> None:
        newest = max((e.stamp for e in self.latest.values()), default=-math.inf)
        if newest - self.last_published >= self.publish_interval:
            self._publish(newest)

    def _publish(self, newest: float) -> None:
        self.last_published = newest
        out = TransmitterPositionArray(header=self._header(newest))
        markers = MarkerArray()
        for e in self.latest.values():
            stamp = self._header(e.stamp)
            out.positions.append(position_msg(e, stamp, self.method))
            if self.markers:
                markers.markers += position_markers(e, stamp, lifetime_s=2.0).markers
        self.latest.clear()
        self.published += len(out.positions)
        self.pub.publish(out)
        if self.markers:
            self.marker_pub.publish(markers)

    def _header(self, stamp_s: float) -> Header:
        """A header in the fixed frame stamped ``stamp_s`` (s)."""
        return Header(frame_id=self.fixed_frame, stamp=Time(nanoseconds=round(stamp_s * 1e9)).to_msg())

    def _states(self) -> tuple[list[str], list[str], str]:
        """Transmitters heard, those located now, and a line per transmitter for the diagnostics."""
        if self.grid is None:
            tracks = self.locator.tracks.values()
            return ([t.mac for t in tracks], [t.mac for t in tracks if t.observable], "; ".join(
                f"{t.mac} std {t.position_std_max:.2f} m parallax {t.parallax_deg:.0f} deg, {t.bearings_used} bearings"
                for t in tracks))
        newest = max((d.look.time for looks in self.grid.looks.values() for d in looks), default=-math.inf)
        recent = newest - max(2.0, 2 * self.grid.config.grid_memory)
        known = [mac for mac, looks in self.grid.looks.items() if looks]
        return known, [mac for mac in known if self.located.get(mac, -math.inf) >= recent], "; ".join(
            f"{mac} {len(self.grid.looks[mac])} looks, located {newest - self.located[mac]:.1f} s ago"
            if mac in self.located else f"{mac} {len(self.grid.looks[mac])} looks, not located" for mac in known)

    def _diagnostics(self) -> None:
        counters = self.locator.counters
        for key, new in self._warnings.due(counters, self.get_clock().now().nanoseconds * 1e-9):
            self.get_logger().warning(f"{key}: {new} new ({LOCATOR_COUNTERS[key]})")
        known, observable, states = self._states()
        values = {"method": self.method, "bearing_arrays": self.bearing_arrays, "tracks": len(known),
                  "tracks_located": len(observable), "positions_published": self.published,
                  "track_states": states, **{k: counters[k] for k in LOCATOR_COUNTERS}}
        if observable:
            level, text = DiagnosticStatus.OK, f"{len(observable)} of {len(known)} transmitters located"
        elif known:
            level, text = DiagnosticStatus.WARN, ("no position yet: the bearings do not cross well enough (one array "
                                                  "standing still, or rays near parallel)")
        elif counters["unknown_pose"] and self.platform_topic and not self.locator.platform.stamps:
            level, text = DiagnosticStatus.WARN, (f"no platform pose on {self.platform_topic} yet: the arrays' "
                                                  "bearings cannot be placed in " + self.fixed_frame)
        elif counters["unknown_pose"]:
            level, text = DiagnosticStatus.WARN, ("bearings only from arrays whose pose is unknown (array_poses, or no "
                                                  "platform pose at their stamps)")
        else:
            level, text = DiagnosticStatus.WARN, "no bearings yet"
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(f"espargos_locator: {self.get_fully_qualified_name()}",
                                        self.get_fully_qualified_name(), level, text, values)]
        self.diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(LocatorNode, "espargos locator_node", args)
