"""ROS messages of locator_node: BearingArray -> observations, estimates -> TransmitterPosition
and rviz markers (position, 95 % covariance ellipsoid, the rays behind it)."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from espargos_msgs.msg import BearingArray, SpatialSpectrum, TransmitterPosition
from geometry_msgs.msg import Point, Vector3
from scipy.spatial.transform import Rotation
from scipy.special import chdtri  # chi-square quantile: chdtri(dof, 1 - p); lighter than scipy.stats
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .locate import BearingObservation, Estimate
from .messages import mac_text, parse_mac, stamp_seconds
from .spectrum_grid import Look

ELLIPSOID_SCALE = float(np.sqrt(chdtri(3, 0.05)))
"""Semi-axes of the drawn ellipsoid in 1-sigma units: it holds the transmitter with 95 % probability."""


def observations(msg: BearingArray) -> list[BearingObservation]:
    """Every bearing of a BearingArray, strongest (rank 0) first."""
    stamp, mac = stamp_seconds(msg.header.stamp), mac_text(bytes(msg.transmitter_mac))
    return [BearingObservation(stamp, msg.header.frame_id, mac, float(b.azimuth), float(b.azimuth_std),
                               float(b.elevation) if b.elevation_estimated else float("nan"),
                               float(b.elevation_std) if b.elevation_estimated else float("nan"), float(msg.window_span),
                               int(msg.window_frames))
            for b in sorted(msg.bearings, key=lambda b: b.rank)]


def observation(msg: BearingArray) -> BearingObservation | None:
    """The strongest bearing (rank 0) of a BearingArray, or None without one."""
    every = observations(msg)
    return every[0] if every else None


def look(bearings: BearingArray, spectrum: SpatialSpectrum) -> Look:
    """One array update of a transmitter: its bearings and its spectrum (a 2-D spectrum's maximum over
    elevation). A spectrum whose power_db disagrees with its grid gives an empty power (the grid
    refuses it and counts it)."""
    azimuths = np.asarray(spectrum.azimuths, float)
    power = np.asarray(spectrum.power_db, float)
    rows = len(spectrum.elevations)
    power = power.reshape(rows, -1).max(axis=0) if rows and power.size == rows * azimuths.size else np.empty(0)
    return Look(stamp_seconds(bearings.header.stamp), bearings.header.frame_id, mac_text(bytes(bearings.transmitter_mac)),
                azimuths, power, observations(bearings), float(bearings.window_span), int(bearings.window_frames))


def position_msg(e: Estimate, header: Header, method: str) -> TransmitterPosition:
    velocity = e.velocity if e.velocity is not None else np.full(3, np.nan)
    return TransmitterPosition(
        header=header, transmitter_mac=list(parse_mac(e.mac) or bytes(6)),
        position=Point(x=float(e.position[0]), y=float(e.position[1]), z=float(e.position[2])),
        covariance=[float(v) for v in e.covariance.ravel()],
        velocity=Vector3(x=float(velocity[0]), y=float(velocity[1]), z=float(velocity[2])),
        height_estimated=e.height_estimated, method=method, arrays=list(e.arrays), bearings_used=e.bearings_used,
        parallax=float(np.radians(e.parallax_deg)))


def position_markers(e: Estimate, header: Header, lifetime_s: float) -> MarkerArray:
    """A 95 % covariance ellipsoid with a MAC label at the position, and a line from each array
    (where it was at its last fused bearing) to the position."""
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    ns = f"position/{e.mac}"
    centre = Point(x=float(e.position[0]), y=float(e.position[1]), z=float(e.position[2]))
    values, vectors = np.linalg.eigh(e.covariance)
    if np.linalg.det(vectors) < 0:
        vectors[:, 0] = -vectors[:, 0]
    qx, qy, qz, qw = Rotation.from_matrix(vectors).as_quat()
    ellipsoid = Marker(header=header, ns=ns, id=0, type=Marker.SPHERE, action=Marker.ADD, lifetime=lifetime,
                       color=ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.4))
    ellipsoid.pose.position = centre
    ellipsoid.pose.orientation.x, ellipsoid.pose.orientation.y = float(qx), float(qy)
    ellipsoid.pose.orientation.z, ellipsoid.pose.orientation.w = float(qz), float(qw)
    axes = 2 * ELLIPSOID_SCALE * np.sqrt(np.maximum(values, 1e-6))
    ellipsoid.scale.x, ellipsoid.scale.y, ellipsoid.scale.z = (float(a) for a in axes)
    label = Marker(header=header, ns=ns, id=1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, lifetime=lifetime,
                   color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), text=f"{e.mac} \u00b1{np.sqrt(values.max()):.2f} m")
    label.pose.position = Point(x=centre.x, y=centre.y, z=centre.z + 0.3)
    label.pose.orientation.w = 1.0
    label.scale.z = 0.2
    lines = Marker(header=header, ns=ns, id=2, type=Marker.LINE_LIST, action=Marker.ADD, lifetime=lifetime,
                   color=ColorRGBA(r=1.0, g=0.8, b=0.2, a=0.8))
    lines.pose.orientation.w = 1.0
    lines.scale.x = 0.02
    for origin in e.origins.values():
        lines.points += [Point(x=float(origin[0]), y=float(origin[1]), z=float(origin[2])), centre]
    return MarkerArray(markers=[ellipsoid, label, lines])
