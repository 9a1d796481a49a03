"""Tiny deterministic scenes shared by the capture I/O tests (helpers only, no tests here)."""

from __future__ import annotations

import numpy as np

from splatrefine.poses import look_at
from splatrefine.schema import CELEBAMASK_HQ
from splatrefine.types import Camera, Capture, Subject, View

# A world point every camera of `ring_capture` sees.
KNOWN_POINT = np.array([0.05, -0.03, 0.02])


def ring_cameras(n: int = 4, width: int = 40, height: int = 30, radius: float = 3.0) -> list[Camera]:
    """`n` cameras on a ring around the origin, looking at it, with slightly different intrinsics."""
    cams = []
    for i in range(n):
        a = np.radians(-60 + 120 * i / max(n - 1, 1))
        eye = np.array([radius * np.sin(a), 0.3 * (i % 2), radius * np.cos(a)])
        vm = look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0]))
        K = np.array([[60.0 + i, 0.0, width / 2 + 0.25 * i], [0.0, 61.0 + i, height / 2 - 0.5], [0.0, 0.0, 1.0]])
        cams.append(Camera(vm, K, width, height))
    return cams


def ring_capture(n: int = 4, width: int = 40, height: int = 30, seed: int = 0, labels: bool = True,
                 masks: bool = True) -> Capture:
    rng = np.random.default_rng(seed)
    views = []
    for i, cam in enumerate(ring_cameras(n, width, height)):
        views.append(View(
            name=f"view_{i:02d}",
            camera=cam,
            image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            labels=rng.integers(0, CELEBAMASK_HQ.num_classes, (height, width), dtype=np.uint8) if labels else None,
            mask=(rng.random((height, width)) > 0.5) if masks else None,
        ))
    subject = Subject(np.zeros(3), np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0]))
    points = rng.normal(size=(20, 3)) * 0.1
    colors = rng.integers(0, 256, (20, 3), dtype=np.uint8)
    return Capture(views, CELEBAMASK_HQ, subject, points=points, point_colors=colors)


def max_camera_error(a: Capture, b: Capture) -> float:
    """Largest absolute difference between the two captures' K and viewmat entries."""
    assert len(a.views) == len(b.views)
    err = 0.0
    for va, vb in zip(a.views, b.views):
        assert (va.camera.width, va.camera.height) == (vb.camera.width, vb.camera.height)
        err = max(err, float(np.abs(va.camera.K - vb.camera.K).max()),
                  float(np.abs(va.camera.viewmat - vb.camera.viewmat).max()))
    return err
