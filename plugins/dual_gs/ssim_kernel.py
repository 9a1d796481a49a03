"""D-SSIM of the RGB loss on the CPU: numba kernels for the mean SSIM and its gradient.

The same quantity as `losses._SSIM` (11x11 Gaussian window, sigma 1.5, zero padding, the window
applied as two 1D passes; constants c1 = 0.01^2, c2 = 0.03^2) and the same closed-form gradient,
but each pass touches every pixel once: the five local moments are blurred (the target's two can
be blurred once and passed in: `target_moments`), the SSIM map and the three maps of its gradient
are formed in the same loop, and the backward blurs those three.
In torch the same work is ~40 whole-image operations of 50-150 us each on 2 cores (about 12 ms of a
256 px step); here about 3 ms, with the scratch maps kept between steps. The blurs run in float32
as torch's convolution does, the SSIM map's sum in float64; images are float32 [P,H,W] planes.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from numba import njit, prange

C1 = 0.01 ** 2
C2 = 0.03 ** 2


@njit(cache=True, parallel=True)
def _blur_rows(src, g, out):  # pragma: no cover - compiled
    """out[m,p,r,c] = sum_t g[t] src[m,p,r,c+t-R] (zero outside), src/out [M,P,H,W]; each row is
    copied into a zero-padded buffer first, and the taps are the outer loop, so the inner loop runs
    along the row without bounds and vectorises (a tap sum per pixel did not: 4-5x slower)."""
    M, P, H, W = src.shape
    K = g.shape[0]
    R = K // 2
    for r in prange(H):
        buf = np.zeros(W + 2 * R, np.float32)
        for m in range(M):
            for p in range(P):
                s = src[m, p, r]
                for c in range(W):
                    buf[R + c] = s[c]
                o = out[m, p, r]
                for c in range(W):
                    o[c] = 0.0
                for t in range(K):
                    w = g[t]
                    for c in range(W):
                        o[c] += w * buf[c + t]


@njit(cache=True, parallel=True)
def _blur_cols(src, g, out):  # pragma: no cover - compiled
    """out[m,p,r,c] = sum_t g[t] src[m,p,r+t-R,c] (zero outside)."""
    M, P, H, W = src.shape
    K = g.shape[0]
    R = K // 2
    for r in prange(H):
        for m in range(M):
            for p in range(P):
                o = out[m, p, r]
                for c in range(W):
                    o[c] = 0.0
                for t in range(max(0, R - r), min(K, H - r + R)):
                    w = g[t]
                    row = src[m, p, r + t - R]
                    for c in range(W):
                        o[c] += w * row[c]


@njit(cache=True, parallel=True)
def _x_moments(x, y, out):  # pragma: no cover - compiled
    """out [3,P,H,W] = x, x*x, x*y (the moments that change every step)."""
    P, H, W = x.shape
    for r in prange(H):
        for p in range(P):
            for c in range(W):
                a, b = x[p, r, c], y[p, r, c]
                out[0, p, r, c] = a
                out[1, p, r, c] = a * a
                out[2, p, r, c] = a * b


@njit(cache=True, parallel=True)
def _ssim_maps(mu_x, mu_y, e_xx, e_yy, e_xy, c1, c2, grads):  # pragma: no cover - compiled
    """From the blurred moments (each [P,H,W]): sum of the SSIM map and the maps dm/dmu_x,
    dm/dE[xx], dm/dE[xy] into grads [3,P,H,W]. The sum is kept per column of a row, so the loop
    along the row has no serial dependence and vectorises (a running sum did not: 2x slower)."""
    P, H, W = mu_x.shape
    rows = np.zeros(H)
    for r in prange(H):
        acc = np.zeros(W)
        for p in range(P):
            for c in range(W):
                mx, my = np.float64(mu_x[p, r, c]), np.float64(mu_y[p, r, c])
                mxy, mxx, myy = mx * my, mx * mx, my * my
                a1 = 2.0 * mxy + c1
                a2 = 2.0 * (e_xy[p, r, c] - mxy) + c2
                b1 = mxx + myy + c1
                b2 = (e_xx[p, r, c] - mxx) + (e_yy[p, r, c] - myy) + c2
                inv = 1.0 / (b1 * b2)
                m = a1 * a2 * inv
                acc[c] += m
                # 1/b1 - 1/b2 = (b2 - b1) / (b1 b2): one division per pixel instead of three
                grads[0, p, r, c] = 2.0 * ((a2 - a1) * my - m * mx * (b2 - b1)) * inv
                grads[1, p, r, c] = -m * b1 * inv  # -m / b2
                grads[2, p, r, c] = 2.0 * a1 * inv
        rows[r] = acc.sum()
    return rows.sum()


@njit(cache=True, parallel=True)
def _combine(x, y, blurred, scale, out):  # pragma: no cover - compiled
    """out = (2 x blur(dm/dE[xx]) + y blur(dm/dE[xy]) + blur(dm/dmu_x)) * scale."""
    P, H, W = x.shape
    for r in prange(H):
        for p in range(P):
            for c in range(W):
                out[p, r, c] = (2.0 * x[p, r, c] * blurred[1, p, r, c] + y[p, r, c] * blurred[2, p, r, c]
                                + blurred[0, p, r, c]) * scale


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple) -> np.ndarray:
    """A float32 buffer of this thread that lives between steps, for maps that never leave one
    forward or backward: a fresh 2-3 MB array costs its page faults on every step (about as much as
    the blur itself). One buffer per name, of the last shape asked for (a fit changes resolution
    once, from the coarse level to the full one; a worker's next capture may differ again)."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.shape != shape:
        buf = buffers[name] = np.empty(shape, np.float32)
    return buf


def _blur(maps: np.ndarray, g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    tmp = _scratch(f"rows of {len(maps)}", maps.shape)  # the target's 2 moments, x's 3, 3 gradients
    _blur_rows(maps, g, tmp)
    out = np.empty_like(maps) if out is None else out
    _blur_cols(tmp, g, out)
    return out


def target_moments(y: np.ndarray, window: torch.Tensor) -> np.ndarray:
    """The blurred mean and second moment [2,P,H,W] of constant target planes y [P,H,W] float32:
    what every D-SSIM of these targets blurs again (`SSIMKernel` takes them precomputed), bit for
    bit (each plane is blurred on its own)."""
    mom = np.stack([y, y * y]).astype(np.float32)
    return _blur(mom, window.detach().float().numpy())


class SSIMKernel(torch.autograd.Function):
    """Mean SSIM of x against a constant y, both [N,C,H,W] float32 CPU tensors; gradient for x.
    `y_moments` [2,N*C,H,W]: y's `target_moments` when known (else blurred here: 2 of 5 planes)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, y_moments: np.ndarray | None = None):
        N, C, H, W = x.shape
        xs = np.ascontiguousarray(x.detach().numpy().reshape(N * C, H, W))
        ys = np.ascontiguousarray(y.detach().numpy().reshape(N * C, H, W))
        g = window.detach().float().numpy()
        if y_moments is None:
            y_moments = target_moments(ys, window)
        mom = _scratch("moments", (3, N * C, H, W))
        _x_moments(xs, ys, mom)
        mom = _blur(mom, g, _scratch("blurred", mom.shape))
        grads = np.empty((3, N * C, H, W), np.float32)
        total = _ssim_maps(mom[0], y_moments[0], mom[1], y_moments[1], mom[2], C1, C2, grads)
        ctx.saved = (xs, ys, grads, g, x.shape)
        return torch.tensor(total / xs.size, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xs, ys, grads, g, shape = ctx.saved
        blurred = _blur(grads, g, _scratch("blurred", grads.shape))
        out = np.empty_like(xs)
        _combine(xs, ys, blurred, float(grad) / xs.size, out)
        return torch.from_numpy(out).reshape(shape), None, None, None
