"""Initial Gaussians: random points in the volume every camera sees (carved by foreground masks),
or the capture's own point cloud; colours and class probabilities from the views facing each point."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from splatrefine.errors import CaptureError
from splatrefine.poses import optical_focus
from splatrefine.types import Cameras, Capture

log = logging.getLogger(__name__)


@dataclass
class InitialPoints:
    """means [N,3], rgb [N,3] 0..1, class_probs [N,K] (rows sum to 1), center [3], radius (volume
    half-size), scene_scale (camera extent, 3DGS convention)."""

    means: np.ndarray
    rgb: np.ndarray
    class_probs: np.ndarray
    center: np.ndarray
    radius: float
    scene_scale: float


def _project(cams: Cameras, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pts [N,3] -> pixel coords [V,N,2], depth [V,N], in-frame mask [V,N]."""
    R = cams.viewmats[:, :3, :3]
    t = cams.viewmats[:, :3, 3]
    pc = pts @ R.transpose(0, 2, 1) + t[:, None, :]  # [V,N,3]; a BLAS matmul, ~8x numpy's einsum
    z = pc[..., 2]
    zs = np.where(z > 1e-6, z, 1e-6)
    u = cams.Ks[:, None, 0, 0] * pc[..., 0] / zs + cams.Ks[:, None, 0, 2]
    v = cams.Ks[:, None, 1, 1] * pc[..., 1] / zs + cams.Ks[:, None, 1, 2]
    inside = (z > 1e-6) & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
    return np.stack([u, v], -1), z, inside


