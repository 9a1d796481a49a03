"""`cleanup`: tidy the label maps of another aggregator with per-class morphology (OpenCV).

Per image, in this order:
1. opening (per class, elliptical kernel of `opening_radius`): pixels a class loses are freed;
2. small components: connected pieces of a class smaller than `min_component` pixels are freed;
3. closing (per class, `closing_radius`): ignore (255) pixels a class's closing covers are freed;
4. holes: connected ignore regions not touching the image border and at most `max_hole` pixels;
5. every freed pixel takes the label, and the confidence, of its nearest kept pixel.
Other ignore pixels stay ignore: cleanup does not undo the base aggregator's thresholds except
inside small enclosed holes and cracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.errors import ConfigError
from splatrefine.roles import ComponentContext, Role
from splatrefine.schema import IGNORE, LabelSchema
from splatrefine.types import Renders


@dataclass(frozen=True)
class CleanupConfig:
    base: str = field(default="argmax", metadata={"help": "the label_aggregator whose output is cleaned"})
    base_params: dict = field(default_factory=dict, metadata={"help": "settings of the base aggregator"})
    opening_radius: int = field(default=0, metadata={
        "help": "per-class opening radius in pixels (removes specks and thin spurs; 0 = off)", "min": 0, "max": 50})
    closing_radius: int = field(default=1, metadata={
        "help": "per-class closing radius in pixels (fills ignore cracks; 0 = off)", "min": 0, "max": 50})
    min_component: int = field(default=10, metadata={
        "help": "connected pieces of a class smaller than this many pixels are relabelled from their "
                "surroundings (0 = off)", "min": 0})
    max_hole: int = field(default=200, metadata={
        "help": "enclosed ignore regions up to this many pixels are filled from their surroundings (0 = off)",
        "min": 0})

    def validate(self) -> None:
        if self.base == "cleanup" and not self.base_params:
            raise ConfigError("base cannot be 'cleanup' itself without base_params", "Set base to argmax or palette-cluster.")


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean_labels(labels: np.ndarray, confidence: np.ndarray, num_classes: int, *, opening_radius: int = 0,
                 closing_radius: int = 1, min_component: int = 10,
                 max_hole: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """One image: labels uint8 [H,W] (255 = ignore), confidence float32 [H,W] -> cleaned copies."""
    import cv2
    from scipy.ndimage import distance_transform_edt

    lab = labels.copy()
    freed = np.zeros(lab.shape, bool)
    classes = [int(c) for c in np.unique(lab) if c != IGNORE and c < num_classes]
    if opening_radius > 0:
        k = _disk(opening_radius)
        for c in classes:
            m = (lab == c).astype(np.uint8)
            opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, k, borderType=cv2.BORDER_REPLICATE)
            freed |= (m > 0) & (opened == 0)
    if min_component > 0:
        for c in classes:
            m = ((lab == c) & ~freed).astype(np.uint8)
            n, comp, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_component) + 1
            if len(small):
                freed |= np.isin(comp, small)
    ignore = lab == IGNORE
    if closing_radius > 0:
        k = _disk(closing_radius)
        for c in classes:
            m = ((lab == c) & ~freed).astype(np.uint8)
            closed = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k, borderType=cv2.BORDER_REPLICATE)
            freed |= ignore & (closed > 0)
    if max_hole > 0:
        n, comp, stats, _ = cv2.connectedComponentsWithStats((ignore & ~freed).astype(np.uint8), connectivity=4)
        h, w = lab.shape
        for i in range(1, n):
            x, y, bw, bh, area = stats[i]
            touches = x == 0 or y == 0 or x + bw == w or y + bh == h
            if not touches and area <= max_hole:
                freed |= comp == i
    if not freed.any():
        return lab, confidence.copy()
    kept = ~freed & (lab != IGNORE)
    if not kept.any():  # nothing to take labels from
        out = lab.copy()
        out[freed] = IGNORE
        return out, confidence.copy()
    _, (iy, ix) = distance_transform_edt(~kept, return_indices=True)
    out = lab.copy()
    conf = confidence.copy()
    out[freed] = lab[iy[freed], ix[freed]]
    conf[freed] = confidence[iy[freed], ix[freed]]
    return out, conf


class CleanupAggregator:
    name = "cleanup"

    def __init__(self, config: CleanupConfig, context: ComponentContext | None = None):
        self.config = config
        if config.base == self.name and not config.base_params:
            raise ConfigError("label_aggregator 'cleanup': base cannot be 'cleanup' itself without base_params",
                              "Set base to argmax or palette-cluster.")
        # the base is built by the context (the engine's registry in a run; Registry().context() in library use)
        self.base = (context or ComponentContext()).component(Role.LABEL_AGGREGATOR, config.base, config.base_params)
        self.needs = getattr(self.base, "needs", "probs")  # what the base reads from the renders

    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """-> the base aggregator's (labels uint8 [C,H,W], confidence float32 [C,H,W]), cleaned per image."""
        labels, confidence = self.base.aggregate(renders, schema)
        c = self.config
        out_l = np.empty_like(labels)
        out_c = np.empty_like(confidence, dtype=np.float32)
        for i in range(labels.shape[0]):
            out_l[i], out_c[i] = clean_labels(labels[i], confidence[i].astype(np.float32), schema.num_classes,
                                              opening_radius=c.opening_radius, closing_radius=c.closing_radius,
                                              min_component=c.min_component, max_hole=c.max_hole)
        return out_l, out_c
