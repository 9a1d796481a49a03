"""The fused per-pixel losses of the CPU fit against the torch formulas they replace."""

import numpy as np
import pytest
import torch

from splatrefine.plugins.dual_gs import losses
from splatrefine.plugins.dual_gs.pixel_loss_kernel import PixelLosses


def _inputs(seed, C=2, H=9, W=11, K=5, masks=True):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(C, H, W, 1, generator=g)
    alpha[0, 0, :3, 0] = torch.tensor([0.0, 1.0, 5e-5])  # outside the mask loss's clamp
    probs = torch.softmax(3 * torch.randn(C, H, W, K, generator=g), -1) * alpha
    probs[0, 1, :2] = 0.0  # the labelled probability under the class loss's clamp
    rgb = torch.rand(C, H, W, 3, generator=g) * alpha
    raw = torch.cat([rgb, probs], -1)
    bg = torch.rand(C, H, W, 3, generator=g)
    img = torch.rand(C, H, W, 3, generator=g)
    img[1, 2, 3] = (rgb + (1 - alpha) * bg)[1, 2, 3]  # L1's kink: gradient 0 there
    labels = torch.randint(0, K, (C, H, W), generator=g).to(torch.uint8)
    weights = torch.rand(C, H, W, generator=g) * (torch.rand(C, H, W, generator=g) > 0.2)
    mask = (torch.rand(C, H, W, generator=g) > 0.5).float() if masks else None
    if masks:
        mask[0, 0, 5:7] = torch.tensor([0.3, 0.8])  # soft mask values (box-filtered masks)
    return raw, alpha, bg, img, labels, weights, mask


def _reference(raw, alpha, bg, img, labels, weights, mask, kind, q):
    x = raw[..., :3] + (1 - alpha) * bg
    l1 = (x - img).abs().mean()
    cls = losses.class_loss(raw[..., 3:], labels, weights, kind, q)
    m = losses.mask_loss(alpha[..., 0], mask) if mask is not None else torch.zeros(())
    return x, l1, cls, m


@pytest.mark.parametrize("kind,q,masks", [("gce", 0.5, True), ("ce", 0.0, True), ("gce", 0.7, False)])
def test_values_and_gradients_match_torch(kind, q, masks):
    raw, alpha, bg, img, labels, weights, mask = _inputs(1, masks=masks)
    g = torch.Generator().manual_seed(7)
    gx = torch.randn(raw.shape[0], 3, raw.shape[1], raw.shape[2], generator=g)  # what D-SSIM sends back
    coef = torch.tensor([0.8, 0.5, 0.3])

    def run(fn):
        r, a, b = (t.clone().requires_grad_(True) for t in (raw, alpha, bg))
        x, l1, cls, m = fn(r, a, b)
        loss = (x * gx).sum() + coef[0] * l1 + coef[1] * cls + coef[2] * m
        loss.backward()
        return [t.detach() for t in (x, l1, cls, m)], [r.grad, a.grad, b.grad]

    def fused(r, a, b):
        x, y, l1, cls, m = PixelLosses.apply(r, a, b, img, labels, weights, mask, q)
        assert torch.equal(y, img.permute(0, 3, 1, 2))
        return x, l1, cls, m

    def ref(r, a, b):
        x, l1, cls, m = _reference(r, a, b, img, labels, weights, mask, kind, q)
        return x.permute(0, 3, 1, 2), l1, cls, m

    (vf, gf), (vr, gr) = run(fused), run(ref)
    for a, b in zip(vf, vr):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert float(vf[2]) > 0 and (float(vf[3]) > 0) == masks


def test_one_output_at_a_time_and_a_constant_background():
    """The fit differentiates the class loss alone (class kept off the geometry), then the rest;
    the two passes add up to one pass over the sum. A constant background gets no gradient."""
    raw, alpha, bg, img, labels, weights, mask = _inputs(2)
    bg_const = torch.tensor([0.2, 0.3, 0.4]).expand_as(bg)
    r = raw.clone().requires_grad_(True)
    x, _, l1, cls, m = PixelLosses.apply(r, alpha, bg_const, img, labels, weights, mask, 0.5)
    (g_cls,) = torch.autograd.grad(cls, [r], retain_graph=True)
    assert torch.count_nonzero(g_cls[..., :3]) == 0
    (g_rest,) = torch.autograd.grad(x.sum() + l1 + m, [r])
    assert torch.count_nonzero(g_rest[..., 3:]) == 0
    r2 = raw.clone().requires_grad_(True)
    x, _, l1, cls, m = PixelLosses.apply(r2, alpha, bg_const, img, labels, weights, mask, 0.5)
    (x.sum() + l1 + m + cls).backward()
    torch.testing.assert_close(g_cls + g_rest, r2.grad)
    ref = _reference(raw, alpha, bg_const, img, labels, weights, mask, "gce", 0.5)
    torch.testing.assert_close(l1, ref[1])
    np.testing.assert_allclose(float(cls.detach()), float(ref[2]), rtol=1e-5)
