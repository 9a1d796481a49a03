"""`orbit`: cameras on a regular yaw x pitch grid around the head."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.roles import ComponentContext
from splatrefine.types import Cameras, Capture

from .common import check_range, place_cameras, subject_of, validate_ranges


@dataclass(frozen=True)
class OrbitConfig:
    yaw: tuple[float, float] = field(default=(-90.0, 90.0), metadata={
        "help": "yaw range in degrees relative to the face (0 = frontal, + = towards the subject's left)"})
    pitch: tuple[float, float] = field(default=(-30.0, 30.0), metadata={
        "help": "pitch range in degrees (+ = from above)"})
    yaw_count: int = field(default=16, metadata={"help": "grid points along yaw (1 = the range's middle)", "min": 1})
    pitch_count: int = field(default=3, metadata={"help": "grid points along pitch (1 = the range's middle)", "min": 1})
    radius: float | None = field(default=None, metadata={
        "help": "camera distance to the look-at point; default: median distance of the capture's cameras "
                "to the subject centre", "min": 0.0})
    look_at: tuple[float, float, float] | None = field(default=None, metadata={
        "help": "world point the cameras look at; default: the subject centre"})
    scale: float = field(default=1.0, metadata={
        "help": "image size relative to the capture's (intrinsics scaled to keep the field of view)",
        "min": 0.01, "max": 16.0})

    def validate(self) -> None:
        validate_ranges(self)


def grid(lo: float, hi: float, n: int) -> np.ndarray:
    """n evenly spaced values from lo to hi inclusive (the middle when n == 1)."""
    return np.array([(lo + hi) / 2.0]) if n == 1 else np.linspace(lo, hi, n)


class OrbitSampler:
    def __init__(self, config: OrbitConfig, context: ComponentContext | None = None):
        self.config = config
        self.yaw_range = check_range("yaw", config.yaw, 180.0)
        self.pitch_range = check_range("pitch", config.pitch, 90.0)

    def sample(self, capture: Capture) -> Cameras:
        """-> yaw_count * pitch_count cameras named novel_0000..., pitch-major (for each pitch,
        yaw from low to high), with yaw/pitch in degrees."""
        c = self.config
        yy, pp = np.meshgrid(grid(*self.yaw_range, c.yaw_count), grid(*self.pitch_range, c.pitch_count))
        return place_cameras(yy.ravel(), pp.ravel(), subject_of(capture), radius=c.radius,
                             target=c.look_at, scale=c.scale, capture=capture)
