"""Benchmark of the dual-gs representation on synthetic FaceScape-like captures.

For each identity: synthesize the 61-view rig (exact GT), run the simulated parser, leave every 4th
camera out, fit dual-gs on the rest with the simulated probabilities, then compare
  - input (fitted) views: rendered-label mIoU vs the simulated parser's, per pose bucket;
  - held-out views: rendered-label mIoU and RGB PSNR.
Both class heads (logits, palette) are fitted on the same data.

    python bench/dual_gs.py --identities 3 --modes logits palette --out bench/results/dual_gs.json
    python bench/dual_gs.py --identities 1 --set iterations=800 --set strategy=mcmc
    python bench/dual_gs.py --profile          # where the demo's fit step spends its time
    python bench/dual_gs.py --kernels          # CPU ms per step in each kernel of the step, per phase
    python bench/dual_gs.py --around-raster    # what the step's render adds to the rasterizer, piece by piece
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def simulated_probs(capture, seed: int) -> np.ndarray:
    """The `simulated` initial parser with its default settings, through the registry."""
    from splatrefine.registry import Registry
    from splatrefine.roles import ComponentContext, Role

    spec = Registry().get(Role.INITIAL_PARSER, "simulated")
    return spec.factory(spec.config_cls(), ComponentContext(device="cpu", seed=seed)).parse(capture)


def palette_labels(seg_rgb: np.ndarray, schema) -> np.ndarray:
    """Nearest palette colour per pixel: [C,H,W,3] 0..1 -> uint8 [C,H,W]."""
    pal = schema.palette_array().astype(np.float32) / 255.0
    out = np.empty(seg_rgb.shape[:3], np.uint8)
    for i in range(len(seg_rgb)):
        d = ((seg_rgb[i][..., None, :] - pal) ** 2).sum(-1)
        out[i] = d.argmin(-1)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / max(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 1e-12))


def one_hot_probs(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Exact labels [V,H,W] as probabilities [V,K,H,W] (the oracle parser of --initial gt)."""
    return np.moveaxis(np.eye(num_classes, dtype=np.float32)[labels], -1, 1)


def run_identity(identity: int, resolution: int, modes: list[str], overrides: dict, seed: int,
                 workroot: Path | None, initial: str = "simulated"):
    from splatrefine.plugins.dual_gs.plugin import DualGSConfig
    from splatrefine.plugins.dual_gs.representation import DualGS
    from splatrefine.plugins.synthetic.rigs import synthesize_capture
    from splatrefine.roles import ComponentContext
    from splatrefine.types import Capture

    cap = synthesize_capture(identity, "facescape-like", resolution)
    if initial == "gt":
        probs = one_hot_probs(np.stack([v.labels for v in cap.views]), cap.schema.num_classes)
    else:
        probs = simulated_probs(cap, seed)
    V = len(cap.views)
    held = np.arange(V) % 4 == 3
    train_idx, held_idx = np.where(~held)[0], np.where(held)[0]
    train = Capture([cap.views[i] for i in train_idx], cap.schema, cap.subject, cap.points, cap.point_colors,
                    cap.source, cap.render_gt)
    cams = cap.cameras()
    gt = np.stack([v.labels for v in cap.views])
    images = cap.images().astype(np.float32) / 255.0
    out = {"identity": identity, "views": V, "train_views": len(train_idx), "held_out_views": len(held_idx),
           "resolution": resolution, "initial_labels": probs.argmax(1).astype(np.uint8)}
    for mode in modes:
        config = DualGSConfig(**{**overrides, "mode": mode})
        rep = DualGS(config, ComponentContext(device="auto", seed=seed))
        wd = None if workroot is None else workroot / f"id{identity}_{mode}"
        t0, c0 = time.perf_counter(), time.process_time()
        model = rep.fit(train, probs[train_idx], workdir=wd)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        r = rep.render(model, cams)
        labels = r.probs.argmax(-1).astype(np.uint8) if mode == "logits" else palette_labels(r.seg_rgb, cap.schema)
        out[mode] = {
            "fit_seconds": fit_s, "fit_cpu_seconds": fit_cpu, "gaussians": model.num_gaussians, "labels": labels,
            "psnr_input": psnr(r.rgb[train_idx], images[train_idx]),
            "psnr_held_out": psnr(r.rgb[held_idx], images[held_idx]),
        }
    return out, gt, cams.yaw, train_idx, held_idx


