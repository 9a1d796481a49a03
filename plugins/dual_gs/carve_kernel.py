"""The visual-hull test of the initial points' candidates, one numba pass over points and views.

`init._carve` draws random candidates in the common volume and keeps those that most views see and
(with masks) nearly every view that sees them sees as foreground. In numpy that projects every
candidate into every view ([V,N] arrays, ~0.15 s per batch of 24k candidates and 61 views, a dozen
batches for the demo); most candidates lie outside the hull and fail after a few views, so this
kernel walks each candidate's views and stops once it cannot pass. The tests are numpy's in float64
(numpy's BLAS product may round a projection differently in the last bit: the demo's and the
tests' candidates come out the same).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def hull_test(cand, viewmats, Ks, width, height, masks, depth_into, need_views, ok, world):  # pragma: no cover - compiled
    """For candidates cand [N,3] float64: ok [N] = in frame of >= need_views views and, when masks
    [V,H,W] are given (non-empty), foreground in >= 0.9 of the views that see it; world [N] = the
    smallest world distance to the silhouette edge over those views (depth_into [V,H,W] pixels x
    depth / fx), set where ok."""
    V = viewmats.shape[0]
    use_masks = masks.shape[0] > 0
    for n in prange(cand.shape[0]):
        px, py, pz = cand[n, 0], cand[n, 1], cand[n, 2]
        seen = 0
        missed = 0
        nearest = np.inf
        failed = False
        for v in range(V):
            if seen + (V - v) < need_views or 10 * missed > V:
                failed = True
                break
            R = viewmats[v]
            x = (px * R[0, 0] + py * R[0, 1]) + pz * R[0, 2] + R[0, 3]
            y = (px * R[1, 0] + py * R[1, 1]) + pz * R[1, 2] + R[1, 3]
            z = (px * R[2, 0] + py * R[2, 1]) + pz * R[2, 2] + R[2, 3]
            zs = z if z > 1e-6 else 1e-6
            u = Ks[v, 0, 0] * x / zs + Ks[v, 0, 2]
            w = Ks[v, 1, 1] * y / zs + Ks[v, 1, 2]
            if not (z > 1e-6 and u >= 0 and u < width and w >= 0 and w < height):
                continue
            seen += 1
            if use_masks:
                ui = min(max(np.int64(u), 0), width - 1)
                vi = min(max(np.int64(w), 0), height - 1)
                missed += not masks[v, vi, ui]
                d = np.float64(depth_into[v, vi, ui]) * z / Ks[v, 0, 0]
                if d < nearest:
                    nearest = d
        if failed or seen < need_views:
            ok[n] = False
            continue
        ok[n] = (not use_masks) or (seen - missed) >= 0.9 * seen
        world[n] = nearest
