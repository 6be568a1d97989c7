"""Generation-1 (prototype) records assembled by hand from the spec (section 2.3)."""
import struct

import numpy as np
import pytest

from espargos_driver.protocol.csi_formats import Decoding, decode_csi, report_decoding
from espargos_driver.protocol.errors import ProtocolError
from espargos_driver.protocol.gen1 import parse_g1_message

SRC = bytes.fromhex("112233445566")


def record(esp_num: int, entries: dict[int, tuple[int, int]], *, cwb: bool, secondary: int,
           cyc=8, dec=0, global_us=5000, seq=42) -> bytes:
    w = [0] * 9
    w[0] = (-60) & 0xFF
    w[1] = 0x80 if cwb else 0
    w[2] = (6 << 16) | (secondary << 20) | (cyc << 24)
    w[3] = 999
    w[6] = dec << 20
    w[7] = (-90) & 0xFF
    buf = bytearray(512)
    struct.pack_into("<I", buf, 0, 0x5A1F19B1)
    struct.pack_into("<9I", buf, 4, *w)
    struct.pack_into("<6s6sHIBB", buf, 40, SRC, b"\xff" * 6, seq << 4, 1234, 0, 0)
    for e, (re, im) in entries.items():
        struct.pack_into("<bb", buf, 60 + 2 * e, im, re)
    struct.pack_into("<Q", buf, 444, global_us)
    return struct.pack("<I", esp_num) + bytes(buf)


def test_lltf_record_and_mapping():
    entries = {6: (10, -3), 32: (7, 7), 58: (-1, 2)}   # sc -26, 0, +26
    [rep] = parse_g1_message(record(0, entries, cwb=False, secondary=0))
    assert (rep.row, rep.col) == (1, 3)                # esp 0 -> (1, 3)
    assert rep.rx.rssi_dbm == -60 and rep.rx.noise_floor_dbm == -90 and rep.rx.channel == 6
    assert rep.timestamp_ns == 5000 * 1000 - 20800 + 8 * 12.5
    assert report_decoding(rep) == Decoding.G1_LLTF
    x = decode_csi(Decoding.G1_LLTF, [rep])[0]
    assert x.shape == (53,)
    assert x[0] == pytest.approx(-(10 - 3j)) and x[26] == pytest.approx(-(7 + 7j)) and x[52] == pytest.approx(-(-1 + 2j))


@pytest.mark.parametrize("secondary,rotated", [(1, "lower"), (2, "upper")])
def test_ht40_record_primary_half_rotation(secondary, rotated):
    entries = {134: (4, 1), 190: (2, 2), 66: (-5, 3), 122: (6, -6)}  # sc -58, -2, +2, +58
    [rep] = parse_g1_message(record(7, entries, cwb=True, secondary=secondary, dec=1030))
    assert (rep.row, rep.col) == (0, 0)
    assert rep.timestamp_ns == pytest.approx(5000 * 1000 - 20800 + 8 * 12.5 + (2048 - 1030) * 1.5625)
    assert report_decoding(rep) == Decoding.G1_HT40
    x = decode_csi(Decoding.G1_HT40, [rep])[0]
    lower = -1j if rotated == "lower" else 1
    upper = -1j if rotated == "upper" else 1
    assert x[0] == pytest.approx(-(4 + 1j) * lower)
    assert x[56] == pytest.approx(-(2 + 2j) * lower)
    assert x[60] == pytest.approx(-(-5 + 3j) * upper)
    assert x[116] == pytest.approx(-(6 - 6j) * upper)
    assert np.allclose(x[57:60], x[56] + (x[60] - x[56]) * np.array([1, 2, 3]) / 4)


def test_several_records_and_foreign_header():
    good = record(3, {}, cwb=False, secondary=0)
    foreign = struct.pack("<II", 1, 0xDEADBEEF) + b"\0" * 508
    reports = parse_g1_message(good + foreign + record(4, {}, cwb=False, secondary=0))
    assert [(r.row, r.col) for r in reports] == [(1, 0), (0, 3)]


def test_truncated_g1_message():
    with pytest.raises(ProtocolError) as err:
        parse_g1_message(record(0, {}, cwb=False, secondary=0)[:-1])
    assert err.value.reason == "truncated"


@pytest.mark.parametrize("channel", [0, 15])
def test_channel_nibble_outside_wifi_is_a_protocol_error(channel):
    rec = bytearray(record(0, {6: (10, -3)}, cwb=False, secondary=0))
    word2 = struct.unpack_from("<I", rec, 4 + 4 + 8)[0]
    struct.pack_into("<I", rec, 4 + 4 + 8, (word2 & ~(0xF << 16)) | (channel << 16))
    with pytest.raises(ProtocolError) as err:
        parse_g1_message(bytes(rec))
    assert err.value.reason == "bad_channel"
