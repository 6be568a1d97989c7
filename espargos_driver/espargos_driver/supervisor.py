"""Calibration that is verified, not trusted: the driver's calibration state machine (no ROS).

States (``status``):

- ``none``: no calibration in force (policy ``none``, or none could be made yet);
- ``verifying``: a stored or previous calibration is being checked against a short burst of
  reference packets (``VERIFY_S``); frames are published uncalibrated meanwhile;
- ``calibrating``: a calibration burst runs;
- ``verified``: the calibration in force was measured or verified on this connection, channel and
  boot of the board(s); only now are frames marked ``calibrated``;
- ``stale``: something happened that can change the LO phases (a reconnect, a board reboot seen in
  the sensor timestamps, a channel change); frames are uncalibrated until the check that follows;
- ``failed``: the calibration could not be verified or made; the reason says why and what to do.

One supervisor thread runs every check, so nothing races: a check is requested on every
(re)connection, on a detected reboot or channel change, by the Calibrate service, and every
``reverify_s`` if set. Every burst switches the boards' RF switch to REFERENCE and their MAC
filter off, and restores both in a ``finally`` (also when the driver stops mid-burst).
"""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .calibration import Calibration, CalibrationError, estimate_calibration, reference_residual_deg, usable_reference
from .frame import CsiFrame
from .transport.http_control import BoardError, BoardHttp

RF_REFERENCE = 1
RF_ANTENNAS = "2"
"""ANTENNA_R: what the driver sets when it finds the switch on REFERENCE or ISOLATION."""
VERIFY_S = 0.3
"""Length of a verification burst, s (about 30 reference packets at the default 10 ms interval)."""
VERIFY_MAX_RESIDUAL_DEG = 5.0
"""A stored calibration holds if the calibrated reference phases stay within this RMS, degrees.
Measured (benchmarks/calibration_verification.py, 50 seeds): a fresh calibration and a new burst
on the same board leave 0.15-0.21 deg; the same board after a reboot (new LO phases) 63-138 deg,
another board 76-136 deg. 5 deg leaves real boards 25x the simulator's noise and still sits 12x
below the closest wrong case (7 random LO phases all within 5 deg RMS: probability ~1e-11)."""
REBOOT_BACKSTEP_S = 1.0
"""Sensor timestamps of the reference board that go back by more than this mean it rebooted."""
RETRY_S = (2.0, 5.0, 10.0, 30.0)
"""Back-off between retries of a failed calibration (policies auto and startup), s."""
STATUSES = ("none", "verifying", "calibrating", "verified", "stale", "failed")


@dataclass
class BoardState:
    """What a burst changes on one board, to put back."""

    mac_filter: dict
    rfswitch: str


def board_identity(http: BoardHttp, hostname: str) -> str:
    """Who a board is, for keying its calibration: ``hostname@ip:port``.

    UNCONFIRMED (spec 1.1): no endpoint is known to give the board's own MAC; the hostname (from
    /get_netconf), the IP (/get_ip_info) and the HTTP port are what the controller offers. Two
    boards with the same name at the same address would share a key: the verification burst
    catches that (and every other stale calibration) anyway.
    """
    try:
        ip = str(http.get_json("/get_ip_info").get("ip", ""))
    except BoardError:
        ip = ""
    port = http.base.rsplit(":", 1)[-1]
    return f"{hostname or 'unnamed'}@{ip or http.base.split('//')[1].rsplit(':', 1)[0]}:{port}"


