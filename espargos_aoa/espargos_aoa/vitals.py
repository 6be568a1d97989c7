"""Breathing rate and presence from a stream of CSI feature vectors of one link (pure core, no ROS).

A person's breathing moves the chest by millimetres, which changes the length of one reflected
path and so the phase of one component of the channel ``H = S + D exp(j phi(t))``. Per frame the
caller supplies a complex feature vector freed of AGC steps (GainTracker) and, as far as the
hardware allows, of the oscillators' phase (``exchange_features``: the product of both directions
of a swarm exchange, whose phase no longer holds the oscillators; ``report_features``: one
direction, common phase removed, which keeps only the in-phase part of D's motion and so has
blind spots where the person sits near an odd multiple of a quarter wavelength of excess path).

Per window (``VitalsLink.estimate``):
1. frames are averaged into bins of ``1 / sample_rate_hz`` (short gaps interpolated);
2. the static channel (the window mean and a linear drift) is removed, and the complex residual is
   projected on the principal component of its breathing-band part, then on that component's
   principal real axis (jumps of one direction's phase are gated out before, in ``add``);
3. a Hann-windowed, zero-padded periodogram gives the breathing peak in [min_rate, max_rate];
   its height over the median level between 1.5 and 3.5 Hz is the breathing SNR, which separates
   a breathing person (STILL) from an empty room (EMPTY);
4. the rate is counted, not read off the peak: whole cycles between the first and last upward
   crossing of the band-passed signal over the time between them (``mean_rate``), which is the
   window's mean rate even when it wanders; at least two cycles agreeing with the peak are
   needed (a slow drift also makes a low peak);
5. gross motion is the channel's change within and between bins over the last ``motion_window_s``
   relative to its power, compared with the link's own still baseline (a low percentile of its
   history): MOVING gives no rate, and a rate waits until a clean ``min_window_s`` has passed.

The rate's 1-sigma combines the Cramer-Rao bound of a tone's frequency at the measured SNR,
``60 / (pi T sqrt(R))`` breaths/min (T: window s, R: peak-to-noise power ratio of the Hann
periodogram), and the spread of the counted cycles (``mean_rate``). Heart rate is not
estimated: the heart moves the chest by 0.1-0.5 mm (1-3 degrees of phase at 2.4 GHz, within the
ESP32's per-frame phase noise) and its band (0.8-2 Hz) holds the second to fourth harmonics of
breathing, so a peak there cannot be told from breathing without a reference.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from functools import lru_cache

import numpy as np

UNKNOWN, EMPTY, STILL, MOVING = "UNKNOWN", "EMPTY", "STILL", "MOVING"
NOISE_BAND_HZ = (1.5, 3.5)
"""Where the periodogram's noise level is read (above breathing and its strong harmonics)."""
ZERO_PAD = 8
"""Periodogram length over the window's bins (interpolates the spectrum between Fourier bins)."""
HISTORY_S = 120.0
"""How much motion history sets a link's still baseline."""
BASELINE_PERCENTILE = 20.0
TRIM_BREATHS = (0.2, 0.5)
"""Breaths cut from each end of the band-passed signal before counting cycles (filter edges): the
larger where the window holds many breaths, down to the smaller so that CORE_BREATHS remain."""
CORE_BREATHS = 3.5
"""Breaths left to count between the trimmed ends when the window allows it: three whole cycles
always hold the three crossings (two cycles) that breathing needs. With a fixed half-breath trim a
30 s window at 8 /min kept three breaths, and one window in seven lost its third crossing."""
CYCLE_AGREEMENT = 0.25
"""Breathing needs at least two counted cycles whose rate agrees with the periodogram peak to
within this fraction; a drift or a single swing also makes a peak at the band's low end."""
MOTION_BLOCK_S = 0.5
MAX_GAP_S = 1.0
"""A window with a longer silence (lost frames, a stalled reader) gives no verdict: interpolating
over a quarter of a fast breath bends the rate and looks like motion."""
JUMP_GATE_RAD = 0.35
"""A frame whose features are turned by more than this against the recent ones as a whole is a
packet-sync phase jump of one direction (a uniformly random turn), not the channel: dropped."""
JUMP_RESET = 10
"""After this many drops in a row the channel itself has changed: the reference restarts."""
REFERENCE_WEIGHT = 0.2
"""Weight of a new frame in the exponential mean the jump gate compares against."""


