"""Textured triangle meshes from Wavefront OBJ (+ MTL): vertices, triangles, UVs and the image texture.

Only what rendering needs is read: `v`, `vt`, `f` (polygons are split into triangle fans; indices
may be negative, i.e. relative to the end), `mtllib` and the first material's `map_Kd`. Normals,
groups and other materials are ignored. Every problem is one CaptureError naming the file and how
to fix it, raised before anything is rendered.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splatrefine.errors import CaptureError

TEXTURE_HINT = "Pass the texture image with --texture, or name it with map_Kd in the .mtl file."


@dataclass
class Mesh:
    """vertices float64 [N,3]; faces int64 [F,3] (vertex indices); uvs float64 [T,2] (OBJ `vt`,
    v up); face_uvs int64 [F,3] (uv indices per corner); texture uint8 [TH,TW,3]."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    face_uvs: np.ndarray
    texture: np.ndarray
    path: Path
    texture_path: Path

    @property
    def num_faces(self) -> int:
        return int(len(self.faces))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _index(token: str, count: int, path: Path, lineno: int, what: str) -> int:
    """One OBJ index (1-based, or negative = from the end) -> 0-based; bad ones are refused."""
    try:
        i = int(token)
    except ValueError:
        raise CaptureError(f"{path}:{lineno}: face has a {what} index '{token}' that is not an integer",
                           "Re-export the mesh as a triangle or polygon OBJ.") from None
    j = i - 1 if i > 0 else count + i
    if i == 0 or not 0 <= j < count:
        raise CaptureError(f"{path}:{lineno}: face refers to {what} {i}, but only {count} are defined before it",
                           "The OBJ is truncated or its indices are broken; re-export the mesh.")
    return j


def parse_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(vertices [N,3], faces [F,3], uvs [T,2], face_uvs [F,3], mtllib names). Faces whose corners
    lack a uv index get -1 there (reported by `read_mesh`)."""
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[tuple[int, int, int]] = []
    fuvs: list[tuple[int, int, int]] = []
    mtllibs: list[str] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read the mesh ({exc.strerror})", "Check the path.") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        try:
            if tag == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(verts[-1]) != 3:
                    raise ValueError
            elif tag == "vt":
                uvs.append([float(x) for x in parts[1:3]])
                if len(uvs[-1]) != 2:
                    raise ValueError
        except ValueError:
            raise CaptureError(f"{path}:{lineno}: malformed '{tag}' line: {line.strip()[:60]!r}",
                               "Each 'v' needs x y z and each 'vt' u v as numbers.") from None
        if tag == "f":
            corners = parts[1:]
            if len(corners) < 3:
                raise CaptureError(f"{path}:{lineno}: a face needs at least 3 corners", "Re-export the mesh.")
            vi, ti = [], []
            for c in corners:
                fields = c.split("/")
                vi.append(_index(fields[0], len(verts), path, lineno, "vertex"))
                has_uv = len(fields) > 1 and fields[1] != ""
                ti.append(_index(fields[1], len(uvs), path, lineno, "uv") if has_uv else -1)
            for k in range(1, len(vi) - 1):  # triangle fan
                faces.append((vi[0], vi[k], vi[k + 1]))
                fuvs.append((ti[0], ti[k], ti[k + 1]))
        elif tag == "mtllib":
            mtllibs.append(line.strip()[len("mtllib"):].strip())
    return (np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3),
            np.asarray(uvs, np.float64).reshape(-1, 2), np.asarray(fuvs, np.int64).reshape(-1, 3), mtllibs)


def _inside(base: Path, name: str) -> Path | None:
    """`name` from an MTL/OBJ file resolved against `base`; None for absolute or escaping names."""
    name = name.replace("\\", "/")
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return base.joinpath(*parts)


def find_texture(obj: Path, mtllibs: list[str]) -> Path | None:
    """The first `map_Kd` of the OBJ's material libraries (options such as `-s 1 1 1` skipped),
    resolved beside the MTL file; None when there is none."""
    for lib in mtllibs:
        mtl = _inside(obj.parent, lib)
        if mtl is None or not mtl.is_file():
            continue
        for line in mtl.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if parts and parts[0] == "map_Kd" and len(parts) > 1:
                tex = _inside(mtl.parent, parts[-1])
                if tex is None:
                    raise CaptureError(f"{mtl}: map_Kd '{parts[-1]}' points outside the mesh's folder", TEXTURE_HINT)
                return tex
    return None


def read_texture(path: Path) -> np.ndarray:
    """uint8 RGB [H,W,3] of an image file; one CaptureError if it does not open."""
    from PIL import Image

    if not path.is_file():
        raise CaptureError(f"{path}: texture image not found", TEXTURE_HINT)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for broken files
        raise CaptureError(f"{path}: texture image does not open ({type(exc).__name__})",
                           "Give a PNG or JPEG texture with --texture.") from None
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise CaptureError(f"{path}: texture image is {arr.shape[1]}x{arr.shape[0]} pixels", "Give a real texture image.")
    return arr


def read_mesh(path: str | os.PathLike, texture: str | os.PathLike | None = None) -> Mesh:
    """Read and check a textured OBJ; `texture` overrides the MTL's map_Kd."""
    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"{path}: mesh file not found", "Give the path of a textured .obj file.")
    if path.suffix.lower() != ".obj":
        raise CaptureError(f"{path}: not an .obj file", "render-scan reads Wavefront OBJ meshes with UVs and a texture.")
    verts, faces, uvs, fuvs, mtllibs = parse_obj(path)
    if len(verts) == 0 or len(faces) == 0:
        raise CaptureError(f"{path}: the mesh is empty ({len(verts)} vertices, {len(faces)} faces)",
                           "Give a triangle mesh with 'v' and 'f' lines.")
    if not np.isfinite(verts).all():
        bad = int(np.nonzero(~np.isfinite(verts).all(axis=1))[0][0]) + 1
        raise CaptureError(f"{path}: vertex {bad} is not finite (NaN or inf)", "Repair or re-export the mesh.")
    if len(uvs) == 0 or (fuvs < 0).any():
        n = int((fuvs < 0).any(axis=1).sum())
        raise CaptureError(f"{path}: the mesh has no texture coordinates ({n} of {len(faces)} faces without 'vt' indices)",
                           "Export the mesh with UVs (f v/vt ...) and its texture.")
    if not np.isfinite(uvs).all():
        raise CaptureError(f"{path}: some texture coordinates are not finite", "Repair or re-export the mesh's UVs.")
    tex_path = Path(texture) if texture is not None else find_texture(path, mtllibs)
    if tex_path is None:
        raise CaptureError(f"{path}: no texture image (no --texture and no map_Kd in an .mtl file)", TEXTURE_HINT)
    tex = read_texture(tex_path)
    return Mesh(verts, faces, uvs, fuvs, tex, path, tex_path)
