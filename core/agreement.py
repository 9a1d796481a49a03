"""How far one view's parser labels agree with a 3D consensus, per observed class.

Used wherever labels from several views are combined: which views to trust while fitting a class
head, and how much each view's labels count when they are carried to other cameras. The model is a one-coin Dawid-Skene
model per (view, observed class): the parser's label j is right with probability rho_j. rho_j is
estimated as the mean consensus probability of j where the view says j, each pixel weighted by the
parser's confidence, and shrunk towards the view's overall agreement by `prior_pixels` pseudo-pixels
so a class with a handful of pixels borrows strength from the rest of the view.
"""

from __future__ import annotations

import numpy as np


def parser_confidence(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """observed [...,K] probabilities -> (label [...] int, confidence [...] in 0..1: 0 for a uniform
    pixel (no opinion), 1 for a one-hot one)."""
    from .class_maps import argmax_last

    K = observed.shape[-1]
    lab, top = argmax_last(observed)
    top = top.astype(observed.dtype, copy=False)  # float16 comes back widened: the same arithmetic as numpy's max
    conf = np.clip((top - 1.0 / K) / (1.0 - 1.0 / K), 0.0, 1.0)
    return lab, np.nan_to_num(conf)


def class_agreement(consensus: np.ndarray, observed: np.ndarray, prior_pixels: float) -> np.ndarray:
    """One view: consensus [N,K] and observed [N,K] probabilities -> rho [K] in 0..1 per observed
    class (classes the view never says get the view's overall agreement). Computed in float64
    whatever the inputs' float type (float32 inputs give the numbers their float64 copies would)."""
    from .class_maps import argmax_last

    K = observed.shape[-1]
    lab, top = argmax_last(observed)
    agree = np.take_along_axis(consensus, lab[:, None], axis=-1)[:, 0]
    return label_agreement(agree.astype(np.float64), lab, top.astype(np.float64), prior_pixels, K)


def label_agreement(agree: np.ndarray, labels: np.ndarray, top: np.ndarray, prior_pixels: float,
                    num_classes: int) -> np.ndarray:
    """`class_agreement` of a view whose probabilities are known only by their argmax `labels` [N]
    and top probability `top` [N] (all that it uses of them), given `agree` [N], the consensus
    probability of each pixel's label -> rho [K]."""
    K = num_classes
    conf = np.nan_to_num(np.clip((top - 1.0 / K) / (1.0 - 1.0 / K), 0.0, 1.0))
    num = np.bincount(labels, weights=conf * agree, minlength=K)
    den = np.bincount(labels, weights=conf, minlength=K)
    overall = num.sum() / den.sum() if den.sum() > 0 else 1.0 / K
    return (num + prior_pixels * overall) / np.maximum(den + prior_pixels, 1e-12)