def evaluate(results, schema, modes):
    """Pool every identity's views, then score: initial vs refined at input views, refined held-out."""
    from splatrefine.metrics import evaluate_labels

    def pooled(key_fn, idx_name):
        pred, gt, yaw = [], [], []
        for res, g, y, tr, ho in results:
            idx = tr if idx_name == "input" else ho
            pred.append(key_fn(res)[idx])
            gt.append(g[idx])
            yaw.append(y[idx])
        return evaluate_labels(np.concatenate(pred), np.concatenate(gt), np.concatenate(yaw), schema)

    summary = {"initial_input": pooled(lambda r: r["initial_labels"], "input"),
               "initial_held_out": pooled(lambda r: r["initial_labels"], "held_out")}
    for mode in modes:
        summary[f"{mode}_input"] = pooled(lambda r, m=mode: r[m]["labels"], "input")
        summary[f"{mode}_held_out"] = pooled(lambda r, m=mode: r[m]["labels"], "held_out")
        summary[f"{mode}_psnr_held_out"] = float(np.mean([r[0][mode]["psnr_held_out"] for r in results]))
        summary[f"{mode}_psnr_input"] = float(np.mean([r[0][mode]["psnr_input"] for r in results]))
        summary[f"{mode}_fit_seconds"] = [r[0][mode]["fit_seconds"] for r in results]
        summary[f"{mode}_fit_cpu_seconds"] = [r[0][mode]["fit_cpu_seconds"] for r in results]
        summary[f"{mode}_gaussians"] = [r[0][mode]["gaussians"] for r in results]
    return summary


