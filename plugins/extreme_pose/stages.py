"""The experiment's stages: data synthesis, datasets, refine runs, training and evaluation, and the
entry points worker processes run (module-level, picklable arguments).

Every stage works in a `Workspace` (the config, the experiment folder, the plugins, the device).
In the main process one workspace serves every stage; a worker process builds its own from the
installed plugins (`run_stage`, `refine_identity`). A refine is a plain engine run (its report
stage skipped unless report.refine_reports); a parser is the target_parser plugin's component,
trained with `fit` and saved as a parser folder.

numpy at module level only: torch and the plugins are imported where they are used.
"""

from __future__ import annotations

import functools
import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from splatrefine.errors import SplatrefineError
from splatrefine.run_layout import MANIFEST, RunLayout
from splatrefine.run_record import write_manifest
from splatrefine.types import POSE_BUCKETS, pose_bucket
from splatrefine.workers import Job

from .config import CORRECTED_VARIANT, ExperimentConfig, TargetSpec, refine_key, refine_run_data
from .layout import ExperimentLayout


class Workspace:
    """What the stages share: the config, the experiment folder's layout, the plugins (a
    Registry; the installed ones when none is given), the label schema and the device."""

    def __init__(self, config: ExperimentConfig, out: Path | str, registry: Any = None):
        from splatrefine.schema import CELEBAMASK_HQ

        if registry is None:
            from splatrefine.registry import Registry

            registry = Registry()
        self.config = config
        self.layout = ExperimentLayout(Path(out))
        self.registry = registry
        self.schema = CELEBAMASK_HQ

    @cached_property
    def device(self) -> str:
        from splatrefine.devices import resolve_device

        return resolve_device(self.config.device)

    @cached_property
    def test_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(images uint8 [N,H,W,3], GT uint8 [N,H,W], yaw [N], names) over every test identity."""
        images, gts, yaws, names = [], [], [], []
        for ident in self.config.test_identities:
            cap = self.registry.open_capture(str(self.layout.capture_dir("test", ident)))
            images.append(cap.images())
            gts.append(np.stack([v.labels for v in cap.views]))
            yaws.append(cap.cameras().yaw)
            names += [f"id_{ident:04d}/{v.name}" for v in cap.views]
        return np.concatenate(images), np.concatenate(gts), np.concatenate(yaws), names

    def new_parser(self, target: TargetSpec, checkpoint: Path | None) -> Any:
        """The target's parser component (its plugin, its params), from `checkpoint` when given."""
        from splatrefine.roles import Role

        params = dict(target.params)
        if checkpoint is not None:
            params["checkpoint"] = str(checkpoint)
        context = self.registry.context(device=self.device, seed=self.config.seed)
        return context.component(Role.TARGET_PARSER, target.plugin, params,
                                 where=f"target '{target.name}' ({target.plugin})")

    def baseline_parser(self, target: TargetSpec) -> Path:
        return self.layout.parser_dir(target.name, "baseline") / "parser"


# data ------------------------------------------------------------------------------------------
def write_identity(folder: Path | str, identity: int, rig: str, resolution: int) -> Path:
    """One synthetic identity (the procedural head of seed `identity`, as `splatrefine synth`
    numbers them) as a capture folder; its "synthetic" block lets readers render GT anywhere."""
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.plugins.synthetic.rigs import synthesize_capture, synthetic_block

    capture = synthesize_capture(identity, rig, resolution)
    return write_capture_folder(capture, Path(folder), extra={"synthetic": synthetic_block(identity, rig, resolution)})


