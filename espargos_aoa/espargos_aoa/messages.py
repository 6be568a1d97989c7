"""ROS messages in and out of the AoA core: CsiArray -> arrays; AoaResult -> bearings, spectrum, rviz views."""
from __future__ import annotations

from collections import Counter

import array
import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Duration, Time
from espargos_msgs.msg import ArrayGeometry, Bearing, BearingArray, CsiArray, SpatialSpectrum
from geometry_msgs.msg import Point
from sensor_msgs.msg import LaserScan
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .common_messages import msg_to_csi
from .gains import compensate_gains
from .steering import unit_vectors

if TYPE_CHECKING:                                    # the estimator pulls in scipy: not at import
    from .estimator import AoaResult


def checked_csi(msg: CsiArray) -> np.ndarray:
    """The message's CSI as a complex64 view ``(rows*cols, S)``; ValueError if its size or its
    antenna mask disagrees with rows x cols x subcarriers."""
    bins = len(msg.subcarrier_indices)
    antennas = msg.rows * msg.cols
    if len(msg.csi) != 2 * antennas * bins or len(msg.antenna_mask) != antennas:
        raise ValueError(f"CsiArray has {len(msg.csi) // 2} CSI values and {len(msg.antenna_mask)} mask entries "
                         f"for rows x cols x subcarriers = {msg.rows} x {msg.cols} x {bins}")
    return msg_to_csi(msg).reshape(antennas, bins)


