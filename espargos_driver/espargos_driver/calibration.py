"""Phase/time calibration of phase-synchronous arrays from reference packets (generation-3 model).

Model (spec section 4.3): every sensor has one timing offset ``tau``, one LO phase offset
``phi`` relative to antenna 0 of the array, and a gain ``g`` (power calibration: the reference
signal reaches every sensor at the same level, so the spread of the reference amplitudes, after
the reported RX and FFT gains are taken out, is the sensors' sensitivity spread). Reference packets reach each sensor
over a known path of delay ``d`` (PCB trace, plus a cable for multi-board arrays). The
correction for CSI on absolute frequencies ``f`` with LO centre ``f_ref`` is

    csi *= exp(-j [phi - 2 pi (f - f_ref) tau + 2 pi d f]) / g

It is format-independent, so a calibration measured on HT40 also applies to HT20 or L-LTF.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .frame import CsiFrame
from .protocol.constants import TRACE_LENGTHS_M, TRACE_VELOCITY_M_S
from .wifi import SPEED_OF_LIGHT, CsiFormat, baseband_offsets_hz

MIN_REFERENCE_FRAMES = 5
FORMAT_PREFERENCE = (CsiFormat.HT40, CsiFormat.HT20, CsiFormat.LLTF)


class CalibrationError(RuntimeError):
    """Calibration could not be computed; the message says why and what to check."""


def reference_delays_s(boards: int, revision: str = "densiflorus",
                       cable_lengths_m: list[float] | None = None,
                       velocity_factors: list[float] | None = None) -> np.ndarray:
    """Reference-path delay of every sensor, s, shape ``(boards, 2, 4)``: PCB trace + board cable."""
    trace = TRACE_LENGTHS_M[revision] / TRACE_VELOCITY_M_S
    cables = np.zeros(boards)
    if cable_lengths_m is not None:
        vf = np.asarray(velocity_factors if velocity_factors is not None else [0.76] * boards, float)
        cables = np.asarray(cable_lengths_m, float) / (SPEED_OF_LIGHT * vf)
    return cables[:, None, None] + trace[None, :, :]


@dataclass
class Calibration:
    """Per-sensor calibration of one array on one channel configuration."""

    channel: int
    secondary: int
    array_id: str
    phase_rad: np.ndarray
    """(boards, 2, 4) LO phase offsets phi, rad."""
    time_s: np.ndarray
    """(boards, 2, 4) timing offsets tau, s."""
    reference_delay_s: np.ndarray
    """(boards, 2, 4) reference-path delays d, s."""
    residual_deg: float
    """RMS phase error of the calibrated reference packets against the reference-path model."""
    frames_used: int
    identity: str = ""
    """The board(s) measured (supervisor.board_identity, joined by '+'); '' in files of old versions."""
    gain: np.ndarray | None = None
    """(boards, 2, 4) relative amplitude gain of each sensor (geometric mean 1); None: not measured."""
    created: float = field(default_factory=time.time)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def correction(self, frame: CsiFrame) -> np.ndarray:
        """Phase correction for the frame's format and channel, complex64 ``(boards, 2, 4, bins)``."""
        cache_key = (frame.format, frame.channel, frame.secondary)
        corr = self._cache.get(cache_key)
        if corr is None:
            f = frame.frequencies_hz()
            f_bb = f - frame.lo_frequency_hz
            phase = (self.phase_rad[..., None] - 2 * np.pi * f_bb * self.time_s[..., None]
                     + 2 * np.pi * np.mod(f * self.reference_delay_s[..., None], 1.0))
            corr = np.exp(-1j * phase)
            if self.gain is not None:
                corr = corr / self.gain[..., None]
            corr = self._cache[cache_key] = corr.astype(np.complex64)
        return corr

    @property
    def gain_db(self) -> np.ndarray:
        """(boards, 2, 4) sensor gains in dB (zeros where not measured)."""
        return np.zeros_like(self.phase_rad) if self.gain is None else 20 * np.log10(self.gain)

    def apply(self, frame: CsiFrame) -> None:
        """Calibrate a frame in place: phase, timing and (where measured) sensor gain."""
        frame.csi *= self.correction(frame)
        frame.calibrated = True

    def matches(self, channel: int, secondary: int, array_id: str, boards: int, identity: str) -> bool:
        """Whether this calibration was made for these board(s) on this channel configuration."""
        return (self.channel, self.secondary, self.array_id, self.phase_rad.shape[0], self.identity) == (
            channel, secondary, array_id, boards, identity)

    def save(self, path: Path) -> None:
        data = {
            "array_id": self.array_id, "channel": self.channel, "secondary": self.secondary,
            "phase_rad": self.phase_rad.tolist(), "time_s": self.time_s.tolist(),
            "reference_delay_s": self.reference_delay_s.tolist(), "residual_deg": self.residual_deg,
            "frames_used": self.frames_used, "identity": self.identity, "created": self.created,
            "gain": None if self.gain is None else self.gain.tolist(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        """Read a stored calibration; raises CalibrationError if unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(channel=int(data["channel"]), secondary=int(data["secondary"]),
                       array_id=str(data["array_id"]), phase_rad=np.array(data["phase_rad"]),
                       time_s=np.array(data["time_s"]),
                       reference_delay_s=np.array(data["reference_delay_s"]),
                       residual_deg=float(data["residual_deg"]), frames_used=int(data["frames_used"]),
                       identity=str(data.get("identity", "")), created=float(data["created"]),
                       gain=None if data.get("gain") is None else np.array(data["gain"], float))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CalibrationError(f"cannot read calibration file {path}: {err}") from err


def usable_reference(frames: list[CsiFrame], channel: int, secondary: int) -> list[CsiFrame]:
    """The complete reference frames of the widest format present (HT40, else HT20, else L-LTF)
    on the given channel configuration; [] if there are none."""
    complete = [f for f in frames if f.is_reference and (f.channel, f.secondary) == (channel, secondary)
                and f.mask.all()]
    fmt = next((fmt for fmt in FORMAT_PREFERENCE if any(f.format == fmt for f in complete)), None)
    return [f for f in complete if f.format == fmt]


def estimate_calibration(frames: list[CsiFrame], channel: int, secondary: int, array_id: str,
                         reference_delay_s: np.ndarray, identity: str = "") -> Calibration:
    """Estimate phase and time offsets from reference frames (``frame.is_reference``).

    Uses complete frames of the widest format present (HT40, else HT20, else L-LTF) on the
    given channel configuration. Raises CalibrationError with the reason if it cannot.
    """
    usable = [f for f in frames if f.is_reference and (f.channel, f.secondary) == (channel, secondary)]
    if len(usable) < MIN_REFERENCE_FRAMES:
        raise CalibrationError(
            f"only {len(usable)} reference frames on channel {channel}/{secondary:+d} (need "
            f"{MIN_REFERENCE_FRAMES}); check that the board generates reference packets (calib-mode), "
            f"the RF switch reached REFERENCE, signal level, RX gain and packet filtering")
    chosen = usable_reference(usable, channel, secondary)
    if not chosen:
        seen = np.any([f.mask for f in usable], axis=0)
        missing = [f"{b}.{r}.{c}" for b, r, c in zip(*np.nonzero(~seen))]
        raise CalibrationError(
            "no complete reference frame: not every sensor receives the reference signal"
            + (f" (never reported: {', '.join(missing)})" if missing else ""))
    fmt = chosen[0].format
    boards = chosen[0].csi.shape[0]
    grid = chosen[0].grid
    valid = np.ones(grid.size, bool)
    valid[list(grid.interpolated)] = False
    x = np.stack([f.csi.reshape(-1, grid.size) for f in chosen])          # (C, N, S)
    f_bb = baseband_offsets_hz(fmt, secondary)

    # Timing offsets: phase slope across adjacent measured bins, relative to antenna 0,
    # combined coherently over frames. Equivalent to the spec's mean of (T - sto) differences
    # on the STO-corrected CSI, and free of slope wrapping.
    pair = valid[1:] & valid[:-1]
    slope = np.sum(x[:, :, 1:][:, :, pair] * np.conj(x[:, :, :-1][:, :, pair]), axis=2)  # (C, N)
    rel = slope * np.conj(slope[:, :1]) / np.maximum(np.abs(slope[:, :1]), 1e-30)
    tau = -np.angle(np.sum(rel / np.maximum(np.abs(rel), 1e-30), axis=0)) / (2 * np.pi * grid.spacing_hz)

    # Mean response per subcarrier: principal eigenvector of sum_c x x^H, referenced to antenna 0.
    xs = np.transpose(x[:, :, valid], (2, 1, 0))                              # (S, N, C)
    cov = xs @ np.conj(np.transpose(xs, (0, 2, 1)))
    _, vecs = np.linalg.eigh(cov)
    v = vecs[:, :, -1]                                                        # (S, N)
    v = v * np.exp(-1j * np.angle(v[:, :1]))
    phi = np.angle(np.sum(v * np.exp(2j * np.pi * np.outer(f_bb[valid], tau)), axis=0))

    # Power calibration: mean reference amplitude per sensor with its reported gains taken out,
    # relative to the geometric mean of the array.
    gains_db = np.stack([(f.rx_gain_db + f.fft_gain_db).reshape(-1) for f in chosen])          # (C, N)
    gains_db = np.where(np.isfinite(gains_db), gains_db, 0.0)
    amplitude = np.mean(np.abs(x[:, :, valid]), axis=2) * 10 ** (-gains_db / 20)                # (C, N)
    log_amp = np.mean(np.log(np.maximum(amplitude, 1e-12)), axis=0)
    gain = np.exp(log_amp - log_amp.mean())

    cal = Calibration(channel=channel, secondary=secondary, array_id=array_id,
                      phase_rad=phi.reshape(boards, 2, 4), time_s=tau.reshape(boards, 2, 4),
                      reference_delay_s=np.asarray(reference_delay_s, float).reshape(boards, 2, 4),
                      residual_deg=0.0, frames_used=len(chosen), identity=identity, gain=gain.reshape(boards, 2, 4))
    cal.residual_deg = reference_residual_deg(cal, chosen)
    return cal


def reference_residual_deg(cal: Calibration, frames: list[CsiFrame]) -> float:
    """RMS over frames and antennas of the calibrated reference phase error, degrees.

    Calibrated reference CSI must equal the reference-path model exp(-j 2 pi f d) up to a
    factor common to all antennas; the error per antenna is the subcarrier-averaged phase
    of csi * conj(model) relative to antenna 0.
    """
    errors = []
    for frame in frames:
        f = frame.frequencies_hz()
        model = np.exp(-2j * np.pi * np.mod(f * cal.reference_delay_s[..., None], 1.0))
        y = (frame.csi * cal.correction(frame) * np.conj(model)).reshape(-1, f.size)
        per_antenna = np.nansum(y * np.conj(y[:1]), axis=1)
        errors.append(np.angle(per_antenna[1:]))
    return float(np.degrees(np.sqrt(np.mean(np.square(errors)))))
