"""The learned background of the RGB head on the CPU: SH of each pixel's ray direction, in one pass.

`model.background_rgb` in torch builds the ray directions [C,H,W,3] and the SH basis [C,H,W,B] as
whole images every step (~5 ms of a demo step on 2 cores, most of it allocating); the colours only
need B x 3 numbers per pixel. These numba kernels compute the basis one image row at a time: forward
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
def _row_basis(viewmat, K, row, width):  # pragma: no cover - compiled
    """SH basis [9,W] up to degree 2 of the unit world rays through the pixels of image row `row`."""
    x, y, z = np.empty(width), np.empty(width), np.empty(width)
    yc = (row + 0.5 - K[1, 2]) / K[1, 1]
    for col in range(width):
        xc = (col + 0.5 - K[0, 2] - K[0, 1] * yc) / K[0, 0]
        # world direction R^T (xc, yc, 1)
        a = xc * viewmat[0, 0] + yc * viewmat[1, 0] + viewmat[2, 0]
        b = xc * viewmat[0, 1] + yc * viewmat[1, 1] + viewmat[2, 1]
        d = xc * viewmat[0, 2] + yc * viewmat[1, 2] + viewmat[2, 2]
        n = 1.0 / np.sqrt(a * a + b * b + d * d)
        x[col], y[col], z[col] = a * n, b * n, d * n
    # a second loop: with the rays and the basis in one, the loop did not vectorise (2x slower)
    basis = np.empty((9, width))
    for col in range(width):
        u, v, w = x[col], y[col], z[col]
        basis[0, col] = SH_C0
        basis[1, col] = -SH_C1 * v
        basis[2, col] = SH_C1 * w
        basis[3, col] = -SH_C1 * u
        basis[4, col] = C20 * u * v
        basis[5, col] = C21 * v * w
        basis[6, col] = C22 * (2 * w * w - u * u - v * v)
        basis[7, col] = C23 * u * w
        basis[8, col] = C24 * (u * u - v * v)
    return basis


@njit(cache=True, parallel=True)
def background_forward(viewmats, Ks, height, width, coeffs, out):  # pragma: no cover - compiled
    """out [C,H,W,3] float32 = basis . coeffs [9,3] + 0.5 at every pixel of every camera. Each row's
    rays and basis are computed as arrays first, so the loops run along the row and vectorise (a
    basis per pixel did not: about 4x slower)."""
    for cr in prange(viewmats.shape[0] * height):
        c, row = cr // height, cr % height
        basis = _row_basis(viewmats[c], Ks[c], row, width)
        acc = np.empty(width)
        for k in range(3):
            for col in range(width):
                acc[col] = 0.5
            for b in range(9):
                w = coeffs[b, k]
                for col in range(width):
                    acc[col] += basis[b, col] * w
            for col in range(width):
                out[c, row, col, k] = acc[col]


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def background_backward(viewmats, Ks, height, width, grad_out):  # pragma: no cover - compiled
    """d loss / d coeffs [9,3] from d loss / d background [C,H,W,3] (any strides); the row sums
    may be reassociated (vectorised), so the last bits differ from a sum in pixel order."""
    rows = np.zeros((viewmats.shape[0] * height, 9, 3))
    for cr in prange(viewmats.shape[0] * height):
        c, row = cr // height, cr % height
        basis = _row_basis(viewmats[c], Ks[c], row, width)
        g = np.empty(width)
        for k in range(3):
            for col in range(width):
                g[col] = grad_out[c, row, col, k]
            for b in range(9):
                s = 0.0
                for col in range(width):
                    s += basis[b, col] * g[col]
                rows[cr, b, k] = s
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
