"""Settings of the `dual-gs` representation, in a module of their own so that the representation need not
import the plugin module that registers it. Cheap to import (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DualGSConfig:
    """Settings of the dual Gaussian Splatting representation (defaults chosen by bench/dual_gs.py)."""

    mode: str = field(default="logits", metadata={
        "help": "class head: 'logits' (per-Gaussian class logits, softmax composited to class "
                "probabilities) or 'palette' (3-channel colour-coded segmentation fitted to palette images)",
        "choices": ("logits", "palette")})
    iterations: int = field(default=1500, metadata={"help": "optimisation steps", "min": 1})
    batch_views: int = field(default=1, metadata={"help": "views rendered per step", "min": 1})
    sh_degree: int = field(default=1, metadata={"help": "spherical-harmonics degree of the RGB head", "min": 0, "max": 3})
    sh_degree_every: int = field(default=300, metadata={
        "help": "raise the active SH degree by one every this many steps", "min": 1})
    init_points: int = field(default=6000, metadata={
        "help": "random initial Gaussians in the volume the cameras see (ignored when the capture has points)",
        "min": 1})
    init_scale: float = field(default=0.5, metadata={
        "help": "initial Gaussian size, times the mean distance to the 3 nearest neighbours", "min": 0.01})
    coarse_fraction: float = field(default=0.5, metadata={
        "help": "train at half resolution for this fraction of the steps (faster on CPU)", "min": 0.0, "max": 1.0})
    early_stop: float = field(default=0.0, metadata={
        "help": "stop once fewer than this fraction of 8 input views' foreground pixels change label between "
                "two checks, `early_stop_every` steps apart, after densification, the coarse phase and the "
                "reliability updates (0: off; docs/dual_gs.md)", "min": 0.0, "max": 1.0})
    early_stop_every: int = field(default=100, metadata={
        "help": "steps between two label checks of `early_stop`", "min": 1})
    init_opacity: float = field(default=0.3, metadata={"help": "initial opacity", "min": 0.001, "max": 0.999})
    background: tuple[float, float, float] | None = field(default=None, metadata={
        "help": "RGB background 0..1 behind the Gaussians; null = estimated from the image borders",
        "min": 0.0, "max": 1.0})
    learn_background: bool = field(default=True, metadata={
        "help": "fit the background as a smooth function (SH degree 2) of the ray direction, "
                "starting from `background`"})
    # losses
    ssim_lambda: float = field(default=0.2, metadata={"help": "weight of D-SSIM in the RGB loss (1 - lambda on L1)",
                                                      "min": 0.0, "max": 1.0})
    ssim_every: int = field(default=1, metadata={
        "help": "compute D-SSIM every this many steps, weighted by the same factor so its mean weight stays "
                "`ssim_lambda` (SSIM is a fifth of a CPU step at 256 px)", "min": 1})
    class_loss: str = field(default="gce", metadata={
        "help": "class loss against the initial probabilities: 'ce' (hard argmax labels), 'gce' (generalized "
                "cross-entropy: labels the fused model contradicts pull less) or 'kl' (soft)",
        "choices": ("ce", "gce", "kl")})
    gce_q: float = field(default=0.5, metadata={
        "help": "with class_loss gce: q in (1 - p ** q) / q (towards 0: cross-entropy, 1: robust MAE)",
        "min": 0.01, "max": 1.0})
    class_weight: float = field(default=0.5, metadata={"help": "weight of the class (or palette) loss", "min": 0.0})
    confidence_weighting: bool = field(default=True, metadata={
        "help": "weight each pixel's class loss by the initial parser's max probability (turn off for a "
                "trained parser that is confidently wrong in unseen poses: docs/dual_gs.md)"})
    confidence_power: float = field(default=8.0, metadata={
        "help": "raise the confidence weight to this power (> 1: confident views outvote unsure ones)",
        "min": 0.0, "max": 16.0})
    class_balance: float = field(default=0.35, metadata={
        "help": "lift rare classes in the class loss: weight (median frequency / class frequency) ** this",
        "min": 0.0, "max": 2.0})
    view_reliability: float = field(default=2.0, metadata={
        "help": "EM reweighting of the label sources: each view's pixels of a class are weighted by how far "
                "that view's labels of the class agree with the 3D consensus, relative to the best view, to "
                "this power (0: every view alike; see docs/dual_gs.md)", "min": 0.0, "max": 16.0})
    reliability_updates: int = field(default=2, metadata={
        "help": "with view_reliability > 0: consensus updates spread evenly over the fit", "min": 1, "max": 20})
    class_moves_geometry: bool = field(default=False, metadata={
        "help": "let class-loss gradients move the shared geometry (false: they only train the class head; "
                "true suits flat-coloured synthetic heads whose RGB cannot place the surface, see docs/dual_gs.md)"})
    class_densify: bool = field(default=False, metadata={
        "help": "with class_moves_geometry false: class-loss gradients still count in the densification "
                "statistics (split where labels need detail)"})
    mask_weight: float = field(default=0.1, metadata={
        "help": "weight of the alpha-vs-foreground-mask loss (used when the capture has masks)", "min": 0.0})
    depth_variance_weight: float = field(default=1000.0, metadata={
        "help": "weight of the variance of depth along each pixel's ray (in scene-scale units squared): "
                "pulls the Gaussians a ray meets into one thin layer, so rendered depth lies on the surface "
                "instead of inside a semi-transparent shell (labels carried through depth need it; "
                "docs/dual_gs.md)", "min": 0.0})
    opacity_reg: float = field(default=0.0, metadata={"help": "L1 on opacities (MCMC strategy)", "min": 0.0})
    scale_reg: float = field(default=0.0, metadata={"help": "L1 on scales (MCMC strategy)", "min": 0.0})
    # learning rates
    lr_means: float = field(default=1.6e-3, metadata={"help": "means learning rate, times the scene scale", "min": 0.0})
    lr_means_final: float = field(default=1.6e-5, metadata={"help": "final means learning rate (exponential decay)",
                                                            "min": 0.0})
    lr_scales: float = field(default=5e-3, metadata={"help": "log-scale learning rate", "min": 0.0})
    lr_quats: float = field(default=1e-3, metadata={"help": "quaternion learning rate", "min": 0.0})
    lr_opacities: float = field(default=5e-2, metadata={"help": "logit-opacity learning rate", "min": 0.0})
    lr_sh: float = field(default=5e-3, metadata={"help": "SH DC learning rate (rest: /20)", "min": 0.0})
    lr_classes: float = field(default=5e-2, metadata={"help": "class-logit / palette-colour learning rate", "min": 0.0})
    # densification
    strategy: str = field(default="default", metadata={
        "help": "'default' (gradient-driven clone/split/prune with opacity resets) or 'mcmc' (relocation)",
        "choices": ("default", "mcmc")})
    refine_start: int = field(default=50, metadata={"help": "first densification step", "min": 0})
    refine_stop: float = field(default=0.6, metadata={"help": "stop densifying after this fraction of the steps",
                                                      "min": 0.0, "max": 1.0})
    refine_every: int = field(default=50, metadata={"help": "densify every this many steps", "min": 1})
    reset_every: int = field(default=3000, metadata={"help": "reset opacities every this many steps", "min": 1})
    grow_grad2d: float = field(default=0.0002, metadata={"help": "view-space gradient threshold to clone/split",
                                                         "min": 0.0})
    grow_scale3d: float = field(default=0.01, metadata={
        "help": "clone below, split above this scale (fraction of the scene scale)", "min": 0.0})
    prune_opacity: float = field(default=0.005, metadata={"help": "prune Gaussians below this opacity", "min": 0.0})
    prune_scale3d: float = field(default=0.1, metadata={"help": "prune Gaussians larger than this (scene fraction)",
                                                        "min": 0.0})
    max_gaussians: int = field(default=60000, metadata={"help": "cap on the Gaussian count (MCMC: the budget)",
                                                        "min": 1})
    # persistence
    checkpoint_every: int = field(default=500, metadata={"help": "write a checkpoint to the workdir every N steps",
                                                         "min": 1})
    render_chunk: int = field(default=4, metadata={"help": "cameras per rasterize call when rendering", "min": 1})
