"""Registers the builtin view samplers. Cheap to import: numpy only."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Role

from .input import InputConfig, InputSampler
from .orbit import OrbitConfig, OrbitSampler
from .sphere import SphereConfig, SphereSampler


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.VIEW_SAMPLER, "input", InputSampler, InputConfig,
                           summary="the capture's own cameras, with yaw/pitch relative to the face"))
    register(ComponentSpec(Role.VIEW_SAMPLER, "orbit", OrbitSampler, OrbitConfig,
                           summary="cameras on a yaw/pitch grid around the head"))
    register(ComponentSpec(Role.VIEW_SAMPLER, "sphere", SphereSampler, SphereConfig,
                           summary="seeded uniform directions on the sphere within yaw/pitch limits"))
