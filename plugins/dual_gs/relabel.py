"""Update only the class head of a fitted dual model from label maps (what `splatrefine correct` needs).

Geometry (means, scales, quats, opacities) and the RGB head stay exactly as fitted, so the RGB
renders do not change. Two ways, chosen by `method`:

- "vote" (default, closed form): every labelled pixel votes for its class on every Gaussian in
  proportion to that Gaussian's share of the pixel, alpha_i * T_i (the compositing weight), times
  the view's weight; every pixel of every view (labelled or not) also votes `prior` for the
  Gaussian's current class. New class probabilities are (prior * seen * old + votes) /
  (prior * seen + total vote), so a Gaussian that only unlabelled views see keeps its class, and a
  Gaussian that many views see moves less than one only the corrected views see. The views of
  the top weight (the corrections) vote as one: their votes are averaged per Gaussian, weighted by
  how much of it each sees, so corrections that overlap do not add up. The votes are one backward
  pass of the rasterizer: the rendered image is linear in the per-Gaussian features, so
  d(sum(render * target)) / d(features) is exactly the weighted vote.
- "fit": `steps` Adam steps on the class logits alone: weighted cross-entropy against the label
  maps, anchored by prior * visibility * KL(old || new) per Gaussian (see `relabel_fit`).

Labels are uint8 [C,H,W] class indices, 255 = no opinion (the pixel does not vote).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from splatrefine.schema import IGNORE
from splatrefine.types import Cameras

from .model import DualGSModel, rasterize_classes

METHODS = ("vote", "fit")


@dataclass(frozen=True)
class RelabelSettings:
    method: str = "vote"
    prior: float = 1.0  # vote: weight of the old class distribution, in pixel-shares
    average_top: bool = True  # vote: the top-weight views vote as one (visibility-weighted mean)
    steps: int = 150  # fit
    lr: float = 0.05  # fit
    batch_views: int = 4  # fit: views per step from each weight group (the top weight, the rest)
    chunk: int = 8  # views per rasterize call (vote)
    seed: int = 0


def _geometry(model: DualGSModel) -> tuple[torch.Tensor, ...]:
    p = model.params
    return (p["means"].detach(), p["quats"].detach(), torch.exp(p["scales"].detach()),
            torch.sigmoid(p["opacities"].detach()))


def class_votes(model: DualGSModel, cameras: Cameras, labels: np.ndarray, weights: np.ndarray,
                chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-Gaussian weighted class votes float32 [N,K] (sum over views v and pixels p of
    weights[v] * alpha_i(p) T_i(p) * onehot(labels[v,p])) and visibility [N] (the same sum of
    alpha_i(p) T_i(p) over every pixel of every view, labelled or not)."""
    from splatrefine.splat import rasterize

    dev = model.device
    K = model.num_classes
    means, quats, scales, opac = _geometry(model)
    feats = torch.zeros((model.num_gaussians, K + 1), device=dev, requires_grad=True)
    vm = torch.from_numpy(np.asarray(cameras.viewmats)).float().to(dev)
    Ks = torch.from_numpy(np.asarray(cameras.Ks)).float().to(dev)
    for s in range(0, len(cameras), chunk):
        lab = torch.from_numpy(np.asarray(labels[s:s + chunk])).to(dev).long()
        w = torch.from_numpy(np.asarray(weights[s:s + chunk], np.float32)).to(dev)
        valid = lab != IGNORE
        target = torch.nn.functional.one_hot(torch.where(valid, lab, 0), K).float()
        target = target * (valid.float() * w[:, None, None])[..., None]
        target = torch.cat([target, torch.ones_like(target[..., :1])], -1)
        out, _, _ = rasterize(means, quats, scales, opac, feats, vm[s:s + chunk], Ks[s:s + chunk],
                              cameras.width, cameras.height)
        (out * target).sum().backward()
    g = feats.grad.detach()
    return g[:, :K], g[:, K]


def _to_head(model: DualGSModel, probs: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N,K] -> the model's class parameters (logits, or palette-colour logits)."""
    probs = probs.clamp_min(1e-4)
    probs = probs / probs.sum(-1, keepdim=True)
    if model.mode == "logits":
        logits = torch.log(probs)
        return logits - logits.mean(-1, keepdim=True)
    from splatrefine.schema import get_schema

    pal = torch.from_numpy(get_schema(model.schema).palette_array().astype(np.float32) / 255.0).to(probs.device)
    return torch.logit((probs @ pal).clamp(0.02, 0.98))


def _old_probs(model: DualGSModel) -> torch.Tensor:
    return _probs_of(model, model.params["classes"].detach())


def relabel_vote(model: DualGSModel, cameras: Cameras, labels: np.ndarray, weights: np.ndarray,
                 settings: RelabelSettings) -> DualGSModel:
    w = np.asarray(weights, np.float32)
    top = np.nonzero(w >= w.max())[0] if settings.average_top and w.max() > w.min() else np.array([], int)
    rest = np.setdiff1d(np.arange(len(w)), top)
    votes, seen = class_votes(model, cameras.subset(rest), labels[rest], w[rest], settings.chunk)
    if len(top):
        # the top-weight views (the corrections) vote as one: per Gaussian, the mean of their
        # votes weighted by how much of the Gaussian each sees, so views that overlap do not add
        # up to a vote that drowns the fitted head (a glancing view barely counts)
        tv, ts = torch.zeros_like(votes), torch.zeros_like(seen)
        for i in top:
            v, s = class_votes(model, cameras.subset([i]), labels[i:i + 1], w[i:i + 1], 1)
            tv, ts = tv + v * s[:, None], ts + s
        votes = votes + tv / ts.clamp_min(1e-12)[:, None]
        seen = seen + ts
    old = _old_probs(model)
    keep = settings.prior * seen[:, None] + 1e-6
    new = (keep * old + votes) / (keep + votes.sum(-1, keepdim=True))
    return _with_classes(model, _to_head(model, new))


