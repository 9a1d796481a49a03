"""The numba kernel of the `transfer` aggregator against the numpy code it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from splatrefine.plugins.aggregators.transfer import TransferAggregator, TransferConfig, _Source, facing, lift
from splatrefine.schema import LabelSchema
from splatrefine.types import Cameras, Renders

K_CLASSES = 4
SCHEMA = LabelSchema("four", ("background", "skin", "nose", "eye"),
                     ((0, 0, 0), (255, 85, 0), (0, 0, 255), (0, 255, 0)))
NORMAL = np.array([0.2, -0.1, 1.0]) / np.linalg.norm([0.2, -0.1, 1.0])
OFFSET = 2.0  # the plane NORMAL . X = OFFSET, about 2 m in front of every camera


def _reference_transfer(agg: TransferAggregator, depth, alpha, viewmat, K, name, num_classes):
    """TransferAggregator.transfer as plain numpy, one source at a time (the code before the kernel)."""
    c = agg.config
    H, W = depth.shape
    points = lift(depth, viewmat, K).reshape(-1, 3)
    fg = np.nonzero(alpha.reshape(-1) >= c.min_alpha)[0]
    pts = points[fg]
    vote_bins, vote_w, abstain_bins, abstain_w = [], [], [], []
    relative = agg._relative_agreement()
    for j, s in enumerate(agg.sources):
        cam = pts @ s.viewmat[:3, :3].T + s.viewmat[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor(s.K[0, 0] * cam[:, 0] / z + s.K[0, 2])
            v = np.floor(s.K[1, 1] * cam[:, 1] / z + s.K[1, 2])
        Hs, Ws = s.depth.shape
        ok = (z > 0) & (u >= 0) & (u < Ws) & (v >= 0) & (v < Hs)
        idx = np.nonzero(ok)[0]
        iu, iv = u[idx].astype(np.int64), v[idx].astype(np.int64)
        ds = s.depth[iv, iu]
        seen = (ds > 0) & (np.abs(ds - z[idx]) <= c.depth_tolerance * z[idx])
        idx, iu, iv = idx[seen], iu[seen], iv[seen]
        lab = s.labels[iv, iu]
        conf = s.confidence[iv, iu]
        weight = s.facing[iv, iu] * (c.self_weight if s.name == name else 1.0) * (c.trusted_weight if s.trusted else 1.0)
        vote_bins.append(idx * num_classes + lab)
        vote_w.append(conf * relative[j, lab] * weight)
        if s.speaks:
            abstain_bins.append(idx)
            abstain_w.append((1.0 - conf) * weight)

    def summed(bins, weights, n):
        if not bins:
            return np.zeros(n)
        return np.bincount(np.concatenate(bins), weights=np.concatenate(weights), minlength=n)

    votes = summed(vote_bins, vote_w, len(fg) * num_classes)
    abstain = summed(abstain_bins, abstain_w, len(fg))
    out = np.zeros((H * W, num_classes))
    out[fg] = votes.reshape(len(fg), num_classes)
    labelled = np.zeros(H * W, bool)
    labelled[fg] = out[fg].sum(-1) > abstain
    return out, labelled


def _camera(rng, width, height):
    """A camera near the origin looking roughly along +z (small random rotation), focal ~ width."""
    axis = rng.normal(size=3)
    angle = rng.uniform(0.0, 0.25)
    a = axis / np.linalg.norm(axis) * angle
    X = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    R = np.eye(3) + np.sin(angle) / angle * X + (1 - np.cos(angle)) / angle ** 2 * X @ X
    centre = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), 0.0])
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ centre
    f = width * rng.uniform(0.9, 1.2)
    K = np.array([[f, 0, width / 2 + rng.uniform(-1, 1)], [0, f, height / 2 + rng.uniform(-1, 1)], [0, 0, 1]])
    return viewmat, K


def _plane_depth(viewmat, K, width, height):
    """Depth [H,W] of the plane NORMAL . X = OFFSET seen by the camera."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    centre = -R.T @ t
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ R  # world, z_cam = 1
    return (OFFSET - NORMAL @ centre) / (ray @ NORMAL)


def _noisy(rng, depth):
    """The plane's depth, some pixels off the surface (beyond or near the 1 % tolerance), some empty."""
    d = depth * (1.0 + rng.choice([0.0, 0.0, 0.0, 0.005, 0.02, -0.03], size=depth.shape))
    d[rng.random(depth.shape) < 0.1] = 0.0
    return d.astype(np.float32)


