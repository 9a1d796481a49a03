"""splatrefine's own capture folder: capture.json + images/ [+ labels/ + masks/ + points.ply].

```
CAPTURE/capture.json  {"format": "splatrefine-capture", "version": 1, "schema": "celebamask-hq",
    "subject": {"center": [3], "frontal": [3], "up": [3]} (optional),
    "views": [{"name", "image": "images/NAME.png", "labels": "labels/NAME.png" (opt),
               "mask": "masks/NAME.png" (opt), "width", "height", "K": [[3x3]], "viewmat": [[4x4]]}],
    "points": "points.ply" (opt), ...any extra top-level blocks are preserved}
```
Cameras are stored exactly as `splatrefine.types.Camera` holds them: world-to-camera `viewmat`
with OpenCV axes and pixel-centre-at-+0.5 intrinsics `K`. See docs/formats.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError, ConfigError
from ..schema import get_schema
from ..types import GT_NAME, Capture, View
from .atomic import atomic_dir
from .common import (
    check_camera,
    check_distinct_images,
    load_json,
    matrix,
    positive_int,
    read_subject,
    safe_join,
    subject_json,
    unique_names,
)
from .labels import read_image, read_labels, read_mask
from .points_ply import read_points_ply, write_points_ply
from .views import write_view_files

FORMAT = "splatrefine-capture"
VERSION = 1
MANIFEST = "capture.json"
MAX_LABELS_NAME = 40  # it names a column of the report's contact sheets
_RESERVED = ("format", "version", "schema", "subject", "views", "points", "labels_name")


def manifest_path(path: str | os.PathLike) -> Path:
    """The capture.json of a capture folder (or the file itself)."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def is_capture_folder(path: str | os.PathLike) -> bool:
    """True when `path` is a folder holding capture.json, or a capture.json file.

    Only the file name is looked at: a capture.json that is malformed, or lacks the "format" key,
    is still ours to read and to complain about.
    """
    m = manifest_path(path)
    return m.name == MANIFEST and m.is_file()


def read_capture_json_extra(path: str | os.PathLike) -> dict:
    """The raw capture.json of a capture folder as a dict (extra blocks such as "synthetic")."""
    m = manifest_path(path)
    data = load_json(m)
    if not isinstance(data, dict):
        raise CaptureError(f"{m}: expected a json object at the top level")
    return data


def read_capture_folder(path: str | os.PathLike) -> Capture:
    """Read a capture folder (or its capture.json) into a Capture, checking every file it names."""
    m = manifest_path(path)
    root = m.parent
    data = read_capture_json_extra(m)
    if data.get("format") != FORMAT:
        raise CaptureError(f"{m}: \"format\" is {data.get('format')!r}, expected '{FORMAT}'")
    version = data.get("version", VERSION)
    if version != VERSION:
        raise CaptureError(f"{m}: capture version {version!r} is not supported (this splatrefine reads {VERSION})")
    try:
        schema = get_schema(data.get("schema", "celebamask-hq"))
    except ConfigError as exc:
        raise CaptureError(f"{m}: {exc.message}", exc.hint) from None
    views_json = data.get("views")
    if not isinstance(views_json, list) or not views_json:
        raise CaptureError(f"{m}: \"views\" must be a non-empty list")
    views: list[View] = []
    seen: set[str] = set()
    for i, vj in enumerate(views_json):
        views.append(_read_view(vj, i, root, m, schema, seen))
    check_distinct_images([(f"views[{i}]", vj["image"], safe_join(root, vj["image"], m, f"views[{i}] image"))
                           for i, vj in enumerate(views_json)], m)
    subject = read_subject(data.get("subject"), m)
    points = colors = None
    if data.get("points") is not None:
        points, colors = read_points_ply(safe_join(root, data["points"], m, "points"))
    return Capture(views=views, schema=schema, subject=subject, points=points, point_colors=colors,
                   source=str(root), labels_name=_labels_name(data.get("labels_name", GT_NAME), m))


def _labels_name(value: Any, m: Path) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABELS_NAME:
        raise CaptureError(f"{m}: \"labels_name\" must be a short text such as \"GT\" or \"pseudo-GT\", "
                           f"got {value!r}", f"Give it 1 to {MAX_LABELS_NAME} characters, or leave it out (GT).")
    return value.strip()


