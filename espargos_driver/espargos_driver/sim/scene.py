"""A world scene for the board simulator: transmitters moving along paths in a fixed frame
(``map``), the walls of a room as mirrors, boards placed anywhere by their pose, and optionally a
platform (a robot, a drone) moving along a path that carries the boards (their pose is then their
mount on it).

Each simulated board runs the ordinary scenario machinery; :func:`board_scenario` gives it the
scene's transmitters as seen from its pose (:attr:`Transmitter.track`): direct path and one
image source per wall (first-order reflections, image method). Scene time is wall-clock time
(``time.time()``), so that every board process, the test that judges the positions and a bag of
the run agree on where everything was without talking to each other.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from .scenario import Scenario


@dataclass
class Path3D:
    """A piecewise-straight path through ``waypoints`` (n, 3) m at ``speed`` m/s: round the polygon
    with ``loop``, else there and back. One waypoint: standing still."""

    waypoints: np.ndarray
    speed: float = 0.0
    loop: bool = False

    def __post_init__(self) -> None:
        self.waypoints = np.asarray(self.waypoints, float).reshape(-1, 3)
        if not len(self.waypoints) or not np.all(np.isfinite(self.waypoints)):
            raise ValueError("a path needs finite waypoints [[x, y, z], ...] (m)")
        if self.speed < 0 or (len(self.waypoints) > 1 and self.speed == 0):
            raise ValueError(f"a path through several waypoints needs a speed > 0 (m/s), got {self.speed}")
        points = np.vstack([self.waypoints, self.waypoints[:1]]) if self.loop else np.vstack(
            [self.waypoints, self.waypoints[-2::-1]])
        self._points = points
        self._cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])

    @classmethod
    def pop_from(cls, data: dict) -> "Path3D":
        """The path of a scene entry, its keys popped from ``data``: ``waypoints`` (or one
        ``position``), ``speed``, ``loop``."""
        waypoints = data.pop("waypoints", None) if "waypoints" in data else [data.pop("position", None)]
        return cls(waypoints, float(data.pop("speed", 0.0)), bool(data.pop("loop", False)))

    def position(self, t_s: float) -> np.ndarray:
        """Position (3,) m at scene time ``t_s``."""
        if len(self.waypoints) == 1 or self._cumulative[-1] == 0:
            return self.waypoints[0].copy()
        s = (self.speed * t_s) % self._cumulative[-1]
        return np.array([np.interp(s, self._cumulative, self._points[:, k]) for k in range(3)])


@dataclass
class Platform:
    """A platform carrying the boards along ``path``, level, its x axis along the direction of
    travel (``yaw`` None) or at a fixed ``yaw`` (rad) in the scene frame."""

    path: Path3D
    yaw: float | None = None

    DT_S = 1e-3
    """s, step of the central difference that gives the velocity."""

    def velocity(self, t_s: float) -> np.ndarray:
        """Velocity (3,) m/s in the scene frame at scene time ``t_s``."""
        return (self.path.position(t_s + self.DT_S) - self.path.position(t_s - self.DT_S)) / (2 * self.DT_S)

    def pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) m and rotation (3, 3) platform -> scene frame at scene time ``t_s``."""
        if self.yaw is not None:
            yaw = self.yaw
        else:
            v = self.velocity(t_s)
            yaw = float(np.arctan2(v[1], v[0])) if np.hypot(v[0], v[1]) > 1e-9 else 0.0
        return self.path.position(t_s), Rotation.from_euler("z", yaw).as_matrix()

    @classmethod
    def from_dict(cls, data: dict) -> "Platform":
        """``{waypoints: [[x, y, z], ...], speed: m/s, loop: bool, yaw: rad (optional)}``."""
        data = dict(data)
        path = Path3D.pop_from(data)
        yaw = data.pop("yaw", None)
        if data:
            raise TypeError(f"unknown platform keys {sorted(data)}")
        return cls(path, None if yaw is None else float(yaw))


@dataclass
class Room:
    """An axis-aligned room whose four walls reflect (x and y bounds in m); floor and ceiling do not."""

    x: tuple[float, float] = (0.0, 10.0)
    y: tuple[float, float] = (0.0, 8.0)
    reflection_loss_db: float = 6.0
    """Power lost at a wall, dB (plasterboard and glass: 3-10 dB at 2.4 GHz)."""

    def images(self, point: np.ndarray) -> list[np.ndarray]:
        """The mirror image of ``point`` in each of the four walls, (3,) m each."""
        out = []
        for axis, bounds in ((0, self.x), (1, self.y)):
            for wall in bounds:
                image = np.array(point, float)
                image[axis] = 2 * wall - image[axis]
                out.append(image)
        return out


