"""Calibration you can trust: verified before use, never applied to another board or to a board
that rebooted, and the board left as found whatever way the driver ends.

Ground truth: the simulator's transmitter azimuth. Every frame marked ``calibrated`` that the
test receives is checked against that plane wave, not just the last few (on the ideal channel:
fading and reflections would move single frames off the plane wave).
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from conftest import spin_until
from test_driver_system import Watch, plane_wave_errors_deg

MAX_FRAME_ERROR_DEG = 15.0
"""Largest antenna phase error of one calibrated frame against the plane wave at 20 dB (the
phase is averaged over 117 subcarriers; a wrong calibration is off by tens of degrees)."""


def http(b, path: str, body: bytes | None = None) -> str:
    """One request to the simulator (retried while it starts up)."""
    url = f"http://127.0.0.1:{b.params['http_port']}{path}"
    for attempt in range(50):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as resp:
                return resp.read().decode()
        except urllib.error.URLError:
            if attempt == 49:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def wrong_calibrated_frames(w: Watch, azimuth_deg: float) -> list[float]:
    """The largest phase error of every calibrated frame that misses the plane wave."""
    calibrated = [m for m in w.frames if m.calibrated]
    if not calibrated:
        return []
    errors = np.abs(plane_wave_errors_deg(calibrated, w.geometry, azimuth_deg, 0.0)).max(axis=1)
    return [float(e) for e in errors if e > MAX_FRAME_ERROR_DEG]


class Levels(Watch):
    """Watch that also keeps the board's diagnostics level over time."""

    def __init__(self, node, ns: str) -> None:
        super().__init__(node, ns)
        self.levels: list[bytes] = []

    def _diag(self, msg):
        super()._diag(msg)
        self.levels += [s.level for s in msg.status if s.name.startswith("espargos_driver")]


def test_calibration_of_another_board_is_not_applied(ros_node, board, tmp_path):
    a = board(("--hostname", "espargos-a", "--seed", "31", "--channel", "ideal", "--azimuth", "20"),
              {"calibration.policy": "startup"},
              namespace="board_a")
    wa = Watch(ros_node, a.ns)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in wa.frames) >= 20, 40), wa.diag
    stored = json.loads((tmp_path / "calibration.json").read_text())
    assert stored["identity"].startswith("espargos-a@127.0.0.1:")
    os.killpg(a.node.pid, signal.SIGINT)
    assert a.node.wait(timeout=15) == 0

    # Board B (other name, other LO phases) with policy `file`: the stored file is A's, so B stays
    # uncalibrated and says so with an ERROR.
    b = board(("--hostname", "espargos-b", "--seed", "32", "--channel", "ideal", "--azimuth", "-35"),
              {"calibration.policy": "file"},
              namespace="board_b")
    wb = Levels(ros_node, b.ns)
    assert spin_until(ros_node, lambda: wb.diag.get("calibration_status") == "failed" and len(wb.frames) > 50, 30), \
        wb.diag
    assert "espargos-a" in wb.diag["calibration"] and wb.levels[-1] == DiagnosticStatus.ERROR
    assert not any(m.calibrated for m in wb.frames)
    os.killpg(b.node.pid, signal.SIGINT)
    assert b.node.wait(timeout=15) == 0

    # Policy `auto` on B: A's file is refused, B is calibrated afresh; no calibrated frame is wrong.
    b2 = board(("--hostname", "espargos-b", "--seed", "32", "--channel", "ideal", "--azimuth", "-35"),
               {"calibration.policy": "auto"},
               namespace="board_b2")
    wb2 = Watch(ros_node, b2.ns)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in wb2.frames) >= 30
                      and "calibrated from" in wb2.diag.get("calibration", ""), 40), wb2.diag
    assert not wrong_calibrated_frames(wb2, -35.0)
    assert json.loads((tmp_path / "calibration.json").read_text())["identity"].startswith("espargos-b@")


