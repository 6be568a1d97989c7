"""Hostile and broken input over real sockets: strangers on the network, values out of range,
a board that goes silent while a stranger talks, floods of fragments, endless lines.

Ground truth comes from the simulator's scenario (transmitter azimuth) and from what the test
itself sends; the nodes are real processes, the sockets real loopback sockets.
"""
from __future__ import annotations

import os
import pty
import signal
import socket
import threading
import time
import urllib.request

import numpy as np
from espargos_msgs.msg import CsiArray
from espargos_msgs.srv import Calibrate

from conftest import spin_until
from espargos_driver.sim.encoder import csi_message, rx_ctrl_v3, sensor_packets
from espargos_driver.wifi import CsiFormat
from test_driver_system import Watch, plane_wave_errors_deg
from test_swarm_system import Diag, udp_swarm_node

FORGED_MAC = bytes.fromhex("666666666666")
STRANGER = "127.0.0.2"


def forged_packets(channel: int = 6, is_calib: bool = False, seq: int = 1) -> list[bytes]:
    """A complete, CRC-valid 8-antenna HT40 frame with a random phase per antenna."""
    rng = np.random.default_rng(seq)
    out = []
    for antenna in range(8):
        z = 60 * np.exp(1j * rng.uniform(0, 2 * np.pi)) * np.ones(117)
        pairs = np.empty((117, 2), np.int8)
        pairs[:, 0], pairs[:, 1] = np.round(-z.imag), np.round(-z.real)
        rx = rx_ctrl_v3(fmt=CsiFormat.HT40, channel=channel, secondary=1, csi_len=234, rssi_dbm=-40,
                        noise_floor_dbm=-90, rxstart_cyc=0, timestamp_us=1000)
        message = csi_message(src=FORGED_MAC, dst=b"\xff" * 6, seq=seq, is_calib=is_calib, global_us=4_000_000_000,
                              rf_switch=2, rx_ctrl=rx, csi=pairs.tobytes())
        out += sensor_packets(message, (antenna << 29) | (seq & 0xFFFF))
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Stranger:
    """Sends datagrams from 127.0.0.2 to a port, at a rate, on its own thread, until stopped."""

    def __init__(self, port: int, payloads: list[bytes], rate_hz: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((STRANGER, 0))
        self.port, self.payloads, self.rate_hz = port, payloads, rate_hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1 / self.rate_hz):
            self.sock.sendto(self.payloads[self.sent % len(self.payloads)], ("127.0.0.1", self.port))
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def streaming_board(ros_node, board, seed: int, *sim_args: str, **params) -> tuple:
    """A simulated board and its board_node (no calibration, ``params``), once frames flow:
    (board handle, Watch, the driver's local stream port)."""
    b = board(("--seed", str(seed), *sim_args), {"calibration.policy": "none", **params})
    w = Watch(ros_node, b.ns)
    port = stream_port_of(ros_node, w)
    assert spin_until(ros_node, lambda: len(w.frames) > 20, 20)
    return b, w, port


def text_line() -> bytes:
    """A classic esp-csi line of 128 CSI values (HT20 on channel 6) from transmitter aa:bb:cc:dd:ee:ff."""
    return ("CSI_DATA,5,aa:bb:cc:dd:ee:ff,-50,11,1,7,0,1,1,1,0,0,1,-91,0,6,0,1000,0,100,0,128,0,["
            + " ".join(["3"] * 128) + "]").encode()


def stream_port_of(ros_node, w: Watch) -> int:
    assert spin_until(ros_node, lambda: w.diag.get("connection") == "streaming"
                      and int(w.diag.get("stream_local_port", "0") or 0) > 0, 30), w.diag
    return int(w.diag["stream_local_port"])


def test_strangers_frames_and_reference_packets_are_dropped(ros_node, board):
    """Forged frames and forged reference packets from another address, during streaming and
    during a calibration: none is published, the calibration holds to the plane wave."""
    b = board(("--channel", "ideal", "--azimuth", "25", "--seed", "21"), {"calibration.policy": "none"})
    w = Watch(ros_node, b.ns)
    port = stream_port_of(ros_node, w)
    payloads = forged_packets(seq=1) + forged_packets(seq=2, is_calib=True)
    stranger = Stranger(port, payloads, 400)
    try:
        client = ros_node.create_client(Calibrate, f"{b.ns}/calibrate")
        assert client.wait_for_service(timeout_sec=20)
        future = client.call_async(Calibrate.Request(duration_s=1.0))
        assert spin_until(ros_node, future.done, 30)
        assert future.result().success, future.result().message
        assert future.result().phase_residual_deg < 2.0
        n = len(w.frames)
        assert spin_until(ros_node, lambda: sum(m.calibrated for m in w.frames[n:]) >= 40, 20)
    finally:
        stranger.stop()
    assert spin_until(ros_node, lambda: w.count("foreign_source") >= stranger.sent * 0.9, 5), \
        (w.count("foreign_source"), stranger.sent)
    assert stranger.sent > 400
    assert not [m for m in w.frames if bytes(m.transmitter_mac) == FORGED_MAC]
    calibrated = [m for m in w.frames if m.calibrated][-40:]
    err = plane_wave_errors_deg(calibrated, w.geometry, 25.0, 0.0)
    assert np.sqrt(np.mean(err ** 2)) < 3.0
    assert STRANGER in w.diag["strangers"]
    assert b.node.poll() is None