def identity_slug(identity: str) -> str:
    """A file-name-safe form of an identity."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", identity).strip("_")


class CalibrationSupervisor:
    """Owns ``calibration`` and its ``status``; the driver asks ``applies(frame)`` per frame."""

    def __init__(self, *, policy: str, duration_s: float, file: str, array_id: str, https: list[BoardHttp],
                 reference_delay_s, channel: Callable[[], tuple[int, int]], streaming: Callable[[], bool],
                 counters: Counter, log: Callable[[str], None], warn: Callable[[str], None],
                 reverify_s: float = 0.0) -> None:
        self.policy, self.duration_s, self.file, self.array_id = policy, duration_s, file, array_id
        self.https = https
        self.reference_delay_s = reference_delay_s
        self.channel, self.streaming = channel, streaming
        self.counters, self.log, self.warn = counters, log, warn
        self.reverify_s = reverify_s
        self.identity = ""
        self.calibration: Calibration | None = None
        self.status = "none"
        self.detail = "no calibration yet"
        self.last_verified = 0.0
        self._collecting: list[CsiFrame] | None = None
        self._saved: list[BoardState] | None = None
        self._lock = threading.Lock()
        self._requests: list[str] = []
        """Why a check was asked for (reconnect, reboot, ...), since the thread last looked."""
        self._service: list[tuple[int, float]] = []
        """Calibrations the Calibrate service asked for: (ticket, duration s)."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._results: dict[int, tuple[Calibration | None, str]] = {}
        self._ticket = 0
        self._thread = threading.Thread(target=self._run, name="calibration", daemon=True)

    # --- what the driver asks ------------------------------------------------------
    @property
    def path(self) -> Path:
        """The calibration file: the configured one, else one per array id and board identity."""
        if self.file:
            return Path(self.file).expanduser()
        name = f"{self.array_id}-{identity_slug(self.identity)}" if self.identity else self.array_id
        return Path("~/.ros/espargos").expanduser() / f"{name}.calibration.json"

    def applies(self, frame: CsiFrame) -> Calibration | None:
        """The calibration to apply to ``frame``, or None (publish it uncalibrated)."""
        cal = self.calibration
        if self.status != "verified" or cal is None:
            return None
        if (cal.channel, cal.secondary) != (frame.channel, frame.secondary):
            self.invalidate("channel_change", f"frames arrive on channel {frame.channel}/{frame.secondary:+d}, "
                                              f"the calibration is for {cal.channel}/{cal.secondary:+d}")
            return None
        return cal

    def offer(self, frame: CsiFrame) -> bool:
        """A reference frame: kept if a burst is collecting (True), else False."""
        collecting = self._collecting
        if collecting is None:
            return False
        collecting.append(frame)
        return True

    def invalidate(self, reason: str, detail: str) -> None:
        """Frames are uncalibrated from now on until a check passes (e.g. reconnect, reboot)."""
        with self._lock:
            if self.status in ("verified", "verifying"):
                self.counters[f"calibration_{reason}"] += 1
                self.status, self.detail = "stale", f"{detail}; re-verifying"
                self.warn(f"calibration stale: {detail}")
        self.request(reason)

    def request(self, reason: str) -> None:
        """Ask for a check (verify what is in force, else calibrate, per the policy)."""
        if self.policy == "none":
            return
        with self._lock:
            self._requests.append(reason)
        self._wake.set()

    def calibrate_now(self, duration_s: float, timeout_s: float) -> Calibration:
        """Run a calibration on the supervisor thread and wait for it (the Calibrate service)."""
        with self._done:
            self._ticket += 1
            ticket = self._ticket
        with self._lock:
            self._service.append((ticket, duration_s))
        self._wake.set()
        with self._done:
            if not self._done.wait_for(lambda: ticket in self._results or self._stop.is_set(), timeout_s):
                raise CalibrationError(f"calibration did not finish within {timeout_s:.0f} s")
            cal, error = self._results.pop(ticket, (None, "the driver is stopping"))
        if cal is None:
            raise CalibrationError(error)
        return cal

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop; a burst in progress ends at once and the boards' state is restored."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        self.restore_boards()

    # --- the supervisor thread ----------------------------------------------------------
    def _run(self) -> None:
        retries = 0
        while not self._stop.is_set():
            timeout = None
            if self.reverify_s > 0 and self.status == "verified":
                timeout = max(self.last_verified + self.reverify_s - time.monotonic(), 0.0)
            elif self.status == "failed" and self.policy in ("auto", "startup"):
                timeout = RETRY_S[min(retries, len(RETRY_S) - 1)]     # e.g. too few reference packets
                retries += 1
            woke = self._wake.wait(timeout)
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                requests, self._requests = self._requests, []
                service, self._service = self._service, []
            if not woke:
                requests = ["periodic" if self.status == "verified" else "retry"]
            if self.status == "verified":
                retries = 0
            try:
                if not self._wait_streaming():
                    for ticket, _ in service:
                        self._answer(ticket, None, "the board is not streaming")
                    continue
                for ticket, duration_s in service:
                    self._serve(ticket, duration_s)
                if requests and not service:
                    self._check()
            except Exception as err:  # noqa: BLE001 - the supervisor must outlive any one check
                self.counters["calibration_failures"] += 1
                self.status, self.detail = "failed", f"unexpected {type(err).__name__}: {err}"
                self.warn(f"calibration check failed: {self.detail}")

    def _wait_streaming(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.streaming():
            if self._stop.wait(0.05) or time.monotonic() > deadline:
                if not self._stop.is_set():
                    self.request("retry")        # the board is not streaming yet: check again later
                    self._stop.wait(1.0)
                return False
        return True

    def _serve(self, ticket: int, duration_s: float) -> None:
        """A requested calibration. If it fails, a calibration verified before it stays in force
        (the burst does not touch the LO phases); otherwise the array is uncalibrated."""
        before = self.status, self.detail
        try:
            cal, error = self._calibrate(duration_s), ""
        except (CalibrationError, BoardError) as err:
            cal, error = None, str(err)
            if before[0] == "verified":
                self.status, self.detail = "verified", f"{before[1]}; a requested calibration failed: {err}"
            else:
                self.status, self.detail = "failed", f"uncalibrated: {err}"
        self._answer(ticket, cal, error)

    def _answer(self, ticket: int, cal: Calibration | None, error: str) -> None:
        with self._done:
            self._results[ticket] = (cal, error)
            self._done.notify_all()

    def _check(self) -> None:
        """Verify the calibration in force, else the stored one (policies auto and file); calibrate
        if none holds (auto, startup) or publish uncalibrated with the reason (file).

        Policy ``startup`` calibrates at the first check without looking at the file."""
        try:
            candidate = self.calibration
            if candidate is None and self.policy in ("auto", "file"):
                candidate = self._load()
            if candidate is not None and self._verify(candidate):
                return
            if self.policy == "file":
                self.calibration = None
                self.status = "failed"
                self.detail = (f"uncalibrated: no calibration in {self.path} holds for this board and channel "
                               f"({self.detail}); calibrate (policy auto or the calibrate service)")
                self.counters["calibration_failures"] += 1
                self.warn(self.detail)
                return
            self._calibrate(self.duration_s)
        except (CalibrationError, BoardError) as err:
            self.counters["calibration_failures"] += 1
            self.status, self.detail = "failed", f"uncalibrated: {err}"
            self.warn(f"calibration failed: {err}")

    def _load(self) -> Calibration | None:
        path = self.path
        if not path.exists():
            self.detail = f"no file {path}"
            return None
        try:
            cal = Calibration.load(path)
        except CalibrationError as err:
            self.warn(str(err))
            self.detail = str(err)
            return None
        channel, secondary = self.channel()
        if not cal.matches(channel, secondary, self.array_id, len(self.https), self.identity):
            self.detail = (f"stored calibration {path} is for {cal.identity or 'an unnamed board'} on channel "
                           f"{cal.channel}/{cal.secondary:+d}, not {self.identity} on {channel}/{secondary:+d}")
            self.log(self.detail)
            return None
        return cal

    def _verify(self, cal: Calibration) -> bool:
        self.status, self.detail = "verifying", "verifying the calibration with a reference burst"
        frames = self._burst(VERIFY_S)
        channel, secondary = self.channel()
        chosen = usable_reference(frames, channel, secondary)
        if not chosen or (cal.channel, cal.secondary) != (channel, secondary):
            self.detail = f"verification burst gave {len(chosen)} usable reference frames"
            self.counters["calibration_rejected"] += 1
            return False
        residual = reference_residual_deg(cal, chosen)
        if residual > VERIFY_MAX_RESIDUAL_DEG:
            self.counters["calibration_rejected"] += 1
            self.detail = (f"calibration does not hold: reference residual {residual:.1f} deg > "
                           f"{VERIFY_MAX_RESIDUAL_DEG:.0f} deg (board rebooted, another board, or LO re-locked)")
            self.log(self.detail)
            return False
        self.calibration = cal
        self.last_verified = time.monotonic()
        self.status = "verified"
        self.detail = f"verified with {len(chosen)} reference frames (residual {residual:.2f} deg)"
        self.log(f"calibration {self.detail}")
        return True

    def _calibrate(self, duration_s: float) -> Calibration:
        self.status, self.detail = "calibrating", f"calibrating ({duration_s:.1f} s of reference packets)"
        frames = self._burst(duration_s)
        channel, secondary = self.channel()
        try:
            cal = estimate_calibration(frames, channel, secondary, self.array_id, self.reference_delay_s, self.identity)
        except CalibrationError:
            self.counters["calibration_failures"] += 1
            raise
        self.calibration = cal
        self.last_verified = time.monotonic()
        self.status = "verified"
        self.detail = f"calibrated from {cal.frames_used} reference frames (residual {cal.residual_deg:.2f} deg)"
        self.log(self.detail)
        try:
            cal.save(self.path)
        except OSError as err:
            self.warn(f"cannot store calibration in {self.path}: {err}")
        return cal

    def _burst(self, duration_s: float) -> list[CsiFrame]:
        """Reference frames of every board for ``duration_s`` (less if stopped), board state restored."""
        if self._stop.is_set():
            raise CalibrationError("the driver is stopping")
        collected: list[CsiFrame] = []
        self._saved = [BoardState(http.get_json("/get_mac_filter"), http.request("/get_rfswitch").strip())
                       for http in self.https]
        try:
            for http in self.https:
                http.command("/set_mac_filter", {"enable": False})
            self._collecting = collected
            for http in self.https:
                http.command("/set_rfswitch", str(RF_REFERENCE))
            self._stop.wait(duration_s)
        finally:
            self._collecting = None
            self.restore_boards()
        if self._stop.is_set():
            raise CalibrationError("the driver stopped during the burst")
        return collected

    def restore_boards(self) -> None:
        """Put back the RF switch and MAC filter a burst changed (idempotent; errors are logged)."""
        saved, self._saved = self._saved, None
        for http, state in zip(self.https, saved or []):
            try:
                http.command("/set_rfswitch", state.rfswitch if state.rfswitch.isdigit() and state.rfswitch != "1"
                             else RF_ANTENNAS)
                http.command("/set_mac_filter", state.mac_filter)
            except BoardError as err:
                self.warn(f"could not restore {http.base} after a calibration burst: {err}")
