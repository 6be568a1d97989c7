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

import numpy as np

from ..geometry import board_antenna_positions, direction_vector
from ..wifi import GRIDS, SPEED_OF_LIGHT, CsiFormat, baseband_offsets_hz, grid_center_hz
from .scenario import Impairments, Transmitter


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
        """Received CSI of one OTA frame, complex ``(N, bins)``, direct path of unit amplitude, without T_i."""
        grid = GRIDS[fmt]
        f = grid_center_hz(fmt, channel, secondary) + grid.indices * grid.spacing_hz
        f_bb = baseband_offsets_hz(fmt, secondary)
        source = tx.position_at(t_s)
        if tx.spherical_wave:
            path = np.linalg.norm(source[None, :] - self.positions, axis=1)        # (N,)
        else:
            path = tx.distance_m - self.positions @ (source / np.linalg.norm(source))
        h = np.exp(-2j * np.pi * np.outer(path / SPEED_OF_LIGHT, f))
        for refl in tx.reflections:
            u = direction_vector(np.radians(refl.azimuth_deg), np.radians(refl.elevation_deg))
            delay_s = (tx.distance_m - self.positions @ u) / SPEED_OF_LIGHT + refl.excess_delay_ns * 1e-9
            phase = self.rng.uniform(-np.pi, np.pi) if refl.random_phase else 0.0
            h = h + 10 ** (refl.gain_db / 20) * np.exp(1j * phase - 2j * np.pi * np.outer(delay_s, f))
        clean = h * self._receiver_errors(f_bb) * self._common(f_bb)[None, :]
        snr = tx.snr_db if tx.snr_db is not None else snr_db
        return clean + self._noise(clean.shape, snr)

    def reference(self, fmt: CsiFormat, channel: int, secondary: int, snr_db: float) -> np.ndarray:
        """Received CSI of one reference packet, complex ``(N, bins)``, without T_i."""
        grid = GRIDS[fmt]
        f = grid_center_hz(fmt, channel, secondary) + grid.indices * grid.spacing_hz
        f_bb = baseband_offsets_hz(fmt, secondary)
        h = np.exp(-2j * np.pi * np.mod(np.outer(self.reference_delay_s, f), 1.0))
        clean = h * self._receiver_errors(f_bb) * self._common(f_bb)[None, :]
        return clean + self._noise(clean.shape, snr_db)
