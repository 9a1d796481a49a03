"""A capture's fingerprint: what a run folder records about the capture it was made from.

Hashes of what a reader delivers (per view: camera, image pixels, GT labels, mask; the subject
frame and points), not of file sizes or mtimes, so the same data read through another reader or
copied elsewhere matches, and any change a run could see does not. `capture_difference` names
the first difference in words for the one-line refusal of `refine --resume`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..types import Capture

# camera matrices are compared after rounding: readers that parse the same text may differ in the
# last bits (float32 vs float64 paths)
CAMERA_DECIMALS = 6


def _digest(*arrays: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        if a is None:
            h.update(b"\0none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def capture_fingerprint(capture: Capture) -> dict:
    """{"fingerprint": hex, "views": [{"name", "camera", "image", "labels", "mask"}], "scene": hex}:
    one digest per piece of each view (None where the view has no labels or mask)."""
    views = []
    for v in capture.views:
        cam = v.camera
        views.append({
            "name": v.name,
            "camera": _digest(np.round(np.asarray(cam.viewmat, np.float64), CAMERA_DECIMALS),
                              np.round(np.asarray(cam.K, np.float64), CAMERA_DECIMALS),
                              np.array([cam.width, cam.height])),
            "image": _digest(v.image),
            "labels": None if v.labels is None else _digest(v.labels),
            "mask": None if v.mask is None else _digest(v.mask),
        })
    s = capture.subject
    scene = _digest(None if s is None else np.round(np.concatenate([s.center, s.frontal, s.up]), CAMERA_DECIMALS),
                    capture.points, capture.point_colors, np.frombuffer(capture.schema.name.encode(), np.uint8))
    total = hashlib.blake2b(digest_size=12)
    for v in views:
        total.update(repr(sorted(v.items())).encode())
    total.update(scene.encode())
    return {"fingerprint": total.hexdigest(), "views": views, "scene": scene}


def _few(names: list[str], n: int = 3) -> str:
    shown = ", ".join(f"'{x}'" for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


_PARTS = (("image", "image"), ("camera", "camera"), ("labels", "GT labels"), ("mask", "mask"))


def capture_difference(old: dict, new: dict) -> str | None:
    """None when the fingerprints match, else the first difference in words, e.g.
    "the image of view 'cam_03' differs (and 2 more views)"."""
    if old.get("fingerprint") == new.get("fingerprint"):
        return None
    old_views = {v["name"]: v for v in old.get("views", [])}
    new_views = {v["name"]: v for v in new.get("views", [])}
    gone = [n for n in old_views if n not in new_views]
    added = [n for n in new_views if n not in old_views]
    if gone or added:
        parts = ([f"missing {_few(gone)}"] if gone else []) + ([f"new {_few(added)}"] if added else [])
        return f"{len(old_views)} views then, {len(new_views)} now ({'; '.join(parts)})"
    changed = []
    for name, o in old_views.items():
        n = new_views[name]
        for key, text in _PARTS:
            if o.get(key) != n.get(key):
                changed.append((name, text))
                break
    if changed:
        name, text = changed[0]
        more = f" (and {len(changed) - 1} more views)" if len(changed) > 1 else ""
        return f"the {text} of view '{name}' differs{more}"
    if list(old_views) != list(new_views):
        return "the views come in another order"
    return "its subject frame, points or label schema differ"