def _read_view(vj: Any, i: int, root: Path, m: Path, schema, seen: set[str]) -> View:
    if not isinstance(vj, dict):
        raise CaptureError(f"{m}: views[{i}] is not an object")
    name = vj.get("name")
    if not isinstance(name, str) or not name:
        raise CaptureError(f"{m}: views[{i}] has no \"name\"")
    if name in seen:
        raise CaptureError(f"{m}: view name '{name}' appears twice")
    seen.add(name)
    where = f"{m}: view '{name}'"
    for key in ("image", "width", "height", "K", "viewmat"):
        if key not in vj:
            raise CaptureError(f"{where} has no \"{key}\"")
    width = positive_int(vj["width"], where, "width")
    height = positive_int(vj["height"], where, "height")
    K = matrix(vj["K"], (3, 3), where, "K")
    viewmat = matrix(vj["viewmat"], (4, 4), where, "viewmat")
    camera = check_camera(K, viewmat, width, height, where)
    image_path = safe_join(root, vj["image"], m, f"view '{name}' image")
    if not image_path.is_file():
        raise CaptureError(f"{m}: view '{name}' names image '{vj['image']}', which does not exist")
    image = read_image(image_path)
    _check_size(image.shape, width, height, image_path, m)
    labels = mask = None
    if vj.get("labels") is not None:
        lp = safe_join(root, vj["labels"], m, f"view '{name}' labels")
        labels = read_labels(lp, schema)
        _check_size(labels.shape, width, height, lp, m)
    if vj.get("mask") is not None:
        mp = safe_join(root, vj["mask"], m, f"view '{name}' mask")
        mask = read_mask(mp)
        _check_size(mask.shape, width, height, mp, m)
    return View(name=name, camera=camera, image=image, labels=labels, mask=mask)


def _check_size(shape: tuple[int, ...], width: int, height: int, path: Path, manifest: Path) -> None:
    h, w = shape[:2]
    if (w, h) != (width, height):
        raise CaptureError(f"{path}: image is {w}x{h} but {manifest.name} says the camera is {width}x{height}")


def capture_manifest(capture: Capture, names: list[str] | None = None) -> dict:
    """The capture.json dict for `capture` (file names under images/, labels/, masks/)."""
    names = names or unique_names([v.name for v in capture.views])
    views = []
    for name, v in zip(names, capture.views):
        cam = v.camera
        entry: dict[str, Any] = {"name": name, "image": f"images/{name}.png"}
        if v.labels is not None:
            entry["labels"] = f"labels/{name}.png"
        if v.mask is not None:
            entry["mask"] = f"masks/{name}.png"
        entry.update(width=int(cam.width), height=int(cam.height),
                     K=np.asarray(cam.K, dtype=np.float64).tolist(),
                     viewmat=np.asarray(cam.viewmat, dtype=np.float64).tolist())
        views.append(entry)
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "schema": capture.schema.name}
    if capture.subject is not None:
        out["subject"] = subject_json(capture.subject)
    out["views"] = views
    if capture.points is not None:
        out["points"] = "points.ply"
    if capture.labels_name != GT_NAME:
        out["labels_name"] = capture.labels_name
    return out


def write_capture_folder(capture: Capture, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `capture` as a capture folder at `path` (atomic: it appears whole or not at all).

    View names become file stems (characters other than letters, digits, '.', '_', '-' turn into
    '_'). `extra` holds further top-level json blocks (e.g. {"synthetic": {...}}) kept verbatim.
    An existing folder at `path` is replaced.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra blocks may not override capture.json keys: {clash}")
    if not capture.views:
        raise ValueError("cannot write a capture with no views")
    names = unique_names([v.name for v in capture.views])
    manifest = capture_manifest(capture, names)
    manifest.update(extra)
    text = json.dumps(manifest, indent=1)  # fails early (before any file) on non-json extras
    for v in capture.views:
        h, w = v.image.shape[:2]
        if (w, h) != (v.camera.width, v.camera.height):
            raise ValueError(f"view '{v.name}': image is {w}x{h} but its camera is {v.camera.width}x{v.camera.height}")
    with atomic_dir(path) as tmp:
        write_view_files(tmp, names, capture)
        if capture.points is not None:
            write_points_ply(tmp / "points.ply", capture.points, capture.point_colors)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return Path(path)
