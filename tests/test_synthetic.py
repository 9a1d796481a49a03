"""Procedural heads: identities, left/right convention, multiview-consistent labels, rigs, folders."""

import numpy as np
import pytest

from splatrefine.errors import ConfigError
from splatrefine.poses import yaw_pitch
from splatrefine.schema import CELEBAMASK_HQ as S
from splatrefine.plugins.synthetic import rig_cameras, sample_head, synthesize_capture, write_synthetic
from splatrefine.plugins.synthetic.head import build_parts
from splatrefine.plugins.synthetic.render import render_head
from splatrefine.plugins.synthetic.rigs import head_subject, look_at, pose_cameras, rig_poses
from splatrefine.types import Cameras

C = {n: i for i, n in enumerate(S.classes)}


def centroid_x(labels, name):
    ys, xs = np.nonzero(labels == C[name])
    assert len(xs), f"{name} not visible"
    return xs.mean()


def test_identities_are_seeded_and_vary():
    assert sample_head(3) == sample_head(3)
    heads = [sample_head(s) for s in range(40)]
    assert len({h.hair_style for h in heads}) >= 4
    assert len({h.skin for h in heads}) >= 20
    assert any(h.glasses for h in heads) and not all(h.glasses for h in heads)
    assert any(h.mouth_open > 0 for h in heads) and not all(h.mouth_open > 0 for h in heads)
    widths = [h.cranium[0] for h in heads]
    assert max(widths) / min(widths) > 1.08


def test_left_right_follow_the_schema_convention():
    """'l_' is the subject's own left: image right at yaw 0; positive yaw shows the left ear."""
    head = sample_head(next(s for s in range(50) if not sample_head(s).glasses))
    out = render_head(head, pose_cameras([(0, 0), (90, 0), (-90, 0)], 96))
    front = out.labels[0]
    for part in ("eye", "brow"):
        assert centroid_x(front, "l_" + part) > centroid_x(front, "r_" + part)
    assert centroid_x(front, "l_eye") > 48 > centroid_x(front, "r_eye")
    assert (out.labels[1] == C["l_ear"]).sum() > 20 and (out.labels[1] == C["r_ear"]).sum() == 0
    assert (out.labels[2] == C["r_ear"]).sum() > 20 and (out.labels[2] == C["l_ear"]).sum() == 0
    # the images are upright: hair above the neck
    ys_hair = np.nonzero(front == C["hair"])[0].mean()
    ys_neck = np.nonzero(front == C["neck"])[0].mean()
    assert ys_hair < ys_neck


def test_classes_of_a_head():
    for seed in range(40):
        head = sample_head(seed)
        labels = render_head(head, pose_cameras([(0, 0), (75, 0), (-75, 0)], 128), rgb=False).labels
        present = {S.classes[i] for i in np.unique(labels)}
        base = {"background", "skin", "l_brow", "r_brow", "nose", "u_lip", "l_lip", "neck", "cloth", "hair",
                "l_ear", "r_ear"}
        assert base <= present, (seed, base - present)
        assert ("eye_g" in present) == head.glasses
        if not head.glasses:
            assert {"l_eye", "r_eye"} <= present
        assert ("mouth" in present) == (head.mouth_open > 0), seed
        assert not present & {"ear_r", "neck_l", "hat"}
        if seed >= 12:
            break


def test_head_reads_as_a_head_from_every_side():
    head = sample_head(2)
    out = render_head(head, pose_cameras([(180, 0), (90, 0), (0, 60)], 96), rgb=False)
    back, profile, top = out.labels
    head_px = np.isin(back, [C["hair"], C["skin"], C["l_ear"], C["r_ear"]])
    assert (back == C["hair"]).sum() > 0.6 * head_px.sum()  # hair over the back
    assert (back == C["neck"]).sum() > 50
    assert (profile == C["nose"]).sum() > 10 and (profile == C["l_ear"]).sum() > 10
    assert (top == C["hair"]).sum() > (top == C["skin"]).sum()  # hair over the top
    assert out.mask.sum(axis=(1, 2)).min() > 0.15 * 96 * 96


