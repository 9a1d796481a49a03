"""The SIMULATED parser: pose-dependent noise, Semantic-NeRF flip protocols, seeds, errors."""

from dataclasses import replace

import numpy as np
import pytest

from splatrefine.errors import CaptureError, ConfigError
from splatrefine.config import build_settings
from splatrefine.metrics import evaluate_labels
from splatrefine.registry import Registry
from splatrefine.roles import ComponentContext, Role
from splatrefine.plugins.synthetic import synthesize_capture
from splatrefine.plugins.synthetic.plugin import SimulatedParser, SimulatedParserConfig


@pytest.fixture(scope="module")
def capture():
    return synthesize_capture(11, "facescape-like", 128)


def parse(capture, **settings):
    return SimulatedParser(SimulatedParserConfig(**settings), ComponentContext(seed=0)).parse(capture)


def gt_of(capture):
    return np.stack([v.labels for v in capture.views])


def test_registered_and_configurable():
    reg = Registry()
    spec = reg.get(Role.INITIAL_PARSER, "simulated")
    assert "SIMULATION" in spec.summary
    cfg = build_settings(spec.config_cls, {"protocol": "pixel-flip", "ratio": 0.3}, "initial_parser 'simulated'")
    assert cfg.ratio == 0.3
    with pytest.raises(ConfigError, match="not one of"):
        build_settings(spec.config_cls, {"protocol": "gaussian"}, "initial_parser 'simulated'")


def test_pose_noise_mIoU_falls_with_yaw(capture):
    probs = parse(capture)
    V, K, H, W = probs.shape
    assert probs.dtype == np.float32 and (V, K, H, W) == (len(capture), 19, 128, 128)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    m = evaluate_labels(probs.argmax(1).astype(np.uint8), gt_of(capture), capture.cameras().yaw, capture.schema)
    b = {k: v["miou"] for k, v in m["buckets"].items()}
    assert b["frontal"] > b["mid"] + 0.08 > b["extreme"] + 0.16
    assert b["frontal"] > 0.8 and b["extreme"] < 0.65
    # severity 0: nearly clean at every pose
    clean = parse(capture, severity=0.0).argmax(1).astype(np.uint8)
    assert evaluate_labels(clean, gt_of(capture), None, capture.schema)["miou"] > 0.9


def test_soft_and_confidently_wrong(capture):
    probs = parse(capture)
    gt = gt_of(capture)
    pred = probs.argmax(1)
    conf = probs.max(1)
    wrong = (pred != gt) & (gt != 255)
    assert wrong.mean() > 0.005
    assert np.median(conf[wrong]) > 0.5  # wrong labels are often confident, not uniform
    assert (conf < 0.9).mean() > 0.01  # boundaries are soft


def test_errors_vary_per_view_and_are_seeded(capture):
    twin = replace(capture, views=[capture.views[30], replace(capture.views[30], name="twin")])
    a = parse(twin, severity=2.0)
    assert not np.array_equal(a[0].argmax(0), a[1].argmax(0))  # same camera, different errors
    assert np.array_equal(a, parse(twin, severity=2.0))
    assert not np.array_equal(a, parse(twin, severity=2.0, seed=1))


def test_pixel_flip_ratio(capture):
    sub = replace(capture, views=capture.views[:6])
    gt = gt_of(sub)
    pred = parse(sub, protocol="pixel-flip", ratio=0.2).argmax(1)
    assert abs((pred != gt).mean() - 0.2) < 0.01
    assert np.array_equal(parse(sub, protocol="pixel-flip", ratio=0.0).argmax(1), gt)


def test_region_flip_flips_whole_regions(capture):
    from scipy.ndimage import label as components

    sub = replace(capture, views=capture.views[:8])
    gt = gt_of(sub)
    pred = parse(sub, protocol="region-flip", ratio=0.3).argmax(1)
    assert 0.0 < (pred != gt).mean()
    flipped = 0
    for v in range(len(gt)):
        for c in np.unique(gt[v]):
            comp, n = components(gt[v] == c)
            for k in range(1, n + 1):
                region = comp == k
                if region.sum() < 30:
                    continue
                frac = (pred[v][region] != c).mean()
                flipped += frac > 0.5
                assert frac > 0.97 or frac < 0.03  # a region is flipped whole or not at all
    assert flipped > 0


def test_no_gt_labels_is_an_error(capture):
    bare = replace(capture, views=[replace(v, labels=None) for v in capture.views[:2]])
    with pytest.raises(CaptureError, match="ground-truth labels"):
        parse(bare)


@pytest.mark.parametrize("shape", [(5, 3), (1, 9), (40, 33), (128, 128)])
@pytest.mark.parametrize("sigma", [0.7, 2.0, 6.0])
def test_noise_blur_is_scipys_gaussian_filter_bit_for_bit(shape, sigma):
    from scipy.ndimage import gaussian_filter

    from splatrefine.plugins.synthetic.simulated import _gaussian_blur

    image = np.random.default_rng(shape[0] * 7 + shape[1]).standard_normal(shape)
    expected = gaussian_filter(image, sigma, mode="reflect")
    assert _gaussian_blur(image.copy(), sigma).tobytes() == expected.tobytes()


def test_regions_come_in_scipys_order_with_their_boxes():
    from scipy.ndimage import label

    from splatrefine.plugins.synthetic.simulated import _regions

    mask = np.random.default_rng(2).random((60, 50)) > 0.75
    mask[:, :6] = False  # regions away from the image edge, and at it
    comp, n = label(mask)
    regions = list(_regions(mask, 2))
    assert len(regions) == n > 10
    for k, (box, region) in enumerate(regions, start=1):
        full = np.zeros_like(mask)
        full[box] = region
        np.testing.assert_array_equal(full, comp == k)
