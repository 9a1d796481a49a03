"""`fusion`: the 3D consensus, fused at input views with the view's own parser labels.

At a new camera only the rendered consensus exists, and the label is its argmax. At an input view the
parser has also spoken, and where that view's parser is reliable its own label is usually sharper
than the consensus (thin classes: eyes, brows, lips come out of a 3D fit thinner and shifted). So
each input view gets a Dawid-Skene confusion matrix, P(the parser says j | the class is c), estimated
against the consensus itself from soft counts (`splatrefine.agreement.view_confusion`), and the label
is the argmax of the posterior  consensus(c) * P(said | c) ** trust.  A view whose "eye" lands where
every other view sees cheek has a large P(eye | skin) and the consensus wins there; a frontal view
whose eyes are wider than the consensus's has P(eye | eye) near 1 and P(eye | skin) small, so its
eyes keep their parser shape.

Pixels where the parser has no opinion (uniform probabilities) keep the consensus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.agreement import parser_confidence, view_confusion
from splatrefine.roles import ComponentContext
from splatrefine.schema import LabelSchema
from splatrefine.types import Renders

from .argmax import apply_ignore, check_renders


@dataclass(frozen=True)
class FusionConfig:
    trust: float = field(default=1.0, metadata={
        "help": "exponent on the parser's likelihood at input views (0: the consensus alone, as argmax; "
                "1: Bayes; > 1: the view's own labels win more often)", "min": 0.0, "max": 8.0})
    prior_pixels: float = field(default=50.0, metadata={
        "help": "pseudo-count (pixels) shrinking a class's reliability in a view towards the view's "
                "overall agreement with the consensus (small classes borrow strength)", "min": 0.0})
    min_confidence: float = field(default=0.0, metadata={
        "help": "pixels whose fused top probability is below this become 255 (ignore)", "min": 0.0, "max": 1.0})
    min_alpha: float = field(default=0.0, metadata={
        "help": "pixels whose rendered opacity is below this become 255 (ignore); 0 keeps all",
        "min": 0.0, "max": 1.0})


def fuse_view(consensus: np.ndarray, observed: np.ndarray, trust: float, prior_pixels: float) -> np.ndarray:
    """Posterior [N,K] of one view (see the module docstring)."""
    K = consensus.shape[-1]
    confusion = view_confusion(consensus, observed, prior_pixels)
    lab, conf = parser_confidence(observed)
    likelihood = conf[:, None] * confusion[:, lab].T + (1.0 - conf[:, None]) / K
    post = consensus * np.maximum(likelihood, 1e-12) ** trust
    post /= np.maximum(post.sum(-1, keepdims=True), 1e-30)
    return post


class FusionAggregator:
    name = "fusion"
    needs = "probs"

    def __init__(self, config: FusionConfig, context: ComponentContext | None = None):
        self.config = config

    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """-> (labels uint8 [C,H,W], confidence float32 [C,H,W] = fused top probability)."""
        check_renders(renders, schema, "probs", self.name)
        probs = np.asarray(renders.probs, dtype=np.float32)
        if renders.observed is not None and self.config.trust > 0:
            C, H, W, K = probs.shape
            fused = np.empty_like(probs)
            for i in range(C):
                fused[i] = fuse_view(probs[i].reshape(-1, K), np.asarray(renders.observed[i], np.float32).reshape(-1, K),
                                     self.config.trust, self.config.prior_pixels).reshape(H, W, K)
            probs = fused
        labels = probs.argmax(-1).astype(np.uint8)
        confidence = np.clip(probs.max(-1), 0.0, 1.0).astype(np.float32)
        labels = apply_ignore(labels, confidence, np.asarray(renders.alpha), self.config.min_confidence,
                              self.config.min_alpha)
        return labels, confidence