def csi_arrays(msg: CsiArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """csi complex64 ``(N, S)`` with the reported receiver gains taken out (empty gain arrays:
    unknown, nothing removed), mask bool ``(N,)``,
    freqs_hz ``(S,)``, valid_bins bool ``(S,)``.

    Raises ValueError if the message's arrays disagree with its rows/cols/grid.
    """
    csi = checked_csi(msg)
    antennas, bins = csi.shape
    gains = []
    for name in ("rx_gain_db", "fft_gain_db"):
        values = getattr(msg, name)
        if len(values) not in (0, antennas):
            raise ValueError(f"CsiArray {name} has {len(values)} entries for {antennas} antennas")
        gains.append(np.asarray(values, float) if len(values) else np.full(antennas, np.nan))
    csi = compensate_gains(csi, *gains)
    freqs_hz = msg.center_frequency_hz + np.asarray(msg.subcarrier_indices, float) * msg.subcarrier_spacing_hz
    valid = np.ones(bins, bool)
    valid[[i for i in msg.interpolated_bins if i < bins]] = False
    return csi, np.asarray(msg.antenna_mask, bool), freqs_hz, valid


def geometry_positions(msg: ArrayGeometry) -> np.ndarray:
    """Antenna positions ``(rows*cols, 3)`` in metres; ValueError if the count disagrees with rows x cols."""
    if len(msg.antenna_positions) != msg.rows * msg.cols:
        raise ValueError(f"ArrayGeometry has {len(msg.antenna_positions)} positions for {msg.rows} x {msg.cols} antennas")
    return np.array([[p.x, p.y, p.z] for p in msg.antenna_positions], float).reshape(-1, 3)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes | None:
    """``aa:bb:cc:dd:ee:ff`` (or with ``-``, or bare hex) -> 6 bytes; None if it is not a MAC."""
    try:
        raw = bytes.fromhex(text.strip().replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


def single_antenna_csi(msg: CsiArray, counters: Counter) -> tuple[np.ndarray, np.ndarray] | None:
    """A swarm node's report -> (csi complex64 ``(S,)`` with reported gains taken out, valid bins
    bool ``(S,)``); None, with ``not_single_antenna``, ``bad_csi_message`` or ``nan_csi`` counted
    in ``counters``, for a report that cannot be used. The same checks and gains as csi_arrays,
    written for one antenna: the swarm nodes run it for hundreds of reports per second."""
    if msg.rows * msg.cols != 1:
        counters["not_single_antenna"] += 1
        return None
    bins = len(msg.subcarrier_indices)
    if len(msg.csi) != 2 * bins or len(msg.antenna_mask) != 1 or len(msg.rx_gain_db) > 1 or len(msg.fft_gain_db) > 1:
        counters["bad_csi_message"] += 1
        return None
    csi = np.frombuffer(msg.csi, np.complex64)
    if not np.isfinite(csi).all():
        counters["nan_csi"] += 1
        return None
    gain_db = sum(g for g in (*msg.rx_gain_db, *msg.fft_gain_db) if math.isfinite(g))
    if gain_db:
        csi = csi * np.float32(10 ** (-gain_db / 20))
    return csi, _valid_bins(bins, bytes(memoryview(msg.interpolated_bins)))


@lru_cache(maxsize=64)
def _valid_bins(bins: int, interpolated: bytes) -> np.ndarray:
    """bool ``(bins,)``: False at the interpolated grid positions (uint16 bytes), read-only."""
    valid = np.ones(bins, bool)
    valid[[i for i in np.frombuffer(interpolated, np.uint16) if i < bins]] = False
    valid.flags.writeable = False
    return valid


def node_names(entries: list[str]) -> dict[str, str]:
    """The ``nodes`` parameter of the swarm link nodes (``['node1=02:00:00:00:00:01', ...]``,
    empty entries skipped) -> node name by MAC text; ValueError naming a malformed entry."""
    out: dict[str, str] = {}
    for entry in entries:
        if entry.strip():
            name, sep, mac = entry.partition("=")
            raw = parse_mac(mac)
            if not sep or not name or raw is None:
                raise ValueError(f"nodes: expected 'name=aa:bb:cc:dd:ee:ff', got {entry!r}")
            out[mac_text(raw)] = name
    return out


def bearing_array_msg(result: AoaResult, header: Header, source_id: str, mac: bytes, method: str,
                      window_span_s: float) -> BearingArray:
    """``window_span_s``: s from the oldest to the newest frame stamp of the window."""
    msg = BearingArray(header=header, source_id=source_id, transmitter_mac=list(mac), method=method,
                       sources_detected=result.sources, window_frames=result.covariance.frames,
                       window_span=float(window_span_s),
                       snapshots=float(result.covariance.snapshots * len(result.covariance.freqs_hz)))
    two_d = result.grid.two_d
    msg.bearings = [Bearing(transmitter_mac=list(mac), azimuth=b.azimuth_rad, elevation=b.elevation_rad,
                            elevation_estimated=two_d, azimuth_std=b.azimuth_std_rad,
                            elevation_std=b.elevation_std_rad if two_d else float("nan"),
                            snr_db=b.snr_db, peak_db=b.peak_db, rank=rank)
                    for rank, b in enumerate(result.bearings)]
    return msg


def spectrum_msg(result: AoaResult, header: Header, source_id: str, mac: bytes, method: str) -> SpatialSpectrum:
    msg = SpatialSpectrum(header=header, source_id=source_id, transmitter_mac=list(mac), method=method,
                          sources_detected=result.sources, window_frames=result.covariance.frames)
    msg.azimuths = array.array("d", result.grid.azimuths_rad.tobytes())
    msg.elevations = array.array("d", result.grid.elevations_rad.tobytes())
    msg.power_db = array.array("f", np.ascontiguousarray(result.spectrum_db, np.float32).tobytes())
    return msg


def laser_scan_msg(result: AoaResult, header: Header, dynamic_range_db: float, radius_m: float) -> LaserScan:
    """Azimuth spectrum as a LaserScan (stock rviz): range grows from 0 at -dynamic_range_db to
    ``radius_m`` at the 0 dB peak; intensities carry dB above the floor. A 2-D spectrum is
    shown by its maximum over elevation."""
    az = result.grid.azimuths_rad
    power = np.max(result.spectrum_db, axis=0)
    level = np.clip(power + dynamic_range_db, 0.0, dynamic_range_db)
    step = float(az[1] - az[0]) if az.size > 1 else 0.0
    msg = LaserScan(header=header, angle_min=float(az[0]), angle_max=float(az[-1]), angle_increment=step,
                    range_min=0.0, range_max=float(radius_m))
    msg.ranges = array.array("f", (level / dynamic_range_db * radius_m).astype(np.float32).tobytes())
    msg.intensities = array.array("f", level.astype(np.float32).tobytes())
    return msg


def confidence_colour(std_rad: float) -> ColorRGBA:
    """Green for a 1-sigma below 1 deg, through yellow, to red at 10 deg and more."""
    c = float(np.clip((np.degrees(std_rad) - 1.0) / 9.0, 0.0, 1.0))
    return ColorRGBA(r=min(1.0, 2 * c), g=min(1.0, 2 * (1 - c)), b=0.0, a=1.0)


def bearing_markers(result: AoaResult, header: Header, mac: bytes, length_m: float, lifetime_s: float) -> MarkerArray:
    """One arrow per bearing from the array origin (colour by 1-sigma, shorter when weaker) and
    a label with the MAC and angles; namespace per MAC so transmitters do not overwrite each other."""
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    name = mac_text(mac)
    out = MarkerArray()
    for rank, b in enumerate(result.bearings):
        u = unit_vectors([b.azimuth_rad], [b.elevation_rad])[0]
        scale = length_m * (1.0 if rank == 0 else 0.6)
        tip = Point(x=float(u[0] * scale), y=float(u[1] * scale), z=float(u[2] * scale))
        arrow = Marker(header=header, ns=f"bearing/{name}", id=rank, type=Marker.ARROW, action=Marker.ADD,
                       points=[Point(), tip], color=confidence_colour(b.azimuth_std_rad), lifetime=lifetime)
        arrow.pose.orientation.w = 1.0
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.03, 0.06, 0.08
        text = Marker(header=header, ns=f"bearing/{name}", id=100 + rank, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), lifetime=lifetime,
                      text=f"{name} az {np.degrees(b.azimuth_rad):.1f}\u00b1{np.degrees(b.azimuth_std_rad):.1f}\u00b0")
        text.pose.position = Point(x=tip.x, y=tip.y, z=tip.z + 0.08)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.06
        out.markers += [arrow, text]
    return out


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
