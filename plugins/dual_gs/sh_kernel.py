"""The RGB head's view-dependent colours on the CPU: spherical harmonics per Gaussian, one numba
pass each way (what gsplat's `spherical_harmonics` kernel does on the GPU).

Same quantity as `model.eval_sh_rgb`: rgb[c,n] = max(sum_b basis_b(d) sh[n,b] + 0.5, 0) with d the
unit direction from camera centre c to Gaussian n, degrees 0..3. Backward gives the coefficients'
gradient and the means' (through d: the colour changes as a Gaussian moves around the camera). In
torch the basis and its backward are ~60 operations on [C,N] tensors per step; here one loop per
Gaussian (tests/test_sh_kernel.py checks both against autograd).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from .sh import SH_C0, SH_C1, SH_C2, SH_C3

C20, C21, C22, C23, C24 = SH_C2
C30, C31, C32, C33, C34, C35, C36 = SH_C3


@njit(cache=True, inline="always")
def _basis(x, y, z, degree, out):  # pragma: no cover - compiled
    """SH basis of unit direction (x, y, z) up to `degree` into out[:(degree+1)^2]."""
    out[0] = SH_C0
    if degree >= 1:
        out[1] = -SH_C1 * y
        out[2] = SH_C1 * z
        out[3] = -SH_C1 * x
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out[4] = C20 * x * y
        out[5] = C21 * y * z
        out[6] = C22 * (2 * zz - xx - yy)
        out[7] = C23 * x * z
        out[8] = C24 * (xx - yy)
        if degree >= 3:
            out[9] = C30 * y * (3 * xx - yy)
            out[10] = C31 * x * y * z
            out[11] = C32 * y * (4 * zz - xx - yy)
            out[12] = C33 * z * (2 * zz - 3 * xx - 3 * yy)
            out[13] = C34 * x * (4 * zz - xx - yy)
            out[14] = C35 * z * (xx - yy)
            out[15] = C36 * x * (xx - 3 * yy)


@njit(cache=True, inline="always")
def _basis_grad(x, y, z, degree, w):  # pragma: no cover - compiled
    """sum_b w[b] d basis_b / d(x, y, z) (x, y, z independent)."""
    gx = -SH_C1 * w[3] if degree >= 1 else 0.0
    gy = -SH_C1 * w[1] if degree >= 1 else 0.0
    gz = SH_C1 * w[2] if degree >= 1 else 0.0
    if degree >= 2:
        gx += C20 * y * w[4] - 2 * C22 * x * w[6] + C23 * z * w[7] + 2 * C24 * x * w[8]
        gy += C20 * x * w[4] + C21 * z * w[5] - 2 * C22 * y * w[6] - 2 * C24 * y * w[8]
        gz += C21 * y * w[5] + 4 * C22 * z * w[6] + C23 * x * w[7]
        if degree >= 3:
            xx, yy, zz = x * x, y * y, z * z
            gx += (6 * C30 * x * y * w[9] + C31 * y * z * w[10] - 2 * C32 * x * y * w[11]
                   - 6 * C33 * x * z * w[12] + C34 * (4 * zz - 3 * xx - yy) * w[13] + 2 * C35 * x * z * w[14]
                   + 3 * C36 * (xx - yy) * w[15])
            gy += (3 * C30 * (xx - yy) * w[9] + C31 * x * z * w[10] + C32 * (4 * zz - xx - 3 * yy) * w[11]
                   - 6 * C33 * y * z * w[12] - 2 * C34 * x * y * w[13] - 2 * C35 * y * z * w[14]
                   - 6 * C36 * x * y * w[15])
            gz += (C31 * x * y * w[10] + 8 * C32 * y * z * w[11] + C33 * (6 * zz - 3 * xx - 3 * yy) * w[12]
                   + 8 * C34 * x * z * w[13] + C35 * (xx - yy) * w[14])
    return gx, gy, gz


@njit(cache=True, parallel=True)
def _forward(sh0, shN, means, centers, degree, out):  # pragma: no cover - compiled
    """out [C,N,3]: the colour of every Gaussian seen from every camera centre."""
    C, N = centers.shape[0], means.shape[0]
    B = (degree + 1) ** 2
    for n in prange(N):
        basis = np.empty(16)
        for c in range(C):
            vx, vy, vz = means[n, 0] - centers[c, 0], means[n, 1] - centers[c, 1], means[n, 2] - centers[c, 2]
            inv = 1.0 / max(math.sqrt(vx * vx + vy * vy + vz * vz), 1e-12)
            _basis(vx * inv, vy * inv, vz * inv, degree, basis)
            for k in range(3):
                acc = 0.5 + basis[0] * sh0[n, 0, k]
                for b in range(1, B):
                    acc += basis[b] * shN[n, b - 1, k]
                out[c, n, k] = max(acc, 0.0)


@njit(cache=True, parallel=True)
def _backward(sh0, shN, means, centers, degree, g_rgb, g_sh0, g_shN, g_means):  # pragma: no cover - compiled
    """g_sh0 [N,1,3], g_shN [N,R,3], g_means [N,3] from g_rgb [C,N,3]."""
    C, N = centers.shape[0], means.shape[0]
    B = (degree + 1) ** 2
    R = shN.shape[1]
    for n in prange(N):
        basis = np.empty(16)
        w = np.zeros(16)
        for k in range(3):
            g_sh0[n, 0, k] = 0.0
            for b in range(R):
                g_shN[n, b, k] = 0.0
        gmx = gmy = gmz = 0.0
        for c in range(C):
            vx, vy, vz = means[n, 0] - centers[c, 0], means[n, 1] - centers[c, 1], means[n, 2] - centers[c, 2]
            norm = max(math.sqrt(vx * vx + vy * vy + vz * vz), 1e-12)
            x, y, z = vx / norm, vy / norm, vz / norm
            _basis(x, y, z, degree, basis)
            for b in range(B):
                w[b] = 0.0
            for k in range(3):
                acc = 0.5 + basis[0] * sh0[n, 0, k]
                for b in range(1, B):
                    acc += basis[b] * shN[n, b - 1, k]
                g = g_rgb[c, n, k]
                if acc < 0.0 or g == 0.0:  # the clamp at 0 (torch's clamp_min passes acc >= 0)
                    continue
                g_sh0[n, 0, k] += basis[0] * g
                w[0] += sh0[n, 0, k] * g
                for b in range(1, B):
                    g_shN[n, b - 1, k] += basis[b] * g
                    w[b] += shN[n, b - 1, k] * g
            gx, gy, gz = _basis_grad(x, y, z, degree, w)
            # d = v / |v|: d d / d v = (I - d d^T) / |v|
            dot = gx * x + gy * y + gz * z
            gmx += (gx - dot * x) / norm
            gmy += (gy - dot * y) / norm
            gmz += (gz - dot * z) / norm
        g_means[n, 0] = gmx
        g_means[n, 1] = gmy
        g_means[n, 2] = gmz


class SHColors(torch.autograd.Function):
    """rgb [C,N,3] from sh0 [N,1,3], shN [N,R,3] (R >= (degree+1)^2 - 1), means [N,3] and camera
    centres [C,3] (float32 CPU tensors; the centres get no gradient)."""

    @staticmethod
    def forward(ctx, sh0, shN, means, centers, degree: int):
        s0, sN, m = sh0.detach().numpy(), shN.detach().numpy(), means.detach().numpy()
        cen = centers.detach().double().numpy()
        out = np.empty((cen.shape[0], m.shape[0], 3), np.float32)
        _forward(s0, sN, m, cen, degree, out)
        ctx.state = (s0, sN, m, cen, degree)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, g_rgb):
        s0, sN, m, cen, degree = ctx.state
        g0, gN, gm = np.empty_like(s0), np.empty_like(sN), np.empty_like(m)
        _backward(s0, sN, m, cen, degree, g_rgb.detach().numpy(), g0, gN, gm)
        return torch.from_numpy(g0), torch.from_numpy(gN), torch.from_numpy(gm), None, None
