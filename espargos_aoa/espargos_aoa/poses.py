"""Where each antenna array is: its pose in the fixed frame, fixed (rig YAML) or over time (a moving
platform's pose topic), and the ray a bearing points along from there. Pure (no ROS).

Frames follow REP 103/105: an array's frame has x at boresight, y left, z up; the fixed frame is
``map`` or ``odom``. Poses are array -> fixed frame: ``p_fixed = position + rotation @ p_array``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

MAX_POSE_EXTRAPOLATION_S = 0.2
"""A moving platform's pose is used up to this long after its newest (or before its oldest) sample."""
POSE_HISTORY_S = 30.0
"""Seconds of platform poses kept for bearings that arrive late."""


@dataclass(frozen=True)
class ArrayPose:
    """An array's pose: ``position`` (3,) m and ``rotation`` (3, 3) from array to fixed frame."""

    position: np.ndarray
    rotation: np.ndarray

    @classmethod
    def from_xyz_rpy(cls, xyz, rpy) -> "ArrayPose":
        """Translation (m) and roll/pitch/yaw (rad, fixed axes x-y-z as in tf2 and URDF)."""
        return cls(np.asarray(xyz, float).reshape(3), Rotation.from_euler("xyz", rpy).as_matrix())

    @classmethod
    def from_xyz_quaternion(cls, xyz, quaternion_xyzw) -> "ArrayPose":
        """Translation (m) and a unit quaternion (x, y, z, w) as in geometry_msgs/Pose; ValueError
        for a zero or non-finite quaternion."""
        q = np.asarray(quaternion_xyzw, float)
        if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
            raise ValueError(f"invalid orientation quaternion {q.tolist()}")
        return cls(np.asarray(xyz, float).reshape(3), Rotation.from_quat(q).as_matrix())

    def compose(self, child: "ArrayPose") -> "ArrayPose":
        """The pose of ``child`` (given in this pose's frame) in this pose's parent frame."""
        return ArrayPose(self.position + self.rotation @ child.position, self.rotation @ child.rotation)

    def direction(self, azimuth: float, elevation: float = 0.0) -> np.ndarray:
        """Unit vector (3,) in the fixed frame of a bearing (rad, REP 103 in the array frame)."""
        return self.rotation @ np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                         np.sin(elevation)])

    def bearing_to(self, point: np.ndarray) -> tuple[float, float, float]:
        """(azimuth rad, elevation rad, range m) of a fixed-frame ``point`` as this array sees it."""
        local = self.rotation.T @ (np.asarray(point, float) - self.position)
        rng = float(np.linalg.norm(local))
        return float(np.arctan2(local[1], local[0])), float(np.arcsin(local[2] / max(rng, 1e-12))), rng


class PoseHistory:
    """Timed poses of a moving platform (stamps in s), interpolated to a bearing's stamp: position
    linearly, orientation by slerp."""

    def __init__(self, keep_s: float = POSE_HISTORY_S, extrapolate_s: float = MAX_POSE_EXTRAPOLATION_S) -> None:
        self.keep_s = keep_s
        self.extrapolate_s = extrapolate_s
        self.stamps: list[float] = []
        self.poses: list[ArrayPose] = []

    def add(self, stamp_s: float, pose: ArrayPose) -> bool:
        """Keep ``pose`` at ``stamp_s``; False (not kept) for a stamp not newer than the newest."""
        if self.stamps and stamp_s <= self.stamps[-1]:
            return False
        self.stamps.append(stamp_s)
        self.poses.append(pose)
        cut = bisect.bisect_left(self.stamps, stamp_s - self.keep_s)
        del self.stamps[:cut], self.poses[:cut]
        return True

    def at(self, stamp_s: float) -> ArrayPose | None:
        """The pose at ``stamp_s``, or None when it lies beyond the samples by more than ``extrapolate_s``."""
        if not self.stamps or not (self.stamps[0] - self.extrapolate_s <= stamp_s <= self.stamps[-1] + self.extrapolate_s):
            return None
        i = bisect.bisect_left(self.stamps, stamp_s)
        if i == 0:
            return self.poses[0]
        if i == len(self.stamps):
            return self.poses[-1]
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        a, b = self.poses[i - 1], self.poses[i]
        w = (stamp_s - t0) / (t1 - t0)
        rotation = Slerp([0.0, 1.0], Rotation.from_matrix([a.rotation, b.rotation]))(w).as_matrix()
        return ArrayPose((1 - w) * a.position + w * b.position, rotation)


def parse_array_pose(text: str) -> tuple[str, ArrayPose]:
    """``"frame_id: x y z roll pitch yaw"`` (m, rad; locator_node's ``array_poses`` entries) ->
    (frame_id, pose); ValueError saying what is wrong."""
    frame_id, sep, numbers = str(text).partition(":")
    try:
        values = [float(v) for v in numbers.replace(",", " ").split()]
    except ValueError:
        values = []
    if not sep or not frame_id.strip() or len(values) != 6 or not np.all(np.isfinite(values)):
        raise ValueError(f"array pose must be 'frame_id: x y z roll pitch yaw' (m, rad), got {text!r}")
    return frame_id.strip(), ArrayPose.from_xyz_rpy(values[:3], values[3:])