@dataclass
class VitalsConfig:
    """Parameters of the estimator; ``meta['description']`` is the node parameter's description."""

    window_s: float = field(default=30.0, metadata={"description": "s of CSI behind each estimate (15-60)"})
    min_window_s: float = field(default=20.0, metadata={
        "description": "s of motion-free CSI needed before a rate is given (at most window)"})
    min_rate_bpm: float = field(default=6.0, metadata={"description": "breaths/min, lower end of the breathing band"})
    max_rate_bpm: float = field(default=30.0, metadata={"description": "breaths/min, upper end of the breathing band"})
    sample_rate_hz: float = field(default=10.0, metadata={"description": "Hz, rate the frames are averaged to"})
    presence_snr_db: float = field(default=13.0, metadata={
        "description": "dB, breathing peak over the noise level above which someone is there (STILL)"})
    motion_factor: float = field(default=3.0, metadata={
        "description": "channel change over the link's still baseline above which it is MOVING"})
    motion_window_s: float = field(default=2.0, metadata={"description": "s of CSI the motion level is taken over"})
    motion_hold_s: float = field(default=3.0, metadata={
        "description": "s a link stays MOVING after its motion level last exceeded motion_factor"})
    min_coverage: float = field(default=0.6, metadata={
        "description": "fraction of the window's bins that must hold frames (else UNKNOWN)"})
    rate_floor_bpm: float = field(default=0.05, metadata={
        "description": "breaths/min, least 1-sigma a rate is given with"})

    def validate(self) -> None:
        """ValueError with the reason if these parameters cannot work together."""
        if not 15.0 <= self.window_s <= 60.0:
            raise ValueError(f"window ({self.window_s} s) must be 15-60 s")
        if not 5.0 <= self.min_window_s <= self.window_s:
            raise ValueError(f"min_window ({self.min_window_s} s) must be 5 s to window ({self.window_s} s)")
        if not 0.0 < self.min_rate_bpm < self.max_rate_bpm:
            raise ValueError(f"breathing band {self.min_rate_bpm}-{self.max_rate_bpm} /min is empty or negative")
        if self.max_rate_bpm / 60.0 >= NOISE_BAND_HZ[0]:
            raise ValueError(f"max_rate ({self.max_rate_bpm} /min) reaches the noise band ({NOISE_BAND_HZ[0]} Hz)")
        if self.sample_rate_hz < 2.0 * NOISE_BAND_HZ[1] + 1.0:
            raise ValueError(f"sample_rate ({self.sample_rate_hz} Hz) must exceed {2 * NOISE_BAND_HZ[1] + 1} Hz "
                             "to see the noise band")
        if self.min_rate_bpm / 60.0 * self.min_window_s < 1.5:
            raise ValueError(f"min_window ({self.min_window_s} s) holds fewer than 1.5 breaths at min_rate")
        if self.motion_factor <= 1.0 or self.motion_window_s <= 0.0 or self.motion_hold_s < 0.0 \
                or not 0.0 < self.min_coverage <= 1.0:
            raise ValueError("motion_factor must exceed 1, motion_window be positive, motion_hold not negative, "
                             "min_coverage in (0, 1]")
        if self.presence_snr_db <= 0.0 or self.rate_floor_bpm < 0.0:
            raise ValueError("presence_snr must be positive and rate_floor not negative")


UNIT_SUFFIXES = ("_s", "_bpm", "_hz", "_db")
"""Unit suffixes of VitalsConfig fields that their node parameters leave out (the description says the unit)."""


def config_parameters() -> dict[str, tuple[str, float, str]]:
    """Node parameter name -> (VitalsConfig field, default, description), in field order."""
    defaults = VitalsConfig()
    out = {}
    for f in fields(VitalsConfig):
        name = next((f.name.removesuffix(u) for u in UNIT_SUFFIXES if f.name.endswith(u)), f.name)
        out[name] = (f.name, getattr(defaults, f.name), f.metadata["description"])
    return out


