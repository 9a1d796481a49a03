"""The optimisation loop of the dual model: losses, densification, checkpoints, resume, rollback."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from splatrefine.errors import SplatrefineError
from splatrefine.io.atomic import write_bytes, write_text
from splatrefine.progress import progress_task

from . import losses
from .adam import FusedAdam
from .densify import DefaultDensifier, MCMCDensifier
from .model import DualGSModel, background_rgb, rasterize_classes, rasterize_heads, split_heads

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MAX_ROLLBACKS = 10
SNAPSHOT_EVERY = 25
HISTORY_EVERY = 10
# D-SSIM's blurred target moments are kept per view and level when all of them fit in this (the
# demo: 90 MB); each is then blurred once instead of every step
SSIM_TARGETS_BYTES = 128 << 20
PROBE_VIEWS = 8  # input views rendered by the early stop's label checks
BACKGROUND_PROBE = 255  # their label where alpha < 0.5
BG_LR = 5e-3


def _pool(t: torch.Tensor | None, factor: int) -> torch.Tensor | None:
    """Box filter of [V,H,W,...] by `factor` in H and W (rows/columns past a multiple are dropped)."""
    if t is None or factor == 1:
        return t
    H, W = t.shape[1] // factor, t.shape[2] // factor
    x = t[:, : H * factor, : W * factor]
    shape = x.shape
    x = x.reshape(shape[0], H, factor, W, factor, *shape[3:])
    if factor == 2:
        # torch's mean over (2, 4) in the order it sums them, (a + b) + (c + d), without its
        # strided reduction (5x slower on [8,256,256,19])
        return ((x[:, :, 0, :, 0] + x[:, :, 0, :, 1]) + (x[:, :, 1, :, 0] + x[:, :, 1, :, 1])) / 4
    return x.mean(dim=(2, 4))


def label_targets(probs_vhwk: np.ndarray, factors: tuple[int, ...] = (1, 2),
                  chunk: int = 8) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The class targets of the hard-label losses at each resolution factor: {factor: (labels uint8
    [V,H',W'] (the argmax of the box-filtered probabilities), top probability float32 [V,H',W'])}.
    probs_vhwk float32 [V,H,W,K] (any strides: it is read `chunk` views at a time, so a transposed
    view of [V,K,H,W] probabilities costs no full copy)."""
    V, K = probs_vhwk.shape[0], probs_vhwk.shape[-1]
    dtype = torch.uint8 if K <= 256 else torch.int16
    out: dict[int, tuple[list, list]] = {f: ([], []) for f in factors}
    for s in range(0, V, chunk):
        p = losses.views_float32(probs_vhwk, s, s + chunk)
        for f in factors:
            top = _pool(p, f).max(-1)
            out[f][0].append(top.indices.to(dtype))
            out[f][1].append(top.values)
    return {f: (torch.cat(lab), torch.cat(mx)) for f, (lab, mx) in out.items()}


