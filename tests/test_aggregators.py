"""Label aggregators on hand-made renders with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.plugins.aggregators.argmax import ArgmaxAggregator, ArgmaxConfig
from splatrefine.plugins.aggregators.cleanup import CleanupAggregator, CleanupConfig, clean_labels
from splatrefine.plugins.aggregators.palette import PaletteClusterAggregator, PaletteClusterConfig
from splatrefine.roles import ComponentContext, ObservingAggregator, Role
from splatrefine.schema import CELEBAMASK_HQ, IGNORE, LabelSchema
from splatrefine.types import Cameras, Renders

TINY = LabelSchema("tiny", ("background", "skin", "nose"), ((0, 0, 0), (255, 85, 0), (0, 0, 255)))


def _renders(probs=None, seg_rgb=None, alpha=None) -> Renders:
    arr = probs if probs is not None else seg_rgb
    c, h, w = arr.shape[:3]
    cams = Cameras(np.repeat(np.eye(4)[None], c, 0), np.repeat(np.eye(3)[None], c, 0), w, h)
    return Renders(cams, np.zeros((c, h, w, 3), np.float32),
                   np.ones((c, h, w), np.float32) if alpha is None else alpha,
                   np.ones((c, h, w), np.float32), probs=probs, seg_rgb=seg_rgb)


def _onehot(labels: np.ndarray, k: int, p: float = 0.9) -> np.ndarray:
    probs = np.full(labels.shape + (k,), (1 - p) / (k - 1), np.float32)
    np.put_along_axis(probs, labels[..., None].astype(np.int64), p, axis=-1)
    return probs


def test_argmax_labels_confidence_and_thresholds():
    probs = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.45, 0.45 - 1e-3]],
                       [[0.2, 0.3, 0.5], [0.34, 0.33, 0.33]]]], np.float32)  # [1,2,2,3]
    alpha = np.array([[[1.0, 1.0], [0.2, 0.9]]], np.float32)
    labels, conf = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.0, min_margin=0.0)).aggregate(
        _renders(probs, alpha=alpha), TINY)
    assert labels.dtype == np.uint8 and conf.dtype == np.float32
    np.testing.assert_array_equal(labels, [[[0, 1], [2, 0]]])
    np.testing.assert_allclose(conf, [[[0.7, 0.45], [0.5, 0.34]]], atol=1e-6)
    labels, _ = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.46, min_margin=0.0)).aggregate(
        _renders(probs, alpha=alpha), TINY)
    np.testing.assert_array_equal(labels, [[[0, IGNORE], [2, IGNORE]]])
    labels, _ = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.0, min_alpha=0.5, min_margin=0.0)).aggregate(
        _renders(probs, alpha=alpha), TINY)
    np.testing.assert_array_equal(labels, [[[0, 1], [IGNORE, 0]]])
    # margin 1 - p2/p1: 0.714, 0.002, 0.4, 0.029 -> the two near-ties go, whatever their confidence
    labels, _ = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.0, min_margin=0.1)).aggregate(
        _renders(probs, alpha=alpha), TINY)
    np.testing.assert_array_equal(labels, [[[0, IGNORE], [2, IGNORE]]])
    labels, _ = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.0, min_margin=0.5)).aggregate(
        _renders(probs, alpha=alpha), TINY)
    np.testing.assert_array_equal(labels, [[[0, IGNORE], [IGNORE, IGNORE]]])


def test_argmax_and_palette_refuse_the_wrong_render_mode():
    seg = np.zeros((1, 2, 2, 3), np.float32)
    with pytest.raises(SplatrefineError, match="palette-cluster"):
        ArgmaxAggregator(ArgmaxConfig()).aggregate(_renders(seg_rgb=seg), TINY)
    with pytest.raises(SplatrefineError, match="argmax"):
        PaletteClusterAggregator(PaletteClusterConfig()).aggregate(_renders(probs=_onehot(np.zeros((1, 2, 2), int), 3)), TINY)
    with pytest.raises(SplatrefineError, match="3 class channels but schema 'celebamask-hq' has 19"):
        ArgmaxAggregator(ArgmaxConfig()).aggregate(_renders(probs=_onehot(np.zeros((1, 2, 2), int), 3)), CELEBAMASK_HQ)


@pytest.mark.parametrize("iterations", [0, 3])
def test_palette_cluster_snaps_noisy_colours_back(iterations):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, CELEBAMASK_HQ.num_classes, size=(2, 24, 24))
    pal = CELEBAMASK_HQ.palette_array().astype(np.float32) / 255
    # noise well below half the smallest palette distance (85/255 between e.g. classes 16 and 17)
    seg = np.clip(pal[truth] + rng.normal(0, 0.03, truth.shape + (3,)), 0, 1).astype(np.float32)
    agg = PaletteClusterAggregator(PaletteClusterConfig(kmeans_iterations=iterations, blend_distance=0.0),
                                   ComponentContext(seed=1))
    labels, conf = agg.aggregate(_renders(seg_rgb=seg), CELEBAMASK_HQ)
    np.testing.assert_array_equal(labels, truth)
    assert conf.dtype == np.float32 and conf.min() > 0.2 and conf.max() <= 1.0


def test_palette_cluster_confidence_and_kmeans_follow_darkened_colours():
    pal = TINY.palette_array().astype(np.float32) / 255
    # exactly halfway between skin and nose: confidence 0; exactly on a colour: 1
    seg = np.stack([pal[1], (pal[1] + pal[2]) / 2, pal[2], pal[0]]).reshape(1, 2, 2, 3)
    labels, conf = PaletteClusterAggregator(PaletteClusterConfig(kmeans_iterations=0, min_confidence=0.1)).aggregate(
        _renders(seg_rgb=seg), TINY)
    np.testing.assert_allclose(conf.ravel(), [1, 0, 1, 1], atol=1e-6)
    np.testing.assert_array_equal(labels.ravel(), [1, IGNORE, 2, 0])
    # nose rendered darkened to 0.4..0.7 of its colour (alpha blending on black): nearest-palette
    # calls a third of it background; k-means started at the palette follows it and gets it right
    rng = np.random.default_rng(2)
    truth = rng.choice([0, 1, 2], size=(1, 30, 30), p=[0.2, 0.4, 0.4])
    seg = pal[truth].copy()
    seg[truth == 2] = pal[2] * rng.uniform(0.4, 0.7, (int((truth == 2).sum()), 1))
    plain, _ = PaletteClusterAggregator(PaletteClusterConfig(kmeans_iterations=0, blend_distance=0.0)).aggregate(
        _renders(seg_rgb=seg), TINY)
    km, _ = PaletteClusterAggregator(PaletteClusterConfig(kmeans_iterations=10, blend_distance=0.0)).aggregate(
        _renders(seg_rgb=seg), TINY)
    assert (plain != truth).sum() > 50
    assert (km != truth).sum() == 0


def test_palette_cluster_gives_edge_blends_to_a_neighbour():
    pal = CELEBAMASK_HQ.palette_array().astype(np.float32) / 255
    skin, hair = CELEBAMASK_HQ.index("skin"), CELEBAMASK_HQ.index("hair")
    truth = np.full((1, 6, 8), skin)
    truth[:, :, 4:] = hair
    seg = pal[truth]
    seg[:, :, 3] = 0.55 * pal[skin] + 0.45 * pal[hair]  # the blend lies nearest a third class
    seg[:, :, 4] = 0.4 * pal[skin] + 0.6 * pal[hair]
    plain, _ = PaletteClusterAggregator(PaletteClusterConfig(blend_distance=0.0)).aggregate(
        _renders(seg_rgb=seg), CELEBAMASK_HQ)
    assert not np.isin(plain[:, :, 3:5], [skin, hair]).any()
    labels, conf = PaletteClusterAggregator(PaletteClusterConfig(blend_distance=0.1)).aggregate(
        _renders(seg_rgb=seg), CELEBAMASK_HQ)
    np.testing.assert_array_equal(labels, truth)  # column 3 is nearest to skin, column 4 to hair
    assert conf[0, 0, 3] < 0.4 and conf[0, 0, 0] == 1.0


def _blob_image() -> np.ndarray:
    lab = np.zeros((40, 40), np.uint8)
    lab[8:32, 8:32] = 1  # skin square
    lab[18:22, 24:28] = 2  # a 16 px nose blob inside the skin: should survive min_component=10
    lab[12:14, 12:14] = 2  # a 4 px speck: removed, becomes skin
    lab[2, 2] = 1  # a 1 px speck in the background: removed, becomes background
    lab[26:29, 12:15] = IGNORE  # a 9 px enclosed ignore hole in the skin: filled with skin
    lab[0:3, 36:40] = IGNORE  # an ignore region on the border: stays
    return lab


def test_clean_labels_removes_specks_and_fills_holes():
    lab = _blob_image()
    conf = np.full(lab.shape, 0.8, np.float32)
    conf[lab == IGNORE] = 0.1
    out, c2 = clean_labels(lab, conf, 3, opening_radius=0, closing_radius=0, min_component=10, max_hole=20)
    expect = lab.copy()
    expect[12:14, 12:14] = 1
    expect[2, 2] = 0
    expect[26:29, 12:15] = 1
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_allclose(c2[26:29, 12:15], 0.8)  # confidence of the pixel the label came from
    assert (c2[0:3, 36:40] == np.float32(0.1)).all()
    # a hole larger than max_hole stays ignore
    out, _ = clean_labels(lab, conf, 3, opening_radius=0, closing_radius=0, min_component=10, max_hole=8)
    assert (out[26:29, 12:15] == IGNORE).all()


def test_clean_labels_opening_and_closing():
    lab = np.zeros((30, 30), np.uint8)
    lab[5:25, 5:25] = 1
    lab[5:25, 15] = IGNORE  # a 1 px ignore crack through the skin: closing fills it
    lab[10, 25:29] = 1  # a 1 px thick spur: opening removes it
    ones = np.ones(lab.shape, np.float32)
    out, _ = clean_labels(lab, ones, 2, opening_radius=0, closing_radius=1, min_component=0, max_hole=0)
    expect = np.zeros_like(lab)
    expect[5:25, 5:25] = 1
    expect[10, 25:29] = 1
    expect[[5, 24], 15] = IGNORE  # the crack's ends touch the background: a 3x3 closing leaves them
    np.testing.assert_array_equal(out, expect)
    out, _ = clean_labels(lab, ones, 2, opening_radius=1, closing_radius=0, min_component=0, max_hole=0)
    assert (out[10, 27:29] == 0).all() and lab[10, 27:29].all()  # the spur is gone (ties at its root)
    assert (out[5:25, 15] == IGNORE).all()  # no closing: the crack stays
    assert (out[8:22, 8:14] == 1).all() and (out[8:22, 17:22] == 1).all()


def test_cleanup_chains_after_a_base_built_by_the_context():
    truth = _blob_image()[None]
    truth = np.where(truth == IGNORE, 1, truth)
    probs = _onehot(truth, 3, 0.9)
    probs[0, 26:29, 12:15] = 1 / 3  # uncertain pixels -> argmax ignores them -> cleanup fills
    built = []

    def build(role, name, params):
        built.append((role, name, params))
        return ArgmaxAggregator(ArgmaxConfig(**params))

    agg = CleanupAggregator(CleanupConfig(base="argmax", base_params={"min_confidence": 0.5}, opening_radius=0,
                                          closing_radius=0, min_component=10, max_hole=20),
                            ComponentContext(build=build))
    assert built == [(Role.LABEL_AGGREGATOR, "argmax", {"min_confidence": 0.5})]
    labels, conf = agg.aggregate(_renders(probs), TINY)
    base_labels, _ = ArgmaxAggregator(ArgmaxConfig(min_confidence=0.5)).aggregate(_renders(probs), TINY)
    assert (base_labels[0, 26:29, 12:15] == IGNORE).all()
    assert (labels[0, 26:29, 12:15] == 1).all()
    assert labels[0, 12, 12] == 1 and labels[0, 2, 2] == 0 and labels[0, 19, 25] == 2
    np.testing.assert_allclose(conf[0, 26:29, 12:15], 0.9, atol=1e-6)


def test_cleanup_in_library_use_builds_its_base_through_a_registry_context():
    import splatrefine.registry as reg

    if "splatrefine.plugins.aggregators.plugin" not in reg.BUILTIN_PLUGINS:
        pytest.skip("aggregators not yet in BUILTIN_PLUGINS")
    ctx = reg.Registry(reg.make_plugin_manager(entrypoints=False)).context()
    agg = CleanupAggregator(CleanupConfig(base="argmax", base_params={"min_confidence": 0.3}), ctx)
    assert isinstance(agg.base, ArgmaxAggregator) and agg.base.config.min_confidence == 0.3
    with pytest.raises(ConfigError, match="has no setting 'min_confidense'"):
        CleanupAggregator(CleanupConfig(base="argmax", base_params={"min_confidense": 0.3}), ctx)
    with pytest.raises(SplatrefineError, match="no label_aggregator named 'argmx'"):
        CleanupAggregator(CleanupConfig(base="argmx"), ctx)
    with pytest.raises(SplatrefineError, match="cannot build label_aggregator 'argmax': this ComponentContext has no registry"):
        CleanupAggregator(CleanupConfig(base="argmax"))  # no context, no registry: plugins build nothing themselves


def test_every_builtin_aggregator_builds_from_defaults_and_keeps_the_contract():
    import splatrefine.registry as reg
    from splatrefine.config import build_settings
    from splatrefine.roles import LabelAggregator

    if "splatrefine.plugins.aggregators.plugin" not in reg.BUILTIN_PLUGINS:
        pytest.skip("aggregators not yet in BUILTIN_PLUGINS")
    r = reg.Registry(reg.make_plugin_manager(entrypoints=False))
    truth = np.array([[[0, 1, 1], [2, 2, 0]]])
    pal = TINY.palette_array().astype(np.float32) / 255
    for name, renders in (("argmax", _renders(probs=_onehot(truth, 3))), ("cleanup", _renders(probs=_onehot(truth, 3))),
                          ("palette-cluster", _renders(seg_rgb=pal[truth]))):
        spec = r.get(Role.LABEL_AGGREGATOR, name)
        agg = spec.factory(build_settings(spec.config_cls, {}, name), r.context())
        assert isinstance(agg, LabelAggregator)
        assert agg.needs == ("seg_rgb" if name == "palette-cluster" else "probs")
        labels, conf = agg.aggregate(renders, TINY)
        assert labels.dtype == np.uint8 and conf.dtype == np.float32 and labels.shape == conf.shape == (1, 2, 3)
        if name != "cleanup":  # cleanup's default minimum piece size relabels this 6-pixel image
            np.testing.assert_array_equal(labels, truth)


# --- agreement of a view's labels with the consensus ------------------------------------------------------
def test_class_agreement_is_the_confidence_weighted_mean_consensus_probability_of_the_said_class():
    from splatrefine.agreement import class_agreement

    consensus = np.array([[0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    observed = _onehot(np.array([1, 1, 1, 0]), 3, p=1.0).astype(np.float64)
    observed[3] = 1 / 3  # no opinion: does not count
    rho = class_agreement(consensus, observed, prior_pixels=0.0)
    assert rho[1] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    # a class the view never says gets the view's overall agreement once shrunk
    shrunk = class_agreement(consensus, observed, prior_pixels=3.0)
    assert shrunk[1] == pytest.approx(rho[1]) and shrunk[2] == pytest.approx(rho[1])


# --- transfer: labels carried from input views through the rendered depth --------------------------------
def _plane_view(x_shift: float, name: str, size: int = 16, depth: float = 1.0, probs=None, alpha=None):
    """A camera at (x_shift, 0, 0) looking along +z at the plane z = depth (focal 16 px)."""
    vm = np.eye(4)
    vm[0, 3] = -x_shift
    K = np.array([[16.0, 0, size / 2], [0, 16.0, size / 2], [0, 0, 1]])
    cams = Cameras(vm[None], K[None], size, size, (name,))
    p = np.full((1, size, size, 3), 1 / 3, np.float32) if probs is None else probs
    a = np.ones((1, size, size), np.float32) if alpha is None else alpha
    return Renders(cams, np.zeros((1, size, size, 3), np.float32), a, np.full((1, size, size), depth, np.float32),
                   probs=p)


def _transfer(**kw):
    from splatrefine.plugins.aggregators.transfer import TransferAggregator, TransferConfig

    return TransferAggregator(TransferConfig(**kw))


def test_transfer_carries_labels_to_where_the_surface_projects():
    # the source sees a nose stripe in columns 6..7 of a plane at z = 1; a camera shifted by 0.125
    # (2 px at focal 16) sees the same stripe 2 columns to the left
    lab = np.ones((16, 16), np.int64)
    lab[:, 6:8] = 2
    source = _plane_view(0.0, "a")
    source.observed = _onehot(lab[None], 3, p=0.95)
    agg = _transfer(reliability=0.0, consensus_weight=0.0)
    assert isinstance(agg, ObservingAggregator)
    agg.observe(source)
    labels, conf = agg.aggregate(_plane_view(0.125, "b"), TINY)
    expected = np.ones((16, 16), np.uint8)
    expected[:, 4:6] = 2
    assert (labels[0, :, :14] == expected[:, :14]).all()  # the last 2 columns are outside the source
    assert conf[0, 0, 5] == pytest.approx(1.0)


def test_transfer_ignores_views_that_see_another_surface_and_weighs_the_own_view():
    lab_a = np.full((16, 16), 2, np.int64)  # says nose everywhere, but sees a plane 10 cm nearer
    near = _plane_view(0.0, "a", depth=0.9)
    near.observed = _onehot(lab_a[None], 3, p=0.95)
    lab_b = np.ones((16, 16), np.int64)
    own = _plane_view(0.0, "b")
    own.observed = _onehot(lab_b[None], 3, p=0.95)
    consensus = _onehot(np.zeros((1, 16, 16), np.int64), 3, p=0.9)  # the class head says background
    agg = _transfer(reliability=0.0, consensus_weight=0.25, depth_tolerance=0.01)
    agg.observe(near)
    agg.observe(own)
    labels = agg.aggregate(_plane_view(0.0, "b", probs=consensus), TINY)[0]
    assert (labels == 1).all()  # own labels beat the consensus; the occluding view does not count
    # at a camera no input view covers: 255 (no opinion), or the consensus when asked
    assert (agg.aggregate(_plane_view(5.0, "c", probs=consensus), TINY)[0] == IGNORE).all()
    guess = _transfer(reliability=0.0, unseen="consensus")
    guess.observe(own)
    assert (guess.aggregate(_plane_view(5.0, "c", probs=consensus), TINY)[0] == 0).all()


def test_transfer_trusts_the_view_that_agrees_with_the_consensus():
    # two views at the same place disagree (skin vs nose); the consensus sides with skin, so with
    # reliability the skin view's votes outweigh the nose view's (equal confidence)
    consensus = _onehot(np.ones((1, 16, 16), np.int64), 3, p=0.8)
    skin, nose = _plane_view(0.0, "a", probs=consensus), _plane_view(0.0, "b", probs=consensus)
    skin.observed = _onehot(np.ones((1, 16, 16), np.int64), 3, p=0.95)
    nose.observed = _onehot(np.full((1, 16, 16), 2, np.int64), 3, p=0.95)
    agg = _transfer(reliability=4.0, self_weight=1.0, consensus_weight=0.0)
    agg.observe(skin)
    agg.observe(nose)
    assert (agg.aggregate(_plane_view(0.0, "c", probs=consensus), TINY)[0] == 1).all()


def test_transfer_leaves_points_unlabelled_that_most_seeing_views_leave_unlabelled():
    # columns 0..7 are "hair": two views that do label the face (columns 8..) say nothing there, one
    # view wraps its skin over it; the views' abstentions win. A view its parser failed on entirely
    # (all uniform) abstains from nothing.
    said = np.ones((1, 16, 16), np.int64)
    quiet = _onehot(said, 3, p=0.95)
    quiet[:, :, :8] = 1 / 3
    views = []
    for name, observed in (("a", quiet), ("b", quiet.copy()), ("c", _onehot(said, 3, p=0.95))):
        v = _plane_view(0.0, name)
        v.observed = observed
        views.append(v)
    agg = _transfer(reliability=0.0, self_weight=1.0)
    for v in views:
        agg.observe(v)
    labels = agg.aggregate(_plane_view(0.0, "d"), TINY)[0]
    assert (labels[0, :, :8] == IGNORE).all() and (labels[0, :, 8:] == 1).all()
    failed = _plane_view(0.0, "a")
    failed.observed = np.full((1, 16, 16, 3), 1 / 3, np.float32)
    agg = _transfer(reliability=0.0, self_weight=1.0)
    agg.observe(failed)
    agg.observe(views[2])
    assert (agg.aggregate(_plane_view(0.0, "d"), TINY)[0] == 1).all()


def test_transfer_facing_is_the_cosine_between_ray_and_surface_normal():
    from splatrefine.plugins.aggregators.transfer import facing

    size, f = 16, 16.0
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    x = (np.arange(size) + 0.5 - size / 2) / f

    def expected(theta, col):
        ray = np.array([x[col], (8.5 - size / 2) / f, 1.0])
        normal = np.array([np.sin(np.radians(theta)), 0.0, -np.cos(np.radians(theta))])
        return abs(normal @ ray) / np.linalg.norm(ray)

    for theta in (0.0, 60.0):
        s, c = np.sin(np.radians(theta)), np.cos(np.radians(theta))
        depth = np.tile(c / (c - s * x), (size, 1))  # the plane through (0, 0, 1) turned by theta about y
        cos = facing(depth.astype(np.float32), np.eye(4), K)
        assert cos[8, 8] == pytest.approx(expected(theta, 8), abs=1e-3)
    depth[:, :4] = 0.0  # empty pixels: no normal there, one-sided differences next to them
    cos = facing(depth.astype(np.float32), np.eye(4), K)
    assert (cos[:, :4] == 0).all() and cos[8, 4] == pytest.approx(expected(60.0, 4), abs=1e-3)


def test_transfer_prefers_the_view_that_faces_the_surface():
    # two views see the same plane point and disagree; the one looking at it edge-on (a plane turned
    # 80 degrees in its own frame) counts less than the one facing it
    head_on = _plane_view(0.0, "a")
    head_on.observed = _onehot(np.ones((1, 16, 16), np.int64), 3, p=0.95)
    grazing = _plane_view(0.0, "b")
    grazing.observed = _onehot(np.full((1, 16, 16), 2, np.int64), 3, p=0.95)
    x = (np.arange(16) + 0.5 - 8) / 16.0
    s, c = np.sin(np.radians(80.0)), np.cos(np.radians(80.0))
    grazing.depth = np.tile(c / (c - s * x), (16, 1))[None].astype(np.float32)
    agg = _transfer(reliability=0.0, self_weight=1.0, consensus_weight=0.0, depth_tolerance=0.5)
    agg.observe(head_on)
    agg.observe(grazing)
    assert agg.aggregate(_plane_view(0.0, "c"), TINY)[0][0, 8, 8] == 1
    flat = _transfer(reliability=0.0, self_weight=1.0, consensus_weight=0.0, depth_tolerance=0.5, incidence=0.0)
    flat.observe(head_on)
    flat.observe(grazing)
    assert flat.sources[1].facing[8, 8] == 1.0 and agg.sources[1].facing[8, 8] < 0.3


def test_transfer_counts_a_trusted_view_as_agreeing_and_weighs_it():
    # the consensus says skin; one parser view agrees, one corrected view (Renders.trusted) says nose.
    # Untrusted, reliability would silence the nose view; trusted it keeps full agreement, and
    # trusted_weight makes it outvote the parser view
    consensus = _onehot(np.ones((1, 16, 16), np.int64), 3, p=0.8)
    parser_view, corrected = _plane_view(0.0, "a", probs=consensus), _plane_view(0.0, "b", probs=consensus)
    parser_view.observed = _onehot(np.ones((1, 16, 16), np.int64), 3, p=0.95)
    corrected.observed = _onehot(np.full((1, 16, 16), 2, np.int64), 3, p=1.0)

    def labels(trusted, weight):
        agg = _transfer(reliability=4.0, self_weight=1.0, consensus_weight=0.0, trusted_weight=weight)
        agg.observe(parser_view)
        corrected.trusted = np.array([trusted])
        agg.observe(corrected)
        return agg, agg.aggregate(_plane_view(0.0, "c", probs=consensus), TINY)[0]

    agg, out = labels(False, 5.0)
    assert (out == 1).all() and agg._relative_agreement()[1, 2] < 0.5
    agg, out = labels(True, 1.0)
    assert agg._relative_agreement()[1, 2] == 1.0
    assert (labels(True, 5.0)[1] == 2).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_parser_confidence_is_numpys_arithmetic(dtype):
    from splatrefine.agreement import parser_confidence

    observed = np.random.default_rng(5).dirichlet(np.ones(7), size=(40, 30)).astype(dtype)
    observed[0, 0] = 1.0 / 7
    lab, conf = parser_confidence(observed)
    K = observed.shape[-1]
    want = np.nan_to_num(np.clip((observed.max(-1) - 1.0 / K) / (1.0 - 1.0 / K), 0.0, 1.0))
    np.testing.assert_array_equal(lab, observed.argmax(-1))
    assert conf.dtype == want.dtype
    np.testing.assert_array_equal(conf.view(np.uint8), want.view(np.uint8))
