"""Swarm links -> vital signs (pure core): AGC steps removed per receiver, the two directions of
each exchange paired by the nodes' clocks, and the features fed to a VitalsLink. Also the
parameters of vital_signs_node (swarm links and arrays, see array_vitals) and their README table."""
from __future__ import annotations

import numpy as np

from .sanitize import Sanitized
from .velocity import RESTART_S, SENSOR_CLOCK_PERIOD_S, ExchangePairer
from .vitals import (EstimateSchedule, GainTracker, VitalsConfig, VitalsEstimate, VitalsLink, config_parameters,
                     exchange_features, report_features)

BIDIRECTIONAL, ONE_WAY = "bidirectional", "one_way"
FEATURE_HALF_WIDTH = 26
"""Features are the bins |k| <= 26: the legacy LTF's, which every 20 MHz format carries, so a
node that mixes L-LTF and HT-LTF reports keeps one feature vector."""


class ClockUnwrapper:
    """A node's wrapping u32 microsecond clock (s) -> a continuous time (s)."""

    def __init__(self) -> None:
        self.turns = 0
        self.last: float | None = None

    def __call__(self, t_s: float) -> float:
        if self.last is not None:
            if t_s < self.last - SENSOR_CLOCK_PERIOD_S / 2:
                self.turns += 1
            elif t_s > self.last + SENSOR_CLOCK_PERIOD_S / 2:
                self.turns -= 1                      # a late report from before the wrap
        self.last = t_s
        return t_s + self.turns * SENSOR_CLOCK_PERIOD_S


class SwarmLinkVitals:
    """One link's reports -> VitalsLink. ``method`` BIDIRECTIONAL: both directions of every
    exchange multiplied (the oscillators cancel; the link's time is A's clock); ONE_WAY: the
    receiver's reports alone (its clock), with blind spots (see vitals.report_features)."""

    def __init__(self, method: str, config: VitalsConfig, pair_tolerance_s: float) -> None:
        if method not in (BIDIRECTIONAL, ONE_WAY):
            raise ValueError(f"method must be {BIDIRECTIONAL} or {ONE_WAY}")
        self.method = method
        self.config = config
        self.pair_tolerance_s = pair_tolerance_s
        self.restarts = 0
        """Times the link's clock went back (a node rebooted) and its history was dropped."""
        self.grid_mismatch = 0
        """Frames dropped for a subcarrier grid other than the link's."""
        self._start()

    def _start(self) -> None:
        self.vitals = VitalsLink(self.config)
        self.pairer = ExchangePairer(self.pair_tolerance_s)
        self.gains = {True: GainTracker(), False: GainTracker()}
        self.clock = ClockUnwrapper()
        self.schedule: EstimateSchedule | None = None

    def _time(self, sensor_t: float) -> float:
        """Continuous link time of a sensor time; if the clock went back by more than RESTART_S
        (a node restarted), the link starts afresh."""
        t = self.clock(sensor_t)
        if t < self.vitals.newest_t - RESTART_S:
            self.restarts += 1
            self._start()
            t = self.clock(sensor_t)
        return t

    def add(self, received_by_a: bool, host_t: float, sensor_t: float, report: Sanitized,
            subcarriers: np.ndarray) -> int:
        """One sanitised report (``subcarriers``: grid indices ``(S,)`` of its bins) received by
        end A (or B) at host time ``host_t`` and receiver clock ``sensor_t`` (s); returns the frames
        it gave the estimator (0 while its exchange is incomplete, or when dropped as a phase jump
        or for a grid that does not match the link's, ``grid_mismatch``)."""
        scale = self.gains[received_by_a].scale(report.power)
        csi = report.csi[np.abs(subcarriers) <= FEATURE_HALF_WIDTH]
        if self.method == ONE_WAY:
            return self._add(sensor_t, report_features(csi, scale))
        added = 0
        for exchange in self.pairer.add(received_by_a, host_t, sensor_t, report.common_phase_rad, (csi, scale)):
            (csi_a, scale_a), (csi_b, scale_b) = exchange.received_by_a, exchange.received_by_b
            if csi_a.shape != csi_b.shape:
                self.grid_mismatch += 1
                continue
            added += self._add(exchange.t, exchange_features(csi_a, scale_a, csi_b, scale_b, exchange.phase_sum))
        return added

    def _add(self, sensor_t: float, features: np.ndarray) -> int:
        try:
            return int(self.vitals.add(self._time(sensor_t), features))
        except ValueError:                                # another grid than the link's first frames
            self.grid_mismatch += 1
            return 0

    def due(self, period_s: float) -> list[VitalsEstimate]:
        """Estimates for every ``period_s`` of link time that has passed since the last one
        (stamp-driven: a replayed bag gives the same estimates)."""
        if self.schedule is None:
            self.schedule = EstimateSchedule(period_s)
        return [self.vitals.estimate(t_end) for t_end in self.schedule.due(self.vitals.newest_t)]


NODE_PARAMETERS = {
    "nodes": ([""], "node name = its MAC, e.g. ['node1=02:00:00:00:00:01']: links between named nodes are "
                    "bidirectional (both directions multiplied); reports from other transmitters are one-way links"),
    "pair_tolerance": (0.002, "s of sensor-clock tolerance when pairing the two directions of an exchange"),
    "publish_period": (1.0, "s of link time between two VitalSigns of a link (or of an array's beam)"),
    "beams": ([-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0],
              "azimuths (deg, array frame: 0 ahead, positive to the left) of the beams each calibrated array is "
              "judged in, one VitalSigns per beam and transmitter"),
    "max_links": (64, "links and array-transmitter pairs followed at most; reports of further ones are dropped "
                      "and counted (links_over_limit), so that strangers' MACs cannot grow the node without bound"),
}
"""vital_signs_node's parameters besides VitalsConfig's: name -> (default, description)."""


def parameter_table() -> str:
    """The README's Markdown table of vital_signs_node's parameters."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    entries = {**NODE_PARAMETERS, **{name: (default, text) for name, (_, default, text) in config_parameters().items()}}
    for name, (default, text) in entries.items():
        rows.append(f"| `{name}` | `{default}` | {text} |")
    return "\n".join(rows)
