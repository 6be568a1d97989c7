"""Combined arrays: several 2x4 boards laid out as one rows x cols phase-coherent array.

Reads the pyespargos combined-array YAML as is (spec section 6)::

    combined-array:
      boards:
        <name>: {host: <ip or hostname>, cable: {length: <m>, velocity_factor: <0..1>}}
      array:                       # rows of "<board>.<row>.<col>"
        - ["ba1.1.0", "ba1.0.0", "ba2.1.0", ...]

plus optional keys of ours: per board ``http_port`` / ``stream_port`` (defaults 80 / 53330),
and ``reference: <board>``, the board whose reference generator feeds all boards (default:
the first board). Each board must appear whole, as a rigidly rotated 2x4 block (N/E/S/W).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from .geometry import grid_positions
from .protocol.constants import ANTENNAS, COLS, DEFAULT_HTTP_PORT, DEFAULT_STREAM_PORT, ROWS

ORIENTATIONS = {((1, 0), (0, 1)): "N", ((0, 1), (-1, 0)): "E", ((-1, 0), (0, -1)): "S", ((0, -1), (1, 0)): "W"}
"""(stride of board row, stride of board column) in layout (row, col) -> orientation name."""
DEFAULT_VELOCITY_FACTOR = 0.76


class LayoutError(ValueError):
    """The combined-array description cannot work; the message says what to fix."""


@dataclass
class BoardSpec:
    name: str
    host: str
    http_port: int = DEFAULT_HTTP_PORT
    stream_port: int = DEFAULT_STREAM_PORT
    cable_length_m: float = 0.0
    velocity_factor: float = DEFAULT_VELOCITY_FACTOR


@dataclass
class ArrayLayout:
    """boards in index order; ``cells[i, j]`` = flat antenna index ``board * 8 + row * 4 + col``."""

    boards: list[BoardSpec]
    cells: np.ndarray
    orientations: list[str]
    reference_board: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.cells.shape

    def gather(self, values: np.ndarray) -> np.ndarray:
        """``(boards, 2, 4, ...)`` -> ``(rows, cols, ...)`` in layout order (a view when the layout
        keeps the boards' own order, as a single board does)."""
        if self.in_board_order:
            return values.reshape(self.cells.shape + values.shape[3:])
        return values.reshape((len(self.boards) * ANTENNAS,) + values.shape[3:])[self.cells]

    @cached_property
    def in_board_order(self) -> bool:
        return bool(np.array_equal(self.cells.reshape(-1), np.arange(self.cells.size)))

    def labels(self) -> list[str]:
        """Row-major ``"<board>.<row>.<col>"`` of every layout cell."""
        return [f"{self.boards[i // ANTENNAS].name}.{(i % ANTENNAS) // COLS}.{i % COLS}" for i in self.cells.reshape(-1)]

    def positions(self) -> np.ndarray:
        """Antenna positions ``(rows, cols, 3)`` in metres in the array frame (60 mm pitch)."""
        return grid_positions(*self.shape)

    def board_positions(self) -> np.ndarray:
        """Position of every board antenna, ``(boards, 2, 4, 3)`` (inverse of :meth:`gather`)."""
        out = np.empty((len(self.boards) * ANTENNAS, 3))
        out[self.cells.reshape(-1)] = self.positions().reshape(-1, 3)
        return out.reshape(len(self.boards), ROWS, COLS, 3)


def single_board_layout(name: str, host: str, http_port: int = DEFAULT_HTTP_PORT,
                        stream_port: int = DEFAULT_STREAM_PORT) -> ArrayLayout:
    """The 2x4 board on its own (orientation N)."""
    return ArrayLayout([BoardSpec(name, host, http_port, stream_port)], np.arange(ANTENNAS).reshape(ROWS, COLS), ["N"])


def _board(name: str, spec) -> BoardSpec:
    if not isinstance(spec, dict) or not isinstance(spec.get("host"), str) or not spec["host"]:
        raise LayoutError(f"board {name!r}: needs a host, e.g. {{host: 192.168.1.3}}")
    cable = spec.get("cable") or {}
    try:
        board = BoardSpec(name, spec["host"], int(spec.get("http_port", DEFAULT_HTTP_PORT)),
                          int(spec.get("stream_port", DEFAULT_STREAM_PORT)), float(cable.get("length", 0.0)),
                          float(cable.get("velocity_factor", DEFAULT_VELOCITY_FACTOR)))
    except (TypeError, ValueError, AttributeError) as err:
        raise LayoutError(f"board {name!r}: {err}") from err
    if not (0 < board.velocity_factor <= 1) or board.cable_length_m < 0:
        raise LayoutError(f"board {name!r}: cable length must be >= 0 m and velocity_factor in (0, 1], "
                          f"got {board.cable_length_m} m, {board.velocity_factor}")
    return board


def load_layout(data: dict) -> ArrayLayout:
    """Parse a combined-array description (with or without the ``combined-array:`` wrapper)."""
    if not isinstance(data, dict):
        raise LayoutError("a combined-array YAML must be a mapping with 'boards' and 'array'")
    data = data.get("combined-array", data)
    boards_in = data.get("boards") if isinstance(data, dict) else None
    rows_in = data.get("array") if isinstance(data, dict) else None
    if not isinstance(boards_in, dict) or not boards_in:
        raise LayoutError("combined-array: 'boards' must map board names to {host: ...}")
    if not isinstance(rows_in, list) or not rows_in or not all(isinstance(r, list) and r for r in rows_in):
        raise LayoutError("combined-array: 'array' must be a list of rows of \"<board>.<row>.<col>\" entries")
    if len({len(r) for r in rows_in}) != 1:
        raise LayoutError(f"combined-array: rows of 'array' differ in length: {[len(r) for r in rows_in]}")
    boards = [_board(str(name), spec) for name, spec in boards_in.items()]
    index = {b.name: i for i, b in enumerate(boards)}
    cells = np.full((len(rows_in), len(rows_in[0])), -1)
    where: dict[int, tuple[int, int]] = {}
    for i, row in enumerate(rows_in):
        for j, entry in enumerate(row):
            parts = str(entry).rsplit(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
                raise LayoutError(f"array[{i}][{j}] = {entry!r}: expected '<board>.<row>.<col>'")
            name, r, c = parts[0], int(parts[1]), int(parts[2])
            if name not in index:
                raise LayoutError(f"array[{i}][{j}] = {entry!r}: board {name!r} is not defined under 'boards'")
            if not (r < ROWS and c < COLS):
                raise LayoutError(f"array[{i}][{j}] = {entry!r}: a board has rows 0..1 and columns 0..3")
            flat = index[name] * ANTENNAS + r * COLS + c
            if flat in where:
                raise LayoutError(f"antenna {entry} appears twice (overlapping antennas): at array[{where[flat][0]}]"
                                  f"[{where[flat][1]}] and array[{i}][{j}]")
            where[flat] = (i, j)
            cells[i, j] = flat
    orientations = [_orientation(b, index[b.name], where) for b in boards]
    reference = data.get("reference", boards[0].name)
    if reference not in index:
        raise LayoutError(f"reference board {reference!r} is not defined under 'boards'")
    return ArrayLayout(boards, cells, orientations, index[reference])


def _orientation(board: BoardSpec, b: int, where: dict[int, tuple[int, int]]) -> str:
    present = [k for k in range(ANTENNAS) if b * ANTENNAS + k in where]
    if not present:
        raise LayoutError(f"board {board.name!r} is defined under 'boards' but missing from the layout")
    if len(present) != ANTENNAS:
        missing = [f"{board.name}.{k // COLS}.{k % COLS}" for k in range(ANTENNAS) if k not in present]
        raise LayoutError(f"board {board.name!r} is incomplete in the layout: missing {', '.join(missing)}")
    pos = {k: np.array(where[b * ANTENNAS + k]) for k in range(ANTENNAS)}
    strides = (tuple(pos[COLS] - pos[0]), tuple(pos[1] - pos[0]))
    name = ORIENTATIONS.get(tuple(tuple(int(v) for v in s) for s in strides))
    rigid = name is not None and all(
        np.array_equal(pos[r * COLS + c], pos[0] + r * np.array(strides[0]) + c * np.array(strides[1]))
        for r in range(ROWS) for c in range(COLS))
    if not rigid:
        raise LayoutError(f"board {board.name!r} is not laid out as a rigid 2x4 block rotated by 0/90/180/270 deg")
    return name


def load_layout_file(path: str | Path) -> ArrayLayout:
    """:func:`load_layout` of a YAML file; LayoutError (a ValueError) names the file and the problem."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as err:
        raise LayoutError(f"cannot read combined-array file {path}: {err}") from err
    try:
        return load_layout(data)
    except LayoutError as err:
        raise LayoutError(f"{path}: {err}") from err
