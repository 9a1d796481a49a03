"""nerfstudio / instant-ngp `transforms.json`: reader and writer.

Layout (a folder holding transforms.json or cameras.json, or the json file itself):
```
{"camera_model": "OPENCV", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
 "frames": [{"file_path": "images/a.png", "transform_matrix": [[4x4 camera-to-world, OpenGL]],
             "mask_path": "masks/a.png" (opt), "label_path": "labels/a.png" (opt, ours),
             ...any intrinsic key above, overriding the global one for this frame}],
 "ply_file_path": "points.ply" (opt), "label_schema": "celebamask-hq" (opt, ours)}
```
Conversion: nerfstudio's `transform_matrix` is camera-to-world with OpenGL camera axes (x right,
y up, z backwards). Ours is world-to-camera with OpenCV axes (x right, y down, z forward):
`viewmat = inverse(c2w_gl @ diag(1, -1, -1, 1))`. fl_x/fl_y/cx/cy are used unchanged (both put
the centre of pixel (0, 0) at (0.5, 0.5)). `camera_angle_x` (instant-ngp / Blender) is accepted
when fl_x is absent. Lens distortion is undistorted with OpenCV (see splatrefine.io.undistort).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError, ConfigError
from ..schema import CELEBAMASK_HQ, LabelSchema, get_schema
from ..types import Camera, Cameras, Capture
from .atomic import atomic_dir, write_text
from .common import (
    check_distinct_images,
    load_json,
    matrix,
    positive_int,
    read_subject,
    safe_join,
    subject_json,
    unique_names,
)
from .labels import image_size
from .points_ply import read_points_ply, write_points_ply
from .undistort import Distortion
from .views import load_view, write_view_files

MANIFEST_NAMES = ("transforms.json", "cameras.json")
# OpenGL camera axes <-> OpenCV camera axes (flip y and z); its own inverse.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])

_PERSPECTIVE = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "PERSPECTIVE", "SIMPLE_RADIAL", "RADIAL")
_FISHEYE = ("OPENCV_FISHEYE", "FISHEYE")
_INTRINSIC_KEYS = ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
                   "camera_angle_x", "camera_angle_y")


def manifest_path(path: str | os.PathLike) -> Path | None:
    """The transforms json for `path` (a folder holding one, or the file itself), else None."""
    p = Path(path)
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return p / name
        return None
    return p if p.is_file() and p.suffix.lower() == ".json" else None


def is_nerfstudio(path: str | os.PathLike) -> bool:
    """True when `path` holds (or is) a transforms json: a json object with a "frames" list.

    A folder's transforms.json that is not valid json still counts (the reader reports it).
    """
    m = manifest_path(path)
    if m is None:
        return False
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return m.name == "transforms.json"
    return isinstance(data, dict) and isinstance(data.get("frames"), list)


def c2w_gl_to_viewmat(c2w: np.ndarray, where: str) -> np.ndarray:
    """nerfstudio camera-to-world (OpenGL axes) [4,4] -> world-to-camera (OpenCV axes) [4,4]."""
    c2w_cv = c2w @ GL_TO_CV
    if abs(np.linalg.det(c2w_cv[:3, :3])) < 1e-9:
        raise CaptureError(f"{where}: transform_matrix is not invertible")
    return np.linalg.inv(c2w_cv)


def viewmat_to_c2w_gl(viewmat: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV axes) [4,4] -> nerfstudio camera-to-world (OpenGL axes) [4,4]."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return c2w @ GL_TO_CV


def read_nerfstudio(path: str | os.PathLike) -> Capture:
    """Read a transforms.json capture (folder or file) into a Capture."""
    m = manifest_path(path)
    if m is None:
        raise CaptureError(f"{path}: no {' or '.join(MANIFEST_NAMES)} here")
    root = m.parent
    data = load_json(m)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise CaptureError(f"{m}: expected a json object with a \"frames\" list")
    frames = data["frames"]
    if not frames:
        raise CaptureError(f"{m}: \"frames\" is empty")
    schema = _schema(data, m)
    names = _frame_names(frames, m)
    views = []
    for i, (frame, name) in enumerate(zip(frames, names)):
        views.append(_read_frame(frame, i, name, data, root, m, schema))
    check_distinct_images([(f"frames[{i}]", f["file_path"], _resolve_image(root, f["file_path"], m, f"frames[{i}]"))
                           for i, f in enumerate(frames)], m)
    points = colors = None
    if data.get("ply_file_path"):
        points, colors = read_points_ply(safe_join(root, data["ply_file_path"], m, "ply_file_path"))
    return Capture(views=views, schema=schema, subject=read_subject(data.get("subject"), m),
                   points=points, point_colors=colors, source=str(m))


def _schema(data: dict, m: Path) -> LabelSchema:
    try:
        return get_schema(data.get("label_schema", CELEBAMASK_HQ.name))
    except ConfigError as exc:
        raise CaptureError(f"{m}: {exc.message}", exc.hint) from None


def _frame_names(frames: list, m: Path) -> list[str]:
    stems, full = [], []
    for i, f in enumerate(frames):
        fp = f.get("file_path") if isinstance(f, dict) else None
        if not isinstance(fp, str) or not fp:
            raise CaptureError(f"{m}: frames[{i}] has no \"file_path\"")
        p = Path(fp.replace("\\", "/"))
        stems.append(p.stem if p.suffix else p.name)
        full.append(str(p.with_suffix("")) if p.suffix else str(p))
    return unique_names(stems if len(set(stems)) == len(stems) else full)


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CaptureError(f"{where}: \"{key}\" must be a finite number, got {value!r}")
    return float(value)


def _resolve_image(root: Path, file_path: str, m: Path, where: str) -> Path:
    p = safe_join(root, file_path, m, f"{where} file_path")
    if not p.exists() and not p.suffix:  # Blender-style names without extension
        for ext in (".png", ".jpg", ".jpeg"):
            if p.with_suffix(ext).is_file():
                return p.with_suffix(ext)
    if not p.is_file():
        raise CaptureError(f"{m}: {where} names image '{file_path}', which does not exist")
    return p


def _read_frame(frame: dict, i: int, name: str, data: dict, root: Path, m: Path, schema: LabelSchema):
    where = f"{m}: frames[{i}] ('{frame['file_path']}')"
    intr = {k: data[k] for k in _INTRINSIC_KEYS if k in data}
    intr.update({k: frame[k] for k in _INTRINSIC_KEYS if k in frame})
    image_path = _resolve_image(root, frame["file_path"], m, f"frames[{i}]")
    if "w" in intr and "h" in intr:
        width, height = positive_int(intr["w"], where, "w"), positive_int(intr["h"], where, "h")
    else:
        width, height = image_size(image_path)
    K = _intrinsics(intr, width, height, where)
    distortion = _distortion(intr, where)
    if "transform_matrix" not in frame:
        raise CaptureError(f"{where}: no \"transform_matrix\"")
    tm = frame["transform_matrix"]
    if isinstance(tm, list) and len(tm) == 3:  # 3x4 without the homogeneous row
        tm = [*tm, [0.0, 0.0, 0.0, 1.0]]
    c2w = matrix(tm, (4, 4), where, "transform_matrix")
    viewmat = c2w_gl_to_viewmat(c2w, where)
    labels_path = safe_join(root, frame["label_path"], m, f"frames[{i}] label_path") if frame.get("label_path") else None
    mask_path = safe_join(root, frame["mask_path"], m, f"frames[{i}] mask_path") if frame.get("mask_path") else None
    return load_view(name, K, viewmat, width, height, image_path, where, schema, labels_path, mask_path, distortion)


def _intrinsics(intr: dict, width: int, height: int, where: str) -> np.ndarray:
    if "fl_x" in intr:
        fx = _number(intr["fl_x"], where, "fl_x")
    elif "camera_angle_x" in intr:
        fx = 0.5 * width / math.tan(0.5 * _number(intr["camera_angle_x"], where, "camera_angle_x"))
    else:
        raise CaptureError(f"{where}: no focal length (\"fl_x\" or \"camera_angle_x\")")
    if "fl_y" in intr:
        fy = _number(intr["fl_y"], where, "fl_y")
    elif "camera_angle_y" in intr:
        fy = 0.5 * height / math.tan(0.5 * _number(intr["camera_angle_y"], where, "camera_angle_y"))
    else:
        fy = fx
    cx = _number(intr.get("cx", width / 2.0), where, "cx")
    cy = _number(intr.get("cy", height / 2.0), where, "cy")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _distortion(intr: dict, where: str) -> Distortion | None:
    model = str(intr.get("camera_model", "OPENCV")).upper()
    c = {k: _number(intr.get(k, 0.0), where, k) for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
    if model in _PERSPECTIVE:
        if c["k4"] != 0.0:
            raise CaptureError(f"{where}: camera_model {model} with k4 != 0 (an r^8 radial term) cannot be undistorted "
                               "with OpenCV; undistort the images first")
        d = Distortion("opencv", (c["k1"], c["k2"], c["p1"], c["p2"], c["k3"]))
    elif model in _FISHEYE:
        if c["p1"] != 0.0 or c["p2"] != 0.0:
            raise CaptureError(f"{where}: camera_model {model} with tangential terms p1/p2 is not supported")
        d = Distortion("fisheye", (c["k1"], c["k2"], c["k3"], c["k4"]))
    else:
        raise CaptureError(f"{where}: camera_model '{model}' is not supported "
                           "(use OPENCV, OPENCV_FISHEYE or PINHOLE; undistort or reproject the images first)")
    return None if d.is_zero else d


# ---------------------------------------------------------------- writing


def transforms_dict(
    cameras: Cameras | Sequence[Camera],
    file_paths: Sequence[str],
    label_paths: Sequence[str | None] | None = None,
    mask_paths: Sequence[str | None] | None = None,
    frame_extras: Sequence[dict] | None = None,
    schema: LabelSchema | None = None,
) -> dict:
    """A transforms.json dict with per-frame intrinsics (fl_x, fl_y, cx, cy, w, h) for `cameras`.

    `label_paths` adds our "label_path" extension per frame, `frame_extras` any further per-frame
    keys (e.g. {"confidence_path": ...}). K must have no skew (transforms.json cannot hold it).
    """
    cams = [cameras[i] for i in range(len(cameras))]
    if len(file_paths) != len(cams):
        raise ValueError(f"{len(cams)} cameras but {len(file_paths)} file paths")
    frames = []
    for i, cam in enumerate(cams):
        K = np.asarray(cam.K, dtype=np.float64)
        if abs(K[0, 1]) > 1e-12:
            raise ValueError(f"camera {i}: K has skew {K[0, 1]}, which transforms.json cannot store")
        frame: dict[str, Any] = {"file_path": file_paths[i]}
        if label_paths is not None and label_paths[i] is not None:
            frame["label_path"] = label_paths[i]
        if mask_paths is not None and mask_paths[i] is not None:
            frame["mask_path"] = mask_paths[i]
        frame.update(fl_x=float(K[0, 0]), fl_y=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]),
                     w=int(cam.width), h=int(cam.height),
                     transform_matrix=viewmat_to_c2w_gl(np.asarray(cam.viewmat, dtype=np.float64)).tolist())
        if frame_extras is not None:
            frame.update(frame_extras[i])
        frames.append(frame)
    out: dict[str, Any] = {"camera_model": "OPENCV"}
    if schema is not None:
        out["label_schema"] = schema.name
    out["frames"] = frames
    return out


def cameras_to_transforms(samples: Sequence[dict], schema: LabelSchema | None = None) -> dict:
    """A transforms.json dict from manifest-style samples (RUN/refined/manifest.json entries).

    Each sample needs "image", "K" [3x3], "viewmat" [4x4], "width", "height"; "labels" becomes our
    "label_path", "confidence" a "confidence_path", and "name"/"source"/"yaw"/"pitch" are kept
    on the frame.
    """
    cams, files, labels, extras = [], [], [], []
    for i, s in enumerate(samples):
        try:
            K = np.asarray(s["K"], dtype=np.float64).reshape(3, 3)
            vm = np.asarray(s["viewmat"], dtype=np.float64).reshape(4, 4)
            cams.append(Camera(vm, K, int(s["width"]), int(s["height"])))
            files.append(s["image"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"sample {i}: needs image, K [3x3], viewmat [4x4], width, height ({exc})") from None
        labels.append(s.get("labels"))
        extra = {k: s[k] for k in ("name", "source", "yaw", "pitch") if k in s}
        if s.get("confidence") is not None:
            extra["confidence_path"] = s["confidence"]
        extras.append(extra)
    return transforms_dict(cams, files, labels, frame_extras=extras, schema=schema)


def write_transforms_json(path: str | os.PathLike, transforms: dict) -> None:
    """Write a transforms dict as json, atomically."""
    write_text(path, json.dumps(transforms, indent=1) + "\n")


def write_nerfstudio(capture: Capture, path: str | os.PathLike, filename: str = "transforms.json") -> Path:
    """Write `capture` as a nerfstudio folder (images/, labels/, masks/, points.ply, `filename`).

    Atomic: the folder appears whole or not at all; an existing folder at `path` is replaced.
    """
    names = unique_names([v.name for v in capture.views])
    cams = [v.camera for v in capture.views]
    labels = [f"labels/{n}.png" if v.labels is not None else None for n, v in zip(names, capture.views)]
    masks = [f"masks/{n}.png" if v.mask is not None else None for n, v in zip(names, capture.views)]
    data = transforms_dict(cams, [f"images/{n}.png" for n in names], labels, masks, schema=capture.schema)
    if capture.points is not None:
        data["ply_file_path"] = "points.ply"
    if capture.subject is not None:
        data["subject"] = subject_json(capture.subject)
    with atomic_dir(path) as tmp:
        write_view_files(tmp, names, capture)
        if capture.points is not None:
            write_points_ply(tmp / "points.ply", capture.points, capture.point_colors)
        write_transforms_json(tmp / filename, data)
    return Path(path)
