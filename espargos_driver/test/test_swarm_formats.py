"""Swarm-node formats: hand-written byte and line vectors for every format and layout, and the real
captures in shared/data/esp32 (read in place)."""
import base64
import json
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from espargos_driver.swarm.binary import HEADER, KNOWN_OTHER_MAGICS, build_datagram, parse_datagram
from espargos_driver.swarm.ingest import MAX_SENDERS, NodeConfig, SwarmIngest
from espargos_driver.swarm.layout import classic_segments, decode_report, pairs_to_complex
from espargos_driver.swarm.report import NodeReport, ReportError
from espargos_driver.swarm.text import CSI_TOOL, LineParser
from espargos_driver.wifi import GRIDS, CsiFormat

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "esp32"
"""The real public captures, read in place beside the project (../shared/data/esp32)."""
needs_captures = pytest.mark.skipif(not DATA.is_dir(), reason=f"real ESP32 captures not found at {DATA}")


def values_for(k_of_entry: list, h) -> np.ndarray:
    """int8 ESP-IDF pairs (imag, real) of entries whose subcarrier is ``k_of_entry[e]`` (None: zero)."""
    z = np.array([0 if k is None else 40 * h(k) for k in k_of_entry])
    out = np.empty(2 * z.size)
    out[0::2], out[1::2] = np.round(z.imag), np.round(z.real)
    return out.astype(np.int16)


def h_of(k):
    return np.exp(0.05j * k) * (1 + 0.002 * k)


# --- binary ----------------------------------------------------------------------------------

def test_binary_round_trip_with_timestamp_and_mac():
    values = np.arange(-64, 64, dtype=np.int8)
    r = parse_datagram(build_datagram(9, 77, 2437, -42, -91, values, flags=0x21, sensor_time_us=123456))
    assert (r.node_id, r.sequence, r.freq_mhz, r.rssi_dbm, r.noise_floor_dbm) == (9, 77, 2437, -42.0, -91.0)
    assert r.bandwidth_40 and r.first_word_invalid and not r.stbc and r.sensor_time_us == 123456
    np.testing.assert_array_equal(r.values, values)
    assert parse_datagram(build_datagram(9, 1, 2437, 0, 0, values)).sensor_time_us is None
    v2 = parse_datagram(build_datagram(9, 1, 2437, 0, 0, values, transmitter_mac=bytes(range(6))))
    assert v2.transmitter_mac == bytes(range(6)) and v2.values.size == 128


def test_binary_header_layout_is_the_spec():
    data = build_datagram(3, 0x01020304, 2412, -1, -2, np.zeros(4, np.int8))
    assert data[:4] == bytes.fromhex("010011c5") and data[4] == 3 and data[5] == 1
    assert struct.unpack_from("<H", data, 6)[0] == 2 and struct.unpack_from("<I", data, 8)[0] == 2412
    assert struct.unpack_from("<I", data, 12)[0] == 0x01020304 and data[16:18] == bytes([0xFF, 0xFE])


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: struct.pack("<I", 0xDEADBEEF) + d[4:], "wrong_magic"),
    (lambda d: d[:3], "truncated"),
    (lambda d: d[:HEADER.size - 1], "truncated"),
    (lambda d: d[:-2], "truncated"),
    (lambda d: d + b"\x00", "odd_length"),
    (lambda d: d + b"\x00\x00", "bad_length"),
    (lambda d: d[:5] + b"\x02" + d[6:], "bad_antennas"),
])
def test_binary_refusals(mutate, reason):
    data = build_datagram(1, 1, 2437, -40, -90, np.ones(128, np.int8))
    with pytest.raises(ReportError) as err:
        parse_datagram(mutate(data))
    assert err.value.reason == reason


@pytest.mark.parametrize("magic, name", sorted(KNOWN_OTHER_MAGICS.items()))
def test_other_magics_on_the_port_are_recognised(magic, name):
    with pytest.raises(ReportError) as err:
        parse_datagram(struct.pack("<I", magic) + bytes(28))
    assert err.value.reason == f"other_{name}"


