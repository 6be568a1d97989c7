"""Protocol constants of the ESPARGOS boards (see shared/spec/espargos-protocol.md).

Every choice the spec marks UNCONFIRMED is a named constant here, so that it can be
changed in one place once real hardware settles it.
"""
from __future__ import annotations

import numpy as np

SENSOR_PACKET_MAGIC = 0xDECAFBAD
"""u32 LE at the start of every generation-3 sensor packet."""

STREAM_MAGIC = bytes.fromhex("e5a76000")
"""First UDP datagram after the stream handshake (and ignorable on WebSocket)."""

CSI_TYPE_HEADER = 0xE4CD0BAC
"""Type header of a reassembled generation-3 CSI message."""

RADAR_TYPE_HEADER = 0x52545852
"""Type header of an (ignored) radar TX report."""

G1_RECORD_SIZE = 516
G1_TYPE_HEADER = 0x5A1F19B1

SUPPORTED_API_MAJOR = 3
KNOWN_REVISIONS = {("espargos", "densiflorus")}

DEFAULT_HTTP_PORT = 80
DEFAULT_STREAM_PORT = 53330
"""The controller's UDP source port; the client sends its handshake and keep-alives here."""

STREAM_KEEPALIVE_S = 1.0
STREAM_TIMEOUT_S = 5.0
REASSEMBLY_TIMEOUT_S = 5.0

HARDWARE_TIMESTAMP_LAG_NS = 20_800.0
RXSTART_CYCLE_NS = 12.5
RXSTART_DEC_HZ = 640e6

ROWS = 2
COLS = 4
ANTENNAS = ROWS * COLS
ANTENNA_SPACING_M = 0.06


def g3_antenna_row_col(antenna_id: int) -> tuple[int, int]:
    """Generation 3: antenna ID (UID bits 31..29) to (row, col) on the 2x4 board."""
    return 1 - antenna_id // 4, antenna_id % 4


def g1_esp_num_row_col(esp_num: int) -> tuple[int, int]:
    """Generation 1: controller sensor number to (row, col) on the 2x4 board."""
    return 1 - esp_num // 4, 3 - esp_num % 4


# Microstrip model of the reference-signal traces (both hardware generations).
_EPS_R, _H, _W = 4.3, 0.119, 0.2
_EPS_EFF = (_EPS_R + 1) / 2 + (_EPS_R - 1) / 2 * (1 + 12 * _H / _W) ** -0.5
TRACE_VELOCITY_M_S = 299_792_458.0 / np.sqrt(_EPS_EFF)
"""Group velocity on the reference traces, m/s (about 1.6685e8)."""

TRACE_LENGTHS_M = {
    "densiflorus": np.array([[0.0604561, 0.0373554, 0.1070395, 0.1770280],
                             [0.1076842, 0.0554654, 0.0806678, 0.1462569]]),
    "prototype": np.array([[0.0708462, 0.0229349, 0.0786856, 0.1423600],
                           [0.0838888, 0.0295291, 0.0671322, 0.1308537]]),
}
"""Reference-path PCB trace length per (row, col), metres."""

# UNCONFIRMED: whether board column 0 is on the left or right when the board is seen
# from the front (the side facing transmitters). +1 puts increasing column index
# towards +y of the array frame (left as seen from behind the board, right as seen from
# the front); -1 mirrors it. This sets the sign of every azimuth.
COLUMN_TOWARDS_Y = 1

# UNCONFIRMED: whether the chip reports H or conj(H). The driver publishes the library
# convention (see protocol.csi_formats); the simulator models the channel in that same
# domain with H = exp(-j 2 pi f tau).

# UNCONFIRMED: the CRC TLV must be the last TLV; bytes after it are not covered by
# the CRC and are ignored.
IGNORE_BYTES_AFTER_CRC = True