def common_volume(cams: Cameras, center_hint: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(centre [3], half-size) of the volume the cameras look at together.

    The centre is the point closest to every optical axis (or the subject centre); the half-size is
    the median half-width of the image at that depth. CaptureError when fewer than two cameras have
    the centre in front of them and inside the frame.
    """
    if center_hint is None:
        center = optical_focus(cams)
    else:
        center = np.asarray(center_hint, dtype=np.float64)
    _, z, inside = _project(cams, center[None])
    seen = int(inside[:, 0].sum())
    if seen < 2:
        raise CaptureError(
            f"the cameras do not see a common volume: only {seen} of {len(cams)} views have the point "
            "their optical axes meet in frame",
            "Check the camera poses (world-to-camera, OpenCV axes) of the capture.")
    d = z[inside[:, 0], 0]
    half = np.minimum(cams.width / (2 * cams.Ks[:, 0, 0]), cams.height / (2 * cams.Ks[:, 1, 1]))[inside[:, 0]]
    return center, float(np.median(d * half))


def _view_weights(cams: Cameras, pts: np.ndarray, center: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """[V,N] weights favouring the views on the point's side of the volume (a cheap occlusion guess)."""
    n = pts - center
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    c = cams.centers - center
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    w = np.clip(c @ n.T, 0.0, None) ** 4 + 1e-3
    return w * inside


def _sample_attributes(cams: Cameras, pts: np.ndarray, center: np.ndarray, images: np.ndarray,
                       probs_vhwk: np.ndarray, prob_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uv, _, inside = _project(cams, pts)
    w = _view_weights(cams, pts, center, inside)
    ui = np.clip(uv[..., 0].astype(np.int64), 0, cams.width - 1)
    vi = np.clip(uv[..., 1].astype(np.int64), 0, cams.height - 1)
    V, N = inside.shape
    K = probs_vhwk.shape[-1]
    rgb = np.zeros((N, 3))
    cls = np.zeros((N, K))
    wsum = np.zeros(N)
    cwsum = np.zeros(N)
    for v in range(V):
        sel = w[v] > 0
        if not sel.any():
            continue
        col = images[v, vi[v, sel], ui[v, sel]].astype(np.float64) / 255.0
        rgb[sel] += w[v, sel, None] * col
        wsum[sel] += w[v, sel]
        pw = w[v, sel] * prob_weights[v, vi[v, sel], ui[v, sel]]
        cls[sel] += pw[:, None] * probs_vhwk[v, vi[v, sel], ui[v, sel]]
        cwsum[sel] += pw
    rgb = np.where(wsum[:, None] > 0, rgb / np.maximum(wsum[:, None], 1e-12), 0.5)
    cls = np.where(cwsum[:, None] > 0, cls / np.maximum(cwsum[:, None], 1e-12), 1.0 / K)
    return rgb.astype(np.float32), cls.astype(np.float32)


def _carve(capture: Capture, cams: Cameras, center: np.ndarray, radius: float, count: int,
           rng: np.random.Generator) -> np.ndarray:
    """`count` random points in the common volume: in frame of most views and, with masks, inside
    the visual hull; with masks the points nearest the hull's surface are kept (a shell, where the
    visible surface is), measured by the distance to the silhouette edge in the views."""
    from .carve_kernel import hull_test

    need_views = max(2, int(math.ceil(0.6 * len(cams))))
    masks = np.zeros((0, 1, 1), dtype=bool)
    depth_into = np.zeros((0, 1, 1), dtype=np.float32)
    if capture.has_masks:
        from scipy.ndimage import distance_transform_edt

        masks = np.stack([v.mask for v in capture.views]).astype(bool)
        depth_into = np.stack([distance_transform_edt(m) for m in masks]).astype(np.float32)
    viewmats = np.ascontiguousarray(cams.viewmats, dtype=np.float64)
    Ks = np.ascontiguousarray(cams.Ks, dtype=np.float64)
    pool = 4 * count if capture.has_masks else count
    kept: list[np.ndarray] = []
    depth: list[np.ndarray] = []
    total = 0
    for _ in range(60):
        cand = center + rng.uniform(-radius, radius, size=(max(4 * count, 4096), 3))
        ok = np.empty(len(cand), dtype=bool)
        world = np.empty(len(cand))
        hull_test(cand, viewmats, Ks, cams.width, cams.height, masks, depth_into, need_views, ok, world)
        kept.append(cand[ok])
        depth.append(world[ok])
        total += int(ok.sum())
        if total >= pool:
            break
    pts = np.concatenate(kept)
    if capture.has_masks and len(pts) > count:
        order = np.argsort(np.concatenate(depth), kind="stable")
        pts = pts[np.sort(order[:count])]
    pts = pts[:count]
    if len(pts) < min(count, 16):
        raise CaptureError(
            f"the cameras do not see a common volume: only {len(pts)} sample points are in frame "
            f"of {need_views} of the {len(cams)} views" + (" and inside the masks" if capture.has_masks else ""),
            "Check the camera poses and the foreground masks of the capture.")
    return pts


def initial_points(capture: Capture, probs_vhwk: np.ndarray, prob_weights: np.ndarray, count: int,
                   seed: int) -> InitialPoints:
    """Initial Gaussian centres and attributes.

    probs_vhwk float32 [V,H,W,K] initial class probabilities; prob_weights [V,H,W] their weights
    (0 = no opinion). Uses capture.points when present; else `count` random points in the common
    volume, kept when inside the frame of most views and (with masks) inside the foreground mask of
    nearly every view that sees them.
    """
    cams = capture.cameras()
    images = capture.images()
    hint = capture.subject.center if capture.subject is not None else None
    center, radius = common_volume(cams, hint)
    cc = cams.centers
    scene_scale = 1.1 * float(np.max(np.linalg.norm(cc - cc.mean(0), axis=1)))
    if scene_scale <= 0:
        scene_scale = 1.0
    rng = np.random.default_rng(seed)
    if capture.points is not None and len(capture.points) > 0:
        pts = np.asarray(capture.points, dtype=np.float64)
        if len(pts) > count:
            pts = pts[np.sort(rng.choice(len(pts), count, replace=False))]
    else:
        pts = _carve(capture, cams, center, radius, count, rng)
    rgb, cls = _sample_attributes(cams, pts, center, images, probs_vhwk, prob_weights)
    if capture.points is not None and capture.point_colors is not None and len(capture.point_colors) == len(capture.points):
        if len(pts) == len(capture.points):
            rgb = np.asarray(capture.point_colors, dtype=np.float32) / 255.0
    log.debug("initial points: %d, centre %s, radius %.4g, scene scale %.4g", len(pts), center, radius, scene_scale)
    return InitialPoints(pts.astype(np.float32), rgb, cls, center, radius, scene_scale)


def knn_scale(means: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance to the k nearest neighbours [N] (initial Gaussian size)."""
    from scipy.spatial import cKDTree

    if len(means) < 2:
        return np.full(len(means), 0.01, dtype=np.float32)
    kk = min(k + 1, len(means))
    d, _ = cKDTree(means).query(means, k=kk)
    d = np.sqrt(np.mean(d[:, 1:] ** 2, axis=1))
    return np.maximum(d, 1e-7).astype(np.float32)
