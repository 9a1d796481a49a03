"""numba kernel of the `transfer` aggregator: the votes and abstentions of every input view for the
foreground points of one target camera.

The arithmetic follows the numpy code it replaces step by step, in the same dtypes: the projection
and depth test in float64, the weight (facing x self_weight x trusted_weight) and the abstention
(1 - confidence) x weight in float32, the vote confidence x relative agreement x weight in float64,
and each pixel's sums taken over the sources in their order (as one bincount over the sources'
concatenated bins would). The one difference: the camera transform is a plain sum of products here
where numpy's matmul goes through BLAS, which may round the last bit differently.

Layouts (S sources, padded to the largest source image Hm x Wm; sizes[j] = (H, W) of source j):
    depth      [S,Hm,Wm] float32  rendered depth, 0 where empty (and in the padding)
    labels     [S,Hm,Wm] int16    the parser's labels
    confidence [S,Hm,Wm] float32  the parser's confidence, 0 = no opinion
    facing     [S,Hm,Wm] float32  cos(ray, normal) ** incidence
    viewmats   [S,4,4] float64, Ks [S,3,3] float64
    relative   [S,K] float64      relative agreement ** reliability
    is_self, trusted, speaks [S] bool
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 512  # pixels per parallel work item: each block walks the sources in order, one at a time


@njit(cache=True, parallel=True)
def accumulate_votes(points, depth, labels, confidence, facing, sizes, viewmats, Ks, relative,
                     is_self, trusted, speaks, depth_tolerance, self_weight, trusted_weight,
                     votes, abstain):  # pragma: no cover
    """Add every source's votes to votes [N,K] and abstentions to abstain [N] (both float64, zeroed by
    the caller) for the world points [N,3] float64; self_weight and trusted_weight are float32."""
    n = points.shape[0]
    S = depth.shape[0]
    one = np.float32(1.0)
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        start = b * BLOCK
        m = min(start + BLOCK, n) - start
        zs = np.empty(m)
        us = np.empty(m)
        vs = np.empty(m)
        for j in range(S):
            r00, r01, r02, t0 = viewmats[j, 0, 0], viewmats[j, 0, 1], viewmats[j, 0, 2], viewmats[j, 0, 3]
            r10, r11, r12, t1 = viewmats[j, 1, 0], viewmats[j, 1, 1], viewmats[j, 1, 2], viewmats[j, 1, 3]
            r20, r21, r22, t2 = viewmats[j, 2, 0], viewmats[j, 2, 1], viewmats[j, 2, 2], viewmats[j, 2, 3]
            fx, cx, fy, cy = Ks[j, 0, 0], Ks[j, 0, 2], Ks[j, 1, 1], Ks[j, 1, 2]
            Hs, Ws = sizes[j, 0], sizes[j, 1]
            own, trust, speak = is_self[j], trusted[j], speaks[j]
            # pass 1, branch-free (vectorises): the block's points in the source's camera and pixels
            for q in range(m):
                x, y, zw = points[start + q, 0], points[start + q, 1], points[start + q, 2]
                cam_x = x * r00 + y * r01 + zw * r02 + t0
                cam_y = x * r10 + y * r11 + zw * r12 + t1
                z = x * r20 + y * r21 + zw * r22 + t2
                zs[q] = z
                us[q] = np.floor(fx * cam_x / z + cx)
                vs[q] = np.floor(fy * cam_y / z + cy)
            # pass 2: the points the source sees (in front, inside, on its rendered surface) vote
            for q in range(m):
                z, u, v = zs[q], us[q], vs[q]
                if not (z > 0 and u >= 0 and u < Ws and v >= 0 and v < Hs):
                    continue
                iu, iv = np.int64(u), np.int64(v)
                ds = depth[j, iv, iu]
                if not (ds > 0 and abs(ds - z) <= depth_tolerance * z):
                    continue
                lab = labels[j, iv, iu]
                conf = confidence[j, iv, iu]
                w = facing[j, iv, iu]
                if own:
                    w = w * self_weight
                if trust:
                    w = w * trusted_weight
                p = start + q
                votes[p, lab] += conf * relative[j, lab] * w
                if speak:
                    abstain[p] += (one - conf) * w


@njit(cache=True)
def _pairwise(row, start, n):  # pragma: no cover - compiled
    """numpy's pairwise sum of row[start:start+n] for n <= 128: eight partial sums, then the tail."""
    if n < 8:
        acc = 0.0
        for i in range(n):
            acc += row[start + i]
        return acc
    r0, r1, r2, r3 = row[start], row[start + 1], row[start + 2], row[start + 3]
    r4, r5, r6, r7 = row[start + 4], row[start + 5], row[start + 6], row[start + 7]
    i = 8
    while i < n - n % 8:
        r0 += row[start + i]
        r1 += row[start + i + 1]
        r2 += row[start + i + 2]
        r3 += row[start + i + 3]
        r4 += row[start + i + 4]
        r5 += row[start + i + 5]
        r6 += row[start + i + 6]
        r7 += row[start + i + 7]
        i += 8
    acc = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        acc += row[start + i]
        i += 1
    return acc


