"""What every sampler needs: the subject frame, default radius/intrinsics/size, camera placement.

Yaw/pitch follow `splatrefine.poses`: yaw = 0 looks at the face, positive yaw moves the camera
towards the subject's own left, pitch > 0 looks from above. The subject frame is
`capture.subject` when the capture states it, otherwise `splatrefine.poses.estimate_subject` on the
capture's cameras (centre: least-squares intersection of the optical axes; frontal: mean direction
from that centre to the cameras; up: mean of the cameras' -y axes).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from splatrefine.errors import CaptureError, ConfigError
from splatrefine.poses import direction, estimate_subject, look_at, yaw_pitch
from splatrefine.types import Cameras, Capture, Subject

log = logging.getLogger(__name__)

NOVEL_PREFIX = "novel_"


def subject_of(capture: Capture) -> Subject:
    """The capture's subject frame, or one estimated from its cameras when it is not stated."""
    if capture.subject is not None:
        return capture.subject
    if len(capture) < 2:
        raise CaptureError(
            f"{capture.source or 'capture'}: the subject's position is unknown and cannot be estimated from "
            f"{len(capture)} camera(s)",
            "Give capture.json a 'subject' block, or capture at least two views.",
        )
    subject = estimate_subject(_uniform_size_cameras(capture))
    log.info("subject frame estimated from %d cameras: centre %s", len(capture), np.round(subject.center, 4))
    return subject


def _uniform_size_cameras(capture: Capture) -> Cameras:
    """The cameras of the views that share the most common image size."""
    if not capture.views:
        raise CaptureError(f"{capture.source or 'capture'}: has no views")
    sizes = Counter((v.camera.width, v.camera.height) for v in capture.views)
    (w, h), _ = sizes.most_common(1)[0]
    views = [v for v in capture.views if (v.camera.width, v.camera.height) == (w, h)]
    return Cameras.stack([v.camera for v in views], [v.name for v in views])


@dataclass(frozen=True)
class Defaults:
    """Derived from the capture: radius (median camera distance to the subject centre), K (the
    median intrinsics of the views of the most common size), width and height."""

    radius: float
    K: np.ndarray
    width: int
    height: int


def capture_defaults(capture: Capture, subject: Subject) -> Defaults:
    cams = _uniform_size_cameras(capture)
    radius = float(np.median(np.linalg.norm(cams.centers - subject.center, axis=1)))
    return Defaults(radius, np.median(cams.Ks, axis=0), cams.width, cams.height)


def scaled(K: np.ndarray, width: int, height: int, scale: float) -> tuple[np.ndarray, int, int]:
    """Intrinsics and size for images `scale` times the capture's (same field of view)."""
    if scale == 1.0:
        return K.copy(), width, height
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    S = np.diag([w / width, h / height, 1.0])
    return S @ K, w, h


def place_cameras(
    yaw: np.ndarray,
    pitch: np.ndarray,
    subject: Subject,
    *,
    radius: float | None,
    target: tuple[float, float, float] | None,
    scale: float,
    capture: Capture,
) -> Cameras:
    """Cameras at `radius` from `target` (default: the subject centre) in the directions
    (yaw [C], pitch [C]) degrees, looking at `target` with the subject's up.

    The returned yaw/pitch are recomputed from the camera centres relative to the subject (they
    equal the requested ones when `target` is the subject centre).
    """
    d = capture_defaults(capture, subject)
    r = d.radius if radius is None else float(radius)
    if not np.isfinite(r) or r <= 0:
        raise ConfigError(f"view_sampler: radius must be positive, got {r}")
    centre = np.asarray(subject.center, dtype=np.float64) if target is None else np.asarray(target, dtype=np.float64)
    K, w, h = scaled(d.K, d.width, d.height, scale)
    up = np.asarray(subject.up, dtype=np.float64)
    viewmats = np.stack([
        look_at(centre + r * direction(float(y), float(p), subject), centre, up)
        for y, p in zip(np.atleast_1d(yaw), np.atleast_1d(pitch))
    ]) if len(np.atleast_1d(yaw)) else np.zeros((0, 4, 4))
    cams = Cameras(
        viewmats.astype(np.float64),
        np.repeat(K[None], len(viewmats), axis=0).astype(np.float64),
        int(w), int(h),
        novel_names(capture, len(viewmats)),
    )
    if len(cams):
        y, p = yaw_pitch(cams.centers, subject)
    else:
        y, p = np.zeros(0), np.zeros(0)
    return Cameras(cams.viewmats, cams.Ks, cams.width, cams.height, cams.names, y, p)


def novel_names(capture: Capture, n: int) -> tuple[str, ...]:
    """novel_0000, novel_0001, ...; numbered after the capture's own novel_NNNN views (a refined
    folder read back as a capture has them), so sampled names never clash with view names."""
    import re

    used = [int(m.group(1)) for v in capture.views if (m := re.fullmatch(rf"{NOVEL_PREFIX}(\d+)", v.name))]
    start = max(used) + 1 if used else 0
    return tuple(f"{NOVEL_PREFIX}{i:04d}" for i in range(start, start + n))


def check_range(name: str, lo_hi: tuple[float, float], limit: float) -> tuple[float, float]:
    """(low, high) in degrees; ConfigError (relative to the sampler's settings) when reversed or out of range."""
    lo, hi = (float(v) for v in lo_hi)
    if lo > hi:
        raise ConfigError(f"{name} range [{lo:g}, {hi:g}] is reversed; write it low to high: [{hi:g}, {lo:g}]")
    if lo < -limit or hi > limit:
        raise ConfigError(f"{name} range [{lo:g}, {hi:g}] must lie within [{-limit:g}, {limit:g}] degrees")
    return lo, hi


def validate_ranges(config) -> None:
    """The `validate` step of samplers with yaw/pitch ranges (run when the config is resolved)."""
    check_range("yaw", config.yaw, 180.0)
    check_range("pitch", config.pitch, 90.0)
