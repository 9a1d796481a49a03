"""Which views to trust while fitting the class head: per-view, per-class agreement with the 3D consensus.

A parser trained on frontal faces is confidently wrong in some poses (its face oval wraps onto the
cheek at 45-60 degrees) and right in others, and the fit cannot tell them apart from one view. The
consensus of all views can: every `reliability_updates`-th part of the fit renders every input view,
measures how far each view's labels of each class agree with the consensus there
(`splatrefine.agreement.class_agreement`), and reweights that view's pixels of that class by its
agreement relative to the best view of the same class, to the power `view_reliability` (an EM step:
E = consensus, M = refit with the new weights). Relative, so a class that is hard everywhere (thin
brows) keeps its weight against the others; only the views that disagree most lose theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from splatrefine.agreement import class_agreement, label_agreement

from .model import DualGSModel, rasterize_classes

if TYPE_CHECKING:  # a type hint only: fit.py imports this module
    from .fit import FitData


@torch.no_grad()
def consensus_agreement(model: DualGSModel, params: dict[str, torch.Tensor], data: FitData, prior_pixels: float,
                        chunk: int = 4) -> np.ndarray:
    """float64 [V,K]: agreement of each view's class targets with the rendered consensus (the class
    head only: no RGB background is composited)."""
    V = len(data)
    K = model.num_classes
    out = np.zeros((V, K))
    for s in range(0, V, chunk):
        e = min(s + chunk, V)
        cls, _ = rasterize_classes(model, data.viewmats[s:e], data.Ks[s:e], data.width, data.height, params)
        if data.labels is None:
            cls = cls.clamp_min(0).double().cpu().numpy().reshape(e - s, -1, K)
            tgt = data.targets[s:e].double().cpu().numpy().reshape(e - s, -1, K)
            for i in range(e - s):
                out[s + i] = class_agreement(cls[i], tgt[i], prior_pixels)
            continue
        lab = data.labels[s:e].long()
        # the consensus probability of each pixel's own label: all the agreement reads of it
        agree = torch.gather(cls, -1, lab[..., None])[..., 0].clamp_min(0).double().cpu().numpy().reshape(e - s, -1)
        lab = lab.cpu().numpy().reshape(e - s, -1)
        top = data.label_max[s:e].double().cpu().numpy().reshape(e - s, -1)
        for i in range(e - s):
            out[s + i] = label_agreement(agree[i], lab[i], top[i], prior_pixels, K)
    return out


def reliability_factors(agreement: np.ndarray, labels: torch.Tensor, power: float) -> torch.Tensor:
    """Per-pixel weight factors [V,H,W]: (agreement of the view's label class / the best view's) ** power."""
    rel = agreement / np.maximum(agreement.max(axis=0, keepdims=True), 1e-12)
    rel = torch.from_numpy(np.clip(rel, 0.0, 1.0) ** power).float().to(labels.device)
    return torch.gather(rel, 1, labels.reshape(labels.shape[0], -1)).reshape(labels.shape)
