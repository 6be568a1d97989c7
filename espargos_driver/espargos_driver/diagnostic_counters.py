"""The counters board_node and swarm_node report in /diagnostics, and the README tables of all four
nodes' counters (aoa_node's and velocity_node's lists live in espargos_aoa.diagnostic_counters).

Pure (no ROS). Each node publishes every counter named in its list; a test checks that the drivers
count nothing that is not listed, and that the README's tables are generated from these lists:
``python -m espargos_driver.diagnostic_counters README.md``.
"""
from __future__ import annotations

from collections.abc import Mapping

from espargos_aoa.diagnostic_counters import AOA_COUNTERS, LOCATOR_COUNTERS, VELOCITY_COUNTERS, VITALS_COUNTERS

from .readme_sections import regenerate, replace_section

BOARD_ACTIVITY = {
    "packets": "datagrams / WebSocket messages accepted from the board",
    "reports": "sensor reports decoded",
    "frames": "frames published",
}
KERNEL_DROPS = {"kernel_drops": "datagrams the kernel dropped because the socket's receive buffer was full"}
"""Counted by every UDP reader (board stream, swarm port): one text for both."""
BOARD_COUNTERS = {
    # lifecycle
    "invalid_transitions": "lifecycle transitions requested that the current state does not have (refused)",
    # what arrives from outside the board
    "foreign_source": "datagrams not from the board's address and stream port, dropped unparsed",
    **KERNEL_DROPS,
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
    "invalid_transitions": "lifecycle transitions requested that the current state does not have (refused)",
    "foreign_source": "datagrams from addresses the allowlist does not name, dropped unparsed",
    **KERNEL_DROPS,
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
OTHER_PREFIX = "other_"
"""Swarm counters ``other_<name>``: RuView packets of other kinds on the port (see swarm.binary)."""
README_TABLES = {"board-counters": BOARD_COUNTERS, "swarm-counters": SWARM_COUNTERS, "aoa-counters": AOA_COUNTERS,
                 "velocity-counters": VELOCITY_COUNTERS, "locator-counters": LOCATOR_COUNTERS,
                 "vitals-counters": VITALS_COUNTERS}
"""README sections (between ``<!-- name -->`` and ``<!-- /name -->``) generated from the lists."""


def markdown_table(counters: Mapping[str, str]) -> str:
    """A two-column Markdown table of counter names and meanings."""
    return "\n".join(["| counter | counts |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in counters.items()])


def update_readme(text: str) -> str:
    """``text`` with every README_TABLES section replaced by its generated table, and the parameter tables
    of locator_node and vital_signs_node.

    The estimators are imported here, not at the top: the nodes import this module for their counter
    lists, and the estimators' scipy imports would cost each of them about a second of start-up CPU.
    """
    from espargos_aoa.locate import parameter_table
    from espargos_aoa.swarm_vitals import parameter_table as vitals_parameter_table

    for name, counters in README_TABLES.items():
        text = replace_section(text, name, markdown_table(counters))
    text = replace_section(text, "vitals-parameters", vitals_parameter_table())
    return replace_section(text, "locator-parameters", parameter_table())


if __name__ == "__main__":
    regenerate(update_readme)
