"""Spectrum-grid locator core against ground truth: arrays at the walls of a room whose strongest
bearing is a wall reflection, a covariance that holds (NEES), what it refuses, and bad input."""
import numpy as np
import pytest
from scipy.stats import chi2
from test_locate import SIGMA, WALLS, horizontal_nees, room_poses

from espargos_aoa.locate import BearingObservation, Locator, LocatorConfig
from espargos_aoa.poses import ArrayPose
from espargos_aoa.spectrum_grid import GridConfig, Look, SpectrumGrid

AZIMUTHS = np.radians(np.arange(-90.0, 90.01, 0.5))
"""aoa_node's default azimuth grid (azimuth_step 0.5 deg)."""
ROOM = [0.0, 10.0, 0.0, 8.0]
TRUTH = np.array([3.0, 5.5, 1.5])


def mirror(point: np.ndarray, wall: str) -> np.ndarray:
    """The image of ``point`` in one of the room's walls (a first-order reflection's apparent source)."""
    image = point.copy()
    axis, value = {"south": (1, 0.0), "north": (1, 8.0), "west": (0, 0.0), "east": (0, 10.0)}[wall]
    image[axis] = 2 * value - image[axis]
    return image


def spectrum_db(directions: list[float], width: float = np.radians(1.0)) -> np.ndarray:
    """A MUSIC-like pseudo-spectrum (A,) in dB below its maximum with equally high peaks at ``directions`` (rad)."""
    power = sum(1.0 / (1.0 + ((AZIMUTHS - d) / width) ** 2) for d in directions) + 1e-3
    db = 10 * np.log10(power)
    return db - db.max()


def room_look(array_id: str, pose: ArrayPose, stamp: float, rng: np.random.Generator, reflection_first: bool,
              sigma: float = SIGMA) -> Look:
    """One update of an array: a direct path and an equally strong reflection off the wall opposite
    the array, both in its spectrum and as bearings (the reflection ranked first if asked)."""
    opposite = {"south": "north", "north": "south", "west": "east", "east": "west"}[array_id]
    direct = pose.bearing_to(TRUTH)[0]
    reflected = pose.bearing_to(mirror(TRUTH, opposite))[0]
    bearings = [BearingObservation(stamp, array_id, "ap", az + sigma * rng.standard_normal(), sigma)
                for az in ([reflected, direct] if reflection_first else [direct, reflected])]
    return Look(stamp, array_id, "ap", AZIMUTHS, spectrum_db([direct, reflected]), bearings)


def grid_with_room(config: LocatorConfig | None = None, grid: GridConfig | None = None) -> SpectrumGrid:
    locator = Locator(config or LocatorConfig(height=1.5))
    for name, pose in room_poses().items():
        locator.set_static_pose(name, pose)
    return SpectrumGrid(locator, grid or GridConfig(grid_bounds=ROOM))


def test_a_transmitter_whose_strongest_bearing_is_a_reflection_at_two_arrays_is_located_consistently():
    """The south and west arrays rank the reflection off the opposite wall first (equal peaks: the
    rank is a coin toss at 20 dB). Rank-0 fusion crosses the wrong rays; the grid picks each array's
    direct bearing, and the covariance from those bearings holds (NEES in its 95 % band)."""
    rng = np.random.default_rng(3)
    grid = grid_with_room()
    poses = room_poses()
    band = chi2.ppf([0.025, 0.975], 2)
    errors, inside = [], []
    for k in range(200):
        for j, (name, pose) in enumerate(poses.items()):
            grid.add(room_look(name, pose, 0.2 * k + 0.01 * j, rng, reflection_first=name in ("south", "west")))
        estimate = grid.locate("ap")
        if k < 4:
            continue
        assert estimate is not None, grid.locator.counters
        errors.append(np.linalg.norm(estimate.position[:2] - TRUTH[:2]))
        inside.append(band[0] <= horizontal_nees(estimate.position, estimate.covariance, TRUTH) <= band[1])
        assert estimate.arrays == sorted(WALLS) and estimate.observable
    # Five looks per array in grid_memory (1 s), 2 deg bearings: 1-sigma about 0.1 m.
    assert max(errors) < 0.5 and np.median(errors) < 0.15, (max(errors), np.median(errors))
    assert np.mean(inside) >= 0.9, np.mean(inside)
    # A 3-sigma gate drops 0.3 % of a Gaussian's draws: of 800 looks about 2 (5 with this seed).
    assert grid.locator.counters["unmatched_look"] <= 8, grid.locator.counters


def test_rank_zero_fusion_of_the_same_looks_is_misled():
    """The control of the test above: the Kalman method fuses rank 0 and lands far off."""
    rng = np.random.default_rng(3)
    locator = Locator(LocatorConfig(height=1.5, motion_model="constant_position"))
    poses = room_poses()
    for name, pose in poses.items():
        locator.set_static_pose(name, pose)
    for k in range(200):
        for j, (name, pose) in enumerate(poses.items()):
            look = room_look(name, pose, 0.2 * k + 0.01 * j, rng, reflection_first=name in ("south", "west"))
            locator.add(look.bearings[0])
        locator.fuse()
    track = locator.tracks.get("ap")
    assert track is None or np.linalg.norm(track.x[:2] - TRUTH[:2]) > 1.0 or not track.observable