def test_same_surface_point_has_the_same_label_in_every_camera():
    """Surface points seen at pixel centres of one camera, re-observed exactly at the centre pixel
    of other cameras looking straight at them, carry the same label wherever they are visible."""
    head = sample_head(5)
    a = render_head(head, pose_cameras([(20, 10)], 128), rgb=False)
    cam = pose_cameras([(20, 10)], 128)
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(a.mask[0])
    pick = rng.choice(len(ys), 150, replace=False)
    K, R, t = cam.Ks[0], cam.viewmats[0, :3, :3], cam.viewmats[0, :3, 3]
    centre = -R.T @ t
    checked, labels_seen = 0, set()
    for k in pick:
        y, x = ys[k], xs[k]
        d = R.T @ np.array([(x + 0.5 - K[0, 2]) / K[0, 0], (y + 0.5 - K[1, 2]) / K[1, 1], 1.0])
        P = centre + a.depth[0, y, x] * d
        for yaw, pitch in ((-40.0, 0.0), (70.0, -20.0)):
            a_, p_ = np.radians(yaw), np.radians(pitch)
            eye = P + 0.8 * np.array([np.cos(p_) * np.sin(a_), np.sin(p_), np.cos(p_) * np.cos(a_)])
            f = 300.0
            Kb = np.array([[f, 0, 1.5], [0, f, 1.5], [0, 0, 1.0]])  # 3x3 image: pixel (1,1) centre on the axis
            vm = look_at(eye, P, np.array([0.0, 1.0, 0.0]))
            b = render_head(head, Cameras(vm[None], Kb[None], 3, 3), rgb=False, threads=1)
            if abs(b.depth[0, 1, 1] - np.linalg.norm(P - eye)) > 1e-6:
                continue  # occluded from there
            assert b.labels[0, 1, 1] == a.labels[0, y, x]
            checked += 1
            labels_seen.add(int(a.labels[0, y, x]))
    assert checked > 100 and len(labels_seen) >= 4


def test_rendering_is_deterministic_and_textured():
    head = sample_head(4)
    cams = pose_cameras([(30, 0)], 64)
    a, b = render_head(head, cams), render_head(head, cams, threads=1)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.labels, b.labels)
    skin = a.rgb[0][a.labels[0] == C["skin"]].astype(float)
    assert skin.std(axis=0).mean() > 4.0  # shading and texture, not a flat colour
    assert (a.depth[0][a.mask[0]] > 0.8).all() and (a.depth[0][~a.mask[0]] == 0).all()


def test_rigs():
    poses = {r: np.array(rig_poses(r)) for r in ("facescape-like", "turntable", "frontal-only")}
    fs = poses["facescape-like"]
    assert 55 <= len(fs) <= 65 and fs[:, 0].min() == -90 and fs[:, 0].max() == 90
    assert fs[:, 1].min() == -30 and fs[:, 1].max() == 30 and (0.0, 0.0) in map(tuple, fs)
    assert len(poses["turntable"]) == 36 and (poses["turntable"][:, 1] == 0).all()
    assert np.abs(poses["frontal-only"][:, 0]).max() < 30
    cams = rig_cameras("facescape-like", 32)
    yaw, pitch = yaw_pitch(cams.centers, head_subject())
    np.testing.assert_allclose(yaw, fs[:, 0], atol=1e-6)
    np.testing.assert_allclose(pitch, fs[:, 1], atol=1e-6)
    with pytest.raises(ConfigError, match="Did you mean 'turntable'"):
        rig_cameras("turntabel", 32)
    with pytest.raises(ConfigError, match="resolution"):
        rig_cameras("turntable", 0)


