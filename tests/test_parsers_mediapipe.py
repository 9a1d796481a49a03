"""mediapipe: face-mesh regions as labels (skipped without mediapipe)."""

import os

import numpy as np
import pytest

from splatrefine.roles import ComponentContext, InitialParser
from splatrefine.schema import CELEBAMASK_HQ, IGNORE, LAPA
from splatrefine.types import Camera, Capture, View

if os.environ.get("CI"):  # CI installs every extra: a missing one must fail, not skip
    __import__("mediapipe")
pytest.importorskip("mediapipe")
S = CELEBAMASK_HQ


def make(**params):
    from splatrefine.config import build_settings
    from splatrefine.plugins.mediapipe_parser.plugin import MediaPipeConfig, make_mediapipe

    return make_mediapipe(build_settings(MediaPipeConfig, params, "initial_parser 'mediapipe'"), ComponentContext())


def grace_hopper() -> np.ndarray:
    """A real frontal portrait that matplotlib ships (uint8 [600,512,3])."""
    import matplotlib

    from splatrefine.io.labels import read_image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    if not os.path.isfile(path):
        pytest.skip("this matplotlib ships no sample_data/grace_hopper.jpg")
    return read_image(path)


def centroid(lab, cls):
    ys, xs = np.nonzero(lab == S.index(cls))
    assert len(xs) > 20, cls
    return xs.mean(), ys.mean()


def test_regions_on_a_real_portrait():
    p = make()
    img = grace_hopper()
    lab = p.labels(img)
    present = {S.classes[c] for c in np.unique(lab) if c != IGNORE}
    assert present == {"skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip"}
    known = lab != IGNORE
    assert 0.05 < known.mean() < 0.2  # the face only; hair, hat, background, clothes: no opinion
    # geometry: l_ = the subject's left = image right; brows above eyes above nose above lips
    assert centroid(lab, "l_eye")[0] > centroid(lab, "r_eye")[0] + 40
    assert centroid(lab, "l_brow")[0] > centroid(lab, "r_brow")[0] + 40
    assert centroid(lab, "l_brow")[1] < centroid(lab, "l_eye")[1] < centroid(lab, "nose")[1]
    assert centroid(lab, "nose")[1] < centroid(lab, "u_lip")[1] < centroid(lab, "l_lip")[1]
    assert abs(centroid(lab, "nose")[0] - centroid(lab, "u_lip")[0]) < 15


def test_parse_gives_probabilities_and_notes_views_without_a_face():
    p = make(confidence=0.8)
    assert isinstance(p, InitialParser)
    img = grace_hopper()[::2, ::2].copy()  # 300x256
    blank = np.full_like(img, 90)
    K = np.array([[300.0, 0, 128], [0, 300.0, 150], [0, 0, 1]])
    views = [View(n, Camera(np.eye(4), K, 256, 300), im) for n, im in (("face", img), ("wall", blank))]
    probs = p.parse(Capture(views))
    assert probs.shape == (2, 19, 300, 256) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[1], 1 / 19)  # no face: uniform everywhere
    assert p.notes == ["mediapipe found no face in view wall: all its pixels are left without labels"]
    assert probs[0].max() == pytest.approx(0.8)
    nose = np.isclose(probs[0, S.index("nose")], 0.8)
    assert nose.sum() > 50
    # another schema: the same regions through the explicit mapping
    lapa = p.parse(Capture(views[:1], schema=LAPA))
    assert lapa.shape == (1, 11, 300, 256)
    np.testing.assert_array_equal(np.isclose(lapa[0, LAPA.index("nose")], 0.8), nose)


def test_fails_at_large_yaw_on_synthetic_heads():
    """The failure this project repairs: frontal fine, profile nothing (see docs/parsers.md)."""
    try:
        from splatrefine.plugins.synthetic.head import sample_head
        from splatrefine.plugins.synthetic.render import render_head
        from splatrefine.plugins.synthetic.rigs import pose_cameras
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"synthetic heads not available ({exc})")

    cams = pose_cameras([(0.0, 0.0), (90.0, 0.0)], 192)
    r = render_head(sample_head(0), cams)
    p = make()
    rgb = r.rgb if r.rgb.dtype == np.uint8 else (np.clip(r.rgb, 0, 1) * 255).astype(np.uint8)
    frontal, profile = p.labels(rgb[0], "frontal"), p.labels(rgb[1], "profile")
    known = frontal != IGNORE
    assert known.mean() > 0.05
    assert (frontal[known] == r.labels[0][known]).mean() > 0.8
    assert (profile == IGNORE).all() and len(p.notes) == 1
