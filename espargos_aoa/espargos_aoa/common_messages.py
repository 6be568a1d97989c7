"""Message helpers every node of the suite uses (the drivers too): the /diagnostics status and the
CSI of a CsiArray. Light on purpose: the drivers import it, and the AoA estimator (scipy) would
add over a second to every driver's start-up."""
from __future__ import annotations

from collections import Counter

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from espargos_msgs.msg import CsiArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from .csi_wire import SCHEMA, LayoutCache
from .input_loss import InputLoss

CSI_QUEUE_DEPTH = 1000
"""Reliable history of the csi topic, at its publishers and its subscribers: a subscriber that
stalls for 2 s of swarm reports (500/s) or 10 s of one board at 100 frames/s (0.2 s at 5,000)
loses nothing. What is lost all the same shows as gaps in CsiArray.source_sequence."""


def csi_qos() -> QoSProfile:
    """The QoS of the csi topic (CsiArray) at the drivers and the reliable subscribers."""
    return QoSProfile(depth=CSI_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)


_FIELDS = tuple(name for name, _ in SCHEMA if not name.startswith("header."))


class CsiArrayView:
    """A CsiArray read from its serialized bytes (``CsiArrayReader``): CsiArray's fields under their
    names, sequences as read-only numpy arrays, MACs as bytes; ``header`` is a std_msgs Header."""

    __slots__ = ("header", *_FIELDS)

    def __init__(self, header: Header, fields: dict[str, object]) -> None:
        self.header = header
        for name in _FIELDS:
            setattr(self, name, fields[name])


class CsiArrayReader:
    """Serialized CsiArray (the bytes of a ``raw=True`` subscription) -> CsiArrayView, at about a
    fifth of the cost of rclpy's deserialization (see espargos_aoa.csi_wire)."""

    def __init__(self) -> None:
        self._layouts = LayoutCache()

    def __call__(self, data: bytes) -> CsiArrayView:
        """ValueError if ``data`` is no serialized CsiArray."""
        layout, values = self._layouts.unpack(data)
        fields = layout.fields(values)
        header = Header(stamp=Time(sec=fields["stamp.sec"], nanosec=fields["stamp.nanosec"]), frame_id=fields["frame_id"])
        return CsiArrayView(header, fields)


class CsiInput:
    """The bytes of a ``raw=True`` csi subscription -> CsiArrayView (None if they are no CsiArray),
    counted in ``counters`` as every CSI subscriber counts them: each message under ``received``
    (``reports`` for the swarm nodes' subscribers, ``frames`` for aoa_node), ``bad_csi_message``
    (why the last one was bad: ``last_error``), and ``input_lost`` (messages lost on the way, see
    InputLoss)."""

    def __init__(self, counters: Counter, received: str = "reports") -> None:
        self.counters = counters
        self.received = received
        self.last_error = ""
        self._read = CsiArrayReader()
        self._loss = InputLoss()

    def __call__(self, data: bytes) -> CsiArrayView | None:
        self.counters[self.received] += 1
        try:
            msg = self._read(data)
        except ValueError as err:
            self.counters["bad_csi_message"] += 1
            self.last_error = f"{len(data)} bytes that are no CsiArray: {err}"
            return None
        self.counters["input_lost"] += self._loss.add(msg.source_id, msg.source_sequence)
        return msg


def msg_to_csi(msg: CsiArray) -> np.ndarray:
    """CsiArray -> complex64 ``(rows, cols, subcarriers)`` (a copy-free view where possible)."""
    return np.frombuffer(msg.csi, np.complex64).reshape(msg.rows, msg.cols, len(msg.subcarrier_indices))


def diagnostic_status(name: str, hardware_id: str, level: bytes, message: str,
                      values: dict[str, object]) -> DiagnosticStatus:
    """One /diagnostics status; ``values`` become its key/value pairs (as strings)."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=level, message=message)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
