"""The `labels` initial parser: per-view maps from any outside parser -> float32 [V,K,H,W].

The folder is listed when the parser is built and every map is matched and checked at the start
of `parse`, before any probabilities are handed on, so a bad folder stops a run before the fit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from splatrefine.errors import ConfigError
from splatrefine.schema import get_schema, schema_mapping

from .config import LabelsConfig
from .files import find_maps, match_views
from .maps import hard_to_probs, map_probs, read_array, read_png

log = logging.getLogger(__name__)


class LabelsParser:
    """parse(capture) -> float32 [V,K,H,W] in capture.schema, read from `config.path`."""

    def __init__(self, config: LabelsConfig, context: Any = None):
        self.config = config
        self.folder = Path(config.path) if config.path else None
        self.maps = find_maps(self.folder, config.format)
        self.source_schema = get_schema(config.schema) if config.schema else None
        self.notes: list[str] = []

    def files(self, names: list[str]) -> list[Path | None]:
        """The map file of each view name (None: no map, allowed by `missing: uniform`)."""
        return match_views(self.maps, names, self.folder, self.config.format,
                           allow_missing=self.config.missing == "uniform")

    def parse(self, capture: Any) -> np.ndarray:
        schema = capture.schema
        source = self.source_schema or schema
        try:
            lut = schema_mapping(source, schema)
        except KeyError:
            raise ConfigError(f"initial_parser 'labels': no mapping from schema '{source.name}' to the "
                              f"capture's schema '{schema.name}'",
                              "Leave initial_parser.schema unset if the maps use the capture's schema.") from None
        k = schema.num_classes
        files = self.files([v.name for v in capture.views])
        out = []
        for view, path in zip(capture.views, files):
            size = view.image.shape[:2]
            if path is None:
                out.append(np.full((k,) + size, 1.0 / k, np.float32))
            elif path.suffix.lower() == ".png":
                out.append(hard_to_probs(lut[read_png(path, source, size)], k, self.config.smoothing))
            else:
                probs = read_array(path, source, size)
                out.append(probs if source.name == schema.name else map_probs(probs, lut, k))
        absent = [v.name for v, f in zip(capture.views, files) if f is None]
        if absent:
            note = (f"no map for {len(absent)} of the {len(files)} views in {self.folder} "
                    f"({', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''}): left without labels")
            log.warning(note)
            self.notes.append(note)
        return np.stack(out)
