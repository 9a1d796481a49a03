"""3DGS PLY export/import: the standard layout (x, y, z, nx, ny, nz, f_dc_*, f_rest_*, opacity,
scale_*, rot_*) that common viewers load, plus the class head as extra float properties
(class_0..K-1 logits, or seg_0..2 palette-colour logits) and splatrefine metadata as comments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from splatrefine.errors import SplatrefineError
from splatrefine.io.atomic import write_bytes

MAGIC = "splatrefine-dual-gs"


def model_to_ply_bytes(model) -> bytes:
    """Binary little-endian PLY of a DualGSModel (float32 properties, exact round trip)."""
    p = {k: v.detach().cpu().float().numpy() for k, v in model.params.items()}
    n = p["means"].shape[0]
    rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # channel-major, as the 3DGS reference writes it
    cls = p["classes"]
    cls_prefix = "class" if model.mode == "logits" else "seg"
    cols = [("x", p["means"][:, 0]), ("y", p["means"][:, 1]), ("z", p["means"][:, 2])]
    cols += [(f"n{a}", np.zeros(n, np.float32)) for a in "xyz"]
    cols += [(f"f_dc_{i}", p["sh0"][:, 0, i]) for i in range(3)]
    cols += [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
    cols += [("opacity", p["opacities"])]
    cols += [(f"scale_{i}", p["scales"][:, i]) for i in range(3)]
    cols += [(f"rot_{i}", p["quats"][:, i]) for i in range(4)]
    cols += [(f"{cls_prefix}_{i}", cls[:, i]) for i in range(cls.shape[1])]
    meta = {"mode": model.mode, "sh_degree": model.sh_degree, "active_sh_degree": model.active_sh_degree,
            "background": list(model.background), "num_classes": model.num_classes, "schema": model.schema,
            "scene_scale": model.scene_scale,
            "background_sh": None if model.background_sh is None else model.background_sh.detach().cpu().tolist()}
    header = ["ply", "format binary_little_endian 1.0", f"comment {MAGIC} {json.dumps(meta)}",
              f"element vertex {n}"]
    header += [f"property float {name}" for name, _ in cols]
    header += ["end_header"]
    data = np.stack([c.astype(np.float32) for _, c in cols], axis=1)
    return ("\n".join(header) + "\n").encode("ascii") + np.ascontiguousarray(data, dtype="<f4").tobytes()


def write_ply(model, path: Path) -> None:
    write_bytes(path, model_to_ply_bytes(model))


def read_ply(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(params as numpy arrays, metadata) from a PLY written by `write_ply` (or any 3DGS PLY with
    float32 properties; then the class head is missing and metadata is empty)."""
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise SplatrefineError(f"{path}: not a PLY file")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise SplatrefineError(f"{path}: only binary little-endian PLY is supported")
    names, n, meta = [], None, {}
    for ln in lines:
        parts = ln.split()
        if ln.startswith(f"comment {MAGIC} "):
            meta = json.loads(ln[len(f"comment {MAGIC} "):])
        elif parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[:1] == ["element"] and n is not None:
            raise SplatrefineError(f"{path}: unexpected element after vertex: {ln}")
        elif parts[:1] == ["property"]:
            if parts[1] != "float":
                raise SplatrefineError(f"{path}: property {parts[-1]} is {parts[1]}, expected float")
            names.append(parts[2])
    if n is None:
        raise SplatrefineError(f"{path}: no vertex element")
    body = raw[end + len(b"end_header\n"):]
    if len(body) < n * len(names) * 4:
        raise SplatrefineError(f"{path}: truncated ({len(body)} bytes for {n} vertices)")
    data = np.frombuffer(body[: n * len(names) * 4], dtype="<f4").reshape(n, len(names))
    col = {name: data[:, i] for i, name in enumerate(names)}

    def group(prefix: str) -> np.ndarray:
        keys = sorted((k for k in col if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
        return np.stack([col[k] for k in keys], 1) if keys else np.zeros((n, 0), np.float32)

    for need in ("x", "y", "z", "opacity", "f_dc_0", "scale_0", "rot_0"):
        if need not in col:
            raise SplatrefineError(f"{path}: missing property {need}; not a 3DGS PLY")
    rest = group("f_rest_")
    m = rest.shape[1] // 3
    params = {
        "means": np.stack([col["x"], col["y"], col["z"]], 1),
        "sh0": group("f_dc_")[:, None, :],
        "shN": rest.reshape(n, 3, m).transpose(0, 2, 1),
        "opacities": col["opacity"].copy(),
        "scales": group("scale_"),
        "quats": group("rot_"),
    }
    cls = group("class_")
    if cls.shape[1] == 0:
        cls = group("seg_")
    params["classes"] = cls
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}, meta
