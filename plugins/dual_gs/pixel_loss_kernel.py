"""The per-pixel losses of a fit step on the CPU, in one numba pass each way.

Forward, from the rasterizer's raw output [C,H,W,D] (RGB premultiplied by alpha, then the class
probabilities), alpha [C,H,W,1] and the background [C,H,W,3]: the composited RGB
`raw + (1 - alpha) bg`, its L1 against the image, the hard-label class loss (`losses.class_loss`
"ce" / "gce") and the alpha-vs-mask cross-entropy (`losses.mask_loss`); it also writes the RGB and
the image as planes [C,3,H,W], the layout D-SSIM reads. Backward writes one gradient per input
(raw output, alpha, background) from the four outputs' gradients.

In torch the same work is ~60 whole-image operations (slices, compositing, gathers, logs, clamps
and their backwards; the slices of the raw output alone cost two zero-filled [C,H,W,D] buffers
per step). Same quantities and gradients as the torch code (tests/test_pixel_loss_kernel.py);
sums run in float64, so rounding differs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

P_MIN = 1e-6  # losses.class_loss: the labelled probability is clamped here before the log
A_MIN, A_MAX = 1e-4, 1.0 - 1e-4  # losses.mask_loss: alpha is clamped here


@njit(cache=True, inline="always")
def _pow(p, q):  # pragma: no cover - compiled
    """p ** q, with the GCE default q = 0.5 as a square root (a log and an exp cost 3x more)."""
    return math.sqrt(p) if q == 0.5 else math.exp(q * math.log(p))


@njit(cache=True, inline="always")
def _bce(a, m):  # pragma: no cover - compiled
    """-(m log a + (1 - m) log(1 - a)), one log for a 0/1 mask."""
    if m == 1.0:
        return -math.log(a)
    if m == 0.0:
        return -math.log(1.0 - a)
    return -(m * math.log(a) + (1.0 - m) * math.log(1.0 - a))


@njit(cache=True, parallel=True)
def _forward(raw, alpha, bg, img, labels, weights, masks, gce_q, x, y):  # pragma: no cover - compiled
    """x, y [C,3,H,W] = composited RGB, image; returns per-row sums [C*H, 4] of
    (|x - y|, weight * class loss, weight, mask loss)."""
    C, H, W, _ = raw.shape
    has_mask = masks.shape[0] > 0
    rows = np.zeros((C * H, 4))
    for cr in prange(C * H):
        c, r = cr // H, cr % H
        l1 = 0.0
        cls = 0.0
        wsum = 0.0
        msk = 0.0
        for col in range(W):
            a = alpha[c, r, col, 0]
            for k in range(3):
                v = raw[c, r, col, k] + (1.0 - a) * bg[c, r, col, k]
                t = img[c, r, col, k]
                x[c, k, r, col] = v
                y[c, k, r, col] = t
                l1 += abs(v - t)
            w = weights[c, r, col]
            if w != 0.0:
                p = max(raw[c, r, col, 3 + labels[c, r, col]], P_MIN)
                cls += w * (-math.log(p) if gce_q <= 0.0 else (1.0 - _pow(p, gce_q)) / gce_q)
                wsum += w
            if has_mask:
                msk += _bce(min(max(a, A_MIN), A_MAX), masks[c, r, col])
        rows[cr, 0] = l1
        rows[cr, 1] = cls
        rows[cr, 2] = wsum
        rows[cr, 3] = msk
    return rows


@njit(cache=True, parallel=True)
def _backward(raw, alpha, bg, labels, weights, masks, gce_q, x, y, g_x, has_gx, s_l1, s_cls, s_mask,
              g_raw, g_alpha, g_bg):  # pragma: no cover - compiled
    """Fill g_raw [C,H,W,D], g_alpha [C,H,W,1], g_bg [C,H,W,3]. s_l1 / s_cls / s_mask are the
    outputs' gradients divided by their normalisers (3 C H W, the weight sum, C H W)."""
    C, H, W, D = raw.shape
    has_mask = masks.shape[0] > 0
    for cr in prange(C * H):
        c, r = cr // H, cr % H
        for col in range(W):
            a = alpha[c, r, col, 0]
            ga = 0.0
            for k in range(3):
                d = x[c, k, r, col] - y[c, k, r, col]
                g = s_l1 * (1.0 if d > 0.0 else (-1.0 if d < 0.0 else 0.0))
                if has_gx:
                    g += g_x[c, k, r, col]
                g_raw[c, r, col, k] = g
                g_bg[c, r, col, k] = (1.0 - a) * g
                ga -= g * bg[c, r, col, k]
            for j in range(3, D):
                g_raw[c, r, col, j] = 0.0
            w = weights[c, r, col]
            if w != 0.0 and s_cls != 0.0:
                j = 3 + labels[c, r, col]
                p = raw[c, r, col, j]
                if p >= P_MIN:  # below the clamp the loss is flat
                    d_lp = -1.0 if gce_q <= 0.0 else -_pow(p, gce_q)
                    g_raw[c, r, col, j] = s_cls * w * d_lp / p
            if has_mask and s_mask != 0.0 and A_MIN <= a <= A_MAX:
                m = masks[c, r, col]
                ga -= s_mask * (m / a - (1.0 - m) / (1.0 - a))
            g_alpha[c, r, col, 0] = ga


