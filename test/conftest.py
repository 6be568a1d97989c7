"""System-test fixtures: isolated ROS graph, installed console scripts as processes, an rclpy node.

Needs the workspace built by tools/setup (install/ on the path via tools/env.sh).
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def executable(name: str) -> Path:
    """Installed console script ``name`` of a package of the suite (``ros2 run <package> <name>``),
    found through the ament index of the sourced workspace."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    for package in ("espargos_driver", "espargos_aoa"):
        try:
            candidate = Path(get_package_prefix(package)) / "lib" / package / name
        except PackageNotFoundError:
            continue
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} is not installed by espargos_driver or espargos_aoa; run tools/setup "
                            "and source tools/env.sh (or your workspace's install/setup.bash)")


os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(100, 200))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", "/tmp/espargos-test-roslog")

import rclpy  # noqa: E402  (after the ROS environment is set)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts installed console scripts in their own sessions and always stops them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start_node(self, params: dict, namespace: str, name: str = "board_node") -> subprocess.Popen:
        """Start the ROS node ``name`` with ``params`` under ``namespace``."""
        ros_args = ["--ros-args", "-r", f"__ns:={namespace}"]
        for key, value in params.items():
            ros_args += ["-p", f"{key}:={value}"]
        return self.start(name, *ros_args)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.log_dir / f"{name}-{len(self.procs)}.log"
        proc = subprocess.Popen([str(executable(name)), *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        return next(log for p, log in self.procs if p is proc).read_text()

    def exit_status(self, proc: subprocess.Popen, timeout_s: float) -> int | str:
        """``proc``'s exit status within ``timeout_s``, else a text that says it did not exit and
        holds its log so far (an assertion on the status then shows why)."""
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"still running after {timeout_s} s; its log: {self.log_of(proc)!r}"

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGINT)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def ros_context():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def ros_node(ros_context):
    node = rclpy.create_node(f"test_{os.getpid()}_{random.randint(0, 1 << 30)}")
    yield node
    node.destroy_node()


def spin_until(node, predicate, timeout_s: float) -> bool:
    """Spin ``node`` until ``predicate()`` is true or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if predicate():
            return True
    return False


def call_idempotent(node, client, request, timeout_s: float = 20.0, resend_after_s: float = 5.0):
    """The response of ``client`` to ``request`` (a call that can be repeated safely: a refusal, a
    parameter set), sent again every ``resend_after_s`` without an answer; None after ``timeout_s``.
    DDS can lose a service request or its response while the client's and the server's endpoints
    are still matching after ``wait_for_service`` (ros2/rclpy#1191, ros2/rmw_fastrtps#238): the call
    never completes. Seen here once, on a busy machine, for the first call after the wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        future = client.call_async(request)
        if spin_until(node, future.done, min(resend_after_s, deadline - time.monotonic())):
            return future.result()
        client.remove_pending_request(future)
    return None


def board_starter(processes: Processes, tmp_path: Path) -> Callable[..., SimpleNamespace]:
    """A function that starts a simulated board and a board_node talking to it (under ``processes``,
    calibration file in ``tmp_path``) and returns a small handle."""

    def start(sim_args: tuple[str, ...] = (), node_params: dict | None = None,
              namespace: str = "espargos",
              prepare: Callable[[SimpleNamespace], object] | None = None) -> SimpleNamespace:
        """``prepare(handle)`` runs after the simulator starts and before the node does."""
        http_port, stream_port = free_port(), free_port(socket.SOCK_DGRAM)
        sim = processes.start("board_simulator", "--http-port", str(http_port), "--stream-port", str(stream_port),
                              *sim_args)
        params = {"host": "127.0.0.1", "http_port": http_port, "stream_port": stream_port,
                  "calibration.file": str(tmp_path / "calibration.json"), "calibration.duration": 1.0}
        params.update(node_params or {})
        handle = SimpleNamespace(sim=sim, node=None, ns=f"/{namespace}", params=params)
        if prepare is not None:
            prepare(handle)
        handle.node = processes.start_node(params, f"/{namespace}")
        return handle

    return start


@pytest.fixture
def board(processes, tmp_path):
    """Start a simulated board and a board_node talking to it; returns a small handle."""
    return board_starter(processes, tmp_path)
