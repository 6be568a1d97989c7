"""Two simulated boards (one rig: shared clock, one reference signal over cables of different
lengths) -> board_node with a 4x4 combined layout -> aoa_node in 2-D, over real sockets and DDS."""
from __future__ import annotations

import socket

import numpy as np
import yaml
from espargos_msgs.msg import ArrayGeometry, BearingArray, CsiArray
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

from conftest import free_port, spin_until


def combined_yaml(tmp_path) -> str:
    ports = {name: (free_port(), free_port(socket.SOCK_DGRAM)) for name in ("top", "bottom")}
    data = {"combined-array": {
        "reference": "top",
        "boards": {name: {"host": "127.0.0.1", "http_port": h, "stream_port": s,
                          "cable": {"length": length, "velocity_factor": 0.76}}
                   for (name, (h, s)), length in zip(ports.items(), (0.5, 2.0))},
        "array": [[f"top.{r}.{c}" for c in range(4)] for r in range(2)]
        + [[f"bottom.{r}.{c}" for c in range(4)] for r in range(2)]}}
    path = tmp_path / "combined.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_combined_array_bearing(ros_node, processes, tmp_path):
    layout = combined_yaml(tmp_path)
    scenario = tmp_path / "scenario.yaml"
    # The ideal channel: single calibrated frames are compared with the plane wave below.
    scenario.write_text("scenario: {snr_db: 20, seed: 31, transmitters: [{azimuth_deg: -25.0, elevation_deg: 15.0, "
                        "channel: ideal}]}\n")
    processes.start("board_simulator", "--combined", layout, "--scenario", str(scenario))
    processes.start_node({"array_config": layout, "board_id": "rig", "calibration.policy": "startup",
                          "calibration.duration": 1.0, "calibration.file": str(tmp_path / "rig.json")}, "/rig")
    processes.start_node({"two_d": True, "csi_qos": "reliable"}, "/rig", "aoa_node")
    bearings, frames, geometry = [], [], []
    ros_node.create_subscription(BearingArray, "/rig/bearings", bearings.append, 50)
    ros_node.create_subscription(CsiArray, "/rig/csi", frames.append, qos_profile_sensor_data)
    ros_node.create_subscription(ArrayGeometry, "/rig/array_geometry", geometry.append,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert spin_until(ros_node, lambda: len(bearings) >= 10 and geometry and frames, 60), \
        (len(bearings), len(geometry), len(frames))
    g = geometry[-1]
    assert (g.rows, g.cols) == (4, 4) and g.antenna_labels[8] == "bottom.0.0"
    assert abs(np.ptp([p.z for p in g.antenna_positions]) - 0.18) < 1e-9          # 4 rows at 60 mm
    m = frames[-1]
    assert (m.rows, m.cols) == (4, 4) and all(m.antenna_mask)
    assert spin_until(ros_node, lambda: frames[-1].calibrated and all(frames[-1].antenna_mask), 10)
    m = frames[-1]
    for msg in bearings[-5:]:
        b = msg.bearings[0]
        assert abs(np.degrees(b.azimuth) + 25.0) < 2.0 and abs(np.degrees(b.elevation) - 15.0) < 2.0, \
            (np.degrees(b.azimuth), np.degrees(b.elevation))
    # The cable delays matter: without them the bottom board's phases are off and so is the bearing.
    x = np.frombuffer(m.csi, np.complex64).reshape(16, -1)
    u = np.array([np.cos(np.radians(15)) * np.cos(np.radians(-25)), np.cos(np.radians(15)) * np.sin(np.radians(-25)),
                  np.sin(np.radians(15))])
    pos = np.array([[p.x, p.y, p.z] for p in g.antenna_positions])
    f = m.center_frequency_hz + np.array(m.subcarrier_indices) * m.subcarrier_spacing_hz
    y = x * np.exp(-2j * np.pi * np.outer(pos @ u / 299_792_458.0, f))
    rel = np.degrees(np.angle(np.sum(y * np.conj(y[:1]), axis=1)))
    assert np.sqrt(np.mean(rel ** 2)) < 10.0, f"calibrated phases off the plane wave: {rel.round(1)}"