def synthesize(ws: Workspace, workers: int) -> None:
    """Synthetic captures of every identity (`workers` processes), and the frontal GT dataset of
    the train and frontal-only identities."""
    from splatrefine.io.atomic import atomic_dir
    from splatrefine.io.labels import write_image, write_labels
    from splatrefine.workers import run_jobs

    cfg, layout = ws.config, ws.layout
    todo = ([("train", i) for i in cfg.train_identities] + [("test", i) for i in cfg.test_identities]
            + [("frontal-only", i) for i in cfg.frontal_identities])
    jobs = [(str(layout.capture_dir(split, ident)), ident, cfg.rig, cfg.resolution) for split, ident in todo
            if not (layout.capture_dir(split, ident) / "capture.json").is_file()]
    run_jobs(write_identity, jobs, workers, "synthesize identities")
    samples = []
    with atomic_dir(layout.frontal_dir) as tmp:
        for split, ident in [t for t in todo if t[0] != "test"]:
            cap = ws.registry.open_capture(str(layout.capture_dir(split, ident)))
            yaw = cap.cameras().yaw
            if yaw is None or not cap.has_labels:
                raise SplatrefineError(f"{layout.capture_dir(split, ident)}: synthetic capture has no subject or GT")
            for view, y in zip(cap.views, yaw):
                if abs(float(y)) >= cfg.frontal_max_yaw:
                    continue
                name = f"id_{ident:04d}_{view.name}"
                write_image(tmp / "images" / f"{name}.png", view.image)
                write_labels(tmp / "labels" / f"{name}.png", view.labels, ws.schema)
                samples.append({"name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png",
                                "yaw": float(y), "identity": ident})
        if not samples:
            raise SplatrefineError(f"no view of the train identities has |yaw| < {cfg.frontal_max_yaw}",
                                   "Use a rig with frontal views or raise data.frontal_max_yaw.")
        write_manifest(tmp, ws.schema.name, samples)


# refine ----------------------------------------------------------------------------------------
def refine_identity(data: dict, source: str, capture_dir: str, run_dir: str, with_report: bool,
                    registry: Any = None) -> None:
    """One engine run (the refine config mapping `data`) of the capture in `capture_dir`, without
    its report stage unless `with_report` (the experiment writes its own figures, and a report per
    identity and variant costs minutes); a job of a refine stage, so module-level and with
    picklable arguments."""
    from splatrefine.config import resolve
    from splatrefine.engine import Engine

    if registry is None:
        from splatrefine.registry import Registry

        registry = Registry()
    config = resolve(registry, data, source=source)
    capture = registry.open_capture(capture_dir)
    Engine(registry, config, capture, Path(run_dir)).run(skip=() if with_report else ("report",))


def refine_jobs(ws: Workspace, target: TargetSpec, variant: str, in_process: bool) -> list[Job]:
    """One engine run per train identity with the variant's initial parser and aggregation
    (`in_process`: with this workspace's registry, else in a worker with the installed plugins)."""
    from splatrefine.engine import is_run_dir

    key = refine_key(target, variant)
    data = refine_run_data(ws.config, target, variant, ws.baseline_parser(target))
    source = f"experiment refine '{key}'"
    fn = functools.partial(refine_identity, registry=ws.registry) if in_process else refine_identity
    jobs = []
    for ident in ws.config.train_identities:
        run_dir = ws.layout.run_dir(key, ident)
        if run_dir.exists() and not is_run_dir(run_dir):
            shutil.rmtree(run_dir)  # interrupted before its first stage finished: ours to redo
        run_dir.mkdir(parents=True, exist_ok=True)
        jobs.append((fn, (data, source, str(ws.layout.capture_dir("train", ident)), str(run_dir),
                          ws.config.refine_reports)))
    return jobs


def correct_identity(run_dir: str, out_dir: str, views: int, device: str, registry: Any = None) -> None:
    """The `corrected` variant's stand-in for a person cleaning up one refined run: a copy of
    `run_dir` in `out_dir` whose `views` least confident input views (the order `splatrefine
    export` shows them in) get their GT labels, carried to every other view by `correct` with its
    defaults. A job of a correct stage, so module-level with picklable arguments."""
    from splatrefine.corrections.edited import Edited
    from splatrefine.corrections.export import select_views
    from splatrefine.corrections.propagate import CorrectOptions, correct_run
    from splatrefine.corrections.runs import open_run
    from splatrefine.io.atomic import atomic_dir
    from splatrefine.io.labels import read_labels

    if registry is None:
        from splatrefine.registry import Registry

        registry = Registry()
    if Path(out_dir).is_dir():
        return  # swapped into place only once corrected
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(run_dir, tmp, dirs_exist_ok=True)
        run = open_run(tmp)
        names = select_views(run, source="input", worst=views).names
        missing = [n for n in names if not run.layout.gt_label(n).is_file()]
        if missing:
            raise SplatrefineError(f"{run_dir}: no GT labels for {', '.join(missing)}",
                                   "The corrected variant needs synthetic captures with GT.")
        gt = {n: read_labels(run.layout.gt_label(n), run.schema) for n in names}
        correct_run(run, Edited(gt, {n: "GT (simulated clean-up)" for n in names}, "GT"), registry,
                    CorrectOptions(device=device))


