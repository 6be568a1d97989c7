"""Clustering: the reports of one WiFi frame from every receiver -> one CsiFrame.

Frames are keyed by (src, dst, sequence, fragment, retry) as in the spec (section 3).
Reference (calibration) packets and over-the-air packets are clustered in separate
caches. A frame is emitted as soon as every antenna reported; otherwise, once it is
older than ``frame_timeout_s``, it is emitted with its mask if at least
``antennas_required`` reported, and dropped (counted) if not. Memory is bounded:
beyond ``max_pending`` open frames per cache, or ``MAX_PENDING_BYTES`` of reports in
all, the oldest frame is evicted (and counted).
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from .frame import CsiFrame, FrameKey
from .protocol.constants import ANTENNAS, COLS, ROWS
from .protocol.csi_formats import Decoding, decode_csi, report_decoding
from .protocol.errors import ProtocolError
from .protocol.report import SensorReport
from .wifi import GRIDS, secondary_from_code

PER_ANTENNA_FIELDS = 6
"""Sensor time, RSSI, noise floor, RX gain, FFT gain, CFO: gathered into one array per frame."""
MAX_PENDING_BYTES = 16 * 1024 * 1024
"""Byte budget of the reports held in open frames (both caches). A full frame of 4 boards is
32 reports of ~1 kB; at the default 50 ms frame timeout and 5,000 frames/s about 250 frames
are open, ~8 MB for 4 boards: 16 MiB is twice that. Beyond it the oldest open frame is
evicted (``evicted_frame``)."""


class _Pending:
    __slots__ = ("reports", "created", "host_time", "size")

    def __init__(self, created: float, arrival: float | None) -> None:
        self.reports: dict[int, SensorReport] = {}
        self.created = created
        self.host_time = time.time() if arrival is None else arrival
        self.size = 0


class FrameClusterer:
    """Groups sensor reports into frames. Not thread-safe: feed it from one thread.

    ``counters`` receives: ``duplicate_report``, ``collision``, ``incomplete_frame``
    (dropped with too few antennas), ``partial_frame`` (emitted with a mask),
    ``evicted_frame``, ``format_mismatch`` (reports excluded from a frame), ``no_csi``, and
    the ProtocolError reason of a frame whose CSI cannot be decoded (e.g. ``short_csi``).
    """

    def __init__(self, counters: Counter, boards: int = 1, antennas_required: int | None = None,
                 frame_timeout_s: float = 0.05, max_pending: int = 1024, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.boards = boards
        self.antennas = boards * ANTENNAS
        self.antennas_required = self.antennas if antennas_required is None else antennas_required
        if not 1 <= self.antennas_required <= self.antennas:
            raise ValueError(f"antennas_required must be 1..{self.antennas}, got {self.antennas_required}")
        self.frame_timeout_s = frame_timeout_s
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        """Bytes of the reports held in open frames now."""
        self.counters = counters
        self._caches: dict[bool, dict[FrameKey, _Pending]] = {False: {}, True: {}}
        self.last_error: ProtocolError | None = None
        """The latest frame that could not be decoded (counted under its reason)."""

    def add(self, report: SensorReport, now: float, arrival: float | None = None) -> CsiFrame | None:
        """Add one report received at ``now`` (time.perf_counter()) that reached the host at
        ``arrival`` (wall clock, s; None: now); return the frame if now complete."""
        frames = self.add_many([(report, now, arrival)])
        return frames[0] if frames else None

    def add_many(self, reports: list[tuple[SensorReport, float, float | None]]) -> list[CsiFrame]:
        """Add reports (each with its ``now`` and ``arrival`` as in :meth:`add`), in order; return
        the frames they complete, in the order they completed. Complete frames of one CSI decoding
        are decoded together (one numpy pass for all of them): the result is the same as one
        :meth:`add` at a time."""
        completed: list[tuple[FrameKey, _Pending, float]] = []
        for report, now, arrival in reports:
            cache = self._caches[report.is_calib]
            key = report.key
            pending = cache.get(key)
            if pending is None:
                if len(cache) >= self.max_pending:
                    self._evict(cache)
                pending = cache[key] = _Pending(now, arrival)
            index = report.board * ANTENNAS + report.row * COLS + report.col
            existing = pending.reports.get(index)
            if existing is not None:
                self.counters["duplicate_report" if existing.raw == report.raw else "collision"] += 1
                continue
            pending.reports[index] = report
            size = len(report.raw)
            pending.size += size
            self.pending_bytes += size
            if len(pending.reports) == self.antennas:
                del cache[key]
                self.pending_bytes -= pending.size
                completed.append((key, pending, now))
                continue
            while self.pending_bytes > self.max_bytes:
                self._evict(max(self._caches.values(), key=len))
        if not completed:
            return []
        return self._build_complete(completed)

    def _evict(self, cache: dict[FrameKey, _Pending]) -> None:
        """Drop the oldest open frame of ``cache`` (counted as ``evicted_frame``)."""
        self.pending_bytes -= cache.pop(next(iter(cache))).size
        self.counters["evicted_frame"] += 1

    def expire(self, now: float) -> list[CsiFrame]:
        """Close frames older than the timeout: emit those with enough antennas, drop the rest."""
        out = []
        for cache in self._caches.values():
            while cache:
                key, pending = next(iter(cache.items()))
                if now - pending.created < self.frame_timeout_s:
                    break
                del cache[key]
                self.pending_bytes -= pending.size
                if len(pending.reports) >= self.antennas_required:
                    frame = self._build(key, pending, now)
                    if frame is not None:
                        self.counters["partial_frame"] += 1
                        out.append(frame)
                else:
                    self.counters["incomplete_frame"] += 1
        return out

    def clear_reference(self) -> None:
        """Forget open reference frames (at the start of a calibration)."""
        self.pending_bytes -= sum(p.size for p in self._caches[True].values())
        self._caches[True].clear()

    def _build_complete(self, completed: list[tuple[FrameKey, _Pending, float]]) -> list[CsiFrame]:
        """Build complete frames; those whose reports share one decoding and secondary channel (and
        carry enough bytes) are decoded in groups, the rest one by one (``_build``)."""
        frames: list[CsiFrame | None] = [None] * len(completed)
        groups: dict[tuple[Decoding, int], list[int]] = {}
        for position, (key, pending, now) in enumerate(completed):
            plans = {(report_decoding(r), r.rx.secondary_code) for r in pending.reports.values()}
            plan = plans.pop() if len(plans) == 1 else (None, 0)
            if plan[0] is None or any(len(r.csi) < plan[0].nbytes for r in pending.reports.values()):
                frames[position] = self._build(key, pending, now)
            else:
                groups.setdefault(plan, []).append(position)
        for (decoding, _), positions in groups.items():
            self._build_group(decoding, [completed[p] for p in positions], frames, positions)
        return [frame for frame in frames if frame is not None]

    def _build_group(self, decoding: Decoding, members: list[tuple[FrameKey, _Pending, float]],
                     frames: list[CsiFrame | None], positions: list[int]) -> None:
        """Decode complete frames of one decoding and secondary channel in one pass; frame i goes
        to ``frames[positions[i]]``."""
        antennas = range(self.antennas)
        reports = [pending.reports[i] for _, pending, _ in members for i in antennas]
        values = decode_csi(decoding, reports)
        count = len(members)
        firsts = [next(iter(pending.reports.values())) for _, pending, _ in members]
        built = self._frames(decoding, members, firsts, values.reshape(count, self.antennas, values.shape[-1]),
                             np.ones((count, self.antennas), bool),
                             _per_antenna(reports).reshape(PER_ANTENNA_FIELDS, count, self.antennas))
        for position, frame in zip(positions, built):
            frames[position] = frame

    def _build(self, key: FrameKey, pending: _Pending, now: float) -> CsiFrame | None:
        by_decoding: dict[Decoding, list[int]] = {}
        for index, report in pending.reports.items():
            decoding = report_decoding(report)
            if decoding is not None:
                by_decoding.setdefault(decoding, []).append(index)
        if not by_decoding:
            self.counters["no_csi"] += 1
            return None
        decoding, indices = max(by_decoding.items(), key=lambda item: len(item[1]))
        self.counters["format_mismatch"] += len(pending.reports) - len(indices)
        if len(indices) < self.antennas_required:
            self.counters["incomplete_frame"] += 1
            return None
        reports = [pending.reports[i] for i in indices]
        try:
            values = decode_csi(decoding, reports)
        except ProtocolError as err:
            self.counters[err.reason] += 1
            self.last_error = err
            return None
        csi = np.full((1, self.antennas, GRIDS[decoding.format].size), np.nan, np.complex64)
        csi[0, indices] = values
        mask = np.zeros((1, self.antennas), bool)
        mask[0, indices] = True
        per_antenna = np.full((PER_ANTENNA_FIELDS, 1, self.antennas), np.nan)
        per_antenna[:, 0, indices] = _per_antenna(reports)
        return self._frames(decoding, [(key, pending, now)], reports[:1], csi, mask, per_antenna)[0]

    def _frames(self, decoding: Decoding, members: list[tuple[FrameKey, _Pending, float]], firsts: list[SensorReport],
                csi: np.ndarray, mask: np.ndarray, per_antenna: np.ndarray) -> list[CsiFrame]:
        """The CsiFrame of each of ``count`` members (key, open frame, completion time), from arrays
        in antenna order: ``csi`` (count, antennas, subcarriers) complex64, ``mask`` (count,
        antennas) bool, ``per_antenna`` (PER_ANTENNA_FIELDS, count, antennas) float64 as from
        ``_per_antenna``. Channel, secondary channel and the reference flag come from each
        member's report in ``firsts``."""
        count = len(members)
        shape = (count, self.boards, ROWS, COLS)
        csi = csi.reshape(shape + (csi.shape[-1],))
        mask = mask.reshape(shape)
        timestamps_ns = per_antenna[0].reshape(shape)
        rssi_dbm, noise_floor_dbm, rx_gain_db, fft_gain_db, cfo_hz = per_antenna[1:].astype(np.float32).reshape(
            (PER_ANTENNA_FIELDS - 1,) + shape)
        return [CsiFrame(key=key, format=decoding.format, channel=first.rx.channel,
                         secondary=secondary_from_code(first.rx.secondary_code), csi=csi[i], mask=mask[i],
                         timestamps_ns=timestamps_ns[i], rssi_dbm=rssi_dbm[i], noise_floor_dbm=noise_floor_dbm[i],
                         rx_gain_db=rx_gain_db[i], fft_gain_db=fft_gain_db[i], cfo_hz=cfo_hz[i],
                         is_reference=first.is_calib, host_time=pending.host_time, completed_at=now)
                for i, ((key, pending, now), first) in enumerate(zip(members, firsts))]


def _per_antenna(reports: list[SensorReport]) -> np.ndarray:
    """(PER_ANTENNA_FIELDS, len(reports)) float64: each report's sensor time (ns), RSSI (dBm),
    noise floor (dBm), RX gain (dB), FFT gain (dB) and CFO (Hz)."""
    return np.array([(r.timestamp_ns, r.rx.rssi_dbm, r.rx.noise_floor_dbm, r.rx.rx_gain_db, r.rx.fft_gain_db, r.rx.cfo_hz)
                     for r in reports], np.float64).T
