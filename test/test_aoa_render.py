"""aoa_render: a spatial spectrum and its bearings to PNG, from a live topic (real DDS) and from
real rosbag2 bags written with rosbags."""
from __future__ import annotations

import subprocess
import time

import matplotlib.image
import numpy as np
import pytest
from espargos_aoa.estimator import AoaConfig, AoaEstimator
from espargos_aoa.messages import bearing_array_msg, spectrum_msg
from espargos_driver.bags import espargos_typestore
from espargos_driver.geometry import board_antenna_positions
from espargos_driver.sim.channel import ArrayChannel
from espargos_driver.sim.scenario import ChannelModel, Impairments, Transmitter
from espargos_driver.wifi import GRIDS, CsiFormat, grid_center_hz
from espargos_msgs.msg import BearingArray, SpatialSpectrum
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from std_msgs.msg import Header

from conftest import executable

FMT = CsiFormat.HT40
FREQS_HZ = grid_center_hz(FMT, 6, 1) + GRIDS[FMT].indices * GRIDS[FMT].spacing_hz
VALID = np.isin(np.arange(FREQS_HZ.size), GRIDS[FMT].interpolated, invert=True)
MAC = bytes.fromhex("020000000001")


def outputs(azimuth_deg: float, elevation_deg: float, two_d: bool, stamp_s: int = 5):
    channel = ArrayChannel(Impairments(lo_phase=False, timing_offset_std_ns=0.0), np.zeros(8), np.random.default_rng(1))
    tx = Transmitter(azimuth_deg=azimuth_deg, elevation_deg=elevation_deg, channel=ChannelModel.preset("ideal"))
    csi = np.stack([channel.ota(tx, 0.0, FMT, 6, 1, 20.0) for _ in range(20)])
    result = AoaEstimator(AoaConfig(two_d=two_d), board_antenna_positions()).estimate(
        csi, np.ones((20, 8), bool), FREQS_HZ, VALID)
    header = Header(frame_id="espargos_array")
    header.stamp.sec = stamp_s
    return (spectrum_msg(result, header, "espargos", MAC, "music-wideband"),
            bearing_array_msg(result, header, "espargos", MAC, "music-wideband", 0.1))


def red_columns(png) -> np.ndarray:
    """Image columns holding the bearing's red line across the whole plot height (not the
    legend's sample, not the shorter line in the zoom inset)."""
    img = matplotlib.image.imread(png)
    red = (img[..., 0] > 0.7) & (img[..., 1] < 0.45) & (img[..., 2] < 0.45)
    return np.flatnonzero(red.sum(axis=0) >= 200)


def write_bag(path, storage: StoragePlugin, messages: list[tuple[str, object]]) -> None:
    store = espargos_typestore()
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for i, (topic, msg) in enumerate(messages):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, f"espargos_msgs/msg/{type(msg).__name__}", typestore=store)
            writer.write(conns[topic], 1_000_000_000 * (i + 1), bytes(serialize_message(msg)))


def run_render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(executable("aoa_render")), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_render_from_bag(tmp_path, storage):
    first = outputs(-40.0, 0.0, False, stamp_s=5)
    last = outputs(30.0, 0.0, False, stamp_s=6)
    bag = tmp_path / "bag"
    write_bag(bag, storage, [("/espargos/spatial_spectrum", first[0]), ("/espargos/bearings", first[1]),
                             ("/espargos/spatial_spectrum", last[0]), ("/espargos/bearings", last[1])])
    done = run_render("--bag", str(bag), "-o", str(tmp_path / "last.png"))
    assert done.returncode == 0, done.stderr
    assert "1 bearing" in done.stdout
    done = run_render("--bag", str(bag), "--index", "0", "-o", str(tmp_path / "first.png"))
    assert done.returncode == 0, done.stderr
    # The bearing line sits further right for +30 deg than for -40 deg.
    assert red_columns(tmp_path / "last.png").mean() > red_columns(tmp_path / "first.png").mean() + 100


def colour_pixels(png, rgb: tuple[float, float, float], tol: float = 0.12) -> np.ndarray:
    """Boolean image of the pixels within ``tol`` of an RGB colour."""
    img = matplotlib.image.imread(png)[..., :3]
    return np.all(np.abs(img - np.array(rgb)) < tol, axis=-1)


BLUE, GREEN = matplotlib.colors.to_rgb("tab:blue"), matplotlib.colors.to_rgb("tab:green")
BAND = tuple(0.75 + 0.25 * np.array(matplotlib.colors.to_rgb("tab:red")))         # tab:red at alpha 0.25 on white


