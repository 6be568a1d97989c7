"""board_node and swarm_node as managed (lifecycle) nodes, driven over real DDS through the standard
lifecycle_msgs services, against the simulators: nothing flows before activation or after
deactivation, the board is left as found, and a new activation re-verifies the calibration.

Ground truth: the simulator's RF switch and MAC filter as read before the node started, and its
transmitter azimuth (every calibrated frame is checked against that plane wave).
"""
from __future__ import annotations

import json
import socket

import pytest
from espargos_msgs.msg import CsiArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy

from conftest import ROOT, free_port, spin_until
from test_calibration_trust import http, wrong_calibrated_frames
from test_driver_system import Watch

AZIMUTH_DEG = 20.0
QUIET_S = 2.0
"""How long the test listens to show that nothing is published (the simulator sends ~100 frames/s)."""


class Lifecycle:
    """Client of one managed node's lifecycle services (what ``ros2 lifecycle`` uses)."""

    def __init__(self, node, name: str) -> None:
        self.node = node
        self.get = node.create_client(GetState, f"{name}/get_state")
        self.change_state = node.create_client(ChangeState, f"{name}/change_state")
        assert self.get.wait_for_service(timeout_sec=30) and self.change_state.wait_for_service(timeout_sec=30), \
            f"no lifecycle services under {name}"
        # wait_for_service sees the service's request reader; its response writer may match our
        # reader later, and Fast DDS drops a response it cannot deliver ("failed to send response
        # (timeout)", seen once on an idle machine). get_state changes nothing: ask until it answers.
        for _ in range(6):
            future = self.get.call_async(GetState.Request())
            if spin_until(self.node, future.done, 5):
                break
            self.get.remove_pending_request(future)

    def _call(self, client, request):
        future = client.call_async(request)
        assert spin_until(self.node, future.done, 60), f"{client.srv_name} did not answer"
        return future.result()

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id

    def change(self, transition: int) -> bool:
        return self._call(self.change_state, ChangeState.Request(transition=Transition(id=transition))).success


def quiet(node, counter, seconds: float = QUIET_S) -> int:
    """Messages that arrived in ``seconds`` after a 0.5 s grace for messages already in flight."""
    spin_until(node, lambda: False, 0.5)
    before = counter()
    spin_until(node, lambda: False, seconds)
    return counter() - before


def board_state(b) -> tuple[str, dict]:
    return http(b, "/get_rfswitch").strip(), json.loads(http(b, "/get_mac_filter"))


def test_board_node_configure_activate_deactivate_activate_shutdown(ros_node, board, processes):
    found = {}
    b = board(("--seed", "41", "--channel", "ideal", "--azimuth", str(AZIMUTH_DEG)),
              {"autostart": "false", "calibration.policy": "auto"},
              prepare=lambda handle: found.update(state=board_state(handle)))
    w = Watch(ros_node, b.ns)
    lc = Lifecycle(ros_node, f"{b.ns}/board_node")
    assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert spin_until(ros_node, lambda: w.diag.get("lifecycle_state") == "unconfigured", 10), w.diag
    assert quiet(ros_node, lambda: len(w.frames)) == 0

    assert lc.change(Transition.TRANSITION_CONFIGURE) and lc.state() == State.PRIMARY_STATE_INACTIVE
    assert quiet(ros_node, lambda: len(w.frames)) == 0 and board_state(b) == found["state"]

    assert lc.change(Transition.TRANSITION_ACTIVATE) and lc.state() == State.PRIMARY_STATE_ACTIVE
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames) >= 20, 60), (len(w.frames), w.diag)
    assert w.diag.get("lifecycle_state") == "active" or spin_until(
        ros_node, lambda: w.diag.get("lifecycle_state") == "active", 5)
    assert not wrong_calibrated_frames(w, AZIMUTH_DEG)

    assert lc.change(Transition.TRANSITION_DEACTIVATE) and lc.state() == State.PRIMARY_STATE_INACTIVE
    assert quiet(ros_node, lambda: len(w.frames)) == 0
    assert board_state(b) == found["state"], "deactivate must leave the RF switch and MAC filter as found"
    assert spin_until(ros_node, lambda: w.diag.get("lifecycle_state") == "inactive", 10), w.diag

    w.frames.clear()
    assert lc.change(Transition.TRANSITION_ACTIVATE) and lc.state() == State.PRIMARY_STATE_ACTIVE
    assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames) >= 20, 60), (len(w.frames), w.diag)
    assert spin_until(ros_node, lambda: w.diag.get("calibration", "").startswith("verified: verified with"), 10), w.diag
    assert not wrong_calibrated_frames(w, AZIMUTH_DEG)
    assert "calibration verified with" in processes.log_of(b.node), "the stored calibration was not re-verified"

    assert lc.change(Transition.TRANSITION_ACTIVE_SHUTDOWN) and lc.state() == State.PRIMARY_STATE_FINALIZED
    assert quiet(ros_node, lambda: len(w.frames)) == 0 and board_state(b) == found["state"]
    assert b.node.poll() is None and "Traceback" not in processes.log_of(b.node)


