"""One view's map file -> class probabilities float32 [K,H,W], every problem a CaptureError naming
the file. Label PNGs are read by splatrefine.io.labels (palettized / grey indices, or colours of
the schema palette); probability arrays are .npy [K,H,W] or .npz holding one such array."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from splatrefine.errors import CaptureError
from splatrefine.io.labels import read_labels
from splatrefine.schema import IGNORE, LabelSchema

SUM_TOLERANCE = 1e-2  # float16 arrays of 19 classes sum to 1 only within a few 1e-3


def hard_to_probs(labels: np.ndarray, k: int, smoothing: float) -> np.ndarray:
    """uint8 [H,W] class indices (255 = no opinion) -> float32 [K,H,W]: 1 - smoothing on the class,
    smoothing / (K - 1) on every other class, uniform where the label is 255."""
    probs = np.full((k,) + labels.shape, 1.0 / k, np.float32)
    known = labels != IGNORE
    if known.any():
        rows, cols = np.nonzero(known)
        probs[:, rows, cols] = smoothing / max(k - 1, 1)
        probs[labels[rows, cols], rows, cols] = 1.0 - smoothing
    return probs


def read_png(path: Path, schema: LabelSchema, size: tuple[int, int]) -> np.ndarray:
    """A label PNG in `schema` as uint8 [H,W]; `size` = the view's (H, W)."""
    try:
        labels = read_labels(path, schema)
    except CaptureError as exc:
        raise CaptureError(exc.message, f"Label maps hold class indices of schema '{schema.name}' "
                           f"(0..{schema.num_classes - 1}, 255 = no opinion) or its palette colours; "
                           "--set initial_parser.schema=NAME if they use another schema.") from None
    _check_size(path, labels.shape, size)
    return labels


def read_array(path: Path, schema: LabelSchema, size: tuple[int, int]) -> np.ndarray:
    """A probability array (.npy, or .npz with one array or one named 'probs') as float32 [K,H,W],
    each pixel summing to 1 (checked to SUM_TOLERANCE, then renormalised)."""
    try:
        with open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                keys = list(data.keys())
                if len(keys) != 1 and "probs" not in keys:
                    raise CaptureError(f"{path}: holds arrays {', '.join(keys) or '(none)'}; expected one array "
                                       "or one named 'probs'", "Save it with np.savez(path, probs=probs).")
                data = data["probs" if "probs" in keys else keys[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CaptureError(f"{path}: cannot read probability array ({exc})") from None
    k, (h, w) = schema.num_classes, size
    if data.ndim != 3 or not np.issubdtype(data.dtype, np.floating):
        raise CaptureError(f"{path}: expected float probabilities [K,H,W] = [{k},{h},{w}], got {data.dtype} "
                           f"{list(data.shape)}", "Save each view's softmax output as a float array [K,H,W].")
    if data.shape[0] != k:
        hint = ("It looks like [H,W,K]: save probs.transpose(2, 0, 1)." if data.shape[2] == k else
                f"Save all {k} classes of schema '{schema.name}' in its order, or --set initial_parser.schema=NAME.")
        raise CaptureError(f"{path}: has {data.shape[0]} classes on axis 0; schema '{schema.name}' has {k}", hint)
    _check_size(path, data.shape[1:], size)
    probs = data.astype(np.float32)
    if not np.isfinite(probs).all() or probs.min() < -SUM_TOLERANCE:
        raise CaptureError(f"{path}: probabilities must be finite and >= 0 (found {_describe_bad(probs)})",
                           "Save softmax probabilities, not logits.")
    sums = probs.sum(axis=0)
    err = np.abs(sums - 1.0)
    if err.max() > SUM_TOLERANCE:
        y, x = np.unravel_index(int(err.argmax()), err.shape)
        raise CaptureError(f"{path}: probabilities must sum to 1 over the {k} classes; pixel (y={y}, x={x}) "
                           f"sums to {sums[y, x]:.4g}", "Apply a softmax over axis 0 before saving.")
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum(axis=0, keepdims=True)


def map_probs(probs: np.ndarray, lut: np.ndarray, k: int) -> np.ndarray:
    """float32 [Ks,H,W] in a source schema -> [K,H,W] through `lut` (source -> target index, 255 =
    no counterpart): classes merging into one add up; a pixel whose mass all falls on classes
    without a counterpart is uniform."""
    out = np.zeros((k,) + probs.shape[1:], np.float32)
    for src, dst in enumerate(lut[: probs.shape[0]]):
        if dst != IGNORE:
            out[dst] += probs[src]
    mass = out.sum(axis=0, keepdims=True)
    return np.where(mass > 1e-6, out / np.maximum(mass, 1e-6), np.float32(1.0 / k)).astype(np.float32)


def _check_size(path: Path, shape: tuple[int, ...], size: tuple[int, int]) -> None:
    if tuple(shape) != tuple(size):
        raise CaptureError(f"{path}: map is {shape[1]}x{shape[0]} but its view is {size[1]}x{size[0]}",
                           "Make each map the size of its view's image (nearest-neighbour resize for labels).")


def _describe_bad(probs: np.ndarray) -> str:
    if not np.isfinite(probs).all():
        return "NaN or inf"
    return f"min {probs.min():.4g}"
