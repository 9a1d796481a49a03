"""Analytic ray casting of a procedural head: anti-aliased RGB, exact labels, depth, mask.

Each pixel casts rays against every ellipsoid of the head (culled by the part's screen-space
bounding box); the nearest hit wins. Clipped shells (hair) fall back to their exit point when the
entry point is clipped away, so the inside of the hair shows where it should. Glasses lenses are
tinted see-through: the RGB blends the lens with what lies behind it, the label is eye_g.

Labels, depth and mask come from one ray through the pixel centre (exact, no blending); RGB
averages `samples` rays on a rotated grid inside the pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splatrefine.types import Cameras

from .head import HeadParams, Part, build_parts
from .materials import L, albedo, keep_hit, labels

NEAR = 0.01
# lights fixed in the head frame (a studio capture): direction towards the light, intensity
LIGHTS = ((np.array([0.45, 0.55, 0.75]), 0.72), (np.array([-0.6, 0.1, 0.5]), 0.22), (np.array([0.0, 0.5, -0.8]), 0.25))
AMBIENT = 0.28
# rotated-grid supersampling offsets (pixel units); the first ray is always the pixel centre
SUBSAMPLES = np.array([[0.125, 0.375], [0.375, -0.125], [-0.125, -0.375], [-0.375, 0.125]])


@dataclass
class HeadRender:
    """rgb uint8 [C,H,W,3], labels uint8 [C,H,W], depth float32 [C,H,W] (camera z, 0 = background),
    mask bool [C,H,W] (foreground)."""

    rgb: np.ndarray | None
    labels: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


_KERNELS: dict = {}


def _kernels() -> dict:
    """numba kernels (compiled on first use, cached on disk). Small [N,3] @ [3,3] products through
    BLAS threads are slow and erratic on a busy machine, and numpy's reductions over an axis of 3
    and its boolean-mask copies dominate a render, so these loops are compiled instead.
    `intersect` and `to_local` use fastmath; every other kernel replaces numpy expressions and
    does without it, repeating their operations in their order so that the results are the same
    to the bit (the renders are compared byte for byte against the numpy versions)."""
    if not _KERNELS:
        import numba

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def intersect(o, d, c, rot, radii, t0, t1):  # pragma: no cover - compiled
            oo = np.empty(3)
            for j in range(3):
                oo[j] = ((o[0] - c[0]) * rot[0, j] + (o[1] - c[1]) * rot[1, j] + (o[2] - c[2]) * rot[2, j]) / radii[j]
            cc = oo[0] * oo[0] + oo[1] * oo[1] + oo[2] * oo[2] - 1.0
            for n in range(d.shape[0]):
                a = 0.0
                b = 0.0
                for j in range(3):
                    dj = (d[n, 0] * rot[0, j] + d[n, 1] * rot[1, j] + d[n, 2] * rot[2, j]) / radii[j]
                    a += dj * dj
                    b += 2.0 * dj * oo[j]
                disc = b * b - 4.0 * a * cc
                if disc < 0.0:
                    t0[n] = np.nan
                    t1[n] = np.nan
                else:
                    sq = np.sqrt(disc)
                    t0[n] = (-b - sq) / (2.0 * a)
                    t1[n] = (-b + sq) / (2.0 * a)

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def to_local(p, c, rot, radii, out):  # pragma: no cover - compiled
            for n in range(p.shape[0]):
                for j in range(3):
                    out[n, j] = ((p[n, 0] - c[0]) * rot[0, j] + (p[n, 1] - c[1]) * rot[1, j]
                                 + (p[n, 2] - c[2]) * rot[2, j]) / radii[j]

        @numba.njit(cache=True, nogil=True)
        def ray_dirs(K, R, offsets, dirs):  # pragma: no cover - compiled
            # direction (camera z = 1) of ray s of pixel (i, j), with the operations and order of
            # the numpy expressions it replaces: an einsum sums its products from +0
            for i in range(dirs.shape[0]):
                for j in range(dirs.shape[1]):
                    for s in range(dirs.shape[2]):
                        u = j + 0.5 + offsets[s, 0]
                        v = i + 0.5 + offsets[s, 1]
                        xc = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0]
                        yc = (v - K[1, 2]) / K[1, 1]
                        for k in range(3):
                            acc = 0.0
                            acc += xc * R[0, k]
                            acc += yc * R[1, k]
                            acc += 1.0 * R[2, k]
                            dirs[i, j, s, k] = acc

        @numba.njit(cache=True, nogil=True)
        def row_norms(v, out):  # pragma: no cover - compiled
            for n in range(v.shape[0]):
                out[n] = np.sqrt(v[n, 0] * v[n, 0] + v[n, 1] * v[n, 1] + v[n, 2] * v[n, 2])

        @numba.njit(cache=True, nogil=True)
        def first_hit(t0, t1, near, hit, ins):  # pragma: no cover - compiled
            for n in range(t0.shape[0]):
                enters, exits = t0[n] > near, t1[n] > near
                hit[n] = t0[n] if enters else (t1[n] if exits else np.nan)
                ins[n] = exits and not enters

        @numba.njit(cache=True, nogil=True)
        def closer(hit, ins, k, best_t, best_k, inside):  # pragma: no cover - compiled
            for i in range(hit.shape[0]):
                for j in range(hit.shape[1]):
                    for s in range(hit.shape[2]):
                        if np.isfinite(hit[i, j, s]) and hit[i, j, s] < best_t[i, j, s]:
                            best_t[i, j, s] = hit[i, j, s]
                            best_k[i, j, s] = k
                            inside[i, j, s] = ins[i, j, s]

        @numba.njit(cache=True, nogil=True)
        def surface_points(origin, dirs, best_t, sel, d, pts):  # pragma: no cover - compiled
            # dirs[sel] and origin + best_t[sel] * dirs[sel], in numpy's (C) order
            n = 0
            for i in range(sel.shape[0]):
                for j in range(sel.shape[1]):
                    for s in range(sel.shape[2]):
                        if sel[i, j, s]:
                            for c in range(3):
                                d[n, c] = dirs[i, j, s, c]
                                pts[n, c] = origin[c] + best_t[i, j, s] * dirs[i, j, s, c]
                            n += 1

        @numba.njit(cache=True, nogil=True)
        def diffuse(normal, view, ldir, power, light, half, lit):  # pragma: no cover - compiled
            # adds one light's diffuse term to `light` (float32, like numpy's float32 products);
            # `half`: the unit half vectors, `lit`: facing the light
            for n in range(normal.shape[0]):
                ndl = normal[n, 0] * ldir[0] + normal[n, 1] * ldir[1] + normal[n, 2] * ldir[2]
                light[n] += power * np.float32(0.0 if ndl < 0.0 else ndl)
                lit[n] = ndl > 0.0
                x, y, z = ldir[0] + view[n, 0], ldir[1] + view[n, 1], ldir[2] + view[n, 2]
                norm = np.sqrt(x * x + y * y + z * z)
                half[n, 0] = x / norm
                half[n, 1] = y / norm
                half[n, 2] = z / norm

        @numba.njit(cache=True, nogil=True)
        def background(dirs, best_k, backdrop, col):  # pragma: no cover - compiled
            # a vertical gradient of the backdrop over the rays that miss the head; the norm sums
            # its squares left to right, as numpy's does
            for i in range(dirs.shape[0]):
                for j in range(dirs.shape[1]):
                    for s in range(dirs.shape[2]):
                        if best_k[i, j, s] < 0:
                            x, y, z = dirs[i, j, s, 0], dirs[i, j, s, 1], dirs[i, j, s, 2]
                            t = 0.88 + 0.12 * (y / np.sqrt(x * x + y * y + z * z))
                            for c in range(3):
                                col[i, j, s, c] = np.float64(backdrop[c]) * t

        @numba.njit(cache=True, nogil=True)
        def mean_rays(col, out):  # pragma: no cover - compiled
            # float32 sums left to right, as numpy's mean over the rays axis
            for i in range(col.shape[0]):
                for j in range(col.shape[1]):
                    for c in range(3):
                        acc = col[i, j, 0, c]
                        for s in range(1, col.shape[2]):
                            acc += col[i, j, s, c]
                        out[i, j, c] = acc / col.shape[2]

        _KERNELS.update(intersect=intersect, to_local=to_local, ray_dirs=ray_dirs, row_norms=row_norms,
                        first_hit=first_hit, closer=closer, surface_points=surface_points, diffuse=diffuse,
                        background=background, mean_rays=mean_rays)
    return _KERNELS


def _intersect(part: Part, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry/exit ray parameters [N] of rays o + t d (d [N,3]) with the ellipsoid (nan = miss)."""
    d = np.ascontiguousarray(d, dtype=np.float64)
    t0 = np.empty(len(d))
    t1 = np.empty(len(d))
    _kernels()["intersect"](np.asarray(o, np.float64), d, part.center.astype(np.float64),
                            np.ascontiguousarray(part.rot, dtype=np.float64), part.radii.astype(np.float64), t0, t1)
    return t0, t1


