"""CPU backend: torch projection + composite, same meaning as gsplat.rasterization."""

from __future__ import annotations

from typing import Any

import torch

from .projection import project

TILE_SIZE = 16


def rasterize_cpu(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                  near_plane=0.01, far_plane=1e10, eps2d=0.3, backgrounds=None,
                  render_mode="RGB", color_only=None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """See `splatrefine.splat.rasterize` (CPU tensors)."""
    C, N = viewmats.shape[0], means.shape[0]
    from . import _projection_native as fast

    proj = fast.project_native if fast.usable(viewmats, Ks) else project
    radii, means2d, depths, conics = proj(
        means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, opacities=opacities)
    feats, bgs = _features(colors, depths, backgrounds, render_mode, C, N)
    opac = opacities[None].expand(C, N)
    from ._composite import composite

    render, alpha = composite(means2d, conics, opac, feats, bgs, radii, depths, width, height, color_only)
    render = _finish(render, alpha, render_mode)
    meta = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics,
            "width": width, "height": height, "tile_size": TILE_SIZE, "n_cameras": C,
            "backend": "cpu"}
    return render, alpha, meta


def _features(colors, depths, backgrounds, render_mode, C, N):
    """Per-camera features [C,N,D'] and backgrounds [C,D'] | None for a render mode (gsplat rules)."""
    if render_mode in ("D", "ED"):
        feats = depths[..., None]
        bgs = None
    else:
        feats = colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])
        bgs = backgrounds
        if render_mode in ("RGB+D", "RGB+ED"):
            feats = torch.cat([feats, depths[..., None]], dim=-1)
            if bgs is not None:
                bgs = torch.cat([bgs, torch.zeros_like(bgs[:, :1])], dim=-1)
    return feats, bgs


def _finish(render, alpha, render_mode):
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
    return render