# --- layouts ---------------------------------------------------------------------------------

NAT = [k if k < 32 else k - 64 for k in range(64)]


@pytest.mark.parametrize("secondary, entries, ht40, stbc, fmt", [
    (0, 64, False, False, CsiFormat.LLTF), (0, 128, False, False, CsiFormat.HT20), (0, 192, False, True, CsiFormat.HT20),
    (-1, 64, False, False, CsiFormat.LLTF), (-1, 128, False, False, CsiFormat.HT20), (-1, 190, False, True, CsiFormat.HT20),
    (-1, 192, True, False, CsiFormat.HT40), (-1, 306, True, True, CsiFormat.HT40),
    (1, 64, False, False, CsiFormat.LLTF), (1, 128, False, False, CsiFormat.HT20), (1, 188, False, True, CsiFormat.HT20),
    (1, 192, True, False, CsiFormat.HT40), (1, 306, True, True, CsiFormat.HT40),
])
def test_classic_table_places_every_subcarrier(secondary, entries, ht40, stbc, fmt):
    segments = classic_segments(entries, secondary, ht40, stbc)
    k_of_entry: list = [None] * entries
    for seg in segments:
        grid = GRIDS[seg.format]
        for e, k in enumerate(seg.k):
            edge = 2 if seg.format == CsiFormat.HT40 else 1
            if grid.k_min <= k <= grid.k_max and k != 0 and e not in seg.masked and abs(k) >= edge:
                k_of_entry[seg.start + e] = int(k)
    report = NodeReport(values=values_for(k_of_entry, h_of), declared_len=2 * entries, secondary=secondary,
                        bandwidth_40=ht40, stbc=stbc)
    out = decode_report(report, "esp32")
    grid = GRIDS[fmt]
    assert out.format == fmt and out.csi.size == grid.size
    measured = np.setdiff1d(np.arange(grid.size), out.interpolated)
    np.testing.assert_allclose(out.csi[measured], [h_of(k) * 40 for k in grid.indices[measured]], atol=1.0)
    assert len(measured) >= grid.size - 4


@pytest.mark.parametrize("chip, entries, stbc, fmt", [
    ("c5", 53, False, CsiFormat.LLTF), ("c5", 57, False, CsiFormat.HT20), ("c5", 117, False, CsiFormat.HT40),
    ("c5", 245, False, CsiFormat.HE20), ("c5", 114, True, CsiFormat.HT20),
    ("c6", 64, False, CsiFormat.HT20), ("c6", 128, False, CsiFormat.HT40), ("c6", 256, False, CsiFormat.HE20),
    ("c6", 128, True, CsiFormat.HT20),
])
def test_c5_and_c6_ascending_layouts(chip, entries, stbc, fmt):
    single = entries // 2 if stbc else entries
    offset = single // 2
    ks = [e - offset for e in range(single)] * (2 if stbc else 1)
    grid = GRIDS[fmt]
    k_of_entry = [k if grid.k_min <= k <= grid.k_max and k != 0 else None for k in ks]
    out = decode_report(NodeReport(values=values_for(k_of_entry, h_of), declared_len=2 * entries, ht=True, stbc=stbc),
                        chip)
    assert out.format == fmt
    pos = grid.indices.tolist().index(5)
    assert abs(out.csi[pos] - 40 * h_of(5)) < 1.0


def test_first_word_invalid_masks_the_first_two_entries():
    k_of_entry = [k if 1 <= abs(k) <= 26 else None for k in NAT]
    values = values_for(k_of_entry, h_of)
    values[:4] = [100, -64, 5, 0]                         # garbage as in the ESP32-CSI-Tool capture
    report = NodeReport(values=values, declared_len=128, secondary=0, first_word_invalid=True)
    out = decode_report(report, "esp32")
    np.testing.assert_allclose(out.csi[26 + 1], 40 * h_of(1), atol=1.0)     # k = 1 is entry 1: interpolated
    assert 27 in out.interpolated


