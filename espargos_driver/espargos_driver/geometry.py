"""Antenna positions of ESPARGOS boards in the array frame (REP 103: x boresight, y left, z up)."""
from __future__ import annotations

import numpy as np

from .protocol.constants import ANTENNA_SPACING_M, COLS, COLUMN_TOWARDS_Y, ROWS


def grid_positions(rows: int, cols: int, spacing_m: float = ANTENNA_SPACING_M) -> np.ndarray:
    """Positions of a rows x cols antenna grid in the array's y-z plane, metres, shape
    ``(rows, cols, 3)``, centred on the origin.

    Row 0 is the top row (+z); the column direction is the UNCONFIRMED ``COLUMN_TOWARDS_Y``.
    """
    pos = np.zeros((rows, cols, 3))
    pos[..., 1] = COLUMN_TOWARDS_Y * (np.arange(cols) - (cols - 1) / 2)[None, :] * spacing_m
    pos[..., 2] = ((rows - 1) / 2 - np.arange(rows))[:, None] * spacing_m
    return pos


def board_antenna_positions(spacing_m: float = ANTENNA_SPACING_M) -> np.ndarray:
    """Positions of the 2x4 board's antennas, metres, shape ``(2, 4, 3)`` (see :func:`grid_positions`)."""
    return grid_positions(ROWS, COLS, spacing_m)


def direction_vector(azimuth_rad: float, elevation_rad: float) -> np.ndarray:
    """Unit vector towards (azimuth, elevation): azimuth from +x towards +y, elevation towards +z."""
    return np.array([np.cos(elevation_rad) * np.cos(azimuth_rad),
                     np.cos(elevation_rad) * np.sin(azimuth_rad),
                     np.sin(elevation_rad)])