def test_a_board_that_reboots_is_recalibrated_before_frames_are_calibrated_again(ros_node, board, processes):
    b = board(("--seed", "33", "--channel", "ideal", "--azimuth", "-30"), {"calibration.policy": "startup"})
    w = Watch(ros_node, b.ns)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames) >= 30, 40), w.diag
    # A reset of the sensors that keeps the stream: only the timestamps tell.
    assert http(b, "/reboot?keep_stream=1", b"") == "ok"
    assert spin_until(ros_node, lambda: w.count("board_reboots") >= 1 and w.count("calibration_rejected") >= 1, 15), \
        w.diag
    n = len(w.frames)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames[n:]) >= 30, 30), w.diag
    # A full reboot: the stream ends, the driver reconnects, re-verifies, recalibrates.
    rejected = w.count("calibration_rejected")
    assert http(b, "/reboot", b"") == "ok"
    assert spin_until(ros_node, lambda: w.count("calibration_rejected") > rejected, 30), w.diag
    n = len(w.frames)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames[n:]) >= 30
                      and w.diag.get("calibration_status") == "verified", 30), processes.log_of(b.node)
    wrong = wrong_calibrated_frames(w, -30.0)
    assert not wrong, f"{len(wrong)} calibrated frames off the plane wave by up to {max(wrong):.0f} deg"
    assert sum(not m.calibrated for m in w.frames) > 0       # the gaps were published uncalibrated


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_during_calibration_leaves_the_board_as_found(ros_node, board, processes, sig):
    found = {}

    def read_mac_filter(b) -> None:          # before the node starts, so before its burst changes it
        found["mac_filter"] = json.loads(http(b, "/get_mac_filter"))

    b = board(("--seed", "34"), {"calibration.policy": "startup", "calibration.duration": 20.0},
              prepare=read_mac_filter)
    assert spin_until(ros_node, lambda: http(b, "/get_rfswitch").strip() == "1", 30), "calibration never started"
    os.killpg(b.node.pid, sig)
    assert b.node.wait(timeout=15) == 0
    assert "Traceback" not in processes.log_of(b.node) and "RCLError" not in processes.log_of(b.node)
    assert http(b, "/get_rfswitch").strip() == "2"
    assert json.loads(http(b, "/get_mac_filter")) == found["mac_filter"]


def test_a_switch_left_on_reference_is_put_back_and_reported(ros_node, board, processes):
    b = board(("--seed", "35"), {"calibration.policy": "none"})
    w = Watch(ros_node, b.ns)
    assert spin_until(ros_node, lambda: len(w.frames) > 10, 20)
    os.killpg(b.node.pid, signal.SIGKILL)                    # no clean-up at all ...
    b.node.wait()
    assert http(b, "/set_rfswitch", b"1") == "ok"            # ... and the switch left on REFERENCE
    processes.start_node(b.params, f"{b.ns}2")
    w2 = Watch(ros_node, f"{b.ns}2")
    assert spin_until(ros_node, lambda: len(w2.frames) > 10 and w2.count("rf_switch_restored") == 1, 20), w2.diag
    assert http(b, "/get_rfswitch").strip() == "2"


def test_a_failed_requested_calibration_keeps_the_verified_one(ros_node, board):
    """A calibration burst does not touch the LO phases: when a requested calibration fails (here
    the board sends no reference packets), the one verified before stays in force, and says so."""
    from espargos_msgs.srv import Calibrate

    b = board(("--seed", "36", "--channel", "ideal", "--azimuth", "10"), {"calibration.policy": "startup"})
    w = Watch(ros_node, b.ns)
    assert spin_until(ros_node, lambda: w.diag.get("calibration_status") == "verified", 40), w.diag
    assert http(b, "/set_wificonf", b'{"calib-mode": 0}') == "ok"
    client = ros_node.create_client(Calibrate, f"{b.ns}/calibrate")
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(Calibrate.Request(duration_s=0.5))
    assert spin_until(ros_node, future.done, 30)
    assert not future.result().success and "reference frames" in future.result().message
    assert spin_until(ros_node, lambda: "a requested calibration failed" in w.diag.get("calibration", ""), 10), w.diag
    assert w.diag["calibration_status"] == "verified"
    n = len(w.frames)
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames[n:]) >= 20, 10)
    assert not wrong_calibrated_frames(w, 10.0)


def test_a_failed_start_up_calibration_is_retried(ros_node, board):
    def no_reference_packets(b) -> None:      # before the node starts, so its first burst fails
        assert http(b, "/set_wificonf", b'{"calib-mode": 0}') == "ok"

    b = board(("--seed", "37", "--channel", "ideal", "--azimuth", "-5"), {"calibration.policy": "startup"},
              prepare=no_reference_packets)
    w = Watch(ros_node, b.ns)
    assert spin_until(ros_node, lambda: w.diag.get("calibration_status") == "failed", 30), w.diag
    assert http(b, "/set_wificonf", b'{"calib-mode": 1}') == "ok"
    assert spin_until(ros_node, lambda: w.diag.get("calibration_status") == "verified", 40), w.diag
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames) >= 20, 10)
    assert not wrong_calibrated_frames(w, -5.0)