class GainTracker:
    """Removes a receiver's AGC steps from its frames' power, keeping the channel's own changes.

    An AGC step changes the power of every subcarrier at once between two frames; breathing
    changes it by hundredths of a dB between frames 20 ms apart. A frame-to-frame change of the
    mean power beyond STEP_SIGMAS times its usual scatter (and STEP_MIN_DB) is taken as a step and
    undone for this and every later frame. Normalising each frame's power instead would also
    remove the in-phase half of the breathing and leave blind spots every quarter wavelength."""

    STEP_MIN_DB = 0.5
    STEP_SIGMAS = 8.0
    LEARN_FRAMES = 20
    SPREAD_EVERY = 25
    """Frames between two updates of the usual scatter (a median: too dear for every frame)."""

    def __init__(self) -> None:
        self.offset_db = 0.0
        self.reference_db: float | None = None
        self.steps = 0
        self._last_db: float | None = None
        self._changes: deque[float] = deque(maxlen=200)
        self._spread = float("inf")
        self._frames = 0

    def scale(self, power: float) -> float:
        """Mean power of a frame's CSI (linear) -> the amplitude factor that brings it to the link's
        gain at its first frame, and to unit power there."""
        level = 10.0 * np.log10(max(power, 1e-30))
        if self._last_db is not None:
            change = level - self._last_db
            self._frames += 1
            if len(self._changes) >= self.LEARN_FRAMES and (self._frames % self.SPREAD_EVERY == 0
                                                            or not np.isfinite(self._spread)):
                self._spread = 1.4826 * float(np.median(np.abs(self._changes)))
            if len(self._changes) >= self.LEARN_FRAMES:
                if abs(change) > max(self.STEP_MIN_DB, self.STEP_SIGMAS * self._spread):
                    self.offset_db += change
                    self.steps += 1
                    change = None
            if change is not None:
                self._changes.append(change)
        self._last_db = level
        if self.reference_db is None:
            self.reference_db = level
        return float(10.0 ** (-(self.offset_db + self.reference_db) / 20.0))


def report_features(csi: np.ndarray, scale: float) -> np.ndarray:
    """One direction: sanitised CSI ``(S,)`` (STO slope and common phase removed) times its
    GainTracker scale -> features. Only the in-phase part of the breathing path survives here
    (the quadrature part is indistinguishable from the oscillators' phase): blind spots."""
    return np.asarray(csi, complex) * scale


def exchange_features(csi_by_a: np.ndarray, scale_a: float, csi_by_b: np.ndarray, scale_b: float,
                      phase_sum_rad: float) -> np.ndarray:
    """Both directions of one exchange (sanitised ``(S,)`` each with its GainTracker scale, and the
    sum of their common phases, in which the oscillators cancel) -> the reciprocal channel
    squared, ``(S,)``: both quadratures of the breathing path, no blind spot."""
    return np.asarray(csi_by_a, complex) * np.asarray(csi_by_b, complex) * (scale_a * scale_b * np.exp(1j * phase_sum_rad))


@dataclass
class VitalsEstimate:
    """One window's verdict. rate_bpm / rate_std_bpm: breaths/min, NaN unless STILL with a clean
    window; snr_db: breathing peak over noise (NaN if not computed); motion_level: channel change
    over the still baseline (NaN while the baseline is unknown); window_s: s of CSI used."""

    state: str
    rate_bpm: float = float("nan")
    rate_std_bpm: float = float("nan")
    snr_db: float = float("nan")
    motion_level: float = float("nan")
    window_s: float = 0.0
    frames: int = 0
    reason: str = ""
    t_end_s: float = float("nan")
    """End of the window, s on the link's clock."""


@dataclass
class Binned:
    """Frames of a time span averaged into bins: ``means`` complex ``(N, M)`` (empty bins
    interpolated), ``counts`` ``(N,)``."""

    means: np.ndarray
    counts: np.ndarray


def bin_frames(t: np.ndarray, z: np.ndarray, t0: float, n_bins: int, rate_hz: float) -> Binned:
    """t: ``(F,)`` s; z: complex ``(F, M)``; bins [t0 + i / rate, t0 + (i + 1) / rate)."""
    index = np.floor((t - t0) * rate_hz).astype(int)
    keep = (index >= 0) & (index < n_bins)
    index, z = index[keep], z[keep]
    counts = np.bincount(index, minlength=n_bins).astype(float)
    sums = np.zeros((n_bins, z.shape[1]), complex)
    np.add.at(sums, index, z)
    means = sums / np.maximum(counts, 1)[:, None]
    filled = counts > 0
    if filled.any() and not filled.all():
        centres = np.arange(n_bins)
        for m in range(means.shape[1]):
            means[~filled, m] = (np.interp(centres[~filled], centres[filled], means[filled, m].real)
                                 + 1j * np.interp(centres[~filled], centres[filled], means[filled, m].imag))
    return Binned(means, counts)


