"""Registers `labels` as an initial parser. Cheap to import: the maps are read when it runs."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Requirements, Role

from .config import LabelsConfig


def make_labels(config: LabelsConfig, context):
    from .parser import LabelsParser

    return LabelsParser(config, context)


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.INITIAL_PARSER, "labels", make_labels, LabelsConfig,
                           summary="per-view label PNGs or probability arrays from any outside parser, matched by view name",
                           requires=Requirements(settings=("path=DIR",), note="another parser's labels per view")))
