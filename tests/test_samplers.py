"""View samplers: the poses they produce, recomputed independently from the viewmats."""

from __future__ import annotations

import numpy as np
import pytest

from splatrefine.errors import ConfigError
from splatrefine.plugins.samplers.input import InputConfig, InputSampler
from splatrefine.plugins.samplers.orbit import OrbitConfig, OrbitSampler
from splatrefine.plugins.samplers.sphere import SphereConfig, SphereSampler
from splatrefine.roles import ComponentContext
from splatrefine.types import Camera, Capture, Subject, View

W, H = 40, 30
CENTRE = np.array([0.1, -0.2, 0.3])
FRONTAL = np.array([0.0, 0.0, 1.0])
UP = np.array([0.0, 1.0, 0.0])


def _dir(yaw: float, pitch: float) -> np.ndarray:
    # independent of splatrefine.poses: subject's left = up x frontal = +x here
    y, p = np.radians(yaw), np.radians(pitch)
    return np.array([np.cos(p) * np.sin(y), np.sin(p), np.cos(p) * np.cos(y)])


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    # an upright OpenCV world-to-camera, written here independently of splatrefine.poses
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, UP)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ eye
    return M


def _capture(with_subject: bool = True, radius: float = 2.0, focal=(50.0, 52.0, 54.0)) -> Capture:
    views = []
    for i, (yaw, f) in enumerate(zip((-40.0, 0.0, 40.0), focal)):
        K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
        r = radius * (1.0 + 0.1 * (i - 1))  # distances 1.8, 2.0, 2.2 -> median 2.0
        vm = _look_at(CENTRE + r * _dir(yaw, 10.0), CENTRE)
        views.append(View(f"cam{i}", Camera(vm, K, W, H), np.zeros((H, W, 3), np.uint8)))
    subject = Subject(CENTRE, FRONTAL, UP) if with_subject else None
    return Capture(views, subject=subject)


