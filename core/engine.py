"""The refine pipeline over a run directory.

    parse -> fit -> sample -> render -> evaluate -> report

Each stage reads what earlier stages wrote into the run directory and writes its own outputs
atomically; `stages.json` records completed stages, their timings and the key each ran with, so
`--resume` skips what is done and still valid. `run.json` (splatrefine.run_record) records the
capture, the config and the version the run was made with; a resume checks them first.
Render streams over chunks of cameras: render -> aggregate -> write labels, so no stage holds
every rendered probability map in memory.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import run_layout
from .config import RunConfig
from .devices import resolve_device
from .errors import SplatrefineError
from .io.atomic import atomic_path, ensure_writable_dir, write_text
from .progress import progress_task
from .roles import ComponentContext, ObservingAggregator, PlyExporter, Role
from .run_layout import RunLayout
from .run_record import write_manifest
from .schema import LabelSchema, get_schema, schema_mapping
from .types import Cameras, Capture

log = logging.getLogger(__name__)

STAGES = ("parse", "fit", "sample", "render", "evaluate", "report")
RUN_MARKER = run_layout.STAGES_FILE
RENDER_CHUNK = 4  # views rendered and aggregated at once: their class probabilities are [4,H,W,K] float32
# what each stage writes: removed before a stage is recomputed for a changed config
STAGE_OUTPUTS = {"parse": (run_layout.INITIAL,), "fit": (run_layout.MODEL,), "sample": (run_layout.SAMPLE,),
                 "render": (run_layout.REFINED,), "evaluate": (run_layout.METRICS, run_layout.GT),
                 "report": (run_layout.REPORT, run_layout.REPORT_DIR)}


def is_run_dir(path: Path) -> bool:
    return (path / RUN_MARKER).is_file() or (path / run_layout.RECORD).is_file()


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> bool:
    """Refuse to clobber anything that is not ours; called before any stage writes.

    -> True when the run starts in a new or empty folder (so a failed start can remove it)."""
    if path.exists() and not path.is_dir():
        raise SplatrefineError(f"{path}: exists and is not a folder", "Choose another output with -o.")
    if path.is_dir() and any(path.iterdir()):
        ours = is_run_dir(path)
        if overwrite:
            if not ours and not (path / run_layout.CONFIG).is_file():
                raise SplatrefineError(
                    f"{path}: is not a splatrefine run folder; refusing to delete it even with --overwrite",
                    "Choose another output with -o.")
            shutil.rmtree(path)
        elif not ours:
            raise SplatrefineError(f"{path}: exists, is not empty and holds no splatrefine run",
                                   "Choose a new or empty folder with -o (--resume and --overwrite act only on run folders).")
        elif resume:
            return False
        else:
            raise SplatrefineError(f"{path}: already holds a run",
                                   "Add --resume to continue it, --overwrite to start again, or choose another -o.")
    ensure_writable_dir(path, "Choose a writable output folder with -o.")
    return True


@dataclass
class RunState:
    """Finished stages and their timings, kept in one JSON file (a run's stages.json, an
    experiment's experiment.json) so a rerun with --resume skips what is done."""

    completed: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # the key each stage ran with (run_record)

    @classmethod
    def load(cls, path: Path) -> RunState:
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SplatrefineError(f"{path}: cannot read the finished stages ({exc})",
                                   "Rerun with --overwrite to start again.") from None
        return cls(list(data.get("completed", [])), dict(data.get("timings", {})), dict(data.get("keys", {})))

    def save(self, path: Path, **extra: object) -> None:
        keys = {"keys": self.keys} if self.keys else {}
        write_text(path, json.dumps({**extra, "completed": self.completed, "timings": self.timings, **keys}, indent=2))


class Engine:
    """Runs the stages of one refine run. Components are built from `config` by `registry`."""

    def __init__(self, registry, config: RunConfig, capture: Capture, run_dir: Path, *,
                 capture_path: str | None = None):
        self.registry = registry
        self.config = config
        self.capture = capture
        self.capture_path = capture_path or record_path(capture.source)
        self.run_dir = Path(run_dir)
        self.schema: LabelSchema = get_schema(config.schema)
        self.device = resolve_device(config.device)
        self.context = ComponentContext(device=self.device, seed=config.seed, registry=registry)
        self.state = RunState()  # loaded by start(), after the run folder is prepared
        self._components: dict[Role, Any] = {}
        self.notes: list[str] = []
        if capture.schema.name != self.schema.name:
            try:
                self.gt_lut = schema_mapping(capture.schema, self.schema)
            except KeyError:
                raise SplatrefineError(
                    f"capture labels use schema '{capture.schema.name}', the run uses '{self.schema.name}', "
                    "and no mapping between them exists", "Set 'schema' in the config to the capture's schema.") from None
        else:
            self.gt_lut = None

    @property
    def layout(self) -> RunLayout:
        """The paths of this run's folder."""
        return RunLayout(self.run_dir)

    # components -----------------------------------------------------------------------------
    def component(self, role: Role) -> Any:
        if role not in self._components:
            self._components[role] = self.context.component(role, self.config.plugins[role], self.config.settings[role])
        return self._components[role]

    def build_components(self) -> None:
        """Build the components of the four roles a refine uses, so a missing dependency or a
        checkpoint that does not load is found before the run folder is touched."""
        for role in (Role.INITIAL_PARSER, Role.REPRESENTATION, Role.VIEW_SAMPLER, Role.LABEL_AGGREGATOR):
            self.component(role)

    # driver ---------------------------------------------------------------------------------
    def start(self) -> list[str]:
        """Check the run folder's record against this run (SplatrefineError on another capture or
        version), drop the stages a config change made stale, and write run.json and config.yaml.
        Returns notes for the user (what a resume reuses and recomputes)."""
        from .io.fingerprint import capture_fingerprint
        from .run_record import RECORD, check_resume, config_changes, make_record, read_record, stage_keys

        config = self.config.to_dict()
        fingerprint = capture_fingerprint(self.capture)
        record = read_record(self.run_dir)
        self.state = RunState.load(self.run_dir / RUN_MARKER)
        keys = stage_keys(config)
        notes: list[str] = []
        if record is not None:
            notes += check_resume(self.run_dir, record, self.capture_path, fingerprint)
            stale = [s for s in STAGES if s in self.state.keys and self.state.keys[s] != keys[s]]
            changes = config_changes(record.get("config") or {}, config)
            if stale:
                for stage in stale:
                    self._discard(stage)
                notes.append(f"the config changed ({'; '.join(changes) or 'settings'}): "
                             f"recomputing {', '.join(stale)}")
            elif changes and self.state.completed:
                notes.append(f"the config changed ({'; '.join(changes)}): no finished stage reads it")
            kept = [s for s in self.state.completed if s in STAGES]
            if kept:
                notes.append(f"reusing {', '.join(kept)} from {self.run_dir}")
        elif self.state.completed:
            notes.append(f"{self.run_dir} has no {RECORD} (made by an older splatrefine): "
                         "its finished stages are reused unchecked")
        # stages finished without a key (an older stages.json) are taken to match this config
        self.state.keys.update({s: keys[s] for s in self.state.completed if s in keys and s not in self.state.keys})
        write_text(self.layout.record, json.dumps(make_record(self.capture_path, fingerprint, config), indent=1))
        write_text(self.layout.config, self.config.dump())
        self._keys = keys
        return notes

    def _discard(self, stage: str) -> None:
        for name in STAGE_OUTPUTS[stage]:
            p = self.run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        if stage in self.state.completed:
            self.state.completed.remove(stage)
        self.state.timings.pop(stage, None)
        self.state.keys.pop(stage, None)
        if stage == "fit":
            self._model = None

    def run(self, on_stage: Callable[[str], None] | None = None,
            on_note: Callable[[str], None] | None = None, *, skip: Collection[str] = ()) -> dict:
        """Run every stage not yet done. `on_note` gets the resume notes as soon as they are
        known (else they join the summary's notes). Stages named in `skip` (of STAGES) are
        neither run nor recorded as finished, so a later run without `skip` does them; skip only
        stages no later stage reads (`report`, or `evaluate` and `report`): e.g. a caller that
        writes its own figures passes skip=("report",)."""
        unknown = sorted(set(skip) - set(STAGES))
        if unknown:
            raise ValueError(f"Engine.run: no stage named {', '.join(unknown)} (stages: {', '.join(STAGES)})")
        for note in self.start():
            (on_note or self.notes.append)(note)
        for stage in STAGES:
            if stage in skip:
                continue
            if stage in self.state.completed:
                log.info("stage %s already complete, skipping", stage)
                continue
            if on_stage:
                on_stage(stage)
            self.state.keys[stage] = self._keys[stage]  # before it runs: a checkpoint inside belongs to this key
            self.state.save(self.run_dir / RUN_MARKER)
            t0 = time.perf_counter()
            getattr(self, f"stage_{stage}")()
            release_free_memory(collect=time.perf_counter() - t0 >= 1.0)
            self.state.completed.append(stage)
            self.state.timings[stage] = round(time.perf_counter() - t0, 3)
            self.state.save(self.run_dir / RUN_MARKER)
        return self.summary()

    def summary(self) -> dict:
        p = self.layout.metrics
        metrics = json.loads(p.read_text()) if p.is_file() else None
        return {"run_dir": str(self.run_dir), "metrics": metrics, "notes": self.notes,
                "report": str(self.layout.report)}

    # stages ---------------------------------------------------------------------------------
    def stage_parse(self) -> None:
        from .class_maps import argmax_classes, to_float16
        from .io.labels import write_labels

        parser = self.component(Role.INITIAL_PARSER)
        probs = np.asarray(parser.parse(self.capture), dtype=np.float32)
        V, K = len(self.capture), self.schema.num_classes
        H, W = self.capture.views[0].image.shape[:2]
        if probs.shape != (V, K, H, W):
            raise SplatrefineError(
                f"initial parser '{self.config.plugins[Role.INITIAL_PARSER]}' returned probabilities of shape "
                f"{tuple(probs.shape)}, expected {(V, K, H, W)}")
        layout = self.layout
        with atomic_path(layout.initial_probs) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, to_float16(probs))
        labels, _ = argmax_classes(probs)
        for view, lab in zip(self.capture.views, labels):
            write_labels(layout.initial_label(view.name), lab, self.schema)

    def stage_fit(self) -> None:
        rep = self.component(Role.REPRESENTATION)
        layout = self.layout
        layout.model.mkdir(parents=True, exist_ok=True)
        # float16 and memory-mapped (the Representation contract allows it): a float32 copy of
        # every view's probabilities would be the largest array of the fit (304 MB for the demo)
        model = rep.fit(self.capture, np.load(layout.initial_probs, mmap_mode="r"), workdir=layout.model)
        rep.save(model, layout.model_file)
        if isinstance(rep, PlyExporter):
            rep.export_ply(model, layout.splats)
        self._model = model

    def _load_model(self) -> Any:
        if getattr(self, "_model", None) is None:
            self._model = self.component(Role.REPRESENTATION).load(self.layout.model_file)
        return self._model

    def stage_sample(self) -> None:
        sampler = self.component(Role.VIEW_SAMPLER)
        inputs = self.capture.cameras()
        sampled = sampler.sample(self.capture)
        input_names = set(inputs.names)
        novel = [i for i, n in enumerate(sampled.names) if n not in input_names]
        sampled = sampled.subset(novel)
        if sampled.width != inputs.width or sampled.height != inputs.height:
            log.info("novel views render at %dx%d", sampled.width, sampled.height)
        record = {
            "input": _cameras_to_json(inputs),
            "novel": _cameras_to_json(sampled),
        }
        write_text(self.layout.sample_cameras, json.dumps(record))

    def _sampled(self) -> tuple[Cameras, Cameras]:
        record = json.loads(self.layout.sample_cameras.read_text())
        return _cameras_from_json(record["input"]), _cameras_from_json(record["novel"])

    def stage_render(self) -> None:
        from .io.atomic import atomic_dir
        from .io.labels import write_image, write_labels
        from .io.nerfstudio import cameras_to_transforms

        rep = self.component(Role.REPRESENTATION)
        aggregator = self.component(Role.LABEL_AGGREGATOR)
        model = self._load_model()
        inputs, novel = self._sampled()
        initial = np.load(self.layout.initial_probs, mmap_mode="r")

        def observed(start: int, count: int) -> np.ndarray:
            """The initial probabilities of input views start..start+count, channel-last."""
            return np.moveaxis(initial[start:start + count], 1, -1).astype(np.float32)

        samples: list[dict] = []
        if isinstance(aggregator, ObservingAggregator):
            # a second render of the input views: keeping the first in memory would hold every
            # view's class probabilities at once (hundreds of MB at 256 px)
            with progress_task("render input views for the aggregator", len(inputs)) as advance:
                for start in range(0, len(inputs), RENDER_CHUNK):
                    chunk = inputs.subset(range(start, min(start + RENDER_CHUNK, len(inputs))))
                    renders = rep.render(model, chunk)
                    renders.observed = observed(start, len(chunk))
                    aggregator.observe(renders)
                    advance(len(chunk.names))
        # PNG encoding releases the GIL: a writer thread encodes one chunk while the next renders
        with atomic_dir(self.layout.refined) as out, ThreadPoolExecutor(1) as writer:
            total = len(inputs) + len(novel)
            pending: list[Future] = []
            with progress_task("render + aggregate", total) as advance:
                for source, cams in (("input", inputs), ("novel", novel)):
                    for start in range(0, len(cams), RENDER_CHUNK):
                        chunk = cams.subset(range(start, min(start + RENDER_CHUNK, len(cams))))
                        renders = rep.render(model, chunk)
                        if source == "input":
                            renders.observed = observed(start, len(chunk))
                        labels, conf = aggregator.aggregate(renders, self.schema)
                        for i, name in enumerate(chunk.names):
                            rgb8 = (np.clip(renders.rgb[i], 0, 1) * 255 + 0.5).astype(np.uint8)
                            conf8 = (np.clip(conf[i], 0, 1) * 255 + 0.5).astype(np.uint8)
                            pending += [writer.submit(write_image, out / "images" / f"{name}.png", rgb8),
                                        writer.submit(write_labels, out / "labels" / f"{name}.png", labels[i],
                                                      self.schema),
                                        writer.submit(write_image, out / "confidence" / f"{name}.png", conf8)]
                            samples.append({
                                "name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png",
                                "confidence": f"confidence/{name}.png",
                                "yaw": None if chunk.yaw is None else float(chunk.yaw[i]),
                                "pitch": None if chunk.pitch is None else float(chunk.pitch[i]),
                                "source": source, "viewmat": chunk.viewmats[i].tolist(), "K": chunk.Ks[i].tolist(),
                                "width": chunk.width, "height": chunk.height,
                                "coverage": float((labels[i] != 255).mean()),
                            })
                        advance(len(chunk.names))
            for f in pending:
                f.result()  # a failed write raises here, before the folder is swapped in
            write_manifest(out, self.schema.name, samples)
            write_text(out / run_layout.CAMERAS, json.dumps(cameras_to_transforms(samples, schema=self.schema), indent=1))

    def stage_evaluate(self) -> None:
        from .io.labels import read_labels, write_labels
        from .metrics import evaluate_labels

        if not self.capture.has_labels:
            self.notes.append("the capture has no GT labels: metrics are skipped")
            return
        layout = self.layout
        manifest = json.loads(layout.refined_manifest.read_text())
        samples = manifest["samples"]
        gt_input = np.stack([self._gt(v.labels) for v in self.capture.views])
        names = [v.name for v in self.capture.views]
        yaw_in = self.capture.cameras().yaw
        initial = np.stack([read_labels(layout.initial_label(n), self.schema) for n in names])
        metrics: dict[str, Any] = {"initial": evaluate_labels(initial, gt_input, yaw_in, self.schema)}
        by_name = {s["name"]: s for s in samples}
        refined_in = np.stack([read_labels(layout.refined / by_name[n]["labels"], self.schema) for n in names])
        metrics["refined_input"] = evaluate_labels(refined_in, gt_input, yaw_in, self.schema)
        for n, gt in zip(names, gt_input):
            write_labels(layout.gt_label(n), gt, self.schema)
        novel = [s for s in samples if s["source"] == "novel"]
        if novel and self.capture.render_gt is not None:
            _, cams = self._sampled()
            gt_novel = []
            for start in range(0, len(cams), RENDER_CHUNK):
                chunk = cams.subset(range(start, min(start + RENDER_CHUNK, len(cams))))
                gt_novel.append(self._gt(self.capture.render_gt(chunk, rgb=False).labels))
            gt_novel = np.concatenate(gt_novel)
            pred = np.stack([read_labels(layout.refined / s["labels"], self.schema) for s in novel])
            metrics["refined_novel"] = evaluate_labels(pred, gt_novel, cams.yaw, self.schema)
            for s, gt in zip(novel, gt_novel):
                write_labels(layout.gt_label(s["name"]), gt, self.schema)
        elif novel:
            self.notes.append("the capture cannot render GT at new cameras: novel views are not scored")
        metrics["labels_name"] = self.capture.labels_name  # what the scores were measured against
        write_text(layout.metrics, json.dumps(metrics, indent=2))

    def _gt(self, labels: np.ndarray) -> np.ndarray:
        return labels if self.gt_lut is None else self.gt_lut[labels]

    def stage_report(self) -> None:
        from .report import write_report

        write_report(self.run_dir)


