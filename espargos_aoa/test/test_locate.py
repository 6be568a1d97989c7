"""Locator core against ground truth: arrays at the walls of a room, one array flying past a
transmitter, consistency of the covariance (NEES), and bad input."""
import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.stats import chi2

from espargos_aoa.locate import BearingObservation, Locator, LocatorConfig
from espargos_aoa.poses import ArrayPose, PoseHistory

SIGMA = np.radians(2.0)
"""1-sigma of the bearings the tests generate (and report)."""
HEIGHT = 1.5
WALLS = {"south": ((5.0, 0.0, HEIGHT), np.pi / 2), "north": ((5.0, 8.0, HEIGHT), -np.pi / 2),
         "west": ((0.0, 4.0, HEIGHT), 0.0), "east": ((10.0, 4.0, HEIGHT), np.pi)}
"""Four arrays at the walls of a 10 x 8 m room, facing in."""


def room_poses() -> dict[str, ArrayPose]:
    return {name: ArrayPose.from_xyz_rpy(xyz, (0.0, 0.0, yaw)) for name, (xyz, yaw) in WALLS.items()}


def observe(pose: ArrayPose, array_id: str, mac: str, truth: np.ndarray, stamp: float, rng: np.random.Generator,
            sigma: float = SIGMA) -> BearingObservation | None:
    """A noisy azimuth-only bearing of ``truth`` as the array reports it (None behind the array)."""
    az, _, _ = pose.bearing_to(truth)
    if abs(az) > np.radians(85):
        return None
    return BearingObservation(stamp, array_id, mac, az + sigma * rng.standard_normal(), sigma)


def walker(t: float) -> np.ndarray:
    """1 m/s around a 6 x 4 m rectangle in the room, at 1.2 m height."""
    corners = np.array([[2.0, 2.0], [8.0, 2.0], [8.0, 6.0], [2.0, 6.0]])
    s = t % 20.0
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        leg = np.linalg.norm(b - a)
        if s <= leg:
            return np.array([*(a + (b - a) * s / leg), 1.2])
        s -= leg
    raise AssertionError


def horizontal_nees(position: np.ndarray, covariance: np.ndarray, truth: np.ndarray) -> float:
    e = position[:2] - truth[:2]
    return float(e @ np.linalg.solve(covariance[:2, :2], e))


def run_room(seed: int, config: LocatorConfig, duration: float = 40.0):
    rng = np.random.default_rng(seed)
    loc = Locator(config)
    for name, pose in room_poses().items():
        loc.set_static_pose(name, pose)
    truths = {"static": lambda t: np.array([3.0, 5.5, 1.0]), "walker": walker}
    errors: dict[str, list] = {"static": [], "walker": []}
    nees: dict[str, list] = {"static": [], "walker": []}
    for k in range(int(duration * 10)):
        for j, (name, pose) in enumerate(loc.static_poses.items()):
            stamp = k * 0.1 + j * 0.023                          # arrays update out of step
            for mac, truth in truths.items():
                obs = observe(pose, name, mac, truth(stamp), stamp, rng)
                if obs is not None:
                    loc.add(obs)
        for e in loc.fuse():
            if e.observable and e.stamp > 3.0:
                truth = truths[e.mac](e.stamp)
                errors[e.mac].append(np.linalg.norm(e.position[:2] - truth[:2]))
                nees[e.mac].append(horizontal_nees(e.position, e.covariance, truth))
    return loc, errors, nees


def test_four_arrays_locate_a_static_and_a_walking_transmitter_with_a_consistent_covariance():
    band = chi2.ppf([0.025, 0.975], 2)
    for seed in (1, 2):
        loc, errors, nees = run_room(seed, LocatorConfig(), duration=25.0)
        for mac in ("static", "walker"):
            err = np.array(errors[mac])
            assert len(err) > 180
            assert np.median(err) <= 0.3 and np.percentile(err, 95) <= 0.8, (mac, np.median(err), np.percentile(err, 95))
            inside = np.mean((np.array(nees[mac]) >= band[0]) & (np.array(nees[mac]) <= band[1]))
            assert inside >= 0.9, (mac, inside)
        assert loc.counters["unknown_pose"] == 0 and loc.counters["track_resets"] == 0