def test_allowlist_by_node_mac_or_address():
    counters = Counter()
    data = build_datagram(3, 1, 2437, -40, -90, np.ones(256, np.int8), transmitter_mac=bytes.fromhex("0a0b0c0d0e0f"))
    for allow, accepted in (({"node3"}, True), ({"0a:0b:0c:0d:0e:0f"}, True), ({"10.0.0.7"}, True),
                            ({"node3", "10.0.0.7"}, True), ({"node4", "10.0.0.7"}, False),
                            ({"node3", "10.0.0.8"}, False), (set(), True)):
        ingest = SwarmIngest(counters, NodeConfig("esp32", 0, 0), allow=allow)
        assert bool(ingest.datagram(data, "udp:10.0.0.7:4000", 0.0)) == accepted, allow
    assert counters["not_allowed"] == 1 and counters["foreign_source"] == 1


def test_stranger_is_dropped_before_parsing():
    """Where the allowlist names addresses, a stranger's datagram never reaches a parser: even
    one that would crash it or fill per-sender state."""
    counters = Counter()
    ingest = SwarmIngest(counters, NodeConfig("esp32", 0, 6), allow={"10.0.0.7"})
    for port in range(3000):
        assert ingest.datagram(b"type,id,mac\n", f"udp:10.0.0.66:{port}", 0.0) == []
    assert counters["foreign_source"] == 3000 and counters["lines"] == 0 and not ingest._parsers


def test_per_sender_state_is_bounded():
    counters = Counter()
    ingest = SwarmIngest(counters, NodeConfig("esp32", 0, 6))
    line = classic_line(f"[{HT20} ]").encode()
    for i in range(MAX_SENDERS + 500):
        assert ingest.datagram(line, f"udp:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:4000", float(i))
    assert len(ingest._parsers) == MAX_SENDERS and len(ingest.last_seen) == MAX_SENDERS
    assert counters["sender_evicted"] == 2 * 500


def test_pairs_are_imaginary_first():
    assert pairs_to_complex(np.array([3, 4])) == 4 + 3j


# --- text ------------------------------------------------------------------------------------

CLASSIC_HEADER = ("type,id,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,aggregation,stbc,fec_coding,sgi,"
                  "noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,sig_len,rx_state,len,first_word,data")
HT20 = " ".join(str(v) for v in values_for([k if 1 <= abs(k) <= 26 else None for k in NAT]
                                           + [k if 1 <= abs(k) <= 28 else None for k in NAT], h_of))


def classic_line(data: str, secondary: int = 0, length: int = 256) -> str:
    return f"CSI_DATA,5,aa:bb:cc:dd:ee:ff,-50,11,1,7,0,1,1,1,0,0,1,-91,0,6,{secondary},1000,0,100,0,{length},0,{data}"


def test_classic_lines_both_array_syntaxes():
    p = LineParser()
    a = p.parse(classic_line(f"[{HT20} ]"))
    b = p.parse(classic_line('"[' + HT20.replace(" ", ",") + ']"'))
    np.testing.assert_array_equal(a.values, b.values)
    assert a.transmitter_mac == bytes.fromhex("aabbccddeeff") and a.channel == 6 and a.ht and a.sensor_time_us == 1000
    assert decode_report(a, "esp32").format == CsiFormat.HT20


def test_header_line_is_honoured():
    p = LineParser()
    header = ("type,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,local_timestamp,esp_epoch_us,sig_len,"
              "rx_format,len,first_word,data")
    assert p.parse(header) is None
    r = p.parse(f"CSI_DATA,9,aa:bb:cc:dd:ee:ff,-40,11,159,8,30,11,555,999999,100,2,128,0,[{' '.join(['1'] * 128)}]")
    assert r.noise_floor_dbm == -97 and r.channel == 11 and r.sensor_time_us == 555 and r.bb_format == 2
    assert r.agc_gain_db == 30 and r.fft_gain_db == 2.0