class PixelLosses(torch.autograd.Function):
    """(x [C,3,H,W] composited RGB, y [C,3,H,W] image (no gradient), l1, class, mask) from
    raw [C,H,W,D], alpha [C,H,W,1], bg [C,H,W,3] (float32 CPU tensors) and the constant targets
    img [C,H,W,3], labels uint8 [C,H,W], weights [C,H,W], masks [C,H,W] or None. The class
    loss is "ce" (gce_q 0) or "gce" (gce_q > 0); mask is 0 without masks."""

    @staticmethod
    def forward(ctx, raw, alpha, bg, img, labels, weights, masks, gce_q: float):
        ctx.set_materialize_grads(False)
        C, H, W, _ = raw.shape
        r, a, b = raw.detach().numpy(), alpha.detach().numpy(), bg.detach().numpy()
        lab = labels.numpy()
        wt = weights.numpy()
        mk = masks.numpy() if masks is not None else np.zeros((0, 1, 1), np.float32)
        x = np.empty((C, 3, H, W), np.float32)
        y = np.empty((C, 3, H, W), np.float32)
        sums = _forward(r, a, b, img.numpy(), lab, wt, mk, float(gce_q), x, y).sum(0)
        n = C * H * W
        wsum = max(sums[2], 1.0)
        ctx.state = (r, a, b, lab, wt, mk, float(gce_q), x, y, n, wsum)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ctx.mark_non_differentiable(yt)
        l1, cls, mask = (torch.tensor(v, dtype=torch.float32)
                         for v in (sums[0] / (3 * n), sums[1] / wsum, sums[3] / n if mk.shape[0] else 0.0))
        return xt, yt, l1, cls, mask

    @staticmethod
    def backward(ctx, g_x, _g_y, g_l1, g_cls, g_mask):
        r, a, b, lab, wt, mk, q, x, y, n, wsum = ctx.state
        g_raw = np.empty_like(r)
        g_alpha = np.empty_like(a)
        g_bg = np.empty(b.shape, np.float32)  # b may be an expanded constant
        gx = g_x.contiguous().numpy() if g_x is not None else np.zeros((1, 1, 1, 1), np.float32)
        _backward(r, a, b, lab, wt, mk, q, x, y, gx, g_x is not None,
                  0.0 if g_l1 is None else float(g_l1) / (3 * n),
                  0.0 if g_cls is None else float(g_cls) / wsum,
                  0.0 if g_mask is None else float(g_mask) / n,
                  g_raw, g_alpha, g_bg)
        return (torch.from_numpy(g_raw), torch.from_numpy(g_alpha),
                torch.from_numpy(g_bg) if ctx.needs_input_grad[2] else None, None, None, None, None, None)
