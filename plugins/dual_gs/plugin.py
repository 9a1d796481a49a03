"""Registers the `dual-gs` representation. Cheap to import: torch is imported inside the factory."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentContext, ComponentSpec, Role

from .config import DualGSConfig

__all__ = ["DualGSConfig", "splatrefine_register_components"]


def _build(config: DualGSConfig, context: ComponentContext):
    from .representation import DualGS

    return DualGS(config, context)


@hookimpl
def splatrefine_register_components(register) -> None:
    register(ComponentSpec(
        Role.REPRESENTATION, "dual-gs", _build, DualGSConfig,
        summary="3D Gaussians with an RGB head and a class head on one shared geometry",
    ))
