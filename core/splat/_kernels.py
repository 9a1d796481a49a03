"""numba kernels of the CPU backend: tile binning, forward and backward compositing, reduction.

Every kernel is compiled once per dtype (float32 / float64) and cached on disk (cache=True).
Floating point constants come in through the `consts` array so that arithmetic stays in the
dtype of the data (a Python float literal would promote float32 maths to float64).

Layouts (G = C*N flattened camera-major Gaussian slots):
    geom  [G,8]  mean x, mean y, conic a, b, c, opacity, prefilter sigma threshold, unused
    rect  [G,4]  inclusive pixel bbox x0, x1, y0, y1 where alpha can reach 1/255 (clipped)
    feats [G,Dp] features per slot, zero padded to a multiple of 8 channels (SIMD-friendly)
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
K_LOG2E, K_LN2_HI, K_LN2_LO = 6, 7, 8
K_POW2 = 10  # 2^-n, n = 0..11
K_POLY = 24  # 1/k!, k = 0..11
K_NF = 36  # float(n), n = 0..11 (int -> float in the data dtype without a float64 detour)


def make_consts(dtype: np.dtype) -> np.ndarray:
    """The float constants of the kernels in `dtype` (gsplat's float32 values for float32)."""
    c = np.zeros(48, dtype=np.float64)
    c[:6] = [0.5, 1.0, 0.0, 1.0 / 255.0, 0.999, 1e-4]
    c[K_LOG2E] = 1.4426950408889634
    c[K_LN2_HI] = 0.693359375  # few mantissa bits: n * LN2_HI is exact
    c[K_LN2_LO] = math.log(2.0) - 0.693359375
    c[K_POW2:K_POW2 + 12] = [2.0 ** -n for n in range(12)]
    c[K_POLY:K_POLY + 12] = [1.0 / math.factorial(k) for k in range(12)]
    c[K_NF:K_NF + 12] = np.arange(12)
    return c.astype(dtype)


@njit(cache=True)
def prepare_geometry(means2d, conics, opac, visible, width, height, consts, geom, rect):  # pragma: no cover
    """Fill geom [G,8] and rect [G,4] for visible slots (visible [G] bool)."""
    G = means2d.shape[0]
    half = consts[K_HALF]
    one = consts[K_ONE]
    for g in range(G):
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
            # the ellipse sigma <= smax spans mx +- sqrt(2 smax c / det) (my +- ..a..); pixel x
            # (centre x + 0.5) is inside only if |x + 0.5 - mx| <= hx. 0.01 px of slack covers
            # the rounding of the float32 pixel offsets.
            hx = math.sqrt(2.0 * smax * c / det) + 0.01
            hy = math.sqrt(2.0 * smax * a / det) + 0.01
            x0 = math.ceil(mx - hx - 0.5)
            x1 = math.floor(mx + hx - 0.5)
            y0 = math.ceil(my - hy - 0.5)
            y1 = math.floor(my + hy - 0.5)
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


@njit(cache=True, inline="always")
def _exp_neg(s, consts):  # pragma: no cover
    """exp(-s) for 0 <= s < 13.5, branch-free (vectorizes), ~1 ulp in float32 and float64.

    s = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^-r by a degree 11 Taylor
    polynomial, 2^-n by four selects."""
    fn = np.floor(s * consts[K_LOG2E] + consts[K_HALF])
    r = (s - fn * consts[K_LN2_HI]) - fn * consts[K_LN2_LO]
    mr = -r
    q = consts[K_POLY + 11]
    q = q * mr + consts[K_POLY + 10]
    q = q * mr + consts[K_POLY + 9]
    q = q * mr + consts[K_POLY + 8]
    q = q * mr + consts[K_POLY + 7]
    q = q * mr + consts[K_POLY + 6]
    q = q * mr + consts[K_POLY + 5]
    q = q * mr + consts[K_POLY + 4]
    q = q * mr + consts[K_POLY + 3]
    q = q * mr + consts[K_POLY + 2]
    q = q * mr + consts[K_POLY + 1]
    q = q * mr + consts[K_POLY + 0]
    one = consts[K_ONE]
    e8 = fn >= consts[K_NF + 8]
    q = q * (consts[K_POW2 + 8] if e8 else one)
    fn = fn - (consts[K_NF + 8] if e8 else consts[K_ZERO])
    e4 = fn >= consts[K_NF + 4]
    q = q * (consts[K_POW2 + 4] if e4 else one)
    fn = fn - (consts[K_NF + 4] if e4 else consts[K_ZERO])
    e2 = fn >= consts[K_NF + 2]
    q = q * (consts[K_POW2 + 2] if e2 else one)
    fn = fn - (consts[K_NF + 2] if e2 else consts[K_ZERO])
    e1 = fn >= consts[K_NF + 1]
    return q * (consts[K_POW2 + 1] if e1 else one)


@njit(cache=True, parallel=True)
def raster_forward(geom, rect, feats, bgs, has_bg, tile_start, isect_gid, width, height,
                   tiles_x, tiles_y, consts, out, out_alpha, out_T, out_last):  # pragma: no cover
    """Front-to-back compositing per 16x16 tile.

    Per intersection and bbox row, the 16 pixels of the tile row are evaluated branch-free
    (SIMD), then the contributing pixels accumulate their Dp channels (SIMD).
    feats [G,Dp] with Dp a multiple of 8 (zero padded); out [C,H,W,D] (D <= Dp),
    out_alpha/out_T [C,H,W], out_last [C,H,W] int32 (index of the last intersection that
    contributed, -1 if none).
    """
    D = out.shape[3]
    Dp = feats.shape[1]
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
        npix = (px1 - px0) * (py1 - py0)
        T = np.empty(256, consts.dtype)
        alive = np.empty(256, consts.dtype)
        acc = np.zeros((256, Dp), consts.dtype)
        last = np.empty(256, np.int32)
        wrow = np.empty(16, consts.dtype)
        pxc = np.empty(16, consts.dtype)
        pyc = np.empty(16, consts.dtype)
        for i in range(16):
            pxc[i] = (zero + (px0 + i)) + half
            pyc[i] = (zero + (py0 + i)) + half
        for p in range(256):
            T[p] = one
            last[p] = -1
            inside = (p // 16) < (py1 - py0) and (p % 16) < (px1 - px0)
            alive[p] = one if inside else zero
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
                row = (y - py0) * 16
                hdy = half * cc * dy * dy
                bdy = cb * dy
                stops = 0
                for j in range(16):
                    p = row + j
                    dx = mx - pxc[j]
                    sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    sc = min(max(sigma, zero), smax)
                    a = min(amax, o * _exp_neg(sc, consts))
                    ok = (sigma >= zero) and (sigma <= smax) and (a >= amin) and (alive[p] > zero)
                    Tp = T[p]
                    nT = Tp * (one - a)
                    stop = ok and (nT <= tmin)
                    con = ok and (nT > tmin)
                    wrow[j] = a * Tp if con else zero
                    T[p] = nT if con else Tp
                    alive[p] = zero if stop else alive[p]
                    last[p] = s if con else last[p]
                    stops += 1 if stop else 0
                n_done += stops
                for j in range(x0 - px0, x1 - px0 + 1):
                    w = wrow[j]
                    if w != zero:
                        p = row + j
                        for k0 in range(0, Dp, 8):
                            f0 = feats[g, k0]
                            f1 = feats[g, k0 + 1]
                            f2 = feats[g, k0 + 2]
                            f3 = feats[g, k0 + 3]
                            f4 = feats[g, k0 + 4]
                            f5 = feats[g, k0 + 5]
                            f6 = feats[g, k0 + 6]
                            f7 = feats[g, k0 + 7]
                            acc[p, k0] += w * f0
                            acc[p, k0 + 1] += w * f1
                            acc[p, k0 + 2] += w * f2
                            acc[p, k0 + 3] += w * f3
                            acc[p, k0 + 4] += w * f4
                            acc[p, k0 + 5] += w * f5
                            acc[p, k0 + 6] += w * f6
                            acc[p, k0 + 7] += w * f7
            if n_done >= npix:
                break
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * 16 + (x - px0)
                Tp = T[p]
                if has_bg:
                    for k in range(D):
                        out[cam, y, x, k] = acc[p, k] + Tp * bgs[cam, k]
                else:
                    for k in range(D):
                        out[cam, y, x, k] = acc[p, k]
                out_alpha[cam, y, x] = one - Tp
                out_T[cam, y, x] = Tp
                out_last[cam, y, x] = last[p]


@njit(cache=True, parallel=True)
def raster_backward(geom, rect, feats, bgs, has_bg, tile_start, isect_gid, isect_slot, width,
                    height, tiles_x, tiles_y, consts, out_T, out_last, g_out, g_alpha,
                    gbuf):  # pragma: no cover
    """Back-to-front pass per tile; writes per-intersection gradients to gbuf[slot, :]:
    [d mean x, d mean y, d conic a, b, c, d opacity, 0, 0, d feats (Dp)].

    Per pixel (front-to-back weights w_i = alpha_i T_i, T_i recovered from the final T by
    division): dL/dfeat_i += w_i g; dL/dalpha_i = T_i (feat_i . g) + (gA T_final - S_i)/(1-alpha_i)
    with S_i = sum_{j>i} w_j (feat_j . g) + T_final (bg . g)."""
    D = g_out.shape[3]
    Dp = feats.shape[1]
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
        TfGA = np.zeros(256, consts.dtype)
        SG = np.zeros(256, consts.dtype)
        last = np.full(256, -1, np.int32)
        gp = np.zeros((256, Dp), consts.dtype)
        vf = np.empty(Dp, consts.dtype)
        pxc = np.empty(16, consts.dtype)
        pyc = np.empty(16, consts.dtype)
        wrow = np.empty(16, consts.dtype)
        cgrow = np.empty(16, consts.dtype)
        l_mx = np.empty(16, consts.dtype)
        l_my = np.empty(16, consts.dtype)
        l_a = np.empty(16, consts.dtype)
        l_b = np.empty(16, consts.dtype)
        l_c = np.empty(16, consts.dtype)
        l_o = np.empty(16, consts.dtype)
        r_ra = np.empty(16, consts.dtype)
        r_ti = np.empty(16, consts.dtype)
        r_raw = np.empty(16, consts.dtype)
        r_vis = np.empty(16, consts.dtype)
        for i in range(16):
            pxc[i] = (zero + (px0 + i)) + half
            pyc[i] = (zero + (py0 + i)) + half
        max_last = -1
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * 16 + (x - px0)
                Tp = out_T[cam, y, x]
                T[p] = Tp
                TfGA[p] = Tp * g_alpha[cam, y, x]
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
            slot = isect_slot[s]
            for k in range(Dp):
                vf[k] = zero
            for j in range(16):
                l_mx[j] = zero
                l_my[j] = zero
                l_a[j] = zero
                l_b[j] = zero
                l_c[j] = zero
                l_o[j] = zero
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
                    row = (y - py0) * 16
                    # phase 1: the 16 pixels of the row, branch-free
                    for j in range(16):
                        p = row + j
                        dx = mx - pxc[j]
                        sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        sc = min(max(sigma, zero), smax)
                        vis = _exp_neg(sc, consts)
                        raw = o * vis
                        alpha = min(amax, raw)
                        ok = (s <= last[p]) and (sigma >= zero) and (sigma <= smax) and (alpha >= amin)
                        ra = one / (one - alpha)
                        Tp = T[p]
                        Ti = Tp * ra
                        wrow[j] = alpha * Ti if ok else zero
                        T[p] = Ti if ok else Tp
                        r_ra[j] = ra
                        r_ti[j] = Ti
                        r_raw[j] = raw
                        r_vis[j] = vis
                        cgrow[j] = zero
                    # phase 2: channels of the contributing pixels
                    for j in range(x0 - px0, x1 - px0 + 1):
                        w = wrow[j]
                        if w != zero:
                            p = row + j
                            c0 = zero
                            c1 = zero
                            c2 = zero
                            c3 = zero
                            c4 = zero
                            c5 = zero
                            c6 = zero
                            c7 = zero
                            for k0 in range(0, Dp, 8):
                                g0 = gp[p, k0]
                                g1 = gp[p, k0 + 1]
                                g2 = gp[p, k0 + 2]
                                g3 = gp[p, k0 + 3]
                                g4 = gp[p, k0 + 4]
                                g5 = gp[p, k0 + 5]
                                g6 = gp[p, k0 + 6]
                                g7 = gp[p, k0 + 7]
                                c0 += feats[g, k0] * g0
                                c1 += feats[g, k0 + 1] * g1
                                c2 += feats[g, k0 + 2] * g2
                                c3 += feats[g, k0 + 3] * g3
                                c4 += feats[g, k0 + 4] * g4
                                c5 += feats[g, k0 + 5] * g5
                                c6 += feats[g, k0 + 6] * g6
                                c7 += feats[g, k0 + 7] * g7
                                vf[k0] += w * g0
                                vf[k0 + 1] += w * g1
                                vf[k0 + 2] += w * g2
                                vf[k0 + 3] += w * g3
                                vf[k0 + 4] += w * g4
                                vf[k0 + 5] += w * g5
                                vf[k0 + 6] += w * g6
                                vf[k0 + 7] += w * g7
                            cgrow[j] = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7))
                    # phase 3: geometry gradients, branch-free over the 16 pixels
                    for j in range(16):
                        p = row + j
                        w = wrow[j]
                        cg = cgrow[j]
                        dx = mx - pxc[j]
                        v_alpha = r_ti[j] * cg + (TfGA[p] - SG[p]) * r_ra[j]
                        raw = r_raw[j]
                        use = (w != zero) and (raw <= amax)
                        v_sigma = -v_alpha * raw if use else zero
                        l_mx[j] += v_sigma * (ca * dx + cb * dy)
                        l_my[j] += v_sigma * (cb * dx + cc * dy)
                        l_a[j] += v_sigma * half * dx * dx
                        l_b[j] += v_sigma * dx * dy
                        l_c[j] += v_sigma * half * dy * dy
                        l_o[j] += v_alpha * r_vis[j] if use else zero
                        SG[p] += w * cg
            s_mx = zero
            s_my = zero
            s_a = zero
            s_b = zero
            s_c = zero
            s_o = zero
            for j in range(16):
                s_mx += l_mx[j]
                s_my += l_my[j]
                s_a += l_a[j]
                s_b += l_b[j]
                s_c += l_c[j]
                s_o += l_o[j]
            gbuf[slot, 0] = s_mx
            gbuf[slot, 1] = s_my
            gbuf[slot, 2] = s_a
            gbuf[slot, 3] = s_b
            gbuf[slot, 4] = s_c
            gbuf[slot, 5] = s_o
            gbuf[slot, 6] = zero
            gbuf[slot, 7] = zero
            for k in range(Dp):
                gbuf[slot, 8 + k] = vf[k]


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
