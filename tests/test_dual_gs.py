"""dual-gs representation: fit quality, palette mode, persistence, resume, bad input."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from splatrefine.errors import CaptureError, SplatrefineError
from splatrefine.progress import set_progress_enabled
from splatrefine.roles import ComponentContext
from splatrefine.schema import CELEBAMASK_HQ
from splatrefine.testing import ring_cameras, tiny_capture
from splatrefine.types import Camera, Capture, View

from splatrefine.plugins.dual_gs import fit as fit_mod
from splatrefine.plugins.dual_gs.plugin import DualGSConfig
from splatrefine.plugins.dual_gs.representation import DualGS

K = CELEBAMASK_HQ.num_classes
# 40 steps from deliberately large Gaussians: too short for the depth-variance term to pay off (it is
# tested on its own in test_depth_variance.py)
SMALL = dict(iterations=40, init_points=300, init_scale=1.0, refine_start=10, refine_every=10, checkpoint_every=10,
             sh_degree=1, sh_degree_every=20, depth_variance_weight=0.0)


@pytest.fixture(autouse=True)
def _quiet():
    set_progress_enabled(False)
    yield
    set_progress_enabled(True)


def noisy_probs(labels: np.ndarray, flip: float, seed: int = 0, patch: int = 4) -> np.ndarray:
    """Soft one-hot probabilities [V,K,H,W] of `labels` with whole patches relabelled at random."""
    rng = np.random.default_rng(seed)
    V, H, W = labels.shape
    flips = np.kron(rng.random((V, H // patch, W // patch)) < flip, np.ones((patch, patch), bool))
    noisy = np.where(flips, rng.integers(0, K, size=labels.shape), labels)
    p = 0.8 * np.eye(K, dtype=np.float32)[noisy] + 0.2 / K
    return np.ascontiguousarray(p.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def scene():
    cap = tiny_capture(views=8, size=32, yaw_range=(-150.0, 165.0))
    labels = np.stack([v.labels for v in cap.views])
    return cap, labels, noisy_probs(labels, 0.3)


def rep(device: str = "cpu", **kw) -> DualGS:
    # on the CPU unless a test asks for CUDA: most tests here check the CPU kernels bit for bit
    return DualGS(DualGSConfig(**{**SMALL, **kw}), ComponentContext(device=device, seed=0))


@pytest.fixture(scope="module")
def fitted(scene, tmp_path_factory):
    cap, labels, probs = scene
    set_progress_enabled(False)
    # 30% of the patches relabelled at random: labels this noisy should not move the geometry
    # (docs/dual_gs.md; the experiment's weak baseline parser is refined the same way)
    r = rep(class_moves_geometry=False)
    wd = tmp_path_factory.mktemp("fit")
    model = r.fit(cap, probs, workdir=wd)
    return r, model, wd


def test_fit_refines_labels_and_renders(scene, fitted):
    cap, labels, probs = scene
    r, model, wd = fitted
    out = r.render(model, cap.cameras())
    assert out.rgb.shape == (8, 32, 32, 3) and out.rgb.dtype == np.float32
    assert out.probs.shape == (8, 32, 32, K) and out.seg_rgb is None
    assert out.alpha.shape == out.depth.shape == (8, 32, 32)
    np.testing.assert_allclose(out.probs.sum(-1), 1.0, atol=1e-5)
    init_acc = (probs.argmax(1) == labels).mean()
    ref_acc = (out.probs.argmax(-1) == labels).mean()
    assert init_acc < 0.8
    assert ref_acc > init_acc + 0.1, (init_acc, ref_acc)
    def psnr(rgb):
        return 10 * np.log10(1 / np.mean((rgb - cap.images() / 255.0) ** 2))

    start = rep(iterations=0).fit(cap, probs)  # the initial Gaussians, unfitted
    assert psnr(out.rgb) > 15.0
    assert psnr(out.rgb) > psnr(r.render(start, cap.cameras()).rgb) + 2.0
    # the object's silhouette: alpha high where the sphere is
    fg = labels > 0
    assert out.alpha[fg].mean() > 0.8 and out.alpha[~fg].mean() < 0.3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_refines_as_well_as_on_cpu(scene):
    """The same fit on the gsplat backend: the labels it renders are as much better than the
    initial ones as the CPU fit's, and its RGB as close to the images."""
    pytest.importorskip("gsplat")
    cap, labels, probs = scene
    scores = {}
    for device in ("cpu", "cuda"):
        r = rep(device, class_moves_geometry=False)
        model = r.fit(cap, probs)
        assert model.device.type == device
        out = r.render(model, cap.cameras())
        mse = float(np.mean((out.rgb - cap.images() / 255.0) ** 2))
        scores[device] = ((out.probs.argmax(-1) == labels).mean(), 10 * np.log10(1 / mse))
    print("label accuracy, PSNR:", scores)
    init_acc = (probs.argmax(1) == labels).mean()
    assert scores["cuda"][0] > init_acc + 0.1
    assert abs(scores["cuda"][0] - scores["cpu"][0]) < 0.03, scores
    assert abs(scores["cuda"][1] - scores["cpu"][1]) < 1.0, scores


