"""`palette-cluster`: the paper's way. Colour-coded segmentation renders (a model fitted to the
parser's palette pictures) are snapped back to classes: each pixel goes to the nearest palette
colour, optionally after a few k-means steps that start at the palette and let each centre follow
the colours actually rendered for its class (blending darkens and mixes colours).

Alpha blending at a boundary between two classes renders colours on the line between their palette
colours, and such a blend can land nearest a third class (skin + hair ~ l_brow in CelebAMask-HQ):
a pixel farther than `blend_distance` from every centre takes the label of the nearest pixel (in
the image) whose colour is close to a centre, which at an edge is one of the two blended classes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.roles import ComponentContext
from splatrefine.schema import LabelSchema
from splatrefine.types import Renders

from .argmax import apply_ignore, check_renders


@dataclass(frozen=True)
class PaletteClusterConfig:
    kmeans_iterations: int = field(default=0, metadata={
        "help": "k-means refinement steps started at the palette (0 = nearest palette colour only; "
                "k-means can let classes absent from the scene capture edge blends)",
        "min": 0, "max": 100})
    max_shift: float = field(default=0.25, metadata={
        "help": "how far (RGB distance, colours in 0..1) a k-means centre may move from its palette colour",
        "min": 0.0, "max": 2.0})
    min_confidence: float = field(default=0.0, metadata={
        "help": "pixels whose confidence (1 - nearest/second-nearest centre distance) is below this become 255",
        "min": 0.0, "max": 1.0})
    min_alpha: float = field(default=0.0, metadata={
        "help": "pixels whose rendered opacity is below this become 255 (ignore); 0 keeps all",
        "min": 0.0, "max": 1.0})
    max_pixels: int = field(default=200_000, metadata={
        "help": "pixels sampled (seeded) to update the k-means centres", "min": 1000})
    blend_distance: float = field(default=0.1, metadata={
        "help": "a pixel farther than this (RGB distance, colours in 0..1) from every centre is an edge "
                "blend and takes the label of the nearest pixel that is not (0 = off)", "min": 0.0, "max": 2.0})


def _two_nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [N,3], centres [K,3] -> (index of the nearest centre [N], its distance [N], the distance
    to the second-nearest [N]; inf when K == 1). Processed in chunks to bound memory."""
    n = len(x)
    idx = np.empty(n, np.int64)
    d1 = np.empty(n, np.float64)
    d2 = np.full(n, np.inf)
    cen = centres.astype(np.float32)
    cc = (cen * cen).sum(1)[None]
    for s in range(0, n, chunk):
        xs = x[s:s + chunk].astype(np.float32)
        d = np.maximum((xs * xs).sum(1)[:, None] - 2.0 * xs @ cen.T + cc, 0.0)
        i = d.argmin(1)
        rows = np.arange(len(xs))
        idx[s:s + chunk] = i
        d1[s:s + chunk] = np.sqrt(d[rows, i])
        if centres.shape[0] > 1:
            d[rows, i] = np.inf
            d2[s:s + chunk] = np.sqrt(d.min(1))
    return idx, d1, d2


def fill_from_nearest(labels: np.ndarray, far: np.ndarray) -> np.ndarray:
    """labels [C,H,W], far bool [C,H,W] -> labels where every `far` pixel has the label of the
    nearest pixel (in the same image) that is not far. Images with no such pixel are unchanged."""
    from scipy.ndimage import distance_transform_edt

    out = labels.copy()
    for i in range(labels.shape[0]):
        f = far[i]
        if not f.any() or f.all():
            continue
        _, (iy, ix) = distance_transform_edt(f, return_indices=True)
        out[i][f] = labels[i][iy[f], ix[f]]
    return out


def cluster_centres(colours: np.ndarray, palette: np.ndarray, iterations: int, max_shift: float,
                    max_pixels: int, seed: int = 0) -> np.ndarray:
    """k-means centres [K,3] started at `palette` [K,3] from colours [N,3] (all in 0..1).

    A centre without pixels stays put; a centre is pulled back to within `max_shift` of its palette
    colour, so classes cannot swap places.
    """
    centres = palette.astype(np.float64).copy()
    if iterations <= 0 or len(colours) == 0:
        return centres
    x = colours
    if len(x) > max_pixels:
        x = x[np.random.default_rng(seed).choice(len(x), max_pixels, replace=False)]
    x = x.astype(np.float64)
    for _ in range(iterations):
        idx, _, _ = _two_nearest(x, centres)
        counts = np.bincount(idx, minlength=len(centres)).astype(np.float64)
        sums = np.stack([np.bincount(idx, weights=x[:, c], minlength=len(centres)) for c in range(3)], 1)
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        shift = moved - palette
        norm = np.linalg.norm(shift, axis=1, keepdims=True)
        moved = palette + shift * np.minimum(1.0, max_shift / np.maximum(norm, 1e-12))
        if np.allclose(moved, centres, atol=1e-7):
            centres = moved
            break
        centres = moved
    return centres


class PaletteClusterAggregator:
    name = "palette-cluster"
    needs = "seg_rgb"  # which Renders field aggregate() reads

    def __init__(self, config: PaletteClusterConfig, context: ComponentContext | None = None):
        self.config = config
        self.seed = context.seed if context is not None else 0

    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """renders.seg_rgb [C,H,W,3] in 0..1 -> (labels uint8 [C,H,W], confidence float32 [C,H,W]).

        confidence = 1 - d1/d2 with d1, d2 the distances to the nearest and second-nearest centre:
        1 on a centre, 0 halfway between two (edge blends keep this low confidence).
        """
        check_renders(renders, schema, "seg_rgb", self.name)
        seg = np.clip(np.asarray(renders.seg_rgb, dtype=np.float64), 0.0, 1.0)
        shape = seg.shape[:-1]
        x = seg.reshape(-1, 3)
        palette = schema.palette_array().astype(np.float64) / 255.0
        c = self.config
        centres = cluster_centres(x, palette, c.kmeans_iterations, c.max_shift, c.max_pixels, self.seed)
        idx, d1, d2 = _two_nearest(x, centres)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = np.where(d2 > 0, 1.0 - d1 / d2, 1.0)
        conf = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
        labels = idx.astype(np.uint8).reshape(shape)
        if c.blend_distance > 0:
            labels = fill_from_nearest(labels, d1.reshape(shape) > c.blend_distance)
        conf = conf.astype(np.float32).reshape(shape)
        labels = apply_ignore(labels, conf, np.asarray(renders.alpha), c.min_confidence, c.min_alpha)
        return labels, conf
