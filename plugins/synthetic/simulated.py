"""A SIMULATED face parser: ground-truth labels corrupted by a documented, seeded noise model.

It stands in for a 2D parser trained on near-frontal faces (as BiSeNet on CelebAMask-HQ is) when
the project measures refinement against exact ground truth. It never looks at the images.

Protocol "pose" (default), per view, with difficulty
    d = severity * (frontal + (1 - frontal) * min(|yaw| / 90, 1.25) ** power)   (frontal 0.15, power 2)
so d is small at yaw 0 and grows with |yaw| (lengths below are pixels at 256 px, scaled with size):
  1. boundary wobble: labels are resampled through a smooth random displacement field
     (correlation 6 px) of amplitude (0.25 + 0.9 d) px, which erodes/dilates every boundary
     differently in every view;
  2. part erosion/dilation: each small part (brows, eyes, nose, lips, mouth, ears, glasses) is
     grown or shrunk by round(U(0, 0.8 d)) px;
  3. confusions: each connected region of a part is, with probability min(0.4, 0.55 c d) (c: how
     confusable the class is, CONFUSABILITY), relabelled wholly or in a smooth blob as a class a
     real parser confuses it with (CONFUSIONS: ear -> hair/skin, eye -> brow/skin, brow ->
     skin/hair, lip -> mouth/skin/other lip, nose -> skin, neck -> skin/cloth, eye_g ->
     skin/background); beyond |yaw| 50, each l_/r_ pair is swapped with probability 0.15 d;
  4. small parts missing: regions smaller than (15 + 60 d) px are dropped (filled with the
     surrounding label) with probability min(0.35, 0.6 d);
  5. far-side blobs: when |yaw| > 20, smooth random blobs covering a fraction
     min(0.4, 0.3 d (|yaw| - 20) / 70) of the far half of the face (the side turning away from the
     camera) are relabelled hair, background or skin;
  6. soft probabilities: the one-hot of the corrupted map is blurred by (0.5 + 0.4 d) px and mixed
     with a uniform floor eps = 0.03 + 0.2 d, so boundaries are uncertain while wrong regions stay
     confidently wrong, as a real parser's do.
Protocols "pixel-flip" and "region-flip" are Semantic-NeRF's label-noise settings: each pixel
(pixel-flip) or each connected region of a class (region-flip) is, with probability `ratio`,
given another class drawn uniformly from the classes present in the capture. They ignore the pose.

Every random draw comes from a generator seeded by (seed, run seed, view index), so errors differ
from view to view but a run is reproducible.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from splatrefine.errors import CaptureError, ConfigError
from splatrefine.schema import IGNORE, LabelSchema

PROTOCOLS = ("pose", "pixel-flip", "region-flip")

# class -> ((confused-with class, weight), ...); "@other" = the same part on the other side
CONFUSIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "l_ear": (("hair", 0.55), ("skin", 0.45)), "r_ear": (("hair", 0.55), ("skin", 0.45)),
    "l_eye": (("l_brow", 0.3), ("skin", 0.7)), "r_eye": (("r_brow", 0.3), ("skin", 0.7)),
    "l_brow": (("skin", 0.6), ("hair", 0.4)), "r_brow": (("skin", 0.6), ("hair", 0.4)),
    "u_lip": (("skin", 0.5), ("mouth", 0.2), ("l_lip", 0.3)),
    "l_lip": (("skin", 0.6), ("mouth", 0.2), ("u_lip", 0.2)),
    "mouth": (("u_lip", 0.5), ("l_lip", 0.5)),
    "nose": (("skin", 1.0),),
    "neck": (("skin", 0.5), ("cloth", 0.5)),
    "eye_g": (("skin", 0.7), ("background", 0.3)),
}
# how readily each class is confused (relative; the probability is this times d)
CONFUSABILITY = {"l_ear": 0.8, "r_ear": 0.8, "l_eye": 0.5, "r_eye": 0.5, "l_brow": 0.6, "r_brow": 0.6,
                 "u_lip": 0.5, "l_lip": 0.5, "mouth": 0.6, "nose": 0.35, "neck": 0.25, "eye_g": 0.5}
SMALL_PARTS = ("l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "nose", "mouth", "u_lip", "l_lip")
FACE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip")


@dataclass(frozen=True)
class NoiseSettings:
    protocol: str = "pose"
    severity: float = 1.0
    frontal: float = 0.15
    power: float = 2.0
    ratio: float = 0.1


def difficulty(yaw: float, s: NoiseSettings) -> float:
    a = min(abs(float(yaw)) / 90.0, 1.25)
    return float(s.severity * (s.frontal + (1.0 - s.frontal) * a ** s.power))


def view_rng(seed: int, run_seed: int, index: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(run_seed) & 0xFFFFFFFF, int(index),
                                  zlib.crc32(name.encode("utf-8"))])


_KERNELS: dict = {}
_KERNELS_LOCK = threading.Lock()  # simulate's threads ask for the kernels at the same time


def _kernels() -> dict:
    """numba kernels (compiled on first use, cached on disk)."""
    with _KERNELS_LOCK:
        if not _KERNELS:
            import numba

            @numba.njit(cache=True, nogil=True)
            def correlate_rows(src, weights, out, row_step, tap_step):  # pragma: no cover - compiled
                # out[i] = weights[r] * line(i, 0) + sum for j = r..1 of (line(i, -j) + line(i, j)) * weights[r - j],
                # line(i, j) = src[i * row_step + (r + j) * tap_step:][:W]: scipy's correlate1d with a
                # symmetric kernel, the same operations in the same order, vectorised along the rows
                r = len(weights) // 2
                W = out.shape[1]
                for i in range(out.shape[0]):
                    acc = out[i]
                    at = i * row_step + r * tap_step
                    centre = src[at:at + W]
                    for x in range(W):
                        acc[x] = centre[x] * weights[r]
                    for j in range(r, 0, -1):
                        lo = src[at - j * tap_step:at - j * tap_step + W]
                        hi = src[at + j * tap_step:at + j * tap_step + W]
                        w = weights[r - j]
                        for x in range(W):
                            acc[x] += (lo[x] + hi[x]) * w

            _KERNELS["correlate_rows"] = correlate_rows
    return _KERNELS


def _gaussian_radius(sigma: float) -> int:
    """scipy.ndimage's Gaussian kernel radius (truncated at 4 sigma)."""
    return int(4.0 * sigma + 0.5)


