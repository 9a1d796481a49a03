"""`spiral` view sampler: yaw sweeps the range once while pitch oscillates, one camera per step.

Everything a third-party plugin needs: a frozen settings dataclass, a class with the role's
method, and one hook implementation that registers it. The entry point in pyproject.toml
(`splatrefine.plugins`) is how splatrefine finds this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine import hookimpl
from splatrefine.poses import direction, estimate_subject, look_at, yaw_pitch
from splatrefine.roles import ComponentContext, ComponentSpec, Role
from splatrefine.types import Cameras, Capture


@dataclass(frozen=True)
class SpiralConfig:
    count: int = field(default=36, metadata={"help": "number of cameras", "min": 1})
    yaw: tuple[float, float] = field(default=(-90.0, 90.0), metadata={"help": "yaw range, degrees (0 = frontal)"})
    pitch_amplitude: float = field(default=25.0, metadata={"help": "pitch swing, degrees", "min": 0.0, "max": 89.0})
    turns: float = field(default=3.0, metadata={"help": "pitch oscillations over the yaw sweep", "min": 0.0})


class SpiralSampler:
    def __init__(self, config: SpiralConfig, context: ComponentContext):
        self.config = config

    def sample(self, capture: Capture) -> Cameras:
        cams = capture.cameras()
        subject = capture.subject or estimate_subject(cams)
        radius = float(np.median(np.linalg.norm(cams.centers - subject.center, axis=1)))
        K = np.median(cams.Ks, axis=0)
        t = np.linspace(0.0, 1.0, self.config.count)
        yaws = self.config.yaw[0] + t * (self.config.yaw[1] - self.config.yaw[0])
        pitches = self.config.pitch_amplitude * np.sin(2 * np.pi * self.config.turns * t)
        viewmats = np.stack([
            look_at(subject.center + radius * direction(y, p, subject), subject.center, subject.up)
            for y, p in zip(yaws, pitches)
        ])
        out = Cameras(viewmats, np.repeat(K[None], len(t), axis=0), cams.width, cams.height,
                      tuple(f"spiral_{i:04d}" for i in range(len(t))))
        yaw, pitch = yaw_pitch(out.centers, subject)
        return Cameras(out.viewmats, out.Ks, out.width, out.height, out.names, yaw, pitch)


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.VIEW_SAMPLER, "spiral", SpiralSampler, SpiralConfig,
                           summary="cameras on a spiral: yaw sweep with oscillating pitch (example plugin)"))
