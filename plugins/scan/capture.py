"""A capture folder rendered from a textured scan: images, masks, exact cameras, and the depth and
face-id buffers (scan.npz) that pseudo-GT labels are made from.

```
OUT/capture.json   the usual capture folder (docs/formats.md), subject = head frame, plus a "scan"
                   block: mesh and texture names and sha256, rig, resolution, the head frame, ...
OUT/images/ masks/ [labels/]
OUT/scan.npz       depth float32 [V,H,W] (camera z in metres, 0 = background),
                   face_ids int32 [V,H,W] (triangle index of the OBJ's triangulated faces, -1 = background),
                   names [V] (view names, in capture.json order), faces int32 [F,3] (vertex indices,
                   for label filling across neighbouring triangles)
```
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from splatrefine.errors import CaptureError
from splatrefine.types import Capture, View

from .frame import HeadFrame
from .mesh import Mesh, file_sha256
from .raster import MeshRender, render_mesh

GENERATOR = "splatrefine.plugins.scan"
GENERATOR_VERSION = 1
BUFFERS = "scan.npz"
SUPERSAMPLE = 3  # RGB samples per pixel side
SHADING = 0.3  # strength of the Lambert term over the texture


def render_scan_capture(mesh: Mesh, frame: HeadFrame, rig: str = "facescape-like", resolution: int = 256,
                        supersample: int = SUPERSAMPLE, shading: float = SHADING) -> tuple[Capture, MeshRender]:
    """The capture of `mesh` (placed by `frame`) at every camera of `rig`: images, masks, no labels;
    plus the full render (depth, face ids)."""
    from splatrefine.plugins.synthetic.rigs import head_subject, rig_cameras

    cams = rig_cameras(rig, resolution)
    out = render_mesh(mesh, frame.apply(mesh.vertices), cams, supersample=supersample, shading=shading)
    views = [View(cams.names[i], cams[i], out.rgb[i], None, out.mask[i]) for i in range(len(cams))]
    return Capture(views=views, subject=head_subject(), source=f"scan:{mesh.path.name}"), out


def scan_block(mesh: Mesh, frame: HeadFrame, rig: str, resolution: int, supersample: int, shading: float) -> dict:
    """The capture.json "scan" block."""
    return {"generator": GENERATOR, "version": GENERATOR_VERSION, "mesh": mesh.path.name,
            "mesh_sha256": file_sha256(mesh.path), "texture": mesh.texture_path.name,
            "texture_sha256": file_sha256(mesh.texture_path), "num_faces": mesh.num_faces, "rig": rig,
            "resolution": int(resolution), "supersample": int(supersample), "shading": float(shading),
            "frame": frame.to_json(), "buffers": BUFFERS}


def write_scan_capture(capture: Capture, depth: np.ndarray, face_ids: np.ndarray, faces: np.ndarray,
                       path: str | os.PathLike, block: dict) -> Path:
    """Write the capture folder with its scan.npz; atomic (the folder appears whole or not at all)."""
    from splatrefine.io.atomic import atomic_dir
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.io.common import unique_names

    names = unique_names([v.name for v in capture.views])
    with atomic_dir(path) as tmp:
        write_capture_folder(capture, tmp, extra={"scan": block})
        with open(tmp / BUFFERS, "wb") as f:
            np.savez_compressed(f, depth=depth.astype(np.float32), face_ids=face_ids.astype(np.int32),
                                names=np.array(names), faces=faces.astype(np.int32))
    return Path(path)


def read_scan_buffers(path: str | os.PathLike, capture: Capture) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(depth float32 [V,H,W], face_ids int32 [V,H,W], faces int32 [F,3], scan block) of a capture
    written by render-scan, in the order of `capture.views`."""
    from splatrefine.io.capture_folder import manifest_path, read_capture_json_extra

    root = manifest_path(path).parent
    block = read_capture_json_extra(path).get("scan")
    buf = root / BUFFERS
    if not isinstance(block, dict) or not buf.is_file():
        raise CaptureError(f"{root}: not a capture written by render-scan (no 'scan' block or {BUFFERS})",
                           "Render the scan with 'splatrefine render-scan SCAN.obj -o OUT' first.")
    try:
        with np.load(buf, allow_pickle=False) as z:
            depth, fids, faces = z["depth"], z["face_ids"], z["faces"]
            names = [str(n) for n in z["names"]]
    except (OSError, KeyError, ValueError) as exc:
        raise CaptureError(f"{buf}: unreadable ({exc})", "Render the scan again with render-scan.") from None
    order = {n: i for i, n in enumerate(names)}
    missing = [v.name for v in capture.views if v.name not in order]
    if missing:
        raise CaptureError(f"{buf}: has no buffers for view '{missing[0]}'", "Render the scan again with render-scan.")
    idx = [order[v.name] for v in capture.views]
    return depth[idx], fids[idx], faces, block
