"""Densification and pruning of the shared geometry.

Two strategies over a dict of per-Gaussian parameters (every tensor, class logits included, is
indexed the same way) and each parameter's Adam group (fit.ParamGroupOptimizer), whose moments
follow each edit:

* DefaultDensifier: the 3DGS schedule (as gsplat's DefaultStrategy): accumulate the view-space
  gradient norm of each Gaussian's 2D mean; every `refine_every` steps clone small high-gradient
  Gaussians, split large ones into two smaller samples, prune transparent or huge ones; reset
  opacities every `reset_every` steps.
* MCMCDensifier: 3DGS-as-MCMC (Kheradmand et al. 2024): dead Gaussians are relocated onto live
  ones sampled by opacity (opacity and scale adjusted so the sum renders the same), the count
  grows by 5% per refinement up to a budget, and low-opacity Gaussians get position noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .model import quat_to_rotmat

Params = dict[str, torch.Tensor]
Optims = dict[str, Any]  # name -> its Adam view: .state (moments keyed by the parameter), .param_groups[0]


@torch.no_grad()
def edit_params(params: Params, optims: Optims, param_fn: Callable[[str, torch.Tensor], torch.Tensor],
                state_fn: Callable[[str, torch.Tensor], torch.Tensor], names: list[str] | None = None) -> None:
    """Replace each parameter by param_fn(name, p) and each Adam moment by state_fn(name, m) in place."""
    for name in (names or list(params)):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        params[name] = new
        opt = optims.get(name)
        if opt is None:
            continue
        st = opt.state.pop(old, None)
        if st is not None:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key] = state_fn(name, st[key])
            opt.state[new] = st
        opt.param_groups[0]["params"] = [new]


def _zeros_like_rows(v: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=v.device)


@torch.no_grad()
def duplicate(params: Params, optims: Optims, mask: torch.Tensor) -> None:
    sel = torch.where(mask)[0]
    edit_params(params, optims, lambda n, p: torch.cat([p, p[sel]]),
                lambda n, v: torch.cat([v, _zeros_like_rows(v, len(sel))]))


@torch.no_grad()
def split(params: Params, optims: Optims, mask: torch.Tensor, generator: torch.Generator) -> None:
    """Each selected Gaussian becomes two, sampled from it, 1.6x smaller."""
    sel = torch.where(mask)[0]
    rest = torch.where(~mask)[0]
    scales = torch.exp(params["scales"][sel])
    rot = quat_to_rotmat(params["quats"][sel])
    noise = torch.randn((2, len(sel), 3), generator=generator, device="cpu").to(scales.device)
    offsets = torch.einsum("nij,nj,bnj->bni", rot, scales, noise)

    def param_fn(name: str, p: torch.Tensor) -> torch.Tensor:
        if name == "means":
            new = (p[sel][None] + offsets).reshape(-1, 3)
        elif name == "scales":
            new = torch.log(scales / 1.6).repeat(2, 1)
        else:
            new = p[sel].repeat(2, *([1] * (p.dim() - 1)))
        return torch.cat([p[rest], new])

    edit_params(params, optims, param_fn, lambda n, v: torch.cat([v[rest], _zeros_like_rows(v, 2 * len(sel))]))


@torch.no_grad()
def remove(params: Params, optims: Optims, mask: torch.Tensor) -> None:
    keep = torch.where(~mask)[0]
    edit_params(params, optims, lambda n, p: p[keep], lambda n, v: v[keep])


@torch.no_grad()
def reset_opacity(params: Params, optims: Optims, value: float) -> None:
    cap = math.log(value / (1 - value))
    edit_params(params, optims, lambda n, p: p.clamp_max(cap), lambda n, v: torch.zeros_like(v), names=["opacities"])


def _visible_and_grads(meta: dict, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(gaussian ids [M], view-space gradient norms [M]) of the Gaussians visible in each camera."""
    m2d = meta["means2d"]
    g = m2d.grad
    if g is None:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    C = g.shape[0]
    g = g.clone()
    g[..., 0] *= width / 2.0 * C
    g[..., 1] *= height / 2.0 * C
    radii = meta["radii"]
    vis = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0
    ids = torch.where(vis)[1]
    return ids, g[vis].norm(dim=-1)


