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
from .materials import L, keep_hit, material

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
    """numba kernels (compiled on first use, cached on disk): ray/ellipsoid entry and exit, and
    world -> unit-sphere coordinates. Small [N,3] @ [3,3] products through BLAS threads are slow
    and erratic on a busy machine, so these loops are compiled instead."""
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

        _KERNELS["intersect"] = intersect
        _KERNELS["to_local"] = to_local
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
    return n / np.linalg.norm(n, axis=1, keepdims=True)


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
    return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-9)


def _shade(normal: np.ndarray, view: np.ndarray, albedo: np.ndarray, gloss: np.ndarray) -> np.ndarray:
    """Diffuse + ambient + a little Blinn-Phong specular. normal, view (towards camera) [N,3]."""
    light = np.full(len(normal), AMBIENT, dtype=np.float32)
    spec = np.zeros(len(normal), dtype=np.float32)
    for direction, power in LIGHTS:
        ldir = direction / np.linalg.norm(direction)
        ndl = normal[:, 0] * ldir[0] + normal[:, 1] * ldir[1] + normal[:, 2] * ldir[2]
        light += power * np.clip(ndl, 0.0, None).astype(np.float32)
        h = ldir[None, :] + view
        h /= np.linalg.norm(h, axis=1, keepdims=True)
        spec += power * np.clip(np.einsum("ij,ij->i", normal, h), 0.0, None).astype(np.float32) ** 40 * (ndl > 0)
    return albedo * light[:, None] + (gloss * spec)[:, None]


def _background(head: HeadParams, d: np.ndarray) -> np.ndarray:
    dn = d / np.linalg.norm(d, axis=-1, keepdims=True)
    t = 0.88 + 0.12 * dn[..., 1:2]
    return (np.asarray(head.backdrop, dtype=np.float32) * t).astype(np.float32)


