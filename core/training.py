"""The one training loop of every trainable 2D parser (bisenet, smp, third-party), and the parts
they share: settings, OHEM cross-entropy, poly LR with warm-up, augmentation, checkpoints.

A trainable parser subclasses `TorchParser` and supplies `build_net()` (and, if it has auxiliary
heads, `forward_train()` returning the main logits first). Everything else (predict, parse, fit,
save, load, checkpoint checking) lives here, so all parsers behave alike.

This module imports torch only inside functions: plugin modules import the settings classes
below while the CLI lists plugins, which must stay cheap.

A saved parser is a folder::

    PARSER/parser.json   {"format": "splatrefine-parser", "version": 1, "plugin": NAME,
                          "params": {...settings...}, "schema": NAME}
    PARSER/weights.pt    the network's state dict (torch.save; read with weights_only=True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .devices import resolve_device
from .errors import ConfigError, SplatrefineError, did_you_mean
from .schema import LabelSchema, get_schema, schema_mapping

if TYPE_CHECKING:
    import torch

    from .datasets import LabelledDataset
    from .types import Capture

log = logging.getLogger(__name__)

PARSER_JSON = "parser.json"
WEIGHTS = "weights.pt"
PARSER_FORMAT = "splatrefine-parser"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# settings ------------------------------------------------------------------------------------
# Only builtin types in annotations: plugin configs inherit these fields and config.py resolves
# the annotations in the plugin's module.
@dataclass(frozen=True)
class TrainOptions:
    """Training settings shared by every trainable parser (all overridable per fit() call)."""

    epochs: int = field(default=20, metadata={"help": "passes over the dataset", "min": 1})
    steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = epochs x batches per epoch", "min": 0})
    train_batch_size: int = field(default=8, metadata={"help": "images per training step (>= 2 for batch norm)", "min": 2})
    optimizer: str = field(default="sgd", metadata={"help": "sgd (with momentum) or adam (AdamW)", "choices": ("sgd", "adam")})
    lr: float = field(default=0.01, metadata={"help": "peak learning rate (0.01 suits sgd, 1e-3 adam)", "min": 0.0})
    momentum: float = field(default=0.9, metadata={"help": "sgd momentum", "min": 0.0, "max": 1.0})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay", "min": 0.0})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps (at most a fifth of the run)", "min": 0})
    warmup_start: float = field(default=0.1, metadata={"help": "learning rate at step 0, as a fraction of lr", "min": 0.0, "max": 1.0})
    power: float = field(default=0.9, metadata={"help": "poly decay exponent after warm-up", "min": 0.0})
    scale_range: tuple[float, float] = field(default=(0.75, 1.5), metadata={"help": "random rescale range before the crop", "min": 0.1})
    flip: bool = field(default=True, metadata={"help": "random horizontal flips (l_/r_ classes swapped)"})
    jitter: float = field(default=0.5, metadata={"help": "brightness/contrast/saturation jitter strength, 0 = off", "min": 0.0, "max": 1.0})
    ohem_thresh: float = field(default=0.7, metadata={"help": "OHEM: train on pixels whose true-class probability is below this", "min": 0.0, "max": 1.0})
    ohem_min_fraction: float = field(default=0.0625, metadata={"help": "OHEM: but always on at least this fraction of the hardest pixels", "min": 0.0, "max": 1.0})
    aux_weight: float = field(default=1.0, metadata={"help": "weight of each auxiliary head's loss", "min": 0.0})
    precision: str = field(default="fp32", metadata={
        "help": "fp32; bf16: the forward pass under bfloat16 autocast, channels-last (weights, loss "
                "and optimizer stay fp32), faster on CPUs with AMX/AVX512-BF16 and on Ampere+ GPUs; "
                "auto: bf16 where the device has it in hardware, else fp32",
        "choices": ("fp32", "bf16", "auto")})
    checkpoint_every: int = field(default=0, metadata={"help": "steps between checkpoints in the work folder; 0 = each epoch", "min": 0})


@dataclass(frozen=True)
class ParserOptions:
    """Settings every trainable parser has besides training. A plugin's config lists its own
    model settings first, then these, then training: `class MyConfig(TrainOptions, ParserOptions,
    MyModelOptions)` (dataclass fields follow the reversed MRO)."""

    checkpoint: str | None = field(default=None, metadata={"help": "weights to load: a state-dict file or a saved parser folder"})
    strict: bool = field(default=True, metadata={"help": "refuse a checkpoint whose keys or shapes differ (false: load what matches)"})
    input_size: int = field(default=512, metadata={"help": "images are resized to input_size x input_size for the network", "min": 32})
    batch_size: int = field(default=4, metadata={"help": "images per inference batch", "min": 1})
    schema: str = field(default="celebamask-hq", metadata={"help": "label schema of the network's outputs"})


def native_bf16(device: Any) -> bool:
    """Whether `device` computes bfloat16 in hardware: a CUDA GPU with bf16 (Ampere and later) or
    a CPU with AMX or AVX512-BF16. Elsewhere torch emulates it: BiSeNet and U-Net training steps
    ran 1.7-1.8x longer in bf16 than in fp32 on an AVX512 Xeon without either (docs/results.md)."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch's own CPU checks
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: Any) -> str:
    """The precision a training runs in: `precision` itself, or for "auto" bf16 where the device
    has it in hardware (native_bf16) and fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def train_options(options: Any, overrides: dict) -> TrainOptions:
    """The TrainOptions fields of `options` with `overrides` (fit keyword arguments) applied."""
    from .config import build_settings

    names = [f.name for f in dataclasses.fields(TrainOptions)]
    for k in overrides:
        if k not in names:
            raise ConfigError(f"fit() has no training setting '{k}'.{did_you_mean(k, names)}")
    values = {n: getattr(options, n) for n in names}
    return build_settings(TrainOptions, {**values, **overrides}, "fit()")


# small torch helpers -------------------------------------------------------------------------
@contextlib.contextmanager
def seeded(seed: int, device: str = "cpu") -> Iterator[None]:
    """Run a block with torch's RNG seeded, leaving the global RNG state as it was."""
    import torch

    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7,
                       min_fraction: float = 0.0625, ignore_index: int = 255) -> torch.Tensor:
    """Online hard example mining cross-entropy.

    logits [B,K,H,W], target long [B,H,W] (ignore_index pixels skipped). Averages the per-pixel
    loss over pixels whose true-class probability is below `thresh` (loss > -log thresh), or over
    the hardest `min_fraction` of valid pixels when fewer are that hard.
    """
    import torch.nn.functional as F

    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    loss = loss[target.flatten() != ignore_index]
    if loss.numel() == 0:
        return logits.sum() * 0.0
    n_min = max(1, int(min_fraction * loss.numel()))
    hard = loss[loss > -math.log(max(thresh, 1e-12))]
    if hard.numel() < n_min:
        hard = loss.topk(n_min).values
    return hard.mean()


