"""The board simulator answers every controller endpoint of the protocol spec's API table
(read in place from ../shared/spec), as the vendor client calls them, and both WebSocket paths."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from conftest import executable, free_port

SENSOR_PACKET_MAGIC = struct.pack("<I", 0xDECAFBAD)

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "espargos-protocol.md"
WEB_UI_ONLY = "(web-UI only)"


def spec_endpoints() -> list[tuple[str, str]]:
    """(path, method cell) of every row of the spec's G3 HTTP endpoint table (§1.1), web-UI rows excluded."""
    text = SPEC.read_text()
    section = text[text.index("### 1.1 G3"):text.index("### 1.2 G3")]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `/") and not line.startswith(f"| {WEB_UI_ONLY}"):
            continue
        if WEB_UI_ONLY in line:
            continue
        first, method = [c.strip() for c in line.split("|")[1:3]]
        rows += [(path, method) for path in re.findall(r"`(/[a-z_]+)`", first)]
    return rows


def request(port: int, path: str, body: bytes | None = None) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    for attempt in range(50):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except urllib.error.URLError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url}")


POST_BODIES = {"/set_rfswitch": b"2", "/stream_udp": b'{"enable": false}', "/csi_udp": b'{"enable": false}'}


@pytest.mark.skipif(not SPEC.exists(), reason=f"protocol spec not found at {SPEC}")
def test_every_endpoint_of_the_spec_is_answered(processes):
    endpoints = spec_endpoints()
    paths = {p for p, _ in endpoints}
    assert {"/identify", "/get_cfo_correction", "/set_wifi_channel_overrides", "/get_tx_control", "/reboot"} <= paths
    port = free_port()
    processes.start("board_simulator", "--http-port", str(port), "--stream-port", str(free_port(socket.SOCK_DGRAM)))
    for path, method in sorted(endpoints, key=lambda e: e[0] == "/reboot"):       # reboot last
        if path.startswith("/set_") or method.startswith("POST") or path in POST_BODIES:
            status, text = request(port, path, POST_BODIES.get(path, b"{}"))
            assert (status, text) == (200, "ok"), f"POST {path}: {status} {text}"
        else:
            status, text = request(port, path)
            assert status == 200, f"GET {path}: {status} {text}"
            if path.startswith("/get_") and path != "/get_rfswitch":
                json.loads(text)
    # Per-sensor lists are in antenna-ID order, 8 long; a set changes only the given keys.
    overrides = json.loads(request(port, "/get_wifi_channel_overrides")[1])
    assert len(overrides["channel-primary"]) == len(overrides["channel-secondary"]) == 8
    assert request(port, "/set_cfo_correction", b'{"value": -12}') == (200, "ok")
    assert json.loads(request(port, "/get_cfo_correction")[1]) == {"auto": True, "value": -12}
    radar = json.loads(request(port, "/get_tx_control")[1])
    assert {"active_by_antid", "start_by_antid", "period_by_antid", "mac_by_antid", "rfswitch_state", "tx_power",
            "tx_phymode", "tx_rate"} <= set(radar)


@pytest.mark.parametrize("path", ["/stream", "/csi"])
def test_both_websocket_paths_stream_sensor_packets(processes, path):
    port = free_port()
    processes.start("board_simulator", "--http-port", str(port), "--stream-port", str(free_port(socket.SOCK_DGRAM)))
    request(port, "/identify")

    async def first_packets() -> list[bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}{path}", timeout=5) as ws:
                return [(await ws.receive(timeout=5)).data for _ in range(3)]

    packets = asyncio.run(first_packets())
    assert all(isinstance(p, bytes) and p[:4] == SENSOR_PACKET_MAGIC for p in packets), packets[:1]


@pytest.mark.parametrize("program, args", [
    ("board_simulator", ("--http-port", "{tcp}", "--stream-port", "{udp}")),
    ("swarm_simulator", ("--scenario", str(Path(__file__).resolve().parents[1] / "espargos_driver" / "config"
                                           / "swarm_scenario.yaml"), "--target", "127.0.0.1:{udp}")),
])
def test_simulators_stop_on_sigint_even_when_started_with_it_ignored(tmp_path, program, args):
    """A shell script's background job (``cmd &``) inherits SIGINT ignored, and Python keeps that:
    the benchmarks' simulators, started from such a job, ran on after SIGINT until killed."""
    ports = {"tcp": free_port(), "udp": free_port(socket.SOCK_DGRAM)}
    log = tmp_path / f"{program}.log"
    proc = subprocess.Popen([str(executable(program)), *(a.format(**ports) for a in args)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(3.0)                                    # past its start-up (imports, scenario, sockets)
        assert proc.poll() is None, log.read_text()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