class DefaultDensifier:
    """Clone / split / prune with opacity resets (3DGS; gsplat DefaultStrategy semantics)."""

    def __init__(self, *, refine_start: int, refine_stop: int, refine_every: int, reset_every: int,
                 grow_grad2d: float, grow_scale3d: float, prune_opacity: float, prune_scale3d: float,
                 max_gaussians: int, scene_scale: float, seed: int):
        self.refine_start, self.refine_stop, self.refine_every = refine_start, refine_stop, refine_every
        self.reset_every = reset_every
        self.grow_grad2d, self.grow_scale3d = grow_grad2d, grow_scale3d
        self.prune_opacity, self.prune_scale3d = prune_opacity, prune_scale3d
        self.max_gaussians = max_gaussians
        self.scene_scale = scene_scale
        self.seed = seed
        self.grad2d: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    needs_means2d_grad = True

    def state_dict(self) -> dict:
        return {"grad2d": self.grad2d, "count": self.count}

    def load_state_dict(self, st: dict) -> None:
        self.grad2d, self.count = st.get("grad2d"), st.get("count")

    def _ensure(self, n: int, device: torch.device) -> None:
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=device)
            self.count = torch.zeros(n, device=device)

    @torch.no_grad()
    def step_post_backward(self, params: Params, optims: Optims, step: int, meta: dict, width: int,
                           height: int) -> dict:
        """Accumulate gradients; refine on schedule. Returns counts of what changed."""
        info = {"cloned": 0, "split": 0, "pruned": 0}
        if step >= self.refine_stop:
            return info
        n = params["means"].shape[0]
        self._ensure(n, params["means"].device)
        ids, norms = _visible_and_grads(meta, width, height)
        self.grad2d.index_add_(0, ids.to(self.grad2d.device), norms.to(self.grad2d.dtype))
        self.count.index_add_(0, ids.to(self.count.device), torch.ones_like(norms, dtype=self.count.dtype))
        if step > self.refine_start and step % self.refine_every == 0:
            info.update(self._refine(params, optims, step))
            n = params["means"].shape[0]
            self.grad2d = torch.zeros(n, device=params["means"].device)
            self.count = torch.zeros(n, device=params["means"].device)
        if step > 0 and step % self.reset_every == 0:
            reset_opacity(params, optims, 2.0 * self.prune_opacity)
        return info

    def _refine(self, params: Params, optims: Optims, step: int) -> dict:
        grads = self.grad2d / self.count.clamp_min(1)
        high = grads > self.grow_grad2d
        small = torch.exp(params["scales"]).max(-1).values <= self.grow_scale3d * self.scene_scale
        dup = high & small
        spl = high & ~small
        room = self.max_gaussians - params["means"].shape[0]
        if int(dup.sum() + spl.sum()) > room:  # keep the strongest gradients within the cap
            cand = torch.where(high)[0]
            k = max(0, room // 2)
            keep = cand[torch.argsort(grads[cand], descending=True)[:k]]
            limited = torch.zeros_like(high)
            limited[keep] = True
            dup &= limited
            spl &= limited
        n_dup, n_split = int(dup.sum()), int(spl.sum())
        if n_dup:
            duplicate(params, optims, dup)
        spl = torch.cat([spl, torch.zeros(n_dup, dtype=torch.bool, device=spl.device)])
        if n_split:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            split(params, optims, spl, gen)
        prune = torch.sigmoid(params["opacities"]) < self.prune_opacity
        if step > self.reset_every:
            prune |= torch.exp(params["scales"]).max(-1).values > self.prune_scale3d * self.scene_scale
        n_prune = int(prune.sum())
        if n_prune and n_prune < params["means"].shape[0]:
            remove(params, optims, prune)
        else:
            n_prune = 0
        return {"cloned": n_dup, "split": n_split, "pruned": n_prune}


def _relocation(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor,
                max_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacity and scale for a Gaussian replaced by `ratios` copies so their sum renders like it
    (Kheradmand et al. 2024, eq. 9). opacities [M], scales [M,3], ratios [M] int >= 1."""
    ratios = ratios.clamp(1, max_ratio)
    new_o = 1.0 - torch.pow(1.0 - opacities, 1.0 / ratios.to(opacities.dtype))
    denom = torch.zeros_like(opacities)
    for i in range(1, max_ratio + 1):
        active = ratios >= i
        if not active.any():
            break
        s = torch.zeros_like(opacities)
        for k in range(i):
            s = s + math.comb(i - 1, k) * ((-1) ** k) / math.sqrt(k + 1) * new_o ** (k + 1)
        denom = denom + torch.where(active, s, torch.zeros_like(s))
    factor = (opacities / denom.clamp_min(1e-12)).clamp_max(1.0)
    return new_o, scales * factor[:, None]


class MCMCDensifier:
    """Relocate dead Gaussians and grow to a budget (3DGS-as-MCMC)."""

    needs_means2d_grad = False

    def __init__(self, *, refine_start: int, refine_stop: int, refine_every: int, max_gaussians: int,
                 min_opacity: float, noise_lr: float, seed: int):
        self.refine_start, self.refine_stop, self.refine_every = refine_start, refine_stop, refine_every
        self.max_gaussians = max_gaussians
        self.min_opacity = min_opacity
        self.noise_lr = noise_lr
        self.seed = seed

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, st: dict) -> None:
        pass

    def _sample(self, weights: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        w = weights.detach().cpu().double().clamp_min(0) + 1e-12
        return torch.multinomial(w, n, replacement=True, generator=gen).to(weights.device)

    @torch.no_grad()
    def _relocate(self, params: Params, optims: Optims, gen: torch.Generator) -> int:
        op = torch.sigmoid(params["opacities"])
        dead = op <= self.min_opacity
        n_dead = int(dead.sum())
        alive = torch.where(~dead)[0]
        if n_dead == 0 or len(alive) == 0:
            return 0
        src = alive[self._sample(op[alive], n_dead, gen)]
        dst = torch.where(dead)[0]
        self._place(params, optims, src, dst)
        return n_dead

    @torch.no_grad()
    def _place(self, params: Params, optims: Optims, src: torch.Tensor, dst: torch.Tensor | None) -> None:
        """Copy Gaussians `src` onto `dst` (or append when dst is None), splitting their opacity/scale."""
        op = torch.sigmoid(params["opacities"])
        ratios = torch.bincount(src, minlength=op.shape[0])[src] + 1
        new_o, new_s = _relocation(op[src], torch.exp(params["scales"][src]), ratios, 51)
        eps = torch.finfo(new_o.dtype).eps
        new_o = new_o.clamp(self.min_opacity, 1 - eps)

        def param_fn(name: str, p: torch.Tensor) -> torch.Tensor:
            p = p.clone()
            if name == "opacities":
                p[src] = torch.logit(new_o)
            elif name == "scales":
                p[src] = torch.log(new_s)
            if dst is None:
                return torch.cat([p, p[src]])
            p[dst] = p[src]
            return p

        def state_fn(name: str, v: torch.Tensor) -> torch.Tensor:
            v = v.clone()
            v[src] = 0
            if dst is None:
                return torch.cat([v, _zeros_like_rows(v, len(src))])
            v[dst] = 0
            return v

        edit_params(params, optims, param_fn, state_fn)

    @torch.no_grad()
    def step_post_backward(self, params: Params, optims: Optims, step: int, meta: dict, width: int,
                           height: int) -> dict:
        info = {"relocated": 0, "added": 0}
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            info["relocated"] = self._relocate(params, optims, gen)
            n = params["means"].shape[0]
            n_add = max(0, min(self.max_gaussians, max(n + 1, int(1.05 * n))) - n)
            if n_add:
                op = torch.sigmoid(params["opacities"])
                src = self._sample(op, n_add, gen)
                self._place(params, optims, src, None)
                info["added"] = n_add
        return info

    @torch.no_grad()
    def step_post_optimizer(self, params: Params, step: int, lr_means: float) -> None:
        """Position noise on near-transparent Gaussians, shaped by their covariance."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_033 + step)
        op = torch.sigmoid(params["opacities"])
        scales = torch.exp(params["scales"])
        rot = quat_to_rotmat(params["quats"])
        M = rot * scales[:, None, :]
        cov = M @ M.transpose(1, 2)
        gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1.0 - op) - 0.995)))
        noise = torch.randn(params["means"].shape, generator=gen).to(op.device) * gate[:, None] * self.noise_lr * lr_means
        params["means"].add_(torch.einsum("nij,nj->ni", cov, noise))