def test_render_shows_the_whole_curve_the_band_and_the_truth(tmp_path):
    """A simulated scene (transmitter at 30 deg): the curve is drawn over >= 30 dB (not cut off
    near the peak), the 1-sigma band is visible (in the zoom inset), the true bearing is drawn,
    and the title shows a date rather than raw epoch seconds."""
    scenario = tmp_path / "scene.yaml"
    scenario.write_text('scenario: {transmitters: [{mac: "02:00:00:00:00:01", azimuth_deg: 30.0}]}\n')
    spectrum, bearings = outputs(30.0, 0.0, False)
    spectrum.header.stamp.sec = 1_796_000_000
    bag = tmp_path / "bag"
    write_bag(bag, StoragePlugin.MCAP, [("/espargos/spatial_spectrum", spectrum), ("/espargos/bearings", bearings)])
    png = tmp_path / "scene.png"
    done = run_render("--bag", str(bag), "--scenario", str(scenario), "-o", str(png))
    assert done.returncode == 0, done.stderr
    power = np.asarray(spectrum.power_db)
    assert power.min() < -30.0                                       # the curve spans >= 30 dB ...
    blue = colour_pixels(png, BLUE)
    rows = np.flatnonzero(blue.any(axis=1))
    assert rows.size and rows.max() - rows.min() > 250               # ... and is drawn over most of the plot height
    columns = np.flatnonzero(blue[:, 80:760].any(axis=0))
    assert columns.size > 0.9 * 680                                  # in (nearly) every azimuth column
    band = colour_pixels(png, BAND, tol=0.06)
    assert np.flatnonzero(band.any(axis=0)).size >= 8, "1-sigma band not visible"
    green = colour_pixels(png, GREEN)
    assert green.sum() > 100, "no true bearing drawn"
    from espargos_aoa.render import stamp_text
    assert stamp_text(1_796_000_000, 5_000_000).startswith("2026-") and stamp_text(5, 0) == "t = 5.000 s"
    moving = tmp_path / "moving.yaml"
    moving.write_text('scenario: {transmitters: [{mac: "02:00:00:00:00:01", azimuth_rate_deg_s: 5.0}]}\n')
    refused = run_render("--bag", str(bag), "--scenario", str(moving), "-o", str(tmp_path / "m.png"))
    assert refused.returncode == 1 and "moves" in refused.stderr and "Traceback" not in refused.stderr


def test_render_two_d_and_missing_topic(tmp_path):
    spectrum, bearings = outputs(20.0, 30.0, True)
    bag = tmp_path / "bag2d"
    write_bag(bag, StoragePlugin.MCAP, [("/arr/spatial_spectrum", spectrum), ("/arr/bearings", bearings)])
    done = run_render("--bag", str(bag), "--namespace", "/arr", "-o", str(tmp_path / "map.png"))
    assert done.returncode == 0, done.stderr
    assert matplotlib.image.imread(tmp_path / "map.png").shape[:2] == (450, 800)
    wrong = run_render("--bag", str(bag), "-o", str(tmp_path / "none.png"))
    assert wrong.returncode == 1 and "no /espargos/spatial_spectrum topic" in wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "none.png").exists()
    missing = run_render("--bag", str(tmp_path / "nope"), "-o", str(tmp_path / "none.png"))
    assert missing.returncode == 1 and "cannot read bag" in missing.stderr and "Traceback" not in missing.stderr


def test_render_from_live_topic(ros_node, tmp_path):
    spectrum, bearings = outputs(10.0, 0.0, False)
    spec_pub = ros_node.create_publisher(SpatialSpectrum, "/live/spatial_spectrum", 10)
    bear_pub = ros_node.create_publisher(BearingArray, "/live/bearings", 10)
    png = tmp_path / "live.png"
    proc = subprocess.Popen([str(executable("aoa_render")), "--namespace", "/live", "-o", str(png)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        bear_pub.publish(bearings)
        spec_pub.publish(spectrum)
        time.sleep(0.1)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert png.exists() and "1 bearing" in out and red_columns(png).size > 0


def test_shipped_rviz_config_shows_the_aoa_node_views():
    """config/espargos.rviz is valid YAML naming the topics aoa_node publishes under /espargos."""
    import yaml

    from conftest import ROOT

    manager = yaml.safe_load((ROOT / "config" / "espargos.rviz").read_text())["Visualization Manager"]
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["rviz_default_plugins/MarkerArray"] == "/espargos/bearing_markers"
    assert topics["rviz_default_plugins/LaserScan"] == "/espargos/spectrum_scan"
    assert manager["Global Options"]["Fixed Frame"] == "espargos_array"