def test_bearings_of_overlapping_windows_are_not_counted_twice():
    """aoa_node slides its window by fewer frames than it holds: each frame's error is in two
    bearings (8-frame windows, 4 new frames each). Generated here frame by frame (2 deg per frame,
    each bearing the mean of its window's frames, reported with that mean's honest 1-sigma), a
    static transmitter fused from four arrays over 10 s: the horizontal NEES averages 2 (its
    chi-square mean) when the locator knows the windows' frame counts, and about twice that when
    it takes the bearings as independent (the same errors, weighted twice as much)."""
    poses = room_poses()
    truth = np.array([3.0, 5.5, HEIGHT])
    sigma_frame = np.radians(2.0)

    def final_nees(seed: int, frames_reported: int) -> float:
        rng = np.random.default_rng(seed)
        loc = Locator(LocatorConfig(motion_model="constant_position", position_noise=0.0, height=HEIGHT,
                                    height_std=1e-3))
        errors = {name: sigma_frame * rng.standard_normal(200) for name in poses}     # 20 frames/s
        for name, pose in poses.items():
            loc.set_static_pose(name, pose)
        for k in range(8, 200, 4):
            for j, (name, pose) in enumerate(poses.items()):
                azimuth = pose.bearing_to(truth)[0] + errors[name][k - 8:k].mean()
                loc.add(BearingObservation(k * 0.05 + j * 0.001, name, "tx", azimuth, sigma_frame / np.sqrt(8),
                                           window_span=7 * 0.05, window_frames=frames_reported))
        (estimate,) = loc.fuse(flush=True)
        return horizontal_nees(estimate.position, estimate.covariance, truth)

    known = np.mean([final_nees(seed, 8) for seed in range(100)])
    independent = np.mean([final_nees(seed, 1) for seed in range(100)])
    assert 1.5 <= known <= 2.6 and independent / known > 1.7, (known, independent)    # 1.87 and 3.40 measured


def test_fused_position_matches_a_least_squares_fit_of_the_exact_angles():
    """Cross-check against an independent estimator: scipy's nonlinear least squares on the wrapped
    azimuth residuals of the same bearings (constant-position model, no prior to speak of)."""
    rng = np.random.default_rng(7)
    truth = np.array([6.5, 2.5, HEIGHT])
    poses = room_poses()
    loc = Locator(LocatorConfig(motion_model="constant_position", position_noise=0.0, bearing_std_floor=0.0,
                                height=HEIGHT, height_std=1e-3))
    observations = []
    for k in range(50):
        for name, pose in poses.items():
            obs = observe(pose, name, "tx", truth, k * 0.1, rng)
            observations.append((pose, obs))
            loc.set_static_pose(name, pose)
            loc.add(obs)
    (estimate,) = loc.fuse(flush=True)

    def residuals(xy):
        point = np.array([*xy, HEIGHT])
        return [np.angle(np.exp(1j * (pose.bearing_to(point)[0] - obs.azimuth))) for pose, obs in observations]

    reference = least_squares(residuals, x0=[5.0, 4.0]).x
    assert np.linalg.norm(estimate.position[:2] - reference) < 0.02
    assert np.linalg.norm(estimate.position[:2] - truth[:2]) < 0.1