def test_out_of_range_channel_from_the_board_is_counted_and_streaming_goes_on(ros_node, board):
    b = board(("--seed", "22"), {"calibration.policy": "none"})
    w = Watch(ros_node, b.ns)
    stream_port_of(ros_node, w)
    for channel in (0, 15, 255):
        for packet in forged_packets(channel=channel, seq=channel + 1):
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{b.params['http_port']}/sim/inject",
                                                          data=packet, method="POST"), timeout=5).read()
    assert spin_until(ros_node, lambda: w.count("bad_channel") == 24, 10), str({k: v for k, v in w.diag.items() if v != "0"})
    n = len(w.frames)
    assert spin_until(ros_node, lambda: len(w.frames) > n + 50, 10), w.diag
    assert w.diag["connection"] == "streaming" and w.count("reader_error") == 0 and w.count("unexpected_error") == 0
    assert not [m for m in w.frames if bytes(m.transmitter_mac) == FORGED_MAC]
    assert b.node.poll() is None


def test_strangers_junk_does_not_hide_a_silent_board(ros_node, board):
    b, w, port = streaming_board(ros_node, board, 23)
    os.killpg(b.sim.pid, signal.SIGSTOP)          # the board goes silent ...
    stranger = Stranger(port, [b"junk" * 10], 10)  # ... while a stranger keeps talking
    try:
        assert spin_until(ros_node, lambda: w.count("silence") == 1, 15), w.diag
        assert w.count("foreign_source") > 0
    finally:
        stranger.stop()
        os.killpg(b.sim.pid, signal.SIGCONT)
    assert spin_until(ros_node, lambda: w.count("reconnects") >= 1 and w.diag.get("connection") == "streaming", 30), w.diag
    n = len(w.frames)
    assert spin_until(ros_node, lambda: len(w.frames) > n + 20, 20)
    assert w.count("silence") == 1                 # one event, counted once
    assert b.node.poll() is None


