"""CsiFrame / swarm-node frame / geometry -> ROS messages (espargos_msgs)."""
from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from espargos_aoa.csi_wire import Layout, LayoutCache
from espargos_aoa.input_loss import SEQUENCE_WRAP
from espargos_msgs.msg import ArrayGeometry, CsiArray
from geometry_msgs.msg import Point

from .frame import CsiFrame
from .swarm.ingest import NodeFrame
from .wifi import GRIDS, CsiFormat


def _f32(values: np.ndarray) -> array.array:
    """numpy -> array.array('f') without per-element conversion."""
    return array.array("f", np.ascontiguousarray(values, np.float32).tobytes())


def frame_to_msg(frame: CsiFrame, stamp: Time, frame_id: str, source_id: str, source_sequence: int = 0) -> CsiArray:
    """One CsiFrame of a single board or combined array -> CsiArray with a (rows, cols) grid;
    ``source_sequence``: the number of CsiArrays published for ``source_id`` before this one."""
    *lead, bins = frame.csi.shape
    rows = math.prod(lead[:-1])
    cols = int(lead[-1])
    msg = CsiArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.source_id = source_id
    msg.source_sequence = source_sequence % SEQUENCE_WRAP
    src, dst, seq, frag, retry = frame.key
    msg.transmitter_mac = list(src)
    msg.receiver_mac = list(dst)
    msg.sequence_number = seq
    msg.fragment_number = frag
    msg.retry = retry
    msg.is_reference = frame.is_reference
    msg.channel = frame.channel
    msg.secondary_channel = frame.secondary
    msg.format = int(frame.format)
    grid = frame.grid
    msg.center_frequency_hz = frame.center_frequency_hz
    msg.subcarrier_spacing_hz = grid.spacing_hz
    msg.subcarrier_indices = array.array("h", grid.indices.tobytes())
    msg.interpolated_bins = array.array("H", grid.interpolated)
    msg.rows = rows
    msg.cols = cols
    msg.csi = array.array("f", np.ascontiguousarray(frame.csi, np.complex64).tobytes())
    msg.antenna_mask = frame.mask.reshape(-1).tolist()
    msg.rssi_dbm = _f32(frame.rssi_dbm)
    msg.noise_floor_dbm = _f32(frame.noise_floor_dbm)
    msg.rx_gain_db = _f32(frame.rx_gain_db)
    msg.fft_gain_db = _f32(frame.fft_gain_db)
    msg.cfo_hz = _f32(frame.cfo_hz)
    msg.sensor_timestamps = array.array("d", (frame.timestamps_ns.reshape(-1) * 1e-9).tobytes())
    msg.calibrated = frame.calibrated
    return msg


class CsiArraySerializer:
    """CsiFrame -> serialized CsiArray (``Publisher.publish`` takes the bytes), the same message as
    ``frame_to_msg`` at a seventh of its cost (see espargos_aoa.csi_wire)."""

    def __init__(self, frame_id: str, source_id: str) -> None:
        self.frame_id = frame_id.encode()
        self.source_id = source_id.encode()
        self._layouts = LayoutCache()
        self._grids: dict[CsiFormat, tuple[bytes, bytes]] = {}

    def __call__(self, frame: CsiFrame, stamp_ns: int, source_sequence: int = 0) -> bytes:
        """``stamp_ns``: header stamp, ns since the epoch of the node's clock; ``source_sequence``:
        CsiArrays published for this source before this one."""
        *lead, bins = frame.csi.shape
        antennas = frame.mask.size
        grid = self._grids.get(frame.format)
        if grid is None:
            spec = frame.grid
            grid = self._grids[frame.format] = (spec.indices.tobytes(), np.array(spec.interpolated, np.uint16).tobytes())
        indices, interpolated = grid
        layout: Layout = self._layouts.get((len(self.frame_id) + 1, len(self.source_id) + 1, bins, len(interpolated) // 2,
                                            2 * antennas * bins, antennas, antennas, antennas, antennas, antennas,
                                            antennas, antennas))
        src, dst, seq, frag, retry = frame.key
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return layout.pack(
            sec, nanosec, len(self.frame_id) + 1, self.frame_id, len(self.source_id) + 1, self.source_id,
            source_sequence % SEQUENCE_WRAP, src, dst, seq,
            frag, retry, frame.is_reference, frame.channel, frame.secondary, int(frame.format), frame.center_frequency_hz,
            frame.grid.spacing_hz, bins, indices, len(interpolated) // 2, interpolated, math.prod(lead[:-1]), lead[-1],
            2 * antennas * bins, np.ascontiguousarray(frame.csi, np.complex64).tobytes(),
            antennas, frame.mask.tobytes(), antennas, frame.rssi_dbm.astype(np.float32).tobytes(),
            antennas, frame.noise_floor_dbm.astype(np.float32).tobytes(), antennas, frame.rx_gain_db.astype(np.float32).tobytes(),
            antennas, frame.fft_gain_db.astype(np.float32).tobytes(), antennas, frame.cfo_hz.astype(np.float32).tobytes(),
            antennas, (frame.timestamps_ns * 1e-9).tobytes(), frame.calibrated)


