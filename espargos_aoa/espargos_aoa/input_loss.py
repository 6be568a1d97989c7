"""CsiArrays lost between a driver and this node, counted from CsiArray.source_sequence.

The drivers number the CsiArrays of each source_id 0, 1, 2, ... (uint32, wrapping). DDS hands
over one publisher's messages in order, so a number that skips ahead at a subscriber counts the
messages that never arrived: a queue overflowed on the way (this node fell behind its input, a
best-effort subscription, or a bag recorded with losses). Pure (no ROS).
"""
from __future__ import annotations

SEQUENCE_WRAP = 1 << 32
"""CsiArray.source_sequence is a uint32."""
MAX_SOURCES = 4096
"""Sources followed at most; the longest-silent one is forgotten first (strangers cannot grow it)."""
INPUT_LOST = {"input_lost": "CsiArrays lost between their driver and this node (gaps in source_sequence: a queue "
                            "overflowed because this node fell behind, a best-effort QoS, or a bag recorded with losses)"}
"""The diagnostic counter of every CsiArray subscriber (one text for all of them)."""


class InputLoss:
    """Gaps in the source_sequence of each source_id.

    ``lost``: messages missing so far, over all sources; ``restarts``: streams that started again
    (a number behind the expected one: the driver restarted, or a bag plays from its start)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self.lost = 0
        self.restarts = 0

    def add(self, source_id: str, number: int) -> int:
        """Take one message's (source_id, source_sequence); returns how many were lost before it."""
        expected = self._next.pop(source_id, None)
        self._next[source_id] = (number + 1) % SEQUENCE_WRAP          # re-inserted: the dict is in order of last use
        if len(self._next) > MAX_SOURCES:
            del self._next[next(iter(self._next))]
        if expected is None:
            return 0
        gap = (number - expected) % SEQUENCE_WRAP
        if gap >= SEQUENCE_WRAP // 2:                                  # behind the stream: it started again
            self.restarts += 1
            return 0
        self.lost += gap
        return gap