def render_head(head: HeadParams, cameras: Cameras, rgb: bool = True, threads: int = 2) -> HeadRender:
    """Render the head at every camera of `cameras` (OpenCV world-to-camera viewmats), `threads`
    cameras at a time (numpy and the numba kernels release the GIL)."""
    parts = build_parts(head)
    C, H, W = len(cameras), int(cameras.height), int(cameras.width)
    offsets = np.vstack([[0.0, 0.0], SUBSAMPLES]) if rgb else np.zeros((1, 2))
    out_rgb = np.zeros((C, H, W, 3), dtype=np.uint8) if rgb else None
    out_lab = np.zeros((C, H, W), dtype=np.uint8)
    out_depth = np.zeros((C, H, W), dtype=np.float32)
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))

    def one(ci: int) -> None:
        lab, depth, img = _render_view(head, parts, cameras.viewmats[ci], cameras.Ks[ci], W, H, offsets, jj, ii)
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
                 offsets: np.ndarray, jj: np.ndarray, ii: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One camera: (labels uint8 [H,W], depth float32 [H,W], rgb uint8 [H,W,3] or None)."""
    opaque = [p for p in parts if p.kind != "lens"]
    lenses = [p for p in parts if p.kind == "lens"]
    S = len(offsets)
    vm = np.asarray(vm, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    R, t = vm[:3, :3], vm[:3, 3]
    origin = -R.T @ t
    u = jj[:, :, None] + 0.5 + offsets[None, None, :, 0]
    v = ii[:, :, None] + 0.5 + offsets[None, None, :, 1]
    xc = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0]
    yc = (v - K[1, 2]) / K[1, 1]
    dirs = np.einsum("hwsj,jk->hwsk", np.stack([xc, yc, np.ones_like(xc)], axis=-1), R)  # z = 1 per unit t
    best_t = np.full((H, W, S), np.inf)
    best_k = np.full((H, W, S), -1, dtype=np.int16)
    inside = np.zeros((H, W, S), dtype=bool)
    windows = [_window(p, vm, K, W, H) for p in parts]
    for k, part in enumerate(opaque):
        win = windows[parts.index(part)]
        if win is None:
            continue
        d = dirs[win].reshape(-1, 3)
        t0, t1 = _intersect(part, origin, d)
        hit = np.where(t0 > NEAR, t0, np.where(t1 > NEAR, t1, np.nan))
        ins = ~(t0 > NEAR) & (t1 > NEAR)
        if part.kind.startswith("hair_"):
            ok = np.isfinite(hit)
            if ok.any():
                pts = origin + hit[ok, None] * d[ok]
                keep = keep_hit(part, _local(part, pts), pts, head.seed)
                idx = np.nonzero(ok)[0]
                # entry point clipped away: look at the exit point (the inside of the shell)
                redo = idx[~keep & (t0[idx] > NEAR)]
                hit[idx[~keep]] = np.nan
                if len(redo):
                    pts2 = origin + t1[redo, None] * d[redo]
                    keep2 = keep_hit(part, _local(part, pts2), pts2, head.seed)
                    hit[redo[keep2]] = t1[redo[keep2]]
                    ins[redo[keep2]] = True
        shape = best_t[win].shape
        hit = hit.reshape(shape)
        better = np.isfinite(hit) & (hit < best_t[win])
        bt, bk, bi = best_t[win], best_k[win], inside[win]
        bt[better] = hit[better]
        bk[better] = k
        bi[better] = ins.reshape(shape)[better]
        best_t[win], best_k[win], inside[win] = bt, bk, bi
    lab = np.zeros((H, W, S), dtype=np.uint8)
    col = np.zeros((H, W, S, 3), dtype=np.float32)
    bg = best_k < 0
    col[bg] = _background(head, dirs[bg])
    for k, part in enumerate(opaque):
        win = windows[parts.index(part)]
        if win is None:
            continue
        sel = best_k[win] == k
        if not sel.any():
            continue
        d = dirs[win][sel]
        pts = origin + best_t[win][sel][:, None] * d
        loc = _local(part, pts)
        normal = _normal(part, loc)
        if part.kind in SMOOTH_KINDS:
            normal = _blend_normals(part, normal, pts, [q for q in opaque if q.kind in SMOOTH_KINDS and q is not part])
        normal[inside[win][sel]] *= -1.0
        labels_k, albedo, gloss = material(part, loc, pts, head)
        view = -d / np.linalg.norm(d, axis=1, keepdims=True)
        shaded = _shade(normal, view, albedo, gloss)
        lw, cw = lab[win], col[win]
        lw[sel] = labels_k
        cw[sel] = shaded
        lab[win], col[win] = lw, cw
    for part in lenses:
        win = windows[parts.index(part)]
        if win is None:
            continue
        d = dirs[win].reshape(-1, 3)
        t0, _ = _intersect(part, origin, d)
        front = (t0 > NEAR) & (t0 < best_t[win].reshape(-1))
        if not front.any():
            continue
        sel = front.reshape(best_t[win].shape)
        pts = origin + t0[front, None] * d[front]
        loc = _local(part, pts)
        rim = np.hypot(loc[:, 0], loc[:, 1]) > 0.86
        frame_col = _shade(np.tile(part.rot[:, 2], (len(pts), 1)), -d[front] / np.linalg.norm(d[front], axis=1, keepdims=True),
                           np.tile(np.asarray(head.frame, dtype=np.float32), (len(pts), 1)), np.full(len(pts), 0.5, np.float32))
        behind = col[win][sel]
        tint = np.array([0.75, 0.8, 0.85], dtype=np.float32)
        glass = behind * tint * 0.85 + 0.06
        lw, cw, bt = lab[win], col[win], best_t[win]
        lw[sel] = L["eye_g"]
        cw[sel] = np.where(rim[:, None], frame_col, glass)
        bt[sel] = t0[front]
        lab[win], col[win], best_t[win] = lw, cw, bt
    hit0 = np.isfinite(best_t[:, :, 0])
    depth = np.where(hit0, best_t[:, :, 0], 0.0).astype(np.float32)
    img = None
    if S > 1:
        img = col[:, :, 1:].mean(axis=2)
        img = np.clip(np.round(img ** (1 / 1.15) * 255.0), 0, 255).astype(np.uint8)
    return lab[:, :, 0].copy(), depth, img
