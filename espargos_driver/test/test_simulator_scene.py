"""World scenes of the board simulator: paths, wall images, and what a board at a pose sees."""
import numpy as np
import pytest

from espargos_driver.sim.scene import Path3D, Room, Scene, board_scenario


def test_paths_stand_loop_and_go_there_and_back():
    assert np.allclose(Path3D([[1, 2, 3]]).position(1e9), [1, 2, 3])
    square = Path3D([[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0]], speed=1.0, loop=True)
    assert np.allclose(square.position(1.0), [1, 0, 0]) and np.allclose(square.position(7.0), [0, 1, 0])
    assert np.allclose(square.position(8.5), [0.5, 0, 0])                       # period 8 s
    line = Path3D([[0, 0, 0], [10, 0, 0]], speed=2.0)
    assert np.allclose(line.position(4.0), [8, 0, 0]) and np.allclose(line.position(6.0), [8, 0, 0])  # on its way back
    for bad in ({"waypoints": []}, {"waypoints": [[0, 0, 0], [1, 0, 0]], "speed": 0.0},
                {"waypoints": [[0, 0, float("nan")]]}):
        with pytest.raises(ValueError):
            Path3D(**bad)


def test_room_mirrors_a_point_in_each_wall():
    images = Room(x=(0.0, 10.0), y=(0.0, 8.0)).images(np.array([3.0, 5.0, 1.0]))
    assert sorted(map(tuple, np.round(images, 6))) == sorted([(-3.0, 5.0, 1.0), (17.0, 5.0, 1.0), (3.0, -5.0, 1.0),
                                                             (3.0, 11.0, 1.0)])


def test_a_board_sees_the_scene_from_its_pose_at_scene_time():
    scene = Scene.from_dict({"scene": {"room": {"x": [0, 10], "y": [0, 8], "reflection_loss_db": 6.0},
                                       "transmitters": [{"mac": "02:00:00:00:00:0b", "waypoints": [[2, 2, 1], [8, 2, 1]],
                                                         "speed": 1.0}]},
                             "scenario": {"snr_db": 25, "frame_rate_hz": 20}})
    origin = 1200.0                                   # scene time at the board's scenario time zero (100 periods)
    south = board_scenario(scene, (5.0, 0.0, 1.0), (0.0, 0.0, np.pi / 2), origin)
    tx = south.transmitters[0]
    assert south.snr_db == 25 and south.frame_rate_hz == 20
    # at scene time 1203 the transmitter is at (5, 2, 1): 2 m straight ahead of the board (x boresight)
    assert np.allclose(tx.position_at(3.0), [2.0, 0.0, 0.0], atol=1e-9) and abs(tx.azimuth_at(3.0)) < 1e-6
    images = tx.images_at(3.0)
    behind = [gain for image, gain in images if image[0] < 0]       # mirror in the board's own wall
    assert len(images) == 4 and len(behind) == 1
    far = [gain for image, gain in images if np.allclose(image, [14.0, 0.0, 0.0])]   # mirror in the wall at y = 8
    assert np.isclose(far[0], -6.0 - 20 * np.log10(14.0 / 2.0))
    other = board_scenario(scene, (0.0, 4.0, 1.0), (0.0, 0.0, 0.0), origin)
    assert other.seed != south.seed                                 # boards elsewhere: their own LO phases


def test_a_board_on_a_moving_platform_sees_the_scene_from_its_mount():
    """A platform flying along x at 2 m/s, heading along its path; a board mounted 0.5 m to its
    left looking left: at scene time 5 s the platform is at x = 10 m, the board at (10, 0.5), and a
    transmitter at (10, 10.5) is 10 m straight ahead of the board. Flying back (heading -x), the
    board looks the other way."""
    scene = Scene.from_dict({"scene": {"platform": {"waypoints": [[0, 0, 1], [20, 0, 1]], "speed": 2.0},
                                       "transmitters": [{"mac": "02:00:00:00:00:01", "position": [10, 10.5, 1]}]}})
    position, rotation = scene.platform.pose(5.0)
    assert np.allclose(position, [10, 0, 1]) and np.allclose(rotation, np.eye(3))
    assert np.allclose(scene.platform.velocity(5.0), [2, 0, 0])
    tx = board_scenario(scene, (0.0, 0.5, 0.0), (0.0, 0.0, np.pi / 2), 0.0).transmitters[0]
    assert np.allclose(tx.position_at(5.0), [10.0, 0.0, 0.0], atol=1e-9)
    assert np.allclose(tx.position_at(15.0), [-11.0, 0.0, 0.0], atol=1e-9)       # back at x = 10, heading -x
    fixed = Scene.from_dict({"scene": {"platform": {"waypoints": [[0, 0, 1], [20, 0, 1]], "speed": 2.0, "yaw": 0.0},
                                       "transmitters": [{"mac": "02:00:00:00:00:01", "position": [10, 10.5, 1]}]}})
    tx = board_scenario(fixed, (0.0, 0.5, 0.0), (0.0, 0.0, np.pi / 2), 0.0).transmitters[0]
    assert np.allclose(tx.position_at(15.0), [10.0, 0.0, 0.0], atol=1e-9)        # a fixed yaw: it still looks left
    with pytest.raises(TypeError, match="unknown platform keys"):
        Scene.from_dict({"scene": {"platform": {"waypoints": [[0, 0, 0]], "heading": 1},
                                   "transmitters": [{"mac": "x", "position": [0, 0, 0]}]}})


def test_bad_scenes_are_refused_with_a_reason():
    for data, message in (({"scene": {}}, "needs transmitters"),
                          ({"scene": {"transmitters": [{"mac": "x", "position": [0, 0, 0]}], "walls": 1}}, "unknown scene"),
                          ({"scene": {"transmitters": [{"mac": "x", "position": [0, 0, 0]}]},
                            "scenario": {"transmitters": []}}, "under scene")):
        with pytest.raises((TypeError, ValueError), match=message):
            Scene.from_dict(data)
