"""Whole-capture passes over class probabilities ([V,K,H,W] or [...,K]): the per-pixel argmax and
the float16 copy a run stores.

numpy walks the class axis of [V,K,H,W] one strided [K] vector per pixel (3 s for the demo's 61
views at 256 px on 2 cores) and converts to float16 one element at a time (1-2 s); these do the
same arithmetic in parallel passes (~0.1 s each).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


CHUNK = 4096  # pixels of one view per parallel task


@njit(cache=True, parallel=True)
def _argmax_axis1(probs, labels, top):  # pragma: no cover - compiled
    """labels[a,b] = numpy's argmax over k of probs[a,k,b] (the first maximum; a NaN counts as
    the maximum, the first NaN wins), top[a,b] = that value."""
    A, K, B = probs.shape
    chunks = (B + CHUNK - 1) // CHUNK  # a few views at [K,H,W] still split across the threads
    for t in prange(A * chunks):
        a, b0 = t // chunks, (t % chunks) * CHUNK
        for b in range(b0, min(b0 + CHUNK, B)):
            best = probs[a, 0, b]
            idx = 0
            if not np.isnan(best):
                for k in range(1, K):
                    x = probs[a, k, b]
                    if np.isnan(x):
                        best, idx = x, k
                        break
                    if x > best:
                        best, idx = x, k
            labels[a, b] = idx
            top[a, b] = best


def _argmax(probs: np.ndarray, lead: tuple[int, ...], K: int, trail: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """argmax and max over the class axis of a C-contiguous float32/float64 array shaped
    lead + (K,) + trail."""
    A, B = int(np.prod(lead)), int(np.prod(trail))
    labels = np.empty((A, B), np.uint8 if K <= 256 else np.int16)
    top = np.empty((A, B), probs.dtype)
    if K and A and B:
        _argmax_axis1(probs.reshape(A, K, B), labels, top)
    return labels.reshape(lead + trail), top.reshape(lead + trail)


def _kernel_dtype(probs: np.ndarray) -> np.ndarray:
    probs = np.ascontiguousarray(probs)
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float32)  # float16 widens exactly; the kernels are compiled for these two
    return probs


def argmax_classes(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [V,K,H,W] -> (labels [V,H,W] uint8 (int16 past 256 classes), top probability [V,H,W]
    in probs' dtype, float32 for float16), exactly as `probs.argmax(axis=1)` and `probs.max(axis=1)`
    would give them."""
    probs = _kernel_dtype(probs)
    V, K, H, W = probs.shape
    return _argmax(probs, (V,), K, (H, W))


def argmax_last(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [...,K] -> (labels [...], top [...]) as argmax_classes, over the last axis:
    `probs.argmax(-1)` and `probs.max(-1)` in one parallel pass (numpy's max and argmax each walk
    the [K] rows one at a time)."""
    probs = _kernel_dtype(probs)
    return _argmax(probs, probs.shape[:-1], probs.shape[-1], ())


def to_float16(probs: np.ndarray) -> np.ndarray:
    """`probs.astype(np.float16)` (round to nearest even, the same bits) through torch's vectorised cast."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32)).to(torch.float16).numpy()
