"""scene_pose: publishes the pose of a simulated scene's moving platform (the robot or drone the
simulated boards ride on) as nav_msgs/Odometry, the way a robot's odometry would. Scene time is
wall-clock time, so it agrees with the boards' simulators without talking to them."""
from __future__ import annotations

import time

from espargos_aoa.runtime import run_node
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.time import Time
from scipy.spatial.transform import Rotation

from ..sim.scene import Scene

PARAMETERS = {
    "scene": ("", "world scene YAML with a platform: (config/drone_scene.yaml)"),
    "frame_id": ("odom", "frame of the poses (the scene's frame)"),
    "child_frame_id": ("base_link", "the platform's frame"),
    "rate": (50.0, "Hz of poses"),
}


class ScenePoseNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("scene_pose", **node_options)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        path = self.get_parameter("scene").value
        if not path:
            raise ValueError("scene is empty: name the scene YAML whose platform to publish")
        try:
            self.platform = Scene.from_file(path).platform
        except (OSError, TypeError, ValueError) as err:
            raise ValueError(f"scene {path!r}: {err}") from err
        if self.platform is None:
            raise ValueError(f"scene {path!r} has no platform: nothing moves the boards")
        rate = self.get_parameter("rate").value
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.frame_id = self.get_parameter("frame_id").value
        self.child_frame_id = self.get_parameter("child_frame_id").value
        self.pub = self.create_publisher(Odometry, "odom", 50)
        self.create_timer(1.0 / rate, self._publish)

    def _publish(self) -> None:
        now = time.time()
        position, rotation = self.platform.pose(now)
        velocity = rotation.T @ self.platform.velocity(now)                 # in the child frame (REP 105)
        msg = Odometry(child_frame_id=self.child_frame_id)
        msg.header.frame_id = self.frame_id
        msg.header.stamp = Time(nanoseconds=round(now * 1e9)).to_msg()
        p = msg.pose.pose
        p.position.x, p.position.y, p.position.z = (float(v) for v in position)
        qx, qy, qz, qw = Rotation.from_matrix(rotation).as_quat()
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = float(qx), float(qy), float(qz), float(qw)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = (float(v) for v in velocity)
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(ScenePoseNode, "espargos scene_pose", args)
