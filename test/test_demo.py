"""The README's first command (tools/demo) delivers calibrated CsiArray and bearings to a separate rclpy
process within 60 s, and prints status lines with the bearing of the simulated transmitter (20 deg)."""
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
from espargos_msgs.msg import BearingArray, CsiArray
from rclpy.qos import qos_profile_sensor_data

from conftest import ROOT, free_port, spin_until


def test_demo_command_publishes_csi(ros_node, tmp_path):
    frames, bearings = [], []
    ros_node.create_subscription(CsiArray, "/espargos/csi", frames.append, qos_profile_sensor_data)
    ros_node.create_subscription(BearingArray, "/espargos/bearings", bearings.append, 10)
    env = dict(os.environ, HOME=str(tmp_path))          # fresh calibration store
    start = time.monotonic()
    ports = ["--sim-http-port", str(free_port()), "--sim-stream-port", str(free_port(socket.SOCK_DGRAM))]
    demo = subprocess.Popen([str(ROOT / "tools" / "demo"), "--duration", "90", *ports], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        assert spin_until(ros_node, lambda: any(f.calibrated for f in frames) and bearings, 60), \
            "no calibrated CsiArray and bearing in 60 s"
        assert time.monotonic() - start < 60
        assert abs(np.degrees(bearings[-1].bearings[0].azimuth) - 20.0) < 2.0
        spin_until(ros_node, lambda: False, 3.0)         # let csi_monitor print a calibrated line
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        out, _ = demo.communicate(timeout=20)
    assert "espargos (espargos_array) |" in out and "frames/s | antennas 8/8" in out
    shown = [float(m) for m in re.findall(r"\| bearing 02:00:00:00:00:01 az ([+-][0-9.]+)\u00b1", out)]
    assert shown and abs(shown[-1] - 20.0) < 0.5, out[-2000:]
