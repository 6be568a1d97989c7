"""CsiArraySerializer (bytes written directly) against frame_to_msg through rclpy's deserializer."""
from __future__ import annotations

import array
from collections import Counter

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message

from espargos_driver.cluster import FrameClusterer
from espargos_driver.layout import ArrayLayout, BoardSpec
from espargos_driver.messages import CsiArraySerializer, frame_to_msg, serializer_matches_middleware
from espargos_driver.protocol.constants import ANTENNAS
from espargos_driver.receiver import BoardReceiver
from espargos_driver.sim.board import SimulatedRig
from espargos_driver.sim.scenario import Scenario
from espargos_driver.wifi import CsiFormat
from espargos_msgs.msg import CsiArray


def assert_same_message(got: CsiArray, want: CsiArray) -> None:
    """Field by field; arrays by their bytes, so that NaN (antennas that did not report) compares."""
    for name in CsiArray.get_fields_and_field_types():
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, (array.array, np.ndarray)):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
        else:
            assert a == b, name


def simulated_frames(fmt: str, boards: int, report_loss: float = 0.0) -> list:
    """Frames decoded from the simulator's packets: one board or a combined array of ``boards``."""
    scenario = Scenario.from_dict({"format": fmt, "secondary": 1 if fmt == "ht40" else 0,
                                   "impairments": {"report_loss": report_loss}})
    layout = ArrayLayout([BoardSpec(f"b{i}", "127.0.0.1", 80 + i, 1 + i) for i in range(boards)],
                         np.arange(boards * ANTENNAS).reshape(-1, 4), ["N"] * boards)
    rig = SimulatedRig(scenario, layout)
    rig.precompute(6)
    clusterer = FrameClusterer(Counter(), boards=boards, antennas_required=1)
    receivers = [BoardReceiver(clusterer, board=b) for b in range(boards)]
    frames = []
    for entry in range(6):
        for b, board in enumerate(rig.boards):
            for packet in board.replay[entry][1]:
                frames += receivers[b].feed(packet, 0.0)
    frames += clusterer.expire(10.0)
    return frames


@pytest.mark.parametrize(("fmt", "boards"), [("ht40", 1), ("lltf", 1), ("ht20", 1), ("he20", 1), ("ht40", 4)])
def test_serialized_frames_read_back_as_frame_to_msg(fmt, boards):
    frames = simulated_frames(fmt, boards)
    assert frames and all(f.format == CsiFormat[fmt.upper()] for f in frames)
    serialize = CsiArraySerializer("espargos_array", "espargos")
    for i, frame in enumerate(frames):
        stamp_ns = 1_800_000_000_000_000_000 + 123_456_789 * i
        number = (1 << 32) - 2 + i                                   # wraps after the second frame
        got = deserialize_message(serialize(frame, stamp_ns, number), CsiArray)
        assert got.source_sequence == number % (1 << 32)
        assert_same_message(got, frame_to_msg(frame, Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                              "espargos_array", "espargos", number))


def test_partial_frames_keep_their_nan_and_mask():
    frames = [f for f in simulated_frames("ht40", 1, report_loss=0.3) if not f.mask.all()]
    assert frames
    serialize = CsiArraySerializer("a", "b")
    for frame in frames:
        got = deserialize_message(serialize(frame, 5), CsiArray)
        assert_same_message(got, frame_to_msg(frame, Time(sec=0, nanosec=5), "a", "b"))
        assert np.isnan(np.frombuffer(got.csi, np.float32)).any()


def test_the_middleware_in_use_reads_the_serializer_as_frame_to_msg():
    assert serializer_matches_middleware(CsiArraySerializer("espargos_array", "espargos"))
