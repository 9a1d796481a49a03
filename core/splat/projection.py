"""EWA projection of 3D Gaussians to 2D (pinhole), in torch autograd, gsplat conventions.

Matches gsplat.cuda._torch_impl._fully_fused_projection (pinhole) and, when `opacities` is given,
the opacity-aware radii of gsplat's CUDA projection (what gsplat.rasterization uses).
Gaussians that are culled (behind the near plane, beyond the far plane, off-screen) get radii 0;
their means2d/conics are finite but meaningless and receive no gradient from compositing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ALPHA_THRESHOLD = 1.0 / 255.0


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariances R S S^T R^T. quats [N,4] wxyz (normalised here), scales [N,3] -> [N,3,3]."""
    q = F.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    opacities: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project Gaussians into C cameras.

    means [N,3], quats [N,4], scales [N,3], viewmats [C,4,4], Ks [C,3,3] ->
    radii int32 [C,N,2] (0 = culled), means2d [C,N,2], depths [C,N], conics [C,N,3]
    (upper triangle of the inverse blurred 2D covariance: a, b, c with
    sigma = 0.5 (a dx^2 + c dy^2) + b dx dy). Radii extend 3.33 sigma, or, when `opacities` [N]
    is given, the tighter opacity-aware extent sqrt(2 log(255 opacity)) of gsplat's CUDA kernel
    (Gaussians with opacity < 1/255 are then culled).
    """
    C = viewmats.shape[0]
    covars = quat_scale_to_covar(quats, scales)  # [N,3,3]
    Rv = viewmats[:, :3, :3]
    tv = viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", Rv, means) + tv[:, None, :]  # [C,N,3]
    covars_c = Rv[:, None] @ covars[None] @ Rv.transpose(-1, -2)[:, None]  # [C,N,3,3]

    depths = means_c[..., 2]
    with torch.no_grad():
        depth_ok = (depths > near_plane) & (depths < far_plane)
    # Culled Gaussians get a harmless stand-in depth so nothing divides by ~0 (no NaN gradients).
    tz = torch.where(depth_ok, depths, torch.ones_like(depths))
    tx, ty = means_c[..., 0], means_c[..., 1]

    fx = Ks[:, 0, 0, None]
    fy = Ks[:, 1, 1, None]
    cx = Ks[:, 0, 2, None]
    cy = Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)

    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz, zero, -fx * txc / (tz * tz), zero, fy / tz, -fy * tyc / (tz * tz)], dim=-1
    ).reshape(C, -1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [C,N,2,2]

    mc = torch.stack([tx, ty, tz], dim=-1)
    means2d = torch.einsum("cij,cnj->cni", Ks[:, :2, :3], mc) / tz[..., None]  # [C,N,2]

    s00 = cov2d[..., 0, 0] + eps2d
    s11 = cov2d[..., 1, 1] + eps2d
    s01 = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det = (s00 * s11 - s01 * s01).clamp(min=1e-10)
    conics = torch.stack([s11 / det, -s01 / det, s00 / det], dim=-1)  # [C,N,3]

    with torch.no_grad():
        if opacities is None:
            extent = torch.full_like(depths, 3.33)
            opac_ok = torch.ones_like(depth_ok)
        else:
            op = opacities.detach()[None].expand_as(depths)
            opac_ok = op >= ALPHA_THRESHOLD
            extent = torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
            extent = extent.clamp(max=3.33)
        rx = torch.ceil(extent * torch.sqrt(s00.detach().clamp(min=0)))
        ry = torch.ceil(extent * torch.sqrt(s11.detach().clamp(min=0)))
        m2 = means2d.detach()
        inside = (
            (m2[..., 0] + rx > 0) & (m2[..., 0] - rx < width)
            & (m2[..., 1] + ry > 0) & (m2[..., 1] - ry < height)
        )
        keep = depth_ok & (det.detach() > 0) & inside & opac_ok & (rx > 0) & (ry > 0)
        radii = torch.stack([rx, ry], dim=-1)
        radii = torch.where(keep[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
    return radii, means2d, depths, conics


def tile_grid(width: int, height: int, tile_size: int = 16) -> tuple[int, int]:
    """(tiles_x, tiles_y) covering the image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
