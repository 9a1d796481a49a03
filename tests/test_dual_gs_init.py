"""Initial points of dual-gs: the visual-hull carving of random candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splatrefine.plugins.dual_gs import init
from splatrefine.plugins.synthetic.rigs import synthesize_capture


def hull_test_numpy(cams, cand, masks, depth_into, need_views):
    """The test the kernel runs, written out over [V,N] arrays."""
    uv, z, inside = init._project(cams, cand)
    ok = inside.sum(0) >= need_views
    world = np.full(len(cand), np.inf)
    if masks is not None:
        ui = np.clip(uv[..., 0].astype(np.int64), 0, cams.width - 1)
        vi = np.clip(uv[..., 1].astype(np.int64), 0, cams.height - 1)
        rows = np.arange(len(cams))[:, None]
        fg = masks[rows, vi, ui] & inside
        ok &= fg.sum(0) >= 0.9 * inside.sum(0)
        world = np.where(inside, depth_into[rows, vi, ui] * z / cams.Ks[:, 0, 0][:, None], np.inf).min(0)
    return ok, world


@pytest.fixture(scope="module")
def capture():
    return synthesize_capture(2, "facescape-like", 48)


@pytest.mark.parametrize("with_masks", [True, False])
def test_hull_kernel_keeps_the_points_numpy_keeps(capture, with_masks):
    from scipy.ndimage import distance_transform_edt

    from splatrefine.plugins.dual_gs.carve_kernel import hull_test

    cams = capture.cameras()
    center, radius = init.common_volume(cams, capture.subject.center)
    cand = center + np.random.default_rng(3).uniform(-radius, radius, size=(20000, 3))
    need = int(math.ceil(0.6 * len(cams)))
    masks = np.stack([v.mask for v in capture.views]) if with_masks else None
    depth_into = None if masks is None else np.stack([distance_transform_edt(m) for m in masks]).astype(np.float32)
    ok_ref, world_ref = hull_test_numpy(cams, cand, masks, depth_into, need)
    ok, world = np.empty(len(cand), bool), np.empty(len(cand))
    hull_test(cand, cams.viewmats.astype(np.float64), cams.Ks.astype(np.float64), cams.width, cams.height,
              np.zeros((0, 1, 1), bool) if masks is None else masks,
              np.zeros((0, 1, 1), np.float32) if depth_into is None else depth_into, need, ok, world)
    assert 0 < ok.sum() < len(cand)
    np.testing.assert_array_equal(ok, ok_ref)
    if with_masks:
        # numpy projects through a BLAS product, the kernel in plain float64: last-bit differences
        np.testing.assert_allclose(world[ok], world_ref[ok], rtol=1e-12, atol=0)


def test_carved_points_lie_in_the_hull(capture):
    cams = capture.cameras()
    center, radius = init.common_volume(cams, capture.subject.center)
    pts = init._carve(capture, cams, center, radius, 500, np.random.default_rng(0))
    assert pts.shape == (500, 3)
    uv, _, inside = init._project(cams, pts)
    masks = np.stack([v.mask for v in capture.views])
    ui = np.clip(uv[..., 0].astype(np.int64), 0, cams.width - 1)
    vi = np.clip(uv[..., 1].astype(np.int64), 0, cams.height - 1)
    fg = masks[np.arange(len(cams))[:, None], vi, ui] & inside
    assert (fg.sum(0) >= 0.9 * inside.sum(0)).all()
