"""Running the experiment: its stages as a graph, scheduled onto an executor.

    data        synthetic captures (facescape-like rig) of the train and test identities, and a
                dataset of near-frontal views (|yaw| < 30) with GT labels: the train identities'
                and those of the frontal-only identities (a stand-in for a public frontal dataset)
    baseline    each target parser trained on that frontal dataset only
    refine      every train identity refined by the engine with an initial parser (the target's
                baseline, or the simulated block's parser), one run folder per identity
    correct     (the `corrected` variant) a copy of each refine run whose least confident input
                views get their GT, carried to every view by `correct`: the paper's manual clean-up
    finetune    the baseline fine-tuned on the refined datasets plus its frontal data (or, for the
                ablation, on the initial parser's raw labels)
    evaluate    every parser on all views of the test identities, per pose bucket and per class
    results     results.json, results.md, contact sheets and a bar chart

Stages run as soon as the ones they need are done, side by side in `workers` processes (one
thread each; on a small CPU that gets through more work than one stage on every thread). Each
finished stage is recorded in OUT/experiment.json with its wall time, so `resume=True` skips it (a
refine run and a parser's training also resume inside themselves).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from splatrefine.engine import RunState
from splatrefine.errors import SplatrefineError
from splatrefine.workers import GraphStage, run_graph

from .config import (
    CORRECTED_VARIANT,
    ExperimentConfig,
    TargetSpec,
    active_targets,
    build_executor,
    load_config,
    refine_key,
    validate,
)
from .layout import FORMAT, ExperimentLayout, prepare_out
from .stages import Workspace, correct_jobs, dataset_roots, refine_jobs, stage_job, synthesize

log = logging.getLogger(__name__)


class Experiment:
    """Runs the stages of one experiment in `out` (see the module docstring)."""

    def __init__(self, config: ExperimentConfig, out: Path, registry: Any = None,
                 on_stage: Callable[[str], None] | None = None, installed_plugins: bool | None = None):
        """`installed_plugins`: whether `registry` holds just the installed plugins (the default
        when none is given), which worker processes can rebuild; otherwise every stage runs in
        this process."""
        self.workspace = Workspace(config, Path(out), registry)
        self.installed_plugins = registry is None if installed_plugins is None else installed_plugins
        self.state = RunState.load(self.layout.marker)
        marker = self.layout.marker
        # wall time of earlier (interrupted) invocations, so a resumed run reports its whole cost
        self.wall_before = float(json.loads(marker.read_text()).get("wall_seconds", 0.0)) if marker.is_file() else 0.0
        self.t0 = time.perf_counter()
        self.on_stage = on_stage
        self.notes: list[str] = []

    @property
    def config(self) -> ExperimentConfig:
        return self.workspace.config

    @property
    def layout(self) -> ExperimentLayout:
        return self.workspace.layout

    # bookkeeping -----------------------------------------------------------------------------
    def run_once(self, name: str, fn: Callable[[], Any]) -> None:
        """Run the stage `name` (`fn`) unless it is recorded as finished, and record it."""
        if name in self.state.completed:
            log.info("experiment stage %s already complete, skipping", name)
            return
        if self.on_stage:
            self.on_stage(name)
        t0 = time.perf_counter()
        fn()
        self.record(name, time.perf_counter() - t0)

    def record(self, name: str, seconds: float) -> None:
        self.state.completed.append(name)
        self.state.timings[name] = round(seconds, 2)
        self.save_state()

    def save_state(self) -> None:
        self.state.save(self.layout.marker, format=FORMAT, wall_seconds=self.wall_seconds())

    def wall_seconds(self) -> float:
        return round(self.wall_before + time.perf_counter() - self.t0, 1)

    # where jobs run --------------------------------------------------------------------------
    def workers(self, jobs: int) -> int:
        """Worker processes for at most `jobs` jobs at once: `workers` of the config, and 1 when
        the registry is not the installed plugins' (a worker process could not rebuild it)."""
        from splatrefine.workers import resolve_workers

        return resolve_workers(self.config.workers, self.workspace.device, jobs) if self.installed_plugins else 1

    def executor(self, workers: int):
        """What runs the stages' jobs: the config's `executor` (default `local`: this process for
        one worker, else a pool), chosen by name from the registry like every executor
        (docs/fleet.md). With a registry other than the installed plugins', the default with one
        worker: every job runs here."""
        config = self.config if self.installed_plugins else dataclasses.replace(self.config, executor={})
        return build_executor(config, self.workspace.registry, workers)

    def active_targets(self) -> list[TargetSpec]:
        targets, notes = active_targets(self.config, self.workspace.registry)
        for n in notes:
            if n not in self.notes:
                self.notes.append(n)
        return targets

    # driver ----------------------------------------------------------------------------------
    def run(self) -> dict:
        import yaml

        from splatrefine.io.atomic import write_text

        from .results import write_results

        cfg = self.config
        write_text(self.layout.config, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self.save_state()
        targets = self.active_targets()
        identities = len(cfg.train_identities) + len(cfg.test_identities) + len(cfg.frontal_identities)
        self.run_once("data", lambda: synthesize(self.workspace, self.workers(identities)))
        workers = self.workers(len(self.plan(targets)) * len(cfg.train_identities))  # at most that many jobs at once
        executor = self.executor(workers)
        stages = self.plan(targets, in_process=executor.in_process)  # jobs in this process, or picklable ones
        todo = [s for s in stages if s.name not in self.state.completed]
        run_graph(todo, workers, "experiment", on_start=self.on_stage, on_done=self.record, executor=executor)
        self.state.completed = [s for s in self.state.completed if s != "results"]
        self.run_once("results", lambda: write_results(self.workspace, targets, notes=self.notes,
                                                       timings=self.state.timings,
                                                       wall_seconds=self.wall_seconds()))
        return json.loads(self.layout.results_json.read_text())

    def plan(self, targets: Sequence[TargetSpec], in_process: bool = True) -> list[GraphStage]:
        """Every stage after `data`, in priority order: baselines (all else waits on them), then
        fine-tunes (one starts as soon as its labels are refined, while other refines fill the
        other workers), refines and evaluations. Jobs are made when a stage starts: `in_process`,
        they run here, with this registry; otherwise in worker processes (module-level,
        picklable, installed plugins)."""
        ws = self.workspace

        def job(kind: str, target: TargetSpec, variant: str):
            return stage_job(ws, kind, target, variant, in_process)

        def finetune_jobs(target: TargetSpec, variant: str):
            dataset_roots(ws, target, variant)  # written here, in one process: variants share them
            return [job("finetune", target, variant)]

        baselines, refines, finetunes, evaluations = [], {}, [], []
        for t in targets:
            base = f"baseline/{t.name}"
            baselines.append(GraphStage(base, (), lambda t=t: [job("baseline", t, "baseline")]))
            evaluations.append(GraphStage(f"evaluate/{t.name}/baseline", (base,),
                                          lambda t=t: [job("evaluate", t, "baseline")]))
            for v in t.variants:
                key = refine_key(t, v)
                refine = f"refine/{key}"
                refines.setdefault(refine, GraphStage(
                    refine, () if v.startswith("simulated") else (base,),
                    lambda t=t, v=v: refine_jobs(ws, t, v, in_process)))
                labels = refine
                if v == CORRECTED_VARIANT:  # a simulated clean-up of the refine runs first
                    labels = f"correct/{key}"
                    refines.setdefault(labels, GraphStage(labels, (refine,),
                                                          lambda t=t: correct_jobs(ws, t, in_process)))
                finetune = f"finetune/{t.name}/{v}"
                finetunes.append(GraphStage(finetune, (base, labels), lambda t=t, v=v: finetune_jobs(t, v)))
                evaluations.append(GraphStage(f"evaluate/{t.name}/{v}", (finetune,),
                                              lambda t=t, v=v: [job("evaluate", t, v)]))
        # A refine that feeds several fine-tunes goes last, so the run ends on fine-tunes side by side
        # rather than on one alone (cpu.yaml: bisenet-argmax feeds `refined` and `raw`; measured 55
        # min with it first and 49 with it last, docs/results.md).
        feeds = {name: sum(name in f.after for f in finetunes) for name in refines}
        ordered_refines = sorted(refines.values(), key=lambda r: feeds[r.name])
        return baselines + finetunes + ordered_refines + evaluations


def run_experiment(out: Path, *, config_path: Path | None = None, sets: Sequence[str] = (), resume: bool = False,
                   overwrite: bool = False, device: str | None = None, quiet: bool = False, registry: Any = None,
                   on_stage: Callable[[str], None] | None = None) -> dict:
    """Check everything, prepare OUT and run the experiment; returns results.json's content.

    Bad input (overlapping identities, an OUT holding results without overwrite/resume, an unknown
    plugin or setting) raises a SplatrefineError before anything is written.
    """
    from splatrefine.devices import resolve_device
    from splatrefine.progress import set_progress_enabled
    from splatrefine.registry import Registry

    set_progress_enabled(not quiet)
    sets = list(sets)
    if device is not None:
        sets.append(f"device={device}")
    config, _ = load_config(config_path, sets)
    exp_registry = registry if registry is not None else Registry()
    validate(config, exp_registry)
    resolve_device(config.device)  # `--device cuda` without CUDA: one line, before OUT is made
    prepare_out(Path(out), config, resume=resume, overwrite=overwrite)
    exp = Experiment(config, Path(out), exp_registry, on_stage=on_stage, installed_plugins=registry is None)
    try:
        return exp.run()
    except KeyboardInterrupt:
        raise SplatrefineError(f"interrupted; {out} keeps every finished stage",
                               "Rerun the same command with --resume to continue.") from None
