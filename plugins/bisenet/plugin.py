"""Registers `bisenet` as an initial parser and a target parser. Cheap to import: no torch."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Requirements, Role

from .parser import BiSeNetConfig


def make_bisenet(config: BiSeNetConfig, context):
    from .parser import BiSeNetParser

    return BiSeNetParser(config, context)


@hookimpl
def splatrefine_register_components(register):
    summary = "BiSeNet of face-parsing.PyTorch (loads its 79999_iter.pth layout); random init without a checkpoint"
    # as an initial parser it is of use only with trained weights; a target parser trains its own
    with_weights = Requirements(settings=("checkpoint=PATH",), note="a BiSeNet checkpoint")
    register(ComponentSpec(Role.INITIAL_PARSER, "bisenet", make_bisenet, BiSeNetConfig, summary=summary,
                           requires=with_weights))
    register(ComponentSpec(Role.TARGET_PARSER, "bisenet", make_bisenet, BiSeNetConfig, summary=summary))