def fly_past(config: LocatorConfig, seed: int, speed: float = 2.0, sigma: float = SIGMA, window_span: float = 0.0,
             window_frames: int = 1):
    """One array on a platform flying 20 m along x at ``speed``, facing +y (mounted yawed 90 deg);
    a static transmitter 10 m off the line, abeam of the line's middle. Each bearing is true at its
    window's middle and stamped, like aoa_node's, with its window's last frame (``window_span`` s
    later); platform poses every 20 ms."""
    rng = np.random.default_rng(seed)
    loc = Locator(config)
    loc.set_mount("drone_array", ArrayPose.from_xyz_rpy((0.1, 0.0, -0.05), (0.0, 0.0, np.pi / 2)))
    truth = np.array([10.0, 10.0, 1.0])
    results = []
    poses_until = -window_span
    for k in range(int(20.0 / speed * 10) + 1):
        t = k * 0.1 - window_span / 2                 # the window's middle
        while poses_until <= t + window_span:
            loc.add_platform_pose(poses_until, ArrayPose.from_xyz_rpy((speed * poses_until, 0.0, 1.05), (0.0, 0.0, 0.0)))
            poses_until += 0.02
        obs = observe(loc.pose("drone_array", t), "drone_array", "ap", truth, t + window_span / 2, rng, sigma)
        obs.window_span, obs.window_frames = window_span, window_frames
        loc.add(obs)
        results += [(speed * (e.stamp + window_span / 2), e) for e in loc.fuse()]
    return truth, results, loc


def test_one_array_flying_past_a_transmitter_ranges_it_after_ten_metres():
    band = chi2.ppf([0.025, 0.975], 2)
    config = LocatorConfig(motion_model="constant_position", position_noise=0.0, bearing_std_floor=0.0,
                           height=1.0, height_std=0.5)
    inside = []
    for seed in range(4):
        truth, results, loc = fly_past(config, seed)
        late = [e for covered, e in results if covered >= 10.0]
        assert late and all(e.observable for e in late)
        assert max(np.linalg.norm(e.position[:2] - truth[:2]) for e in late) <= 1.0
        inside += [band[0] <= horizontal_nees(e.position, e.covariance, truth) <= band[1] for e in late]
        early = [e for covered, e in results if covered < 0.4]
        assert early and not any(e.observable for e in early)           # no baseline yet: no position
    assert np.mean(inside) >= 0.9, np.mean(inside)


def test_a_moving_arrays_bearing_is_placed_where_the_array_was_during_its_window():
    """aoa_node stamps a bearing with its window's last frame; the array flew on meanwhile (0.4 s at
    2 m/s: 0.8 m). The ray starts where the array was in the window's middle, so the position's
    covariance covers its error even with accurate bearings (0.3 deg: the drone scene's were 0.2).
    The generated errors are independent from bearing to bearing: no motion_bias, windows of one frame."""
    band = chi2.ppf([0.025, 0.975], 2)
    config = LocatorConfig(motion_model="constant_position", position_noise=0.0, height=1.0, height_std=0.5,
                           motion_bias=0.0)
    inside, errors = [], []
    for seed in range(4):
        truth, results, _ = fly_past(config, seed, sigma=np.radians(0.3), window_span=0.4)
        late = [e for covered, e in results if covered >= 10.0]
        assert late and all(e.observable for e in late)
        errors += [np.linalg.norm(e.position[:2] - truth[:2]) for e in late]
        inside += [band[0] <= horizontal_nees(e.position, e.covariance, truth) <= band[1] for e in late]
    assert max(errors) <= 0.3 and np.mean(inside) >= 0.9, (max(errors), np.mean(inside))


