"""`sphere`: seeded directions uniform over the part of the sphere within yaw/pitch limits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.roles import ComponentContext
from splatrefine.types import Cameras, Capture

from .common import check_range, place_cameras, subject_of, validate_ranges


@dataclass(frozen=True)
class SphereConfig:
    count: int = field(default=32, metadata={"help": "number of cameras", "min": 1})
    yaw: tuple[float, float] = field(default=(-90.0, 90.0), metadata={
        "help": "yaw limits in degrees relative to the face (0 = frontal)"})
    pitch: tuple[float, float] = field(default=(-30.0, 30.0), metadata={"help": "pitch limits in degrees"})
    seed: int | None = field(default=None, metadata={"help": "random seed; default: the run's seed"})
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


def uniform_directions(count: int, yaw: tuple[float, float], pitch: tuple[float, float],
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(yaw [count], pitch [count]) degrees, uniform by area on the sphere band/patch: yaw uniform,
    sin(pitch) uniform (the area element is cos(pitch) dpitch dyaw)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(yaw[0], yaw[1], count)
    s = rng.uniform(np.sin(np.radians(pitch[0])), np.sin(np.radians(pitch[1])), count)
    p = np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))
    return y, p


class SphereSampler:
    def __init__(self, config: SphereConfig, context: ComponentContext | None = None):
        self.config = config
        self.seed = config.seed if config.seed is not None else (context.seed if context else 0)
        self.yaw_range = check_range("yaw", config.yaw, 180.0)
        self.pitch_range = check_range("pitch", config.pitch, 90.0)

    def sample(self, capture: Capture) -> Cameras:
        """-> `count` cameras named novel_0000..., the same for the same seed."""
        y, p = uniform_directions(self.config.count, self.yaw_range, self.pitch_range, self.seed)
        c = self.config
        return place_cameras(y, p, subject_of(capture), radius=c.radius, target=c.look_at,
                             scale=c.scale, capture=capture)
