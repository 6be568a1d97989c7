"""Clustering policy: duplicates, collisions, incomplete frames, timeouts, bounded memory."""
from collections import Counter
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest

from espargos_driver.cluster import FrameClusterer
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import SimulatedBoard
from espargos_driver.sim.scenario import Scenario
from espargos_driver.protocol.csi_formats import decode_csi, report_decoding
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


def distinct_per_antenna(reports):
    """The reports with per-antenna values that differ between antennas and frames (the simulator
    gives every antenna of a frame the same gains)."""
    out = []
    for k, r in enumerate(reports):
        rx = replace(r.rx, rssi_dbm=-20 - k % 50, noise_floor_dbm=-80 - k % 17, rx_gain_db=float(k % 30),
                     fft_gain_db=0.25 * (k % 13), cfo_low_rate=k, cfo_high_rate=k, rate=0, sig_mode=0)
        out.append(replace(r, rx=rx, timestamp_ns=10**9 + 1000 * k))
    return out


def assert_per_antenna_values_in_place(frame, reports):
    """Each report's CSI (decoded alone: the STO removal is per sensor), sensor time, RSSI, noise
    floor, gains and CFO sit at its antenna's (board, row, col)."""
    for r in reports:
        place = (r.board, r.row, r.col)
        assert frame.mask[place]
        np.testing.assert_array_equal(frame.csi[place], decode_csi(report_decoding(r), [r])[0])
        assert frame.timestamps_ns[place] == r.timestamp_ns
        assert (frame.rssi_dbm[place], frame.noise_floor_dbm[place]) == (r.rx.rssi_dbm, r.rx.noise_floor_dbm)
        assert (frame.rx_gain_db[place], frame.fft_gain_db[place]) == (r.rx.rx_gain_db, r.rx.fft_gain_db)
        assert frame.cfo_hz[place] == pytest.approx(r.rx.cfo_hz, rel=1e-6)


def test_per_antenna_values_land_at_their_antenna_on_every_build_path():
    """Complete frames (decoded in groups: of one frame, of four) and a partial frame with a mask
    (built one by one) carry each antenna's own values."""
    reports = distinct_per_antenna(reports_of_frames(6))
    order = [5, 2, 7, 0, 3, 6, 1, 4]                    # arrival order of the antennas, not board order
    frames = [[reports[8 * k + i] for i in order] for k in range(6)]
    alone = FrameClusterer(Counter())
    [single] = [f for f in (alone.add(r, 0.0) for r in frames[0]) if f is not None]
    assert_per_antenna_values_in_place(single, frames[0])
    grouped = FrameClusterer(Counter()).add_many([(r, 0.0, None) for f in frames[1:5] for r in f])
    assert len(grouped) == 4
    for frame, frame_reports in zip(grouped, frames[1:5]):
        assert_per_antenna_values_in_place(frame, frame_reports)
    partial = FrameClusterer(Counter(), antennas_required=5)
    for r in frames[5][:6]:
        partial.add(r, 0.0)
    [masked] = partial.expire(1.0)
    assert_per_antenna_values_in_place(masked, frames[5][:6])
    assert masked.mask.sum() == 6 and np.isnan(masked.rssi_dbm[~masked.mask]).all()


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


def _mixed_report_stream(seed: int) -> list:
    """Reports of HT40, HT20, L-LTF and HE20 frames, one transmitter each, shuffled within a window,
    with hostile ones mixed in: short CSI, a foreign format inside a frame, secondary-channel codes
    that disagree within a frame or between frames of one format, and duplicates."""
    rng = np.random.default_rng(seed)
    streams = []
    for k, fmt in enumerate(("ht40", "ht20", "lltf", "he20")):
        scenario = Scenario.from_dict({"seed": seed + k, "format": fmt, "secondary": 0 if fmt in ("ht20", "he20") else 1,
                                       "transmitters": [{"mac": f"02:00:00:00:00:0{k + 1}"}]})
        board = SimulatedBoard(scenario)
        board.start(0.0)
        packets = []
        for t in range(12):
            packets += board.packets_due(t / 100 + 1e-6)
        streams.append([parse_csi_message(f.payload, f.uid >> 29) for p in packets for f in split_sensor_packet(p)])
    reports = [r for stream in streams for r in stream]
    for r in rng.choice(reports, 6, replace=False):
        r.csi = r.csi[:50]                                         # too short for its format
    for r in rng.choice(reports, 4, replace=False):
        r.rx = replace(r.rx, secondary_code=2)                     # disagrees with its frame
    for r in streams[2][16:32]:
        r.rx = replace(r.rx, secondary_code=2)                     # two whole L-LTF frames below, not above
    ht20 = streams[1]
    for r in rng.choice(streams[0], 4, replace=False):              # an HT20 report's bytes in an HT40 frame
        donor = ht20[int(rng.integers(len(ht20)))]
        r.csi, r.rx = donor.csi, replace(donor.rx, channel=r.rx.channel)
    reports += [reports[int(i)] for i in rng.integers(len(reports), size=10)]         # duplicates
    order = np.argsort(np.arange(len(reports)) + rng.uniform(0, 40, len(reports)))    # local shuffle
    return [reports[int(i)] for i in order]


def _frame_fields(frame) -> tuple:
    return (frame.key, frame.format, frame.channel, frame.secondary, frame.is_reference, frame.csi.tobytes(),
            frame.mask.tobytes(), frame.timestamps_ns.tobytes(), frame.rssi_dbm.tobytes(), frame.noise_floor_dbm.tobytes(),
            frame.rx_gain_db.tobytes(), frame.fft_gain_db.tobytes(), frame.cfo_hz.tobytes(), frame.completed_at)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [8, 64])
