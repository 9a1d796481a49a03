"""The `dual-gs` representation: fit / render / save / load (the Representation protocol)."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from splatrefine.devices import resolve_device
from splatrefine.errors import CaptureError, ConfigError, SplatrefineError
from splatrefine.io.atomic import write_bytes
from splatrefine.roles import ComponentContext
from splatrefine.types import Cameras, Capture, Renders

from . import losses
from .fit import FitData, Trainer, label_targets
from .init import initial_points, knn_scale
from .model import DualGSModel, logit, num_sh_rest, render_model, rgb_to_sh0
from .config import DualGSConfig
from .ply import read_ply, write_ply

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
PLY_FILE = "splats.ply"


def estimate_background(images: np.ndarray) -> tuple[float, float, float]:
    """Median colour of the 2-pixel image borders of every view (uint8 [V,H,W,3]) -> RGB 0..1."""
    b = np.concatenate([images[:, :2].reshape(-1, 3), images[:, -2:].reshape(-1, 3),
                        images[:, :, :2].reshape(-1, 3), images[:, :, -2:].reshape(-1, 3)])
    return tuple(float(x) for x in np.median(b, axis=0) / 255.0)


class DualGS:
    """One geometry, two heads. See docs/dual_gs.md."""

    def __init__(self, config: DualGSConfig, context: ComponentContext | None = None):
        self.config = config
        self.context = context or ComponentContext()
        self.device = torch.device(resolve_device(self.context.device, unavailable=lambda d: SplatrefineError(
            f"device '{d}' was asked for but torch sees no CUDA device", "Use --device cpu or auto.")))
        if self.device.type == "cuda" and importlib.util.find_spec("gsplat") is None:
            raise ConfigError(f"dual-gs on device '{self.device}' renders with gsplat, which is not installed",
                              "Install it with pip install 'splatrefine[gpu]' (gsplat 1.5.3), or use --device cpu.")
        if config.early_stop > 0 and config.mode != "logits":
            raise ConfigError("representation.early_stop watches class labels, which the palette head does not have",
                              "Set representation.early_stop: 0, or mode: logits.")

    # ------------------------------------------------------------------ validation
    def _check(self, capture: Capture, probs: np.ndarray) -> None:
        V = len(capture.views)
        if V < 2:
            raise CaptureError(f"dual-gs needs at least 2 views to fit a 3D model, the capture has {V}")
        K = capture.schema.num_classes
        if not isinstance(probs, np.ndarray) or probs.ndim != 4:
            raise SplatrefineError(f"initial_probs: expected a float array [V,K,H,W], got shape "
                                   f"{getattr(probs, 'shape', type(probs).__name__)}")
        H, W = capture.views[0].image.shape[:2]
        if probs.shape[1] != K:
            raise SplatrefineError(
                f"initial_probs have {probs.shape[1]} classes but the capture's schema "
                f"'{capture.schema.name}' has {K}",
                "Map the parser's labels onto the capture schema (splatrefine.schema.schema_mapping) first.")
        if probs.shape[0] != V or probs.shape[2:] != (H, W):
            raise SplatrefineError(f"initial_probs: shape {tuple(probs.shape)} does not match the capture "
                                   f"({V} views of {W}x{H}); expected [{V},{K},{H},{W}]")
        sizes = {v.image.shape[:2] for v in capture.views}
        if len(sizes) != 1:
            raise CaptureError(f"dual-gs needs views of one size, the capture has {sorted(sizes)}")

    # ------------------------------------------------------------------ fit
    def _fit_data(self, capture: Capture, probs_vhwk: np.ndarray, weights: np.ndarray) -> FitData:
        """probs_vhwk float32 [V,H,W,K] (any strides; a transposed view of [V,K,H,W] is not copied
        when the class loss needs only the labels)."""
        dev = self.device
        cams = capture.cameras()
        images = torch.from_numpy(capture.images()).to(dev).float() / 255.0
        targets = labels = label_max = None
        levels: dict = {}
        if self.config.mode == "logits" and self.config.class_loss in ("ce", "gce"):
            levels = {f: (lab.to(dev), top.to(dev)) for f, (lab, top) in label_targets(probs_vhwk).items()}
            labels, label_max = levels.pop(1)
        elif self.config.mode == "logits":
            targets = torch.from_numpy(np.ascontiguousarray(probs_vhwk, dtype=np.float32)).to(dev)
        else:
            pal = torch.from_numpy(capture.schema.palette_array().astype(np.float32) / 255.0).to(dev)
            targets = pal[torch.from_numpy(probs_vhwk.argmax(-1)).to(dev)]
        masks = None
        if capture.has_masks:
            masks = torch.from_numpy(np.stack([v.mask for v in capture.views]).astype(np.float32)).to(dev)
        return FitData(torch.from_numpy(cams.viewmats).float().to(dev), torch.from_numpy(cams.Ks).float().to(dev),
                       cams.width, cams.height, images, targets, torch.from_numpy(weights).to(dev), masks,
                       labels, label_max, levels)

    def init_model(self, capture: Capture, probs_vhwk: np.ndarray, weights: np.ndarray) -> DualGSModel:
        """Initial Gaussians from the common volume (or capture.points), coloured from the views."""
        c = self.config
        pts = initial_points(capture, probs_vhwk, weights, c.init_points, self.context.seed)
        n = len(pts.means)
        K = capture.schema.num_classes
        scale = knn_scale(pts.means) * c.init_scale
        gen = torch.Generator().manual_seed(self.context.seed)
        quats = torch.randn((n, 4), generator=gen)
        quats = quats / quats.norm(dim=-1, keepdim=True)
        if c.mode == "logits":
            classes = torch.log(torch.from_numpy(pts.class_probs).clamp_min(1e-3))
            classes = classes - classes.mean(-1, keepdim=True)
        else:
            pal = capture.schema.palette_array().astype(np.float32) / 255.0
            col = torch.from_numpy(pal[pts.class_probs.argmax(-1)]).clamp(0.02, 0.98)
            classes = torch.logit(col)
        params = {
            "means": torch.from_numpy(pts.means),
            "scales": torch.log(torch.from_numpy(scale))[:, None].repeat(1, 3),
            "quats": quats,
            "opacities": torch.full((n,), logit(c.init_opacity)),
            "sh0": rgb_to_sh0(torch.from_numpy(pts.rgb))[:, None, :],
            "shN": torch.zeros((n, num_sh_rest(c.sh_degree), 3)),
            "classes": classes.float(),
        }
        bg = tuple(c.background) if c.background is not None else estimate_background(capture.images())
        model = DualGSModel(
            params={k: v.float().to(self.device) for k, v in params.items()}, mode=c.mode, sh_degree=c.sh_degree,
            active_sh_degree=0, background=bg, num_classes=K, schema=capture.schema.name,
            scene_scale=pts.scene_scale,
            meta={"center": pts.center.tolist(), "radius": pts.radius},
        )
        if c.learn_background:
            bsh = torch.zeros((9, 3))
            bsh[0] = rgb_to_sh0(torch.tensor(bg, dtype=torch.float32))
            model.background_sh = bsh.to(self.device)
        return model

    def fit(self, capture: Capture, initial_probs: np.ndarray, workdir: Path | None = None) -> DualGSModel:
        """Fit to the capture's images and the initial probabilities float32 [V,K,H,W] (float16, even
        memory-mapped, is read a few views at a time without a float32 copy of the whole).

        `workdir` receives checkpoint.pt (every `checkpoint_every` steps; an interrupted fit
        resumes from it), history.json and loss.png.
        """
        self._check(capture, initial_probs)
        # [V,H,W,K] as a view of the [V,K,H,W] array: read a few views at a time, never copied whole
        # (float16, e.g. a memory-mapped initial/probs.npy, too: each chunk becomes float32 exactly)
        probs = np.asarray(initial_probs)
        if probs.dtype not in (np.float16, np.float32):
            probs = probs.astype(np.float32)
        probs = np.moveaxis(probs, 1, -1)
        weights = losses.pixel_weights(probs, self.config.confidence_weighting, self.config.confidence_power,
                                       self.config.class_balance)
        if not all(np.isfinite(probs[v]).all() for v in range(len(probs))):  # per view: no [V,H,W,K] mask
            probs = np.nan_to_num(probs, nan=0.0, posinf=0.0, neginf=0.0)
        model = self.init_model(capture, probs, weights)
        data = self._fit_data(capture, probs, weights)
        del probs
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        trainer = Trainer(self.config, model, data, self.context.seed, workdir)
        model = trainer.run()
        model.meta["rollbacks"] = trainer.rollbacks
        return model

    # ------------------------------------------------------------------ render
    @torch.no_grad()
    def render(self, model: DualGSModel, cameras: Cameras) -> Renders:
        """rgb, alpha, depth and class probabilities (or seg_rgb in palette mode) at `cameras`."""
        if model.device != self.device:
            model.to(self.device)
        C, H, W = len(cameras), cameras.height, cameras.width
        F = model.num_classes if model.mode == "logits" else 3
        rgb = np.zeros((C, H, W, 3), np.float32)
        cls = np.zeros((C, H, W, F), np.float32)
        alpha = np.zeros((C, H, W), np.float32)
        depth = np.zeros((C, H, W), np.float32)
        vm = torch.from_numpy(np.asarray(cameras.viewmats)).float().to(self.device)
        Ks = torch.from_numpy(np.asarray(cameras.Ks)).float().to(self.device)
        step = self.config.render_chunk
        for s in range(0, C, step):
            r, c, a, d, _ = render_model(model, vm[s:s + step], Ks[s:s + step], W, H, depth=True)
            rgb[s:s + step] = r.clamp(0, 1).cpu().numpy()
            cls[s:s + step] = c.cpu().numpy()
            alpha[s:s + step] = a[..., 0].cpu().numpy()
            depth[s:s + step] = d[..., 0].cpu().numpy()
        if model.mode == "logits":
            np.clip(cls, 0.0, None, out=cls)  # in place: a copy would be [C,H,W,K] float32 more at the peak
            cls /= np.maximum(cls.sum(-1, keepdims=True), 1e-12)
            return Renders(cameras, rgb, alpha, depth, probs=cls)
        return Renders(cameras, rgb, alpha, depth, probs=None, seg_rgb=np.clip(cls, 0.0, 1.0))

    # ------------------------------------------------------------------ persistence
    def save(self, model: DualGSModel, path: Path) -> None:
        """One file (torch tensors + JSON metadata, loadable with weights_only=True); when `path` is
        a folder, its model.pt. The 3DGS PLY is written by `export_ply`."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        buf = io.BytesIO()
        torch.save({"format": "splatrefine-dual-gs", "version": 1,
                    "params": {k: v.detach().cpu() for k, v in model.params.items()},
                    "background_sh": None if model.background_sh is None else model.background_sh.detach().cpu(),
                    "meta": json.dumps(_model_meta(model))}, buf)
        write_bytes(path, buf.getvalue())

    def relabeler(self, method: str = "vote", prior: float = 1.0, seed: int = 0):
        """The RelabelerProvider capability (splatrefine.roles): `splatrefine correct` updates the
        class head through a DualGSRelabeler configured with its options."""
        from .relabel import DualGSRelabeler, RelabelSettings

        return DualGSRelabeler(self, RelabelSettings(method=method, prior=prior, seed=seed))

    def load(self, path: Path) -> DualGSModel:
        """From a folder written by `save`, a model.pt file, or a splats.ply."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE if (path / MODEL_FILE).exists() else path / PLY_FILE
        if not path.exists():
            raise SplatrefineError(f"{path}: no dual-gs model here", "Expected a folder written by dual-gs save.")
        if path.suffix == ".ply":
            arrays, meta = read_ply(path)
            if not meta:
                raise SplatrefineError(f"{path}: a 3DGS PLY without splatrefine metadata (no class head)")
            params = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
            bsh = meta.get("background_sh")
            bsh = None if bsh is None else torch.tensor(bsh, dtype=torch.float32)
        else:
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                params, meta, bsh = blob["params"], json.loads(blob["meta"]), blob.get("background_sh")
            except Exception as exc:  # noqa: BLE001
                raise SplatrefineError(f"{path}: not a dual-gs model file ({exc})") from None
        model = DualGSModel(
            params={k: v.float().to(self.device) for k, v in params.items()}, mode=meta["mode"],
            sh_degree=int(meta["sh_degree"]), active_sh_degree=int(meta["active_sh_degree"]),
            background=tuple(meta["background"]), num_classes=int(meta["num_classes"]), schema=meta["schema"],
            scene_scale=float(meta.get("scene_scale", 1.0)), meta=dict(meta.get("extra", {})),
            background_sh=None if bsh is None else bsh.float().to(self.device),
        )
        return model

    def export_ply(self, model: DualGSModel, path: Path) -> None:
        write_ply(model, Path(path))


def _model_meta(model: DualGSModel) -> dict:
    return {"mode": model.mode, "sh_degree": model.sh_degree, "active_sh_degree": model.active_sh_degree,
            "background": list(model.background), "num_classes": model.num_classes, "schema": model.schema,
            "scene_scale": model.scene_scale, "extra": json.loads(json.dumps(model.meta, default=str))}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))