@lru_cache(maxsize=64)
def bandpass(low_hz: float, high_hz: float, rate_hz: float) -> np.ndarray:
    """Second-order Butterworth band-pass as second-order sections (designs are cached: the
    same bands recur every window)."""
    from scipy.signal import butter     # here, not at the top: scipy.signal costs ~2 s of start-up CPU
    return butter(2, (low_hz, high_hz), btype="bandpass", fs=rate_hz, output="sos")


def zero_phase(sos: np.ndarray, x: np.ndarray, **kwargs) -> np.ndarray:
    """``x`` filtered forward and backward along axis 0 by ``sos`` (scipy.signal.sosfiltfilt,
    imported on first use like :func:`bandpass`); ``kwargs`` go to sosfiltfilt."""
    from scipy.signal import sosfiltfilt
    return sosfiltfilt(sos, x, axis=0, **kwargs)


def motion_signal(means: np.ndarray, rate_hz: float, band_hz: tuple[float, float]) -> np.ndarray:
    """Binned features ``(N, M)`` sampled at ``rate_hz`` -> the real signal ``(N,)`` that carries
    the most change in ``band_hz``: the residual after the mean and a linear drift, projected on
    the principal component of its band-passed part (white noise common to all features, such as
    per-frame phase jitter, outweighs breathing over the full band) and on that component's
    principal real axis."""
    n = means.shape[0]
    x = np.arange(n) - (n - 1) / 2.0
    residual = means - means.mean(axis=0)
    residual = residual - np.outer(x, (x @ residual) / (x @ x))
    sos = bandpass(band_hz[0], band_hz[1], rate_hz)
    passed = zero_phase(sos, residual.real) + 1j * zero_phase(sos, residual.imag)
    _, vectors = np.linalg.eigh(passed.conj().T @ passed)          # (M, M): cheaper than an SVD of (N, M)
    principal = vectors[:, -1]
    s_band = passed @ principal
    rotation = np.exp(-0.5j * np.angle(np.sum(s_band * s_band)))
    return np.real(residual @ principal * rotation)


@dataclass
class Peak:
    """Breathing peak of a periodogram: frequency (Hz), SNR (power ratio over the noise level)."""

    frequency_hz: float
    snr: float


def breathing_peak(signal: np.ndarray, rate_hz: float, band_hz: tuple[float, float]) -> Peak:
    """The strongest peak of ``signal`` (sampled at ``rate_hz``) in ``band_hz``, refined by a
    parabola through the log power of its neighbours; SNR against the median level in
    NOISE_BAND_HZ (a median of exponential powers is ln 2 of their mean)."""
    n = signal.size
    taper = np.hanning(n)
    power = np.abs(np.fft.rfft((signal - signal.mean()) * taper, ZERO_PAD * n)) ** 2
    freqs = np.fft.rfftfreq(ZERO_PAD * n, 1.0 / rate_hz)
    in_band = np.flatnonzero((freqs >= band_hz[0]) & (freqs <= band_hz[1]))
    noise_bins = (freqs >= NOISE_BAND_HZ[0]) & (freqs <= NOISE_BAND_HZ[1])
    noise = float(np.median(power[noise_bins])) / np.log(2.0)
    i = int(in_band[np.argmax(power[in_band])])
    shift = 0.0
    if 0 < i < power.size - 1:
        a, b, c = np.log(np.maximum(power[i - 1:i + 2], 1e-300))
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator < 0 else 0.0
    frequency = float(freqs[i] + np.clip(shift, -0.5, 0.5) * (freqs[1] - freqs[0]))
    return Peak(frequency, float(power[i]) / noise if noise > 0 else float("inf"))


@dataclass
class Rate:
    """Mean breathing frequency over a window (Hz) and its 1-sigma (Hz)."""

    frequency_hz: float
    std_hz: float


def upward_crossings(x: np.ndarray, hysteresis: float) -> np.ndarray:
    """Fractional sample indices where ``x`` rises through 0 after having been below
    ``-hysteresis``, counted only if it then reaches ``+hysteresis`` (noise near 0 makes no
    crossings)."""
    out: list[float] = []
    armed, pending = False, None
    for i in range(1, x.size):
        if x[i] < -hysteresis:
            armed, pending = True, None
        elif armed and x[i - 1] < 0 <= x[i]:
            pending = i - 1 + x[i - 1] / (x[i - 1] - x[i])
        if pending is not None and x[i] > hysteresis:
            out.append(pending)
            armed, pending = False, None
    return np.array(out)