def _random_aggregator(rng, config):
    agg = TransferAggregator(config)
    sizes = [(24, 32), (24, 32), (20, 28), (30, 36), (24, 32), (16, 20)]
    trusted = [False, True, False, True, False, False]
    speaks = [True, True, False, True, False, True]
    for j, ((h, w), tr, sp) in enumerate(zip(sizes, trusted, speaks)):
        viewmat, K = _camera(rng, w, h)
        depth = _noisy(rng, _plane_depth(viewmat, K, w, h))
        conf = rng.random((h, w)).astype(np.float32)
        conf[rng.random((h, w)) < 0.2] = 0.0
        face = (facing(depth, viewmat, K) ** config.incidence).astype(np.float32)
        agg.sources.append(_Source(
            f"v{j}", viewmat, K, depth, rng.integers(0, K_CLASSES, (h, w)).astype(np.int64), conf,
            rng.uniform(0.05, 1.0, K_CLASSES), face, sp, tr))
    return agg


def _reference_facing(depth, viewmat, K):
    """transfer.facing as numpy (the code before its kernel)."""
    P = lift(depth.astype(np.float64), viewmat, K)
    valid = depth > 0

    def along(axis):
        d = np.diff(P, axis=axis)
        ok = np.diff(valid.astype(np.int8), axis=axis) == 0
        ok &= np.take(valid, range(1, valid.shape[axis]), axis=axis)
        d = d * ok[..., None]
        pad = [(0, 0)] * 3
        pad[axis] = (1, 0)
        before = np.pad(d, pad)
        pad[axis] = (0, 1)
        return before + np.pad(d, pad)

    n = np.cross(along(1), along(0))
    norm = np.linalg.norm(n, axis=-1)
    ray = -viewmat[:3, :3].T @ viewmat[:3, 3] - P
    ray /= np.maximum(np.linalg.norm(ray, axis=-1, keepdims=True), 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs((n * ray).sum(-1)) / norm
    return np.where(valid & (norm > 0), cos, 0.0).astype(np.float32)


def test_facing_kernel_is_the_numpy_expression_bit_for_bit():
    rng = np.random.default_rng(3)
    for h, w in [(24, 32), (1, 9), (9, 1), (17, 23)]:
        viewmat, K = _camera(rng, w, h)
        depth = _noisy(rng, _plane_depth(viewmat, K, w, h))
        depth[: h // 3, : w // 2] = 0.0  # an empty block: one-sided differences along its edges
        got, want = facing(depth, viewmat, K), _reference_facing(depth, viewmat, K)
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert 0.5 < got[depth > 0].mean() <= 1.0  # a plane seen at small angles faces the cameras


def test_kernel_matches_the_numpy_reference_on_random_views():
    rng = np.random.default_rng(7)
    config = TransferConfig(depth_tolerance=0.01, reliability=1.5, self_weight=3.7, trusted_weight=0.3,
                            incidence=1.3, min_alpha=0.5)
    agg = _random_aggregator(rng, config)
    for target in range(len(agg.sources) + 2):
        if target < len(agg.sources):  # the target is one of the sources (self_weight applies)
            s = agg.sources[target]
            name, viewmat, K = s.name, s.viewmat, s.K
            depth = s.depth.astype(np.float64)
            alpha = np.where(depth > 0, 1.0, 0.0).astype(np.float32)
        else:  # a novel camera
            name = f"novel{target}"
            viewmat, K = _camera(rng, 32, 24)
            depth = _plane_depth(viewmat, K, 32, 24) * (1.0 + rng.choice([0.0, 0.004, -0.02], size=(24, 32)))
            alpha = rng.random((24, 32)).astype(np.float32)
        votes, labelled = agg.transfer(depth, alpha, viewmat, K, name, K_CLASSES)
        ref_votes, ref_labelled = _reference_transfer(agg, depth, alpha, viewmat, K, name, K_CLASSES)
        assert (ref_votes > 0).any() and ref_labelled.any() and not ref_labelled.all()  # a non-trivial case
        np.testing.assert_allclose(votes, ref_votes, rtol=1e-6)
        np.testing.assert_array_equal(labelled, ref_labelled)


def test_kernel_is_restacked_when_sources_are_added():
    rng = np.random.default_rng(3)
    agg = _random_aggregator(rng, TransferConfig())
    s = agg.sources[0]
    depth = s.depth.astype(np.float64)
    alpha = np.ones_like(depth, np.float32)
    agg.transfer(depth, alpha, s.viewmat, s.K, s.name, K_CLASSES)
    more = _random_aggregator(np.random.default_rng(4), TransferConfig())
    agg.sources.extend(more.sources)
    agg._relative = None
    votes, labelled = agg.transfer(depth, alpha, s.viewmat, s.K, s.name, K_CLASSES)
    ref_votes, ref_labelled = _reference_transfer(agg, depth, alpha, s.viewmat, s.K, s.name, K_CLASSES)
    np.testing.assert_allclose(votes, ref_votes, rtol=1e-6)
    np.testing.assert_array_equal(labelled, ref_labelled)


def test_aggregate_labels_match_the_numpy_reference_on_a_small_scene():
    rng = np.random.default_rng(11)
    W, H, C = 32, 24, 5
    cams = [_camera(rng, W, H) for _ in range(C)]
    viewmats = np.stack([c[0] for c in cams])
    Ks = np.stack([c[1] for c in cams])
    names = tuple(f"v{i}" for i in range(C))
    depth = np.stack([_noisy(rng, _plane_depth(vm, K, W, H)) for vm, K in cams])
    alpha = np.where(depth > 0, rng.uniform(0.3, 1.0, depth.shape), 0.0).astype(np.float32)
    probs = rng.dirichlet(np.ones(K_CLASSES), (C, H, W)).astype(np.float32)
    observed = rng.dirichlet(np.full(K_CLASSES, 0.3), (C, H, W)).astype(np.float32)
    observed[1, :, :10] = 1.0 / K_CLASSES  # the parser has no opinion there
    observed[3] = 1.0 / K_CLASSES  # a view the parser failed on entirely
    renders = Renders(Cameras(viewmats, Ks, W, H, names), np.zeros((C, H, W, 3), np.float32), alpha, depth,
                      probs=probs, observed=observed, trusted=np.array([False, False, True, False, False]))
    config = TransferConfig(self_weight=4.0, trusted_weight=2.0, consensus_weight=0.25)
    new, old = TransferAggregator(config), TransferAggregator(config)
    new.observe(renders)
    old.observe(renders)
    old.transfer = lambda *a: _reference_transfer(old, *a)
    novel = Renders(Cameras(viewmats[::-1].copy(), Ks[::-1].copy(), W, H, ("v4", "x1", "v2", "x3", "v0")),
                    np.zeros((C, H, W, 3), np.float32), alpha[::-1].copy(), depth[::-1].copy(), probs=probs)
    for target in (renders, novel):
        labels, conf = new.aggregate(target, SCHEMA)
        ref_labels, ref_conf = old.aggregate(target, SCHEMA)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(conf, ref_conf, rtol=1e-6)
        assert (labels == 255).any() and (labels != 255).any()


@pytest.mark.parametrize("K", [1, 3, 8, 19, 129, 255])
def test_fuse_votes_is_numpys_expression_bit_for_bit(K):
    from splatrefine.plugins.aggregators.transfer_kernel import fuse_votes

    rng = np.random.default_rng(K)
    N = 3000
    votes = rng.random((N, K)) * 10.0 ** rng.uniform(-9, 3, (N, 1))
    votes[rng.random(N) < 0.3] = 0.0  # pixels no view voted on: mass 0, so the consensus weighs 1
    probs = rng.dirichlet(np.ones(K), N).astype(np.float32)
    probs[:5] = 0.0  # all-zero rendered probabilities: the 1e-12 floor
    votes[:3] = 0.0
    cw = 0.25
    mass = votes.sum(-1, keepdims=True)
    total = votes + cw * np.maximum(mass, 1.0) * probs
    want = (total / np.maximum(total.sum(-1, keepdims=True), 1e-12)).astype(np.float32)
    got = np.full((N, K), np.nan, np.float32)
    fuse_votes(votes, probs, cw, got)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_row_sums_are_numpys_bit_for_bit():
    from splatrefine.plugins.aggregators.transfer_kernel import _reduce_sum

    rng = np.random.default_rng(0)
    for K in (1, 2, 7, 8, 9, 19, 128, 129, 255, 300, 512):
        rows = rng.standard_normal((200, K)) * 10.0 ** rng.uniform(-8, 8, (200, K))  # rounding shows
        got = np.array([_reduce_sum(r) for r in rows])
        np.testing.assert_array_equal(got, rows.sum(-1))
