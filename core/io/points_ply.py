"""Point clouds as PLY files: xyz positions and optional uint8 rgb colours.

Writes binary little-endian PLY (`x y z` float32, `red green blue` uchar). Reads ascii,
binary_little_endian and binary_big_endian files whose only element (or first element) is
`vertex`, with any scalar properties; extra properties are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CaptureError
from .atomic import atomic_path

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def write_points_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write points [N,3] (and uint8 colours [N,3]) as a binary PLY, atomically."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(colors) != len(points):
            raise ValueError(f"{path}: {len(points)} points but {len(colors)} colours")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(points), dtype=fields)
    data["x"], data["y"], data["z"] = points.T
    if colors is not None:
        data["red"], data["green"], data["blue"] = colors.T
    header = ["ply", "format binary_little_endian 1.0", "comment written by splatrefine",
              f"element vertex {len(points)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {n}" for n, t in fields]
    header.append("end_header")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(data.tobytes())


def read_points_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(points float64 [N,3], colours uint8 [N,3] or None) from a PLY file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read point cloud ({exc.strerror or exc})") from None
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise CaptureError(f"{path}: not a PLY file")
    body_start = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, in_vertex = None, 0, [], False
    for line in lines:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            if in_vertex:
                break
            in_vertex = tok[1] == "vertex"
            if in_vertex:
                count = int(tok[2])
            elif not props:
                raise CaptureError(f"{path}: PLY's first element is '{tok[1]}', expected 'vertex'")
        elif tok[0] == "property" and in_vertex:
            if tok[1] == "list" or tok[1] not in _PLY_TYPES:
                raise CaptureError(f"{path}: unsupported PLY vertex property '{line.strip()}'")
            props.append((tok[2], _PLY_TYPES[tok[1]]))
    names = [n for n, _ in props]
    if not all(k in names for k in "xyz"):
        raise CaptureError(f"{path}: PLY vertices have no x, y, z")
    try:
        if fmt == "ascii":
            text = raw[body_start:].decode("ascii").split()
            values = np.asarray(text[: count * len(props)], dtype=np.float64).reshape(count, len(props))
            cols = {n: values[:, i] for i, n in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, order + t) for n, t in props])
            data = np.frombuffer(raw, dtype=dtype, count=count, offset=body_start)
            cols = {n: data[n] for n in names}
        else:
            raise CaptureError(f"{path}: unknown PLY format '{fmt}'")
    except ValueError as exc:
        raise CaptureError(f"{path}: truncated or malformed PLY data ({exc})") from None
    points = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float64)
    colors = None
    if all(k in cols for k in ("red", "green", "blue")):
        colors = np.stack([cols["red"], cols["green"], cols["blue"]], axis=1).astype(np.uint8)
    return points, colors