def _yaw_pitch_from_viewmats(viewmats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    centres = -np.einsum("cji,cj->ci", R, t)
    d = centres - CENTRE
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.degrees(np.arctan2(d[:, 0], d[:, 2])), np.degrees(np.arcsin(d[:, 1]))


def _assert_look_at_centre(cams, centre=CENTRE):
    for i in range(len(cams)):
        uv, z = cams[i].project(centre[None])
        assert z[0] > 0
        np.testing.assert_allclose(uv[0], [cams.width / 2, cams.height / 2], atol=1e-6)


def test_sampled_cameras_are_upright():
    cams = OrbitSampler(OrbitConfig(yaw_count=3, pitch_count=2)).sample(_capture())
    sph = SphereSampler(SphereConfig(count=5)).sample(_capture())
    for cams in (cams, sph):
        for i in range(len(cams)):
            R = cams.viewmats[i, :3, :3]
            assert abs(np.linalg.det(R) - 1.0) < 1e-9  # a rotation, not a mirror
            assert abs(R[0] @ UP) < 1e-9  # the image's x axis is horizontal (no roll)
            # a point above the centre projects above the image centre
            uv_up, _ = cams[i].project((CENTRE + 0.1 * UP)[None])
            assert uv_up[0, 1] < cams.height / 2


def test_orbit_grid_matches_request():
    cfg = OrbitConfig(yaw=(-90.0, 90.0), pitch=(-30.0, 30.0), yaw_count=7, pitch_count=3)
    cams = OrbitSampler(cfg, ComponentContext()).sample(_capture())
    assert len(cams) == 21
    assert cams.names[0] == "novel_0000" and cams.names[-1] == "novel_0020"
    yy, pp = np.meshgrid(np.linspace(-90, 90, 7), [-30.0, 0.0, 30.0])
    yaw, pitch = _yaw_pitch_from_viewmats(cams.viewmats)
    np.testing.assert_allclose(yaw, yy.ravel(), atol=1e-6)
    np.testing.assert_allclose(pitch, pp.ravel(), atol=1e-6)
    np.testing.assert_allclose(cams.yaw, yy.ravel(), atol=1e-6)
    np.testing.assert_allclose(cams.pitch, pp.ravel(), atol=1e-6)
    _assert_look_at_centre(cams)
    # defaults from the capture: median radius 2.0, median K (f = 52), same size
    np.testing.assert_allclose(np.linalg.norm(cams.centers - CENTRE, axis=1), 2.0, atol=1e-9)
    assert (cams.width, cams.height) == (W, H)
    np.testing.assert_allclose(cams.Ks[0], [[52, 0, W / 2], [0, 52, H / 2], [0, 0, 1]])


def test_orbit_overrides_radius_look_at_and_scale():
    target = (0.5, 0.0, 0.0)
    cfg = OrbitConfig(yaw=(30.0, 30.0), pitch=(0.0, 0.0), yaw_count=1, pitch_count=1, radius=3.0,
                      look_at=target, scale=0.5)
    cams = OrbitSampler(cfg).sample(_capture())
    assert len(cams) == 1 and (cams.width, cams.height) == (20, 15)
    np.testing.assert_allclose(np.linalg.norm(cams.centers[0] - np.array(target)), 3.0)
    _assert_look_at_centre(cams, np.array(target))
    np.testing.assert_allclose(cams.Ks[0][0, 0], 26.0)


def test_orbit_single_count_is_the_middle():
    cams = OrbitSampler(OrbitConfig(yaw=(20.0, 60.0), pitch=(-10.0, 30.0), yaw_count=1, pitch_count=1)).sample(_capture())
    np.testing.assert_allclose([cams.yaw[0], cams.pitch[0]], [40.0, 10.0], atol=1e-6)


def test_estimated_subject_when_the_capture_has_none():
    from splatrefine.poses import estimate_subject, yaw_pitch

    cap = _capture(with_subject=False)
    cams = OrbitSampler(OrbitConfig(yaw=(-60.0, 60.0), pitch=(0.0, 0.0), yaw_count=5, pitch_count=1)).sample(cap)
    est = estimate_subject(cap.cameras())
    np.testing.assert_allclose(est.center, CENTRE, atol=1e-9)  # the rig's optical axes meet there
    # yaw/pitch are reported relative to the estimated frame...
    np.testing.assert_allclose(cams.yaw, [-60, -30, 0, 30, 60], atol=1e-6)
    np.testing.assert_allclose(yaw_pitch(cams.centers, est)[0], [-60, -30, 0, 30, 60], atol=1e-6)
    # ...whose frontal is the mean direction to the rig's cameras: yaw 0 lies there
    mean = sum(_dir(y, 10.0) for y in (-40.0, 0.0, 40.0))
    d = (cams.centers[2] - CENTRE) / np.linalg.norm(cams.centers[2] - CENTRE)
    np.testing.assert_allclose(d, mean / np.linalg.norm(mean), atol=1e-9)
    yaw_true, _ = _yaw_pitch_from_viewmats(cams.viewmats)
    np.testing.assert_allclose(yaw_true, -yaw_true[::-1], atol=1e-9)  # symmetric rig
    assert abs(yaw_true[2]) < 1e-9 and -61.0 < yaw_true[0] < -60.0
    _assert_look_at_centre(cams)


def test_input_sampler_fills_yaw_pitch():
    cams = InputSampler(InputConfig()).sample(_capture())
    assert cams.names == ("cam0", "cam1", "cam2")
    np.testing.assert_allclose(cams.yaw, [-40, 0, 40], atol=1e-6)
    np.testing.assert_allclose(cams.pitch, [10, 10, 10], atol=1e-6)


def test_sphere_limits_seed_and_uniformity():
    cfg = SphereConfig(count=400, yaw=(-80.0, 20.0), pitch=(-20.0, 45.0), seed=3)
    a = SphereSampler(cfg, ComponentContext(seed=99)).sample(_capture())
    b = SphereSampler(cfg, ComponentContext(seed=0)).sample(_capture())
    np.testing.assert_array_equal(a.viewmats, b.viewmats)  # explicit seed wins over the run's
    yaw, pitch = _yaw_pitch_from_viewmats(a.viewmats)
    assert yaw.min() >= -80 - 1e-6 and yaw.max() <= 20 + 1e-6
    assert pitch.min() >= -20 - 1e-6 and pitch.max() <= 45 + 1e-6
    np.testing.assert_allclose(a.yaw, yaw, atol=1e-6)
    # uniform by area: sin(pitch) is uniform, so its mean is the interval's middle
    s = np.sin(np.radians(pitch))
    mid = (np.sin(np.radians(-20)) + np.sin(np.radians(45))) / 2
    assert abs(s.mean() - mid) < 0.05
    _assert_look_at_centre(a)
    # no explicit seed: the run's seed decides
    c1 = SphereSampler(SphereConfig(count=5), ComponentContext(seed=1)).sample(_capture())
    c2 = SphereSampler(SphereConfig(count=5), ComponentContext(seed=1)).sample(_capture())
    c3 = SphereSampler(SphereConfig(count=5), ComponentContext(seed=2)).sample(_capture())
    np.testing.assert_array_equal(c1.viewmats, c2.viewmats)
    assert not np.allclose(c1.viewmats, c3.viewmats)


def test_bad_ranges_are_config_errors():
    with pytest.raises(ConfigError, match="reversed"):
        OrbitSampler(OrbitConfig(yaw=(30.0, -30.0)))
    with pytest.raises(ConfigError, match="within"):
        SphereSampler(SphereConfig(pitch=(-100.0, 0.0)))


def test_registered_through_the_registry():
    from splatrefine.registry import Registry, make_plugin_manager
    from splatrefine.roles import Role
    import splatrefine.registry as reg

    if "splatrefine.plugins.samplers.plugin" not in reg.BUILTIN_PLUGINS:
        pytest.skip("samplers not yet in BUILTIN_PLUGINS")
    r = Registry(make_plugin_manager(entrypoints=False))
    assert {"input", "orbit", "sphere"} <= set(r.names(Role.VIEW_SAMPLER))


def test_novel_names_do_not_clash_with_the_captures_views():
    cap = _capture()
    cap.views[1].name = "novel_0007"  # e.g. a refined folder read back as a capture
    cams = OrbitSampler(OrbitConfig(yaw_count=2, pitch_count=1)).sample(cap)
    assert cams.names == ("novel_0008", "novel_0009")
