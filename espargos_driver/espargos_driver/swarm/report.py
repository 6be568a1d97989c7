"""One CSI report of a single-antenna node, whatever format it arrived in."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ReportError(ValueError):
    """A datagram or line that cannot be used; ``reason`` is its diagnostics counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class NodeReport:
    """Fields a node reported; None where its format does not carry them.

    ``values``: the raw int8 buffer as printed/sent (ESP-IDF order, imaginary byte first);
    ``declared_len``: the firmware's ``len`` (bytes), which may exceed ``values.size``.
    """

    values: np.ndarray
    declared_len: int
    node_id: int | None = None
    transmitter_mac: bytes | None = None
    sequence: int | None = None
    rssi_dbm: float | None = None
    noise_floor_dbm: float | None = None
    channel: int | None = None
    freq_mhz: int | None = None
    secondary: int | None = None
    """+1 above, -1 below, 0 none."""
    ht: bool | None = None
    """sig_mode (classic chips): HT (True) or non-HT (False)."""
    bandwidth_40: bool | None = None
    stbc: bool | None = None
    bb_format: int | None = None
    """cur_bb_format of PHY-v3 chips: 0 11b, 1 11g, 2 HT, 3 VHT, 4..7 HE."""
    first_word_invalid: bool = False
    sensor_time_us: int | None = None
    agc_gain_db: float | None = None
    fft_gain_db: float | None = None