def test_a_flood_of_large_fragments_costs_no_memory(ros_node, board):
    b, w, port = streaming_board(ros_node, board, 24)
    before = rss_kb(b.node.pid)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((STRANGER, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    for uid in range(1, 3001):
        frag = (0xDECAFBAD).to_bytes(4, "little") + uid.to_bytes(4, "little") + (60_000).to_bytes(2, "little") \
            + bytes([0, 255]) + b"z" * 60_000 + bytes(8)
        sock.sendto(frag, ("127.0.0.1", port))
        if uid % 100 == 0:
            time.sleep(0.01)
    sock.close()
    assert spin_until(ros_node, lambda: w.count("foreign_source") > 0, 10)
    spin_until(ros_node, lambda: False, 2.0)
    grown_mb = (rss_kb(b.node.pid) - before) / 1024
    print(f"3,000 fragments of 60 kB from a stranger: board_node RSS {before / 1024:.0f} MB -> "
          f"{before / 1024 + grown_mb:.0f} MB, foreign_source {w.count('foreign_source')}")
    assert grown_mb < 16, f"board_node grew by {grown_mb:.1f} MB"   # the receive buffer is the bound
    n = len(w.frames)
    assert spin_until(ros_node, lambda: len(w.frames) > n + 20, 10)
    assert b.node.poll() is None


def test_kernel_drops_are_counted_when_the_driver_stalls(ros_node, board):
    b, w, _ = streaming_board(ros_node, board, 25, "--rate", "500", receive_buffer=65536)
    spin_until(ros_node, lambda: False, 1.5)
    before = w.count("kernel_drops")               # a 64 KiB buffer may overflow now and then already
    os.killpg(b.node.pid, signal.SIGSTOP)          # the driver stalls 1.5 s; the board keeps sending
    time.sleep(1.5)                                # 6,000 datagrams
    os.killpg(b.node.pid, signal.SIGCONT)
    assert spin_until(ros_node, lambda: w.count("kernel_drops") > before + 1000, 10), (before, w.diag)
    assert spin_until(ros_node, lambda: w.count("frames_missed") > 0, 5), w.diag
    spin_until(ros_node, lambda: False, 2.0)
    print(f"driver stalled 1.5 s at 500 frames/s with a 64 KiB buffer: kernel_drops {before} -> "
          f"{w.count('kernel_drops')}, frames_missed {w.count('frames_missed')}, incomplete_frame "
          f"{w.count('incomplete_frame')}, frames_out_of_order {w.count('frames_out_of_order')}")
    assert b.node.poll() is None


def test_swarm_text_with_out_of_range_numbers_leaves_the_node_publishing(ros_node, processes):
    port, frames, diag = udp_swarm_node(ros_node, processes, "/hostile", channel=6)
    good = text_line()
    hostile = [good.replace(b"[3 ", b"[40000 "), good.replace(b",1000,", b"," + b"9" * 309 + b","),
               good.replace(b",-91,", b",-99999999999,"), good.replace(b"[3 ", b"[" + b"7" * 400 + b" ")]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data in hostile + [good]:
        sock.sendto(data, ("127.0.0.1", port))
        time.sleep(0.01)
    assert spin_until(ros_node, lambda: diag.count("bad_value") == 2 and diag.count("bad_field") == 2
                      and len(frames) >= 1, 10), diag.values
    for _ in range(5):
        sock.sendto(good, ("127.0.0.1", port))
    assert spin_until(ros_node, lambda: len(frames) >= 6, 10), diag.values
    assert diag.count("unexpected_error") == 0 and diag.count("reader_error") == 0
    assert diag.values["source"] == "receiving"


def test_swarm_allowlist_drops_strangers_before_parsing(ros_node, processes):
    port, frames, diag = udp_swarm_node(ros_node, processes, "/allow", udp_host="0.0.0.0", channel=6,
                                        allow="['127.0.0.1']")
    good = text_line()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((STRANGER, 0))
    for _ in range(50):
        stranger.sendto(good, ("127.0.0.1", port))
    friend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    friend.bind(("127.0.0.1", 0))
    for _ in range(5):
        friend.sendto(good, ("127.0.0.1", port))
        time.sleep(0.01)
    assert spin_until(ros_node, lambda: diag.count("foreign_source") == 50 and len(frames) == 5, 10), \
        (diag.values, len(frames))
    assert all(f.source_id.startswith("udp:127.0.0.1:") for f in frames)


def test_endless_serial_line_costs_linear_time_and_bounded_memory(ros_node, processes, tmp_path):
    link_path = tmp_path / "ttyHOSTILE"
    master, slave = pty.openpty()
    link_path.symlink_to(os.ttyname(slave))
    proc = processes.start_node({"transport": "serial", "serial_port": str(link_path), "baud": 921600,
                                 "node_name": "esp_h", "channel": 6}, "/endless", "swarm_node")
    frames, diag = [], Diag(ros_node, "/endless")
    ros_node.create_subscription(CsiArray, "/endless/csi", frames.append, 100)
    assert spin_until(ros_node, lambda: diag.values.get("source") == "receiving"
                      and ros_node.count_publishers("/endless/csi") >= 1, 20), diag.values
    spin_until(ros_node, lambda: False, 0.5)
    before, cpu_before = rss_kb(proc.pid), cpu_s(proc.pid)
    writer_done = threading.Event()

    def write() -> None:
        chunk = b"7" * 65536
        for _ in range(15 * 16):                      # 15 MB without a newline
            os.write(master, chunk)
        writer_done.set()

    threading.Thread(target=write, daemon=True).start()
    assert spin_until(ros_node, writer_done.is_set, 120), "the node did not drain 15 MB"
    os.write(master, b"\n" + (text_line() + b"\n") * 3)
    assert spin_until(ros_node, lambda: len(frames) >= 3 and diag.count("line_too_long") == 1, 20), diag.values
    grown_mb = (rss_kb(proc.pid) - before) / 1024
    assert grown_mb < 8, f"swarm_node grew by {grown_mb:.1f} MB"
    cpu = cpu_s(proc.pid) - cpu_before
    print(f"15 MB without a newline: swarm_node CPU {cpu:.2f} s, RSS +{grown_mb:.1f} MB, "
          f"line_too_long {diag.count('line_too_long')}")
    assert cpu < 10, f"{cpu:.1f} s of CPU for 15 MB (a quadratic buffer took 52 s for 8 MB)"
    os.close(master)
    os.close(slave)


def test_ctrl_c_while_frames_flow_is_clean(ros_node, board, processes):
    """The receive threads stop publishing before the context goes away: no traceback, exit 0."""
    for seed in (41, 42, 43):
        b = board(("--seed", str(seed), "--rate", "500"), {"calibration.policy": "none"}, namespace=f"cc{seed}")
        w = Watch(ros_node, b.ns)
        assert spin_until(ros_node, lambda: len(w.frames) > 50, 20)
        os.killpg(b.node.pid, signal.SIGINT)
        assert b.node.wait(timeout=15) == 0
        log = processes.log_of(b.node)
        assert "Traceback" not in log and "RCLError" not in log, log[-2000:]
