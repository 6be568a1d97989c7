"""CSV lines of esp-csi (classic and C5/C6 column sets, console_test) and ESP32-CSI-Tool.

A line starting ``type,`` is a header: its column names are used for the lines that follow.
Without one, the column count names the set (spec section 3). Lines that do not start with
``CSI_DATA`` are not CSI (logs, other record types) and are skipped.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np

from .report import NodeReport, ReportError

CLASSIC = ("type,id,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,aggregation,stbc,fec_coding,sgi,"
           "noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,sig_len,rx_state,len,first_word,data")
C5_C6 = "type,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,local_timestamp,sig_len,rx_state,len,first_word,data"
CONSOLE_TEST = ("type,sequence,timestamp,taget_seq,taget,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,"
                "aggregation,stbc,fec_coding,sgi,noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,"
                "sig_len,rx_state,agc_gain,fft_gain,len,first_word,data")
CSI_TOOL = ("type,role,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,aggregation,stbc,fec_coding,sgi,"
            "noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,sig_len,rx_state,real_time_set,"
            "real_timestamp,len,data")
BY_COLUMN_COUNT = {25: CLASSIC, 15: C5_C6, 30: CONSOLE_TEST, 26: CSI_TOOL, 27: CSI_TOOL + ",host_time"}
SECONDARY = {0: 0, 1: 1, 2: -1}
"""ESP-IDF secondary_channel code -> +1 above / -1 below / 0 none."""
FIELD_RANGES = {
    "rssi": (-128, 127), "noise_floor": (-128, 255), "channel": (0, 255), "secondary_channel": (0, 2),
    "sig_mode": (0, 3), "bandwidth": (0, 1), "stbc": (0, 1), "rx_format": (0, 15), "first_word": (0, 1),
    "len": (0, 4096), "seq": (0, 2**32 - 1), "sequence": (0, 2**32 - 1), "local_timestamp": (0, 2**64 - 1),
    "agc_gain": (-128, 255), "fft_gain": (-128, 255),
}
"""Inclusive range of every numeric field the parser uses: the widths of the firmware's C types
(int8/uint8 gains and RSSI, 2-bit sig_mode, 12-bit len, u32 sequence, u64 timestamp). A value
outside is ``bad_field``; a CSI value outside int8 is ``bad_value``."""
CSI_TOOL_FIRST_WORD_INVALID = True
"""ESP32-CSI-Tool prints no ``first_word`` column. It runs only on classic ESP32 chips, whose
first four CSI bytes are always invalid (they hold sig_len), so its lines are read as if the
column said 1: otherwise, without a secondary channel, that value lands on bin k=+1."""
MAX_FIELD_DIGITS = 24
"""Longer numeric text is refused before conversion (the widest field, u64, has 20 digits)."""


class LineParser:
    """Stateful: remembers the latest header line. ``parse`` returns a NodeReport, None for a
    line that is not CSI (header, log), or raises ReportError with the reason."""

    def __init__(self) -> None:
        self.columns: list[str] | None = None

    def parse(self, raw: bytes | str) -> NodeReport | None:
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as err:
            raise ReportError("not_utf8", f"line is not UTF-8: {err}") from err
        line = line.strip().strip("\x00")
        if line.startswith("type,"):
            self.columns = [c.strip() for c in line.split(",")]
            return None
        if not line.startswith("CSI_DATA"):
            return None
        meta, values, tail = _split(line)
        fields = meta + ["<data>"] + tail
        names = self.columns if self.columns is not None and len(self.columns) == len(fields) else None
        if names is None:
            known = BY_COLUMN_COUNT.get(len(fields))
            if known is None:
                raise ReportError("unknown_columns", f"{len(fields)} columns, and no header line names them")
            names = known.split(",")
        row = dict(zip(names, fields))
        return _report(row, values)


def _split(line: str) -> tuple[list[str], np.ndarray, list[str]]:
    """metadata fields, CSI values, fields after the CSI array."""
    start = line.find("[")
    if start < 0:
        meta = line.split(",")
        data = meta.pop().strip().strip('"')
        try:
            values = np.frombuffer(base64.b64decode(data, validate=True), np.int8).astype(np.int16)
        except (binascii.Error, ValueError) as err:
            raise ReportError("cut_line", "no CSI array in the line (cut?)") from err
        return meta, values, []
    end = line.find("]", start)
    if end < 0:
        raise ReportError("cut_line", "CSI array is not closed: line cut")
    meta = line[:start].rstrip('"').rstrip(",").split(",")
    body = line[start + 1:end].replace(",", " ").split()
    if any(len(v) > MAX_FIELD_DIGITS for v in body):
        raise ReportError("bad_value", f"CSI value of more than {MAX_FIELD_DIGITS} characters")
    try:
        ints = [int(v) for v in body]
    except ValueError as err:
        raise ReportError("bad_value", f"CSI array holds a non-integer: {err}") from err
    if ints and (min(ints) < -128 or max(ints) > 127):
        raise ReportError("bad_value", f"CSI value {min(ints) if min(ints) < -128 else max(ints)} outside int8")
    values = np.array(ints, np.int16)
    tail = line[end + 1:].lstrip('"').split(",")[1:]
    return meta, values, tail


def _int(row: dict, name: str) -> int | None:
    """The integer field ``name`` (None if absent or empty), within FIELD_RANGES; bad_field otherwise."""
    value = row.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        if len(value) > MAX_FIELD_DIGITS:
            raise ValueError(f"{len(value)} characters")
        number = int(value)
    except ValueError as err:
        raise ReportError("bad_field", f"{name} = {value[:40]!r} is not an integer") from err
    low, high = FIELD_RANGES.get(name, (-2**63, 2**63 - 1))
    if not low <= number <= high:
        raise ReportError("bad_field", f"{name} = {number} outside {low}..{high}")
    return number


def _report(row: dict, values: np.ndarray) -> NodeReport:
    if values.size % 2:
        raise ReportError("odd_length", f"{values.size} CSI values: not (imaginary, real) pairs")
    declared = _int(row, "len")
    if declared is None:
        raise ReportError("bad_field", f"len = {row.get('len')!r}")
    mac_text = row.get("mac", "")
    try:
        mac = bytes.fromhex(mac_text.replace(":", "")) if mac_text else None
    except ValueError as err:
        raise ReportError("bad_field", f"mac = {mac_text!r}") from err
    noise = _int(row, "noise_floor")
    if noise is not None and noise > 127:             # C5 declares it unsigned
        noise -= 256
    secondary = _int(row, "secondary_channel")
    sig_mode, bandwidth, stbc = _int(row, "sig_mode"), _int(row, "bandwidth"), _int(row, "stbc")
    fft = _int(row, "fft_gain")
    return NodeReport(
        values=values, declared_len=declared, transmitter_mac=mac if mac and len(mac) == 6 else None,
        sequence=_int(row, "seq") if "seq" in row else _int(row, "sequence") if "sequence" in row else None,
        rssi_dbm=_float(_int(row, "rssi")), noise_floor_dbm=_float(noise), channel=_int(row, "channel"),
        secondary=SECONDARY.get(secondary) if secondary is not None else None,
        ht=None if sig_mode is None else sig_mode == 1, bandwidth_40=None if bandwidth is None else bandwidth == 1,
        stbc=None if stbc is None else stbc == 1, bb_format=_int(row, "rx_format"),
        first_word_invalid=(bool(_int(row, "first_word") or 0) if "first_word" in row
                            else CSI_TOOL_FIRST_WORD_INVALID if "real_time_set" in row else False),
        sensor_time_us=_int(row, "local_timestamp"),
        agc_gain_db=_float(_int(row, "agc_gain")), fft_gain_db=None if fft is None else fft / 4.0)


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)


def classic_line(sequence: int, mac: str, rssi_dbm: int, noise_floor_dbm: int, channel: int, secondary_code: int,
                 local_timestamp_us: int, values: np.ndarray, ht: bool = True) -> bytes:
    """An esp-csi classic ``CSI_DATA`` line (25 columns, quoted comma list), as csi_recv prints it."""
    data = ",".join(str(int(v)) for v in values)
    return (f"CSI_DATA,{sequence},{mac},{rssi_dbm},11,{int(ht)},7,0,1,1,1,0,0,1,{noise_floor_dbm},0,{channel},"
            f'{secondary_code},{local_timestamp_us},0,100,0,{len(values)},0,"[{data}]"\n').encode()
