"""Slow, obviously correct pure-torch Gaussian rasterizer (the oracle for splatrefine.splat).

Written independently of the fast path: every step is a plain torch expression and autograd
provides the gradients. Semantics are gsplat's (pinhole EWA projection, eps2d blur, near/far
culling, 3.33-sigma radii, 16x16 tiles, front-to-back compositing with
alpha = min(0.999, opacity * exp(-sigma)), alpha < 1/255 or sigma < 0 skipped, a pixel stops
before the Gaussian that would take its transmittance to <= 1e-4, pixel centres at +0.5).

Compositing is dense per 16x16 tile, literally as gsplat defines it: every Gaussian whose tile
range covers the tile is evaluated at every pixel of the tile, in depth order, and composited with
a cumulative product. Tiles are checkpointed so memory stays bounded; time is O(tile pixels x
Gaussians per tile), with a Python loop over tiles.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

TILE = 16


def ref_project(means, quats, scales, viewmats, Ks, width, height, eps2d=0.3, near_plane=0.01,
                far_plane=1e10):
    """-> radii int32 [C,N,2], means2d [C,N,2], depths [C,N], conics [C,N,3] (a, b, c)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    R = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # [N,3,3]
    S = torch.diag_embed(scales)
    cov = R @ S @ S @ R.transpose(1, 2)  # [N,3,3]
    radii_l, m2_l, d_l, con_l = [], [], [], []
    for c in range(viewmats.shape[0]):
        Rc, tc = viewmats[c, :3, :3], viewmats[c, :3, 3]
        pc = means @ Rc.T + tc  # [N,3]
        covc = Rc @ cov @ Rc.T  # [N,3,3]
        depth = pc[:, 2]
        ok_depth = (depth > near_plane) & (depth < far_plane)
        z = torch.where(ok_depth, depth, torch.ones_like(depth))
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        # EWA Jacobian, evaluated at a point clamped to 1.3x the field of view (as gsplat)
        lim_xp = (width - cx) / fx + 0.3 * (0.5 * width / fx)
        lim_xn = cx / fx + 0.3 * (0.5 * width / fx)
        lim_yp = (height - cy) / fy + 0.3 * (0.5 * height / fy)
        lim_yn = cy / fy + 0.3 * (0.5 * height / fy)
        xc = z * torch.clamp(pc[:, 0] / z, -lim_xn, lim_xp)
        yc = z * torch.clamp(pc[:, 1] / z, -lim_yn, lim_yp)
        J = torch.stack([
            torch.stack([fx / z, torch.zeros_like(z), -fx * xc / z ** 2], -1),
            torch.stack([torch.zeros_like(z), fy / z, -fy * yc / z ** 2], -1),
        ], -2)
        cov2 = J @ covc @ J.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype)
        p_img = torch.stack([pc[:, 0], pc[:, 1], z], -1) @ Ks[c].T
        mean2 = p_img[:, :2] / z[:, None]
        det = (cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] * cov2[:, 1, 0]).clamp(min=1e-10)
        conic = torch.stack([cov2[:, 1, 1] / det, -0.5 * (cov2[:, 0, 1] + cov2[:, 1, 0]) / det,
                             cov2[:, 0, 0] / det], -1)
        with torch.no_grad():
            r = torch.ceil(3.33 * torch.sqrt(torch.stack([cov2[:, 0, 0], cov2[:, 1, 1]], -1)))
            inside = ((mean2 + r > 0) & (mean2 - r < torch.tensor([width, height], dtype=means.dtype))).all(-1)
            keep = ok_depth & inside
            r = torch.where(keep[:, None], r, torch.zeros_like(r)).to(torch.int32)
        radii_l.append(r)
        m2_l.append(mean2)
        d_l.append(depth)
        con_l.append(conic)
    return torch.stack(radii_l), torch.stack(m2_l), torch.stack(d_l), torch.stack(con_l)