def correct_jobs(ws: Workspace, target: TargetSpec, in_process: bool) -> list[Job]:
    """One simulated clean-up per train identity of the target's argmax refine runs."""
    key = refine_key(target, CORRECTED_VARIANT)
    fn = functools.partial(correct_identity, registry=ws.registry) if in_process else correct_identity
    return [(fn, (str(ws.layout.run_dir(key, ident)), str(ws.layout.corrected_dir(key, ident)),
                  ws.config.finetune_corrected_views, ws.device))
            for ident in ws.config.train_identities]


# datasets --------------------------------------------------------------------------------------
def dataset_roots(ws: Workspace, target: TargetSpec, variant: str) -> list[Path]:
    """The frontal GT dataset plus the variant's labels at views with |yaw| >= finetune.min_yaw,
    the latter `finetune.oversample` times (the frontal data outnumbers the new poses). Writes
    the variant's dataset when it is missing: call it in one process (variants share datasets)."""
    key = refine_key(target, variant)
    kind = "raw" if variant in ("raw", "simulated-raw") else "corrected" if variant == CORRECTED_VARIANT else "refined"
    return [ws.layout.frontal_dir] + [variant_dataset(ws, key, kind)] * ws.config.finetune_oversample


def variant_dataset(ws: Workspace, key: str, kind: str) -> Path:
    """OUT/datasets/KEY-KIND: images + labels (the refined ones, those after the simulated clean-up
    for KIND corrected, or the initial parser's argmax at the input views for KIND raw) of every
    train identity, views with |yaw| below
    `finetune.min_yaw` left out (the frontal GT data covers those poses)."""
    from splatrefine.io.atomic import atomic_dir
    from splatrefine.io.labels import write_image

    root = ws.layout.dataset_dir(key, kind)
    if (root / MANIFEST).is_file():
        return root
    min_yaw = ws.config.finetune_min_yaw
    samples = []
    with atomic_dir(root) as tmp:
        (tmp / "images").mkdir(parents=True, exist_ok=True)
        (tmp / "labels").mkdir(parents=True, exist_ok=True)
        for ident in ws.config.train_identities:
            run = RunLayout(ws.layout.corrected_dir(key, ident) if kind == "corrected" else ws.layout.run_dir(key, ident))
            if kind == "raw":
                cap = ws.registry.open_capture(str(ws.layout.capture_dir("train", ident)))
                yaws = cap.cameras().yaw
                items = [(v.name, None, run.initial_label(v.name), float(y), v.image)
                         for v, y in zip(cap.views, yaws)]
            else:
                man = json.loads(run.refined_manifest.read_text())
                items = [(s["name"], run.refined / s["image"], run.refined / s["labels"], s.get("yaw"), None)
                         for s in man["samples"]]
            for name, img, lab, yaw, pixels in items:
                if yaw is None or abs(yaw) < min_yaw:
                    continue
                if not lab.is_file():
                    raise SplatrefineError(f"{lab}: labels missing in the refine run; rerun with --overwrite")
                out_name = f"id_{ident:04d}_{name}"
                if pixels is not None:
                    write_image(tmp / "images" / f"{out_name}.png", pixels)
                else:
                    shutil.copyfile(img, tmp / "images" / f"{out_name}.png")
                shutil.copyfile(lab, tmp / "labels" / f"{out_name}.png")
                samples.append({"name": out_name, "image": f"images/{out_name}.png",
                                "labels": f"labels/{out_name}.png", "yaw": float(yaw), "identity": ident})
        if not samples:
            raise SplatrefineError(f"no {kind} labels of '{key}' at |yaw| >= {min_yaw:g}",
                                   "Lower finetune.min_yaw or widen the view sampler's yaw range.")
        write_manifest(tmp, ws.schema.name, samples)
    return root


