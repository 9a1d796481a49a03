"""gsplat backend: one gsplat.rasterization call (CUDA tensors) with all channels at once."""

from __future__ import annotations

from typing import Any

import torch


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                     near_plane=0.01, far_plane=1e10, eps2d=0.3, backgrounds=None,
                     render_mode="RGB") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """See `splatrefine.splat.rasterize`. Unpacked mode, classic rasterization, 16x16 tiles, and a
    channel chunk wide enough for every channel (plus the depth channel of the "+D" modes)."""
    import gsplat

    D = colors.shape[-1]
    render, alpha, gmeta = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds,
        render_mode=render_mode, packed=False, tile_size=16, rasterize_mode="classic",
        channel_chunk=max(32, D + 1), sh_degree=None)
    meta = {"means2d": gmeta["means2d"], "radii": gmeta["radii"], "depths": gmeta["depths"],
            "conics": gmeta["conics"], "width": width, "height": height, "tile_size": 16,
            "n_cameras": viewmats.shape[0], "backend": "gsplat"}
    return render, alpha, meta
