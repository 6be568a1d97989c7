"""The one list of every counter the nodes report in /diagnostics, and their per-counter warnings.

Pure (no ROS). board_node, swarm_node, aoa_node and velocity_node publish every counter named
here; a test checks that the drivers count nothing that is not listed, and that the README's
tables are generated from these lists.
"""
from __future__ import annotations

from collections.abc import Mapping

BOARD_ACTIVITY = {
    "packets": "datagrams / WebSocket messages accepted from the board",
    "reports": "sensor reports decoded",
    "frames": "frames published",
}
BOARD_COUNTERS = {
    # what arrives from outside the board
    "foreign_source": "datagrams not from the board's address and stream port, dropped unparsed",
    "kernel_drops": "datagrams the kernel dropped because the socket's receive buffer was full",
    # framing and reassembly
    "bad_magic": "sensor packet without the 0xDECAFBAD magic",
    "truncated": "packet, fragment, TLV or G1 message shorter than it says",
    "bad_fragment": "fragment index not below the fragment count",
    "mixed_antennas": "fragments of several antennas in one packet",
    "duplicate_fragment": "fragment received twice",
    "fragment_restart": "fragment whose count differs from the partial message's",
    "incomplete_message": "partial message expired (a fragment never came)",
    "oversize_message": "message that grew past the reassembly limit (MAX_MESSAGE_BYTES)",
    "reassembly_overflow": "partial message dropped to stay within the reassembly byte budget",
    # message decoding
    "bad_crc": "CRC-32 mismatch or malformed CRC TLV",
    "missing_crc": "CSI message without CRC TLV",
    "unknown_message": "message with an unknown type header",
    "missing_rx_ctrl": "CSI message without rx_ctrl",
    "missing_frame_meta": "CSI message without frame metadata",
    "missing_timing": "CSI message without timing metadata",
    "bad_channel": "rx_ctrl names no WiFi channel or secondary-channel code",
    "bad_sensor": "generation-1 record of a sensor number above 7",
    "compressed_csi": "compressed CSI (not supported: keep compress_csi off)",
    "short_csi": "CSI shorter than its format needs",
    "no_csi": "frame whose reports carry no usable CSI",
    "unexpected_error": "input that raised an error no decoder declared (a bug: please report it)",
    # clustering
    "duplicate_report": "sensor report received twice",
    "collision": "two different reports of one antenna for one frame",
    "incomplete_frame": "frame dropped with fewer than antennas_required antennas",
    "partial_frame": "frame published with a mask after frame_timeout",
    "evicted_frame": "open frame dropped to stay within the clustering limits",
    "format_mismatch": "reports excluded from a frame for another CSI format",
    "frames_missed": "gaps in a transmitter's sequence numbers: frames sent but not published",
    "frames_out_of_order": "frame published after a later one of the same transmitter",
    "reference_frames_ignored": "reference (calibration) frames outside a calibration: is the RF switch "
                                "left on REFERENCE?",
    # connection and calibration
    "silence": "no data from the board for the silence timeout",
    "reconnects": "reconnection attempts",
    "unreachable": "board not reachable over HTTP or not streaming",
    "http_status": "HTTP request answered with an error status",
    "not_espargos": "/identify did not answer as an ESPARGOS controller",
    "api_version": "controller API version not supported",
    "handshake": "no stream magic after /stream_udp",
    "stream_closed": "WebSocket stream closed",
    "bad_response": "HTTP answer that cannot be parsed",
    "socket_error": "socket error in the receive loop",
    "reader_error": "unexpected error in the receive loop (answered by a reconnect)",
    "reader_restarts": "receive threads restarted after they died",
    "calibration_failures": "calibrations that failed",
    "calibration_rejected": "stored or previous calibrations that a verification burst found wrong",
    "calibration_reconnect": "calibrations made stale by a (re)connection (re-verified before use)",
    "calibration_reboot": "calibrations made stale by a board reboot (re-verified before use)",
    "calibration_channel_change": "calibrations made stale by frames on another channel",
    "board_reboots": "board reboots seen as sensor timestamps going back",
    "rf_switch_restored": "RF switch found on REFERENCE or ISOLATION at connection and put back on the antennas",
}
SWARM_ACTIVITY = {
    "datagrams": "UDP datagrams received",
    "lines": "text lines received",
    "reports": "reports published",
    "other_lines": "text lines that are not CSI (logs, headers)",
    "keepalive_sent": "ICMP echo requests sent",
}
SWARM_COUNTERS = {
    "foreign_source": "datagrams from addresses the allowlist does not name, dropped unparsed",
    "not_allowed": "reports of nodes or MACs the allowlist does not name",
    "sender_evicted": "senders forgotten to keep per-sender state bounded (MAX_SENDERS)",
    "wrong_magic": "binary datagram with an unknown magic",
    "truncated": "datagram shorter than its header says",
    "odd_length": "CSI bytes not in (imaginary, real) pairs",
    "bad_length": "datagram longer than its header and optional timestamp",
    "bad_antennas": "binary frame of more than one antenna",
    "not_utf8": "text line that is not UTF-8",
    "line_too_long": "text without a newline beyond MAX_LINE_BYTES, discarded",
    "cut_line": "text line whose CSI array is not closed",
    "bad_value": "CSI value that is no integer or outside int8",
    "bad_field": "numeric field that is no integer or outside its C type's range",
    "unknown_columns": "text line whose column count no header or known format names",
    "unknown_layout": "buffer length that matches no LTF of the chip family",
    "unknown_chip": "chip family not known",
    "short_csi": "fewer CSI entries than the first LTF needs",
    "no_csi": "fewer than half the subcarriers measured",
    "bad_channel": "frequency or channel that is no WiFi channel",
    "no_channel": "report without channel, and none configured",
    "unexpected_error": "input that raised an error no parser declared (a bug: please report it)",
    "node_lost": "nodes silent for node_timeout",
    "socket_error": "socket errors",
    "serial_errors": "serial port failures",
    "serial_reopened": "serial port reopened",
    "file_errors": "log file cannot be read",
    "reader_error": "unexpected error in a reader thread (it keeps going)",
    "reader_restarts": "reader threads restarted after they died",
    "keepalive_unavailable": "keep-alive impossible (no ping or raw socket)",
    "keepalive_errors": "keep-alive sends that failed",
}
AOA_COUNTERS = {
    "no_geometry": "CSI dropped for want of a usable ArrayGeometry (up to 200 frames are kept until one arrives)",
    "bad_geometry": "ArrayGeometry the estimator cannot use",
    "geometry_mismatch": "CSI whose antennas do not match the geometry",
    "single_antenna": "CSI of a single antenna (no angle)",
    "bad_csi_message": "CsiArray whose fields do not agree",
    "uncalibrated": "uncalibrated CSI (require_calibrated)",
    "too_few_antennas": "frames with fewer than min_antennas antennas",
    "nan_csi": "CSI with NaN where the mask says measured",
    "too_few_frames": "updates with fewer than min_frames frames in the window",
    "antenna_pair_missing": "windows in which some antenna pair never reported together",
    "no_signal": "windows without signal power",
    "no_source": "updates without a spectrum peak above min_peak_db",
    "window_restart_stamp_back": "windows restarted by a frame older than the newest (bag restarted, or out of order)",
    "window_restart_grid_change": "windows restarted by a new subcarrier grid or antenna count",
    "frames_missed": "frames missing from a transmitter's sequence numbers: lost in the air, by the driver, "
                     "or by DDS when this node falls behind its input",
}
"""aoa_node: why an update gave no bearing, and input it never saw."""
VELOCITY_COUNTERS = {
    "not_single_antenna": "CsiArray with more than one antenna",
    "bad_csi_message": "CsiArray whose fields do not agree",
    "nan_csi": "CsiArray with NaN or infinite CSI",
    "unknown_transmitter": "reports from a transmitter MAC the nodes map does not name",
    "unpaired": "reports whose other direction never came (lost frame or report)",
    "late_pairs": "exchanges that arrived after reorder_delay of newer ones (dropped)",
    "unsupported_updates": "updates of links too noisy for velocity (published UNKNOWN, NaN velocity)",
}
"""velocity_node: reports and updates that give no velocity."""
OTHER_PREFIX = "other_"
"""Swarm counters ``other_<name>``: RuView packets of other kinds on the port (see swarm.binary)."""
WARN_EVERY_S = 5.0