@njit(cache=True)
def _half(n):  # pragma: no cover - compiled
    """Where numpy's pairwise sum splits a run of n > 128: half of it, rounded down to a multiple of 8."""
    half = n // 2
    return half - half % 8


@njit(cache=True)
def _split1(row, start, n):  # pragma: no cover - compiled
    if n <= 128:
        return _pairwise(row, start, n)
    h = _half(n)
    return _pairwise(row, start, h) + _pairwise(row, start + h, n - h)


@njit(cache=True)
def _split2(row, start, n):  # pragma: no cover - compiled
    if n <= 128:
        return _pairwise(row, start, n)
    h = _half(n)
    return _split1(row, start, h) + _split1(row, start + h, n - h)


MAX_CLASSES = 512  # what three levels of numpy's halving cover (numba compiles no recursion here)


@njit(cache=True)
def _reduce_sum(row):  # pragma: no cover - compiled
    """numpy's add.reduce of a contiguous float64 row of at most MAX_CLASSES, bit for bit: 0 + the
    pairwise sum (runs past 128 halved at a multiple of 8, as numpy does)."""
    n = row.shape[0]
    if n <= 128:
        return 0.0 + _pairwise(row, 0, n)
    h = _half(n)
    return 0.0 + (_split2(row, 0, h) + _split2(row, h, n - h))


@njit(cache=True, parallel=True)
def fuse_votes(votes, probs, consensus_weight, out):  # pragma: no cover - compiled
    """out [N,K] float32 = the votes [N,K] float64 plus consensus_weight x max(their mass, 1) x the
    rendered probabilities [N,K] float32, normalised per pixel; the numpy expression of
    `TransferAggregator.aggregate` in its order and dtypes (row sums as numpy's reduce takes them)."""
    N, K = votes.shape
    if K > MAX_CLASSES:
        raise ValueError("fuse_votes: more classes than MAX_CLASSES")
    total = np.empty((N, K))
    for n in prange(N):
        mass = _reduce_sum(votes[n])
        scale = consensus_weight * (mass if not mass < 1.0 else 1.0)  # np.maximum: NaN stays NaN
        t = total[n]
        for k in range(K):
            t[k] = votes[n, k] + scale * np.float64(probs[n, k])
        norm = _reduce_sum(t)
        norm = norm if not norm < 1e-12 else 1e-12
        for k in range(K):
            out[n, k] = t[k] / norm


@njit(cache=True)
def _tangent(P, valid, i, j, di, dj, out):  # pragma: no cover - compiled
    """`facing`'s central difference at (i, j) along one image axis ((di, dj) = (0, 1) along the
    row, (1, 0) down the column) into out [3]: (P[i] - P[i-1]) + (P[i+1] - P[i]), each term kept
    where both of its pixels are valid and 0 past the border, in numpy's order (a dropped term is
    a product by 0.0, as numpy's mask multiplication)."""
    H, W = valid.shape
    for c in range(3):
        before = 0.0
        after = 0.0
        if i - di >= 0 and j - dj >= 0:
            ok = 1.0 if valid[i - di, j - dj] and valid[i, j] else 0.0
            before = (P[i, j, c] - P[i - di, j - dj, c]) * ok
        if i + di < H and j + dj < W:
            ok = 1.0 if valid[i, j] and valid[i + di, j + dj] else 0.0
            after = (P[i + di, j + dj, c] - P[i, j, c]) * ok
        out[c] = before + after


@njit(cache=True)
def facing_cos(P, valid, centre, out):  # pragma: no cover - compiled
    """out [H,W] float32 = |cos| between each pixel's ray from `centre` and the normal of the
    lifted surface P [H,W,3] float64, 0 where `valid` is False or the normal is degenerate: the
    numpy expression of `transfer.facing` (np.cross, np.linalg.norm, the ray's normalisation)
    in its order and dtypes."""
    H, W = valid.shape
    a = np.empty(3)
    b = np.empty(3)
    for i in range(H):
        for j in range(W):
            if not valid[i, j]:
                out[i, j] = np.float32(0.0)
                continue
            _tangent(P, valid, i, j, 0, 1, a)  # along x (axis 1)
            _tangent(P, valid, i, j, 1, 0, b)  # along y (axis 0)
            n0 = a[1] * b[2] - a[2] * b[1]
            n1 = a[2] * b[0] - a[0] * b[2]
            n2 = a[0] * b[1] - a[1] * b[0]
            norm = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
            if not norm > 0:
                out[i, j] = np.float32(0.0)
                continue
            r0 = centre[0] - P[i, j, 0]
            r1 = centre[1] - P[i, j, 1]
            r2 = centre[2] - P[i, j, 2]
            rn = np.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
            rn = rn if not rn < 1e-12 else 1e-12
            r0 /= rn
            r1 /= rn
            r2 /= rn
            out[i, j] = np.float32(abs(n0 * r0 + n1 * r1 + n2 * r2) / norm)