@dataclass
class SceneTransmitter:
    """A transmitter in the scene: its MAC, path, SNR (None: the scenario's) and channel model
    (a preset name or a dict, as a scenario transmitter's ``channel``; walls add their images)."""

    mac: str
    path: Path3D
    snr_db: float | None = None
    channel: str | dict = "realistic"


@dataclass
class Scene:
    """Transmitters (fixed frame) and an optional room; ``scenario`` holds everything else of a
    board's :class:`Scenario` (rates, SNR, channel model, impairments) as a plain dict."""

    transmitters: list[SceneTransmitter]
    room: Room | None = None
    scenario: dict = field(default_factory=dict)
    platform: Platform | None = None
    """The boards ride on it: a board's pose is its mount on the platform."""

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        """From YAML (see config/room_scene.yaml); TypeError or ValueError say what is wrong."""
        scene = dict(data.get("scene") or {})
        txs = []
        for t in scene.pop("transmitters", None) or []:
            t = dict(t)
            path = Path3D.pop_from(t)
            txs.append(SceneTransmitter(path=path, **t))
        if not txs:
            raise ValueError("a scene needs transmitters: [{mac: ..., position: [x, y, z]} or {waypoints: ..., speed: ...}]")
        room = Room(**scene.pop("room")) if scene.get("room") else None
        scene.pop("room", None)
        platform = Platform.from_dict(scene.pop("platform")) if scene.get("platform") else None
        scene.pop("platform", None)
        if scene:
            raise TypeError(f"unknown scene keys {sorted(scene)}")
        scenario = dict(data.get("scenario") or {})
        if "transmitters" in scenario:
            raise ValueError("a scene's transmitters are under scene:, not scenario:")
        if scenario.get("people"):
            raise ValueError("people are not supported in a scene yet (their positions would be taken in each "
                             "board's frame): give them in a board scenario")
        Scenario.from_dict(scenario)                      # refuse a bad scenario section here
        return cls(txs, room, scenario, platform)

    @classmethod
    def from_file(cls, path: str | Path) -> "Scene":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})


@dataclass
class BoardTrack:
    """A scene transmitter as one board sees it: callable with scenario time (s), returns its
    position in the board frame (3,) m and its wall images [(position (3,) m, gain dB)]."""

    transmitter: SceneTransmitter
    room: Room | None
    board_position: np.ndarray
    board_rotation: np.ndarray
    """The board's pose in the scene frame, or on ``platform``."""
    clock_origin_s: float
    """Scene time at scenario time zero."""
    platform: Platform | None = None
    _last: tuple = (None, None)
    """(t_s, result) of the latest call: the channel asks several times per frame."""

    def __call__(self, t_s: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        if self._last[0] == t_s:
            return self._last[1]
        self._last = (t_s, self._evaluate(t_s))
        return self._last[1]

    def board_pose(self, scene_t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The board's position (3,) m and rotation (3, 3) in the scene frame at ``scene_t_s``."""
        if self.platform is None:
            return self.board_position, self.board_rotation
        position, rotation = self.platform.pose(scene_t_s)
        return position + rotation @ self.board_position, rotation @ self.board_rotation

    def _evaluate(self, t_s: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        world = self.transmitter.path.position(self.clock_origin_s + t_s)
        position, rotation = self.board_pose(self.clock_origin_s + t_s)
        local = rotation.T @ (world - position)
        images = []
        if self.room is not None:
            direct = max(float(np.linalg.norm(local)), 1e-3)
            for image in self.room.images(world):
                image_local = rotation.T @ (image - position)
                spread_db = 20 * np.log10(max(float(np.linalg.norm(image_local)), 1e-3) / direct)
                images.append((image_local, -self.room.reflection_loss_db - spread_db))
        return local, images


def board_scenario(scene: Scene, xyz, rpy, clock_origin_s: float) -> Scenario:
    """The scenario of a board at pose ``xyz`` (m), ``rpy`` (rad) in the scene's frame (on the
    scene's platform, if it has one), its
    scenario time zero at scene time ``clock_origin_s``. Its seed is the scenario's plus one drawn
    from the pose, so that boards in different places have their own LO phases and noise."""
    seed = int(scene.scenario.get("seed", 1)) + zlib.crc32(repr([round(float(v), 3) for v in (*xyz, *rpy)]).encode())
    scenario = Scenario.from_dict({**scene.scenario, "seed": seed, "transmitters": [
        {"mac": t.mac, "snr_db": t.snr_db, "channel": t.channel} for t in scene.transmitters]})
    rotation = Rotation.from_euler("xyz", rpy).as_matrix()
    for tx, st in zip(scenario.transmitters, scene.transmitters):
        tx.track = BoardTrack(st, scene.room, np.asarray(xyz, float), rotation, clock_origin_s, scene.platform)
    return scenario
