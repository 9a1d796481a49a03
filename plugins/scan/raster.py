"""A z-buffer triangle rasterizer for textured meshes (numpy + one numba kernel).

Per camera it produces, at pixel centres (pixel (0, 0) is centred at (0.5, 0.5), docs/formats.md):
the visible triangle's index (-1 = background), its camera depth z, and RGB from the texture by
bilinear lookup at perspective-correct UVs, lit by a soft Lambert term. RGB is rendered at
`supersample` x the resolution and box-filtered down, so silhouettes and thin texture detail are
anti-aliased; depth, mask and face ids come from one sample at each pixel centre (exact, no blending).
Triangles with a corner closer than NEAR to the camera are skipped (rig cameras are 1 m away).
Both sides of every triangle are drawn: scans are open surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splatrefine.types import Cameras

from .mesh import Mesh

NEAR = 0.01
BACKGROUND = np.array([0.5, 0.5, 0.52], dtype=np.float32)
# direction towards the light in the head frame (front, slightly above and to the subject's left)
LIGHT = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])

_KERNELS: dict = {}


@dataclass
class MeshRender:
    """rgb uint8 [C,H,W,3]; depth float32 [C,H,W] (camera z, 0 = background); mask bool [C,H,W];
    face_ids int32 [C,H,W] (triangle index, -1 = background)."""

    rgb: np.ndarray | None
    depth: np.ndarray
    mask: np.ndarray
    face_ids: np.ndarray


def _kernel():
    """The compiled scan-conversion loop (compiled on first use, cached on disk)."""
    if "raster" not in _KERNELS:
        import numba

        @numba.njit(cache=True, nogil=True)
        def raster(px, py, pz, faces, near, zbuf, fid, bary):  # pragma: no cover - compiled
            H, W = zbuf.shape
            for f in range(faces.shape[0]):
                a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
                z0, z1, z2 = pz[a], pz[b], pz[c]
                if z0 <= near or z1 <= near or z2 <= near:
                    continue
                x0, y0, x1, y1, x2, y2 = px[a], py[a], px[b], py[b], px[c], py[c]
                area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
                if abs(area) < 1e-12:
                    continue
                jmin = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
                jmax = min(int(np.ceil(max(x0, x1, x2) - 0.5)), W - 1)
                imin = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
                imax = min(int(np.ceil(max(y0, y1, y2) - 0.5)), H - 1)
                inv = 1.0 / area
                for i in range(imin, imax + 1):
                    cy = i + 0.5
                    for j in range(jmin, jmax + 1):
                        cx = j + 0.5
                        w0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) * inv
                        w1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) * inv
                        w2 = 1.0 - w0 - w1
                        # a hair of tolerance so shared edges leave no cracks (the z-test settles ties)
                        if w0 < -1e-9 or w1 < -1e-9 or w2 < -1e-9:
                            continue
                        q0, q1, q2 = w0 / z0, w1 / z1, w2 / z2
                        s = q0 + q1 + q2
                        z = 1.0 / s
                        if z < zbuf[i, j]:
                            zbuf[i, j] = z
                            fid[i, j] = f
                            bary[i, j, 0] = q0 * z
                            bary[i, j, 1] = q1 * z
                            bary[i, j, 2] = q2 * z

        _KERNELS["raster"] = raster
    return _KERNELS["raster"]


def rasterize(vertices: np.ndarray, faces: np.ndarray, viewmat: np.ndarray, K: np.ndarray, width: int,
              height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera: (depth float64 [H,W] (inf = background), face ids int32 [H,W] (-1 = background),
    perspective-correct barycentrics float64 [H,W,3]). vertices [N,3] in world coordinates."""
    pc = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pc[:, 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    px = K[0, 0] * pc[:, 0] / zs + K[0, 1] * pc[:, 1] / zs + K[0, 2]
    py = K[1, 1] * pc[:, 1] / zs + K[1, 2]
    zbuf = np.full((height, width), np.inf)
    fid = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3))
    _kernel()(np.ascontiguousarray(px), np.ascontiguousarray(py), np.ascontiguousarray(z),
              np.ascontiguousarray(faces, dtype=np.int64), NEAR, zbuf, fid, bary)
    return zbuf, fid, bary


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [N,3] (zero for unused vertices)."""
    fn = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.where(norm > 0, norm, 1.0)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup: texture uint8 [TH,TW,3], uv float [M,2] (OBJ convention: v = 0 at the
    bottom, repeating outside 0..1) -> float32 [M,3] in 0..1."""
    th, tw = texture.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * tw - 0.5
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * th - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    x0c, x1c = np.clip(x0i, 0, tw - 1), np.clip(x0i + 1, 0, tw - 1)
    y0c, y1c = np.clip(y0i, 0, th - 1), np.clip(y0i + 1, 0, th - 1)
    t = texture.astype(np.float32) / 255.0
    top = t[y0c, x0c] * (1 - fx) + t[y0c, x1c] * fx
    bottom = t[y1c, x0c] * (1 - fx) + t[y1c, x1c] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def shade(mesh: Mesh, vertices: np.ndarray, normals: np.ndarray, fid: np.ndarray, bary: np.ndarray,
          shading: float) -> np.ndarray:
    """float32 [H,W,3] colours of rasterized pixels (BACKGROUND where fid < 0)."""
    out = np.empty(fid.shape + (3,), np.float32)
    out[:] = BACKGROUND
    hit = fid >= 0
    f = fid[hit]
    b = bary[hit]
    uv = np.einsum("mk,mkd->md", b, mesh.uvs[mesh.face_uvs[f]])
    rgb = sample_texture(mesh.texture, uv)
    if shading > 0:
        n = np.einsum("mk,mkd->md", b, normals[mesh.faces[f]])
        lam = np.abs(n @ LIGHT) / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
        rgb = rgb * ((1.0 - shading) + shading * lam)[:, None].astype(np.float32)
    out[hit] = rgb
    return out


def render_mesh(mesh: Mesh, vertices: np.ndarray, cameras: Cameras, supersample: int = 3, shading: float = 0.3,
                rgb: bool = True, threads: int = 2) -> MeshRender:
    """Render `mesh` with world-space `vertices` [N,3] (the mesh's own, moved into the head frame)
    at every camera; `threads` cameras at a time (the kernel releases the GIL)."""
    C, H, W = len(cameras), int(cameras.height), int(cameras.width)
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    out_rgb = np.zeros((C, H, W, 3), np.uint8) if rgb else None
    depth = np.zeros((C, H, W), np.float32)
    fids = np.full((C, H, W), -1, np.int32)
    normals = vertex_normals(vertices, mesh.faces) if rgb and shading > 0 else None
    scale = np.diag([s, s, 1.0])

    def one(ci: int) -> None:
        vm, K = cameras.viewmats[ci], cameras.Ks[ci]
        z, fid, bary = rasterize(vertices, mesh.faces, vm, K, W, H)
        depth[ci] = np.where(fid >= 0, z, 0.0)
        fids[ci] = fid
        if rgb:
            if s > 1:
                _, fid, bary = rasterize(vertices, mesh.faces, vm, scale @ K, W * s, H * s)
            img = shade(mesh, vertices, normals, fid, bary, shading)
            img = img.reshape(H, s, W, s, 3).mean(axis=(1, 3))
            out_rgb[ci] = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)

    _kernel()
    if C > 1 and threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(threads, C)) as pool:
            list(pool.map(one, range(C)))
    else:
        for ci in range(C):
            one(ci)
    return MeshRender(out_rgb, depth, fids >= 0, fids)