def test_history_and_plot_written(fitted):
    _, _, wd = fitted
    hist = json.loads((wd / "history.json").read_text())
    assert hist["iteration"][-1] == 40
    for key in ("loss", "rgb", "class", "gaussians", "mask"):
        assert len(hist[key]) == len(hist["iteration"])
    assert hist["rgb"][-1] < 0.8 * hist["rgb"][0] and hist["mask"][-1] < 0.8 * hist["mask"][0]
    assert hist["seconds"] == sorted(hist["seconds"])
    assert (wd / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (wd / "checkpoint.pt").exists()


def test_palette_mode(scene, tmp_path):
    cap, labels, probs = scene
    r = rep(mode="palette")
    model = r.fit(cap, probs)
    out = r.render(model, cap.cameras())
    assert out.probs is None and out.seg_rgb.shape == (8, 32, 32, 3)
    pal = CELEBAMASK_HQ.palette_array().astype(np.float32) / 255.0
    d = ((out.seg_rgb[..., None, :] - pal) ** 2).sum(-1)
    pred = d.argmin(-1)
    assert (pred == labels).mean() > (probs.argmax(1) == labels).mean() + 0.1
    r.save(model, tmp_path / "m.pt")
    again = r.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(r.render(again, cap.cameras()).seg_rgb, out.seg_rgb)


def test_save_load_and_ply_roundtrip_render_identically(scene, fitted, tmp_path):
    cap, _, _ = scene
    r, model, _ = fitted
    cams = ring_cameras([10.0, 100.0], size=32)
    ref = r.render(model, cams)
    r.save(model, tmp_path / "model.pt")
    r.export_ply(model, tmp_path / "splats.ply")
    for path in (tmp_path / "model.pt", tmp_path / "splats.ply"):
        out = r.render(r.load(path), cams)
        np.testing.assert_allclose(out.rgb, ref.rgb, atol=1e-6)
        np.testing.assert_allclose(out.probs, ref.probs, atol=1e-6)
    header = (tmp_path / "splats.ply").read_bytes().split(b"end_header")[0].decode()
    names = [ln.split()[-1] for ln in header.splitlines() if ln.startswith("property")]
    rest = 3 * ((1 + 1) ** 2 - 1)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:9 + rest] == [f"f_rest_{i}" for i in range(rest)]
    assert names[9 + rest:] == (["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
                                + [f"class_{i}" for i in range(K)])
    assert f"element vertex {model.num_gaussians}" in header


def _interrupted_and_resumed(scene, tmp_path, monkeypatch, device):
    """(full fit, fit interrupted at step 25 and resumed from its step-20 checkpoint, their histories)."""
    cap, _, probs = scene
    cfg = dict(iterations=30, device=device)
    full = rep(**cfg).fit(cap, probs, workdir=tmp_path / "full")

    real = fit_mod.progress_task

    class Interrupt(Exception):
        pass

    def interrupting(desc, total):
        import contextlib

        @contextlib.contextmanager
        def cm():
            with real(desc, total) as adv:
                seen = [0]

                def advance(n=1, **info):
                    seen[0] += n
                    if seen[0] >= 25:
                        raise Interrupt
                    adv(n, **info)

                yield advance
        return cm()

    monkeypatch.setattr(fit_mod, "progress_task", interrupting)
    with pytest.raises(Interrupt):
        rep(**cfg).fit(cap, probs, workdir=tmp_path / "cut")
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 20
    monkeypatch.setattr(fit_mod, "progress_task", real)
    resumed = rep(**cfg).fit(cap, probs, workdir=tmp_path / "cut")
    h1 = json.loads((tmp_path / "full" / "history.json").read_text())
    h2 = json.loads((tmp_path / "cut" / "history.json").read_text())
    return full, resumed, h1, h2


def test_interrupted_fit_resumes_to_same_result(scene, tmp_path, monkeypatch):
    full, resumed, h1, h2 = _interrupted_and_resumed(scene, tmp_path, monkeypatch, "cpu")
    assert resumed.num_gaussians == full.num_gaussians
    for k in full.params:
        np.testing.assert_allclose(resumed.params[k].numpy(), full.params[k].numpy(), atol=1e-5, rtol=1e-4)
    assert h1["iteration"] == h2["iteration"]
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_interrupted_fit_resumes_on_cuda(scene, tmp_path, monkeypatch):
    """Resuming on CUDA: the checkpoint's optimizer state goes back onto the GPU (the fused Adam
    kernel needs all of it there) and the fit ends where the uninterrupted one does, up to the
    float-sum order of gsplat's atomic gradient adds."""
    pytest.importorskip("gsplat")
    full, resumed, h1, h2 = _interrupted_and_resumed(scene, tmp_path, monkeypatch, "cuda")
    assert resumed.device.type == "cuda"
    assert abs(resumed.num_gaussians - full.num_gaussians) <= 0.01 * full.num_gaussians
    assert h1["iteration"] == h2["iteration"]
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-2)


