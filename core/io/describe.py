"""What a reader sees in a capture, as plain json-ready data (`splatrefine capture info --json`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import Capture
from .detect import detect_format


def describe_capture(capture: Capture, reader: str | None = None) -> dict[str, Any]:
    """A json-ready summary of `capture`.

    {"source", "reader", "schema", "num_views", "has_labels", "labels_name", "has_masks",
     "subject": {"center", "frontal", "up"} | None, "num_points",
     "views": [{"name", "width", "height", "K" [3x3], "viewmat" [4x4 world-to-camera, OpenCV axes],
                "has_labels", "has_mask"}]}
    `reader` is the format name ("splatrefine", "nerfstudio", "colmap", "facescape"); when None it
    is detected from `capture.source` (None if that is not a readable path).
    """
    if reader is None and capture.source:
        reader = detect_format(capture.source)
    subject = None
    if capture.subject is not None:
        subject = {k: np.asarray(getattr(capture.subject, k), dtype=np.float64).tolist()
                   for k in ("center", "frontal", "up")}
    views = []
    for v in capture.views:
        views.append({
            "name": v.name,
            "width": int(v.camera.width),
            "height": int(v.camera.height),
            "K": np.asarray(v.camera.K, dtype=np.float64).tolist(),
            "viewmat": np.asarray(v.camera.viewmat, dtype=np.float64).tolist(),
            "has_labels": v.labels is not None,
            "has_mask": v.mask is not None,
        })
    return {
        "source": capture.source,
        "reader": reader,
        "schema": capture.schema.name,
        "num_views": len(capture.views),
        "has_labels": capture.has_labels,
        "labels_name": capture.labels_name,
        "has_masks": capture.has_masks,
        "subject": subject,
        "num_points": 0 if capture.points is None else int(len(capture.points)),
        "views": views,
    }