def serializer_matches_middleware(serializer: CsiArraySerializer) -> bool:
    """Whether the middleware in use reads ``serializer``'s bytes as the message ``frame_to_msg``
    builds, for a sample frame of every format (False: publish messages instead)."""
    from rclpy.serialization import deserialize_message
    rng = np.random.default_rng(0)
    for fmt, grid in GRIDS.items():
        shape = (1, 2, 4)
        frame = CsiFrame(key=(b"\x02\x00\x00\x00\x00\x01", b"\xff" * 6, 4095, 1, True), format=fmt, channel=11,
                         secondary=-1 if fmt == CsiFormat.HT40 else 0,
                         csi=(rng.normal(size=shape + (grid.size,)) + 1j).astype(np.complex64),
                         mask=rng.random(shape) < 0.5, timestamps_ns=rng.uniform(0, 1e12, shape),
                         rssi_dbm=np.full(shape, -50.0), noise_floor_dbm=np.full(shape, -95.0), rx_gain_db=np.full(shape, 20.0),
                         fft_gain_db=np.full(shape, 0.25), cfo_hz=np.full(shape, -1234.0), is_reference=fmt == CsiFormat.LLTF,
                         host_time=0.0, completed_at=0.0, calibrated=fmt != CsiFormat.LLTF)
        stamp_ns, number = 1_700_000_000_123_456_789, 4_000_000_000 + int(fmt)
        try:
            received = deserialize_message(serializer(frame, stamp_ns, number), CsiArray)
        except Exception:  # noqa: BLE001 - any failure means: do not rely on it
            return False
        if received != frame_to_msg(frame, Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                    serializer.frame_id.decode(), serializer.source_id.decode(), number):
            return False
    return True


def geometry_msg(positions_m: np.ndarray, labels: list[str], stamp: Time, frame_id: str,
                 source_id: str) -> ArrayGeometry:
    """Antenna positions ``(rows, cols, 3)`` in metres -> ArrayGeometry."""
    rows, cols, _ = positions_m.shape
    msg = ArrayGeometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.source_id = source_id
    msg.rows, msg.cols = rows, cols
    msg.antenna_positions = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in positions_m.reshape(-1, 3)]
    msg.antenna_labels = labels
    return msg


def node_frame_to_msg(frame: NodeFrame, stamp: Time, frame_id: str, source_sequence: int = 0) -> CsiArray:
    """One single-antenna swarm-node report -> CsiArray with rows = cols = 1; ``source_sequence``:
    the number of CsiArrays published for this node before this one."""
    report, grid = frame.report, GRIDS[frame.csi.format]
    msg = CsiArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.source_id = frame.node
    msg.source_sequence = source_sequence % SEQUENCE_WRAP
    msg.transmitter_mac = list(report.transmitter_mac or bytes(6))
    msg.sequence_number = (report.sequence or 0) & 0xFFF
    msg.channel = frame.channel
    msg.secondary_channel = frame.secondary
    msg.format = int(frame.csi.format)
    msg.center_frequency_hz = frame.center_frequency_hz
    msg.subcarrier_spacing_hz = grid.spacing_hz
    msg.subcarrier_indices = array.array("h", grid.indices.tobytes())
    msg.interpolated_bins = array.array("H", frame.csi.interpolated)
    msg.rows = msg.cols = 1
    msg.csi = array.array("f", np.ascontiguousarray(frame.csi.csi, np.complex64).tobytes())
    msg.antenna_mask = [True]
    nan = float("nan")
    msg.rssi_dbm = array.array("f", [nan if report.rssi_dbm is None else report.rssi_dbm])
    msg.noise_floor_dbm = array.array("f", [nan if report.noise_floor_dbm is None else report.noise_floor_dbm])
    msg.rx_gain_db = array.array("f", [nan if report.agc_gain_db is None else report.agc_gain_db])
    msg.fft_gain_db = array.array("f", [nan if report.fft_gain_db is None else report.fft_gain_db])
    msg.cfo_hz = array.array("f", [nan])
    msg.sensor_timestamps = array.array("d", [nan if report.sensor_time_us is None else report.sensor_time_us * 1e-6])
    return msg
