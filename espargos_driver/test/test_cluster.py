"""Clustering policy: duplicates, collisions, incomplete frames, timeouts, bounded memory."""
from collections import Counter

import numpy as np
import pytest

from espargos_driver.cluster import FrameClusterer
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import SimulatedBoard
from espargos_driver.sim.scenario import Scenario
from espargos_driver.protocol.gen3 import parse_csi_message, split_sensor_packet


def reports_of_frames(n_frames: int, seed=1):
    board = SimulatedBoard(Scenario(seed=seed, frame_rate_hz=100))
    board.start(0.0)
    packets = []
    for k in range(n_frames):
        packets += board.packets_due(k / 100 + 1e-6)
    reports = []
    for pkt in packets:
        [frag] = split_sensor_packet(pkt)
        reports.append(parse_csi_message(frag.payload, frag.uid >> 29))
    return reports


def test_complete_frame_is_emitted_once_all_antennas_reported():
    counters = Counter()
    cl = FrameClusterer(counters)
    reports = reports_of_frames(1)
    assert len(reports) == 8
    out = [cl.add(r, 0.0) for r in reports]
    assert out[:7] == [None] * 7 and out[7] is not None
    frame = out[7]
    assert frame.mask.all() and frame.csi.shape == (1, 2, 4, 117) and np.isfinite(frame.csi).all()


def test_duplicates_ignored_and_collisions_dropped():
    counters = Counter()
    cl = FrameClusterer(counters)
    a = reports_of_frames(1, seed=1)
    b = reports_of_frames(1, seed=2)          # same keys (MAC, seq 0), different data
    cl.add(a[0], 0.0)
    cl.add(a[0], 0.0)
    cl.add(b[0], 0.0)
    assert counters["duplicate_report"] == 1 and counters["collision"] == 1


@pytest.mark.parametrize("required,emitted", [(8, False), (7, True)])
def test_incomplete_frame_policy(required, emitted):
    counters = Counter()
    cl = FrameClusterer(counters, antennas_required=required, frame_timeout_s=0.05)
    for r in reports_of_frames(1)[:7]:
        assert cl.add(r, 0.0) is None
    assert cl.expire(0.04) == []
    out = cl.expire(0.06)
    if emitted:
        [frame] = out
        assert frame.mask.sum() == 7 and counters["partial_frame"] == 1
        missing = ~frame.mask
        assert np.isnan(frame.csi[missing]).all() and np.isnan(frame.rssi_dbm[missing]).all()
    else:
        assert out == [] and counters["incomplete_frame"] == 1


def test_memory_is_bounded():
    counters = Counter()
    cl = FrameClusterer(counters, max_pending=10)
    for r in [r for r in reports_of_frames(30) if r.antenna_id == 0]:
        cl.add(r, 0.0)
    assert counters["evicted_frame"] == 20


def test_receiver_counts_garbage_and_keeps_going():
    receiver = BoardReceiver(FrameClusterer(Counter()))
    assert receiver.feed(b"\x01\x02", 0.0) == []
    assert receiver.feed(b"\xad\xfb\xca\xde" + b"\x05", 0.0) == []
    assert receiver.counters["bad_magic"] == 1 and receiver.counters["truncated"] == 1


def test_antennas_required_must_fit_the_array():
    with pytest.raises(ValueError, match="antennas_required must be 1..8"):
        FrameClusterer(Counter(), antennas_required=9)


def test_undecodable_frame_is_counted_without_losing_the_others():
    counters = Counter()
    cl = FrameClusterer(counters, antennas_required=7, frame_timeout_s=0.05)
    first, second = reports_of_frames(2)[:8], reports_of_frames(2)[8:]
    for r in first[:7]:
        r.csi = r.csi[:100]                      # too short for HT40
        cl.add(r, 0.0)
    for r in second[:7]:
        cl.add(r, 0.01)
    [frame] = cl.expire(0.1)                     # the broken frame is dropped, the other one survives
    assert frame.key[2] == second[0].key[2]
    assert counters["short_csi"] == 1 and counters["partial_frame"] == 1


def test_open_frames_are_bounded_in_bytes():
    counters = Counter()
    cl = FrameClusterer(counters, max_bytes=50_000)
    first = [r for r in reports_of_frames(200) if r.antenna_id == 0]
    for r in first:
        r.raw = b"x" * 1000
        cl.add(r, 0.0)
        assert cl.pending_bytes <= 50_000
    assert counters["evicted_frame"] == len(first) - 50
