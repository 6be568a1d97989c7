"""Generation-3 decoding against byte vectors assembled by hand from the spec (sections 2.1-2.2.3).

Each vector is packed field by field here with struct, following the spec's tables; none is
produced by the project's simulator/encoder.
"""
import struct
import zlib

import numpy as np
import pytest

from espargos_driver.protocol.csi_formats import Decoding, decode_csi, report_decoding
from espargos_driver.protocol.errors import ProtocolError
from espargos_driver.protocol.gen3 import Reassembler, parse_csi_message, split_sensor_packet
from espargos_driver.wifi import CsiFormat

SRC = bytes.fromhex("0a0b0c0d0e0f")
DST = bytes.fromhex("ffffffffffff")


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("<BH", kind, len(value)) + value


def rx_ctrl_v3(*, rssi=-40, sig_mode=1, he_siga1=0x87, cyc=0, noise=-92, fft_gain_q=8,
               rx_gain=20, channel=6, second=1, bb=2, csi_len=234, dec=0) -> bytes:
    w = [0] * 16
    w[0] = (rssi & 0xFF) | (sig_mode << 14)
    w[1] = he_siga1
    w[2] = (cyc & 0x7F) << 24
    w[3] = 123456
    w[5] = (noise & 0xFF) | ((fft_gain_q & 0xFF) << 16) | ((rx_gain & 0xFF) << 24)
    w[7] = channel | (second << 8)
    w[8] = (dec & 0x7FF) << 8
    w[9] = (bb << 12) | (csi_len << 16) | (1 << 26)
    return struct.pack("<16I", *w)


def csi_message(csi: bytes, rx: bytes, *, seq=123, frag=0, flags=0, frame_ctrl=0x0800,
                global_us=1000, acquire_flags=0, rf_switch=2, extra=b"", rx_kind=5) -> bytes:
    body = struct.pack("<I", 0xE4CD0BAC)
    body += tlv(2, SRC + DST + struct.pack("<HHH", (seq << 4) | frag, flags, frame_ctrl))
    body += tlv(3, struct.pack("<Q", global_us))
    body += tlv(4, struct.pack("<HBB", acquire_flags, 0, rf_switch))
    body += tlv(rx_kind, rx)
    body += tlv(6, csi)
    body += extra
    return body + struct.pack("<BH", 255, 4) + struct.pack("<I", zlib.crc32(body))


def packet(uid: int, payload: bytes, index=0, total=1) -> bytes:
    return (struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", uid, len(payload), index, total)
            + payload + struct.pack("<IHBB", 0, 0, 0, 0))


def pairs(values) -> bytes:
    """(imag, real) int8 pairs, as the chip writes them."""
    return b"".join(struct.pack("<bb", im, re) for re, im in values)


def decode(message: bytes, antenna_id=5):
    report = parse_csi_message(message, antenna_id)
    decoding = report_decoding(report)
    return report, decoding, decode_csi(decoding, [report])[0]


def test_ht40_message_metadata_and_values():
    values = [((i % 50) - 25, ((3 * i) % 40) - 20) for i in range(117)]
    # T = 1000 us * 1000 - 20800 + 64 * 12.5 = 980000 ns = 306.25 * 3200 ns -> frac(T*df) = 0.25
    msg = csi_message(pairs(values), rx_ctrl_v3(cyc=64), global_us=1000)
    report, decoding, x = decode(msg, antenna_id=5)
    assert (report.row, report.col) == (0, 1)          # row = 1 - 5 // 4, col = 5 % 4
    assert report.src_mac == SRC and report.dst_mac == DST
    assert report.key == (SRC, DST, 123, 0, True)        # frame_ctrl bit 11 = retry
    assert report.rx.rssi_dbm == -40 and report.rx.noise_floor_dbm == -92
    assert report.rx.channel == 6 and report.rx.secondary_code == 1
    assert report.rx.fft_gain_db == 2.0 and report.rx.rx_gain_db == 20.0
    assert report.timestamp_ns == 980_000.0
    assert report.rf_switch_state == 2 and not report.is_calib
    assert decoding == Decoding.HT40 and x.shape == (117,)
    k = np.arange(-58, 59)
    sto = np.exp(-2j * np.pi * 0.25 * k)
    # upper half, bin 60 (k = +2): bytes (im, re) -> -(re + j im), rotated by the STO
    re, im = values[60]
    assert x[60] == pytest.approx(-(re + 1j * im) * sto[60], abs=1e-4)
    # lower half, bin 0 (k = -58): additionally multiplied by e^{+j pi/2}
    re, im = values[0]
    assert x[0] == pytest.approx(-(re + 1j * im) * 1j * sto[0], abs=1e-4)
    # the 3-bin gap (57..59) is a straight line between bins 56 and 60 (before STO, per bin)
    raw = x * np.conj(sto)
    assert raw[58] == pytest.approx((raw[56] + raw[60]) / 2, abs=1e-4)