def test_c5_c6_columns_without_header():
    r = LineParser().parse(f"CSI_DATA,3,aa:bb:cc:dd:ee:ff,-40,11,-95,4,20,6,777,100,0,114,0,[{' '.join(['2'] * 114)}]")
    assert r.sequence == 3 and r.declared_len == 114 and r.values.size == 114 and r.channel == 6


def test_console_test_base64_and_csi_tool_columns():
    meta = ",".join(["CSI_DATA", "1", "2", "3", "4", "aa:bb:cc:dd:ee:ff", "-40"] + ["0"] * 12
                    + ["6", "0", "1000", "0", "100", "0", "20", "8", "128", "0"])
    data = base64.b64encode(bytes(np.ones(128, np.int8))).decode()
    r = LineParser().parse(f"{meta},{data}")
    assert r.values.size == 128 and r.agc_gain_db == 20 and r.fft_gain_db == 2.0
    tool = ("CSI_DATA,AP,3C:71:BF:6D:2A:78,-73,11,1,0,1,1,1,0,0,0,0,-93,0,1,1,80272146,0,101,0,0,80.363225,384,"
            f"[{' '.join(['3'] * 128)} ]")
    r = LineParser().parse(tool)
    assert r.declared_len == 384 and r.values.size == 128 and r.secondary == 1
    r = LineParser().parse(tool + ",1700000000.5")
    assert r.values.size == 128


@pytest.mark.parametrize("line, reason", [
    (classic_line(f"[{HT20}"), "cut_line"),
    (classic_line(f"[{HT20} 7]"), "odd_length"),
    (b"CSI_DATA,5,\xff\xfe,-50\n", "not_utf8"),
    ("CSI_DATA,1,2,3,[1 2]", "unknown_columns"),
    (classic_line("[1 x]"), "bad_value"),
    (classic_line("[1 2]").replace(",256,", ",abc,"), "bad_field"),
])
def test_line_refusals(line, reason):
    with pytest.raises(ReportError) as err:
        LineParser().parse(line)
    assert err.value.reason == reason


def test_log_lines_are_not_csi():
    assert LineParser().parse("I (1234) wifi: connected") is None


# --- real captures -----------------------------------------------------------------------------

@needs_captures
@pytest.mark.parametrize("name, chip, secondary, csi_lines, fmt", [
    ("esp-csi_ht20-stbc_with-head.csv", "esp32", 0, 116, CsiFormat.HT20),
    ("esp-csi_console-test_ht40-below.csv", "esp32", -1, 1684, CsiFormat.HT40),
    ("esp32-csi-tool_example.csv", "esp32", 1, 13, CsiFormat.LLTF),
])
def test_real_text_captures(name, chip, secondary, csi_lines, fmt):
    counters = Counter()
    ingest = SwarmIngest(counters, NodeConfig(chip, secondary, 0))
    frames = [f for line in (DATA / name).read_bytes().splitlines() if (f := ingest.line(line, name, 0.0))]
    lines = sum(1 for line in (DATA / name).read_bytes().splitlines() if line.startswith(b"CSI_DATA"))
    assert lines == csi_lines and len(frames) + sum(v for k, v in counters.items()
                                                    if k not in ("lines", "reports", "other_lines")) == lines
    assert len(frames) == csi_lines and {f.csi.format for f in frames} == {fmt}


@needs_captures
def test_csi_tool_first_word_is_never_a_measurement():
    """The Tool's lines have no first_word column; its first word (sig_len) must not become bin
    k=+1 on a 20 MHz link. The real capture's lines are re-emitted without a secondary channel."""
    lines = [line for line in (DATA / "esp32-csi-tool_example.csv").read_text().splitlines()
             if line.startswith("CSI_DATA")]
    columns = CSI_TOOL.split(",")
    checked = 0
    for line in lines:
        meta, data = line.split("[", 1)
        fields = meta.rstrip(",").split(",")
        fields[columns.index("secondary_channel")] = "0"
        fields[columns.index("bandwidth")] = "0"
        report = LineParser().parse(",".join(fields) + ",[" + data)
        assert report.first_word_invalid
        csi = decode_report(report, "esp32", 0)
        grid = GRIDS[csi.format]
        assert int(np.flatnonzero(grid.indices == 1)[0]) in csi.interpolated
        checked += 1
    assert checked == 13


