"""Interim dense torch compositor (all pixels x all visible Gaussians). Replaced by kernels."""

from __future__ import annotations

import torch

from .projection import ALPHA_THRESHOLD


def composite_dense(means2d, conics, opacities, colors, radii, depths, width, height, backgrounds):
    """means2d [C,N,2], conics [C,N,3], opacities [C,N], colors [C,N,D] -> ([C,H,W,D], [C,H,W,1])."""
    C = means2d.shape[0]
    D = colors.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype) + 0.5,
        torch.arange(width, dtype=means2d.dtype) + 0.5, indexing="ij")
    px = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # [P,2]
    outs, alphas = [], []
    for c in range(C):
        vis = (radii[c] > 0).all(-1)
        idx = torch.nonzero(vis).squeeze(1)
        order = torch.sort(depths[c, idx].detach(), stable=True).indices
        idx = idx[order]
        m, q, o, col = means2d[c, idx], conics[c, idx], opacities[c, idx], colors[c, idx]
        d = m[None] - px[:, None]  # [P,n,2]
        sigma = 0.5 * (q[:, 0] * d[..., 0] ** 2 + q[:, 2] * d[..., 1] ** 2) + q[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp(o * torch.exp(-sigma), max=0.999)
        ok = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        alpha = torch.where(ok, alpha, torch.zeros_like(alpha))
        one_m = 1 - alpha
        t_after = torch.cumprod(one_m, dim=1)
        t_before = torch.cat([torch.ones_like(t_after[:, :1]), t_after[:, :-1]], dim=1)
        inc = (t_after > 1e-4).to(alpha.dtype).detach()
        w = alpha * t_before * inc
        out = w @ col  # [P,D]
        a = w.sum(1, keepdim=True)
        if backgrounds is not None:
            out = out + (1 - a) * backgrounds[c][None]
        outs.append(out.reshape(height, width, D))
        alphas.append(a.reshape(height, width, 1))
    return torch.stack(outs), torch.stack(alphas)
