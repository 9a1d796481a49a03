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


C20, C21, C22, C23, C24 = SH_C2


@njit(cache=True, inline="always")
def _basis(viewmat, K, row, col):  # pragma: no cover - compiled
    """SH basis up to degree 2 (9 numbers, a tuple: no array per pixel) of the unit world ray
    through pixel (row, col)."""
    yc = (row + 0.5 - K[1, 2]) / K[1, 1]
    xc = (col + 0.5 - K[0, 2] - K[0, 1] * yc) / K[0, 0]
    # world direction R^T (xc, yc, 1)
    x = xc * viewmat[0, 0] + yc * viewmat[1, 0] + viewmat[2, 0]
    y = xc * viewmat[0, 1] + yc * viewmat[1, 1] + viewmat[2, 1]
    z = xc * viewmat[0, 2] + yc * viewmat[1, 2] + viewmat[2, 2]
    n = 1.0 / np.sqrt(x * x + y * y + z * z)
    x, y, z = x * n, y * n, z * n
    return (SH_C0, -SH_C1 * y, SH_C1 * z, -SH_C1 * x, C20 * x * y, C21 * y * z,
            C22 * (2 * z * z - x * x - y * y), C23 * x * z, C24 * (x * x - y * y))


@njit(cache=True, parallel=True)
def background_forward(viewmats, Ks, height, width, coeffs, out):  # pragma: no cover - compiled
    """out [C,H,W,3] float32 = basis . coeffs [9,3] + 0.5 at every pixel of every camera."""
    for cr in prange(viewmats.shape[0] * height):
        c, row = cr // height, cr % height
        for col in range(width):
            basis = _basis(viewmats[c], Ks[c], row, col)
            for k in range(3):
                acc = 0.5
                for b in range(9):
                    acc += basis[b] * coeffs[b, k]
                out[c, row, col, k] = acc


@njit(cache=True, parallel=True)
def background_backward(viewmats, Ks, height, width, grad_out):  # pragma: no cover - compiled
    """d loss / d coeffs [9,3] from d loss / d background [C,H,W,3] (any strides)."""
    rows = np.zeros((viewmats.shape[0] * height, 9, 3))
    for cr in prange(viewmats.shape[0] * height):
        c, row = cr // height, cr % height
        acc = np.zeros((9, 3))
        for col in range(width):
            basis = _basis(viewmats[c], Ks[c], row, col)
            for k in range(3):
                g = grad_out[c, row, col, k]
                for b in range(9):
                    acc[b, k] += basis[b] * g
        rows[cr] = acc
    return rows.sum(0)


class BackgroundSH(torch.autograd.Function):
    """background [C,H,W,3] float32 from SH coefficients [B,3], B = 1, 4 or 9 (CPU tensors)."""

    @staticmethod
    def forward(ctx, coeffs: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int):
        vm = viewmats.detach().double().numpy()
        k = Ks.detach().double().numpy()
        out = np.empty((vm.shape[0], height, width, 3), np.float32)
        padded = np.zeros((9, 3))  # degrees below 2: the higher coefficients are 0
        padded[:coeffs.shape[0]] = coeffs.detach().double().numpy()
        background_forward(vm, k, height, width, padded, out)
        ctx.cams = (vm, k)
        ctx.size = (width, height, coeffs.shape[0])
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        vm, k = ctx.cams
        width, height, B = ctx.size
        g = background_backward(vm, k, height, width, grad_out.detach().numpy())
        return torch.from_numpy(g[:B]).float(), None, None, None, None
