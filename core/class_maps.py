"""Whole-capture passes over class probabilities [V,K,H,W]: the per-pixel argmax and the float16
copy a run stores.

numpy walks the class axis of [V,K,H,W] one strided [K] vector per pixel (3 s for the demo's 61
views at 256 px on 2 cores) and converts to float16 one element at a time (1-2 s); these do the
same arithmetic in parallel passes (~0.1 s each).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _argmax_classes(probs, labels, top):  # pragma: no cover - compiled
    """labels[v,r,c] = numpy's argmax over k of probs[v,k,r,c] (the first maximum; a NaN counts as
    the maximum, the first NaN wins), top[v,r,c] = that value."""
    V, K, H, W = probs.shape
    for vr in prange(V * H):
        v, r = vr // H, vr % H
        for c in range(W):
            best = probs[v, 0, r, c]
            idx = 0
            if not np.isnan(best):
                for k in range(1, K):
                    x = probs[v, k, r, c]
                    if np.isnan(x):
                        best, idx = x, k
                        break
                    if x > best:
                        best, idx = x, k
            labels[v, r, c] = idx
            top[v, r, c] = best


def argmax_classes(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [V,K,H,W] -> (labels [V,H,W] uint8 (int16 past 256 classes), top probability [V,H,W]
    in probs' dtype, float32 for float16), exactly as `probs.argmax(axis=1)` and `probs.max(axis=1)`
    would give them."""
    probs = np.ascontiguousarray(probs)
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float32)  # float16 widens exactly; the kernels are compiled for these two
    V, K, H, W = probs.shape
    labels = np.empty((V, H, W), np.uint8 if K <= 256 else np.int16)
    top = np.empty((V, H, W), probs.dtype)
    if K:
        _argmax_classes(probs, labels, top)
    return labels, top


def to_float16(probs: np.ndarray) -> np.ndarray:
    """`probs.astype(np.float16)` (round to nearest even, the same bits) through torch's vectorised cast."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32)).to(torch.float16).numpy()
