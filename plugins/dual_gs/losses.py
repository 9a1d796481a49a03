"""Loss terms of the dual fit: RGB L1 + D-SSIM, class CE/KL against the initial probabilities,
palette L1, and the alpha-vs-mask loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

_WINDOW_CACHE: dict[tuple, torch.Tensor] = {}


def _gaussian_kernel(device: torch.device, size: int = 11, sigma: float = 1.5,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 1D Gaussian [size] of SSIM's window (the 2D window is its outer product)."""
    key = (str(device), size, sigma, dtype)
    if key not in _WINDOW_CACHE:
        x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
        g = torch.exp(-(x * x) / (2 * sigma * sigma))
        _WINDOW_CACHE[key] = g / g.sum()
    return _WINDOW_CACHE[key]


def _blur(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of every channel of z [N,C,H,W] with 'same' zero padding, as two 1D passes
    (the 2D window is separable: same result as one 11x11 convolution, about 5x fewer operations)."""
    ch, k = z.shape[1], g.shape[0]
    z = F.conv2d(z, g.view(1, 1, 1, k).expand(ch, 1, 1, k), padding=(0, k // 2), groups=ch)
    return F.conv2d(z, g.view(1, 1, k, 1).expand(ch, 1, k, 1), padding=(k // 2, 0), groups=ch)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor):
    """Per-pixel SSIM pieces of x, y [N,C,H,W]: (mu_x, mu_y, A1, A2, B1, B2) with
    SSIM = A1 A2 / (B1 B2), A1 = 2 mu_x mu_y + c1, A2 = 2 s_xy + c2, B1 = mu_x^2 + mu_y^2 + c1,
    B2 = s_xx + s_yy + c2 (local moments under the 11x11 Gaussian window)."""
    ch = x.shape[1]
    # the five local moments in one blur call
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), _gaussian_kernel(x.device, dtype=x.dtype))
    mu_x, mu_y, exx, eyy, exy = moments.split(ch, 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_xy = mu_x * mu_y
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    a1 = 2 * mu_xy + c1
    a2 = (exy - mu_xy).mul_(2).add_(c2)
    b1 = (mu_xx + mu_yy).add_(c1)
    b2 = (exx - mu_xx).add_(eyy - mu_yy).add_(c2)
    return mu_x, mu_y, a1, a2, b1, b2


class _SSIM(torch.autograd.Function):
    """Mean SSIM of x against a constant y, both [N,C,H,W], with the gradient in closed form:
    d mean / d x = (blur(dm/dmu_x) + 2 x blur(dm/dE[xx]) + y blur(dm/dE[xy])) / n (the window is
    symmetric with zero padding, so the blur is its own adjoint). One blur of 3 maps per channel
    instead of autograd's 5, and a handful of element-wise passes instead of ~40."""

    @staticmethod
    def forward(ctx, x, y):
        mu_x, mu_y, a1, a2, b1, b2 = _ssim_terms(x, y)
        inv = (b1 * b2).reciprocal_()
        m = a1 * a2 * inv
        ctx.save_for_backward(x, y, mu_x, mu_y, a1, a2, b1, b2, inv, m)
        return m.mean()

    @staticmethod
    def backward(ctx, grad):
        x, y, mu_x, mu_y, a1, a2, b1, b2, inv, m = ctx.saved_tensors
        # dm/dmu_x = 2 mu_y (A2 - A1) / (B1 B2) - 2 mu_x m (1/B1 - 1/B2)
        d_mu = (a2 - a1).mul_(mu_y).mul_(inv).sub_(m * mu_x * (b1.reciprocal() - b2.reciprocal())).mul_(2)
        d_xx = -m / b2  # dm/dE[xx]
        d_xy = (2 * a1).mul_(inv)  # dm/dE[xy]
        ch = x.shape[1]
        blurred = _blur(torch.cat([d_mu, d_xx, d_xy], dim=1), _gaussian_kernel(x.device, dtype=x.dtype))
        b_mu, b_xx, b_xy = blurred.split(ch, 1)
        gx = (2 * x).mul_(b_xx).add_(y * b_xy).add_(b_mu)
        return gx.mul_(grad / x.numel()), None


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images [C,H,W,3] in 0..1 (11x11 Gaussian window, sigma 1.5, 'same' padding).
    Differentiable in `a` (closed-form gradient); `b` is the target (autograd when it needs a gradient)."""
    x = a.permute(0, 3, 1, 2)
    y = b.permute(0, 3, 1, 2)
    if b.requires_grad:
        mu_x, mu_y, a1, a2, b1, b2 = _ssim_terms(x, y)
        return (a1 * a2 / (b1 * b2)).mean()
    return ssim_planes(x, y)


def ssim_planes(x: torch.Tensor, y: torch.Tensor, y_moments: np.ndarray | None = None) -> torch.Tensor:
    """`ssim` of images as planes [C,3,H,W], `y` constant; on the CPU, `y_moments` may carry y's
    `ssim_kernel.target_moments` [2,C*3,H,W] (computed once per view instead of every step)."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
        from .ssim_kernel import SSIMKernel  # numba, fused passes (tests/test_ssim_kernel.py)

        return SSIMKernel.apply(x.contiguous(), y.contiguous(), _gaussian_kernel(x.device), y_moments)
    return _SSIM.apply(x, y)


def ssim_target_moments(y: torch.Tensor) -> np.ndarray:
    """`ssim_kernel.target_moments` of constant CPU target planes y [C,3,H,W]: [2,C*3,H,W]."""
    from .ssim_kernel import target_moments

    C, K, H, W = y.shape
    return target_moments(np.ascontiguousarray(y.numpy().reshape(C * K, H, W)), _gaussian_kernel(y.device))


def mix_rgb(l1: torch.Tensor, ssim_of: Callable[[], torch.Tensor], ssim_lambda: float,
            ssim_scale: float = 1.0) -> torch.Tensor:
    """(1 - lambda) L1 + scale lambda (1 - SSIM); `ssim_of()` is called only when it counts (scale 0:
    no SSIM this step)."""
    if ssim_lambda <= 0:
        return l1
    if ssim_scale == 0:
        return (1.0 - ssim_lambda) * l1
    return (1.0 - ssim_lambda) * l1 + ssim_scale * ssim_lambda * (1.0 - ssim_of())


def rgb_loss(pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float,
             ssim_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`mix_rgb` of images [C,H,W,3]; returns (loss, l1)."""
    l1 = (pred - target).abs().mean()
    return mix_rgb(l1, lambda: ssim(pred, target), ssim_lambda, ssim_scale), l1


def class_loss(pred_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str,
               gce_q: float = 0.5) -> torch.Tensor:
    """Class loss, weighted mean over pixels.

    pred_probs [C,H,W,K] rendered probabilities (sum to 1); target [C,H,W,K] initial probabilities,
    or (for "ce"/"gce") their argmax labels, integer [C,H,W]; weight [C,H,W] per-pixel weight
    (0 = ignored pixel). kind "ce": cross-entropy with the argmax label; "gce": generalized
    cross-entropy (1 - p ** q) / q with the argmax label, whose gradient is the cross-entropy's
    times p ** q, so a label the other views already contradict (small rendered p) pulls less;
    "kl": KL(target || pred) (soft labels).
    """
    if kind in ("ce", "gce"):
        lab = target if not target.is_floating_point() else target.argmax(dim=-1)
        # the label's probability first, then the log: one channel instead of K
        p = torch.gather(pred_probs, -1, lab.long()[..., None])[..., 0]
        lp = torch.log(p.clamp_min(1e-6))
        per_pixel = -lp if kind == "ce" else (1.0 - torch.exp(gce_q * lp)) / gce_q
    else:
        if not target.is_floating_point():
            raise ValueError("class_loss 'kl' needs the initial probabilities, not labels")
        logp = torch.log(pred_probs.clamp_min(1e-6))
        t = target.clamp_min(1e-8)
        per_pixel = (target * (torch.log(t) - logp)).sum(-1)
    denom = weight.sum().clamp_min(1.0)
    return (per_pixel * weight).sum() / denom


def palette_loss(pred_rgb: torch.Tensor, target_rgb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between rendered colour-coded segmentation [C,H,W,3] and palette images, weighted [C,H,W]."""
    per_pixel = (pred_rgb - target_rgb).abs().mean(-1)
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def mask_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between rendered alpha [C,H,W] and a 0/1 foreground mask [C,H,W]."""
    a = alpha.clamp(1e-4, 1 - 1e-4)
    return -(mask * torch.log(a) + (1 - mask) * torch.log(1 - a)).mean()


def target_weights(probs: torch.Tensor, confidence_weighting: bool, power: float = 1.0) -> torch.Tensor:
    """Per-pixel class-loss weights [V,H,W] from initial probabilities [V,H,W,K].

    A pixel whose probabilities are (near) uniform, non-finite or all zero carries no opinion:
    weight 0. Otherwise 1, or the max probability rescaled so a uniform pixel gets 0 and a one-hot
    pixel 1 when `confidence_weighting`, raised to `power` (> 1 trusts confident views more).
    """
    K = probs.shape[-1]
    total = probs.sum(-1)
    if bool(torch.isfinite(total).all()):  # no NaN or inf anywhere: skip two passes over [V,H,W,K]
        finite, p = torch.ones_like(total, dtype=torch.bool), probs
    else:
        finite = torch.isfinite(probs).all(-1)
        p = torch.nan_to_num(probs, nan=0.0, posinf=0.0, neginf=0.0)
        total = p.sum(-1)
    mx = p.max(-1).values
    mn = p.min(-1).values
    valid = finite & (total > 0.5) & ((mx - mn) > 1e-4)
    if confidence_weighting:
        w = ((mx - 1.0 / K) / (1.0 - 1.0 / K)).clamp(0.0, 1.0) ** power
    else:
        w = torch.ones_like(mx)
    return torch.where(valid, w, torch.zeros_like(w))


def class_balance_weights(probs: torch.Tensor, weights: torch.Tensor, power: float) -> torch.Tensor:
    """Per-pixel factors [V,H,W] that lift rare classes: (median class frequency / frequency of the
    pixel's argmax class) ** power, clipped to 0.1..3 (so a class that is only parser noise, a few
    pixels in a few views, is not blown up). Frequencies count weighted pixels of the
    classes present; power 0 gives ones. `probs` [V,H,W,K], or their argmax labels (integer [V,H,W])."""
    if power <= 0:
        return torch.ones_like(weights)
    if probs.is_floating_point():
        lab, K = probs.argmax(-1), probs.shape[-1]
    else:
        lab, K = probs.long(), int(probs.max()) + 1 if probs.numel() else 1
    freq = torch.bincount(lab.reshape(-1), weights=weights.reshape(-1).double(), minlength=K)
    present = freq > 0
    if not present.any():
        return torch.ones_like(weights)
    med = freq[present].median()
    factor = torch.where(present, (med / freq.clamp_min(1e-12)) ** power, torch.ones_like(freq))
    return factor.clamp(0.1, 3.0).to(weights.dtype)[lab]


def views_float32(probs_vhwk: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Views start:stop of [V,H,W,K] probabilities (float16 or float32, any strides) as a contiguous
    float32 tensor; float16 is widened by torch (exact, like numpy's cast, and 2-4x faster)."""
    x = probs_vhwk[start:stop]
    if x.dtype == np.float16:
        return torch.from_numpy(np.array(x, order="C")).float()
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def pixel_weights(probs_vhwk: np.ndarray, confidence_weighting: bool, confidence_power: float,
                  class_balance: float, chunk: int = 8) -> np.ndarray:
    """The class loss's pixel weights float32 [V,H,W]: `target_weights` times
    `class_balance_weights`, from probabilities [V,H,W,K] of any strides (read `chunk` views at a
    time: no full copy of them)."""
    ws, labs = [], []
    for s in range(0, probs_vhwk.shape[0], chunk):
        p = views_float32(probs_vhwk, s, s + chunk)
        ws.append(target_weights(p, confidence_weighting, confidence_power))
        labs.append(p.argmax(-1))
    w = torch.cat(ws)
    return (w * class_balance_weights(torch.cat(labs), w, class_balance)).numpy()
