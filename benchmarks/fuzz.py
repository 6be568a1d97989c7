#!/usr/bin/env python3
"""Seeded, structure-aware fuzzing of every parser family through the full receive path.

Families and the path each input takes (the same code the nodes run, minus rclpy):

- ``gen3``: generation-3 sensor packets (single and fragmented messages, OTA and reference, and
  runs of alike one-fragment datagrams with a few edited, which take the batch decoder)
  -> BoardReceiver.feed_batch (framing, reassembly, TLVs, CRC) -> FrameClusterer -> Calibration.apply
  -> CsiArray message. Mutations also edit a message *before* its CRC is computed, so that
  the checks behind the CRC are reached.
- ``gen1``: generation-1 516-byte records -> BoardReceiver(generation=1) -> cluster -> CsiArray.
- ``adr018``: RuView ADR-018 binary datagrams (the project's encoder and the real captures)
  -> SwarmIngest.datagram -> CsiArray.
- ``text``: esp-csi and ESP32-CSI-Tool lines (the real captures and the project's encoder)
  -> SwarmIngest.line -> CsiArray; token-level mutations put extreme numbers in every field.

An input is *unexpected* when an exception escapes the path or a last-resort guard counts
``unexpected_error`` (a guard catching something is a bug to fix, not a handled case). A
*hang* is an input that takes longer than ``--budget-ms`` of CPU time (process time, so that a
busy machine does not turn a slow scheduling slot into a "hang"). Memory is the process RSS,
sampled every 10 % of the run.

Run: source tools/env.sh && python benchmarks/fuzz.py [--inputs 1000000] [--family gen3 ...]
The suite runs a short bounded pass (test/test_fuzz.py).
"""
from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from espargos_driver.calibration import Calibration
from espargos_driver.cluster import FrameClusterer
from espargos_driver.messages import frame_to_msg, node_frame_to_msg
from espargos_driver.protocol.constants import G1_TYPE_HEADER
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import SimulatedBoard
from espargos_driver.sim.encoder import TERMINATOR
from espargos_driver.sim.scenario import Scenario
from espargos_driver.swarm.binary import build_datagram
from espargos_driver.swarm.ingest import NodeConfig, SwarmIngest
from espargos_driver.swarm.text import classic_line
from builtin_interfaces.msg import Time

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "esp32"
FAMILIES = ("gen3", "gen1", "adr018", "text")
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 4096, 65535)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
EXTREME_NUMBERS = ("40000", "-40000", "99999999999999999999", "-9" * 30, "1" * 309, "0", "-1", "255", "256",
                   "65536", "4294967296", "18446744073709551616", "1e309", "nan", "", " ", "0x10", "+7", "٣")
STAMP = Time()


# --- seeds -----------------------------------------------------------------------------
def _gen3_messages(seed: int) -> list[bytes]:
    """Whole CSI messages (before packetisation) of every format, OTA and reference."""
    out = []
    for fmt, secondary in (("ht40", 1), ("ht40", -1), ("ht20", 0), ("lltf", 0), ("he20", 0)):
        scenario = Scenario.from_dict({"format": fmt, "secondary": secondary, "seed": seed})
        board = SimulatedBoard(scenario)
        board.start(0.0)
        packets = board.packets_due(0.015)
        board.rfswitch = 1
        packets += board.packets_due(0.04)
        for packet in packets:
            uid, size = struct.unpack_from("<IH", packet, 4)
            out.append((uid, packet[12:12 + size]))
    return out


def _g1_record(esp_num: int, rng: random.Random) -> bytes:
    words = [0] * 9
    words[0] = (-55) & 0xFF
    words[1] = 0x80 if rng.random() < 0.5 else 0
    words[2] = (6 << 16) | (rng.choice((0, 1, 2)) << 20) | (rng.randrange(128) << 24)
    words[7] = (-92) & 0xFF
    buf = bytearray(512)
    struct.pack_into("<I", buf, 0, G1_TYPE_HEADER)
    struct.pack_into("<9I", buf, 4, *words)
    struct.pack_into("<6s6sHIBB", buf, 40, b"\x02\x00\x00\x00\x00\x01", b"\xff" * 6, 7 << 4, 1234, 0, 0)
    buf[60:444] = bytes(rng.randrange(-60, 60) & 0xFF for _ in range(384))
    struct.pack_into("<Q", buf, 444, 5_000_000)
    return struct.pack("<I", esp_num) + bytes(buf)