def _gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel, to the bit."""
    radius = _gaussian_radius(sigma)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return phi / phi.sum()


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(image, sigma, mode="reflect") of a float64 [H,W], to the bit, in
    a fraction of its time, written over `image`."""
    weights = _gaussian_weights(sigma)
    r = len(weights) // 2
    W = image.shape[1]
    correlate_rows = _kernels()["correlate_rows"]
    # numpy's "symmetric" padding is scipy's "reflect" mode
    correlate_rows(np.pad(image, ((r, r), (0, 0)), mode="symmetric").ravel(), weights, image, W, W)
    correlate_rows(np.pad(image, ((0, 0), (r, r)), mode="symmetric").ravel(), weights, image, W + 2 * r, 1)
    return image


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field [H,W]."""
    f = _gaussian_blur(rng.standard_normal(shape), sigma)
    return f / (f.std() + 1e-12)


def _choose(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    names = [o[0] for o in options]
    w = np.array([o[1] for o in options], dtype=np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _surroundings(labels: np.ndarray, region: np.ndarray, exclude: int) -> int:
    """The most common label in a thin ring around `region` (not `exclude`). `labels` and `region`
    may be a crop holding `region` with a margin of 2 px (or the image edge) on every side."""
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(region, iterations=2) & ~region
    vals = labels[ring]
    vals = vals[(vals != exclude) & (vals != IGNORE)]
    if len(vals) == 0:
        return 0
    return int(np.bincount(vals).argmax())


def _grown(box: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of `mask` grown by `margin` px (within the image); None if `mask` is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return _grown((slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)), margin, mask.shape)


def _regions(mask: np.ndarray, margin: int) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """Each connected region of `mask`, in scipy.ndimage.label's order, as (box, region): its bounding
    box grown by `margin` px and its mask within that box. Labelling the crop around `mask` numbers
    the regions as labelling the whole image would, and costs much less."""
    from scipy.ndimage import find_objects, label as components

    outer = _bounding_box(mask, margin)
    if outer is None:
        return
    comp, _ = components(mask[outer])
    for k, inner in enumerate(find_objects(comp), start=1):
        inner = _grown(inner, margin, comp.shape)
        box = tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(outer, inner))
        yield box, comp[inner] == k


POSE_STEPS = ("wobble", "erode-dilate", "confuse", "missing", "far-side")


def corrupt_pose(labels: np.ndarray, yaw: float, rng: np.random.Generator, s: NoiseSettings,
                 schema: LabelSchema, steps: tuple[str, ...] = POSE_STEPS) -> np.ndarray:
    """The 'pose' protocol on one GT map uint8 [H,W] -> corrupted uint8 [H,W] (see module doc).
    `steps` selects which of POSE_STEPS to apply (all by default; the others are for ablations)."""
    H, W = labels.shape
    scale = H / 256.0
    d = difficulty(yaw, s)
    idx = {n: i for i, n in enumerate(schema.classes)}
    out = labels.copy()
    # 1. boundary wobble
    amp = (0.25 + 0.9 * d) * scale
    dy = _smooth_noise(rng, (H, W), 6.0 * scale) * amp
    dx = _smooth_noise(rng, (H, W), 6.0 * scale) * amp
    yy, xx = np.ogrid[0:H, 0:W]
    if "wobble" in steps:
        sy = np.clip(np.round(yy + dy), 0, H - 1).astype(np.int64)
        sx = np.clip(np.round(xx + dx), 0, W - 1).astype(np.int64)
        out = out[sy, sx]
    # 2. part erosion / dilation
    for name in SMALL_PARTS:
        if name not in idx:
            continue
        c = idx[name]
        mask = out == c
        if not mask.any():
            continue
        r = int(round(rng.uniform(0.0, 0.8 * d) * scale))
        if r <= 0 or "erode-dilate" not in steps:
            continue
        _erode_or_dilate(out, mask, c, r, rng)
    # 3. confusions (whole region or a blob of it), and l/r swaps at profile
    blob = None
    for name, options in CONFUSIONS.items():
        if name not in idx:
            continue
        c = idx[name]
        for box, region in _regions(out == c, 0):
            if rng.random() >= min(0.4, 0.55 * CONFUSABILITY[name] * d) or "confuse" not in steps:
                continue
            target = _choose(rng, options)
            if target not in idx:
                continue
            if rng.random() < 0.5:
                if blob is None:
                    blob = _smooth_noise(rng, (H, W), 4.0 * scale)
                region = region & (blob[box] > rng.uniform(-0.5, 0.8))
            out[box][region] = idx[target]
    if abs(yaw) > 50 and "confuse" in steps:
        for a, b in schema.flip_pairs:
            if rng.random() < 0.15 * d:
                ma, mb = out == a, out == b
                out[ma], out[mb] = b, a
    # 4. small parts missing
    for name in SMALL_PARTS:
        if name not in idx:
            continue
        c = idx[name]
        for box, region in _regions(out == c, 2):  # the margin _surroundings needs
            if "missing" in steps and region.sum() < (15.0 + 60.0 * d) * scale ** 2 and rng.random() < min(0.35, 0.6 * d):
                out[box][region] = _surroundings(out[box], region, c)
    # 5. far-side blobs
    if abs(yaw) > 20 and "far-side" in steps:
        face = np.isin(out, [idx[n] for n in FACE_PARTS if n in idx])
        if face.any():
            cols = np.nonzero(face.any(axis=0))[0]
            x0, x1 = cols.min(), cols.max()
            mid = (x0 + x1) / 2.0
            # yaw > 0: the camera moved to the subject's left, the face turns to image left and the
            # subject's right (far) side is the image-left half of the face
            far = (xx < mid) if yaw > 0 else (xx > mid)
            field_ = _smooth_noise(rng, (H, W), 7.0 * scale)
            frac = min(0.4, 0.3 * d * (abs(yaw) - 20) / 70)
            thr = np.quantile(field_[face & far], 1.0 - frac) if (face & far).any() and frac > 0 else np.inf
            blobs = face & far & (field_ > thr)
            for box, region in _regions(blobs, 0):
                wrong = _choose(rng, (("hair", 0.4), ("background", 0.3), ("skin", 0.3)))
                out[box][region] = idx.get(wrong, 0)
    return out


def _erode_or_dilate(out: np.ndarray, mask: np.ndarray, c: int, r: int, rng: np.random.Generator) -> None:
    """Grow (into non-background) or shrink (filling with the surroundings) class `c`, whose pixels
    are `mask`, by `r` px, in place. Works on a crop with a margin wide enough for both."""
    from scipy.ndimage import binary_dilation, binary_erosion

    box = _bounding_box(mask, max(r, 2))
    part, near = mask[box], out[box]
    if rng.random() < 0.5:
        grown = binary_dilation(part, iterations=r) & ~part & (near != 0)
        near[grown] = c
    else:
        shrunk = part & ~binary_erosion(part, iterations=r)
        if shrunk.any():
            near[shrunk] = _surroundings(near, part, c)


def corrupt_flip(labels: np.ndarray, rng: np.random.Generator, s: NoiseSettings, present: np.ndarray) -> np.ndarray:
    """Semantic-NeRF label noise: 'pixel-flip' (each pixel) or 'region-flip' (each connected region
    of a class) gets, with probability `ratio`, another class from `present` (uniformly)."""
    out = labels.copy()
    if len(present) < 2 or s.ratio <= 0:
        return out
    if s.protocol == "pixel-flip":
        flip = (rng.random(labels.shape) < s.ratio) & (labels != IGNORE)
        pick = rng.integers(0, len(present) - 1, size=int(flip.sum()))
        cur = labels[flip]
        pos = np.searchsorted(present, cur)
        # draw among the other classes: skip the pixel's own class
        pick = np.where(pick >= pos, pick + 1, pick)
        out[flip] = present[np.clip(pick, 0, len(present) - 1)]
        return out
    for c in present:
        for box, region in _regions(labels == c, 0):
            if rng.random() < s.ratio:
                others = present[present != c]
                out[box][region] = others[rng.integers(len(others))]
    return out


def soften(labels: np.ndarray, num_classes: int, d: float, scale: float, blur: bool = True) -> np.ndarray:
    """float32 [K,H,W] probabilities whose argmax is (almost everywhere) `labels`."""
    from scipy.ndimage import gaussian_filter

    H, W = labels.shape
    probs = np.zeros((num_classes, H, W), dtype=np.float32)
    sigma = (0.5 + 0.4 * d) * scale
    radius = _gaussian_radius(sigma) if blur else 0
    for c in np.unique(labels[labels != IGNORE]):
        # a class's blurred one-hot is 0 beyond `radius` of it, and within that box blurring the
        # crop gives the same values as blurring the whole image: "nearest" extends the crop's
        # zero edge, or the image's own edge
        box = _bounding_box(labels == c, radius)
        one_hot = (labels[box] == c).astype(np.float32)
        probs[c][box] = gaussian_filter(one_hot, sigma, mode="nearest", radius=radius) if blur else one_hot
    eps = min(0.5, 0.03 + 0.2 * d)
    probs *= 1.0 - eps
    probs += eps / num_classes
    probs[:, labels == IGNORE] = 1.0 / num_classes
    probs /= probs.sum(axis=0, keepdims=True)
    return probs


def simulate(capture, settings: NoiseSettings, seed: int = 0, run_seed: int = 0) -> np.ndarray:
    """float32 [V,K,H,W] simulated parser probabilities for every view of `capture`."""
    if not capture.has_labels:
        raise CaptureError(
            "the 'simulated' initial parser needs ground-truth labels in every view, and this capture has none",
            "Use a synthetic capture ('splatrefine synth'), or a real parser (--plugin initial_parser=NAME).")
    if settings.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown noise protocol '{settings.protocol}'; expected one of {', '.join(PROTOCOLS)}")
    schema = capture.schema
    K = schema.num_classes
    cams = capture.cameras()
    yaw = cams.yaw
    if yaw is None:
        from splatrefine.poses import estimate_subject, yaw_pitch

        yaw, _ = yaw_pitch(cams.centers, estimate_subject(cams))
    shapes = {v.labels.shape for v in capture.views}
    if len(shapes) != 1:
        raise CaptureError(f"views have different label sizes {sorted(shapes)}; the simulated parser needs one size")
    present = np.unique(np.concatenate([np.unique(v.labels) for v in capture.views]))
    present = present[present != IGNORE].astype(np.uint8)
    H, W = next(iter(shapes))
    out = np.empty((len(capture.views), K, H, W), dtype=np.float32)

    def one(i: int) -> None:
        view = capture.views[i]
        rng = view_rng(seed, run_seed, i, view.name)  # per view: the threads' order does not matter
        gt = view.labels
        if settings.protocol == "pose":
            noisy = corrupt_pose(gt, float(yaw[i]), rng, settings, schema)
            out[i] = soften(noisy, K, difficulty(float(yaw[i]), settings), H / 256.0)
        else:
            noisy = corrupt_flip(gt, rng, settings, present)
            out[i] = soften(noisy, K, 0.0, H / 256.0, blur=settings.protocol == "region-flip")

    # numpy and scipy.ndimage release the GIL: two views at a time on two cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, range(len(capture.views))))
    return out
