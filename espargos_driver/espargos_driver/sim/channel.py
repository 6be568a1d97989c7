"""Channel model of the simulator, in the driver's complex domain (after decoding, before STO removal).

For sensor i the simulator produces, per spec section 10,

    z_i(f) = H_i(f) * exp(j (theta_i - 2 pi f_bb delta_i)) * exp(+j 2 pi T_i f_bb) * c(f)

with H_i the propagation from the transmitter (plane or spherical wave on the real
geometry and absolute subcarrier frequency f), theta_i / delta_i the sensor's LO phase and
timing offset, T_i its reported timestamp (removed again by the driver's STO step), and c
a per-packet factor common to all antennas (random phase, detection delay). Reference
packets use H_i = exp(-j 2 pi f d_i) with d_i the reference-path delay.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..geometry import board_antenna_positions, direction_vector
from ..wifi import GRIDS, SPEED_OF_LIGHT, CsiFormat, baseband_offsets_hz, grid_center_hz
from .person import PersonSpec
from .scenario import Impairments, Transmitter


AGC_RANGE_DB = 40.0
"""The simulated AGC's gain range about its nominal setting, +-dB."""


class ArrayChannel:
    """Random but fixed per-sensor impairments of a simulated array (one board or several sharing
    one reference clock), and the CSI they give."""

    def __init__(self, impairments: Impairments, reference_delay_s: np.ndarray,
                 rng: np.random.Generator, positions_m: np.ndarray | None = None) -> None:
        """positions_m: ``(..., 3)`` antenna positions in the array frame (default: one 2x4
        board); reference_delay_s: matching reference-path delays (traces and cables)."""
        pos = board_antenna_positions() if positions_m is None else np.asarray(positions_m, float)
        self.positions = pos.reshape(-1, 3)                                 # (N, 3)
        self.reference_delay_s = np.asarray(reference_delay_s).reshape(-1)  # (N,)
        self.impairments = impairments
        self.rng = rng
        n = self.positions.shape[0]
        self.lo_phase, self.timing_offset_s, self.clock_offset_ns = np.zeros(n), np.zeros(n), np.zeros(n)
        self.reboot(slice(None))
        self.gain = (10 ** (rng.normal(0, impairments.gain_std_db, n) / 20) if impairments.gain_std_db > 0
                     else np.ones(n))
        """Per-sensor amplitude gain (sensitivity), drawn only when gain_std_db > 0 (seeded runs
        without it keep their random streams)."""

    def reboot(self, sensors: slice) -> None:
        """New random LO phases, timing and clock offsets of ``sensors``, as after a chip reset or
        a PLL re-lock (the ESPARGOS paper: the initial phase changes after a reset)."""
        n, imp, rng = len(self.lo_phase[sensors]), self.impairments, self.rng
        self.lo_phase[sensors] = rng.uniform(-np.pi, np.pi, n) if imp.lo_phase else 0.0
        self.timing_offset_s[sensors] = rng.normal(0, imp.timing_offset_std_ns * 1e-9, n)
        self.clock_offset_ns[sensors] = rng.normal(0, imp.clock_offset_std_ns, n)

    def _receiver_errors(self, f_bb: np.ndarray) -> np.ndarray:
        return self.gain[:, None] * np.exp(1j * (self.lo_phase[:, None]
                                                 - 2 * np.pi * f_bb[None, :] * self.timing_offset_s[:, None]))

    def _common(self, f_bb: np.ndarray) -> np.ndarray:
        detection_delay_s = self.rng.uniform(0, 50e-9)
        return np.exp(1j * (self.rng.uniform(-np.pi, np.pi) - 2 * np.pi * f_bb * detection_delay_s))

    def _noise(self, shape: tuple[int, ...], snr_db: float) -> np.ndarray:
        sigma = 10 ** (-snr_db / 20) / np.sqrt(2)
        return sigma * (self.rng.standard_normal(shape) + 1j * self.rng.standard_normal(shape))

    def ota(self, tx: Transmitter, t_s: float, fmt: CsiFormat, channel: int, secondary: int,
            snr_db: float) -> np.ndarray:
        """Received CSI of one OTA frame, complex ``(N, bins)``, without T_i, with the AGC's
        scaling if the transmitter's channel has one (see :meth:`receive` for the gains)."""
        return self.receive(tx, t_s, fmt, channel, secondary, snr_db)[0]

    def receive(self, tx: Transmitter, t_s: float, fmt: CsiFormat, channel: int, secondary: int,
                snr_db: float, people: Sequence[PersonSpec] = ()) -> tuple[np.ndarray, np.ndarray]:
        """One OTA frame: CSI ``(N, bins)`` (direct path of mean power 1 before the AGC, noise at
        ``snr_db`` below it) and the gain in dB each sensor's AGC applied, ``(N,)`` (multiples
        of 1/4 dB; zeros without AGC). ``people`` (array frame) add a path each through their chest."""
        grid = GRIDS[fmt]
        f = grid_center_hz(fmt, channel, secondary) + grid.indices * grid.spacing_hz
        f_bb = baseband_offsets_hz(fmt, secondary)
        model = tx.channel
        source = tx.position_at(t_s)
        distance = float(np.linalg.norm(source))
        if tx.spherical_wave:
            path = np.linalg.norm(source[None, :] - self.positions, axis=1)        # (N,)
        else:
            path = distance - self.positions @ (source / distance)
        h = self._direct_gain(model) * np.exp(-2j * np.pi * np.outer(path / SPEED_OF_LIGHT, f))
        for refl in tx.reflections:
            phase = self.rng.uniform(-np.pi, np.pi) if refl.random_phase else 0.0
            h = h + 10 ** (refl.gain_db / 20) * np.exp(1j * phase) * self._plane_wave(
                distance, refl.azimuth_deg, refl.elevation_deg, refl.excess_delay_ns, f)
        for image, gain_db in tx.images_at(t_s):
            rng = float(np.linalg.norm(image))
            az, el = np.degrees(np.arctan2(image[1], image[0])), np.degrees(np.arcsin(image[2] / rng))
            if abs(az) < 90.0:                         # the board's ground plane shields it from behind
                h = h + 10 ** (gain_db / 20) * self._plane_wave(distance, az, el, (rng - distance) / SPEED_OF_LIGHT * 1e9, f)
        azimuth_deg, elevation_deg = tx.azimuth_at(t_s), tx.elevation_at(t_s)
        for p, az in zip(model.paths, model.path_directions(azimuth_deg)):
            fade = self._unit_gaussian()
            h = h + 10 ** (p["gain_db"] / 20) * fade * self._plane_wave(
                distance, az, elevation_deg, p["excess_delay_ns"], f)
        for person in people:
            reflected = person.path(source, self.positions, t_s)
            if reflected is not None:
                length_m, amplitude = reflected
                h = h + amplitude[:, None] * np.exp(-2j * np.pi * np.mod(np.outer(length_m / SPEED_OF_LIGHT, f), 1.0))
        if model.phase_noise_deg > 0:
            h = h * np.exp(1j * np.radians(model.phase_noise_deg) * self.rng.standard_normal(h.shape[0]))[:, None]
        clean = h * self._receiver_errors(f_bb) * self._common(f_bb)[None, :]
        snr = tx.snr_db if tx.snr_db is not None else snr_db
        z = clean + self._noise(clean.shape, snr)
        gain_db = self._agc(z, model.agc_jitter_db) if model.agc else np.zeros(z.shape[0])
        return z * (10 ** (gain_db / 20))[:, None], gain_db

    def _direct_gain(self, model) -> complex:
        """Complex gain of the direct path in one frame, mean power 1."""
        if model.fading == "none":
            return 1.0
        scattered = self._unit_gaussian()
        if model.fading == "rayleigh":
            return scattered
        if model.fading == "rician":
            k = 10 ** (model.k_factor_db / 10)
            return np.sqrt(k / (k + 1)) + np.sqrt(1 / (k + 1)) * scattered
        raise ValueError(f"unknown fading {model.fading!r}")

    def _unit_gaussian(self) -> complex:
        """One circular complex-Gaussian value of mean power 1 (a Rayleigh-fading gain)."""
        return complex(self.rng.standard_normal() + 1j * self.rng.standard_normal()) / np.sqrt(2)

    def _plane_wave(self, distance_m: float, azimuth_deg: float, elevation_deg: float, excess_delay_ns: float,
                    f: np.ndarray) -> np.ndarray:
        """``(N, bins)`` phases of a plane wave from a direction, delayed by ``excess_delay_ns``."""
        u = direction_vector(np.radians(azimuth_deg), np.radians(elevation_deg))
        delay_s = (distance_m - self.positions @ u) / SPEED_OF_LIGHT + excess_delay_ns * 1e-9
        return np.exp(-2j * np.pi * np.outer(delay_s, f))

    def _agc(self, z: np.ndarray, jitter_db: float) -> np.ndarray:
        """Per-sensor AGC gain (dB, 1/4 dB steps) bringing each sensor's mean power to 1, with scatter."""
        power_db = 10 * np.log10(np.maximum(np.mean(np.abs(z) ** 2, axis=1), 1e-12))
        wanted = -power_db + jitter_db * self.rng.standard_normal(z.shape[0])
        return np.round(np.clip(wanted, -AGC_RANGE_DB, AGC_RANGE_DB) * 4) / 4

    def reference(self, fmt: CsiFormat, channel: int, secondary: int, snr_db: float) -> np.ndarray:
        """Received CSI of one reference packet, complex ``(N, bins)``, without T_i."""
        grid = GRIDS[fmt]
        f = grid_center_hz(fmt, channel, secondary) + grid.indices * grid.spacing_hz
        f_bb = baseband_offsets_hz(fmt, secondary)
        h = np.exp(-2j * np.pi * np.mod(np.outer(self.reference_delay_s, f), 1.0))
        clean = h * self._receiver_errors(f_bb) * self._common(f_bb)[None, :]
        return clean + self._noise(clean.shape, snr_db)