def _tile(m2, con, op, feats, x0, x1, y0, y1):
    """Composite depth-sorted Gaussians over the pixels [x0, x1) x [y0, y1).

    m2 [n,2], con [n,3], op [n], feats [n,D] -> (colour [P,D], alpha [P])."""
    ys = torch.arange(y0, y1, dtype=m2.dtype) + 0.5
    xs = torch.arange(x0, x1, dtype=m2.dtype) + 0.5
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)
    dx = m2[None, :, 0] - px[:, None]  # [P,n]
    dy = m2[None, :, 1] - py[:, None]
    sigma = 0.5 * (con[None, :, 0] * dx * dx + con[None, :, 2] * dy * dy) + con[None, :, 1] * dx * dy
    alpha = torch.clamp(op[None] * torch.exp(-sigma), max=0.999)
    used = (sigma >= 0) & (alpha >= 1.0 / 255.0)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    trans_after = torch.cumprod(1.0 - alpha, dim=1)
    trans_before = torch.cat([torch.ones_like(trans_after[:, :1]), trans_after[:, :-1]], dim=1)
    # a pixel stops before the Gaussian that would take it to <= 1e-4 (and everything after it)
    alive = (trans_after > 1e-4).detach()
    weights = torch.where(alive, alpha * trans_before, torch.zeros_like(alpha))
    return weights @ feats, weights.sum(1)


def ref_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                  near_plane=0.01, far_plane=1e10, eps2d=0.3, backgrounds=None, render_mode="RGB"):
    """Same arguments and results as splatrefine.splat.rasterize (meta: radii, means2d, ...)."""
    C, N = viewmats.shape[0], means.shape[0]
    radii, means2d, depths, conics = ref_project(means, quats, scales, viewmats, Ks, width, height,
                                                 eps2d, near_plane, far_plane)
    if render_mode in ("D", "ED"):
        feats = depths[..., None]
        bgs = None
    else:
        feats = colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])
        bgs = backgrounds
        if render_mode in ("RGB+D", "RGB+ED"):
            feats = torch.cat([feats, depths[..., None]], -1)
            if bgs is not None:
                bgs = torch.cat([bgs, torch.zeros_like(bgs[:, :1])], -1)
    D = feats.shape[-1]
    tiles_y = math.ceil(height / TILE)
    tiles_x = math.ceil(width / TILE)
    images, alphas = [], []
    for c in range(C):
        vis = (radii[c] > 0).all(-1)
        idx = torch.nonzero(vis).squeeze(1)
        idx = idx[torch.sort(depths[c, idx].detach(), stable=True).indices]
        m2, con, op, fe = means2d[c, idx], conics[c, idx], opacities[idx], feats[c, idx]
        with torch.no_grad():
            rr = radii[c, idx].to(m2.dtype)
            lo = torch.floor(m2.detach() / TILE - rr / TILE).long()
            hi = torch.ceil(m2.detach() / TILE + rr / TILE).long()
            tx0, tx1 = lo[:, 0].clamp(0, tiles_x), hi[:, 0].clamp(0, tiles_x)
            ty0, ty1 = lo[:, 1].clamp(0, tiles_y), hi[:, 1].clamp(0, tiles_y)
        rows_c, rows_a = [], []
        for ty in range(tiles_y):
            y0, y1 = ty * TILE, min(height, (ty + 1) * TILE)
            tiles_c, tiles_a = [], []
            for tx in range(tiles_x):
                x0, x1 = tx * TILE, min(width, (tx + 1) * TILE)
                sel = torch.nonzero((ty0 <= ty) & (ty < ty1) & (tx0 <= tx) & (tx < tx1)).squeeze(1)
                if sel.numel() == 0:
                    col = torch.zeros((y1 - y0) * (x1 - x0), D, dtype=means.dtype)
                    acc = torch.zeros((y1 - y0) * (x1 - x0), dtype=means.dtype)
                else:
                    col, acc = checkpoint(_tile, m2[sel], con[sel], op[sel], fe[sel], x0, x1, y0,
                                          y1, use_reentrant=False)
                tiles_c.append(col.reshape(y1 - y0, x1 - x0, D))
                tiles_a.append(acc.reshape(y1 - y0, x1 - x0, 1))
            rows_c.append(torch.cat(tiles_c, dim=1))
            rows_a.append(torch.cat(tiles_a, dim=1))
        img = torch.cat(rows_c, dim=0)
        a = torch.cat(rows_a, dim=0)
        if bgs is not None:
            img = img + (1.0 - a) * bgs[c]
        images.append(img)
        alphas.append(a)
    render = torch.stack(images)
    alpha = torch.stack(alphas)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], -1)
    meta = {"radii": radii, "means2d": means2d, "depths": depths, "conics": conics}
    return render, alpha, meta
