"""FaceScape multi-view folders: `{i}.jpg` images + `params.json` with per-view cameras.

```
TUPLE/0.jpg 1.jpg ... params.json
params.json: {"{i}_K": 3x3 (or 4x4) intrinsics, "{i}_Rt": 3x4 world-to-camera, OpenCV axes,
              "{i}_distortion": [k1, k2, p1, p2, k3], "{i}_width", "{i}_height",
              "{i}_valid": bool, ("{i}_matches", "{i}_sn", "{i}_ori": ignored)}
```
Views whose `{i}_valid` is false are skipped (FaceScape marks their calibration unreliable). Every
view is undistorted with OpenCV. FaceScape calibrates and undistorts with OpenCV, whose pixel (0, 0)
is centred at (0, 0); we add 0.5 to cx and cy to get our convention (centred at (0.5, 0.5)).
Optional extensions beside the images: `labels/{i}.png` (label PNGs, celebamask-hq) and
`masks/{i}.png` (foreground masks). The world unit is FaceScape's (millimetres).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError
from ..schema import CELEBAMASK_HQ
from ..types import Capture
from .common import load_json, matrix, positive_int
from .undistort import Distortion, from_opencv_K
from .views import load_view

log = logging.getLogger(__name__)

PARAMS = "params.json"
_KEY = re.compile(r"^(\d+)_K$")
_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".PNG")


def params_path(path: str | os.PathLike) -> Path | None:
    p = Path(path)
    if p.is_dir():
        return p / PARAMS if (p / PARAMS).is_file() else None
    return p if p.is_file() and p.suffix.lower() == ".json" else None


def is_facescape(path: str | os.PathLike) -> bool:
    """True for a folder with params.json (or such a json file) holding "{i}_K" keys."""
    m = params_path(path)
    if m is None:
        return False
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return m.name == PARAMS
    return isinstance(data, dict) and any(_KEY.match(k) for k in data)


def _intrinsics(value: Any, where: str, key: str) -> np.ndarray:
    """3x3 K from a 3x3, 4x4 (upper-left block) or flat 9/16 list."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: {key} is not a 3x3 matrix of numbers") from None
    if arr.ndim == 1 and arr.size in (9, 16):
        arr = arr.reshape(3, 3) if arr.size == 9 else arr.reshape(4, 4)
    if arr.shape == (4, 4):
        arr = arr[:3, :3]
    return matrix(arr.tolist(), (3, 3), where, key)


def _extrinsics(value: Any, where: str, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: {key} is not a 3x4 matrix of numbers") from None
    if arr.ndim == 1 and arr.size in (12, 16):
        arr = arr.reshape(-1, 4)
    if arr.shape == (4, 4):
        arr = arr[:3]
    Rt = matrix(arr.tolist(), (3, 4), where, key)
    viewmat = np.eye(4)
    viewmat[:3] = Rt
    return viewmat


def _valid(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)


def read_facescape(path: str | os.PathLike) -> Capture:
    """Read a FaceScape multi-view tuple folder (or its params.json) into a Capture."""
    m = params_path(path)
    if m is None:
        raise CaptureError(f"{path}: no {PARAMS} here")
    root = m.parent
    data = load_json(m)
    if not isinstance(data, dict):
        raise CaptureError(f"{m}: expected a json object")
    ids = sorted(int(mt.group(1)) for k in data if (mt := _KEY.match(k)))
    if not ids:
        raise CaptureError(f"{m}: no \"{{i}}_K\" camera entries")
    views, skipped = [], []
    for i in ids:
        if not _valid(data.get(f"{i}_valid", True)):
            skipped.append(i)
            continue
        where = f"{m}: view {i}"
        if f"{i}_Rt" not in data:
            raise CaptureError(f"{where} has \"{i}_K\" but no \"{i}_Rt\"")
        K = from_opencv_K(_intrinsics(data[f"{i}_K"], where, f"{i}_K"))
        viewmat = _extrinsics(data[f"{i}_Rt"], where, f"{i}_Rt")
        width = positive_int(data[f"{i}_width"], where, f"{i}_width") if f"{i}_width" in data else None
        height = positive_int(data[f"{i}_height"], where, f"{i}_height") if f"{i}_height" in data else None
        dist = data.get(f"{i}_distortion", [0.0] * 5)
        try:
            coeffs = tuple(float(c) for c in np.asarray(dist, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise CaptureError(f"{where}: {i}_distortion is not a list of numbers") from None
        if len(coeffs) not in (4, 5, 8) or not np.all(np.isfinite(coeffs)):
            raise CaptureError(f"{where}: {i}_distortion must be 4, 5 or 8 finite numbers (k1 k2 p1 p2 k3), got {list(dist)}")
        image_path = next((root / f"{i}{e}" for e in _EXTS if (root / f"{i}{e}").is_file()), None)
        if image_path is None:
            raise CaptureError(f"{m}: view {i} is valid but its image {i}.jpg does not exist in {root}")
        labels_path = root / "labels" / f"{i}.png"
        mask_path = root / "masks" / f"{i}.png"
        views.append(load_view(
            str(i), K, viewmat, width, height, image_path, where, CELEBAMASK_HQ,
            labels_path if labels_path.is_file() else None, mask_path if mask_path.is_file() else None,
            Distortion("opencv", coeffs),
        ))
    if skipped:
        log.info("%s: skipped %d views marked invalid: %s", m, len(skipped), skipped)
    if not views:
        raise CaptureError(f"{m}: every view is marked invalid")
    return Capture(views=views, schema=CELEBAMASK_HQ, source=str(root))