def test_one_array_standing_still_gives_no_position():
    rng = np.random.default_rng(1)
    grid = grid_with_room()
    pose = room_poses()["south"]
    for k in range(50):
        grid.add(room_look("south", pose, 0.2 * k, rng, reflection_first=False))
        assert grid.locate("ap") is None
    assert grid.locator.counters["poor_geometry"] == 50


def test_a_transmitter_outside_the_grid_is_not_placed_on_its_edge():
    rng = np.random.default_rng(1)
    grid = grid_with_room(grid=GridConfig(grid_bounds=[0.0, 10.0, 0.0, 4.0]))          # the transmitter is at y 5.5
    for k in range(10):
        for j, (name, pose) in enumerate(room_poses().items()):
            grid.add(room_look(name, pose, 0.2 * k + 0.01 * j, rng, reflection_first=False))
        assert grid.locate("ap") is None
    assert grid.locator.counters["grid_edge"] == 10


def test_bad_looks_are_counted_and_change_nothing():
    rng = np.random.default_rng(1)
    grid = grid_with_room()
    pose = room_poses()["south"]
    good = room_look("south", pose, 1.0, rng, reflection_first=False)
    nan_spectrum = Look(1.0, "south", "ap", AZIMUTHS, np.full(AZIMUTHS.shape, np.nan), good.bearings)
    short = Look(1.0, "south", "ap", AZIMUTHS[:10], good.power_db, good.bearings)
    unordered = Look(1.0, "south", "ap", AZIMUTHS[::-1].copy(), good.power_db, good.bearings)
    stranger = Look(1.0, "nowhere", "ap", AZIMUTHS, good.power_db, good.bearings)
    for look in (nan_spectrum, short, unordered):
        assert not grid.add(look)
    assert not grid.add(stranger)
    assert grid.locator.counters["invalid_spectrum"] == 3 and grid.locator.counters["unknown_pose"] == 1
    assert not grid.looks.get("ap")
    nan_bearing = BearingObservation(1.0, "south", "ap", float("nan"), SIGMA)
    assert grid.add(Look(1.0, "south", "ap", AZIMUTHS, good.power_db, [nan_bearing]))
    assert grid.locate("ap") is None and grid.locator.counters["invalid_bearing"] == 1


@pytest.mark.parametrize("changes, reason", [
    ({"grid_bounds": [0.0, 10.0, 8.0, 0.0]}, "grid_bounds must be"),
    ({"grid_bounds": [0.0, 10.0]}, "grid_bounds must be"),
    ({"grid_resolution": 0.0}, "grid_resolution must be > 0"),
    ({"grid_resolution": 0.001}, "cells"),
    ({"grid_floor_db": 3.0}, "grid_floor_db must be < 0"),
    ({"grid_memory": -1.0}, "grid_memory must be > 0"),
    ({"grid_widen": float("nan")}, "grid_widen must be >= 0"),
])
def test_nonsense_grid_parameters_are_refused_with_their_name(changes, reason):
    with pytest.raises(ValueError, match=reason):
        SpectrumGrid(Locator(), GridConfig(**{"grid_bounds": ROOM, **changes}))


def test_each_withheld_position_is_counted_once_under_its_reason():
    """Arrays whose bearings err by +-1 deg against a 1-sigma of 0.02 deg: the looks disagree with one
    transmitter (inconsistent_looks); such a position is not also counted as poor_geometry."""
    rng = np.random.default_rng(0)
    grid = grid_with_room()
    bias = {"south": 1.0, "north": -1.0, "west": 1.0, "east": -1.0}
    withheld = 0
    for k in range(50):
        for j, (name, pose) in enumerate(room_poses().items()):
            look = room_look(name, pose, 0.2 * k + 0.01 * j, rng, reflection_first=False, sigma=np.radians(0.02))
            for bearing in look.bearings:
                bearing.azimuth += np.radians(bias[name])
            grid.add(look)
        withheld += grid.locate("ap") is None
    counters = grid.locator.counters
    assert counters["inconsistent_looks"] > 0, counters
    assert counters["poor_geometry"] + counters["inconsistent_looks"] + counters["grid_edge"] == withheld, counters


def test_a_look_without_its_arrays_velocity_is_counted_once():
    """An array on a platform whose pose history is too short for a velocity: each look is counted
    once as no_platform_velocity, however often the grid is located again."""
    rng = np.random.default_rng(2)
    grid = grid_with_room()
    pose = room_poses()["south"]
    grid.locator.set_mount("rover", pose)
    grid.locator.add_platform_pose(0.0, ArrayPose.from_xyz_rpy((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    for k in range(8):
        look = room_look("south", pose, 0.01 * k, rng, reflection_first=False)
        look.array_id = "rover"
        for bearing in look.bearings:
            bearing.array_id = "rover"
        assert grid.add(look)
        for _ in range(3):
            grid.locate("ap")
    assert grid.locator.counters["no_platform_velocity"] == 8
