"""Generation-1 (prototype) stream: WebSocket messages of 516-byte sensor records."""
from __future__ import annotations

import struct

from .constants import G1_RECORD_SIZE, G1_TYPE_HEADER, g1_esp_num_row_col
from .errors import ProtocolError
from .report import SensorReport, check_rx_ctrl, dec_fraction_ns, parse_rx_ctrl_g1

_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<6s6sHIBB")
_Q = struct.Struct("<Q")


def parse_g1_message(message: bytes) -> list[SensorReport]:
    """Split a generation-1 WebSocket message into sensor reports.

    Records with another type header are skipped (as the reference client does). Raises
    ProtocolError if the length is not a multiple of 516 bytes or an esp_num is out of range.
    """
    if len(message) % G1_RECORD_SIZE:
        raise ProtocolError("truncated", f"G1 message of {len(message)} bytes is not a multiple of 516")
    reports = []
    for start in range(0, len(message), G1_RECORD_SIZE):
        esp_num, header = _HEAD.unpack_from(message, start)
        if header != G1_TYPE_HEADER:
            continue
        if esp_num > 7:
            raise ProtocolError("bad_sensor", f"G1 esp_num {esp_num}")
        buf = start + 4
        rx = check_rx_ctrl(parse_rx_ctrl_g1(message[buf + 4:buf + 40]))
        src, dst, seq_ctrl, ts32, is_calib, fwi = _BODY.unpack_from(message, buf + 40)
        global_us = _Q.unpack_from(message, buf + 444)[0]
        us = global_us if global_us else ts32
        t_ns = (us * 1000.0 - 20_800.0 + rx.rxstart_time_cyc * 12.5
                + dec_fraction_ns(rx.rxstart_time_cyc_dec))
        row, col = g1_esp_num_row_col(esp_num)
        reports.append(SensorReport(
            antenna_id=esp_num, row=row, col=col, src_mac=src, dst_mac=dst, seq_ctrl=seq_ctrl,
            retry=False, is_calib=bool(is_calib), first_word_invalid=bool(fwi), rx=rx,
            timestamp_ns=t_ns, acquire_flags=0, rf_switch_state=255,
            csi=message[buf + 60:buf + 444], generation=1,
            raw=message[start:start + G1_RECORD_SIZE]))
    return reports