def release_free_memory(collect: bool) -> None:
    """Hand the heap a finished stage freed back to the OS: glibc keeps freed blocks for reuse, so
    the fit's buffers would otherwise stay in the next stage's resident memory (the demo's peak).
    With `collect`, first a full garbage collection: a frame kept by a reference cycle (e.g.
    matplotlib's caught parse exceptions while the fit saves loss.png) keeps every frame below it
    alive, the fit's training data included (~130 MB in the demo). A full
    collection costs ~70 ms, so the engine asks for it after stages that ran a second or more."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc; absent elsewhere
    if malloc_trim is not None:
        malloc_trim(0)


def record_path(source: str) -> str:
    """The capture path as run.json records it: absolute when it names a file or folder."""
    p = Path(source)
    return str(p.resolve()) if source and p.exists() else source


def _cameras_to_json(c: Cameras) -> dict:
    return {"viewmats": c.viewmats.tolist(), "Ks": c.Ks.tolist(), "width": c.width, "height": c.height,
            "names": list(c.names), "yaw": None if c.yaw is None else c.yaw.tolist(),
            "pitch": None if c.pitch is None else c.pitch.tolist()}


def _cameras_from_json(d: dict) -> Cameras:
    return Cameras(np.asarray(d["viewmats"], dtype=np.float64).reshape(-1, 4, 4),
                   np.asarray(d["Ks"], dtype=np.float64).reshape(-1, 3, 3), int(d["width"]), int(d["height"]),
                   tuple(d["names"]), None if d["yaw"] is None else np.asarray(d["yaw"]),
                   None if d["pitch"] is None else np.asarray(d["pitch"]))
