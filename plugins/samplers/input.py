"""`input`: the capture's own cameras, with yaw/pitch relative to the subject filled in."""

from __future__ import annotations

from dataclasses import dataclass, replace

from splatrefine.errors import CaptureError
from splatrefine.poses import yaw_pitch
from splatrefine.roles import ComponentContext
from splatrefine.types import Cameras, Capture

from .common import subject_of


@dataclass(frozen=True)
class InputConfig:
    """No settings: every view of the capture, in capture order, under its own name."""


class InputSampler:
    def __init__(self, config: InputConfig, context: ComponentContext | None = None):
        self.config = config

    def sample(self, capture: Capture) -> Cameras:
        """-> the capture's cameras (names = view names) with yaw/pitch in degrees."""
        if not capture.views:
            raise CaptureError(f"{capture.source or 'capture'}: has no views")
        sizes = sorted({(v.camera.width, v.camera.height) for v in capture.views})
        if len(sizes) != 1:
            raise CaptureError(
                f"{capture.source or 'capture'}: views have different image sizes {sizes}; "
                "the input sampler needs one size",
                "Resize the images (and intrinsics) to one size.",
            )
        cams = Cameras.stack([v.camera for v in capture.views], [v.name for v in capture.views])
        yaw, pitch = yaw_pitch(cams.centers, subject_of(capture))
        return replace(cams, yaw=yaw, pitch=pitch)