def _local(part: Part, pts: np.ndarray) -> np.ndarray:
    out = np.empty((len(pts), 3))
    _kernels()["to_local"](np.ascontiguousarray(pts, dtype=np.float64), part.center.astype(np.float64),
                           np.ascontiguousarray(part.rot, dtype=np.float64), part.radii.astype(np.float64), out)
    return out


def _row_norms(v: np.ndarray) -> np.ndarray:
    """Lengths [N,1] of the rows of v [N,3]; the same bits as np.linalg.norm(v, axis=1, keepdims=True)
    (squares summed left to right), without numpy's slow reduction over an axis of 3."""
    out = np.empty((len(v), 1))
    _kernels()["row_norms"](v, out)
    return out


def _window(part: Part, viewmat: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[slice, slice] | None:
    """Pixel rows/cols that can see the part (its bounding sphere), or None when off-screen."""
    pc = viewmat[:3, :3] @ part.center + viewmat[:3, 3]
    rad = float(np.max(part.radii)) * 1.02
    if pc[2] - rad <= NEAR:
        if pc[2] + rad <= NEAR:
            return None
        return slice(0, height), slice(0, width)
    u = K[0, 0] * pc[0] / pc[2] + K[0, 2]
    v = K[1, 1] * pc[1] / pc[2] + K[1, 2]
    r = max(K[0, 0], K[1, 1]) * rad / (pc[2] - rad) + 2.0
    x0, x1 = int(max(np.floor(u - r), 0)), int(min(np.ceil(u + r), width))
    y0, y1 = int(max(np.floor(v - r), 0)), int(min(np.ceil(v + r), height))
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


SMOOTH_KINDS = ("skin", "neck")


def _normal(part: Part, loc: np.ndarray) -> np.ndarray:
    """Unit outward normals [N,3] at unit-sphere coordinates `loc` of an ellipsoid."""
    n = np.einsum("nj,kj->nk", loc / part.radii, part.rot)
    return n / _row_norms(n)


def _blend_normals(part: Part, normal: np.ndarray, pts: np.ndarray, others: list[Part], width: float = 0.12) -> np.ndarray:
    """Soften the shading crease where two skin ellipsoids meet: near another part's surface
    (|implicit value| < width) its normal is blended in. Shading only; labels are untouched."""
    acc = normal.copy()
    for q in others:
        lq = _local(q, pts)
        f = np.einsum("ij,ij->i", lq, lq) - 1.0
        w = np.exp(-(f / width) ** 2)
        near = w > 1e-3
        if near.any():
            acc[near] += w[near, None] * _normal(q, lq[near])
    return acc / np.maximum(_row_norms(acc), 1e-9)


def _shade(normal: np.ndarray, view: np.ndarray, albedo: np.ndarray, gloss: np.ndarray) -> np.ndarray:
    """Diffuse + ambient + a little Blinn-Phong specular. normal, view (towards camera) [N,3]."""
    light = np.full(len(normal), AMBIENT, dtype=np.float32)
    spec = np.zeros(len(normal), dtype=np.float32)
    for direction, power in LIGHTS:
        ldir = direction / np.linalg.norm(direction)
        half = np.empty_like(view)
        lit = np.empty(len(normal), dtype=bool)
        _kernels()["diffuse"](normal, view, ldir, np.float32(power), light, half, lit)
        spec += power * np.clip(np.einsum("ij,ij->i", normal, half), 0.0, None).astype(np.float32) ** 40 * lit
    return albedo * light[:, None] + (gloss * spec)[:, None]


def render_head(head: HeadParams, cameras: Cameras, rgb: bool = True, threads: int = 2) -> HeadRender:
    """Render the head at every camera of `cameras` (OpenCV world-to-camera viewmats), `threads`
    cameras at a time (numpy and the numba kernels release the GIL)."""
    parts = build_parts(head)
    C, H, W = len(cameras), int(cameras.height), int(cameras.width)
    offsets = np.vstack([[0.0, 0.0], SUBSAMPLES]) if rgb else np.zeros((1, 2))
    out_rgb = np.zeros((C, H, W, 3), dtype=np.uint8) if rgb else None
    out_lab = np.zeros((C, H, W), dtype=np.uint8)
    out_depth = np.zeros((C, H, W), dtype=np.float32)

    def one(ci: int) -> None:
        lab, depth, img = _render_view(head, parts, cameras.viewmats[ci], cameras.Ks[ci], W, H, offsets)
        out_lab[ci] = lab
        out_depth[ci] = depth
        if rgb:
            out_rgb[ci] = img

    if C > 1 and threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        from .texture import _kernel

        _kernels(), _kernel()  # compile (or load) the kernels once, before the threads start

        with ThreadPoolExecutor(max_workers=min(threads, C)) as pool:
            list(pool.map(one, range(C)))
    else:
        for ci in range(C):
            one(ci)
    return HeadRender(out_rgb, out_lab, out_depth, out_lab != 0)


def _render_view(head: HeadParams, parts: list[Part], vm: np.ndarray, K: np.ndarray, W: int, H: int,
                 offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One camera: (labels uint8 [H,W], depth float32 [H,W], rgb uint8 [H,W,3] or None). Ray 0 of
    each pixel (its centre) gives the label and depth, the other rays the colour."""
    vm = np.asarray(vm, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    windows = [_window(p, vm, K, W, H) for p in parts]
    opaque = [(p, win) for p, win in zip(parts, windows) if p.kind != "lens"]
    lenses = [(p, win) for p, win in zip(parts, windows) if p.kind == "lens" and win is not None]
    R, t = vm[:3, :3], vm[:3, 3]
    origin = -R.T @ t
    dirs = np.empty((H, W, len(offsets), 3))
    _kernels()["ray_dirs"](K, np.ascontiguousarray(R), offsets, dirs)
    best_t, best_k, inside = _cast_opaque(head, opaque, origin, dirs)
    lab = np.zeros((H, W), dtype=np.uint8)
    for k, (part, win) in enumerate(opaque):
        if win is not None:
            _label_part(head, part, k, origin, dirs[win][:, :, 0], best_t[win][:, :, 0], best_k[win][:, :, 0], lab[win])
    col = None
    if len(offsets) > 1:
        col = _colour_opaque(head, opaque, origin, dirs[:, :, 1:], best_t[:, :, 1:], best_k[:, :, 1:], inside[:, :, 1:])
    for part, win in lenses:
        t0 = _intersect(part, origin, dirs[win].reshape(-1, 3))[0].reshape(best_t[win].shape)
        front = (t0 > NEAR) & (t0 < best_t[win])
        if not front.any():
            continue
        lab[win][front[:, :, 0]] = L["eye_g"]
        if col is not None:
            _colour_lens(head, part, origin, dirs[win][:, :, 1:], t0[:, :, 1:], front[:, :, 1:], col[win])
        best_t[win][front] = t0[front]
    hit0 = np.isfinite(best_t[:, :, 0])
    depth = np.where(hit0, best_t[:, :, 0], 0.0).astype(np.float32)
    img = None
    if col is not None:
        img = np.empty((H, W, 3), dtype=np.float32)
        _kernels()["mean_rays"](col, img)
        img = np.clip(np.round(img ** (1 / 1.15) * 255.0), 0, 255).astype(np.uint8)
    return lab, depth, img


def _cast_opaque(head: HeadParams, opaque: list[tuple[Part, tuple[slice, slice] | None]], origin: np.ndarray,
                 dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest opaque hit of every ray of `dirs` [H,W,S,3]: (ray parameter t, inf = none; index into
    `opaque`, -1 = none; whether the ray starts inside the part) [H,W,S]."""
    best_t = np.full(dirs.shape[:3], np.inf)
    best_k = np.full(dirs.shape[:3], -1, dtype=np.int16)
    inside = np.zeros(dirs.shape[:3], dtype=bool)
    for k, (part, win) in enumerate(opaque):
        if win is None:
            continue
        d = dirs[win].reshape(-1, 3)
        t0, t1 = _intersect(part, origin, d)
        # hit: the first crossing past the near plane (nan = none); ins: the ray starts inside
        hit, ins = np.empty(len(d)), np.empty(len(d), dtype=bool)
        _kernels()["first_hit"](t0, t1, NEAR, hit, ins)
        if part.kind.startswith("hair_"):
            _clip_shell(head, part, origin, d, t0, t1, hit, ins)
        shape = best_t[win].shape
        _kernels()["closer"](hit.reshape(shape), ins.reshape(shape), k, best_t[win], best_k[win], inside[win])
    return best_t, best_k, inside


def _clip_shell(head: HeadParams, part: Part, origin: np.ndarray, d: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                hit: np.ndarray, ins: np.ndarray) -> None:
    """Drop the hits (in place) a clipped shell has cut away; where the entry point is cut away,
    look at the exit point instead (the inside of the shell)."""
    ok = np.isfinite(hit)
    if not ok.any():
        return
    pts = origin + hit[ok, None] * d[ok]
    keep = keep_hit(part, _local(part, pts), pts, head.seed)
    idx = np.nonzero(ok)[0]
    redo = idx[~keep & (t0[idx] > NEAR)]
    hit[idx[~keep]] = np.nan
    if len(redo):
        pts2 = origin + t1[redo, None] * d[redo]
        keep2 = keep_hit(part, _local(part, pts2), pts2, head.seed)
        hit[redo[keep2]] = t1[redo[keep2]]
        ins[redo[keep2]] = True


def _colour_opaque(head: HeadParams, opaque: list[tuple[Part, tuple[slice, slice] | None]], origin: np.ndarray,
                   dirs: np.ndarray, best_t: np.ndarray, best_k: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Colour float32 [H,W,S,3] of the rays `dirs` [H,W,S,3] given their nearest opaque hits: the
    shaded part, or the backdrop."""
    col = np.zeros(dirs.shape, dtype=np.float32)
    _kernels()["background"](dirs, best_k, np.asarray(head.backdrop, dtype=np.float32), col)
    smooth = [p for p, _ in opaque if p.kind in SMOOTH_KINDS]
    for k, (part, win) in enumerate(opaque):
        if win is not None:
            _colour_part(head, part, k, smooth, origin, dirs[win], best_t[win], best_k[win], inside[win], col[win])
    return col


def _label_part(head: HeadParams, part: Part, k: int, origin: np.ndarray, dirs: np.ndarray, best_t: np.ndarray,
                best_k: np.ndarray, lab: np.ndarray) -> None:
    """Write (in place) the labels of the pixels whose centre ray hits opaque part number `k`."""
    sel = best_k == k
    if sel.any():
        pts = origin + best_t[sel][:, None] * dirs[sel]
        lab[sel] = labels(part, _local(part, pts), pts, head)


def _colour_part(head: HeadParams, part: Part, k: int, smooth: list[Part], origin: np.ndarray, dirs: np.ndarray,
                 best_t: np.ndarray, best_k: np.ndarray, inside: np.ndarray, col: np.ndarray) -> None:
    """Write (in place) the shaded colour of the rays that hit opaque part number `k`."""
    sel = best_k == k
    n = np.count_nonzero(sel)
    if not n:
        return
    d, pts = np.empty((n, 3)), np.empty((n, 3))
    _kernels()["surface_points"](origin, dirs, best_t, sel, d, pts)
    loc = _local(part, pts)
    normal = _normal(part, loc)
    if part.kind in SMOOTH_KINDS:
        normal = _blend_normals(part, normal, pts, [q for q in smooth if q is not part])
    normal[inside[sel]] *= -1.0
    alb, gloss = albedo(part, loc, pts, head)
    view = -d / _row_norms(d)
    col[sel] = _shade(normal, view, alb, gloss)


def _colour_lens(head: HeadParams, part: Part, origin: np.ndarray, dirs: np.ndarray, t0: np.ndarray,
                 front: np.ndarray, col: np.ndarray) -> None:
    """Blend (in place) a tinted lens, or its rim, over the colour of the rays in `front` of it."""
    d = dirs[front]
    pts = origin + t0[front][:, None] * d
    loc = _local(part, pts)
    rim = np.hypot(loc[:, 0], loc[:, 1]) > 0.86
    n = len(pts)
    frame_col = _shade(np.tile(part.rot[:, 2], (n, 1)), -d / _row_norms(d),
                       np.tile(np.asarray(head.frame, dtype=np.float32), (n, 1)), np.full(n, 0.5, np.float32))
    tint = np.array([0.75, 0.8, 0.85], dtype=np.float32)
    glass = col[front] * tint * 0.85 + 0.06
    col[front] = np.where(rim[:, None], frame_col, glass)
