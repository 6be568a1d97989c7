"""rosbag2 record and replay with the rosbags library: a real sample bag with ground truth, a
live record -> replay round trip (mcap and sqlite3) that must reproduce the live bearings exactly,
and bags that cannot be replayed as they are."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from espargos_driver.bags import STORAGES, espargos_typestore
from espargos_msgs.msg import BearingArray
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from conftest import ROOT, Processes, board_starter, executable, spin_until

SAMPLE = ROOT / "test" / "data" / "sample_bag"


def key(msg) -> tuple:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, bytes(int(b) for b in msg.transmitter_mac)


def collect(node, topic: str) -> dict:
    """BearingArray messages on ``topic`` by (stamp, MAC), once a publisher has been discovered."""
    got: dict = {}
    node.create_subscription(BearingArray, topic, lambda m: got.__setitem__(key(m), m), 1000)
    assert spin_until(node, lambda: node.count_publishers(topic) > 0, 20), f"no publisher of {topic}"
    spin_until(node, lambda: False, 0.5)
    return got


def test_sample_bag_replay_matches_ground_truth(ros_node, processes):
    truth = yaml.safe_load((ROOT / "test" / "data" / "sample_bag.truth.yaml").read_text())["scenario"]["transmitters"][0]
    assert sum(f.stat().st_size for f in SAMPLE.iterdir()) <= 5_000_000
    processes.start_node({"csi_qos": "reliable"}, "/sample", "aoa_node")
    got = collect(ros_node, "/sample/bearings")
    play = processes.start("bag_play", str(SAMPLE), "--rate", "2", "--wait-subscribers", "--delay", "1", "--ros-args",
                           "-r", "/espargos/csi:=/sample/csi", "-r", "/espargos/array_geometry:=/sample/array_geometry")
    assert spin_until(ros_node, lambda: play.poll() is not None and len(got) >= 20, 30), \
        (len(got), processes.log_of(play), processes.log_of(processes.procs[0][0]))
    assert play.returncode == 0 and "/espargos/csi: 250" in processes.log_of(play)
    errors = [np.degrees(m.bearings[0].azimuth) - truth["azimuth_deg"] for m in got.values()]
    assert len(errors) >= 20 and np.max(np.abs(errors)) < 1.0, errors


@pytest.fixture(scope="module")
def recorded(ros_context, tmp_path_factory):
    """A live chain (simulator -> driver -> aoa_node) recorded for 22 s to mcap and sqlite3 at once,
    shared by the tests that read it; the chain is stopped once the recorders are done."""
    out = tmp_path_factory.mktemp("bags")
    processes = Processes(tmp_path_factory.mktemp("record"))
    try:
        topics = [f"/rt/{t}" for t in ("csi", "array_geometry", "bearings", "spatial_spectrum")]
        recorders = [processes.start("bag_record", "-o", str(out / storage), "--storage", storage, "--duration", "22",
                                     *topics) for storage in ("mcap", "sqlite3")]
        processes.start_node({"csi_qos": "reliable"}, "/rt", "aoa_node")
        time.sleep(2.0)                                         # recorders and aoa_node discover the graph
        board_starter(processes, out)(("--azimuth", "12", "--seed", "41"), {"calibration.policy": "startup"},
                                      namespace="rt")
        for rec in recorders:
            try:
                rec.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pytest.fail("bag_record did not stop")
            assert rec.returncode == 0, processes.log_of(rec)
    finally:
        processes.stop_all()
    return out


def debug_counts(bag, processes) -> str:
    with AnyReader([bag]) as reader:
        n = sum(1 for conn, _, _ in reader.messages() if conn.topic == "/rt/csi")
    return f"{n} CSI frames in the bag; logs: " + " | ".join(processes.log_of(p)[-600:] for p, _ in processes.procs
                                                             if "aoa" in str(p.args))


@pytest.mark.parametrize("storage", sorted(STORAGES))
def test_record_replay_round_trip(recorded, storage, ros_node, processes):
    bag = recorded / storage
    # A separate, plain rosbags reader (no type registration) decodes every espargos_msgs type.
    seen, first_csi = set(), None
    with AnyReader([bag]) as reader:
        live = {}
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            seen.add(conn.msgtype)
            if conn.topic == "/rt/csi" and msg.calibrated and first_csi is None:
                first_csi = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if conn.topic == "/rt/bearings":
                live[key(msg)] = msg
                seen.update(type(b).__msgtype__ for b in msg.bearings)
    assert {"espargos_msgs/msg/CsiArray", "espargos_msgs/msg/ArrayGeometry", "espargos_msgs/msg/BearingArray",
            "espargos_msgs/msg/Bearing", "espargos_msgs/msg/SpatialSpectrum"} <= seen
    ns = f"/replay_{storage}"
    aoa = processes.start_node({"csi_qos": "reliable"}, ns, "aoa_node")
    replayed = collect(ros_node, f"{ns}/bearings")
    play = processes.start("bag_play", str(bag), "--rate", "2", "--wait-subscribers", "--delay", "1", "--topics", "/rt/csi",
                           "/rt/array_geometry", "--ros-args", "-r", f"/rt/csi:={ns}/csi",
                           "-r", f"/rt/array_geometry:={ns}/array_geometry")
    assert spin_until(ros_node, lambda: play.poll() is not None, 40), "bag_play did not finish"
    spin_until(ros_node, lambda: len(replayed) >= len(live), 3)
    assert play.returncode == 0, processes.log_of(play)
    # The live aoa_node may have seen a few frames before the recorder joined, or (on a busy machine,
    # where discovery takes longer) joined after it. A window holds no frame older than window_max_age
    # (1 s) before its newest, so from 1 s after both had started (the first recorded calibrated frame,
    # the first live bearing) every live bearing must come out again, identical.
    first_live = min(k[0] + k[1] * 1e-9 for k in live)
    comparable = [k for k in live if k[0] + k[1] * 1e-9 > max(first_csi, first_live) + 1.01]
    missing = [k for k in comparable if k not in replayed]
    assert len(comparable) >= 50 and not missing, (len(comparable), len(missing), len(replayed), processes.log_of(aoa))
    bad = [round(k[0] + k[1] * 1e-9 - first_csi, 3) for k in comparable
           if abs(live[k].bearings[0].azimuth - replayed[k].bearings[0].azimuth) > 1e-9]
    diffs = [abs(live[k].bearings[0].azimuth - replayed[k].bearings[0].azimuth) for k in comparable]
    detail = [(live[k].window_frames, replayed[k].window_frames, live[k].sources_detected, replayed[k].sources_detected,
               live[k].snapshots, replayed[k].snapshots) for k in comparable
              if abs(live[k].bearings[0].azimuth - replayed[k].bearings[0].azimuth) > 1e-9]
    assert not bad, (f"bearings differ at {bad} s after the first recorded frame (by up to {max(diffs):.3g} rad; "
                     f"live/replay window frames, sources, snapshots {detail}); {debug_counts(bag, processes)}")
    for k in comparable:
        a, b = live[k].bearings, replayed[k].bearings
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.azimuth == pytest.approx(y.azimuth, abs=1e-9) and x.azimuth_std == pytest.approx(y.azimuth_std, rel=1e-9)


def mcap_channels(path: Path) -> dict[str, dict[str, str]]:
    """Channel metadata of an uncompressed MCAP file by topic, read with this function alone (the
    MCAP record layout: opcode u8, length u64, content; chunks hold records of their own)."""
    def strings(data: bytes, pos: int) -> tuple[str, int]:
        n = int.from_bytes(data[pos:pos + 4], "little")
        return data[pos + 4:pos + 4 + n].decode(), pos + 4 + n

    def records(data: bytes):
        pos = 0
        while pos + 9 <= len(data):
            op, length = data[pos], int.from_bytes(data[pos + 1:pos + 9], "little")
            yield op, data[pos + 9:pos + 9 + length]
            pos += 9 + length

    channels: dict[str, dict[str, str]] = {}

    def visit(data: bytes) -> None:
        for op, content in records(data):
            if op == 0x04:                                          # Channel
                topic, pos = strings(content, 4)
                _, pos = strings(content, pos)                      # message encoding
                end = pos + 4 + int.from_bytes(content[pos:pos + 4], "little")
                pos += 4
                meta = {}
                while pos < end:
                    k, pos = strings(content, pos)
                    v, pos = strings(content, pos)
                    meta[k] = v
                channels[topic] = meta
            elif op == 0x06:                                        # Chunk: 3 x u64, u32 crc, compression, records
                compression, pos = strings(content, 28)
                assert compression == "", f"compressed chunk ({compression})"
                visit(content[pos + 8:])

    raw = path.read_bytes()
    assert raw[:8] == b"\x89MCAP0\r\n"
    visit(raw[8:-8])
    return channels


def test_recorded_bag_carries_what_rosbag2_jazzy_writes(recorded):
    """The type hash in every MCAP channel (read without rosbags), the ROS distro, and each
    publisher's own QoS as discovery reports it (the recorder used to write a profile of its own,
    with a zero deadline where the publishers have an infinite one)."""
    store = espargos_typestore()
    channels = mcap_channels(recorded / "mcap" / "mcap.mcap")
    assert {"/rt/csi", "/rt/array_geometry", "/rt/bearings"} <= set(channels)
    for topic, meta in channels.items():
        assert meta["topic_type_hash"].startswith("RIHS01_") and "offered_qos_profiles" in meta, (topic, meta)
    assert channels["/rt/csi"]["topic_type_hash"] == store.hash_rihs01("espargos_msgs/msg/CsiArray")
    for storage in STORAGES:
        info = yaml.safe_load((recorded / storage / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["ros_distro"] == "jazzy"
        topics = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]}
        qos = {t: m["offered_qos_profiles"] if isinstance(m["offered_qos_profiles"], list)
               else yaml.safe_load(m["offered_qos_profiles"]) for t, m in topics.items()}
        # What discovery tells about each publisher (as rosbag2 records it; the depth is not
        # discoverable): board_node's latched geometry, aoa_node's reliable volatile bearings.
        assert [(q["reliability"], q["durability"]) for q in qos["/rt/bearings"]] == [("reliable", "volatile")], \
            qos["/rt/bearings"]
        assert [q["durability"] for q in qos["/rt/array_geometry"]] == ["transient_local"], qos["/rt/array_geometry"]
        assert all(q["deadline"] == {"sec": 9223372036, "nsec": 854775807} for q in qos["/rt/bearings"])


OLD_BEARING = """uint8[6] transmitter_mac
float64 azimuth
float64 elevation
"""


def test_bags_that_cannot_be_replayed_as_they_are(tmp_path):
    store = espargos_typestore()
    store.register(get_types_from_msg("int32 value\n", "foo_msgs/msg/Thing"))
    old = get_typestore(Stores.ROS2_JAZZY)
    old.register(get_types_from_msg(OLD_BEARING, "espargos_msgs/msg/Bearing"))
    bag = tmp_path / "mixed"
    with Writer(bag, version=9, storage_plugin=STORAGES["mcap"]) as writer:
        old_conn = writer.add_connection("/x/old_bearing", "espargos_msgs/msg/Bearing", typestore=old)
        foo = writer.add_connection("/x/thing", "foo_msgs/msg/Thing", typestore=store)
        good = writer.add_connection("/x/array_geometry", "espargos_msgs/msg/ArrayGeometry", typestore=store)
        Bearing = old.types["espargos_msgs/msg/Bearing"]
        writer.write(old_conn, 1, old.serialize_cdr(Bearing(transmitter_mac=np.zeros(6, np.uint8), azimuth=0.1,
                                                            elevation=0.0), "espargos_msgs/msg/Bearing"))
        writer.write(foo, 2, store.serialize_cdr(store.types["foo_msgs/msg/Thing"](value=3), "foo_msgs/msg/Thing"))
        Geometry = store.types["espargos_msgs/msg/ArrayGeometry"]
        Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
        writer.write(good, 3, store.serialize_cdr(Geometry(header=Header(stamp=Time(sec=0, nanosec=0), frame_id="a"),
                                                           source_id="s", rows=0, cols=0, antenna_positions=[],
                                                           antenna_labels=[]), "espargos_msgs/msg/ArrayGeometry"))
    done = subprocess.run([str(executable("bag_play")), str(bag), "--rate", "0"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "recorded with another definition of espargos_msgs/msg/Bearing" in done.stderr
    assert "type foo_msgs/msg/Thing is not installed here; skipped" in done.stderr
    assert "/x/array_geometry: 1" in done.stdout and "Traceback" not in done.stderr
    only_bad = subprocess.run([str(executable("bag_play")), str(bag), "--topics", "/x/thing"], capture_output=True,
                              text=True, timeout=60)
    assert only_bad.returncode == 1 and "nothing to play" in only_bad.stderr and "Traceback" not in only_bad.stderr
    missing = subprocess.run([str(executable("bag_play")), str(tmp_path / "none")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "cannot read bag" in missing.stderr
    exists = subprocess.run([str(executable("bag_record")), "-o", str(bag)], capture_output=True, text=True, timeout=60)
    assert exists.returncode == 2 and "exists" in exists.stderr


def test_sample_bag_opens_with_a_plain_reader():
    with AnyReader([Path(SAMPLE)]) as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
        assert topics == {"/espargos/csi": 250, "/espargos/array_geometry": 1}
        conn = next(c for c in reader.connections if c.topic == "/espargos/csi")
        _, _, raw = next(reader.messages(connections=[conn]))
        msg = reader.deserialize(raw, conn.msgtype)
        assert msg.rows == 2 and msg.cols == 4 and msg.calibrated
