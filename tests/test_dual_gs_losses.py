"""dual-gs loss helpers: pixel weights, class balancing, SSIM, SH."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatrefine.plugins.dual_gs import losses
from splatrefine.plugins.dual_gs.model import eval_sh_rgb, rgb_to_sh0, sh_basis


def test_uniform_and_nonfinite_pixels_carry_no_weight():
    K = 4
    p = torch.full((1, 2, 2, K), 1.0 / K)
    p[0, 0, 0] = torch.tensor([1.0, 0, 0, 0])
    p[0, 0, 1] = torch.tensor([0.55, 0.15, 0.15, 0.15])
    p[0, 1, 0] = torch.tensor([float("nan"), 0.5, 0.5, 0])
    w = losses.target_weights(p, confidence_weighting=True)
    assert w[0, 0, 0] == pytest.approx(1.0)
    assert w[0, 0, 1] == pytest.approx((0.55 - 0.25) / 0.75)
    assert w[0, 1, 0] == 0 and w[0, 1, 1] == 0
    w2 = losses.target_weights(p, confidence_weighting=False)
    assert w2.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]
    # all finite (the fast path), and finite values whose sum overflows (the careful one)
    finite = p.clone()
    finite[0, 1, 0] = torch.tensor([3e38, 3e38, 0, 0])
    assert losses.target_weights(finite, True).tolist() == [[[1.0, w[0, 0, 1].item()], [1.0, 0.0]]]
    finite[0, 1, 0] = torch.tensor([0.1, 0.7, 0.1, 0.1])
    assert losses.target_weights(finite, True)[0, 1, 0].item() == pytest.approx(0.6, abs=1e-6)


def test_class_balance_lifts_rare_classes_within_limits():
    K = 3
    lab = torch.zeros(1, 10, 10, dtype=torch.long)
    lab[0, :2, :2] = 1  # 4 pixels
    lab[0, 9, 9] = 2  # 1 pixel (noise)
    p = torch.nn.functional.one_hot(lab, K).float()
    w = torch.ones(1, 10, 10)
    f = losses.class_balance_weights(p, w, 0.5)
    # frequencies 95, 4, 1 -> median 4: factors (4/95)^.5, 1, (4/1)^.5 = 2 (below the clip at 3)
    assert f[0, 5, 5].item() == pytest.approx((4 / 95) ** 0.5, rel=1e-5)
    assert f[0, 0, 0].item() == pytest.approx(1.0)
    assert f[0, 9, 9].item() == pytest.approx(2.0)
    assert torch.equal(losses.class_balance_weights(p, w, 0.0), torch.ones_like(w))


def test_class_losses_zero_at_target_and_respect_weights():
    t = torch.tensor([[[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]])
    w = torch.tensor([[[1.0, 0.0]]])
    assert losses.class_loss(t, t, w, "kl").item() == pytest.approx(0.0, abs=1e-6)
    wrong = torch.tensor([[[[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]]])
    assert losses.class_loss(wrong, t, w, "ce").item() == pytest.approx(-np.log(0.1), rel=1e-5)
    # the second pixel has weight 0: changing it changes nothing
    other = wrong.clone()
    other[0, 0, 1] = torch.tensor([0.98, 0.01, 0.01])
    assert losses.class_loss(other, t, w, "ce").item() == pytest.approx(-np.log(0.1), rel=1e-5)


def test_gce_gradient_is_cross_entropy_scaled_by_p_to_the_q():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    target = torch.softmax(torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64), -1)
    w = torch.rand(1, 3, 4, generator=g, dtype=torch.float64)
    q = 0.5
    grads = {}
    for kind in ("ce", "gce"):
        x = logits.clone().requires_grad_(True)
        losses.class_loss(torch.softmax(x, -1), target, w, kind, q).backward()
        grads[kind] = x.grad
    p_label = torch.gather(torch.softmax(logits, -1), -1, target.argmax(-1, keepdim=True))
    torch.testing.assert_close(grads["gce"], grads["ce"] * p_label ** q)
    # a label the prediction contradicts (p = 0.01) costs at most 1 / q, cross-entropy 4.6
    sure = torch.tensor([[[[0.98, 0.01, 0.01]]]])
    label = torch.tensor([[[[0.0, 1.0, 0.0]]]])
    one = torch.ones(1, 1, 1)
    assert losses.class_loss(sure, label, one, "gce", q).item() == pytest.approx((1 - 0.01 ** q) / q, rel=1e-5)
    assert losses.class_loss(sure, label, one, "ce").item() == pytest.approx(-np.log(0.01), rel=1e-5)
    assert losses.class_loss(label, label, one, "gce", q).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_identity_and_drop():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 24, 24, 3, generator=g)
    assert losses.ssim(a, a).item() == pytest.approx(1.0, abs=1e-5)
    assert losses.ssim(a, 1.0 - a).item() < 0.0
    assert 0.0 < losses.ssim(a, 0.5 * a + 0.25).item() < 0.95


def test_sh_degree0_is_view_independent_and_inverts_rgb_to_sh0():
    rgb = torch.tensor([[0.2, 0.5, 0.9]])
    sh = rgb_to_sh0(rgb)[:, None, :]
    centers = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    out = eval_sh_rgb(sh, torch.zeros(1, 3), centers, 0)
    torch.testing.assert_close(out, rgb.expand(2, 1, 3).reshape(2, 1, 3))
    # the basis is orthonormal on the sphere: mean of B_i B_j over many directions = delta_ij / 4pi
    d = torch.nn.functional.normalize(torch.randn(200000, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    b = sh_basis(d, 3)
    gram = (b.T @ b) / len(d) * 4 * np.pi
    torch.testing.assert_close(gram, torch.eye(16), atol=0.03, rtol=0)


def test_separable_ssim_equals_the_11x11_window():
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(1)
    a = torch.rand((2, 24, 20, 3), generator=gen)
    b = (a + 0.2 * torch.rand((2, 24, 20, 3), generator=gen)).clamp(0, 1)
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    s = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-(s * s) / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(z):
        return F.conv2d(z, w, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ref = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()
    assert losses.ssim(a, b).item() == pytest.approx(ref.item(), abs=1e-6)


def test_ssim_closed_form_gradient_equals_autograd():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand((2, 30, 26, 3), generator=gen, dtype=torch.float64, requires_grad=True)
    b = (a.detach() + 0.2 * torch.rand((2, 30, 26, 3), generator=gen, dtype=torch.float64)).clamp(0, 1)
    s = losses.ssim(a, b)  # closed form (b needs no gradient)
    (g,) = torch.autograd.grad(3.0 * s, a)
    bb = b.clone().requires_grad_(True)  # a target that needs a gradient goes through autograd
    s_ref = losses.ssim(a, bb)
    (g_ref,) = torch.autograd.grad(3.0 * s_ref, a)
    assert s.item() == pytest.approx(s_ref.item(), abs=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-15)
    small = b[:1, :14, :12]
    assert torch.autograd.gradcheck(lambda x: losses.ssim(x, small), (a[:1, :14, :12].detach().clone().requires_grad_(True),))


def test_class_loss_from_labels_equals_from_probabilities():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((1, 8, 9, 5), generator=gen, requires_grad=True)
    target = torch.softmax(3 * torch.randn((1, 8, 9, 5), generator=gen), -1)
    w = torch.rand((1, 8, 9), generator=gen)
    for kind in ("ce", "gce"):
        a = losses.class_loss(torch.softmax(x, -1), target, w, kind)
        (ga,) = torch.autograd.grad(a, x)
        b = losses.class_loss(torch.softmax(x, -1), target.argmax(-1).to(torch.uint8), w, kind)
        (gb,) = torch.autograd.grad(b, x)
        assert torch.equal(a, b) and torch.equal(ga, gb)
    with pytest.raises(ValueError):
        losses.class_loss(torch.softmax(x, -1), target.argmax(-1), w, "kl")


def test_pixel_weights_and_label_targets_read_views_in_chunks():
    from splatrefine.plugins.dual_gs.fit import _pool, label_targets

    gen = torch.Generator().manual_seed(4)
    vkhw = torch.softmax(2 * torch.randn((5, 6, 8, 10), generator=gen), 1).numpy()
    vkhw[1, :, 0, 0] = 1.0 / 6  # no opinion
    vhwk = np.moveaxis(vkhw, 1, -1)  # a view, as the fit passes it
    p = torch.from_numpy(np.ascontiguousarray(vhwk))
    w = losses.target_weights(p, True, 8.0)
    expected = (w * losses.class_balance_weights(p, w, 0.35)).numpy()
    np.testing.assert_array_equal(losses.pixel_weights(vhwk, True, 8.0, 0.35, chunk=2), expected)
    levels = label_targets(vhwk, chunk=2)
    for f in (1, 2):
        pooled = _pool(p, f)
        assert torch.equal(levels[f][0].long(), pooled.argmax(-1))
        assert torch.equal(levels[f][1], pooled.max(-1).values)


def test_label_agreement_equals_class_agreement():
    from splatrefine.agreement import class_agreement, label_agreement

    rng = np.random.default_rng(5)
    observed = rng.dirichlet(np.full(7, 0.3), size=500)
    observed[:20] = 1.0 / 7
    consensus = rng.dirichlet(np.ones(7), size=500)
    ref = class_agreement(consensus, observed, 50.0)
    lab = observed.argmax(-1)
    agree = np.take_along_axis(consensus, lab[:, None], -1)[:, 0]
    got = label_agreement(agree, lab, observed.max(-1), 50.0, 7)
    np.testing.assert_array_equal(got, ref)
    # float32 inputs: the numbers of their float64 copies, bit for bit (what the transfer aggregator relies on)
    o32, c32 = observed.astype(np.float32), consensus.astype(np.float32)
    np.testing.assert_array_equal(class_agreement(c32, o32, 50.0),
                                  class_agreement(c32.astype(np.float64), o32.astype(np.float64), 50.0))


def test_rgb_loss_ssim_schedule_scales_only_the_ssim_part():
    from splatrefine.plugins.dual_gs.losses import rgb_loss, ssim

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(1, 24, 24, 3, generator=g)
    target = torch.rand(1, 24, 24, 3, generator=g)
    l1 = (pred - target).abs().mean()
    d_ssim = 1.0 - ssim(pred, target)
    full, _ = rgb_loss(pred, target, 0.2)
    skipped, l1_out = rgb_loss(pred, target, 0.2, 0)
    doubled, _ = rgb_loss(pred, target, 0.2, 2)
    torch.testing.assert_close(full, 0.8 * l1 + 0.2 * d_ssim)
    torch.testing.assert_close(skipped, 0.8 * l1)
    torch.testing.assert_close(doubled, 0.8 * l1 + 0.4 * d_ssim)
    torch.testing.assert_close(l1_out, l1)
    # every other step at twice the weight: the same loss on average
    torch.testing.assert_close((skipped + doubled) / 2, full)


def test_float16_views_widen_as_numpy_does():
    rng = np.random.default_rng(3)
    vkhw = rng.dirichlet(np.ones(5), (4, 6, 7)).transpose(0, 3, 1, 2).astype(np.float16)  # [V,K,H,W], as stored
    vkhw[0, 0, 0, :3] = [np.nan, np.inf, 6e-8]
    vhwk = np.moveaxis(vkhw, 1, -1)
    got = losses.views_float32(vhwk, 1, 3)
    assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == (2, 6, 7, 5)
    np.testing.assert_array_equal(got.numpy(), vhwk[1:3].astype(np.float32))
    np.testing.assert_array_equal(losses.views_float32(vhwk, 0, 1).numpy(), vhwk[:1].astype(np.float32))
    f32 = vhwk.astype(np.float32)
    np.testing.assert_array_equal(losses.views_float32(f32, 0, 4).numpy(), f32)


@pytest.mark.parametrize("shape", [(3, 16, 18, 19), (2, 15, 17, 3), (4, 12, 10), (1, 9, 7, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pool_by_two_is_torch_mean_bit_for_bit(shape, dtype):
    from splatrefine.plugins.dual_gs.fit import _pool

    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=gen, dtype=dtype) * torch.randint(0, 3, shape, generator=gen).to(dtype)
    H, W = shape[1] // 2, shape[2] // 2
    crop = x[:, : 2 * H, : 2 * W]
    expected = crop.reshape(shape[0], H, 2, W, 2, *shape[3:]).mean(dim=(2, 4))
    assert torch.equal(_pool(x, 2), expected)
    if x.dim() == 4:  # a channel-last view of channel-first memory, as the fit reads probabilities
        strided = x.movedim(-1, 1).contiguous().movedim(1, -1)
        assert torch.equal(_pool(strided, 2), expected)