# training and evaluation -----------------------------------------------------------------------
def write_history(path: Path, history: dict, n: int, precision: str | None, oversample: int = 1) -> None:
    from splatrefine.io.atomic import write_text

    loss = history.get("loss", [])
    write_text(path, json.dumps({"samples": n, "oversample": oversample, "steps": len(loss), "loss": loss,
                                 "lr": history.get("lr", []), "precision": precision}))


def _precision(parser: Any) -> str | None:
    """What the parser's last fit ran in (fp32 / bf16), when it says (TorchParser does)."""
    return (getattr(parser, "trained", None) or {}).get("precision")


def baseline(ws: Workspace, target: TargetSpec) -> None:
    """The target parser trained from scratch on frontal GT views of the train identities."""
    from splatrefine.datasets import LabelledDataset

    work = ws.layout.parser_dir(target.name, "baseline")
    parser = ws.new_parser(target, None)
    ds = LabelledDataset(ws.layout.frontal_dir, ws.schema)
    history = parser.fit(ds, workdir=work / "work", resume=True, **target.baseline)
    parser.save(work / "parser")
    write_history(work / "history.json", history, len(ds), _precision(parser))
    shutil.rmtree(work / "work", ignore_errors=True)  # the resume checkpoint, no longer needed


def finetune(ws: Workspace, target: TargetSpec, variant: str) -> None:
    """The baseline fine-tuned on the variant's labels plus the frontal GT data."""
    from splatrefine.datasets import LabelledDataset

    work = ws.layout.parser_dir(target.name, variant)
    parser = ws.new_parser(target, ws.baseline_parser(target))
    ds = LabelledDataset(dataset_roots(ws, target, variant), ws.schema)
    history = parser.fit(ds, workdir=work / "work", resume=True, **target.finetune)
    parser.save(work / "parser")
    write_history(work / "history.json", history, len({x.image for x in ds.samples}), _precision(parser),
                  ws.config.finetune_oversample)
    shutil.rmtree(work / "work", ignore_errors=True)


def predict_test_set(ws: Workspace, parser: Any, chunk: int = 16) -> np.ndarray:
    """The parser's labels uint8 [N,H,W] for every test view (`ws.test_set` order)."""
    images = ws.test_set[0]
    return np.concatenate([parser.predict_numpy(images[i:i + chunk]).argmax(axis=1).astype(np.uint8)
                           for i in range(0, len(images), chunk)])


def evaluate(ws: Workspace, target: TargetSpec, variant: str) -> None:
    """Predict every test view, score per bucket and per class; predictions kept for figures."""
    from splatrefine.io.atomic import atomic_path, write_text
    from splatrefine.metrics import evaluate_labels

    _, gt, yaw, _ = ws.test_set
    pred = predict_test_set(ws, ws.new_parser(target, ws.layout.parser_dir(target.name, variant) / "parser"))
    metrics = evaluate_labels(pred, gt, yaw, ws.schema)
    buckets = np.array([pose_bucket(y) for y in yaw])
    metrics["per_class_by_bucket"] = {
        b: evaluate_labels(pred[buckets == b], gt[buckets == b], yaw[buckets == b], ws.schema)["per_class"]
        for b in POSE_BUCKETS if (buckets == b).any()}
    with atomic_path(ws.layout.eval_file(target.name, variant, ".npy")) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, pred)
    write_text(ws.layout.eval_file(target.name, variant, ".json"), json.dumps(metrics, indent=1))


# jobs ------------------------------------------------------------------------------------------
def stage_job(ws: Workspace, kind: str, target: TargetSpec, variant: str, in_process: bool) -> Job:
    """The job of one baseline, finetune or evaluate stage: here, in this workspace, or (not
    `in_process`) `run_stage` in a worker process."""
    if in_process:
        fn = {"baseline": baseline, "finetune": finetune, "evaluate": evaluate}[kind]
        return (fn, (ws, target) if kind == "baseline" else (ws, target, variant))
    return (run_stage, (ws.config, str(ws.layout.out), kind, target.name, variant))


def run_stage(config: ExperimentConfig, out: str, kind: str, target_name: str, variant: str) -> None:
    """One baseline, finetune or evaluate stage of the experiment in OUT, in a worker process
    (the installed plugins)."""
    fn, args = stage_job(Workspace(config, out), kind, config.target(target_name), variant, in_process=True)
    fn(*args)