def _adr018_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = [build_datagram(1, 7, 2437, -50, -92, rng.integers(-40, 40, 2 * n), flags=f, sensor_time_us=t, transmitter_mac=m)
           for n in (64, 128, 192) for f in (0, 0x01, 0x20) for t in (None, 123456) for m in (None, b"\x02\x00\x00\x00\x00\x02")]
    path = DATA / "ruview_pretrain_esp32s3.csi.jsonl"
    if path.exists():
        for line in path.read_text().splitlines()[:200]:
            record = json.loads(line)
            if record.get("type") == "raw_csi":
                values = np.frombuffer(bytes.fromhex(record["iq_hex"]), np.int8)
                out.append(build_datagram(record["node_id"], 1, 2437, -50, -90, values))
    return out


def _text_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = [classic_line(5, "aa:bb:cc:dd:ee:ff", -50, -91, 6, s, 1000, rng.integers(-30, 30, n)).rstrip(b"\n")
           for s, n in ((0, 128), (1, 384), (2, 256), (0, 256))]
    for name in ("esp-csi_ht20-stbc_with-head.csv", "esp-csi_console-test_ht40-below.csv", "esp32-csi-tool_example.csv"):
        path = DATA / name
        if path.exists():
            out += path.read_bytes().splitlines()[:60]
    return out


# --- mutation --------------------------------------------------------------------------
def mutate_bytes(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One to four random byte-level mutations."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING_8)
        elif op == 2 and n >= 2:
            struct.pack_into("<H", buf, rng.randrange(n - 1), rng.choice(INTERESTING_16))
        elif op == 3 and n >= 4:
            struct.pack_into("<I", buf, rng.randrange(n - 3), rng.choice(INTERESTING_32))
        elif op == 4:
            del buf[rng.randrange(n + 1):]
        elif op == 5:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 6 and n:
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 64))
            buf[a:a] = buf[a:b]
        elif op == 7 and others:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:rng.randrange(n + 1)] + other[cut:]
        elif op == 8 and n:
            a = rng.randrange(n)
            del buf[a:a + rng.randint(1, 32)]
    return bytes(buf)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<BHI", 255, 4, zlib.crc32(body))


def magic_packet(uid: int, message: bytes) -> bytes:
    """A sensor packet carrying ``message`` whole, as one fragment."""
    return struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", uid, len(message), 0, 1) + message + TERMINATOR


def _packets(uid: int, message: bytes, rng: random.Random) -> list[bytes]:
    size = rng.choice((0, 0, 64, 150, 700))
    magic = struct.pack("<I", 0xDECAFBAD)
    if size == 0 or len(message) <= size:
        return [magic_packet(uid, message)]
    chunks = [message[i:i + size] for i in range(0, len(message), size)]
    return [magic + struct.pack("<IHBB", uid, len(c), i, len(chunks)) + c + TERMINATOR for i, c in enumerate(chunks)]