def table(summary, modes, schema) -> str:
    rows = ["| | " + " | ".join(["initial"] + [f"{m}" for m in modes]) + " |",
            "|---|" + "---|" * (1 + len(modes))]
    for split in ("input", "held_out"):
        for b in ("frontal", "mid", "extreme"):
            vals = [summary[f"initial_{split}"]["buckets"].get(b, {}).get("miou", float("nan"))]
            vals += [summary[f"{m}_{split}"]["buckets"].get(b, {}).get("miou", float("nan")) for m in modes]
            rows.append(f"| mIoU {split} {b} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
        vals = [summary[f"initial_{split}"]["miou"]] + [summary[f"{m}_{split}"]["miou"] for m in modes]
        rows.append(f"| mIoU {split} all | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    for key in ("psnr_input", "psnr_held_out"):
        rows.append(f"| RGB {key[5:]} PSNR dB | - | " + " | ".join(f"{summary[f'{m}_{key}']:.2f}" for m in modes) + " |")
    rows.append("| fit seconds (per identity) | - | " + " | ".join(
        ", ".join(f"{s:.0f}" for s in summary[f"{m}_fit_seconds"]) for m in modes) + " |")
    rows.append("| fit CPU seconds (all threads) | - | " + " | ".join(
        ", ".join(f"{s:.0f}" for s in summary[f"{m}_fit_cpu_seconds"]) for m in modes) + " |")
    rows.append("| Gaussians | - | " + " | ".join(
        ", ".join(str(g) for g in summary[f"{m}_gaussians"]) for m in modes) + " |")
    rows += ["", "| class (IoU, held-out) | initial | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for name in schema.classes:
        ini = summary["initial_held_out"]["per_class"].get(name)
        if ini is None:
            continue
        vals = [ini["iou"]] + [summary[f"{m}_held_out"]["per_class"].get(name, {}).get("iou", float("nan"))
                               for m in modes]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(rows)


class WallAndCPU:
    """The trainer's step-section timer (fit.StepSections' interface), recording wall and process
    CPU seconds (all threads; steadier than wall on a shared machine). Set as `trainer.sections`, so
    it times the fit loop of any revision (bench/demo_speed.py --profile). With `phase` (a callable
    naming the fit's current phase) it also notes the process CPU time at which each phase began
    and each section's CPU time per phase."""

    enabled = True

    def __init__(self, phase=None):
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.phase = phase
        self.phase_starts: list[tuple[str, float]] = []  # (phase, process CPU s at its first section)
        self.phase_cpu: dict[str, dict[str, float]] = {}  # phase -> section -> CPU seconds

    @contextmanager
    def __call__(self, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        p = None
        if self.phase is not None:
            p = self.phase()
            if not self.phase_starts or self.phase_starts[-1][0] != p:
                self.phase_starts.append((p, c0))
        try:
            yield
        finally:
            cpu = time.process_time() - c0
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu
            if p is not None:
                sections = self.phase_cpu.setdefault(p, {})
                sections[name] = sections.get(name, 0.0) + cpu


def raster_reference(params: dict, data, channels: int, passes: int = 2,
                     views: np.ndarray | None = None) -> tuple[float, float]:
    """The rasterizer's own forward + backward (as bench/raster.py measures it: `channels` random
    features, no background) of the fitted Gaussians at every view of `data` (a FitData level), or
    at `views`: (wall, CPU) ms, each view's fastest of `passes` runs, averaged over the views (the
    fit draws its views uniformly)."""
    import torch

    from splatrefine.splat import rasterize

    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    colors = torch.rand((p["means"].shape[0], channels), generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
    views = np.arange(int(data.viewmats.shape[0])) if views is None else views
    best = np.full((len(views), 2), np.inf)
    for _ in range(passes):
        for i, v in enumerate(views):
            t, c = time.perf_counter(), time.process_time()
            out, alpha, _ = rasterize(p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                                      colors, data.viewmats[v:v + 1].float(), data.Ks[v:v + 1].float(),
                                      data.width, data.height)
            (out.sum() + alpha.sum()).backward()
            best[i] = np.minimum(best[i], [time.perf_counter() - t, time.process_time() - c])
    wall, cpu = 1000 * best.mean(0)
    return float(wall), float(cpu)


def demo_trainer(resolution: int, overrides: dict, seed: int, iterations: int):
    """(trainer, capture, config) of the demo's fit: identity 0, the demo config's dual-gs settings
    (with `overrides`, and `iterations` when not 0), the simulated parser's labels, on the CPU."""
    import torch
    import yaml

    from splatrefine.plugins.dual_gs import fit as fit_mod
    from splatrefine.plugins.dual_gs import losses
    from splatrefine.plugins.dual_gs.config import DualGSConfig
    from splatrefine.plugins.dual_gs.representation import DualGS
    from splatrefine.plugins.synthetic.rigs import synthesize_capture
    from splatrefine.refine import demo_config_text
    from splatrefine.roles import ComponentContext

    demo = (yaml.safe_load(demo_config_text()).get("representation") or {}).get("params") or {}
    config = DualGSConfig(**{**demo, **overrides})
    if iterations:
        config = DualGSConfig(**{**demo, **overrides, "iterations": iterations})
    cap = synthesize_capture(0, "facescape-like", resolution)
    probs = np.ascontiguousarray(np.moveaxis(simulated_probs(cap, seed), 1, -1))
    rep = DualGS(config, ComponentContext(device="cpu", seed=seed))
    tp = torch.from_numpy(probs)
    w = losses.target_weights(tp, config.confidence_weighting, config.confidence_power)
    weights = (w * losses.class_balance_weights(tp, w, config.class_balance)).numpy()
    trainer = fit_mod.Trainer(config, rep.init_model(cap, probs, weights), rep._fit_data(cap, probs, weights), seed, None)
    return trainer, cap, config


# the autograd Functions of a fit step, by module under splatrefine: (module, class, label)
KERNELS = [("splat._composite", "_Composite", "rasterizer composite"),
           ("splat._projection_native", "_Project", "rasterizer projection"),
           ("plugins.dual_gs.ssim_kernel", "SSIMKernel", "D-SSIM"),
           ("plugins.dual_gs.pixel_loss_kernel", "PixelLosses", "L1, class and mask losses"),
           ("plugins.dual_gs.background_kernel", "BackgroundSH", "SH background"),
           ("plugins.dual_gs.sh_kernel", "SHColors", "SH colours")]


def kernels(resolution: int, overrides: dict, seed: int, iterations: int) -> str:
    """Process CPU ms per step in the forward and the backward of each kernel of the step
    (`KERNELS`), per phase, and the consensus renders of the view reliability (amortised over
    every step of the fit); the rest of the step is torch's autograd glue, the optimizer and Python."""
    import importlib

    from splatrefine.plugins.dual_gs import fit as fit_mod

    trainer, _, config = demo_trainer(resolution, overrides, seed, iterations)
    full_width = trainer.data.width
    spent: dict[tuple[str, str], float] = {}
    steps = {"coarse": 0, "full": 0}
    phase = ["full"]
    originals = []
    for module, name, label in KERNELS:
        cls = getattr(importlib.import_module(f"splatrefine.{module}"), name)
        for way in ("forward", "backward"):
            fn = getattr(cls, way)
            originals.append((cls, way, fn))

            def timed(ctx, *a, _fn=fn, _key=f"{label} {way}"):
                c = time.process_time()
                try:
                    return _fn(ctx, *a)
                finally:
                    if phase[0] is not None:
                        k = (phase[0], _key)
                        spent[k] = spent.get(k, 0.0) + time.process_time() - c
            setattr(cls, way, staticmethod(timed))
    real_losses, real_agreement = fit_mod.Trainer._losses, fit_mod.Trainer._update_agreement

    def losses(self, idx):
        phase[0] = "coarse" if self.level(self.step).width < full_width else "full"
        steps[phase[0]] += 1
        return real_losses(self, idx)

    def agreement(self):
        was, phase[0] = phase[0], None
        c = time.process_time()
        try:
            return real_agreement(self)
        finally:
            spent[("all", "consensus renders")] = spent.get(("all", "consensus renders"), 0.0) + time.process_time() - c
            phase[0] = was
    fit_mod.Trainer._losses, fit_mod.Trainer._update_agreement = losses, agreement
    c0 = time.process_time()
    try:
        trainer.run()
    finally:
        fit_mod.Trainer._losses, fit_mod.Trainer._update_agreement = real_losses, real_agreement
        for cls, way, fn in originals:
            setattr(cls, way, staticmethod(fn))
    total = time.process_time() - c0
    n = config.iterations
    rows = [f"fit of {n} steps: {1000 * total / n:.1f} ms CPU per step; process CPU ms per step in each kernel "
            "(each phase's own steps; the consensus renders over all steps):", "",
            "| kernel | coarse | full |", "|---|---|---|"]
    names = sorted({k for p, k in spent if p != "all"}, key=lambda k: -spent.get(("full", k), 0.0))
    for k in names:
        cells = [f"{1000 * spent.get((p, k), 0.0) / max(steps[p], 1):.2f}" for p in ("coarse", "full")]
        rows.append(f"| {k} | " + " | ".join(cells) + " |")
    if ("all", "consensus renders") in spent:
        ms = 1000 * spent[("all", "consensus renders")] / n
        rows.append(f"| consensus renders (view reliability) | {ms:.2f} | {ms:.2f} |")
    return "\n".join(rows)


def around_raster(resolution: int, overrides: dict, seed: int, iterations: int, views: int = 21) -> str:
    """What the step's render adds to the rasterizer, piece by piece, forward + backward on the
    fitted demo model at full resolution: `rasterize_heads` + the SH background against
    `raster_reference`, then each piece on its own (SH colours, the class softmax and the
    concatenation of the features, the background). Wall and CPU ms, each view's fastest of two
    runs, averaged over `views` views spread over the rig."""
    import torch

    from splatrefine.plugins.dual_gs.model import background_rgb, rasterize_heads, sh_colors

    trainer, _, _ = demo_trainer(resolution, overrides, seed, iterations)
    trainer.run()
    d, model = trainer.data, trainer.model
    p = {k: v.detach().clone().requires_grad_(True) for k, v in trainer.params.items()}
    bg = None if trainer.bg is None else trainer.bg.detach().clone().requires_grad_(True)
    channels = 3 + model.class_channels

    def cam(v):
        return d.viewmats[v:v + 1], d.Ks[v:v + 1]

    def step_render(v):
        raw, alpha, _ = rasterize_heads(model, *cam(v), d.width, d.height, p)
        (raw.sum() + alpha.sum() + background_rgb(model, *cam(v), d.width, d.height, bg).sum()).backward()

    def colours(v):
        vm = cam(v)[0]
        centers = -torch.einsum("cji,cj->ci", vm[:, :3, :3], vm[:, :3, 3])
        sh_colors(p["sh0"], p["shN"], p["means"], centers, model.active_sh_degree).sum().backward()

    def softmax_and_concat(v):
        rgb = torch.zeros(1, p["means"].shape[0], 3, requires_grad=True)
        torch.cat([rgb, model.class_features(p)[None]], -1).sum().backward()

    def background(v):
        background_rgb(model, *cam(v), d.width, d.height, bg).sum().backward()

    picked = np.unique(np.linspace(0, len(d) - 1, views).round().astype(int))

    def timed(fn):
        best = np.full((len(picked), 2), np.inf)
        for _ in range(2):
            for i, v in enumerate(picked):
                fn(v)  # warm
                t, c = time.perf_counter(), time.process_time()
                fn(v)
                best[i] = np.minimum(best[i], [time.perf_counter() - t, time.process_time() - c])
        return 1000 * best.mean(0)

    rows = [f"the step's render around the rasterizer ({p['means'].shape[0]} Gaussians, {d.width}x{d.height}, "
            f"{channels} channels, {len(picked)} views), forward + backward:", "",
            "| what | ms | CPU ms |", "|---|---|---|"]
    base = np.array(raster_reference(trainer.params, d, channels, views=picked))
    render = timed(step_render)
    for label, t in [("rasterizer alone", base), ("the step's render (rasterize_heads + background)", render),
                     ("difference: the work around the rasterizer", render - base),
                     ("  SH colours", timed(colours)), ("  class softmax + concatenation", timed(softmax_and_concat)),
                     ("  SH background", timed(background))]:
        rows.append(f"| {label} | {t[0]:.2f} | {t[1]:.2f} |")
    return "\n".join(rows)


def profile(resolution: int, overrides: dict, seed: int, iterations: int) -> str:
    """Where a fit step's time goes, for the demo's case (identity 0, 61 views, the demo config's
    dual-gs settings), against the rasterizer's own forward + backward at the final Gaussian count
    and the same channels (RGB + 19 classes), measured in the same process."""
    trainer, cap, config = demo_trainer(resolution, overrides, seed, iterations)
    full_width = trainer.data.width
    level = getattr(trainer, "level", None)  # older fit loops have no coarse phase
    trainer.sections = WallAndCPU(
        None if level is None else lambda: "coarse" if level(trainer.step).width < full_width else "full")
    t0, c0 = time.perf_counter(), time.process_time()
    model = trainer.run()
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    c1 = time.process_time()
    # the rasterizer alone, as bench/raster.py measures it, at the fitted model's size, over every
    # view of each resolution the fit trained at
    channels = 3 + cap.schema.num_classes
    levels = {"full": trainer.data}
    if trainer.sections.phase is not None and any(p == "coarse" for p, _ in trainer.sections.phase_starts):
        levels["coarse"] = trainer.data.downsampled(2)
    refs = {name: raster_reference(model.params, d, channels) for name, d in levels.items()}
    raster_ms, raster_cpu = refs["full"]
    n = config.iterations
    sec_wall, sec_cpu = trainer.sections.seconds, trainer.sections.cpu
    W, H = trainer.data.width, trainer.data.height
    rows = [f"fit of {n} steps: {total:.1f} s ({total_cpu:.1f} s CPU), {1000 * total / n:.1f} ms per step "
            f"({1000 * total_cpu / n:.1f} ms CPU), {model.num_gaussians} Gaussians at the end; rasterizer forward + "
            f"backward alone ({model.num_gaussians} Gaussians, {W}x{H}, {channels} channels, mean over the "
            f"{len(trainer.data)} views): {raster_ms:.1f} ms ({raster_cpu:.1f} ms CPU)",
            "", "| part of the step | ms per step | CPU ms per step | CPU share | CPU x raster fwd+bwd |",
            "|---|---|---|---|---|"]
    acc_wall = acc_cpu = 0.0
    for name in sorted(sec_cpu, key=lambda k: -sec_cpu[k]):
        acc_wall += sec_wall[name]
        acc_cpu += sec_cpu[name]
        rows.append(f"| {name} | {1000 * sec_wall[name] / n:.1f} | {1000 * sec_cpu[name] / n:.1f} | "
                    f"{sec_cpu[name] / total_cpu:.0%} | {1000 * sec_cpu[name] / n / raster_cpu:.2f} |")
    rest, rest_cpu = total - acc_wall, total_cpu - acc_cpu
    rows.append(f"| everything else (views, schedule, progress) | {1000 * rest / n:.1f} | {1000 * rest_cpu / n:.1f} | "
                f"{rest_cpu / total_cpu:.0%} | {1000 * rest_cpu / n / raster_cpu:.2f} |")
    rows.append(f"| **whole step** | **{1000 * total / n:.1f}** | **{1000 * total_cpu / n:.1f}** | 100% | "
                f"**{1000 * total_cpu / n / raster_cpu:.2f}** |")
    rows += ["", "The whole step above averages both phases against the full-resolution rasterizer. Each "
             "phase against the rasterizer at its own resolution:", "",
             "| phase | steps | resolution | CPU ms per step | raster fwd+bwd CPU ms | step / raster |",
             "|---|---|---|---|---|---|"]
    # the first phase starts with the fit (its set-up counts, as in the whole step above)
    starts = trainer.sections.phase_starts or [("full", c0)]
    starts = [(starts[0][0], c0)] + starts[1:]
    ends = [c for _, c in starts[1:]] + [c1]
    bounds = [int(config.coarse_fraction * n) if p == "coarse" else n for p, _ in starts]
    first = 0
    weighted = 0.0
    for (p, cp0), cp1, last in zip(starts, ends, bounds):
        steps = last - first
        ref_cpu = refs[p][1]
        d = levels[p]
        weighted += steps * ref_cpu
        rows.append(f"| {p} | {steps} | {d.width}x{d.height} | {1000 * (cp1 - cp0) / steps:.1f} | {ref_cpu:.1f} | "
                    f"{1000 * (cp1 - cp0) / steps / ref_cpu:.2f} |")
        first = last
    rows.append(f"| **whole fit** | {n} | | **{1000 * total_cpu / n:.1f}** | {weighted / n:.1f} | "
                f"**{1000 * total_cpu / weighted:.2f}** |")
    phases = [p for p, _ in starts if p in trainer.sections.phase_cpu]
    if phases:
        steps = dict(zip([p for p, _ in starts], np.diff([0] + bounds)))
        rows += ["", "CPU ms per step of each part, per phase (x its rasterizer):", "",
                 "| part of the step | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
        names = sorted(sec_cpu, key=lambda k: -sec_cpu[k])
        for name in names:
            cells = []
            for p in phases:
                ms = 1000 * trainer.sections.phase_cpu[p].get(name, 0.0) / steps[p]
                cells.append(f"{ms:.1f} ({ms / refs[p][1]:.2f})")
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=3)
    ap.add_argument("--first-identity", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--modes", nargs="+", default=["logits", "palette"], choices=["logits", "palette"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dual-gs setting override")
    ap.add_argument("--initial", choices=["simulated", "gt"], default="simulated",
                    help="labels to fit: the simulated parser's, or the exact ones (an upper bound "
                         "showing what the representation itself can resolve)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the goal is stated for 2 cores)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep each fit's checkpoint/history here")
    ap.add_argument("--out", type=Path, default=None, help="write the summary JSON here")
    ap.add_argument("--profile", type=int, nargs="?", const=0, default=None, metavar="STEPS",
                    help="instead: time each part of the demo's fit step over STEPS steps (default: the "
                         "demo's whole fit) against the rasterizer's own forward + backward")
    ap.add_argument("--kernels", type=int, nargs="?", const=0, default=None, metavar="STEPS",
                    help="instead: CPU ms per step in each kernel of the demo's fit step (forward and "
                         "backward), per phase")
    ap.add_argument("--around-raster", type=int, nargs="?", const=0, default=None, metavar="STEPS",
                    help="instead: what the step's render adds to the rasterizer, piece by piece, on the "
                         "demo's fitted model")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from splatrefine.progress import set_progress_enabled
    from splatrefine.schema import CELEBAMASK_HQ

    set_progress_enabled(sys.stderr.isatty())
    overrides = {}
    for item in args.set:
        k, v = item.split("=", 1)
        overrides[k.strip()] = parse_value(v)
    if args.profile is not None:
        print(profile(args.resolution, overrides, args.seed, args.profile), flush=True)
        return 0
    if args.kernels is not None:
        print(kernels(args.resolution, overrides, args.seed, args.kernels), flush=True)
        return 0
    if args.around_raster is not None:
        print(around_raster(args.resolution, overrides, args.seed, args.around_raster), flush=True)
        return 0
    results = []
    for ident in range(args.first_identity, args.first_identity + args.identities):
        res = run_identity(ident, args.resolution, args.modes, overrides, args.seed, args.workdir,
                           args.initial)
        results.append(res)
        line = {m: {k: round(v, 3) if isinstance(v, float) else v for k, v in res[0][m].items() if k != "labels"}
                for m in args.modes}
        print(f"identity {ident}: {json.dumps(line)}", flush=True)
    summary = evaluate(results, CELEBAMASK_HQ, args.modes)
    summary["settings"] = overrides
    summary["initial"] = args.initial
    summary["identities"] = list(range(args.first_identity, args.first_identity + args.identities))
    print(table(summary, args.modes, CELEBAMASK_HQ))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