def test_ht20_dc_interpolated_and_no_secondary_sto_grid():
    values = [(i - 28, 2 * (i % 7)) for i in range(57)]
    msg = csi_message(pairs(values), rx_ctrl_v3(he_siga1=0x07, second=0, csi_len=114, cyc=0),
                      global_us=1000)          # T = 979200 ns = 306 * 3200 -> no rotation
    report, decoding, x = decode(msg)
    assert decoding == Decoding.HT20
    re, im = values[3]
    assert x[3] == pytest.approx(-(re + 1j * im), abs=1e-4)
    assert x[28] == pytest.approx((x[27] + x[29]) / 2, abs=1e-4)


def test_ht20_sto_uses_lo_relative_bins_when_secondary_above():
    values = [(10, 0)] * 57
    # frac = 0.25: bins relative to the 40 MHz LO are k - 32 for secondary above
    msg = csi_message(pairs(values), rx_ctrl_v3(he_siga1=0x07, second=1, csi_len=114, cyc=64))
    _, _, x = decode(msg)
    k_lo = np.arange(-28, 29) - 32
    assert x[0] == pytest.approx(-10 * np.exp(-2j * np.pi * 0.25 * k_lo[0]), abs=1e-4)


def test_lltf_8bit_mode():
    values = [(i - 26, -(i % 5)) for i in range(53)]
    msg = csi_message(pairs(values), rx_ctrl_v3(sig_mode=0, bb=1, second=0, csi_len=106),
                      acquire_flags=0b10)
    _, decoding, x = decode(msg)
    assert decoding == Decoding.LLTF_8BIT and x.shape == (53,)
    re, im = values[10]
    assert x[10] == pytest.approx(-(re + 1j * im), abs=1e-4)
    assert x[26] == pytest.approx((x[25] + x[27]) / 2, abs=1e-4)


def twelve_bit_words(values) -> bytes:
    return b"".join(struct.pack("<H", (v & 0xFFF) | 0xA000) for v in values)  # junk in the top nibble


def test_lltf_native_12bit():
    vals = [((i * 37) % 2001) - 1000 for i in range(53)]
    msg = csi_message(twelve_bit_words(vals), rx_ctrl_v3(sig_mode=0, bb=1, second=0, csi_len=106))
    _, decoding, x = decode(msg)
    assert decoding == Decoding.LLTF_12BIT
    assert x[4] == pytest.approx(vals[4] + 1j * vals[5], abs=1e-3)          # pair 2 -> index 4, (re, im)
    assert x[52] == pytest.approx(vals[52] + 1j * vals[51], abs=1e-3)       # real-only + imag of x[50]
    assert x[26] == pytest.approx((x[24] + x[28]) / 2, abs=1e-3)            # DC
    assert x[5] == pytest.approx((x[4] + x[6]) / 2, abs=1e-3)               # odd bins interpolated


def test_lltf_forced_12bit_on_ht_packet():
    vals = [-2048 + 77 * i for i in range(52)]
    msg = csi_message(twelve_bit_words(vals), rx_ctrl_v3(bb=2, second=0, he_siga1=0x07, csi_len=104),
                      acquire_flags=0b01)
    _, decoding, x = decode(msg)
    assert decoding == Decoding.LLTF_FORCED_12BIT
    assert x[0] == pytest.approx(-2048 + 1j * (-2048 + 77), abs=1e-3)
    assert x[26] == pytest.approx(vals[26] + 1j * vals[27], abs=1e-3)       # DC measured, not interpolated
    assert x[52] == pytest.approx(2 * x[50] - x[48], abs=1e-3)


def test_he20_with_fractional_timestamp():
    values = [(5, -3)] * 245
    dec = 1024 + 1000                     # dec >= 1024 -> dec' = 2048 - dec = 24 -> 37.5 ns
    msg = csi_message(pairs(values), rx_ctrl_v3(sig_mode=2, bb=4, second=0, csi_len=490, dec=dec))
    _, decoding, x = decode(msg)
    assert decoding == Decoding.HE20 and x.shape == (245,)
    t_ns = 979_200.0 + 37.5
    frac = (t_ns % 12_800.0) / 12_800.0
    k = np.arange(-122, 123)
    expect = -(5 - 3j) * np.exp(-2j * np.pi * frac * k)
    assert np.allclose(x[:120], expect[:120], atol=1e-3)
    assert np.allclose(x[125:], expect[125:], atol=1e-3)