def mutate_text(line: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """Token-level: extreme numbers in fields, fields dropped or repeated; sometimes bytes too."""
    if rng.random() < 0.25:
        return mutate_bytes(line, rng, others)
    head, bracket, rest = line.partition(b"[")
    fields = head.split(b",")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        if op == 0 and fields:
            fields[rng.randrange(len(fields))] = rng.choice(EXTREME_NUMBERS).encode()
        elif op == 1 and len(fields) > 1:
            del fields[rng.randrange(len(fields))]
        elif op == 2 and fields:
            fields.insert(rng.randrange(len(fields)), rng.choice(fields))
        elif op == 3 and bracket:
            values = rest.split(b"]")[0].replace(b",", b" ").split()
            if values:
                values[rng.randrange(len(values))] = rng.choice(EXTREME_NUMBERS).encode() or b"0"
                rest = b" ".join(values) + b"]" + rest.split(b"]", 1)[-1] if b"]" in rest else b" ".join(values)
    return b",".join(fields) + bracket + rest


# --- families: inputs and the path they take --------------------------------------------
@dataclass
class Family:
    name: str
    inputs: Callable[[random.Random], Iterator[list[bytes]]]
    """Yields groups of datagrams/lines; one group is one fuzz input."""
    run: Callable[[list[bytes], float], int]
    """Feeds one group through the whole path at host time ``now``; returns messages built."""
    counters: Counter = field(default_factory=Counter)


def _board_path(generation: int) -> tuple[Callable[[list[bytes], float], int], Counter]:
    counters: Counter = Counter()
    clusterer = FrameClusterer(counters, antennas_required=1, frame_timeout_s=0.01)
    receiver = BoardReceiver(clusterer, generation=generation)
    calibration = Calibration(channel=6, secondary=1, array_id="fuzz", phase_rad=np.zeros((1, 2, 4)),
                              time_s=np.zeros((1, 2, 4)), reference_delay_s=np.zeros(1), residual_deg=0.0,
                              frames_used=1)

    def run(group: list[bytes], now: float) -> int:
        frames = receiver.feed_batch([(packet, now, None) for packet in group])       # as the receive loop hands them over
        frames += receiver.expire(now + 0.02)
        for frame in frames:
            if (frame.channel, frame.secondary) == (calibration.channel, calibration.secondary):
                calibration.apply(frame)
            frame_to_msg(frame, STAMP, "fuzz", "fuzz")
        return len(frames)

    return run, counters


def _swarm_path(kind: str) -> tuple[Callable[[list[bytes], float], int], Counter]:
    counters: Counter = Counter()
    ingest = SwarmIngest(counters, NodeConfig("esp32", 0, 6))

    def run(group: list[bytes], now: float) -> int:
        built = 0
        for i, data in enumerate(group):
            if kind == "adr018":
                frames = ingest.datagram(data, f"udp:127.0.0.{1 + i % 3}:5005", now)
            else:
                frame = ingest.line(data, "fuzz-serial", now)
                frames = [frame] if frame is not None else []
            for frame in frames:
                node_frame_to_msg(frame, STAMP, "fuzz")
                built += 1
        ingest.lost(now, 5.0)
        return built

    return run, counters


def build_family(name: str, seed: int) -> Family:
    if name == "gen3":
        messages = _gen3_messages(seed)
        bodies = [(uid, m[:-7]) for uid, m in messages]
        raw = [p for uid, m in messages for p in _packets(uid, m, random.Random(seed))]

        def inputs(rng: random.Random) -> Iterator[list[bytes]]:
            while True:
                uid, body = rng.choice(bodies)
                kind = rng.randrange(4)
                if kind == 0:      # edit behind the CRC, then packetise
                    message = _with_crc(mutate_bytes(body, rng, [b for _, b in bodies]))
                    uid = rng.choice((uid, uid ^ (1 << rng.randrange(32))))
                    yield _packets(uid, message, rng)
                elif kind == 1:    # edit the packets themselves (framing, fragments)
                    packets = _packets(uid, _with_crc(body), rng)
                    i = rng.randrange(len(packets))
                    packets[i] = mutate_bytes(packets[i], rng, raw)
                    yield packets
                elif kind == 3:    # a run of alike one-fragment datagrams (decoded together), some edited
                    message = _with_crc(body)
                    packets = [magic_packet(uid ^ (k << 29) if k < 8 else uid, message) for k in range(rng.randint(16, 32))]
                    for i in rng.sample(range(len(packets)), rng.randint(1, 3)):
                        packets[i] = magic_packet(uid, _with_crc(mutate_bytes(body, rng, [b for _, b in bodies]))) \
                            if rng.random() < 0.5 else mutate_bytes(packets[i], rng, raw)
                    yield packets
                else:              # a burst of fragments of several messages, some lost or repeated
                    packets = [p for _ in range(rng.randint(2, 8)) for p in _packets(*rng.choice(bodies)[:1],
                               _with_crc(rng.choice(bodies)[1]), rng)]
                    rng.shuffle(packets)
                    yield packets[:rng.randint(1, len(packets))] + rng.sample(packets, min(2, len(packets)))
        run, counters = _board_path(3)
        return Family(name, inputs, run, counters)
    if name == "gen1":
        rng0 = random.Random(seed)
        records = [_g1_record(e, rng0) for e in range(8)]

        def inputs(rng: random.Random) -> Iterator[list[bytes]]:
            while True:
                message = b"".join(rng.sample(records, rng.randint(1, 8)))
                yield [mutate_bytes(message, rng, records)]
        run, counters = _board_path(1)
        return Family(name, inputs, run, counters)
    if name == "adr018":
        seeds = _adr018_seeds()

        def inputs(rng: random.Random) -> Iterator[list[bytes]]:
            while True:
                yield [mutate_bytes(rng.choice(seeds), rng, seeds) for _ in range(rng.randint(1, 3))]
        run, counters = _swarm_path("adr018")
        return Family(name, inputs, run, counters)
    if name == "text":
        seeds = _text_seeds()
        headers = [s for s in seeds if s.startswith(b"type,")]

        def inputs(rng: random.Random) -> Iterator[list[bytes]]:
            while True:
                group = [mutate_text(rng.choice(seeds), rng, seeds) for _ in range(rng.randint(1, 3))]
                if headers and rng.random() < 0.1:
                    group.insert(0, mutate_text(rng.choice(headers), rng, seeds))
                yield group
        run, counters = _swarm_path("text")
        return Family(name, inputs, run, counters)
    raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")


# --- the run ---------------------------------------------------------------------------
@dataclass
class FuzzResult:
    family: str
    inputs: int
    messages: int
    unexpected: int
    sites: Counter
    hangs: int
    max_ms: float
    rss_mb: list[float]
    counters: Counter
    seconds: float

    def line(self) -> str:
        rss = f"{self.rss_mb[0]:.0f}->{max(self.rss_mb):.0f}->{self.rss_mb[-1]:.0f} MB"
        return (f"{self.family:7s} inputs {self.inputs:>9,d}  messages {self.messages:>8,d}  unexpected "
                f"{self.unexpected}  hangs {self.hangs}  slowest {self.max_ms:.1f} ms  RSS {rss}  "
                f"{self.inputs / max(self.seconds, 1e-9):,.0f}/s")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def fuzz(name: str, inputs: int, seed: int = 1, budget_ms: float = 100.0) -> FuzzResult:
    """Run ``inputs`` mutated inputs of family ``name``; never raises for what an input does."""
    family = build_family(name, seed)
    rng = random.Random(seed)
    source = family.inputs(rng)
    sites: Counter = Counter()
    unexpected = hangs = built = 0
    slowest = 0.0
    rss = [_rss_mb()]
    start = time.perf_counter()
    now = 1000.0
    for i in range(inputs):
        group = next(source)
        now += 0.001
        guard_before = family.counters["unexpected_error"]
        t0 = time.process_time()
        try:
            built += family.run(group, now)
        except Exception as err:  # noqa: BLE001 - the point of a fuzzer: record whatever escapes
            unexpected += 1
            frame = traceback.extract_tb(err.__traceback__)[-1]
            sites[f"{type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}"] += 1
        elapsed_ms = (time.process_time() - t0) * 1e3
        if family.counters["unexpected_error"] > guard_before:
            unexpected += 1
            sites["counted by a last-resort guard"] += 1
        slowest = max(slowest, elapsed_ms)
        hangs += elapsed_ms > budget_ms
        if inputs >= 10 and (i + 1) % (inputs // 10) == 0:
            rss.append(_rss_mb())
    return FuzzResult(name, inputs, built, unexpected, sites, hangs, slowest, rss, family.counters,
                      time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=20_000, help="inputs per family (default 20000)")
    p.add_argument("--family", action="append", choices=FAMILIES, help="repeatable; default: all")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget-ms", type=float, default=100.0, help="an input taking more CPU time than this is a hang")
    args = p.parse_args()
    failed = False
    for name in args.family or FAMILIES:
        result = fuzz(name, args.inputs, args.seed, args.budget_ms)
        print(result.line(), flush=True)
        for site, n in result.sites.most_common(10):
            print(f"    {n:>7d} x {site}")
        top = ", ".join(f"{k}={v}" for k, v in result.counters.most_common(12))
        print(f"    counters: {top}")
        failed |= bool(result.unexpected or result.hangs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
