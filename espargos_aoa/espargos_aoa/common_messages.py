"""Message helpers every node of the suite uses (the drivers too): the /diagnostics status and the
CSI of a CsiArray. Light on purpose: the drivers import it, and the AoA estimator (scipy) would
add over a second to every driver's start-up."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from espargos_msgs.msg import CsiArray


def msg_to_csi(msg: CsiArray) -> np.ndarray:
    """CsiArray -> complex64 ``(rows, cols, subcarriers)`` (a copy-free view where possible)."""
    return np.frombuffer(msg.csi, np.complex64).reshape(msg.rows, msg.cols, len(msg.subcarrier_indices))


def diagnostic_status(name: str, hardware_id: str, level: bytes, message: str,
                      values: dict[str, object]) -> DiagnosticStatus:
    """One /diagnostics status; ``values`` become its key/value pairs (as strings)."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=level, message=message)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