def test_compact_rx_ctrl():
    compact = struct.pack("<BBBbBBBBHHIHHBBbb", (-50) & 0xFF, (-95) & 0xFF, 11, -1, 2, 0, 1, 0, 234, 0b11,
                          777, 0, 0, 7, 0, -4, 30)
    values = [(1, 1)] * 117
    msg = csi_message(pairs(values), compact, rx_kind=8)
    report, decoding, _ = decode(msg)
    assert report.rx.rssi_dbm == -50 and report.rx.noise_floor_dbm == -95
    assert report.rx.channel == 11 and report.rx.secondary_code == 2     # -1 -> below
    assert report.rx.fft_gain_db == -1.0 and report.rx.rx_gain_db == 30.0
    assert decoding == Decoding.HT40                                     # flags bit 0 -> HT40


def test_fragmented_message_across_packets_and_unknown_tlv():
    msg = csi_message(pairs([(2, 3)] * 117), rx_ctrl_v3(), extra=tlv(200, b"future"))
    uid = (6 << 29) | 77
    counters: dict[str, int] = {}
    reasm = Reassembler(counters)
    parts = [msg[:100], msg[100:250], msg[250:]]
    out = None
    for i in (2, 0, 1):                           # out of order
        [frag] = split_sensor_packet(packet(uid, parts[i], i, 3))
        assert frag.uid >> 29 == 6
        out = reasm.add(frag, now=0.0)
    assert out == msg
    report = parse_csi_message(out, uid >> 29)
    assert (report.row, report.col) == (0, 2)


def test_repeated_fragment_is_ignored_and_counted():
    msg = csi_message(pairs([(2, 3)] * 117), rx_ctrl_v3())
    counters: dict[str, int] = {}
    reasm = Reassembler(counters)
    [a] = split_sensor_packet(packet(9, msg[:50], 0, 2))
    [b] = split_sensor_packet(packet(9, msg[50:], 1, 2))
    assert reasm.add(a, 0.0) is None and reasm.add(a, 0.0) is None
    assert reasm.add(b, 0.0) == msg
    assert counters["duplicate_fragment"] == 1


def test_missing_fragment_expires():
    counters: dict[str, int] = {}
    reasm = Reassembler(counters, timeout_s=5.0)
    [a] = split_sensor_packet(packet(9, b"x" * 10, 0, 2))
    reasm.add(a, 0.0)
    reasm.expire(4.0)
    assert "incomplete_message" not in counters
    reasm.expire(5.5)
    assert counters["incomplete_message"] == 1


