"""Registers the builtin label aggregators. Cheap to import: numpy only (OpenCV/scipy load on use)."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Role

from .argmax import ArgmaxAggregator, ArgmaxConfig
from .cleanup import CleanupAggregator, CleanupConfig
from .palette import PaletteClusterAggregator, PaletteClusterConfig
from .transfer import TransferAggregator, TransferConfig


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.LABEL_AGGREGATOR, "argmax", ArgmaxAggregator, ArgmaxConfig,
                           summary="most probable class; low-confidence or empty pixels become ignore"))
    register(ComponentSpec(Role.LABEL_AGGREGATOR, "transfer", TransferAggregator, TransferConfig,
                           summary="input views' labels carried through the rendered depth, by reliability"))
    register(ComponentSpec(Role.LABEL_AGGREGATOR, "palette-cluster", PaletteClusterAggregator,
                           PaletteClusterConfig,
                           summary="colour-coded renders snapped to the schema palette (the paper's way)"))
    register(ComponentSpec(Role.LABEL_AGGREGATOR, "cleanup", CleanupAggregator, CleanupConfig,
                           summary="per-class morphology, small-piece removal, hole filling after another aggregator"))