def test_class_gradients_can_be_kept_off_the_geometry(scene):
    cap, _, probs = scene

    def grads(**kw):
        r = rep(**kw)
        p = np.ascontiguousarray(np.moveaxis(probs, 1, -1))
        from splatrefine.plugins.dual_gs.losses import target_weights

        w = target_weights(torch.from_numpy(p), True).numpy()
        model = r.init_model(cap, p, w)
        tr = fit_mod.Trainer(r.config, model, r._fit_data(cap, p, w), 0, None)
        terms, meta = tr._losses(np.array([0, 3]))
        tr._backward(terms, meta)
        out = {k: v.grad.clone() for k, v in tr.params.items()}
        out["means2d"] = meta["means2d"].grad.clone()
        return out

    off = grads(class_moves_geometry=False, class_weight=5.0)
    rgb_only = grads(class_moves_geometry=True, class_weight=0.0)
    on = grads(class_moves_geometry=True, class_weight=5.0)
    for k in ("means", "scales", "quats", "opacities", "sh0"):
        torch.testing.assert_close(off[k], rgb_only[k], atol=1e-7, rtol=1e-5)
    assert not torch.allclose(on["means"], rgb_only["means"], atol=1e-7)
    torch.testing.assert_close(off["classes"], on["classes"], atol=1e-7, rtol=1e-5)
    assert rgb_only["classes"].abs().max() == 0
    # class_densify: the class loss still counts in the densification statistics, nowhere else
    dens = grads(class_moves_geometry=False, class_weight=5.0, class_densify=True)
    for k in ("means", "scales", "quats", "opacities", "sh0", "classes"):
        torch.testing.assert_close(dens[k], off[k], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(off["means2d"], rgb_only["means2d"], atol=1e-9, rtol=1e-5)
    assert not torch.allclose(dens["means2d"], off["means2d"], atol=1e-9)


def test_non_finite_loss_rolls_back_with_warning(scene, monkeypatch, caplog):
    cap, _, probs = scene
    real = fit_mod.Trainer._losses
    calls = [0]

    def poisoned(self, idx):
        terms, meta = real(self, idx)
        calls[0] += 1
        if calls[0] == 30:
            terms["rgb"] = terms["rgb"] * float("nan")
        return terms, meta

    monkeypatch.setattr(fit_mod.Trainer, "_losses", poisoned)
    with caplog.at_level(logging.WARNING):
        model = rep(iterations=35).fit(cap, probs)
    assert any("non-finite loss" in r.message for r in caplog.records)
    assert model.meta["rollbacks"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in model.params.values())


def test_bad_input(scene):
    cap, _, probs = scene
    r = rep(iterations=2)
    one = Capture(cap.views[:1], cap.schema, cap.subject)
    with pytest.raises(CaptureError, match="at least 2 views"):
        r.fit(one, probs[:1])
    with pytest.raises(SplatrefineError, match="11 classes but the capture's schema 'celebamask-hq' has 19"):
        r.fit(cap, probs[:, :11])
    with pytest.raises(SplatrefineError, match="does not match the capture"):
        r.fit(cap, probs[:, :, :16])
    # cameras looking away from each other
    from splatrefine.poses import look_at

    views = []
    for i, d in enumerate(([0, 0, 1.0], [0, 0, -1.0], [1.0, 0, 0])):
        eye = np.array(d) * 3
        vm = look_at(eye, eye * 2, np.array([0, -1.0, 0]))
        views.append(View(f"v{i}", Camera(vm, cap.views[0].camera.K, 32, 32), cap.views[0].image))
    away = Capture(views, cap.schema)
    with pytest.raises(CaptureError, match="do not see a common volume"):
        r.fit(away, probs[:3])


def test_init_from_capture_points(scene):
    cap, _, probs = scene
    rng = np.random.default_rng(1)
    d = rng.normal(size=(200, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True)
    withpts = replace(cap, points=pts)
    r = rep()
    p = np.ascontiguousarray(np.moveaxis(probs, 1, -1))
    model = r.init_model(withpts, p, np.ones(p.shape[:3], np.float32))
    assert model.num_gaussians == 200
    np.testing.assert_allclose(model.params["means"].numpy(), pts, atol=1e-6)


def test_view_reliability_finds_the_views_that_disagree_and_survives_resume(scene, tmp_path):
    cap, labels, _ = scene
    probs = noisy_probs(labels, 0.0)
    bad = [2, 5]  # confidently wrong: every label shifted to the next class
    shifted = (labels[bad].astype(np.int64) + 1) % K
    probs[bad] = np.ascontiguousarray((0.8 * np.eye(K, dtype=np.float32)[shifted] + 0.2 / K).transpose(0, 3, 1, 2))
    cfg = dict(iterations=40, view_reliability=2.0, reliability_updates=2)
    model = rep(**cfg).fit(cap, probs)
    agree = np.array(model.meta["view_agreement"])
    said = probs.argmax(1)
    per_view = np.array([agree[v][np.unique(said[v])].mean() for v in range(len(said))])
    good = [v for v in range(len(said)) if v not in bad]
    assert per_view[bad].max() < 0.6 * per_view[good].min(), per_view
    # an interrupted fit resumes with the reliability it had estimated
    r = rep(**cfg)
    r.fit(cap, probs, workdir=tmp_path)  # writes checkpoints every 10 steps
    ck = torch.load(tmp_path / fit_mod.CHECKPOINT, weights_only=True)
    assert ck["agreement"] is not None and ck["agreement"].shape == (len(said), K)
    np.testing.assert_allclose(ck["agreement"].numpy(), agree, atol=1e-3)


def test_depth_variance_term_thins_the_layer_each_ray_meets(scene, tmp_path):
    cap, _, probs = scene
    set_progress_enabled(False)
    spread = {}
    for weight in (0.0, 200.0):
        wd = tmp_path / f"w{weight}"
        model = rep(iterations=80, depth_variance_weight=weight).fit(cap, probs, workdir=wd)
        hist = json.loads((wd / "history.json").read_text())
        assert ("depth_variance" in hist) == (weight > 0)
        vm, Ks = cap.cameras().viewmats, cap.cameras().Ks
        from splatrefine.plugins.dual_gs.model import render_model

        with torch.no_grad():
            _, _, alpha, _, meta = render_model(model, torch.as_tensor(vm, dtype=torch.float32),
                                                torch.as_tensor(Ks, dtype=torch.float32), 32, 32,
                                                depth_variance=True)
        w = alpha[..., 0]
        spread[weight] = float((meta["depth_variance"] * w).sum() / w.sum())
    assert spread[200.0] < 0.5 * spread[0.0], spread


def test_float16_probabilities_fit_as_their_float32_values(scene):
    # the engine keeps initial/probs.npy as float16: a memory-mapped float16 array is read a few
    # views at a time and gives the same fit as its values in float32
    cap, _, probs = scene
    half = probs.astype(np.float16)
    a = rep(iterations=12).fit(cap, half)
    b = rep(iterations=12).fit(cap, half.astype(np.float32))
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


def test_grads_finite_sees_any_nan_or_inf():
    class Holder:
        def __init__(self, grads):
            self.tensors = []
            for g in grads:
                t = torch.zeros(2, requires_grad=True)
                t.grad = None if g is None else torch.tensor(g)
                self.tensors.append(t)

        def _all_params(self):
            return self.tensors

    check = fit_mod.Trainer._grads_finite
    assert check(Holder([[1.0, -2.0], None, [3e30, 3e30]]))
    assert not check(Holder([[1.0, 2.0], [0.0, float("nan")]]))
    assert not check(Holder([[float("inf"), 1.0], [0.0, 0.0]]))
    assert not check(Holder([[float("inf"), float("-inf")]]))
    assert check(Holder([None]))


def test_cached_ssim_targets_leave_the_fit_bit_identical(scene, monkeypatch):
    """D-SSIM's target moments, blurred once per view and level, give the fit of blurring them
    every step, bit for bit (coarse and full resolution both)."""
    cap, _, probs = scene
    from splatrefine.plugins.dual_gs import losses

    blurred = []
    real = losses.ssim_target_moments
    monkeypatch.setattr(losses, "ssim_target_moments", lambda y: blurred.append(1) or real(y))
    cfg = dict(iterations=30, ssim_lambda=0.2)
    cached = rep(**cfg).fit(cap, probs)
    assert len(blurred) == len(cap)  # once per view
    monkeypatch.setattr(fit_mod, "SSIM_TARGETS_BYTES", 0)
    direct = rep(**cfg).fit(cap, probs)
    assert len(blurred) == len(cap)
    for k in cached.params:
        assert torch.equal(cached.params[k], direct.params[k]), k


def test_class_loss_off_the_geometry_in_one_backward_is_the_two_pass_fit(scene, monkeypatch):
    """class_moves_geometry false on the CPU: the class channels rendered with color_only and one
    backward give the fit of a separate backward for the class loss, bit for bit (with densification
    and the depth-variance term of the real-scan defaults)."""
    cap, _, probs = scene
    calls = []
    real = fit_mod.Trainer._backward

    def counting(self, terms, meta=None):
        calls.append(self._one_pass_class_off_geometry())
        return real(self, terms, meta)

    monkeypatch.setattr(fit_mod.Trainer, "_backward", counting)
    cfg = dict(iterations=40, class_moves_geometry=False, depth_variance_weight=0.1)
    one = rep(**cfg).fit(cap, probs)
    assert calls and all(calls)
    monkeypatch.setattr(fit_mod.Trainer, "_one_pass_class_off_geometry", lambda self: False)
    two = rep(**cfg).fit(cap, probs)
    assert not calls[-1]
    for k in one.params:
        assert torch.equal(one.params[k], two.params[k]), k


def test_early_stop_once_the_labels_settle(scene, tmp_path):
    cap, labels, probs = scene
    # SMALL: densification stops at step 24, the coarse phase at 20, reliability updates at 13 and
    # 26: label checks at 26, 31, 36; any tolerance above the change seen stops at 31
    r = rep(iterations=40, early_stop=1.0, early_stop_every=5)
    model = r.fit(cap, probs, workdir=tmp_path)
    assert model.meta["stopped_at"] == 31
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["iteration"][-2:] == [30, 31]  # the rows since the last are written at the stop
    assert [s for s, _ in history["label_change"]] == [31]
    # its checkpoint is of a finished fit: fitting again resumes it and stops at once, same model
    again = r.fit(cap, probs, workdir=tmp_path)
    for k, v in model.params.items():
        assert torch.equal(again.params[k], v)
    # a tolerance below any change seen: every step runs, the checks are recorded
    full = rep(iterations=40, early_stop=1e-9, early_stop_every=5).fit(cap, probs, workdir=tmp_path / "full")
    assert "stopped_at" not in full.meta
    history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert history["iteration"][-1] == 40 and [s for s, _ in history["label_change"]] == [31, 36]
    assert all(0.0 <= c < 1.0 for _, c in history["label_change"])


def test_early_stop_needs_class_labels():
    from splatrefine.errors import ConfigError

    with pytest.raises(ConfigError, match="early_stop watches class labels"):
        rep(mode="palette", early_stop=0.01)


@pytest.mark.parametrize("mode", ["logits", "palette"])
def test_class_only_render_matches_the_class_channels_of_both_heads(scene, mode):
    from splatrefine.plugins.dual_gs.model import rasterize_classes, rasterize_heads

    cap, _, probs = scene
    r = rep(mode=mode)
    p = np.ascontiguousarray(np.moveaxis(probs, 1, -1))
    from splatrefine.plugins.dual_gs.losses import target_weights

    model = r.init_model(cap, p, target_weights(torch.from_numpy(p), True).numpy())
    data = r._fit_data(cap, p, target_weights(torch.from_numpy(p), True).numpy())
    raw, alpha, _ = rasterize_heads(model, data.viewmats[:3], data.Ks[:3], data.width, data.height)
    cls, alpha_cls = rasterize_classes(model, data.viewmats[:3], data.Ks[:3], data.width, data.height)
    F = model.class_channels
    assert cls.shape == raw.shape[:-1] + (F,)
    torch.testing.assert_close(cls, raw[..., 3:3 + F], atol=0, rtol=0)
    torch.testing.assert_close(alpha_cls, alpha, atol=0, rtol=0)
    assert float(alpha.max()) > 0.5  # the views see the model