def test_frames_built_in_batches_equal_frames_built_one_at_a_time(seed, batch):
    """add_many decodes complete frames of one format together; it must give exactly what add
    gives one report at a time, counters included, on a stream with broken and foreign reports."""
    reports = _mixed_report_stream(seed)
    one, many = Counter(), Counter()
    single, batched = FrameClusterer(one), FrameClusterer(many)
    expected = [f for k, r in enumerate(reports) if (f := single.add(r, k * 1e-4, 1.0)) is not None]
    got = []
    for start in range(0, len(reports), batch):
        got += batched.add_many([(r, k * 1e-4, 1.0) for k, r in enumerate(reports[start:start + batch], start)])
    assert len(expected) > 20 and one["format_mismatch"] > 0 and one["short_csi"] > 0
    assert [_frame_fields(f) for f in got] == [_frame_fields(f) for f in expected]
    assert many == one


def _hostile_datagrams(seed: int) -> list[bytes]:
    """A board's datagrams with every simulator fault on, plus bytes flipped at random (some with
    the CRC recomputed so that the change reaches the fields), HE20 frames of another length, and
    reference frames: most runs are alike, enough to take the batch path."""
    rng = np.random.default_rng(seed)
    faults = {"truncate": 0.01, "bad_magic": 0.01, "bad_crc": 0.01, "unknown_tlv": 0.01, "repeat_fragment": 0.01}
    packets = []
    for fmt in ("ht40", "he20"):
        board = SimulatedBoard(Scenario.from_dict({"seed": seed, "format": fmt, "secondary": 1 if fmt == "ht40" else 0,
                                                   "frame_rate_hz": 200, "faults": faults,
                                                   "transmitters": [{"mac": f"02:00:00:00:00:{len(packets) % 256:02x}"}]}))
        board.start(0.0)
        for t in range(60):
            board.rfswitch = 1 if t % 10 == 0 else 2                 # now and then a reference frame
            packets += board.packets_due(t / 200 + 1e-6)
    for k, value in zip(rng.choice(len(packets), 12, replace=False), [0, 15, 200, 0x0300, 0x0003] * 3):
        packets[k] = _with_rx_ctrl_word7(packets[k], value)          # no WiFi channel, no secondary code
    for k in rng.choice(len(packets), len(packets) // 20, replace=False):
        corrupt = bytearray(packets[k])
        corrupt[int(rng.integers(len(corrupt)))] ^= 1 << int(rng.integers(8))
        if rng.random() < 0.5:
            end = len(corrupt) - 8 - 7
            corrupt[end + 3:end + 7] = struct.pack("<I", zlib.crc32(bytes(corrupt[12:end])))
        packets[k] = bytes(corrupt)
    return packets


def _with_rx_ctrl_word7(packet: bytes, value: int) -> bytes:
    """A one-fragment sensor packet with rx_ctrl word 7 (channel, secondary code) set to ``value``
    and the CRC recomputed (unchanged if the packet has no raw rx_ctrl)."""
    message, pos = bytearray(packet[12:-8]), 4
    while pos + 3 <= len(message):
        kind, length = struct.unpack_from("<BH", message, pos)
        if kind == 5 and length == 64:
            struct.pack_into("<I", message, pos + 3 + 28, value)
        if kind == 255:
            struct.pack_into("<I", message, pos + 3, zlib.crc32(bytes(message[:pos])))
            break
        pos += 3 + length
    return packet[:12] + bytes(message) + packet[-8:]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bounds", [{}, {"max_pending": 4, "max_bytes": 12_000}], ids=["roomy", "evicting"])
def test_datagrams_decoded_together_give_what_one_at_a_time_gives(seed, bounds):
    """The receive loop hands over up to 64 datagrams at once and runs of alike ones are decoded
    with numpy (gen3_batch); frames and every counter must equal those of feeding one datagram
    at a time, on a stream with faults and corrupt bytes, also where open frames are evicted."""
    packets = _hostile_datagrams(seed)
    single, batched = BoardReceiver(FrameClusterer(Counter(), **bounds)), BoardReceiver(FrameClusterer(Counter(), **bounds))
    expected = [f for k, p in enumerate(packets) for f in single.feed(p, k * 1e-5, 1.0)]
    got = []
    for start in range(0, len(packets), 64):
        got += batched.feed_batch([(p, k * 1e-5, 1.0) for k, p in enumerate(packets[start:start + 64], start)])
    assert len(expected) > 50 and single.counters["bad_crc"] > 0 and single.counters["bad_channel"] >= 8
    assert single.counters["evicted_frame" if bounds else "format_mismatch"] > 0
    assert [_frame_fields(f) for f in got] == [_frame_fields(f) for f in expected]
    assert batched.counters == single.counters
    assert batched.counters["unexpected_error"] == 0


def test_runs_of_alike_datagrams_are_decoded_together():
    """gen3_batch takes every clean datagram of a run (else the equality test above proves nothing)."""
    from espargos_driver.protocol.gen3_batch import BatchDecoder
    board = SimulatedBoard(Scenario(seed=1, frame_rate_hz=100))
    board.start(0.0)
    packets = [p for t in range(8) for p in board.packets_due(t / 100 + 1e-6)]
    reports = BatchDecoder().decode(packets)
    assert len(packets) == 64 and all(r is not None for r in reports)
    for packet, report in zip(packets, reports):
        [fragment] = split_sensor_packet(packet)
        assert report == parse_csi_message(fragment.payload, fragment.uid >> 29)
