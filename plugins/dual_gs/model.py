"""The dual Gaussian model: one geometry, an RGB head (spherical harmonics) and a class head.

Parameters (torch tensors, N Gaussians):
    means [N,3], scales [N,3] (log), quats [N,4] (wxyz, unnormalised), opacities [N] (logit),
    sh0 [N,1,3], shN [N,(d+1)^2-1,3], classes [N,K] logits (mode "logits") or [N,3] palette-colour
    logits (mode "palette", sigmoid -> 0..1).
Both heads are rendered by one `splatrefine.splat.rasterize` call with colours [C,N,3+F].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .sh import SH_C0, sh_basis

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN", "classes")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """RGB 0..1 [...,3] -> SH DC coefficient [...,3] (inverse of the +0.5 offset convention)."""
    return (rgb - 0.5) / SH_C0


def eval_sh_rgb(sh: torch.Tensor, means: torch.Tensor, centers: torch.Tensor, degree: int) -> torch.Tensor:
    """SH coefficients [N,B,3] seen from camera centres [C,3] -> RGB [C,N,3] (clamped at 0)."""
    n_basis = (degree + 1) ** 2
    if degree == 0:
        rgb = sh[None, :, 0, :] * SH_C0 + 0.5
        return torch.clamp_min(rgb.expand(centers.shape[0], -1, -1), 0.0)
    dirs = means[None] - centers[:, None, :]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(dirs, degree)  # [C,N,B]
    rgb = torch.einsum("cnb,nbk->cnk", basis, sh[:, :n_basis, :]) + 0.5
    return torch.clamp_min(rgb, 0.0)


def sh_colors(sh0: torch.Tensor, shN: torch.Tensor, means: torch.Tensor, centers: torch.Tensor,
              degree: int) -> torch.Tensor:
    """`eval_sh_rgb` of the coefficients as the model keeps them (sh0 [N,1,3], shN [N,R,3]); on the
    CPU in float32 one numba pass each way (sh_kernel.py)."""
    if means.device.type == "cpu" and means.dtype == torch.float32:
        from .sh_kernel import SHColors

        return SHColors.apply(sh0, shN, means, centers, degree)
    return eval_sh_rgb(torch.cat([sh0, shN], dim=1), means, centers, degree)


@dataclass
class DualGSModel:
    """A fitted (or fitting) dual model. `params` live on `device`; `meta` is JSON-able."""

    params: dict[str, torch.Tensor]
    mode: str  # "logits" | "palette"
    sh_degree: int  # maximum degree (shN holds (sh_degree+1)^2-1 coefficients)
    active_sh_degree: int
    background: tuple[float, float, float]
    num_classes: int
    schema: str
    scene_scale: float = 1.0
    meta: dict = field(default_factory=dict)
    # RGB behind the Gaussians as SH of the world ray direction [B,3] (B = 1 or 9); None = `background`
    background_sh: torch.Tensor | None = None

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def to(self, device: str | torch.device) -> DualGSModel:
        self.params = {k: v.detach().to(device) for k, v in self.params.items()}
        if self.background_sh is not None:
            self.background_sh = self.background_sh.detach().to(device)
        return self

    def class_features(self, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Per-Gaussian class head features [N,F]: softmax probs (K) or palette colours (3)."""
        p = self.params if params is None else params
        if self.mode == "logits":
            return torch.softmax(p["classes"], dim=-1)
        return torch.sigmoid(p["classes"])

    @property
    def class_channels(self) -> int:
        """F, the width of the class head's features: K probabilities or 3 palette colours."""
        return self.num_classes if self.mode == "logits" else 3

    def class_background(self, device: torch.device) -> torch.Tensor:
        """What an empty pixel shows in the class channels [F]: one-hot background / palette[0] = black."""
        if self.mode == "logits":
            bg = torch.zeros(self.num_classes, device=device)
            bg[0] = 1.0
            return bg
        return torch.zeros(3, device=device)