def lr_at(step: int, total: int, options: TrainOptions) -> float:
    """Learning rate of `step` (0-based) of `total`: linear warm-up, then poly decay to 0."""
    warm = min(options.warmup_steps, total // 5)
    if step < warm:
        f = options.warmup_start + (1.0 - options.warmup_start) * step / warm
        return options.lr * f
    span = max(1, total - warm)
    return options.lr * (1.0 - (step - warm) / span) ** options.power


def augment(image: np.ndarray, labels: np.ndarray, size: int, options: TrainOptions, flip_lut: np.ndarray,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training sample: resize to size x size, random rescale, crop/pad back to size x size,
    horizontal flip (swapping l_/r_ classes through `flip_lut`), colour jitter.

    image uint8 [H,W,3], labels uint8 [H,W] -> (float [3,size,size] in 0..1, long [size,size]).
    Padding is image 0, labels 255 (ignored).
    """
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    lab = torch.from_numpy(np.array(labels, dtype=np.uint8))[None, None].float()
    lo, hi = options.scale_range
    s = float(rng.uniform(min(lo, hi), max(lo, hi)))
    side = max(8, int(round(size * s)))
    img = F.interpolate(img, size=(side, side), mode="bilinear", align_corners=False, antialias=side < image.shape[0])
    lab = F.interpolate(lab, size=(side, side), mode="nearest")
    img, lab = img[0], lab[0, 0].long()
    if side >= size:
        y0, x0 = (int(rng.integers(0, side - size + 1)) for _ in range(2))
        img, lab = img[:, y0:y0 + size, x0:x0 + size], lab[y0:y0 + size, x0:x0 + size]
    else:
        y0, x0 = (int(rng.integers(0, size - side + 1)) for _ in range(2))
        canvas = torch.zeros(3, size, size)
        canvas_lab = torch.full((size, size), 255, dtype=torch.long)
        canvas[:, y0:y0 + side, x0:x0 + side] = img
        canvas_lab[y0:y0 + side, x0:x0 + side] = lab
        img, lab = canvas, canvas_lab
    if options.flip and rng.random() < 0.5:
        img = img.flip(-1)
        lab = torch.from_numpy(flip_lut.astype(np.int64))[lab.flip(-1)]
    j = options.jitter
    if j > 0:
        b, c, sat = (float(rng.uniform(1 - j, 1 + j)) for _ in range(3))
        img = img * b
        grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (img - grey.mean()) * c + grey.mean()
        grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = grey + (img - grey) * sat
        img = img.clamp(0.0, 1.0)
    return img.contiguous(), lab.contiguous()


# the loop --------------------------------------------------------------------------------------
def train_segmenter(net: torch.nn.Module, forward_train: Callable[[torch.Tensor], Sequence[torch.Tensor]],
                    dataset: LabelledDataset, options: TrainOptions, *, input_size: int, schema: LabelSchema,
                    device: str = "cpu", seed: int = 0, workdir: Path | None = None, resume: bool = False,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    description: str = "train") -> dict:
    """Train `net` in place on `dataset` and return the history {"step", "loss", "lr", "epoch"}.

    forward_train(x [B,3,S,S] normalised) -> [main logits, *aux logits], each [B,K,h,w] (resized
    to S x S for the loss). Loss = OHEM(main) + aux_weight * sum(OHEM(aux)). Deterministic for a
    given seed: batch order and augmentation come from numpy generators keyed by (seed, step).
    With `workdir`, `last.pt` holds model + optimizer + step every `checkpoint_every` steps (or each
    epoch) and at the end; `resume` continues from it.
    """
    import torch
    import torch.nn.functional as F

    from .progress import progress_task

    images, labels = dataset.load_all()
    if dataset.schema.name != schema.name:
        try:
            lut = schema_mapping(dataset.schema, schema)
        except KeyError:
            raise ConfigError(f"the dataset's schema '{dataset.schema.name}' has no mapping onto the parser's "
                              f"schema '{schema.name}'") from None
        labels = [lut[lab] for lab in labels]
    n = len(images)
    bs = options.train_batch_size
    per_epoch = max(1, math.ceil(n / bs))
    total = options.steps or options.epochs * per_epoch
    flip_lut = schema.flip_lut()
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)

    params = [p for p in net.parameters() if p.requires_grad]
    if options.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    else:
        try:  # the fused kernel: a BiSeNet step on 2 CPU cores spends 60 ms in the unfused one, 17 here
            opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)

    history: dict[str, list] = {"step": [], "loss": [], "lr": [], "epoch": []}
    start = 0
    ckpt = Path(workdir) / "last.pt" if workdir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        history = {k: list(v) for k, v in state["history"].items()}
        log.info("resuming %s from step %d of %d (%s)", description, start, total, ckpt)
    every = options.checkpoint_every or per_epoch

    def save_checkpoint(step: int) -> None:
        if ckpt is None:
            return
        from .io.atomic import atomic_path

        with atomic_path(ckpt) as tmp:
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "history": history}, tmp)

    precision = resolve_precision(options.precision, device)
    if options.precision == "auto":
        log.info("%s: precision auto -> %s on %s", description, precision, device)
    bf16 = precision == "bf16"
    if bf16:
        net.to(memory_format=torch.channels_last)
    autocast_device = "cuda" if str(device).startswith("cuda") else "cpu"
    net.train()
    with seeded(seed, device), progress_task(description, total) as advance:
        if start:
            advance(start)
        for step in range(start, total):
            epoch, j = divmod(step, per_epoch)
            order = np.random.default_rng([seed, 1, epoch]).permutation(n)
            idx = list(order[j * bs:(j + 1) * bs])
            rng = np.random.default_rng([seed, 2, step])
            while len(idx) < bs:  # last partial batch, or fewer samples than a batch
                idx.append(int(rng.integers(0, n)))
            pairs = [augment(images[i], labels[i], input_size, options, flip_lut, rng) for i in idx]
            x = torch.stack([p[0] for p in pairs]).to(device)
            y = torch.stack([p[1] for p in pairs]).to(device)
            x = (x - mean_t) / std_t
            if bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = lr_at(step, total, options)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=bf16):
                outputs = list(forward_train(x))
            losses = []
            for k, out in enumerate(outputs):
                out = out.float()
                if out.shape[-2:] != y.shape[-2:]:
                    out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
                w = 1.0 if k == 0 else options.aux_weight
                losses.append(w * ohem_cross_entropy(out, y, options.ohem_thresh, options.ohem_min_fraction))
            loss = torch.stack(losses).sum()
            if not torch.isfinite(loss):
                raise SplatrefineError(f"{description}: loss became {loss.item()} at step {step}",
                                       "Lower the learning rate (--set ROLE.lr=...).")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history["step"].append(step)
            history["loss"].append(float(loss.item()))
            history["lr"].append(lr)
            history["epoch"].append(epoch)
            advance(1, loss=float(loss.item()), lr=lr)
            if (step + 1) % every == 0 and step + 1 < total:
                save_checkpoint(step + 1)
    save_checkpoint(total)
    if bf16:
        net.to(memory_format=torch.contiguous_format)
    net.eval()
    return history


# checkpoints -----------------------------------------------------------------------------------
def load_state_dict_file(path: str | os.PathLike) -> dict:
    """A state dict from a .pt/.pth file or a saved parser folder, read with weights_only=True.

    Accepts a plain {name: tensor} mapping, one nested under "state_dict"/"model"/"net", and strips
    a DataParallel "module." prefix. Anything else is a SplatrefineError naming the file.
    """
    import torch

    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            raise SplatrefineError(
                f"{p}: not a plain state dict (it pickles {found.group(1)}, which weights_only loading refuses)",
                "Save weights with torch.save(model.state_dict(), path).") from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", text)
        first = (detail.group(1) if detail else (text.strip().splitlines() or [type(exc).__name__])[0]).strip()
        raise SplatrefineError(f"{p}: cannot read as a PyTorch checkpoint ({first[:160]})") from None
    sd = _as_state_dict(obj)
    if sd is None:
        what = type(obj).__name__
        if isinstance(obj, dict):
            keys = ", ".join(map(str, list(obj)[:4])) + (", ..." if len(obj) > 4 else "")
            what = f"a dict with keys {keys}"
        raise SplatrefineError(f"{p}: not a state dict (found {what})",
                               "Expected a mapping of parameter names to tensors, as torch.save(model.state_dict()) writes.")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _as_state_dict(obj: Any) -> dict | None:
    import torch

    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "net", "model_state_dict"):
            if key in obj:
                inner = _as_state_dict(obj[key])
                if inner is not None:
                    return inner
    return None


def _few(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... {len(keys) - n} more" if len(keys) > n else "")


def apply_state_dict(net: torch.nn.Module, sd: dict, *, strict: bool, source: str, what: str) -> int:
    """Load `sd` into `net`; returns how many tensors were loaded.

    strict: any missing, unexpected or differently shaped key is a ConfigError that names them and
    says whether `strict: false` would help. Not strict: every tensor whose name and shape match is
    loaded, the rest keep their initial values (logged). BatchNorm `num_batches_tracked` buffers
    are never required (old checkpoints lack them).
    """
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    matching = [k for k in own if k in sd and tuple(sd[k].shape) == tuple(own[k].shape)]
    n_real = len([k for k in matching if not k.endswith("num_batches_tracked")])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        if wrong:
            shapes = "; ".join(f"{k}: checkpoint {list(sd[k].shape)}, model {list(own[k].shape)}" for k in wrong[:2])
            parts.append(f"{len(wrong)} of another shape ({shapes}{', ...' if len(wrong) > 2 else ''})")
        if strict:
            if n_real:
                hint = (f"'strict: false' would load the {n_real} matching tensors and leave "
                        f"{len(missing) + len(wrong)} at their initial values.")
            else:
                hint = "'strict: false' would not help: no tensor of the checkpoint matches this model (another architecture?)."
            raise ConfigError(f"{source}: checkpoint does not fit {what}: " + "; ".join(parts), hint)
        log.warning("%s: loading %d matching tensors into %s; %s", source, n_real, what, "; ".join(parts))
    net.load_state_dict({k: sd[k] for k in matching}, strict=False)
    return n_real


def write_parser_folder(path: str | os.PathLike, plugin: str, params: dict, schema: LabelSchema,
                        state_dict: dict, trained: dict | None = None) -> None:
    """Write a parser folder (parser.json + weights.pt) atomically. `trained`: what the last fit
    did ({"steps", "images", "batch_size"}), recorded as is."""
    import torch

    from .io.atomic import atomic_dir

    info = {"format": PARSER_FORMAT, "version": 1, "plugin": plugin, "params": params, "schema": schema.name}
    if trained is not None:
        info["trained"] = trained
    with atomic_dir(path) as tmp:
        (tmp / PARSER_JSON).write_text(json.dumps(info, indent=1))
        torch.save(state_dict, tmp / WEIGHTS)


def read_parser_json(path: str | os.PathLike) -> dict:
    """parser.json of a saved parser folder, checked."""
    folder = Path(path)
    p = folder / PARSER_JSON
    if not folder.is_dir():
        raise SplatrefineError(f"{folder}: no such parser folder")
    if not p.is_file():
        raise SplatrefineError(f"{folder}: not a saved parser (no {PARSER_JSON})",
                               "A parser folder is written by 'splatrefine train' (parser.json + weights.pt).")
    try:
        info = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplatrefineError(f"{p}: cannot read ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != PARSER_FORMAT or not isinstance(info.get("plugin"), str):
        raise SplatrefineError(f"{p}: not a splatrefine parser description (format {PARSER_FORMAT!r} with a plugin name)")
    if not isinstance(info.get("params", {}), dict):
        raise SplatrefineError(f"{p}: \"params\" must be a mapping")
    return info


def load_parser(registry: Any, path: str | os.PathLike, *, device: str = "cpu", seed: int = 0) -> Any:
    """Rebuild a saved parser folder: its plugin from the registry, its settings, its weights."""
    from .roles import ComponentContext, Role

    info = read_parser_json(path)
    name = info["plugin"]
    role = Role.TARGET_PARSER if name in registry.names(Role.TARGET_PARSER) else Role.INITIAL_PARSER
    params = dict(info.get("params") or {})
    params["checkpoint"] = str(Path(path))
    context = ComponentContext(device=device, seed=seed, registry=registry)
    return context.component(role, name, params, where=f"{Path(path) / PARSER_JSON}")


def map_probs(probs: np.ndarray, source: LabelSchema, target: LabelSchema) -> np.ndarray:
    """float [B,Ks,H,W] probabilities in `source` -> [B,Kt,H,W] in `target` (mass of classes with
    no counterpart spread uniformly)."""
    if source.name == target.name:
        return probs
    try:
        lut = schema_mapping(source, target)
    except KeyError:
        raise ConfigError(f"parser schema '{source.name}' has no mapping onto the capture's schema '{target.name}'") from None
    out = np.zeros((probs.shape[0], target.num_classes) + probs.shape[2:], dtype=np.float32)
    lost = np.zeros((probs.shape[0], 1) + probs.shape[2:], dtype=np.float32)
    for i in range(source.num_classes):
        if lut[i] == 255:
            lost[:, 0] += probs[:, i]
        else:
            out[:, lut[i]] += probs[:, i]
    return out + lost / target.num_classes


# the parser base -------------------------------------------------------------------------------
class TorchParser:
    """Base of trainable parsers: subclasses set `plugin` and implement `build_net()`.

    predict(images [B,3,H,W] 0..1) -> probs [B,K,H,W]; parse(capture) -> float32 [V,K,H,W];
    fit(dataset, workdir=None, resume=False, **training overrides) -> history; save(folder);
    load(state-dict file or parser folder).
    """

    plugin: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, config: ParserOptions, context: Any):
        self.config = config
        self.context = context
        self.schema = get_schema(config.schema)
        self.device = resolve_device(getattr(context, "device", "cpu"), unavailable=lambda d: ConfigError(
            f"device '{d}' asked for, but torch sees no CUDA device"))
        self.seed = int(getattr(context, "seed", 0))
        with seeded(self.seed):
            self.net = self.build_net()
        self.net.to(self.device).eval()
        if config.checkpoint:
            self.load(config.checkpoint)

    # for subclasses ------------------------------------------------------------------
    def build_net(self) -> torch.nn.Module:
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised x [B,3,S,S] -> [main logits, *aux logits] in training mode."""
        out = self.net(x)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised x [B,3,S,S] -> main logits [B,K,h,w] in eval mode."""
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    # the contract --------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.schema.num_classes

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images float [B,3,H,W] in 0..1 -> probabilities float [B,K,H,W] (on the images' device)."""
        import torch
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"predict expects images [B,3,H,W], got {list(images.shape)}")
        h, w = images.shape[-2:]
        s = self.config.input_size
        x = images.to(self.device, torch.float32)
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=max(h, w) > s)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self.net.eval()
        with torch.no_grad():
            logits = self.forward_eval((x - mean) / std)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            probs = logits.float().softmax(dim=1)
        return probs.to(images.device)

    def predict_numpy(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B,H,W,3] -> float32 [B,K,H,W], in batches of `batch_size`."""
        import torch

        out = []
        for i in range(0, len(images), self.config.batch_size):
            chunk = torch.from_numpy(np.array(images[i:i + self.config.batch_size], dtype=np.uint8)).permute(0, 3, 1, 2)
            out.append(self.predict(chunk.float() / 255.0).numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.num_classes, 0, 0), np.float32)

    def parse(self, capture: Capture) -> np.ndarray:
        """float32 [V,K,H,W] class probabilities for every view, K = capture.schema.num_classes."""
        from .progress import progress_task

        views = capture.views
        out: list[np.ndarray | None] = [None] * len(views)
        with progress_task(f"parse ({self.plugin})", len(views)) as advance:
            for i in range(0, len(views), self.config.batch_size):
                group = views[i:i + self.config.batch_size]
                for shape in {v.image.shape for v in group}:
                    members = [k for k, v in enumerate(group) if v.image.shape == shape]
                    probs = self.predict_numpy(np.stack([group[k].image for k in members]))
                    probs = map_probs(probs, self.schema, capture.schema)
                    for k, p in zip(members, probs):
                        out[i + k] = p
                advance(len(group))
        return np.stack(out).astype(np.float32)

    def fit(self, dataset: LabelledDataset, workdir: str | os.PathLike | None = None, resume: bool = False,
            seed: int | None = None, **overrides: Any) -> dict:
        """Train on `dataset` (settings from the config, overridden by keyword arguments such as
        epochs=3, lr=1e-3); returns the history dict."""
        options = train_options(self.config, overrides)
        history = train_segmenter(self.net, self.forward_train, dataset, options, input_size=self.config.input_size,
                                  schema=self.schema, device=self.device, seed=self.seed if seed is None else seed,
                                  workdir=None if workdir is None else Path(workdir), resume=resume,
                                  mean=self.mean, std=self.std, description=f"train ({self.plugin})")
        # parser.json must say what ran: the fit's overrides (steps, epochs, lr, ...), not the config's
        self.trained_options = options
        self.trained = {"steps": len(history.get("loss", [])), "images": len(dataset),
                        "batch_size": options.train_batch_size,
                        "precision": resolve_precision(options.precision, self.device)}
        return history

    def params_for_save(self) -> dict:
        from .config import settings_to_dict

        params = settings_to_dict(self.config)
        if getattr(self, "trained_options", None) is not None:
            params.update(settings_to_dict(self.trained_options))
        params["checkpoint"] = None
        return params

    def save(self, path: str | os.PathLike) -> None:
        """Write a parser folder (parser.json + weights.pt) that `load_parser` rebuilds."""
        sd = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        write_parser_folder(path, self.plugin, self.params_for_save(), self.schema, sd,
                            trained=getattr(self, "trained", None))

    def load(self, path: str | os.PathLike) -> None:
        """Load weights from a state-dict file (e.g. a published .pth) or a parser folder."""
        if Path(path).is_dir() and (Path(path) / PARSER_JSON).is_file():
            other = read_parser_json(path)["plugin"]
            if other != self.plugin:
                raise ConfigError(f"{path}: a saved '{other}' parser cannot be loaded into '{self.plugin}'",
                                  f"Use --plugin {other}, or give a state-dict file.")
        sd = load_state_dict_file(path)
        apply_state_dict(self.net, sd, strict=self.config.strict, source=str(path), what=self.describe())
        self.net.to(self.device).eval()

    def describe(self) -> str:
        return f"the {self.plugin} network"