def mean_rate(signal: np.ndarray, rate_hz: float, peak_hz: float) -> Rate:
    """Breaths per second over the window, by counting cycles: ``signal`` band-passed around
    ``peak_hz`` (0.6-1.5 times: the rate's wander in, the second harmonic out), without
    TRIM_BREATHS at each end (filter edges; less in a window of few breaths), and its upward
    crossings of zero with hysteresis of a third of its spread (noise near zero adds none); the
    rate is whole cycles between the first and the last crossing over the time between them: the
    mean rate even where it wanders (a periodogram peak is not). 1-sigma: the relative scatter of
    the cycle durations (breath-to-breath variation and timing noise) times the rate, over the
    number of cycles (the end crossings' timing) plus the fraction of the window outside the
    counted cycles (where the rate may have differed). Fewer than three crossings (two cycles):
    the peak frequency, NaN 1-sigma."""
    n = signal.size
    low, high = 0.6 * peak_hz, min(1.5 * peak_hz, 0.45 * rate_hz)
    x = zero_phase(bandpass(round(low, 4), round(high, 4), rate_hz), signal, padlen=min(n - 1, int(2 * rate_hz / low)))
    breaths = n / rate_hz * peak_hz
    trim = float(np.clip((breaths - CORE_BREATHS) / 2.0, *TRIM_BREATHS))
    edge = min(int(trim * rate_hz / peak_hz), n // 4)
    core = x[edge:n - edge]
    crossings = (edge + upward_crossings(core, np.std(core) / 3.0)) / rate_hz
    if crossings.size < 3:
        return Rate(peak_hz, float("nan"))
    periods = np.diff(crossings)
    span = crossings[-1] - crossings[0]
    frequency = float(periods.size / span)
    variation = float(np.std(periods) / np.mean(periods))
    uncovered = max(0.0, 1.0 - span * rate_hz / n)
    return Rate(frequency, frequency * variation * (1.0 / periods.size + uncovered))


class WindowJudge:
    """The verdict on windows of one view of a link (the link itself, or one beam of an array):
    presence, breathing rate, and the motion history that sets the still baseline: the view's own,
    or ``history`` shared by views whose motion is measured in one unit (an array's beams)."""

    def __init__(self, config: VitalsConfig, history: deque[tuple[float, float, float]] | None = None) -> None:
        self.config = config
        self.motion_history: deque[tuple[float, float, float]] = deque() if history is None else history
        """(time s, fast power, slow power) of past motion windows: the still baseline."""
        self.last_motion_t = -np.inf
        self._last_history_t = -np.inf

    def judge(self, t: np.ndarray, z: np.ndarray, t_end: float, noise_scale: float | None = None) -> VitalsEstimate:
        """The window ``[t_end - window_s, t_end)``: frame times ``t`` ``(F,)`` s and their features
        ``z`` complex ``(F, M)``, only frames inside the window. Motion is measured relative to the
        features' power (a link: a gain error is not motion), or to ``noise_scale`` (the noise power
        gain of an array beam, for a baseline shared by the beams)."""
        cfg = self.config
        if len(t) < 2 * cfg.window_s:
            return VitalsEstimate(UNKNOWN, frames=len(t), reason=f"{len(t)} frames in the window")
        n_bins = int(round(cfg.window_s * cfg.sample_rate_hz))
        binned = bin_frames(t, z, t_end - cfg.window_s, n_bins, cfg.sample_rate_hz)
        coverage = float(np.mean(binned.counts > 0))
        if coverage < cfg.min_coverage:
            return VitalsEstimate(UNKNOWN, frames=len(t), reason=f"frames in {100 * coverage:.0f} % of the window")
        gap = float(np.max(np.diff(np.append(np.sort(t), t_end))))     # a short history is min_coverage's matter
        if gap > MAX_GAP_S:
            return VitalsEstimate(UNKNOWN, frames=len(t), reason=f"a {gap:.1f} s gap in the window's frames")
        level = self._motion_level(t_end, t, z, noise_scale)
        if level > cfg.motion_factor:
            self.last_motion_t = t_end
        if t_end - self.last_motion_t <= cfg.motion_hold_s:
            return VitalsEstimate(MOVING, motion_level=level, window_s=cfg.window_s, frames=len(t),
                                  reason="gross motion")
        clean_s = min(cfg.window_s, t_end - self.last_motion_t)
        if clean_s < cfg.min_window_s:
            return VitalsEstimate(UNKNOWN, motion_level=level, window_s=clean_s, frames=len(t),
                                  reason=f"settling after motion ({clean_s:.0f} of {cfg.min_window_s:.0f} s)")
        used = binned.means[n_bins - int(round(clean_s * cfg.sample_rate_hz)):]
        band = (cfg.min_rate_bpm / 60.0, cfg.max_rate_bpm / 60.0)
        signal = motion_signal(used, cfg.sample_rate_hz, (0.7 * band[0], min(2.0 * band[1], NOISE_BAND_HZ[0])))
        peak = breathing_peak(signal, cfg.sample_rate_hz, band)
        snr_db = 10.0 * np.log10(max(peak.snr, 1e-12))
        result = VitalsEstimate(EMPTY, snr_db=snr_db, motion_level=level, window_s=clean_s,
                                frames=int(np.sum(t >= t_end - clean_s)))
        if snr_db < cfg.presence_snr_db:
            result.reason = f"no breathing above the noise ({snr_db:.1f} dB)"
            return result
        rate = mean_rate(signal, cfg.sample_rate_hz, peak.frequency_hz)
        if not np.isfinite(rate.std_hz) or abs(rate.frequency_hz / peak.frequency_hz - 1.0) > CYCLE_AGREEMENT:
            result.reason = (f"a {60 * peak.frequency_hz:.1f} /min peak ({snr_db:.1f} dB) without repeated breaths "
                             "(a slow drift, not breathing)")
            return result
        if not band[0] <= rate.frequency_hz <= band[1]:
            result.reason = (f"{60 * rate.frequency_hz:.1f} breaths/min counted under a {60 * peak.frequency_hz:.1f} /min "
                             "peak: outside the breathing band")
            return result
        result.state = STILL
        result.rate_bpm = 60.0 * rate.frequency_hz
        crlb = 60.0 / (np.pi * clean_s * np.sqrt(peak.snr))
        result.rate_std_bpm = float(np.sqrt(crlb ** 2 + (60.0 * rate.std_hz) ** 2 + cfg.rate_floor_bpm ** 2))
        return result

    def _motion_level(self, t_end: float, t: np.ndarray, z: np.ndarray, noise_scale: float | None) -> float:
        """Change of the channel in the last motion window over the link's still baseline: the
        larger of the scatter of frames within a bin (fast motion) and the change from bin to bin
        (slower motion), each relative to the channel's power (a gain error does not look like
        motion), taken in the worst MOTION_BLOCK_S of the window (motion is seen within that of
        its onset). Bins are summarised by medians, so that a single odd frame (a phase jump that
        slipped through the gate) is not motion. t: ``(F,)`` s, z: ``(F, M)`` the window's frames."""
        cfg = self.config
        k = max(2, int(round(cfg.motion_window_s * cfg.sample_rate_hz)))
        block = max(1, int(round(MOTION_BLOCK_S * cfg.sample_rate_hz)))
        index = np.floor((t - (t_end - (k + 1) / cfg.sample_rate_hz)) * cfg.sample_rate_hz).astype(int)
        centres = np.full((k + 1, z.shape[1]), np.nan + 0j)
        scatter = np.full(k + 1, np.nan)
        for i in range(k + 1):
            frames = z[index == i]
            if frames.shape[0]:
                centres[i] = np.median(frames.real, axis=0) + 1j * np.median(frames.imag, axis=0)
            if frames.shape[0] >= 2:
                scatter[i] = float(np.median(np.mean(np.abs(frames - centres[i]) ** 2, axis=1)))
        power = float(np.nanmean(np.abs(centres) ** 2)) if noise_scale is None else noise_scale
        power = power if np.any(np.isfinite(scatter)) else 0.0
        if not power > 0:
            return float("nan")
        change = np.mean(np.abs(np.diff(centres, axis=0)) ** 2, axis=1)

        def worst_block(x: np.ndarray) -> float:
            x = x[np.isfinite(x)]
            if x.size < block:
                return float("nan")
            return float(np.max(np.convolve(x, np.ones(block) / block, mode="valid"))) / power

        fast, slow = worst_block(scatter[1:]), worst_block(change)
        history = self.motion_history
        if t_end - self._last_history_t >= cfg.motion_window_s:
            history.append((t_end, fast, slow))
            self._last_history_t = t_end
        while history and history[0][0] < t_end - HISTORY_S:
            history.popleft()
        if len(history) < 5:
            return float("nan")
        ratios = []
        for value, column in ((fast, 1), (slow, 2)):
            past = np.array([h[column] for h in history])
            past = past[np.isfinite(past)]
            if np.isfinite(value) and past.size >= 5:
                ratios.append(value / max(float(np.percentile(past, BASELINE_PERCENTILE)), 1e-30))
        return float(max(ratios)) if ratios else float("nan")


class FrameWindow:
    """Feature frames of one link or array: those of the last window (and a second more, for late
    ones), with packet-sync phase jumps gated out."""

    def __init__(self, config: VitalsConfig) -> None:
        config.validate()
        self.config = config
        self.frames: deque[tuple[float, np.ndarray]] = deque()
        self.newest_t = -np.inf
        self.reference: np.ndarray | None = None
        self.jumps = 0
        """Frames dropped as phase jumps so far."""
        self._jumps_in_row = 0

    def add(self, t_s: float, features: np.ndarray) -> bool:
        """One frame at time ``t_s`` (s, any order within the window); False if it was dropped as
        a phase jump. ValueError for non-finite features or a changed feature count."""
        z = np.asarray(features, complex)
        if not np.all(np.isfinite(z)):
            raise ValueError("non-finite CSI features")
        if self.reference is not None and self.reference.shape != z.shape:
            raise ValueError(f"{z.size} features where the link had {self.reference.size}")
        if self.reference is not None and self._jumps_in_row < JUMP_RESET:
            turn = abs(float(np.angle(np.vdot(self.reference, z))))
            if turn > JUMP_GATE_RAD:
                self.jumps += 1
                self._jumps_in_row += 1
                return False
        self._jumps_in_row = 0
        self.reference = z if self.reference is None else (1 - REFERENCE_WEIGHT) * self.reference + REFERENCE_WEIGHT * z
        self.frames.append((t_s, z))
        self.newest_t = max(self.newest_t, t_s)
        while self.frames and self.frames[0][0] < self.newest_t - self.config.window_s - 1.0:
            self.frames.popleft()
        return True

    def window(self, t_end: float) -> tuple[np.ndarray, np.ndarray]:
        """The frames in ``[t_end - window_s, t_end)``: times ``(F,)`` s and features ``(F, M)``."""
        frames = [(t, z) for t, z in self.frames if t_end - self.config.window_s <= t < t_end]
        if not frames:
            return np.zeros(0), np.zeros((0, 0 if self.reference is None else self.reference.size), complex)
        return np.array([f[0] for f in frames]), np.stack([f[1] for f in frames])


class VitalsLink(FrameWindow):
    """Feature frames of one link -> breathing and presence per window."""

    def __init__(self, config: VitalsConfig) -> None:
        super().__init__(config)
        self.judge = WindowJudge(config)

    def estimate(self, t_end: float | None = None) -> VitalsEstimate:
        """The window ending at ``t_end`` (default: the newest frame)."""
        t_end = self.newest_t if t_end is None else t_end
        result = self.judge.judge(*self.window(t_end), t_end)
        result.t_end_s = t_end
        return result


LATE_FRAMES_S = 0.5
"""A window is judged once frames this much newer than its end have come: frames reach the node
out of order (network jitter, bursts, a busy host), and a window judged at the first frame past
its end lacks its last ones, which thins the bins the motion level is read from."""


class EstimateSchedule:
    """When a link's (or array's) next estimates are due: every ``period_s`` of its own time,
    LATE_FRAMES_S after the window's end (stamp-driven: a replayed bag gives the same estimates)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.next_t: float | None = None

    def due(self, newest_t: float) -> list[float]:
        """Window ends (s) that the newest frame time ``newest_t`` has passed since the last call."""
        if not np.isfinite(newest_t):
            return []
        if self.next_t is None or newest_t - self.next_t > 10 * self.period_s:
            self.next_t = newest_t + self.period_s              # first frames, or after a long silence
        out = []
        while newest_t >= self.next_t + LATE_FRAMES_S:
            out.append(self.next_t)
            self.next_t += self.period_s
        return out