def test_a_single_array_standing_still_never_claims_a_position():
    rng = np.random.default_rng(3)
    loc = Locator(LocatorConfig(motion_model="constant_position"))
    pose = ArrayPose.from_xyz_rpy((0.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    loc.set_static_pose("a", pose)
    estimates = []
    for k in range(600):
        loc.add(observe(pose, "a", "tx", np.array([6.0, 2.0, 1.0]), k * 0.1, rng))
        estimates += loc.fuse()
    assert estimates and not any(e.observable for e in estimates)
    assert loc.counters["poor_geometry"] == len(estimates)


@pytest.mark.parametrize("sigma_deg, bias_deg", [(0.3, 0.0), (2.0, 0.0), (0.3, 2.0), (0.3, -2.0), (0.3, 5.0),
                                                 (0.3, 30.0), (0.3, -30.0), (0.3, 50.0), (0.3, -50.0)])
def test_two_arrays_on_a_robot_standing_still_never_claim_a_position(sigma_deg, bias_deg):
    """Two arrays 25 cm apart on a robot that does not move (config/robot.yaml), a transmitter
    6.7 m away: their rays are 2 degrees apart, the range is unobservable, all the more when one
    array's bearings are biased (calibration, mount, multipath: ``bias_deg``). The pseudo-linear start
    can pull the track onto the arrays, and a reflection taken for the direct path by one array
    (30-50 deg off) makes the rays really meet within half a metre of them, where the parallax is
    large: both lie within the arrays' near field (``far_field``), where no position is given."""
    rng = np.random.default_rng(5)
    loc = Locator(LocatorConfig(motion_model="constant_position"))
    poses = {"front": ArrayPose.from_xyz_rpy((0.2, 0.0, 0.15), (0.0, 0.0, 0.0)),
             "left": ArrayPose.from_xyz_rpy((0.0, 0.15, 0.15), (0.0, 0.0, np.pi / 2))}
    for name, pose in poses.items():
        loc.set_static_pose(name, pose)
    estimates = []
    for k in range(600):
        for j, (name, pose) in enumerate(poses.items()):
            obs = observe(pose, name, "tx", np.array([6.0, 3.0, 0.5]), k * 0.1 + j * 0.03, rng, np.radians(sigma_deg))
            if obs is not None:
                obs.azimuth += np.radians(bias_deg) * (name == "left")
                loc.add(obs)
        estimates += loc.fuse()
    assert estimates
    claimed = [(np.round(e.position[:2], 2), round(e.parallax_deg, 1)) for e in estimates if e.observable]
    assert not claimed, claimed[:5]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("direct_share", [1 / 3, 0.7, 0.9])
def test_two_arrays_standing_still_whose_bearings_jump_between_paths_never_claim_a_position(seed, direct_share):
    """The robot of config/robot.yaml standing still, each array's rank-0 bearing in a window the
    direct path (``direct_share`` of the windows) or one of two reflections 50 and 70 deg off it
    (what aoa_node gave when it ranked bearings by MUSIC peak height, at a third; a real channel
    whose paths fade to about equal power can do it too). Rays of different paths meet near the
    arrays; the filter fuses them before it has a range to gate with and then keeps the bearings
    that agree within the gate. With min_parallax 10 deg it published positions 1.0-1.5 m out
    with a 1-sigma of 7-15 cm, the transmitter 7 m away (their parallax 10-14 deg; 4 of seeds
    0-7 at a third, 18 of 40 seeds at 0.9). At 15 deg, two arrays 25 cm apart span it only within
    0.93 m, inside far_field: standing still, they never give a position."""
    rng = np.random.default_rng(seed)
    loc = Locator(LocatorConfig(motion_model="constant_position", bearing_std_floor=2.0))
    poses = {"front": ArrayPose.from_xyz_rpy((0.2, 0.0, 0.15), (0.0, 0.0, 0.0)),
             "left": ArrayPose.from_xyz_rpy((0.0, 0.15, 0.15), (0.0, 0.0, np.pi / 2))}
    offsets = {"front": (-50.0, -70.0), "left": (50.0, 70.0)}
    for name, pose in poses.items():
        loc.set_static_pose(name, pose)
    estimates = []
    for k in range(300):
        for j, (name, pose) in enumerate(poses.items()):
            obs = observe(pose, name, "tx", np.array([5.0, 5.0, 0.5]), k * 0.2 + j * 0.03, rng, np.radians(0.03))
            if rng.random() > direct_share:
                obs.azimuth += np.radians(rng.choice(offsets[name]))
            loc.add(obs)
        estimates += loc.fuse()
    assert estimates
    claimed = [(np.round(e.position[:2], 2), np.round(np.sqrt(np.diag(e.covariance)[:2]), 2)) for e in estimates
               if e.observable]
    assert not claimed, claimed[:5]


def test_bad_bearings_are_counted_and_change_nothing():
    rng = np.random.default_rng(4)
    loc = Locator(LocatorConfig())
    for name, pose in room_poses().items():
        loc.set_static_pose(name, pose)
    truth = np.array([4.0, 3.0, 1.5])
    for k in range(100):
        for name, pose in room_poses().items():
            loc.add(observe(pose, name, "tx", truth, k * 0.1, rng))
        loc.fuse()
    loc.fuse(flush=True)
    before = loc.tracks["tx"].estimate()
    counted = dict(loc.counters)
    loc.add(BearingObservation(10.0, "south", "tx", float("nan"), SIGMA))
    loc.add(BearingObservation(10.0, "south", "tx", 0.1, float("inf")))
    loc.add(BearingObservation(10.0, "nowhere", "tx", 0.1, SIGMA))
    loc.add(BearingObservation(1.0, "south", "tx", 0.1, SIGMA))            # far older than what was fused
    loc.add(BearingObservation(10.01, "west", "tx", np.radians(60), SIGMA))  # a reflection, 40 deg off
    loc.fuse(flush=True)
    after = loc.tracks["tx"].estimate()
    new = {name: loc.counters[name] - counted[name] for name in counted}
    assert new == {**dict.fromkeys(counted, 0), "invalid_bearing": 2, "unknown_pose": 1, "out_of_order": 1,
                   "rejected_inconsistent": 1}
    assert after.bearings_used == before.bearings_used
    assert np.linalg.norm(after.position[:2] - truth[:2]) < 0.3


def test_a_track_locked_on_a_wrong_position_restarts():
    rng = np.random.default_rng(5)
    loc = Locator(LocatorConfig(motion_model="constant_position", position_noise=0.0, max_rejections=10))
    for name, pose in room_poses().items():
        loc.set_static_pose(name, pose)
    for k in range(60):                                       # the transmitter jumps across the room at 3 s
        truth = np.array([2.0, 2.0, 1.5]) if k < 30 else np.array([8.0, 6.0, 1.5])
        for name, pose in room_poses().items():
            obs = observe(pose, name, "tx", truth, k * 0.1, rng)
            if obs is not None:
                loc.add(obs)
        loc.fuse()
    loc.fuse(flush=True)
    assert loc.counters["track_resets"] >= 1
    assert np.linalg.norm(loc.tracks["tx"].x[:2] - [8.0, 6.0]) < 0.3


def test_platform_poses_interpolate_and_refuse_to_extrapolate_far():
    history = PoseHistory()
    history.add(0.0, ArrayPose.from_xyz_rpy((0, 0, 0), (0, 0, 0)))
    history.add(1.0, ArrayPose.from_xyz_rpy((2, 0, 0), (0, 0, np.pi / 2)))
    mid = history.at(0.5)
    assert np.allclose(mid.position, [1, 0, 0])
    assert np.isclose(np.arctan2(mid.rotation[1, 0], mid.rotation[0, 0]), np.pi / 4)
    assert history.at(1.1) is not None and history.at(2.0) is None and history.at(-1.0) is None
    assert not history.add(0.5, ArrayPose.from_xyz_rpy((0, 0, 0), (0, 0, 0)))


def test_nonsense_parameters_are_refused_with_their_name():
    for field, value in (("motion_model", "teleport"), ("gate_probability", 1.5), ("max_position_std", 0.0),
                         ("reorder_delay", -1.0), ("max_rejections", 0)):
        with pytest.raises(ValueError, match=field):
            Locator(LocatorConfig(**{field: value}))


@pytest.mark.parametrize("t0", [0.0, 1.7e9])                    # 1.7e9: epoch seconds, as ROS stamps give
def test_an_array_velocity_at_and_past_the_ends_of_the_pose_history_is_not_slowed(t0):
    """Around the oldest and the newest platform pose, and for bearings just after the newest (the
    odometry lags the CSI), the velocity window is moved inside the pose history instead of holding
    the end pose (which halved the speed) or giving up; without enough history it is unknown, and
    zero counted once per bearing."""
    loc = Locator(LocatorConfig(motion_model="constant_position"))
    loc.set_mount("drone", ArrayPose.from_xyz_rpy((0.0, 0.5, 0.0), (0.0, 0.0, np.pi / 2)))
    for k in range(50):
        loc.add_platform_pose(t0 + 0.02 * k, ArrayPose.from_xyz_rpy((2.0 * 0.02 * k, 0.0, 1.0), (0.0, 0.0, 0.0)))
    for offset in (0.0, 0.01, 0.5, 0.97, 0.98, 0.981, 0.99, 1.02):
        assert np.allclose(loc.velocity("drone", t0 + offset), [2.0, 0.0, 0.0], atol=1e-6), offset
    assert loc.velocity("drone", t0 + 5.0) is None                # no pose there: no velocity either
    assert loc.counters["no_platform_velocity"] == 0
    lone = Locator(LocatorConfig(motion_model="constant_position"))
    lone.set_mount("drone", ArrayPose.from_xyz_rpy((0.0, 0.5, 0.0), (0.0, 0.0, 0.0)))
    lone.add_platform_pose(t0 + 1.0, ArrayPose.from_xyz_rpy((2.0, 0.0, 1.0), (0.0, 0.0, 0.0)))
    lone.add_platform_pose(t0 + 1.03, ArrayPose.from_xyz_rpy((2.06, 0.0, 1.0), (0.0, 0.0, 0.0)))
    assert lone.velocity("drone", t0 + 1.0) is None                  # 30 ms of history: too short
    assert np.allclose(lone.velocity_or_zero("drone", t0 + 1.0), 0.0) and lone.counters["no_platform_velocity"] == 1


def test_an_array_on_a_moving_platform_has_the_platforms_velocity():
    """The speed between transmitter and array sizes the bias states (motion_bias): an array on a
    platform flying at 2 m/s along x moves at 2 m/s, a static one and one without poses do not."""
    loc = Locator(LocatorConfig(motion_model="constant_position"))
    loc.set_mount("drone", ArrayPose.from_xyz_rpy((0.0, 0.5, 0.0), (0.0, 0.0, np.pi / 2)))
    loc.set_static_pose("wall", ArrayPose.from_xyz_rpy((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    for k in range(50):
        loc.add_platform_pose(0.1 * k, ArrayPose.from_xyz_rpy((2.0 * 0.1 * k, 0.0, 1.0), (0.0, 0.0, 0.0)))
    assert np.allclose(loc.velocity("drone", 2.0), [2.0, 0.0, 0.0])
    assert np.allclose(loc.velocity("wall", 2.0), 0.0) and loc.velocity("drone", 60.0) is None
    track_tx = np.array([5.0, 10.0, 1.0])
    for k in range(40):
        t = 0.1 * k
        loc.add(BearingObservation(t, "drone", "ap", loc.pose("drone", t).bearing_to(track_tx)[0], np.radians(0.5)))
    loc.fuse(flush=True)
    track = loc.tracks["ap"]
    assert set(track.bias_index) == {"drone"}
    assert np.isclose(np.sqrt(track.p[track.bias_index["drone"], track.bias_index["drone"]]),
                      np.radians(LocatorConfig().motion_bias * 2.0), rtol=0.3)
