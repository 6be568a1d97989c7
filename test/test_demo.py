"""The README's first command (tools/demo) delivers CsiArray to a separate rclpy process within 60 s."""
import os
import signal
import subprocess
import time

from espargos_msgs.msg import CsiArray
from rclpy.qos import qos_profile_sensor_data

from conftest import ROOT, spin_until


def test_demo_command_publishes_csi(ros_node, tmp_path):
    frames = []
    ros_node.create_subscription(CsiArray, "/espargos/csi", frames.append, qos_profile_sensor_data)
    env = dict(os.environ, HOME=str(tmp_path))          # fresh calibration store
    start = time.monotonic()
    demo = subprocess.Popen([str(ROOT / "tools" / "demo"), "--duration", "90"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        assert spin_until(ros_node, lambda: any(f.calibrated for f in frames), 60), "no calibrated CsiArray in 60 s"
        assert time.monotonic() - start < 60
        spin_until(ros_node, lambda: False, 3.0)         # let csi_monitor print a calibrated line
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        out, _ = demo.communicate(timeout=20)
    assert "frames/s | antennas 8/8" in out
