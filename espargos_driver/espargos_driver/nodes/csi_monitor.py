"""Console view of an array: one line per second with CSI rate, antennas, calibration, phases and,
when an aoa_node runs beside the driver, the latest bearing of each transmitter."""
from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from espargos_aoa.common_messages import msg_to_csi
from espargos_aoa.runtime import spin_node
from espargos_msgs.msg import BearingArray, CsiArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data


def summary_line(frames: int, seconds: float, msg: CsiArray) -> str:
    """``<array> (<frame>) | frames/s | antennas k/n | calibrated | phase of each antenna vs antenna 0 (deg)``:
    the array's source_id and frame_id first, so the lines of several monitors can be told apart."""
    csi = msg_to_csi(msg).reshape(msg.rows * msg.cols, -1)
    ref = csi[0]
    phases = np.degrees(np.angle(np.nansum(csi * np.conj(ref), axis=1)))
    mac = ":".join(f"{b:02x}" for b in msg.transmitter_mac)
    shown = " ".join("  nan" if np.isnan(p) else f"{p:+5.0f}" for p in phases)
    return (f"{msg.source_id or '?'} ({msg.header.frame_id or '?'}) | "
            f"{frames / seconds:7.1f} frames/s | antennas {sum(msg.antenna_mask)}/{len(msg.antenna_mask)} | "
            f"{'calibrated  ' if msg.calibrated else 'UNCALIBRATED'} | ch {msg.channel}{msg.secondary_channel:+d} "
            f"| tx {mac} | phase vs ant 0 [deg]: {shown}")


def bearing_text(arrays) -> str:
    """`` | bearing <mac> az +20.02±0.031 deg`` per transmitter (strongest source; the 1-sigma to two
    significant digits, however small), or ``""``."""
    parts = []
    for msg in arrays:
        if msg.bearings:
            b = msg.bearings[0]
            el = f" el {np.degrees(b.elevation):+.1f}" if b.elevation_estimated else ""
            std = np.degrees(b.azimuth_std)
            parts.append(f"{':'.join(f'{x:02x}' for x in msg.transmitter_mac)} az {np.degrees(b.azimuth):+.2f}"
                         f"\u00b1{std:.2g}{el} deg")
    return " | bearing " + ", ".join(parts) if parts else ""


class CsiMonitor(Node):
    def __init__(self, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__("csi_monitor", **node_options)
        self.declare_parameter("count", 0)
        self.limit = self.get_parameter("count").value
        self.create_subscription(CsiArray, "csi", self._on_csi, qos_profile_sensor_data)
        self.create_subscription(BearingArray, "bearings", self._on_bearings, 10)
        self.bearings: dict[bytes, BearingArray] = {}
        self.create_timer(1.0, self._print)
        self.frames = 0
        self.lines = 0
        self.last: CsiArray | None = None
        self.t = time.monotonic()

    def _on_csi(self, msg: CsiArray) -> None:
        self.frames += 1
        self.last = msg

    def _on_bearings(self, msg: BearingArray) -> None:
        self.bearings[bytes(msg.transmitter_mac)] = msg

    def _print(self) -> None:
        now = time.monotonic()
        if self.last is None:
            print("waiting for CsiArray on", self.resolve_topic_name("csi"), flush=True)
        else:
            print(summary_line(self.frames, now - self.t, self.last) + bearing_text(self.bearings.values()), flush=True)
            self.bearings.clear()
            self.lines += 1
        self.frames, self.t = 0, now
        if self.limit and self.lines >= self.limit:
            raise SystemExit(0)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    return spin_node(CsiMonitor())


if __name__ == "__main__":
    sys.exit(main())