def test_a_transition_the_state_does_not_have_is_refused_and_counted(ros_node, board, processes):
    """rclpy lets such a request kill the node; ours answers success = false and counts it."""
    b = board(("--seed", "42",), {"autostart": "false", "calibration.policy": "none"})
    w = Watch(ros_node, b.ns)
    lc = Lifecycle(ros_node, f"{b.ns}/board_node")
    assert not lc.change(Transition.TRANSITION_ACTIVATE)          # not configured yet
    assert not lc.change(Transition.TRANSITION_CLEANUP)
    assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert spin_until(ros_node, lambda: w.count("invalid_transitions") == 2, 10), w.diag
    assert lc.change(Transition.TRANSITION_CONFIGURE) and lc.change(Transition.TRANSITION_ACTIVATE)
    assert spin_until(ros_node, lambda: len(w.frames) >= 10, 30)
    assert b.node.poll() is None and "Traceback" not in processes.log_of(b.node)


def test_swarm_node_lifecycle_releases_its_port(ros_node, processes):
    port = free_port(socket.SOCK_DGRAM)
    got = []
    ros_node.create_subscription(CsiArray, "/lc_swarm/csi", got.append,
                                 QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
    node = processes.start("swarm_node", "--ros-args", "-r", "__ns:=/lc_swarm", "-p", "autostart:=false",
                           "-p", "udp_host:=127.0.0.1", "-p", f"udp_port:={port}")
    processes.start("swarm_simulator", "--scenario", str(ROOT / "config" / "swarm_scenario.yaml"),
                    "--target", f"127.0.0.1:{port}")
    lc = Lifecycle(ros_node, "/lc_swarm/swarm_node")
    assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED and quiet(ros_node, lambda: len(got)) == 0
    assert lc.change(Transition.TRANSITION_CONFIGURE) and quiet(ros_node, lambda: len(got)) == 0
    assert lc.change(Transition.TRANSITION_ACTIVATE)
    assert spin_until(ros_node, lambda: len(got) >= 20, 30), processes.log_of(node)[-2000:]
    assert lc.change(Transition.TRANSITION_DEACTIVATE) and quiet(ros_node, lambda: len(got)) == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:         # the port is free while inactive
        s.bind(("127.0.0.1", port))
    n = len(got)
    assert lc.change(Transition.TRANSITION_ACTIVATE)
    assert spin_until(ros_node, lambda: len(got) >= n + 20, 30), processes.log_of(node)[-2000:]
    assert lc.change(Transition.TRANSITION_ACTIVE_SHUTDOWN) and lc.state() == State.PRIMARY_STATE_FINALIZED
    assert quiet(ros_node, lambda: len(got)) == 0


@pytest.mark.parametrize("executable, params", [
    ("board_node", ["-p", "host:=127.0.0.1", "-p", "transport:=carrier_pigeon"]),
    ("swarm_node", ["-p", "transport:=carrier_pigeon"]),
])
def test_autostart_refuses_a_parameter_that_cannot_work(processes, executable, params):
    proc = processes.start(executable, "--ros-args", "-r", "__ns:=/lc_bad", *params)
    assert processes.exit_status(proc, 30) == 2
    log = processes.log_of(proc)
    assert "invalid parameter" in log and "carrier_pigeon" in log and "Traceback" not in log