class CounterWarnings:
    """Per-counter throttled warnings with exact counts: each counter that grew is reported at
    most once per ``every_s``, with the number of new events since its last report."""

    def __init__(self, names: list[str] | tuple[str, ...] | Mapping[str, str], every_s: float = WARN_EVERY_S) -> None:
        self.names = tuple(names)
        self.every_s = every_s
        self._reported: dict[str, int] = {}
        self._when: dict[str, float] = {}

    def due(self, counts: Mapping[str, int], now: float) -> list[tuple[str, int]]:
        """(counter, new events since its last report) for each counter due a warning at ``now`` (s)."""
        out = []
        for name in self.names:
            value = counts.get(name, 0)
            new = value - self._reported.get(name, 0)
            if new > 0 and now - self._when.get(name, -float("inf")) >= self.every_s:
                out.append((name, new))
                self._reported[name] = value
                self._when[name] = now
        return out


README_TABLES = {"board-counters": BOARD_COUNTERS, "swarm-counters": SWARM_COUNTERS, "aoa-counters": AOA_COUNTERS,
                 "velocity-counters": VELOCITY_COUNTERS}
"""README sections (between ``<!-- name -->`` and ``<!-- /name -->``) generated from the lists."""


def markdown_table(counters: Mapping[str, str]) -> str:
    """A two-column Markdown table of counter names and meanings."""
    return "\n".join(["| counter | counts |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in counters.items()])


def update_readme(text: str) -> str:
    """``text`` with every README_TABLES section replaced by its generated table."""
    for name, counters in README_TABLES.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        head, found, rest = text.partition(start)
        if not found:
            raise ValueError(f"README has no {start} section")
        text = head + start + "\n" + markdown_table(counters) + "\n" + end + rest.partition(end)[2]
    return text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(update_readme(readme.read_text()))
