"""COLMAP sparse models: cameras, images and points3D in .txt or .bin; a text writer.

Accepted paths: the model folder itself (holding cameras.{bin,txt} and images.{bin,txt}), a COLMAP
workspace whose model is in sparse/ or sparse/0, or one of the model's files. When a model folder
holds both, the .bin files win (as in COLMAP). Images are looked up in `images/` of the workspace
(beside sparse/), then beside the model folder. Optional extensions: `labels/STEM.png` (our label
PNGs) and `masks/NAME.png` or `masks/STEM.png` (foreground masks) beside `images/`.

Conventions: COLMAP stores world-to-camera poses as a Hamilton quaternion (QW, QX, QY, QZ) and a
translation with OpenCV camera axes, exactly our `viewmat`; intrinsics put the centre of pixel
(0, 0) at (0.5, 0.5), exactly our K. Distorted models are undistorted with OpenCV (same image size,
same fx, fy, cx, cy); FOV and the thin-prism / division models are refused.
Binary layout (little endian): cameras.bin = u64 count, then per camera u32 id, i32 model, u64
width, u64 height, f64 params[n(model)]; images.bin = u64 count, then per image u32 id, f64 qw qx qy
qz tx ty tz, u32 camera id, NUL-terminated name, u64 n2d, n2d x (f64 x, f64 y, i64 point3D id);
points3D.bin = u64 count, then per point u64 id, f64 xyz, u8 rgb, f64 error, u64 track length,
track x (u32 image id, u32 point2D index).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CaptureError
from ..schema import CELEBAMASK_HQ
from ..types import Capture
from .atomic import atomic_dir
from .common import safe_join, unique_names
from .undistort import Distortion
from .views import load_view, write_view_files

# model id -> (name, number of params)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16), 12: ("SIMPLE_DIVISION", 4), 13: ("DIVISION", 5),
}
MODEL_IDS = {name: mid for mid, (name, _) in CAMERA_MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                    "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # qw, qx, qy, qz
    tvec: np.ndarray
    camera_id: int
    name: str


# ---------------------------------------------------------------- locating


def _has_model(d: Path) -> bool:
    return any((d / f"cameras{e}").is_file() for e in (".bin", ".txt")) and \
        any((d / f"images{e}").is_file() for e in (".bin", ".txt"))


def model_dir(path: str | os.PathLike) -> Path | None:
    """The sparse model folder for `path`, or None when `path` is not a COLMAP model/workspace."""
    p = Path(path)
    if p.is_file():
        return p.parent if p.stem in ("cameras", "images", "points3D") and p.suffix in (".bin", ".txt") \
            and _has_model(p.parent) else None
    for d in (p, p / "sparse" / "0", p / "sparse"):
        if d.is_dir() and _has_model(d):
            return d
    return None


def is_colmap(path: str | os.PathLike) -> bool:
    return model_dir(path) is not None


def _model_file(d: Path, stem: str) -> Path | None:
    for ext in (".bin", ".txt"):
        if (d / f"{stem}{ext}").is_file():
            return d / f"{stem}{ext}"
    return None


def _image_dir_candidates(model: Path, given: Path) -> list[Path]:
    cands = []
    if model.name == "sparse":
        cands.append(model.parent / "images")
    if model.parent.name == "sparse":
        cands.append(model.parent.parent / "images")
    given_dir = given if given.is_dir() else given.parent
    cands += [given_dir / "images", model / "images", model.parent / "images"]
    out = []
    for c in cands:
        if c not in out:
            out.append(c)
    return out


# ---------------------------------------------------------------- text


def _data_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return text.splitlines()


def _is_float(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for n, line in enumerate(_data_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = tuple(float(t) for t in tok[4:])
        except (ValueError, IndexError):
            raise CaptureError(f"{path}: line {n} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'") from None
        if model not in MODEL_IDS:
            raise CaptureError(f"{path}: line {n}: unknown camera model '{model}'")
        expected = CAMERA_MODELS[MODEL_IDS[model]][1]
        if len(params) != expected:
            raise CaptureError(f"{path}: line {n}: {model} takes {expected} parameters, got {len(params)}")
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    lines = _data_lines(path)
    images = {}
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        tok = line.split(maxsplit=9)
        try:
            if len(tok) < 10:
                raise ValueError
            iid = int(tok[0])
            q = np.array([float(t) for t in tok[1:5]])
            t = np.array([float(x) for x in tok[5:8]])
            cid = int(tok[8])
            name = tok[9].strip()
        except ValueError:
            raise CaptureError(f"{path}: line {i} is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'") from None
        images[iid] = ColmapImage(iid, q, t, cid, name)
        # the next line lists the image's 2D points (possibly empty); skip it unless it is a header
        if i < len(lines):
            nxt = lines[i].split()
            if not (len(nxt) >= 10 and not all(_is_float(x) for x in nxt)) and not lines[i].lstrip().startswith("#"):
                i += 1
    return images


def read_points3d_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for n, line in enumerate(_data_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            xyz.append([float(t) for t in tok[1:4]])
            rgb.append([int(t) for t in tok[4:7]])
            if len(xyz[-1]) != 3 or len(rgb[-1]) != 3:
                raise ValueError
        except ValueError:
            raise CaptureError(f"{path}: line {n} is not 'POINT3D_ID X Y Z R G B ERROR TRACK...'") from None
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3), np.clip(np.asarray(rgb), 0, 255).astype(np.uint8).reshape(-1, 3)


# ---------------------------------------------------------------- binary


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CaptureError(f"{self.path}: truncated at byte {self.pos} (file has {len(self.data)} bytes)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, nbytes: int) -> None:
        if self.pos + nbytes > len(self.data):
            raise CaptureError(f"{self.path}: truncated at byte {self.pos} (file has {len(self.data)} bytes)")
        self.pos += nbytes

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise CaptureError(f"{self.path}: truncated image name at byte {self.pos}")
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    (n,) = r.take("<Q")
    cams = {}
    for _ in range(n):
        cid, mid, w, h = r.take("<IiQQ")
        if mid not in CAMERA_MODELS:
            raise CaptureError(f"{path}: camera {cid} has unknown model id {mid}")
        name, nparams = CAMERA_MODELS[mid]
        cams[cid] = ColmapCamera(cid, name, w, h, r.take(f"<{nparams}d"))
    return cams


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    (n,) = r.take("<Q")
    images = {}
    for _ in range(n):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.take("<I7dI")
        name = r.cstring()
        (n2d,) = r.take("<Q")
        r.skip(24 * n2d)
        images[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name)
    return images


def read_points3d_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    (n,) = r.take("<Q")
    if 43 * n > len(r.data):  # every point takes at least 43 bytes
        raise CaptureError(f"{path}: claims {n} points but holds only {len(r.data)} bytes")
    xyz = np.empty((n, 3))
    rgb = np.empty((n, 3), dtype=np.uint8)
    for i in range(n):
        vals = r.take("<Q3d3Bd")
        xyz[i] = vals[1:4]
        rgb[i] = vals[4:7]
        (tlen,) = r.take("<Q")
        r.skip(8 * tlen)
    return xyz, rgb


# ---------------------------------------------------------------- conversion


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Hamilton quaternion (w, x, y, z) -> rotation matrix [3,3] (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3,3] -> Hamilton quaternion (w, x, y, z) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    # The eigenvector of the symmetric 4x4 matrix K3 with the largest eigenvalue (Bar-Itzhack).
    m = R
    K = np.array([
        [m[0, 0] - m[1, 1] - m[2, 2], m[1, 0] + m[0, 1], m[2, 0] + m[0, 2], m[2, 1] - m[1, 2]],
        [m[1, 0] + m[0, 1], m[1, 1] - m[0, 0] - m[2, 2], m[2, 1] + m[1, 2], m[0, 2] - m[2, 0]],
        [m[2, 0] + m[0, 2], m[2, 1] + m[1, 2], m[2, 2] - m[0, 0] - m[1, 1], m[1, 0] - m[0, 1]],
        [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], m[0, 0] + m[1, 1] + m[2, 2]],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q


def camera_intrinsics(cam: ColmapCamera, where: str) -> tuple[np.ndarray, Distortion | None]:
    """(K [3,3], distortion or None) of a COLMAP camera; CaptureError for unsupported models."""
    p = cam.params
    m = cam.model
    if m not in SUPPORTED_MODELS:
        raise CaptureError(
            f"{where}: camera {cam.id} uses COLMAP model {m}, which splatrefine cannot undistort",
            f"Supported: {', '.join(SUPPORTED_MODELS)}. Run 'colmap image_undistorter' first.",
        )
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        fx = fy = p[0]
        cx, cy, rest = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, rest = p[0], p[1], p[2], p[3], p[4:]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    d: Distortion | None
    if m in ("SIMPLE_PINHOLE", "PINHOLE"):
        d = None
    elif m == "SIMPLE_RADIAL":
        d = Distortion("opencv", (rest[0], 0.0, 0.0, 0.0))
    elif m == "RADIAL":
        d = Distortion("opencv", (rest[0], rest[1], 0.0, 0.0))
    elif m == "OPENCV":
        d = Distortion("opencv", tuple(rest))
    elif m == "FULL_OPENCV":  # k1 k2 p1 p2 k3 k4 k5 k6: OpenCV's own 8-coefficient order
        d = Distortion("opencv", tuple(rest))
    elif m == "OPENCV_FISHEYE":
        d = Distortion("fisheye", tuple(rest))
    elif m == "SIMPLE_RADIAL_FISHEYE":
        d = Distortion("fisheye", (rest[0], 0.0, 0.0, 0.0))
    else:  # RADIAL_FISHEYE
        d = Distortion("fisheye", (rest[0], rest[1], 0.0, 0.0))
    return K, (None if d is None or d.is_zero else d)


# ---------------------------------------------------------------- reader


def read_colmap(path: str | os.PathLike) -> Capture:
    """Read a COLMAP sparse model (+ its images) into a Capture, ordered by image name."""
    given = Path(path)
    model = model_dir(given)
    if model is None:
        raise CaptureError(f"{given}: no COLMAP sparse model (cameras + images .bin/.txt) here")
    cam_file, img_file = _model_file(model, "cameras"), _model_file(model, "images")
    cams = read_cameras_binary(cam_file) if cam_file.suffix == ".bin" else read_cameras_text(cam_file)
    images = read_images_binary(img_file) if img_file.suffix == ".bin" else read_images_text(img_file)
    if not images:
        raise CaptureError(f"{img_file}: the model has no registered images")
    ordered = sorted(images.values(), key=lambda im: im.name)
    image_dir = _find_image_dir(model, given, ordered[0].name, img_file)
    root = image_dir.parent
    stems = [Path(im.name).stem for im in ordered]
    if len(set(stems)) < len(stems):  # same stem in two subfolders: keep the folders in the name
        stems = [Path(im.name).with_suffix("").as_posix() for im in ordered]
    names = unique_names(stems)
    views = []
    for im, name in zip(ordered, names):
        where = f"{img_file}: image {im.id} '{im.name}'"
        if im.camera_id not in cams:
            raise CaptureError(f"{where} refers to camera {im.camera_id}, which {cam_file.name} does not define")
        cam = cams[im.camera_id]
        K, distortion = camera_intrinsics(cam, f"{cam_file}")
        if not np.all(np.isfinite(im.qvec)) or np.linalg.norm(im.qvec) < 1e-12:
            raise CaptureError(f"{where}: quaternion {im.qvec.tolist()} is not a rotation (camera is not usable)")
        viewmat = np.eye(4)
        viewmat[:3, :3] = qvec_to_rotmat(im.qvec)
        viewmat[:3, 3] = im.tvec
        image_path = safe_join(image_dir, im.name, img_file, f"image {im.id} name")
        if not image_path.is_file():
            raise CaptureError(f"{where}: image file '{image_path}' does not exist")
        labels_path = _optional(root / "labels", im.name, stems_only=True)
        mask_path = _optional(root / "masks", im.name, stems_only=False)
        views.append(load_view(name, K, viewmat, cam.width, cam.height, image_path, where, CELEBAMASK_HQ,
                               labels_path, mask_path, distortion))
    points = colors = None
    pts_file = _model_file(model, "points3D")
    if pts_file is not None:
        points, colors = read_points3d_binary(pts_file) if pts_file.suffix == ".bin" else read_points3d_text(pts_file)
    return Capture(views=views, schema=CELEBAMASK_HQ, points=points, point_colors=colors, source=str(model))


def _find_image_dir(model: Path, given: Path, first_name: str, img_file: Path) -> Path:
    cands = _image_dir_candidates(model, given)
    for c in cands:
        if c.is_dir() and safe_join(c, first_name, img_file, "image name").is_file():
            return c
    raise CaptureError(
        f"{img_file}: image '{first_name}' not found in any of: {', '.join(str(c) for c in cands)}",
        "Put the images in an images/ folder beside sparse/.",
    )


def _optional(folder: Path, image_name: str, stems_only: bool) -> Path | None:
    if not folder.is_dir():
        return None
    rel = Path(image_name.replace("\\", "/"))
    cands = [rel.with_suffix(".png")] if stems_only else [Path(f"{rel.as_posix()}.png"), rel.with_suffix(".png")]
    for c in cands:
        if ".." not in c.parts and (folder / c).is_file():
            return folder / c
    return None


# ---------------------------------------------------------------- writer


def write_colmap_text(capture: Capture, path: str | os.PathLike) -> Path:
    """Write `capture` as a COLMAP text workspace: images/, sparse/0/{cameras,images,points3D}.txt
    (one PINHOLE camera per view), plus labels/ and masks/ beside images/. Atomic."""
    names = unique_names([v.name for v in capture.views])
    cam_lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]", f"# Number of cameras: {len(names)}"]
    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)", f"# Number of images: {len(names)}"]
    for i, (n, v) in enumerate(zip(names, capture.views), 1):
        K, vm = np.asarray(v.camera.K, dtype=np.float64), np.asarray(v.camera.viewmat, dtype=np.float64)
        if abs(K[0, 1]) > 1e-12:
            raise ValueError(f"view '{v.name}': K has skew, which a PINHOLE camera cannot hold")
        cam_lines.append(f"{i} PINHOLE {v.camera.width} {v.camera.height} "
                         + " ".join(repr(float(x)) for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])))
        q, t = rotmat_to_qvec(vm[:3, :3]), vm[:3, 3]
        img_lines.append(f"{i} " + " ".join(repr(float(x)) for x in (*q, *t)) + f" {i} {n}.png")
        img_lines.append("")
    pts_lines = ["# 3D point list with one line of data per point:",
                 "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    if capture.points is not None:
        colors = capture.point_colors if capture.point_colors is not None else \
            np.full((len(capture.points), 3), 128, dtype=np.uint8)
        pts_lines.append(f"# Number of points: {len(capture.points)}, mean track length: 0")
        for j, (p, c) in enumerate(zip(np.asarray(capture.points, dtype=np.float64), colors), 1):
            pts_lines.append(f"{j} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} {int(c[0])} {int(c[1])} {int(c[2])} 0")
    with atomic_dir(path) as tmp:
        write_view_files(tmp, names, capture)
        sparse = tmp / "sparse" / "0"
        sparse.mkdir(parents=True)
        (sparse / "cameras.txt").write_text("\n".join(cam_lines) + "\n", encoding="utf-8")
        (sparse / "images.txt").write_text("\n".join(img_lines) + "\n", encoding="utf-8")
        (sparse / "points3D.txt").write_text("\n".join(pts_lines) + "\n", encoding="utf-8")
    return Path(path)
