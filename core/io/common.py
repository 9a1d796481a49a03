"""Helpers every capture reader shares: json loading, safe manifest paths, camera checks.

Every problem is a `CaptureError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import CaptureError
from ..types import Camera, Subject

# How far a camera rotation may be from orthonormal before it is refused (scale or shear).
ROTATION_TOLERANCE = 1e-3


def check_distinct_images(entries: list[tuple[str, str, Path]], manifest: Path) -> None:
    """CaptureError when two entries of `manifest` name the same image file.

    entries: (where, as written, resolved path), e.g. ("frames[3]", "images/a.png", root/images/a.png).
    The same picture twice would count as two agreeing views of one pose."""
    seen: dict[str, str] = {}
    for where, written, path in entries:
        key = os.path.normcase(os.path.realpath(path))
        if key in seen:
            raise CaptureError(f"{manifest}: {seen[key]} and {where} name the same image '{written}'",
                               "Each view needs its own image; remove the duplicate entry.")
        seen[key] = where


def load_json(path: str | os.PathLike) -> Any:
    """Parse a json file; a missing, unreadable or malformed file is a CaptureError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: cannot read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaptureError(f"{path}: malformed json at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def safe_join(root: Path, name: Any, manifest: Path, field: str = "path") -> Path:
    """`root / name` for a relative path written in `manifest`, refusing escapes from `root`.

    Absolute paths, drive letters and any '..' component are refused (backslashes count as
    separators), so a manifest can only name files inside its own capture folder.
    """
    if not isinstance(name, str) or not name.strip():
        raise CaptureError(f"{manifest}: {field} must be a non-empty string, got {name!r}")
    text = name.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", text) or ".." in pure.parts:
        raise CaptureError(
            f"{manifest}: {field} '{name}' points outside the capture folder",
            "Paths in a capture manifest must be relative and stay inside the capture folder.",
        )
    return root.joinpath(*[p for p in pure.parts if p not in ("", ".")])


def matrix(value: Any, shape: tuple[int, int], where: str, field: str) -> np.ndarray:
    """A finite float64 array of `shape` from a json value, else a CaptureError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: {field} is not a {shape[0]}x{shape[1]} matrix of numbers") from None
    if arr.shape != shape:
        raise CaptureError(f"{where}: {field} has shape {list(arr.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(arr)):
        raise CaptureError(f"{where}: {field} has non-finite values (camera is not usable)")
    return arr


def positive_int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise CaptureError(f"{where}: {field} must be a positive integer, got {value!r}")
    return int(value)


def check_camera(K: np.ndarray, viewmat: np.ndarray, width: int, height: int, where: str) -> Camera:
    """Validate a pinhole camera and return it.

    K [3,3] must be finite with fx, fy > 0 and last row [0, 0, 1]; viewmat [4,4] must be finite,
    last row [0, 0, 0, 1], with a proper rotation (orthonormal to 1e-3, det +1).
    """
    K = np.asarray(K, dtype=np.float64)
    viewmat = np.asarray(viewmat, dtype=np.float64)
    if K.shape != (3, 3) or viewmat.shape != (4, 4):
        raise CaptureError(f"{where}: camera matrices have shapes {list(K.shape)} and {list(viewmat.shape)}")
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(viewmat))):
        raise CaptureError(f"{where}: camera has non-finite values")
    if width <= 0 or height <= 0:
        raise CaptureError(f"{where}: image size {width}x{height} is not positive")
    if not (K[0, 0] > 0 and K[1, 1] > 0) or not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise CaptureError(
            f"{where}: intrinsics are not invertible (need fx > 0, fy > 0, last row 0 0 1; got "
            f"fx={K[0, 0]:g}, fy={K[1, 1]:g})"
        )
    if not np.allclose(viewmat[3], [0.0, 0.0, 0.0, 1.0]):
        raise CaptureError(f"{where}: viewmat last row is {viewmat[3].tolist()}, expected [0, 0, 0, 1]")
    R = viewmat[:3, :3]
    det = float(np.linalg.det(R))
    if abs(det) < 1e-9:
        raise CaptureError(f"{where}: camera rotation is not invertible (det = {det:g})")
    if np.abs(R @ R.T - np.eye(3)).max() > ROTATION_TOLERANCE or det < 0:
        raise CaptureError(f"{where}: camera rotation is not a rotation (scaled, sheared or mirrored; det = {det:g})")
    return Camera(viewmat=viewmat, K=K, width=int(width), height=int(height))


def safe_name(name: str) -> str:
    """A view name usable as a file stem: path separators and odd characters become '_'."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("\\", "/").replace("/", "_")).strip("._")
    return out or "view"


def unique_names(names: list[str]) -> list[str]:
    """`safe_name` of each, made unique by a numeric suffix where two collide."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        base = safe_name(name)
        candidate, n = base, 1
        while candidate in seen:
            candidate = f"{base}_{n}"
            n += 1
        seen[candidate] = 1
        out.append(candidate)
    return out


def read_subject(value: Any, manifest: Path) -> Subject | None:
    """A Subject from its json form {"center": [3], "frontal": [3], "up": [3]} (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(k in value for k in ("center", "frontal", "up")):
        raise CaptureError(f"{manifest}: \"subject\" must have \"center\", \"frontal\" and \"up\"")
    vecs = {}
    for key in ("center", "frontal", "up"):
        v = matrix([value[key]], (1, 3), f"{manifest}: subject", key)[0]
        if key != "center":
            n = np.linalg.norm(v)
            if n < 1e-12:
                raise CaptureError(f"{manifest}: subject {key} is a zero vector")
            v = v / n
        vecs[key] = v
    return Subject(**vecs)


def subject_json(subject: Subject) -> dict:
    """The json form of a Subject."""
    return {k: np.asarray(getattr(subject, k), dtype=np.float64).tolist() for k in ("center", "frontal", "up")}