@pytest.mark.parametrize("data,reason", [
    (b"\x00\x01\x02\x03" + b"\x00" * 8, "bad_magic"),
    (struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", 5, 100, 0, 1) + b"x" * 10, "truncated"),
    (struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", 5, 2, 0, 1) + b"xx", "truncated"),
    (struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", 5, 2, 3, 2) + b"xx" + b"\0" * 8, "bad_fragment"),
    (struct.pack("<I", 0xDECAFBAD) + struct.pack("<IHBB", 1 << 29, 1, 0, 1) + b"x"
     + struct.pack("<IHBB", 2 << 29, 1, 0, 1) + b"y" + b"\0" * 8, "mixed_antennas"),
])
def test_bad_sensor_packets(data, reason):
    with pytest.raises(ProtocolError) as err:
        split_sensor_packet(data)
    assert err.value.reason == reason


def test_bad_crc_and_missing_parts():
    msg = bytearray(csi_message(pairs([(2, 3)] * 117), rx_ctrl_v3()))
    msg[40] ^= 0xFF
    with pytest.raises(ProtocolError, match="bad_crc"):
        parse_csi_message(bytes(msg), 0)
    body = struct.pack("<I", 0xE4CD0BAC) + tlv(6, b"\0" * 10)
    with pytest.raises(ProtocolError, match="missing_crc"):
        parse_csi_message(body, 0)
    no_rx = body + struct.pack("<BH", 255, 4) + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(ProtocolError, match="missing_rx_ctrl"):
        parse_csi_message(no_rx, 0)
    with pytest.raises(ProtocolError, match="truncated"):
        parse_csi_message(bytes(msg[:60]), 0)


def test_compressed_csi_is_refused_with_a_reason():
    body = struct.pack("<I", 0xE4CD0BAC) + tlv(5, rx_ctrl_v3()) + tlv(7, b"\0" * 65)
    msg = body + struct.pack("<BH", 255, 4) + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(ProtocolError) as err:
        parse_csi_message(msg, 0)
    assert err.value.reason == "compressed_csi" and "compress_csi" in str(err.value)


def test_radar_report_is_ignored():
    assert parse_csi_message(struct.pack("<I", 0x52545852) + b"\0" * 20, 0) is None


def test_11b_frame_has_no_csi():
    msg = csi_message(b"", rx_ctrl_v3(bb=0, csi_len=0))
    assert report_decoding(parse_csi_message(msg, 0)) is None


def test_formats_map_to_grids():
    assert Decoding.HT40.format == CsiFormat.HT40 and Decoding.HE20.nbytes == 490


# --- hostile input: range checks and bounded reassembly ------------------------------------

@pytest.mark.parametrize("channel,second", [(0, 0), (15, 0), (255, 0), (6, 3), (6, 255)])
def test_channel_outside_wifi_is_a_protocol_error(channel, second):
    """A frame naming no WiFi channel is refused at decoding (it used to raise ValueError from the
    frequency grid on the reader thread, which then died)."""
    msg = csi_message(pairs([(2, 3)] * 117), rx_ctrl_v3(channel=channel, second=second))
    with pytest.raises(ProtocolError) as err:
        parse_csi_message(msg, 0)
    assert err.value.reason == "bad_channel"


def test_reassembly_is_bounded_in_bytes():
    """3,000 fragments of 60 kB (what a stranger sent in the field test) hold no memory: each
    overflows the per-message limit at once; many small stalled messages stay within the budget."""
    counters: dict[str, int] = {}
    reasm = Reassembler(counters)
    for uid in range(3000):
        [frag] = split_sensor_packet(packet(uid + 1, b"z" * 60_000, 0, 255))
        assert reasm.add(frag, 0.0) is None
        assert reasm.pending_bytes == 0
    assert counters["oversize_message"] == 3000
    small = Reassembler(counters, max_bytes=100_000)
    for uid in range(5000):
        [frag] = split_sensor_packet(packet(uid + 1, b"z" * 1000, 0, 2))
        small.add(frag, 0.0)
        assert small.pending_bytes <= 100_000
    assert counters["reassembly_overflow"] == 5000 - 100
    [frag] = split_sensor_packet(packet(5000, b"y" * 1000, 1, 2))
    assert small.add(frag, 0.0) == b"z" * 1000 + b"y" * 1000        # the newest still completes


# --- edge cases decided against the spec (issue 16) ------------------------------------------

def message_without(kind: int, rx: bytes, csi: bytes, rx_kind: int = 5, extra: bytes = b"") -> bytes:
    """A CSI message like csi_message() but without the TLV of type ``kind``."""
    parts = [(2, SRC + DST + struct.pack("<HHH", 123 << 4, 0, 0x0800)), (3, struct.pack("<Q", 1000)),
             (4, struct.pack("<HBB", 0, 0, 2)), (rx_kind, rx), (6, csi)]
    body = struct.pack("<I", 0xE4CD0BAC) + b"".join(tlv(k, v) for k, v in parts if k != kind) + extra
    return body + struct.pack("<BH", 255, 4) + struct.pack("<I", zlib.crc32(body))


def test_message_without_timing_meta_uses_the_rx_ctrl_timestamp():
    report = parse_csi_message(message_without(3, rx_ctrl_v3(), pairs([(2, 3)] * 117)), 5)
    assert report is not None and report.timestamp_ns == pytest.approx(123456 * 1000 - 20800, abs=13)


def test_message_without_frame_meta_is_refused_as_ungroupable():
    with pytest.raises(ProtocolError, match="missing_frame_meta"):
        parse_csi_message(message_without(2, rx_ctrl_v3(), pairs([(2, 3)] * 117)), 5)


def test_compact_rx_ctrl_mcs_bit7_means_40_mhz():
    compact = struct.pack("<BBBbBBBBHHIHHBBbb", (-50) & 0xFF, (-95) & 0xFF, 11, 1, 2, 0, 1, 0, 234, 0b10,
                          777, 0, 0, 0x87, 0, 0, 20)               # flags bit 0 clear, he_sig1_mcs bit 7 set
    report, decoding, _ = decode(csi_message(pairs([(1, 1)] * 117), compact, rx_kind=8))
    assert report.rx.bandwidth_40mhz and decoding == Decoding.HT40


def test_raw_rx_ctrl_wins_over_a_compact_one():
    compact = struct.pack("<BBBbBBBBHHIHHBBbb", (-70) & 0xFF, (-95) & 0xFF, 11, -1, 2, 0, 1, 0, 234, 1,
                          777, 0, 0, 7, 0, 0, 20)
    msg = csi_message(pairs([(1, 1)] * 117), rx_ctrl_v3(rssi=-40), extra=tlv(8, compact))
    report = parse_csi_message(msg, 5)
    assert report.rx.rssi_dbm == -40 and report.rx.channel == 6


@pytest.mark.parametrize("second, he_siga1", [(3, 0x87), (0, 0x87)])
def test_impossible_secondary_channels_are_refused(second, he_siga1):
    """Secondary code 3 does not exist; an HT frame with CBW 40 needs a secondary channel."""
    with pytest.raises(ProtocolError, match="bad_channel"):
        parse_csi_message(csi_message(pairs([(1, 1)] * 117), rx_ctrl_v3(second=second, he_siga1=he_siga1)), 5)


# --- the layout fast path reads exactly what the TLV walk reads --------------------------------

def _outcome(parse, message: bytes):
    try:
        return parse(message, 5)
    except ProtocolError as err:
        return err.reason


def _message_shapes() -> list[bytes]:
    """Messages of the shapes a layout reads (with and without optional TLVs, 16- and 18-byte
    metadata, every CSI length) and of shapes it must leave to the TLV walk."""
    csi = pairs([(3, -2)] * 117)
    short_meta = tlv(2, SRC + DST + struct.pack("<HH", 5 << 4, 1))
    body = struct.pack("<I", 0xE4CD0BAC) + short_meta + tlv(5, rx_ctrl_v3()) + tlv(6, csi)
    compact = struct.pack("<BBBbBBBBHHIHHBBbb", (-50) & 0xFF, (-95) & 0xFF, 11, 1, 2, 0, 1, 0, 234, 1, 777, 0, 0, 7, 0, 0, 20)
    return [
        csi_message(csi, rx_ctrl_v3()),
        csi_message(csi, rx_ctrl_v3(bb=1, csi_len=106), acquire_flags=2),
        csi_message(pairs([(1, 1)] * 245), rx_ctrl_v3(bb=5, second=0, he_siga1=0, csi_len=490, dec=300)),
        csi_message(csi[:100], rx_ctrl_v3(csi_len=234)),
        message_without(3, rx_ctrl_v3(), csi),
        message_without(4, rx_ctrl_v3(), csi),
        message_without(6, rx_ctrl_v3(), csi),
        body + struct.pack("<BH", 255, 4) + struct.pack("<I", zlib.crc32(body)),
        csi_message(csi, compact, rx_kind=8),
        csi_message(csi, rx_ctrl_v3(), extra=tlv(9, b"\x01\x02")),
        csi_message(csi, rx_ctrl_v3()) + b"\x00\x00",
    ]


def _equal(a, b) -> bool:
    """Same report (every field) or same error reason."""
    return a == b


@pytest.mark.parametrize("seed", range(3))
def test_the_layout_fast_path_agrees_with_the_tlv_walk_on_valid_and_corrupt_messages(seed):
    """parse_csi_message reads most messages through a cached MessageLayout; on every message
    (valid ones of many shapes, and each with random bytes changed, some with their CRC
    recomputed so that the corruption reaches the fields) it must return exactly what the general
    TLV walk returns, or fail with the same reason."""
    from espargos_driver.protocol import gen3
    rng = np.random.default_rng(seed)
    fast_hits = 0
    for message in _message_shapes():
        gen3._layouts.clear()
        assert _equal(_outcome(parse_csi_message, message), _outcome(gen3._parse_tlvs, message))
        fast_hits += gen3.MessageLayout.learn(message) is not None
        for _ in range(300):
            corrupt = bytearray(message)
            for pos in rng.integers(0, len(corrupt), int(rng.integers(1, 4))):
                corrupt[pos] = int(rng.integers(256))
            if rng.random() < 0.5 and len(corrupt) > 7:             # a CRC that matches the corruption
                corrupt[-4:] = struct.pack("<I", zlib.crc32(bytes(corrupt[:-7])))
            corrupt = bytes(corrupt)
            assert _equal(_outcome(parse_csi_message, corrupt), _outcome(gen3._parse_tlvs, corrupt)), corrupt.hex()
    assert fast_hits == 8                                            # the shapes a layout reads, and only those