def test_capture_has_subject_gt_and_renders_gt_anywhere():
    cap = synthesize_capture(7, "frontal-only", 48)
    assert len(cap) == 33 and cap.has_labels and cap.has_masks
    cams = cap.cameras()
    np.testing.assert_allclose(cams.yaw, np.array(rig_poses("frontal-only"))[:, 0], atol=1e-6)
    gt = cap.render_gt(cams.subset([0, 5]))
    assert np.array_equal(gt.labels[1], cap.views[5].labels)
    assert np.array_equal(gt.rgb[0], cap.views[0].image)
    assert cap.render_gt(cams.subset([0, 5]), rgb=False).rgb is None
    assert np.array_equal(cap.render_gt(cams.subset([0, 5]), rgb=False).labels, gt.labels)
    novel = cap.render_gt(pose_cameras([(120, 0)], 40))
    assert novel.labels.shape == (1, 40, 40) and (novel.labels == C["hair"]).any()


def test_write_and_open_synthetic_folders(tmp_path):
    from splatrefine.errors import CaptureError
    from splatrefine.io.capture_folder import read_capture_json_extra, write_capture_folder
    from splatrefine.registry import Registry

    paths = write_synthetic(tmp_path / "set", identities=2, seed=1, rig="frontal-only", resolution=32)
    assert [p.name for p in paths] == ["id_000", "id_001"]
    block = read_capture_json_extra(paths[1])["synthetic"]
    assert block["identity_seed"] == 10008 and block["rig"] == "frontal-only" and block["resolution"] == 32
    reg = Registry()
    cap = reg.open_capture(str(paths[1]))
    assert cap.render_gt is not None and cap.subject is not None
    again = cap.render_gt(cap.cameras())
    assert np.array_equal(again.labels, np.stack([v.labels for v in cap.views]))
    # a plain capture folder is left to the builtin reader (no render_gt)
    plain = synthesize_capture(3, "frontal-only", 24)
    write_capture_folder(plain, tmp_path / "plain")
    assert reg.open_capture(str(tmp_path / "plain")).render_gt is None
    # a synthetic block from another generator version is refused with a clear error
    import json

    m = paths[0] / "capture.json"
    data = json.loads(m.read_text())
    data["synthetic"]["version"] = 99
    m.write_text(json.dumps(data))
    with pytest.raises(CaptureError, match="version 99"):
        reg.open_capture(str(paths[0]))


@pytest.mark.parametrize("kwargs, message", [
    ({"identities": 0}, "identities must be a positive integer"),
    ({"rig": "dome"}, "unknown rig 'dome'"),
    ({"resolution": 8}, "resolution must be an integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_write_synthetic_errors(tmp_path, kwargs, message):
    args = {"identities": 1, "seed": 0, "rig": "frontal-only", "resolution": 24} | kwargs
    with pytest.raises(ConfigError, match=message):
        write_synthetic(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_write_synthetic_refuses_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        write_synthetic(f, identities=1, rig="frontal-only", resolution=24)


def test_parts_are_ellipsoids_with_rotations():
    for part in build_parts(sample_head(0)):
        np.testing.assert_allclose(part.rot.T @ part.rot, np.eye(3), atol=1e-9)
        assert (part.radii > 0).all()


def test_synth_command(tmp_path):
    from click.testing import CliRunner

    from splatrefine.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["synth", str(tmp_path / "set"), "--identities", "1", "--rig", "frontal-only",
                              "--resolution", "24"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "set" / "id_000" / "capture.json").is_file()
    bad = runner.invoke(main, ["synth", str(tmp_path / "bad"), "--seed", "-1", "--resolution", "24"])
    assert bad.exit_code == 2
    assert "seed must be a non-negative integer" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()


def test_row_norms_are_numpys_bit_for_bit():
    from splatrefine.plugins.synthetic.render import _row_norms

    v = np.random.default_rng(0).normal(size=(1000, 3)) * np.array([1e-3, 1.0, 1e3])
    assert _row_norms(v).tobytes() == np.linalg.norm(v, axis=1, keepdims=True).tobytes()
