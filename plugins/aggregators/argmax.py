"""`argmax`: label = most probable class, confidence = its probability."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.errors import SplatrefineError
from splatrefine.roles import ComponentContext
from splatrefine.schema import IGNORE, LabelSchema
from splatrefine.types import Renders


@dataclass(frozen=True)
class ArgmaxConfig:
    min_confidence: float = field(default=0.0, metadata={
        "help": "pixels whose top class probability is below this become 255 (ignore); depends on how "
                "confident the initial parser is", "min": 0.0, "max": 1.0})
    min_margin: float = field(default=0.0, metadata={
        "help": "pixels where the second class is nearly as likely as the first, 1 - p2/p1 below this, "
                "become 255 (ignore); independent of the parser's calibration", "min": 0.0, "max": 1.0})
    min_alpha: float = field(default=0.0, metadata={
        "help": "pixels whose rendered opacity is below this become 255 (ignore); 0 keeps all. The "
                "background probability already includes 1 - alpha, so empty pixels are background",
        "min": 0.0, "max": 1.0})


def check_renders(renders: Renders, schema: LabelSchema, need: str, name: str) -> None:
    """SplatrefineError when `renders` lacks what aggregator `name` needs ("probs" or "seg_rgb")."""
    if need == "probs" and renders.probs is None:
        raise SplatrefineError(
            f"label_aggregator '{name}' needs class probabilities, but the representation rendered "
            "palette colours (palette mode)",
            "Use --plugin label_aggregator=palette-cluster, or fit the representation in its probability mode.",
        )
    if need == "seg_rgb" and renders.seg_rgb is None:
        raise SplatrefineError(
            f"label_aggregator '{name}' needs colour-coded segmentation renders (palette mode), but the "
            "representation rendered class probabilities",
            "Use --plugin label_aggregator=argmax, or fit the representation with mode: palette.",
        )
    if need == "probs" and renders.probs.shape[-1] != schema.num_classes:
        raise SplatrefineError(
            f"label_aggregator '{name}': renders have {renders.probs.shape[-1]} class channels but schema "
            f"'{schema.name}' has {schema.num_classes} classes",
            "Fit the representation with the same schema as the run.",
        )


def apply_ignore(labels: np.ndarray, confidence: np.ndarray, alpha: np.ndarray,
                 min_confidence: float, min_alpha: float) -> np.ndarray:
    """labels uint8 [C,H,W] with pixels below either threshold set to 255 (a copy)."""
    out = labels.copy()
    out[confidence < min_confidence] = IGNORE
    if min_alpha > 0:
        out[alpha < min_alpha] = IGNORE
    return out


class ArgmaxAggregator:
    name = "argmax"
    needs = "probs"  # which Renders field aggregate() reads ("probs" or "seg_rgb")

    def __init__(self, config: ArgmaxConfig, context: ComponentContext | None = None):
        self.config = config

    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """renders.probs [C,H,W,K] -> (labels uint8 [C,H,W], confidence float32 [C,H,W] = max prob)."""
        check_renders(renders, schema, "probs", self.name)
        probs = np.asarray(renders.probs, dtype=np.float32)
        from splatrefine.class_maps import argmax_last  # numba: loaded when labels are made, not on import

        labels, top = argmax_last(probs)
        labels = labels.astype(np.uint8, copy=False)
        confidence = np.clip(top, 0.0, 1.0).astype(np.float32)
        labels = apply_ignore(labels, confidence, np.asarray(renders.alpha), self.config.min_confidence,
                              self.config.min_alpha)
        if self.config.min_margin > 0 and probs.shape[-1] > 1:
            top2 = np.partition(probs, -2, axis=-1)[..., -2:]
            with np.errstate(invalid="ignore", divide="ignore"):
                margin = np.where(top2[..., 1] > 0, 1.0 - top2[..., 0] / top2[..., 1], 0.0)
            labels[margin < self.config.min_margin] = IGNORE
        return labels, confidence
