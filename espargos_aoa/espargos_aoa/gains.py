"""Receiver gain compensation: undo each sensor's automatic gain control (AGC) frame by frame.

Every ESP32 sensor runs its own AGC, so the CSI of one frame is scaled per antenna by the RX
gain (1 dB steps) and FFT gain (1/4 dB steps) the chip chose for that frame; both are reported
in rx_ctrl and published per antenna in ``CsiArray`` (``rx_gain_db``, ``fft_gain_db``, dB).
The spec's normalisation (vendor client) is ``x * 10**(-(rx_gain + fft_gain) / 20)``. Without
it, the array sees amplitude steps between antennas and between frames that no plane wave has.
"""
from __future__ import annotations

import numpy as np


def compensate_gains(csi: np.ndarray, rx_gain_db: np.ndarray, fft_gain_db: np.ndarray) -> np.ndarray:
    """CSI with the reported receiver gains taken out.

    csi: complex ``(N, S)``; rx_gain_db, fft_gain_db: ``(N,)`` dB, NaN where not reported
    (such a gain counts as 0 dB: nothing known, nothing removed).
    """
    rx, fft = np.asarray(rx_gain_db, float), np.asarray(fft_gain_db, float)
    total = np.where(np.isfinite(rx), rx, 0.0) + np.where(np.isfinite(fft), fft, 0.0)
    return csi * (10 ** (-total / 20))[:, None].astype(np.float32 if csi.dtype == np.complex64 else float)
