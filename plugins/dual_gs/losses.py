"""Loss terms of the dual fit: RGB L1 + D-SSIM, class CE/KL against the initial probabilities,
palette L1, and the alpha-vs-mask loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_WINDOW_CACHE: dict[tuple, torch.Tensor] = {}


def _gaussian_kernel(device: torch.device, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1D Gaussian [size] of SSIM's window (the 2D window is its outer product)."""
    key = (str(device), size, sigma)
    if key not in _WINDOW_CACHE:
        x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
        g = torch.exp(-(x * x) / (2 * sigma * sigma))
        _WINDOW_CACHE[key] = g / g.sum()
    return _WINDOW_CACHE[key]


def _blur(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of every channel of z [N,C,H,W] with 'same' zero padding, as two 1D passes
    (the 2D window is separable: same result as one 11x11 convolution, about 5x fewer operations)."""
    ch, k = z.shape[1], g.shape[0]
    z = F.conv2d(z, g.view(1, 1, 1, k).expand(ch, 1, 1, k), padding=(0, k // 2), groups=ch)
    return F.conv2d(z, g.view(1, 1, k, 1).expand(ch, 1, k, 1), padding=(k // 2, 0), groups=ch)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images [C,H,W,3] in 0..1 (11x11 Gaussian window, sigma 1.5, 'same' padding)."""
    x = a.permute(0, 3, 1, 2)
    y = b.permute(0, 3, 1, 2)
    ch = x.shape[1]
    # the five local moments in one blur call
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), _gaussian_kernel(x.device))
    mu_x, mu_y, exx, eyy, exy = moments.split(ch, 1)
    sxx = exx - mu_x * mu_x
    syy = eyy - mu_y * mu_y
    sxy = exy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2))
    return m.mean()


def rgb_loss(pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - lambda) L1 + lambda (1 - SSIM); returns (loss, l1)."""
    l1 = (pred - target).abs().mean()
    if ssim_lambda <= 0:
        return l1, l1
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim(pred, target)), l1


def class_loss(pred_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str,
               gce_q: float = 0.5) -> torch.Tensor:
    """Class loss, weighted mean over pixels.

    pred_probs [C,H,W,K] rendered probabilities (sum to 1); target [C,H,W,K] initial probabilities;
    weight [C,H,W] per-pixel weight (0 = ignored pixel). kind "ce": cross-entropy with the argmax
    label; "gce": generalized cross-entropy (1 - p ** q) / q with the argmax label, whose gradient is
    the cross-entropy's times p ** q, so a label the other views already contradict (small rendered
    p) pulls less; "kl": KL(target || pred) (soft labels).
    """
    logp = torch.log(pred_probs.clamp_min(1e-6))
    if kind in ("ce", "gce"):
        lab = target.argmax(dim=-1, keepdim=True)
        lp = torch.gather(logp, -1, lab)[..., 0]
        per_pixel = -lp if kind == "ce" else (1.0 - torch.exp(gce_q * lp)) / gce_q
    else:
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
    finite = torch.isfinite(probs).all(-1)
    p = torch.nan_to_num(probs, nan=0.0, posinf=0.0, neginf=0.0)
    mx = p.max(-1).values
    mn = p.min(-1).values
    valid = finite & (p.sum(-1) > 0.5) & ((mx - mn) > 1e-4)
    if confidence_weighting:
        w = ((mx - 1.0 / K) / (1.0 - 1.0 / K)).clamp(0.0, 1.0) ** power
    else:
        w = torch.ones_like(mx)
    return torch.where(valid, w, torch.zeros_like(w))


def class_balance_weights(probs: torch.Tensor, weights: torch.Tensor, power: float) -> torch.Tensor:
    """Per-pixel factors [V,H,W] that lift rare classes: (median class frequency / frequency of the
    pixel's argmax class) ** power, clipped to 0.1..3 (so a class that is only parser noise, a few
    pixels in a few views, is not blown up). Frequencies count weighted pixels of the
    classes present; power 0 gives ones."""
    lab = probs.argmax(-1)
    if power <= 0:
        return torch.ones_like(weights)
    K = probs.shape[-1]
    freq = torch.bincount(lab.reshape(-1), weights=weights.reshape(-1).double(), minlength=K)
    present = freq > 0
    if not present.any():
        return torch.ones_like(weights)
    med = freq[present].median()
    factor = torch.where(present, (med / freq.clamp_min(1e-12)) ** power, torch.ones_like(freq))
    return factor.clamp(0.1, 3.0).to(weights.dtype)[lab]