@needs_captures
def test_real_ruview_binary_payloads():
    counters = Counter()
    ingest = SwarmIngest(counters, NodeConfig("esp32", 0, 6))
    records = [json.loads(line) for line in (DATA / "ruview_pretrain_esp32s3.csi.jsonl").read_text().splitlines()]
    raw = [r for r in records if r.get("type") == "raw_csi"]
    for r in raw:
        payload = np.frombuffer(bytes.fromhex(r["iq_hex"]), np.int8)
        assert ingest.datagram(build_datagram(r["node_id"], 0, 2437, -50, -90, payload), "ruview", 0.0)
    assert counters["reports"] == len(raw) > 5000
    assert set(ingest.last_seen) == {"node1", "node2"}


@needs_captures
def test_sanitised_phase_of_the_static_link_is_stable():
    """On the static esp-csi link, STO and common phase removed, adjacent-subcarrier phase
    differences stay within a few degrees from packet to packet."""
    from espargos_aoa.sanitize import sanitize

    ingest = SwarmIngest(Counter(), NodeConfig("esp32", -1, 0))
    lines = (DATA / "esp-csi_console-test_ht40-below.csv").read_bytes().splitlines()
    diffs, raw_phase = [], []
    for line in lines:
        frame = ingest.line(line, "log", 0.0)
        if frame is None:
            continue
        grid = GRIDS[frame.csi.format]
        valid = np.isin(np.arange(grid.size), frame.csi.interpolated, invert=True)
        s = sanitize(frame.csi.csi, grid.indices, valid)
        diffs.append(np.angle(s.csi[1:] * np.conj(s.csi[:-1]))[valid[1:] & valid[:-1]])
        raw_phase.append(np.angle(frame.csi.csi[10]))
    d = np.array(diffs)
    circ_std = np.degrees(np.sqrt(-2 * np.log(np.abs(np.mean(np.exp(1j * d), axis=0)))))
    assert np.median(circ_std) < 3.0 and np.percentile(circ_std, 90) < 6.0
    raw_std = np.degrees(np.sqrt(-2 * np.log(np.abs(np.mean(np.exp(1j * np.array(raw_phase)))))))
    assert raw_std > 60.0                              # the raw phase is random from packet to packet


@pytest.mark.parametrize("line,reason", [
    (classic_line("[40000 1 2 3]", length=4), "bad_value"),              # CSI value outside int8
    (classic_line("[" + "9" * 309 + " 1]", length=2), "bad_value"),      # 309 digits
    (classic_line("[1 2]", length=2).replace(",1000,", ",1" + "0" * 30 + ","), "bad_field"),   # timestamp
    (classic_line("[1 2]", length=2).replace(",-50,", ",-99999,"), "bad_field"),              # rssi
    (classic_line("[1 2]", length=2).replace(",100,0,2,0,", ",100,0,99999999,0,"), "bad_field"),  # len
])
def test_out_of_range_text_fields_are_refused(line, reason):
    with pytest.raises(ReportError) as err:
        LineParser().parse(line)
    assert err.value.reason == reason


def test_fft_gain_of_a_huge_number_is_refused():
    p = LineParser()
    header = ("type,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,local_timestamp,esp_epoch_us,sig_len,"
              "rx_format,len,first_word,data")
    p.parse(header)
    with pytest.raises(ReportError) as err:
        p.parse(f"CSI_DATA,9,aa:bb:cc:dd:ee:ff,-40,11,159,{'7' * 300},30,11,555,999999,100,2,128,0,[{' '.join(['1'] * 128)}]")
    assert err.value.reason == "bad_field"
