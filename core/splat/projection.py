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
    # Written element-wise on [C,N] tensors (no batched 3x3 matmuls): several times faster on CPU
    # for forward and autograd backward than the matrix form.
    q = F.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    r00, r01, r02 = 1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)
    r10, r11, r12 = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)
    r20, r21, r22 = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
    sx, sy, sz = scales.unbind(-1)
    sx2, sy2, sz2 = sx * sx, sy * sy, sz * sz
    # world covariance R diag(s^2) R^T (symmetric, 6 entries) [N]
    c00 = r00 * r00 * sx2 + r01 * r01 * sy2 + r02 * r02 * sz2
    c01 = r00 * r10 * sx2 + r01 * r11 * sy2 + r02 * r12 * sz2
    c02 = r00 * r20 * sx2 + r01 * r21 * sy2 + r02 * r22 * sz2
    c11 = r10 * r10 * sx2 + r11 * r11 * sy2 + r12 * r12 * sz2
    c12 = r10 * r20 * sx2 + r11 * r21 * sy2 + r12 * r22 * sz2
    c22 = r20 * r20 * sx2 + r21 * r21 * sy2 + r22 * r22 * sz2

    V = viewmats[:, :3, :4].unsqueeze(-1)  # [C,3,4,1]: entries broadcast against [N]
    mx, my, mz = means.unbind(-1)
    tx = V[:, 0, 0] * mx + V[:, 0, 1] * my + V[:, 0, 2] * mz + V[:, 0, 3]  # [C,N]
    ty = V[:, 1, 0] * mx + V[:, 1, 1] * my + V[:, 1, 2] * mz + V[:, 1, 3]
    depths = V[:, 2, 0] * mx + V[:, 2, 1] * my + V[:, 2, 2] * mz + V[:, 2, 3]
    with torch.no_grad():
        depth_ok = (depths > near_plane) & (depths < far_plane)
    # Culled Gaussians get a harmless stand-in depth so nothing divides by ~0 (no NaN gradients).
    tz = torch.where(depth_ok, depths, torch.ones_like(depths))

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
    inv_z = 1.0 / tz
    txc = tz * torch.clamp(tx * inv_z, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty * inv_z, min=-lim_y_neg, max=lim_y_pos)

    # A = J W (2x3): J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]], W = camera rotation
    j00 = fx * inv_z
    j02 = -fx * txc * inv_z * inv_z
    j11 = fy * inv_z
    j12 = -fy * tyc * inv_z * inv_z
    a0 = j00 * V[:, 0, 0] + j02 * V[:, 2, 0]
    a1 = j00 * V[:, 0, 1] + j02 * V[:, 2, 1]
    a2 = j00 * V[:, 0, 2] + j02 * V[:, 2, 2]
    b0 = j11 * V[:, 1, 0] + j12 * V[:, 2, 0]
    b1 = j11 * V[:, 1, 1] + j12 * V[:, 2, 1]
    b2 = j11 * V[:, 1, 2] + j12 * V[:, 2, 2]
    # cov2d = A Sigma A^T
    sa0 = c00 * a0 + c01 * a1 + c02 * a2
    sa1 = c01 * a0 + c11 * a1 + c12 * a2
    sa2 = c02 * a0 + c12 * a1 + c22 * a2
    cov_xx = a0 * sa0 + a1 * sa1 + a2 * sa2
    cov_xy = b0 * sa0 + b1 * sa1 + b2 * sa2
    cov_yy = (b0 * (c00 * b0 + c01 * b1 + c02 * b2) + b1 * (c01 * b0 + c11 * b1 + c12 * b2)
              + b2 * (c02 * b0 + c12 * b1 + c22 * b2))

    u = Ks[:, 0, 0, None] * tx + Ks[:, 0, 1, None] * ty + Ks[:, 0, 2, None] * tz
    v = Ks[:, 1, 0, None] * tx + Ks[:, 1, 1, None] * ty + Ks[:, 1, 2, None] * tz
    means2d = torch.stack([u * inv_z, v * inv_z], dim=-1)  # [C,N,2]

    s00 = cov_xx + eps2d
    s11 = cov_yy + eps2d
    s01 = cov_xy
    det = (s00 * s11 - s01 * s01).clamp(min=1e-10)
    inv_det = 1.0 / det
    conics = torch.stack([s11 * inv_det, -s01 * inv_det, s00 * inv_det], dim=-1)  # [C,N,3]

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
