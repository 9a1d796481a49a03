"""The learned background of the RGB head on the CPU: SH of each pixel's ray direction, in one pass.

`model.background_rgb` in torch builds the ray directions [C,H,W,3] and the SH basis [C,H,W,B] as
whole images every step (~5 ms of a demo step on 2 cores, most of it allocating); the colours only
need B x 3 numbers per pixel. These numba kernels compute each pixel's basis on the fly: forward
writes the background [C,H,W,3], backward sums basis x incoming gradient into [B,3]. Only the
coefficients get a gradient (the cameras are fixed). B = 1, 4 or 9 (SH degree 0, 1, 2).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from .sh import SH_C0, SH_C1, SH_C2


@njit(cache=True, inline="always")
def _basis(viewmat, K, row, col, out):  # pragma: no cover - compiled
    """SH basis (len(out) = 1, 4 or 9) of the unit world ray through pixel (row, col)."""
    yc = (row + 0.5 - K[1, 2]) / K[1, 1]
    xc = (col + 0.5 - K[0, 2] - K[0, 1] * yc) / K[0, 0]
    # world direction R^T (xc, yc, 1)
    x = xc * viewmat[0, 0] + yc * viewmat[1, 0] + viewmat[2, 0]
    y = xc * viewmat[0, 1] + yc * viewmat[1, 1] + viewmat[2, 1]
    z = xc * viewmat[0, 2] + yc * viewmat[1, 2] + viewmat[2, 2]
    n = np.sqrt(x * x + y * y + z * z)
    x, y, z = x / n, y / n, z / n
    out[0] = SH_C0
    if out.shape[0] >= 4:
        out[1] = -SH_C1 * y
        out[2] = SH_C1 * z
        out[3] = -SH_C1 * x
    if out.shape[0] >= 9:
        out[4] = SH_C2[0] * x * y
        out[5] = SH_C2[1] * y * z
        out[6] = SH_C2[2] * (2 * z * z - x * x - y * y)
        out[7] = SH_C2[3] * x * z
        out[8] = SH_C2[4] * (x * x - y * y)


@njit(cache=True, parallel=True)
def background_forward(viewmats, Ks, height, width, coeffs, out):  # pragma: no cover - compiled
    """out [C,H,W,3] float32 = basis . coeffs [B,3] + 0.5 at every pixel of every camera."""
    B = coeffs.shape[0]
    for c in range(viewmats.shape[0]):
        for row in prange(height):
            basis = np.empty(B)
            for col in range(width):
                _basis(viewmats[c], Ks[c], row, col, basis)
                for k in range(3):
                    acc = 0.5
                    for b in range(B):
                        acc += basis[b] * coeffs[b, k]
                    out[c, row, col, k] = acc


@njit(cache=True, parallel=True)
def background_backward(viewmats, Ks, height, width, B, grad_out):  # pragma: no cover - compiled
    """d loss / d coeffs [B,3] from d loss / d background [C,H,W,3]."""
    rows = np.zeros((height, B, 3))
    for c in range(viewmats.shape[0]):
        for row in prange(height):
            basis = np.empty(B)
            for col in range(width):
                _basis(viewmats[c], Ks[c], row, col, basis)
                for b in range(B):
                    for k in range(3):
                        rows[row, b, k] += basis[b] * grad_out[c, row, col, k]
    return rows.sum(0)


class BackgroundSH(torch.autograd.Function):
    """background [C,H,W,3] float32 from SH coefficients [B,3] (CPU tensors)."""

    @staticmethod
    def forward(ctx, coeffs: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int):
        vm = viewmats.detach().double().numpy()
        k = Ks.detach().double().numpy()
        out = np.empty((vm.shape[0], height, width, 3), np.float32)
        background_forward(vm, k, height, width, coeffs.detach().double().numpy(), out)
        ctx.save_for_backward(viewmats, Ks)
        ctx.size = (width, height, coeffs.shape[0])
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        viewmats, Ks = ctx.saved_tensors
        width, height, B = ctx.size
        g = background_backward(viewmats.double().numpy(), Ks.double().numpy(), height, width, B,
                                np.ascontiguousarray(grad_out.detach().numpy()))
        return torch.from_numpy(g).float(), None, None, None, None
