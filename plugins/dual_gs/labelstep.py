"""Closed-form label step: each Gaussian's class distribution = the views' labels it renders, by votes.

The class head renders pixel p as sum_g w_g(p) f_g with w_g(p) = alpha_g T_g(p) (opacity times
transmittance), the same weights the RGB head uses. So the labels every view asks for can be lifted
onto the Gaussians in closed form (FlashSplat, ECCV 2024, does this with hard votes): a Gaussian's
vote for class c is sum over views and pixels of weight(p) w_g(p) target_p(c). One backward pass of
sum_p weight(p) <target_p, render_p> through the rasterizer with the class features as the leaf gives
exactly these sums, for every Gaussian at once. Soft targets are kept soft.

With `view_reliability`, the votes alternate with the consensus they make (EM): render the consensus
at every input view, measure each view's per-class agreement with it
(`reliability.consensus_agreement`), reweight, vote again.
"""

from __future__ import annotations

import numpy as np
import torch

from splatrefine.splat import rasterize

from .fit import FitData
from .model import DualGSModel
from .reliability import consensus_agreement, reliability_factors


def class_votes(model: DualGSModel, params: dict[str, torch.Tensor], data: FitData, weights: torch.Tensor,
                chunk: int = 4) -> torch.Tensor:
    """float64 [N,K]: sum over views and pixels of weights(p) * alpha_g T_g(p) * targets_p."""
    p = {k: v.detach() for k, v in params.items()}
    N, K = p["means"].shape[0], data.targets.shape[-1]
    feats = torch.zeros((N, K), device=p["means"].device, requires_grad=True)
    scales, opac = torch.exp(p["scales"]), torch.sigmoid(p["opacities"])
    votes = torch.zeros((N, K), dtype=torch.float64, device=feats.device)
    for s in range(0, len(data), chunk):
        e = min(s + chunk, len(data))
        out, _, _ = rasterize(p["means"], p["quats"], scales, opac, feats, data.viewmats[s:e], data.Ks[s:e],
                              data.width, data.height)
        objective = (out * data.targets[s:e] * weights[s:e, ..., None]).sum()
        (g,) = torch.autograd.grad(objective, feats)
        votes += g.double()
    return votes


def logits_from_votes(votes: torch.Tensor, previous_logits: torch.Tensor, prior_strength: float) -> torch.Tensor:
    """Class logits [N,K]: normalised votes, with the previous class head as a prior worth
    `prior_strength` times the median vote mass (so Gaussians no view labels keep what they had)."""
    mass = votes.sum(-1, keepdim=True)
    seen = mass[:, 0] > 0
    scale = float(mass[seen].median()) if bool(seen.any()) else 1.0
    prior = torch.softmax(previous_logits.double(), dim=-1) * (prior_strength * scale)
    probs = (votes + prior) / (mass + prior_strength * scale).clamp_min(1e-30)
    logits = torch.log(probs.clamp_min(1e-6))
    return (logits - logits.mean(-1, keepdim=True)).float()


@torch.no_grad()
def _agreement(model, params, background_sh, data, prior_pixels):
    return consensus_agreement(model, params, background_sh, data, prior_pixels)


def vote_labels(model: DualGSModel, data: FitData, base_weights: torch.Tensor, *, em_steps: int,
                view_reliability: float, prior_strength: float = 0.05) -> tuple[torch.Tensor, np.ndarray | None]:
    """New class logits [N,K] for `model` by votes (and `em_steps` reliability rounds); -> (logits,
    agreement [V,K] or None)."""
    params = dict(model.params)
    logits = logits_from_votes(class_votes(model, params, data, base_weights), params["classes"], prior_strength)
    agreement = None
    labels = data.targets.argmax(-1)
    for _ in range(em_steps if view_reliability > 0 else 0):
        params["classes"] = logits
        agreement = _agreement(model, params, model.background_sh, data, 50.0)
        weights = base_weights * reliability_factors(agreement, labels, view_reliability)
        logits = logits_from_votes(class_votes(model, params, data, weights), model.params["classes"], prior_strength)
    return logits, agreement