def ray_directions(viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Unit world-space ray directions through every pixel centre [C,H,W,3]."""
    dev = viewmats.device
    v, u = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32) + 0.5,
                          torch.arange(width, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
    fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
    cx, cy, sk = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None], Ks[:, 0, 1, None, None]
    yc = (v[None] - cy) / fy
    xc = (u[None] - cx - sk * yc) / fx
    d_cam = torch.stack([xc, yc, torch.ones_like(xc)], -1)  # [C,H,W,3]
    d = torch.einsum("chwi,cij->chwj", d_cam, viewmats[:, :3, :3])  # R^T d_cam
    return d / d.norm(dim=-1, keepdim=True)


def background_rgb(model: DualGSModel, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                   background_sh: torch.Tensor | None = None) -> torch.Tensor:
    """RGB behind the Gaussians at every pixel [C,H,W,3]."""
    bsh = model.background_sh if background_sh is None else background_sh
    if bsh is None:
        bg = torch.tensor(model.background, dtype=torch.float32, device=viewmats.device)
        return bg.expand(viewmats.shape[0], height, width, 3)
    if bsh.device.type == "cpu" and bsh.shape[0] in (1, 4, 9):
        from .background_kernel import BackgroundSH

        return BackgroundSH.apply(bsh, viewmats, Ks, width, height)
    degree = int(round(math.sqrt(bsh.shape[0]))) - 1
    basis = sh_basis(ray_directions(viewmats, Ks, width, height), degree)  # [C,H,W,B]
    return torch.einsum("chwb,bk->chwk", basis, bsh) + 0.5


def rasterize_heads(model: DualGSModel, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                    params: dict[str, torch.Tensor] | None = None, *, depth: bool = False,
                    depth_variance: bool = False, backend: str = "auto", class_off_geometry: bool = False):
    """Both heads in ONE rasterize call, before the RGB background is composited.

    Returns (raw [C,H,W,D], alpha [C,H,W,1], meta): raw holds the RGB premultiplied by alpha
    (channels 0-2), the class features F (3..3+F, over the class background), with
    `depth_variance` two depth moments, with `depth` the expected depth (last channel); meta
    ["depth_variance"] [C,H,W] is the variance of the Gaussians' depths along each ray under the
    compositing weights, in scene-scale units squared. With `class_off_geometry` (CPU backend) the
    class channels' gradients reach the class head only, not the geometry.
    """
    from splatrefine.splat import rasterize

    p = model.params if params is None else params
    dev = p["means"].device
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    centers = -torch.einsum("cji,cj->ci", R, t)
    rgb = sh_colors(p["sh0"], p["shN"], p["means"], centers, model.active_sh_degree)  # [C,N,3]
    cls = model.class_features(p)  # [N,F]
    C = viewmats.shape[0]
    feats = [rgb, cls[None].expand(C, -1, -1)]
    if depth_variance:
        z = torch.einsum("cj,nj->cn", R[:, 2], p["means"]) + t[:, None, 2]  # [C,N] camera depth
        # moments about a per-camera reference depth, so E[dz^2] - E[dz]^2 does not cancel in float32
        dz = (z - z.detach().median(dim=1, keepdim=True).values) / model.scene_scale
        feats += [dz[..., None], (dz * dz)[..., None]]
    colors = torch.cat(feats, dim=-1)
    # RGB background is composited by the caller (it varies per pixel); the class background is one-hot
    backgrounds = torch.cat([torch.zeros(3, device=dev), model.class_background(dev),
                             torch.zeros(colors.shape[-1] - 3 - cls.shape[-1], device=dev)])[None].expand(C, -1)
    raw, alphas, meta = rasterize(
        p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]), colors,
        viewmats, Ks, width, height, backgrounds=backgrounds,
        render_mode="RGB+ED" if depth else "RGB", backend=backend,
        color_only=(3, 3 + cls.shape[-1]) if class_off_geometry else None,
    )
    if depth_variance:
        F = cls.shape[-1]
        a = alphas[..., 0].clamp_min(1e-4)
        mean = raw[..., 3 + F] / a
        meta["depth_variance"] = (raw[..., 4 + F] / a - mean * mean).clamp_min(0.0)
    return raw, alphas, meta


def rasterize_classes(model: DualGSModel, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                      params: dict[str, torch.Tensor] | None = None, backend: str = "auto"):
    """The class head alone: (features [C,H,W,F] over the class background, alpha [C,H,W,1]). The
    same values as `rasterize_heads`' class channels (each channel is composited on its own) for
    the reads that need no colour (the consensus, the label checks): no SH colours, F of 3 + F
    channels."""
    from splatrefine.splat import rasterize

    p = model.params if params is None else params
    raw, alphas, _ = rasterize(
        p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
        model.class_features(p), viewmats, Ks, width, height,  # [N,F]: the same for every camera
        backgrounds=model.class_background(p["means"].device)[None].expand(viewmats.shape[0], -1), backend=backend)
    return raw, alphas


def render_model(model: DualGSModel, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                 params: dict[str, torch.Tensor] | None = None, *, depth: bool = False,
                 depth_variance: bool = False, backend: str = "auto", background_sh: torch.Tensor | None = None):
    """Render both heads with ONE rasterize call (`rasterize_heads`) and composite the background.

    viewmats [C,4,4], Ks [C,3,3] (float32, on the model's device). Returns
    (rgb [C,H,W,3], class [C,H,W,F], alpha [C,H,W,1], depth [C,H,W,1] or None, meta); with
    `depth_variance`, meta["depth_variance"] [C,H,W] (see `rasterize_heads`).
    """
    raw, alphas, meta = rasterize_heads(model, viewmats, Ks, width, height, params, depth=depth,
                                        depth_variance=depth_variance, backend=backend)
    rgb_out, cls_out = split_heads(model, raw, alphas,
                                   background_rgb(model, viewmats, Ks, width, height, background_sh))
    dep = raw[..., -1:] if depth else None
    return rgb_out, cls_out, alphas, dep, meta


def split_heads(model: DualGSModel, raw: torch.Tensor, alphas: torch.Tensor,
                background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rasterize_heads`' raw output -> (RGB over `background` [C,H,W,3], class features [C,H,W,F])."""
    return raw[..., :3] + (1.0 - alphas) * background, raw[..., 3:3 + model.class_channels]


def num_sh_rest(degree: int) -> int:
    return (degree + 1) ** 2 - 1


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Quaternions wxyz [N,4] (any norm) -> rotation matrices [N,3,3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))
