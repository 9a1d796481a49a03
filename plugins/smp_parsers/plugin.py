"""Registers `smp` as an initial parser and a target parser. Cheap to import: smp and torch are
imported when the component is built (a missing smp is a PluginError then, not at listing)."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Role

from .parser import SmpConfig


def make_smp(config: SmpConfig, context):
    from .parser import SmpParser

    return SmpParser(config, context)


@hookimpl
def splatrefine_register_components(register):
    summary = "any segmentation-models-pytorch architecture/encoder (extra 'smp'); random init unless a checkpoint"
    register(ComponentSpec(Role.INITIAL_PARSER, "smp", make_smp, SmpConfig, summary=summary))
    register(ComponentSpec(Role.TARGET_PARSER, "smp", make_smp, SmpConfig, summary=summary))