def relabel_fit(model: DualGSModel, cameras: Cameras, labels: np.ndarray, weights: np.ndarray,
                settings: RelabelSettings) -> DualGSModel:
    """Adam on the class logits alone. Loss = weighted cross-entropy of the rendered classes against
    the labelled views + prior * sum over Gaussians of visibility * KL(old || new), the visibility
    (alpha * T summed over every pixel of every view) coming from one vote pass. The anchor keeps
    what the other views see, so only the labelled views' rendering pays for every render."""
    dev = model.device
    _, seen = class_votes(model, cameras, labels, np.zeros(len(cameras), np.float32), settings.chunk)
    old = _old_probs(model).clamp_min(1e-6)
    params = {k: v.detach() for k, v in model.params.items()}
    head = torch.nn.Parameter(params["classes"].clone())
    opt = torch.optim.Adam([head], lr=settings.lr, eps=1e-15)
    vm = torch.from_numpy(np.asarray(cameras.viewmats)).float().to(dev)
    Ks = torch.from_numpy(np.asarray(cameras.Ks)).float().to(dev)
    lab_all = torch.from_numpy(np.asarray(labels)).to(dev).long()
    w = np.asarray(weights, np.float32)
    w_all = torch.from_numpy(w).to(dev)
    labelled = (np.asarray(labels) != IGNORE).reshape(len(w), -1).sum(1)
    active = np.nonzero((w > 0) & (labelled > 0))[0]
    if len(active) == 0:
        return _with_classes(model, head.detach())
    top = float(w[active].max())
    groups = [g for g in (active[w[active] >= top], active[w[active] < top]) if len(g)]
    mass = [float((w[g] * labelled[g]).sum()) for g in groups]
    z = sum(mass) + settings.prior * float(seen.sum())
    rng = np.random.default_rng(settings.seed)
    pal = None
    if model.mode != "logits":
        from splatrefine.schema import get_schema

        pal = torch.from_numpy(get_schema(model.schema).palette_array().astype(np.float32) / 255.0).to(dev)
    for _ in range(settings.steps):
        p = {**params, "classes": head}
        loss = settings.prior * (seen * (old * (old.log() - _probs_of(model, head).clamp_min(1e-6).log())).sum(-1)).sum()
        for g in groups:
            pick = g[rng.permutation(len(g))[: settings.batch_views]]
            idx = torch.from_numpy(pick.astype(np.int64)).to(dev)
            cls, _ = rasterize_classes(model, vm[idx], Ks[idx], cameras.width, cameras.height, p)
            lab = lab_all[idx]
            valid = lab != IGNORE
            safe = torch.where(valid, lab, 0)
            if pal is None:
                per = -torch.log(cls.clamp_min(1e-6)).gather(-1, safe[..., None])[..., 0]
            else:
                per = (cls - pal[safe]).abs().mean(-1)
            loss = loss + (per * valid.float() * w_all[idx][:, None, None]).sum() * (len(g) / len(pick))
        opt.zero_grad(set_to_none=True)
        (loss / z).backward()
        opt.step()
    return _with_classes(model, head.detach())


def _probs_of(model: DualGSModel, head: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N,K] of a head (palette heads: by distance to the palette colours)."""
    if model.mode == "logits":
        return torch.softmax(head, -1)
    from splatrefine.schema import get_schema

    pal = torch.from_numpy(get_schema(model.schema).palette_array().astype(np.float32) / 255.0).to(head.device)
    d = ((torch.sigmoid(head)[:, None, :] - pal[None]) ** 2).sum(-1)
    return torch.softmax(-d / 0.01, -1)


def _with_classes(model: DualGSModel, classes: torch.Tensor) -> DualGSModel:
    from dataclasses import replace

    return replace(model, params={**{k: v.detach() for k, v in model.params.items()}, "classes": classes.float()},
                   meta=dict(model.meta))


class DualGSRelabeler:
    """The `Relabelable` capability (splatrefine.roles) for a `dual-gs` representation."""

    def __init__(self, representation, settings: RelabelSettings | None = None):
        self.representation = representation
        self.settings = settings or RelabelSettings()
        if self.settings.method not in METHODS:
            raise ValueError(f"relabel method '{self.settings.method}': expected one of {', '.join(METHODS)}")

    def relabel(self, model: DualGSModel, cameras: Cameras, labels: np.ndarray, weights: np.ndarray) -> DualGSModel:
        """labels uint8 [C,H,W] (255 = no opinion) at `cameras`, weights float [C] per view -> a new
        model whose class head follows the labels; geometry and RGB untouched."""
        dev = self.representation.device
        if model.device != dev:
            model.to(dev)
        if self.settings.method == "vote":
            return relabel_vote(model, cameras, labels, weights, self.settings)
        return relabel_fit(model, cameras, labels, weights, self.settings)
