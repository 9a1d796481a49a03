"""numba kernels of the CPU backend: tile binning, forward and backward compositing, reduction.

Every kernel is compiled once per dtype (float32 / float64) and cached on disk (cache=True).
Floating point constants come in through the `consts` array so that arithmetic stays in the
dtype of the data (a Python float literal would promote float32 maths to float64).

Layouts (G = C*N flattened camera-major Gaussian slots):
    geom  [G,8]  mean x, mean y, conic a, b, c, opacity, prefilter sigma threshold, unused
    rect  [G,4]  inclusive pixel bbox x0, x1, y0, y1 where alpha can reach 1/255 (clipped)
    feats [G,D]  features per slot
    isect_gid [M]  slot of each intersection, sorted by (camera, tile, depth)
    isect_slot [M] position of the intersection in slot-major order (for the gradient reduction)
    tile_start [C*T+1] offsets of each tile's run in the sorted list
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# indices into `consts`
K_HALF, K_ONE, K_ZERO, K_ALPHA_MIN, K_ALPHA_MAX, K_T_MIN = 0, 1, 2, 3, 4, 5
N_CONSTS = 6


def make_consts(dtype: np.dtype) -> np.ndarray:
    """The float constants of the kernels in `dtype` (gsplat's float32 values for float32)."""
    return np.array([0.5, 1.0, 0.0, 1.0 / 255.0, 0.999, 1e-4], dtype=dtype)


@njit(cache=True, parallel=True)
def prepare_geometry(means2d, conics, opac, visible, width, height, consts, geom, rect):  # pragma: no cover
    """Fill geom [G,8] and rect [G,4] for visible slots (visible [G] bool)."""
    G = means2d.shape[0]
    half = consts[K_HALF]
    one = consts[K_ONE]
    for g in prange(G):
        if not visible[g]:
            rect[g, 0] = 1
            rect[g, 1] = 0
            rect[g, 2] = 1
            rect[g, 3] = 0
            continue
        mx = means2d[g, 0]
        my = means2d[g, 1]
        a = conics[g, 0]
        b = conics[g, 1]
        c = conics[g, 2]
        o = opac[g]
        geom[g, 0] = mx
        geom[g, 1] = my
        geom[g, 2] = a
        geom[g, 3] = b
        geom[g, 4] = c
        geom[g, 5] = o
        # alpha >= 1/255 needs sigma <= log(255 o); keep a margin so the prefilter never
        # rejects a pair that the exact test would accept.
        smax = math.log(255.0 * o) + 1e-3
        if smax < 0.0:
            smax = 0.0
        geom[g, 6] = smax
        geom[g, 7] = one - one
        det = a * c - b * b
        if det > 0.0 and a > 0.0 and c > 0.0:
            hx = math.sqrt(2.0 * smax * c / det) + 1.0
            hy = math.sqrt(2.0 * smax * a / det) + 1.0
            x0 = math.floor(mx - hx)
            x1 = math.ceil(mx + hx)
            y0 = math.floor(my - hy)
            y1 = math.ceil(my + hy)
            if not (x0 > -1e9 and x1 < 1e9 and y0 > -1e9 and y1 < 1e9):
                x0, x1, y0, y1 = 0.0, width - 1.0, 0.0, height - 1.0
        else:
            x0, x1, y0, y1 = 0.0, width - 1.0, 0.0, height - 1.0
        rect[g, 0] = max(0, int(x0))
        rect[g, 1] = min(width - 1, int(x1))
        rect[g, 2] = max(0, int(y0))
        rect[g, 3] = min(height - 1, int(y1))


@njit(cache=True)
def bin_tiles(order, tile_rect, cam_of, n_tiles_cam, tiles_x, n_cams):  # pragma: no cover
    """Intersections of Gaussians with tiles, sorted by (camera, tile, depth).

    order [V] int64: visible slots sorted by (camera, depth) (stable, so ties keep slot order).
    tile_rect [G,4] int32: tile x0, x1 (exclusive), y0, y1 (exclusive) of each slot.
    cam_of [G] int32: camera of each slot.
    A counting sort by tile keeps the depth order inside each tile (one global sort by
    (tile, depth) key, in O(M) after the O(V log V) depth sort).
    Returns tile_start [C*T+1], isect_gid [M] (slot), isect_slot [M] (slot-major position),
    slot_start [V+1] (slot-major range of the r-th visible slot of `order`).
    """
    V = order.shape[0]
    n_t = n_cams * n_tiles_cam
    slot_start = np.empty(V + 1, np.int64)
    counts = np.zeros(n_t + 1, np.int64)
    total = 0
    for r in range(V):
        g = order[r]
        slot_start[r] = total
        base = cam_of[g] * n_tiles_cam
        for ty in range(tile_rect[g, 2], tile_rect[g, 3]):
            for tx in range(tile_rect[g, 0], tile_rect[g, 1]):
                counts[base + ty * tiles_x + tx + 1] += 1
                total += 1
    slot_start[V] = total
    for t in range(n_t):
        counts[t + 1] += counts[t]
    tile_start = counts.copy()
    isect_gid = np.empty(total, np.int32)
    isect_slot = np.empty(total, np.int32)
    for r in range(V):
        g = order[r]
        base = cam_of[g] * n_tiles_cam
        k = slot_start[r]
        for ty in range(tile_rect[g, 2], tile_rect[g, 3]):
            for tx in range(tile_rect[g, 0], tile_rect[g, 1]):
                t = base + ty * tiles_x + tx
                pos = counts[t]
                counts[t] = pos + 1
                isect_gid[pos] = g
                isect_slot[pos] = k
                k += 1
    return tile_start, isect_gid, isect_slot, slot_start


@njit(cache=True, parallel=True)
def raster_forward(geom, rect, feats, bgs, has_bg, tile_start, isect_gid, width, height,
                   tiles_x, tiles_y, consts, out, out_alpha, out_T, out_last):  # pragma: no cover
    """Front-to-back compositing per 16x16 tile.

    out [C,H,W,D], out_alpha/out_T [C,H,W], out_last [C,H,W] int32 (index of the last
    intersection that contributed, -1 if none).
    """
    D = feats.shape[1]
    n_tiles_cam = tiles_x * tiles_y
    n_tiles = tile_start.shape[0] - 1
    half = consts[K_HALF]
    one = consts[K_ONE]
    zero = consts[K_ZERO]
    amin = consts[K_ALPHA_MIN]
    amax = consts[K_ALPHA_MAX]
    tmin = consts[K_T_MIN]
    for t in prange(n_tiles):
        cam = t // n_tiles_cam
        tt = t - cam * n_tiles_cam
        tyi = tt // tiles_x
        txi = tt - tyi * tiles_x
        px0 = txi * 16
        py0 = tyi * 16
        px1 = min(px0 + 16, width)
        py1 = min(py0 + 16, height)
        tw = px1 - px0
        npix = tw * (py1 - py0)
        T = np.empty(256, consts.dtype)
        acc = np.zeros(256 * D, consts.dtype)
        last = np.empty(256, np.int32)
        done = np.zeros(256, np.bool_)
        pxc = np.empty(16, consts.dtype)
        pyc = np.empty(16, consts.dtype)
        for i in range(16):
            pxc[i] = consts.dtype.type(px0 + i) + half
            pyc[i] = consts.dtype.type(py0 + i) + half
        for p in range(256):
            T[p] = one
            last[p] = -1
        n_done = 0
        for s in range(tile_start[t], tile_start[t + 1]):
            g = isect_gid[s]
            x0 = max(rect[g, 0], px0)
            x1 = min(rect[g, 1], px1 - 1)
            y0 = max(rect[g, 2], py0)
            y1 = min(rect[g, 3], py1 - 1)
            if x0 > x1 or y0 > y1:
                continue
            mx = geom[g, 0]
            my = geom[g, 1]
            ca = geom[g, 2]
            cb = geom[g, 3]
            cc = geom[g, 4]
            o = geom[g, 5]
            smax = geom[g, 6]
            for y in range(y0, y1 + 1):
                dy = my - pyc[y - py0]
                for x in range(x0, x1 + 1):
                    p = (y - py0) * 16 + (x - px0)
                    if done[p]:
                        continue
                    dx = mx - pxc[x - px0]
                    sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < zero or sigma > smax:
                        continue
                    alpha = min(amax, o * np.exp(-sigma))
                    if alpha < amin:
                        continue
                    Tp = T[p]
                    nT = Tp * (one - alpha)
                    if nT <= tmin:
                        done[p] = True
                        n_done += 1
                        continue
                    w = alpha * Tp
                    base = p * D
                    for k in range(D):
                        acc[base + k] += w * feats[g, k]
                    T[p] = nT
                    last[p] = s
            if n_done >= npix:
                break
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * 16 + (x - px0)
                Tp = T[p]
                for k in range(D):
                    v = acc[p * D + k]
                    if has_bg:
                        v += Tp * bgs[cam, k]
                    out[cam, y, x, k] = v
                out_alpha[cam, y, x] = one - Tp
                out_T[cam, y, x] = Tp
                out_last[cam, y, x] = last[p]


@njit(cache=True, fastmath={"reassoc", "nsz", "arcp", "contract"}, inline="never")
def _dot(a, ia, b, ib, n):  # pragma: no cover
    s = a[ia, 0] * 0
    for k in range(n):
        s += a[ia, k] * b[ib, k]
    return s


@njit(cache=True, parallel=True)
def raster_backward(geom, rect, feats, bgs, has_bg, tile_start, isect_gid, isect_slot, width,
                    height, tiles_x, tiles_y, consts, out_T, out_last, g_out, g_alpha,
                    gbuf):  # pragma: no cover
    """Back-to-front pass per tile; writes per-intersection gradients to gbuf[slot, :]:
    [d mean x, d mean y, d conic a, b, c, d opacity, d feats (D)]."""
    D = feats.shape[1]
    n_tiles_cam = tiles_x * tiles_y
    n_tiles = tile_start.shape[0] - 1
    half = consts[K_HALF]
    one = consts[K_ONE]
    zero = consts[K_ZERO]
    amin = consts[K_ALPHA_MIN]
    amax = consts[K_ALPHA_MAX]
    for t in prange(n_tiles):
        s_begin = tile_start[t]
        s_end = tile_start[t + 1]
        if s_end == s_begin:
            continue
        cam = t // n_tiles_cam
        tt = t - cam * n_tiles_cam
        tyi = tt // tiles_x
        txi = tt - tyi * tiles_x
        px0 = txi * 16
        py0 = tyi * 16
        px1 = min(px0 + 16, width)
        py1 = min(py0 + 16, height)
        T = np.ones(256, consts.dtype)
        Tf = np.zeros(256, consts.dtype)
        SG = np.zeros(256, consts.dtype)
        GA = np.zeros(256, consts.dtype)
        last = np.full(256, -1, np.int32)
        gp = np.zeros((256, D), consts.dtype)
        vloc = np.empty(6 + D, consts.dtype)
        pxc = np.empty(16, consts.dtype)
        pyc = np.empty(16, consts.dtype)
        for i in range(16):
            pxc[i] = consts.dtype.type(px0 + i) + half
            pyc[i] = consts.dtype.type(py0 + i) + half
        max_last = -1
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * 16 + (x - px0)
                Tp = out_T[cam, y, x]
                T[p] = Tp
                Tf[p] = Tp
                GA[p] = g_alpha[cam, y, x]
                lp = out_last[cam, y, x]
                last[p] = lp
                if lp > max_last:
                    max_last = lp
                sg = zero
                for k in range(D):
                    gk = g_out[cam, y, x, k]
                    gp[p, k] = gk
                    if has_bg:
                        sg += bgs[cam, k] * gk
                SG[p] = Tp * sg
        for s in range(s_end - 1, s_begin - 1, -1):
            g = isect_gid[s]
            for k in range(6 + D):
                vloc[k] = zero
            x0 = max(rect[g, 0], px0)
            x1 = min(rect[g, 1], px1 - 1)
            y0 = max(rect[g, 2], py0)
            y1 = min(rect[g, 3], py1 - 1)
            if s <= max_last and x0 <= x1 and y0 <= y1:
                mx = geom[g, 0]
                my = geom[g, 1]
                ca = geom[g, 2]
                cb = geom[g, 3]
                cc = geom[g, 4]
                o = geom[g, 5]
                smax = geom[g, 6]
                for y in range(y0, y1 + 1):
                    dy = my - pyc[y - py0]
                    for x in range(x0, x1 + 1):
                        p = (y - py0) * 16 + (x - px0)
                        if s > last[p]:
                            continue
                        dx = mx - pxc[x - px0]
                        sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < zero or sigma > smax:
                            continue
                        vis = np.exp(-sigma)
                        raw = o * vis
                        alpha = min(amax, raw)
                        if alpha < amin:
                            continue
                        ra = one / (one - alpha)
                        Ti = T[p] * ra
                        w = alpha * Ti
                        cg = _dot(feats, g, gp, p, D)
                        for k in range(D):
                            vloc[6 + k] += w * gp[p, k]
                        v_alpha = Ti * cg + (GA[p] * Tf[p] - SG[p]) * ra
                        if raw <= amax:
                            v_sigma = -v_alpha * raw
                            vloc[0] += v_sigma * (ca * dx + cb * dy)
                            vloc[1] += v_sigma * (cb * dx + cc * dy)
                            vloc[2] += v_sigma * half * dx * dx
                            vloc[3] += v_sigma * dx * dy
                            vloc[4] += v_sigma * half * dy * dy
                            vloc[5] += v_alpha * vis
                        SG[p] += w * cg
                        T[p] = Ti
            slot = isect_slot[s]
            for k in range(6 + D):
                gbuf[slot, k] = vloc[k]


@njit(cache=True, parallel=True)
def reduce_grads(order, slot_start, gbuf, grads):  # pragma: no cover
    """grads[g, :] = sum of gbuf rows of slot g (grads zero-initialised by the caller)."""
    V = order.shape[0]
    K = gbuf.shape[1]
    for r in prange(V):
        g = order[r]
        for i in range(slot_start[r], slot_start[r + 1]):
            for k in range(K):
                grads[g, k] += gbuf[i, k]