class FitData:
    """Training targets on the fit device: images [V,H,W,3], class targets [V,H,W,F] (probs or
    palette colours; None when the class loss needs only labels), class weights [V,H,W], masks
    [V,H,W] or None, cameras (viewmats, Ks); `labels` [V,H,W] integer and `label_max` [V,H,W] (the
    initial parser's argmax and top probability) when the class loss is a hard-label one.
    `levels` holds labels / label_max of coarser levels ({factor: (labels, label_max)}), computed
    from the full probabilities up front so those need not be kept."""

    def __init__(self, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int, images: torch.Tensor,
                 targets: torch.Tensor | None, weights: torch.Tensor, masks: torch.Tensor | None,
                 labels: torch.Tensor | None = None, label_max: torch.Tensor | None = None,
                 levels: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.viewmats, self.Ks, self.width, self.height = viewmats, Ks, width, height
        self.images, self.targets, self.weights, self.masks = images, targets, weights, masks
        self.labels, self.label_max = labels, label_max
        self.levels = levels or {}
        if targets is None and labels is None:
            raise ValueError("FitData needs class targets or labels")

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def with_weights(self, weights: torch.Tensor) -> FitData:
        return FitData(self.viewmats, self.Ks, self.width, self.height, self.images, self.targets, weights,
                       self.masks, self.labels, self.label_max, self.levels)

    def class_targets(self) -> torch.Tensor:
        """What the class loss compares with: labels [V,H,W] when there are, else targets [V,H,W,F]."""
        return self.labels if self.labels is not None else self.targets

    def argmax_labels(self) -> torch.Tensor:
        """The initial parser's label per pixel [V,H,W] (int64)."""
        return (self.labels if self.labels is not None else self.targets.argmax(-1)).long()

    def downsampled(self, factor: int) -> FitData:
        """The same views at 1/factor resolution (box-filtered targets, intrinsics scaled)."""
        if factor == 1:
            return self
        H, W = self.height // factor, self.width // factor
        Ks = self.Ks.clone()
        Ks[:, :2, :] /= factor
        labels = label_max = None
        if self.labels is not None:
            if factor not in self.levels:
                raise ValueError(f"FitData: no labels for resolution factor {factor} (have {sorted(self.levels)})")
            labels, label_max = self.levels[factor]
        return FitData(self.viewmats, Ks, W, H, _pool(self.images, factor), _pool(self.targets, factor),
                       _pool(self.weights, factor), _pool(self.masks, factor), labels, label_max)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        cls = [self.targets] if self.targets is not None else [self.labels, self.label_max]
        for t in (self.viewmats, self.Ks, self.images, *cls, self.weights):
            h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
        if self.masks is not None:
            h.update(np.ascontiguousarray(self.masks.cpu().numpy()).tobytes())
        return h.hexdigest()[:16]


class StepSections:
    """Wall time per part of the fit step (bench/dual_gs.py --profile); free when disabled."""

    def __init__(self, enabled: bool = False):
        self.enabled = enabled
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if not self.enabled:
            yield
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def _lr_means(config, step: int, total: int, scene_scale: float) -> float:
    a, b = config.lr_means * scene_scale, max(config.lr_means_final, 1e-12) * scene_scale
    f = min(step / max(total, 1), 1.0)
    return math.exp((1 - f) * math.log(max(a, 1e-12)) + f * math.log(b))


class ParamGroupOptimizer:
    """One parameter's view of the shared Adam: its moments (`state`, keyed by the parameter) and its
    group (`param_groups[0]`), the interface the densifier edits (splatrefine.plugins.dual_gs.densify)."""

    def __init__(self, optimizer: FusedAdam, group: int):
        self.optimizer = optimizer
        self.group = group

    @property
    def state(self):
        return self.optimizer.state

    @property
    def param_groups(self) -> list[dict]:
        return [self.optimizer.param_groups[self.group]]


class Trainer:
    """Fits `model` to `data` for `config.iterations` steps (resuming from `workdir` when it holds a
    checkpoint of the same fit)."""

    def __init__(self, config, model: DualGSModel, data: FitData, seed: int, workdir: Path | None):
        self.config = config
        self.model = model
        self.data = data
        self._coarse: FitData | None = None
        self.seed = seed
        self.workdir = Path(workdir) if workdir is not None else None
        self.total = int(config.iterations)
        self.params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in model.params.items()}
        self.bg = None if model.background_sh is None else torch.nn.Parameter(model.background_sh.detach().clone())
        self.optims = self._make_optimizers()
        stop = int(config.refine_stop * self.total)
        if config.strategy == "default":
            self.densifier = DefaultDensifier(
                refine_start=config.refine_start, refine_stop=stop, refine_every=config.refine_every,
                reset_every=config.reset_every, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
                prune_opacity=config.prune_opacity, prune_scale3d=config.prune_scale3d,
                max_gaussians=config.max_gaussians, scene_scale=model.scene_scale, seed=seed)
        else:
            self.densifier = MCMCDensifier(
                refine_start=config.refine_start, refine_stop=stop, refine_every=config.refine_every,
                max_gaussians=config.max_gaussians, min_opacity=config.prune_opacity, noise_lr=5e5, seed=seed)
        self.step = 0
        self.history: dict[str, list] = {"iteration": [], "loss": [], "gaussians": [], "seconds": []}
        self._elapsed = 0.0  # fit seconds before this session (resume)
        self._t0 = time.perf_counter()
        self._acc: dict[str, float] = {}
        self._acc_n = 0
        self._snapshot: dict | None = None
        self.rollbacks = 0
        self.sections = StepSections()
        self.fingerprint = self._fingerprint()
        self._base_weights = data.weights
        self.agreement: np.ndarray | None = None
        self._ssim_targets: dict[tuple[int, int], np.ndarray] | None = None
        if len(data) * 2 * 3 * data.height * data.width * 4 * 1.25 <= SSIM_TARGETS_BYTES:
            self._ssim_targets = {}
        n = config.reliability_updates if config.view_reliability > 0 and model.mode == "logits" else 0
        self._reliability_steps = {int(self.total * (i + 1) / (n + 1)) for i in range(n)} - {0}
        # early stop: label checks from the step where nothing scheduled changes the labels any more
        self.stopped_at: int | None = None
        self._probe_labels: torch.Tensor | None = None
        self._checks_from = max(int(config.refine_stop * self.total), int(config.coarse_fraction * self.total),
                                max(self._reliability_steps, default=0))

    # ----------------------------------------------------------------- setup / state
    def _fingerprint(self) -> str:
        from dataclasses import asdict

        cfg = {k: v for k, v in asdict(self.config).items() if k not in ("checkpoint_every", "render_chunk")}
        blob = json.dumps({"config": cfg, "seed": self.seed, "data": self.data.fingerprint(),
                           "n0": self.model.num_gaussians}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _lrs(self) -> dict[str, float]:
        c = self.config
        return {"means": _lr_means(c, 0, self.total, self.model.scene_scale), "scales": c.lr_scales,
                "quats": c.lr_quats, "opacities": c.lr_opacities, "sh0": c.lr_sh, "shN": c.lr_sh / 20.0,
                "classes": c.lr_classes}

    def _make_optimizers(self) -> dict[str, ParamGroupOptimizer]:
        lrs = self._lrs()
        # fused: one kernel per parameter instead of a dozen elementwise ops (3.4x faster on 2 cores),
        # one optimizer with a group per parameter, without torch.optim's import cost (adam.py)
        self.optimizer = FusedAdam([{"params": [p], "lr": lrs[k]} for k, p in self.params.items()], eps=1e-15)
        self.bg_optim = None if self.bg is None else FusedAdam([{"params": [self.bg], "lr": BG_LR}], eps=1e-15)
        return {k: ParamGroupOptimizer(self.optimizer, i) for i, k in enumerate(self.params)}

    def _state(self) -> dict:
        opt = {}
        for k, o in self.optims.items():
            st = o.state.get(self.params[k], {})
            opt[k] = {kk: (vv.detach().clone() if torch.is_tensor(vv) else vv) for kk, vv in st.items()}
        if self.bg is not None:
            st = self.bg_optim.state.get(self.bg, {})
            opt["__background__"] = {kk: (vv.detach().clone() if torch.is_tensor(vv) else vv) for kk, vv in st.items()}
        return {
            "step": self.step,
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "background_sh": None if self.bg is None else self.bg.detach().clone(),
            "optim": opt,
            "densifier": {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.densifier.state_dict().items()},
            "active_sh_degree": self.model.active_sh_degree,
            "history": copy.deepcopy(self.history),
            "acc": dict(self._acc), "acc_n": self._acc_n,
            "elapsed": self._elapsed + time.perf_counter() - self._t0,
            "agreement": None if self.agreement is None else torch.from_numpy(self.agreement.copy()),
            "stopped_at": self.stopped_at,
        }

    def _restore(self, st: dict) -> None:
        dev = self.model.device
        self.step = int(st["step"])
        self.params = {k: torch.nn.Parameter(v.detach().clone().to(dev)) for k, v in st["params"].items()}
        if st.get("background_sh") is not None:
            self.bg = torch.nn.Parameter(st["background_sh"].detach().clone().to(dev))
        self.optims = self._make_optimizers()
        pairs = [(self.params[k], o, k) for k, o in self.optims.items()]
        if self.bg is not None:
            pairs.append((self.bg, self.bg_optim, "__background__"))
        for p, o, k in pairs:
            ost = st["optim"].get(k) or {}
            if ost:
                # the step counters too: the fused Adam kernel wants every state tensor on the parameter's device
                o.state[p] = {kk: (vv.clone().to(dev) if torch.is_tensor(vv) else vv) for kk, vv in ost.items()}
        self.densifier.load_state_dict({k: (v.clone().to(dev) if torch.is_tensor(v) else v)
                                        for k, v in st["densifier"].items()})
        self.model.active_sh_degree = int(st["active_sh_degree"])
        self.history = copy.deepcopy(st["history"])
        self._acc = dict(st.get("acc", {}))
        self._acc_n = int(st.get("acc_n", 0))
        self._elapsed = float(st.get("elapsed", 0.0))
        self._t0 = time.perf_counter()
        agreement = st.get("agreement")
        self._apply_agreement(None if agreement is None else agreement.double().numpy())
        self.stopped_at = st.get("stopped_at")

    # ----------------------------------------------------------------- view reliability (EM)
    def _apply_agreement(self, agreement: np.ndarray | None) -> None:
        from .reliability import reliability_factors

        if agreement is None and self.agreement is None:
            return
        self.agreement = agreement
        weights = self._base_weights
        if agreement is not None:
            labels = self.data.argmax_labels()
            weights = weights * reliability_factors(agreement, labels, self.config.view_reliability)
        self.data = self.data.with_weights(weights)
        self._coarse = None

    def _update_agreement(self) -> None:
        from .reliability import consensus_agreement

        self.model.params = {k: v.detach() for k, v in self.params.items()}
        agreement = consensus_agreement(self.model, self.model.params, self.level(self.step), prior_pixels=50.0)
        self._apply_agreement(agreement)
        log.info("dual-gs fit: view reliability updated at step %d (mean relative agreement %.3f)", self.step,
                 float((agreement / np.maximum(agreement.max(0, keepdims=True), 1e-12)).mean()))

    def save_checkpoint(self) -> None:
        if self.workdir is None:
            return
        st = self._state()
        st["fingerprint"] = self.fingerprint
        st["params"] = {k: v.cpu() for k, v in st["params"].items()}
        if st["background_sh"] is not None:
            st["background_sh"] = st["background_sh"].cpu()
        st["optim"] = {k: {kk: (vv.cpu() if torch.is_tensor(vv) else vv) for kk, vv in o.items()}
                       for k, o in st["optim"].items()}
        st["densifier"] = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in st["densifier"].items()}
        st["history"] = json.dumps(st["history"])
        st["acc"] = json.dumps(st["acc"])
        buf = io.BytesIO()
        torch.save(st, buf)
        write_bytes(self.workdir / CHECKPOINT, buf.getvalue())

    def try_resume(self) -> bool:
        """Load workdir/checkpoint.pt when it belongs to this same fit; True when resumed."""
        if self.workdir is None or not (self.workdir / CHECKPOINT).exists():
            return False
        try:
            st = torch.load(self.workdir / CHECKPOINT, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: start over, say so
            log.warning("%s: unreadable checkpoint (%s); fitting from the start", self.workdir / CHECKPOINT, exc)
            return False
        if st.get("fingerprint") != self.fingerprint:
            log.warning("%s: checkpoint of a different fit (settings or data changed); fitting from the start",
                        self.workdir / CHECKPOINT)
            return False
        st["history"] = json.loads(st["history"])
        st["acc"] = json.loads(st["acc"])
        self._restore(st)
        log.info("resumed the dual-gs fit at step %d of %d", self.step, self.total)
        return True

    # ----------------------------------------------------------------- one step
    def _views_for_step(self, step: int) -> np.ndarray:
        V = len(self.data)
        b = min(self.config.batch_views, V)
        per_epoch = V // b
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(V)
        return perm[k * b:(k + 1) * b]

    def level(self, step: int) -> FitData:
        """The training data at `step`: half resolution for the first `coarse_fraction` of the steps."""
        if step < int(self.config.coarse_fraction * self.total) and min(self.data.width, self.data.height) >= 64:
            if self._coarse is None:
                self._coarse = self.data.downsampled(2)
            return self._coarse
        return self.data

    def _losses(self, idx: np.ndarray) -> tuple[dict[str, torch.Tensor], dict]:
        c = self.config
        d = self.level(self.step)
        ti = torch.as_tensor(idx, device=d.images.device)
        with self.sections("render forward"):
            raw, alpha, meta = rasterize_heads(self.model, d.viewmats[ti], d.Ks[ti], d.width, d.height, self.params,
                                               depth_variance=c.depth_variance_weight > 0,
                                               class_off_geometry=self._one_pass_class_off_geometry())
            bg = background_rgb(self.model, d.viewmats[ti], d.Ks[ti], d.width, d.height, self.bg)
        if self.densifier.needs_means2d_grad:
            meta["means2d"].retain_grad()
        ssim_scale = c.ssim_every if self.step % c.ssim_every == 0 else 0
        masks = d.masks[ti] if d.masks is not None and c.mask_weight > 0 else None
        terms: dict[str, torch.Tensor] = {}
        if self._fused_pixel_losses(d):
            from .pixel_loss_kernel import PixelLosses

            with self.sections("pixel losses (L1, class, mask) forward"):
                x, y, terms["l1"], terms["class"], mask = PixelLosses.apply(
                    raw, alpha, bg, d.images[ti], d.labels[ti], d.weights[ti], masks,
                    c.gce_q if c.class_loss == "gce" else 0.0)
                if masks is not None:
                    terms["mask"] = mask
            with self.sections("SSIM forward"):
                terms["rgb"] = losses.mix_rgb(
                    terms["l1"], lambda: losses.ssim_planes(x, y, self._ssim_target_moments(d, idx, y)),
                    c.ssim_lambda, ssim_scale)
            return self._regularisers(terms, alpha, meta), meta
        rgb, cls = split_heads(self.model, raw, alpha, bg)
        with self.sections("rgb loss (L1 + SSIM) forward"):
            terms["rgb"], terms["l1"] = losses.rgb_loss(rgb, d.images[ti], c.ssim_lambda, ssim_scale)
        with self.sections("class loss forward"):
            if self.model.mode == "logits":
                terms["class"] = losses.class_loss(cls, d.class_targets()[ti], d.weights[ti], c.class_loss, c.gce_q)
            else:
                terms["class"] = losses.palette_loss(cls, d.targets[ti], d.weights[ti])
        with self.sections("mask loss forward"):
            if masks is not None:
                terms["mask"] = losses.mask_loss(alpha[..., 0], masks)
        return self._regularisers(terms, alpha, meta), meta

    def _ssim_target_moments(self, d: FitData, idx: np.ndarray, y: torch.Tensor) -> np.ndarray | None:
        """The blurred moments of the views' target planes y [C,3,H,W] at level `d`, from the cache
        (None when the cache would not fit SSIM_TARGETS_BYTES: D-SSIM then blurs them itself)."""
        if self._ssim_targets is None:
            return None
        parts = []
        for j, view in enumerate(idx):
            key = (d.width, int(view))
            if key not in self._ssim_targets:
                self._ssim_targets[key] = losses.ssim_target_moments(y[j:j + 1])
            parts.append(self._ssim_targets[key])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _fused_pixel_losses(self, d: FitData) -> bool:
        """Whether this step's per-pixel losses run in the CPU kernel (pixel_loss_kernel.py): hard
        class labels of the logits head, float32 on the CPU; else the torch formulas (GPU, "kl",
        palette)."""
        return (d.labels is not None and self.model.mode == "logits" and self.config.class_loss in ("ce", "gce")
                and d.images.device.type == "cpu" and d.images.dtype == torch.float32)

    def _regularisers(self, terms: dict[str, torch.Tensor], alpha: torch.Tensor, meta: dict) -> dict[str, torch.Tensor]:
        c = self.config
        if c.depth_variance_weight > 0:
            # alpha-weighted mean: the variance of a ray that meets nothing does not count
            w = alpha[..., 0].detach()
            terms["depth_variance"] = (meta["depth_variance"] * w).sum() / w.sum().clamp_min(1.0)
        if c.opacity_reg > 0:
            terms["opacity_reg"] = torch.sigmoid(self.params["opacities"]).mean()
        if c.scale_reg > 0:
            terms["scale_reg"] = torch.exp(self.params["scales"]).mean() / self.model.scene_scale
        return terms

    def _total(self, terms: dict[str, torch.Tensor], with_class: bool = True) -> torch.Tensor:
        c = self.config
        total = terms["rgb"]
        if with_class:
            total = total + c.class_weight * terms["class"]
        if "mask" in terms:
            total = total + c.mask_weight * terms["mask"]
        if "depth_variance" in terms:
            total = total + c.depth_variance_weight * terms["depth_variance"]
        if "opacity_reg" in terms:
            total = total + c.opacity_reg * terms["opacity_reg"]
        if "scale_reg" in terms:
            total = total + c.scale_reg * terms["scale_reg"]
        return total

    def _one_pass_class_off_geometry(self) -> bool:
        """Whether the class loss is kept off the geometry by the render itself (the CPU
        rasterizer's color_only), so one backward pass does: not when the class loss moves the
        geometry anyway, on the gsplat backend, or when `class_densify` wants the class loss's
        own means2d gradient."""
        c = self.config
        return (not c.class_moves_geometry and self.data.images.device.type == "cpu"
                and not (c.class_densify and self.densifier.needs_means2d_grad))

    def _backward(self, terms: dict[str, torch.Tensor], meta: dict | None = None) -> torch.Tensor:
        if self.config.class_moves_geometry:
            loss = self._total(terms)
            loss.backward()
            return loss.detach()
        # class gradients reach only the class head: the rest of the loss moves everything. They
        # still count in the densification statistics (`class_densify`), so Gaussians are split where
        # the labels need detail that the colours do not show (brows, lip lines).
        geo = self._total(terms, with_class=False)
        cls_loss = self.config.class_weight * terms["class"]
        if self._one_pass_class_off_geometry():  # the render keeps the class loss off the geometry
            loss = geo + cls_loss
            loss.backward()
            return loss.detach()
        m2d = None if meta is None else meta.get("means2d")
        want_m2d = (m2d is not None and m2d.requires_grad and self.config.class_densify
                    and self.densifier.needs_means2d_grad)
        inputs = [self.params["classes"]] + ([m2d] if want_m2d else [])
        grads = torch.autograd.grad(cls_loss, inputs, retain_graph=True, allow_unused=True)
        geo.backward()
        g = grads[0]
        self.params["classes"].grad = g if self.params["classes"].grad is None else self.params["classes"].grad + g
        if want_m2d and grads[1] is not None:
            m2d.grad = grads[1] if m2d.grad is None else m2d.grad + grads[1]
        return (geo + cls_loss).detach()

    def _optimizers(self) -> list[FusedAdam]:
        return [self.optimizer] + ([self.bg_optim] if self.bg_optim is not None else [])

    def _all_params(self) -> list[torch.Tensor]:
        return list(self.params.values()) + ([self.bg] if self.bg is not None else [])

    def _grads_finite(self) -> bool:
        # a sum is finite only if every term is (an overflowing sum of finite gradients would read
        # as not finite and roll the step back, which is safe); one check instead of one per tensor
        sums = [p.grad.sum() for p in self._all_params() if p.grad is not None]
        return not sums or bool(torch.isfinite(torch.stack(sums)).all())

    def _record(self, terms: dict[str, torch.Tensor], loss: float) -> None:
        self._acc["loss"] = self._acc.get("loss", 0.0) + loss
        for k, v in terms.items():
            self._acc[k] = self._acc.get(k, 0.0) + float(v.detach())
        self._acc_n += 1
        if self.step % HISTORY_EVERY == 0 or self.step == self.total:
            self._flush_history()

    def _flush_history(self) -> None:
        """One history row: the means of the terms since the last row."""
        n = max(self._acc_n, 1)
        self.history["iteration"].append(self.step)
        self.history["gaussians"].append(int(self.params["means"].shape[0]))
        self.history["seconds"].append(round(self._elapsed + time.perf_counter() - self._t0, 3))
        for k, v in self._acc.items():
            self.history.setdefault(k, []).append(v / n)
        self._acc, self._acc_n = {}, 0

    def run(self) -> DualGSModel:
        c = self.config
        if not self.try_resume():
            self.step = 0
            self._t0 = time.perf_counter()
        self._snapshot = self._state()
        t0 = time.perf_counter()
        done0 = self.step
        with progress_task("dual-gs fit", self.total) as advance:
            if self.step:
                advance(self.step)
            while self.step < self.total and self.stopped_at is None:
                step = self.step
                self.model.active_sh_degree = min(self.model.sh_degree, step // c.sh_degree_every)
                lr = _lr_means(c, step, self.total, self.model.scene_scale)
                for g in self.optims["means"].param_groups:
                    g["lr"] = lr
                for o in self._optimizers():
                    o.zero_grad()
                terms, meta = self._losses(self._views_for_step(step))
                with self.sections("backward (rasterizer + losses)"):
                    loss = self._backward(terms, meta)
                if not (torch.isfinite(loss) and self._grads_finite()):
                    bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                    bad += [f"grad {k}" for k, p in self.params.items()
                             if p.grad is not None and not torch.isfinite(p.grad).all()]
                    self._rollback(step, ", ".join(bad))
                    continue
                self.step = step + 1
                with self.sections("optimizer step"):
                    for o in self._optimizers():
                        o.step()
                lv = self.level(step)
                with self.sections("densify"):
                    info = self.densifier.step_post_backward(self.params, self.optims, self.step, meta,
                                                             lv.width, lv.height)
                    if isinstance(self.densifier, MCMCDensifier):
                        self.densifier.step_post_optimizer(self.params, self.step, lr)
                with self.sections("history"):
                    self._record(terms, float(loss))
                if self.step in self._reliability_steps:
                    with self.sections("view reliability (consensus renders)"):
                        self._update_agreement()
                with self.sections("snapshots + checkpoints"):
                    if self.step % SNAPSHOT_EVERY == 0:
                        self._snapshot = self._state()
                    if self.step % c.checkpoint_every == 0 and self.step < self.total:
                        self.save_checkpoint()
                if self._label_check_due():
                    with self.sections("early stop (label checks)"):
                        self._check_labels_settled()
                elapsed = time.perf_counter() - t0
                advance(1, loss=float(loss), rgb=float(terms["l1"].detach()), cls=float(terms["class"].detach()),
                        gaussians=int(self.params["means"].shape[0]),
                        its=(self.step - done0) / max(elapsed, 1e-9))
                if any(info.values()):
                    log.debug("step %d: %s, %d Gaussians", self.step, info, self.params["means"].shape[0])
        self.save_checkpoint()
        self.model.params = {k: v.detach() for k, v in self.params.items()}
        if self.bg is not None:
            self.model.background_sh = self.bg.detach()
        if self.agreement is not None:
            self.model.meta["view_agreement"] = np.round(self.agreement, 4).tolist()
        if self.stopped_at is not None:
            self.model.meta["stopped_at"] = self.stopped_at
        self.model.active_sh_degree = min(self.model.sh_degree, max(self.step - 1, 0) // c.sh_degree_every)
        self.write_history()
        return self.model

    # ----------------------------------------------------------------- early stop
    def _label_check_due(self) -> bool:
        every = self.config.early_stop_every
        return (self.config.early_stop > 0 and self.step < self.total and self.step >= self._checks_from
                and (self.step - self._checks_from) % every == 0)

    @torch.no_grad()
    def _check_labels_settled(self) -> None:
        """Render 8 input views; when fewer than `early_stop` of their foreground pixels changed label
        since the last check, mark the fit stopped at this step."""
        data = self.level(self.step)
        views = torch.from_numpy(np.unique(np.linspace(0, len(data) - 1, min(PROBE_VIEWS, len(data))).round()
                                           .astype(np.int64)))
        cls, alphas = rasterize_classes(self.model, data.viewmats[views], data.Ks[views], data.width, data.height,
                                        {k: v.detach() for k, v in self.params.items()})
        labels = cls.argmax(-1).to(torch.uint8)
        labels[alphas[..., 0] < 0.5] = BACKGROUND_PROBE
        previous, self._probe_labels = self._probe_labels, labels
        if previous is None or previous.shape != labels.shape:
            return
        foreground = (labels != BACKGROUND_PROBE) | (previous != BACKGROUND_PROBE)
        changed = float(((labels != previous) & foreground).sum()) / max(float(foreground.sum()), 1.0)
        self.history.setdefault("label_change", []).append([self.step, round(changed, 6)])
        if changed < self.config.early_stop:
            self.stopped_at = self.step
            if self._acc_n:
                self._flush_history()
            log.info("dual-gs fit: labels settled at step %d of %d (%.2f%% of the probe's pixels changed in "
                     "the last %d steps); stopping early", self.step, self.total, 100 * changed,
                     self.config.early_stop_every)

    def _rollback(self, step: int, what: str = "") -> None:
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            raise SplatrefineError(
                f"dual-gs fit: the loss stayed non-finite after {MAX_ROLLBACKS} rollbacks (step {step})",
                "Lower the learning rates (representation.lr_*) or check the input images and probabilities.")
        log.warning("dual-gs fit: non-finite loss at step %d (%s); rolled back to step %d", step, what,
                    self._snapshot["step"])
        self._restore(self._snapshot)
        # carry on from the last good parameters past the failing step, so a NaN tied to one view
        # does not repeat forever
        self.step = step + 1

    # ----------------------------------------------------------------- outputs
    def write_history(self) -> None:
        if self.workdir is None:
            return
        write_text(self.workdir / "history.json", json.dumps(self.history))
        try:
            plot_history(self.history, self.workdir / "loss.png")
        except Exception as exc:  # noqa: BLE001 - a plot must never fail a fit
            log.warning("could not draw the loss curve: %s", exc)


def plot_history(history: dict, path: Path) -> None:
    """Loss terms (log scale) and the Gaussian count against the iteration, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: its import alone is ~0.5 s of every fit

    it = history["iteration"]
    fig = Figure(figsize=(10, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2)
    for k, v in history.items():
        if k in ("iteration", "gaussians", "seconds") or len(v) != len(it):
            continue
        ax[0].plot(it, v, label=k)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("iteration")
    ax[0].set_title("loss terms")
    ax[0].legend(fontsize=7)
    ax[1].plot(it, history["gaussians"])
    ax[1].set_xlabel("iteration")
    ax[1].set_title("Gaussians")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    write_bytes(path, buf.getvalue())
