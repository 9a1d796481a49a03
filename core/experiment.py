"""The extreme-pose experiment: does fine-tuning on refined labels fix a frontal-only parser?

One call, on procedural identities that are disjoint between training and test::

    data        synthetic captures (facescape-like rig) of the train and test identities, and a
                dataset of near-frontal views (|yaw| < 30) with GT labels: the train identities'
                and those of the frontal-only identities (a stand-in for a public frontal dataset)
    baseline    each target parser trained on that frontal dataset only
    refine      every train identity refined by the engine with an initial parser (the target's
                baseline, or the `simulated` parser), one run folder per identity
    finetune    the baseline fine-tuned on the refined datasets plus its frontal data (or, for the
                ablation, on the initial parser's raw labels)
    evaluate    every parser on all views of the test identities, per pose bucket and per class
    results     results.json, results.md, contact sheets and a bar chart

Stages run as soon as the ones they need are done, side by side in `workers` processes (one
thread each; on a small CPU that gets through more work than one stage on every thread). Each
finished stage is recorded in OUT/experiment.json with its wall time, so `resume=True` skips it (a
refine run and a parser's training also resume inside themselves). Variants of a target (what the baseline is fine-tuned on):

    refined         initial = baseline, dual-gs logits + argmax, fine-tune on refined labels (ours)
    raw             initial = baseline, fine-tune on its own raw labels at the input views
    palette         initial = baseline, dual-gs `mode: palette` + palette-cluster (the paper's way)
    simulated       initial = the `simulated` parser, argmax, fine-tune on refined labels
    simulated-raw   fine-tune on the simulated parser's raw labels at the input views

numpy at module level only: torch, the plugins and matplotlib are imported where they are used.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine import RunState
from .errors import ConfigError, SplatrefineError, did_you_mean
from .run_layout import MANIFEST, RunLayout
from .types import POSE_BUCKETS
from .workers import GraphStage, Job, run_graph

log = logging.getLogger(__name__)

MARKER = "experiment.json"  # {"format": ..., "wall_seconds": ..., "completed": [...], "timings": {stage: wall s}}
CONFIG_FILE = "experiment.yaml"
FORMAT = "splatrefine-experiment"
VARIANTS = ("refined", "raw", "palette", "simulated", "simulated-raw")
PRIMARY_VARIANT = "refined"
VARIANT_HELP = {
    "refined": "fine-tuned on labels refined from the baseline's (dual-gs logits, argmax)",
    "raw": "fine-tuned on the baseline's raw labels at the input views (no refinement)",
    "palette": "fine-tuned on labels refined from the baseline's (dual-gs palette, palette-cluster)",
    "simulated": "fine-tuned on labels refined from the simulated parser's (dual-gs logits, argmax)",
    "simulated-raw": "fine-tuned on the simulated parser's raw labels at the input views",
}
GOAL_EXTREME_GAIN = 0.20
GOAL_FRONTAL_DROP = 0.01
# seen only in frontal views: a stand-in for a public frontal face-parsing dataset
DEFAULT_FRONTAL_IDENTITIES = tuple(range(100, 124))


# configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetSpec:
    """One target parser: its plugin and settings, training overrides and the variants to run."""

    name: str
    plugin: str
    params: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    variants: tuple[str, ...] = VARIANTS
    optional: bool = False


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment; `from_dict` validates a YAML mapping into one (defaults = cpu.yaml)."""

    seed: int = 0
    device: str = "auto"
    rig: str = "facescape-like"
    resolution: int = 96
    train_identities: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    test_identities: tuple[int, ...] = (1000, 1001, 1002)
    frontal_max_yaw: float = 30.0
    frontal_identities: tuple[int, ...] = DEFAULT_FRONTAL_IDENTITIES
    refine: dict = field(default_factory=dict)
    palette: dict = field(default_factory=dict)
    simulated: dict = field(default_factory=dict)
    targets: tuple[TargetSpec, ...] = ()
    contact_views: int = 4
    refine_reports: bool = False
    finetune_min_yaw: float = 30.0
    finetune_oversample: int = 2
    workers: int | str = "auto"  # per-identity stages (data, refine) in parallel processes

    def to_dict(self) -> dict:
        return {
            "seed": self.seed, "device": self.device, "workers": self.workers,
            "data": {"rig": self.rig, "resolution": self.resolution,
                     "train_identities": list(self.train_identities),
                     "test_identities": list(self.test_identities),
                     "frontal_max_yaw": self.frontal_max_yaw,
                     "frontal_identities": list(self.frontal_identities)},
            "refine": copy.deepcopy(self.refine), "palette": copy.deepcopy(self.palette),
            "simulated": copy.deepcopy(self.simulated),
            "targets": [{"name": t.name, "plugin": t.plugin, "params": dict(t.params),
                         "baseline": dict(t.baseline), "finetune": dict(t.finetune),
                         "variants": list(t.variants), "optional": t.optional} for t in self.targets],
            "finetune": {"min_yaw": self.finetune_min_yaw, "oversample": self.finetune_oversample},
            "report": {"contact_views": self.contact_views, "refine_reports": self.refine_reports},
        }


TOP_KEYS = ("seed", "device", "workers", "data", "refine", "palette", "simulated", "targets", "finetune", "report")
DATA_KEYS = ("rig", "resolution", "train_identities", "test_identities", "frontal_max_yaw", "frontal_identities")
TARGET_KEYS = ("name", "plugin", "params", "baseline", "finetune", "variants", "optional")
REPORT_KEYS = ("contact_views", "refine_reports")
RIGS = ("facescape-like", "turntable", "frontal-only")


def _check_keys(d: Any, allowed: Sequence[str], where: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown key '{k}'.{did_you_mean(str(k), allowed)}",
                              f"Known keys: {', '.join(allowed)}.")
    return dict(d)


def _int(v: Any, where: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
        raise ConfigError(f"{where}: expected an integer, got {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ConfigError(f"{where}: {v} is below the minimum {lo}")
    return v


def _ids(v: Any, where: str) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ConfigError(f"{where}: expected a non-empty list of identity numbers, got {v!r}")
    ids = tuple(_int(x, f"{where}[{i}]", 0) for i, x in enumerate(v))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{where}: identity {dup[0]} is listed twice")
    return ids


def _role_block(d: Any, where: str) -> dict:
    d = _check_keys(d, ("plugin", "params"), where)
    if "params" in d and not isinstance(d["params"] or {}, dict):
        raise ConfigError(f"{where}.params: expected a mapping")
    return d


# The defaults are the reduced CPU scale; examples/extreme_pose/cpu.yaml spells them out (a test
# checks that the two agree) and gpu.yaml is the full scale.
DEFAULT_REFINE = {
    "representation": {"plugin": "dual-gs", "params": {"iterations": 800, "init_points": 4000,
                                                       "max_gaussians": 10000,
                                                       "class_moves_geometry": False,
                                                       "confidence_weighting": False,
                                                       "class_balance": 0.5}},
    "view_sampler": {"plugin": "orbit", "params": {"yaw": [-90.0, 90.0], "pitch": [-20.0, 20.0],
                                                    "yaw_count": 13, "pitch_count": 2}},
    "label_aggregator": {"plugin": "argmax", "params": {"min_confidence": 0.5}},
}
DEFAULT_PALETTE = {
    "representation": {"params": {"mode": "palette"}},
    "label_aggregator": {"plugin": "palette-cluster", "params": {}},
}
DEFAULT_TARGETS = (
    {"name": "bisenet", "plugin": "bisenet",
     "params": {"input_size": 144, "batch_size": 16, "train_batch_size": 8, "checkpoint_every": 100,
                "optimizer": "adam", "weight_decay": 0.0001, "warmup_steps": 20,
                "jitter": 0.2, "scale_range": [0.9, 1.2], "precision": "bf16"},
     "baseline": {"steps": 1200, "lr": 0.003}, "finetune": {"steps": 450, "lr": 0.001},
     "variants": ["refined", "raw", "palette", "simulated"]},
    {"name": "smp-unet", "plugin": "smp", "optional": True,
     "params": {"arch": "Unet", "encoder": "resnet18", "input_size": 96, "batch_size": 16, "train_batch_size": 8,
                "checkpoint_every": 100, "optimizer": "adam", "weight_decay": 0.0001, "warmup_steps": 20,
                "jitter": 0.2, "scale_range": [0.9, 1.2], "precision": "bf16"},
     "baseline": {"steps": 1200, "lr": 0.003}, "finetune": {"steps": 750, "lr": 0.001},
     "variants": ["refined"]},
)
DEFAULT_DATA = {"rig": "facescape-like", "resolution": 96, "train_identities": [0, 1, 2, 3, 4, 5],
                "test_identities": [1000, 1001, 1002], "frontal_max_yaw": 30.0,
                "frontal_identities": list(DEFAULT_FRONTAL_IDENTITIES)}
REFINE_ROLES = ("representation", "view_sampler", "label_aggregator")


def config_from_dict(data: dict | None, source: str = "config") -> ExperimentConfig:
    """Validate a YAML mapping (the layout of examples/extreme_pose/cpu.yaml) into a config.

    Missing keys take the reduced CPU-scale defaults. Raises ConfigError naming `source` and the key.
    """
    data = _check_keys(data or {}, TOP_KEYS, source)
    d = _check_keys(data.get("data"), DATA_KEYS, f"{source}: data")
    seed = _int(data.get("seed", 0), f"{source}: seed")
    device = data.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: device must be auto, cpu or cuda, got {device!r}")
    workers = data.get("workers", "auto")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"{source}: workers must be auto or a whole number >= 1, got {workers!r}")
    d = {**DEFAULT_DATA, **d}
    rig = d["rig"]
    if rig not in RIGS:
        raise ConfigError(f"{source}: data.rig {rig!r} is not one of {', '.join(RIGS)}.{did_you_mean(str(rig), RIGS)}")
    resolution = _int(d["resolution"], f"{source}: data.resolution", 16)
    train = _ids(d["train_identities"], f"{source}: data.train_identities")
    test = _ids(d["test_identities"], f"{source}: data.test_identities")
    frontal = _ids(d["frontal_identities"], f"{source}: data.frontal_identities") if d["frontal_identities"] else ()
    for a, b, ids_a, ids_b in (("train", "test", train, test), ("frontal", "test", frontal, test),
                               ("frontal", "train", frontal, train)):
        shared = sorted(set(ids_a) & set(ids_b))
        if shared:
            raise SplatrefineError(
                f"{source}: identities {', '.join(map(str, shared))} are in both data.{a}_identities and "
                f"data.{b}_identities; {a} and {b} identities must be disjoint")
    fmy = d["frontal_max_yaw"]
    if isinstance(fmy, bool) or not isinstance(fmy, (int, float)) or not 0 < fmy <= 90:
        raise ConfigError(f"{source}: data.frontal_max_yaw must be a number in (0, 90], got {fmy!r}")

    refine = _merge(DEFAULT_REFINE, _check_keys(data.get("refine"), REFINE_ROLES, f"{source}: refine"))
    for role in REFINE_ROLES:
        _role_block(refine.get(role), f"{source}: refine.{role}")
    palette = _merge(DEFAULT_PALETTE, _check_keys(data.get("palette"), REFINE_ROLES, f"{source}: palette"))
    for role in REFINE_ROLES:
        _role_block(palette.get(role), f"{source}: palette.{role}")
    simulated = _check_keys(data.get("simulated"), ("params",), f"{source}: simulated")
    if not isinstance(simulated.get("params") or {}, dict):
        raise ConfigError(f"{source}: simulated.params: expected a mapping")
    simulated = {"params": dict(simulated.get("params") or {})}

    raw_targets = data.get("targets", copy.deepcopy(list(DEFAULT_TARGETS)))
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{source}: targets must be a non-empty list of target parsers")
    targets = []
    for i, t in enumerate(raw_targets):
        w = f"{source}: targets[{i}]"
        t = _check_keys(t, TARGET_KEYS, w)
        if "plugin" not in t:
            raise ConfigError(f"{w}: needs a 'plugin' (e.g. bisenet)")
        name = str(t.get("name", t["plugin"]))
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{w}: name {name!r} cannot be a folder name")
        for key in ("params", "baseline", "finetune"):
            if not isinstance(t.get(key) or {}, dict):
                raise ConfigError(f"{w}.{key}: expected a mapping")
        variants = t.get("variants", list(VARIANTS))
        if not isinstance(variants, list):
            raise ConfigError(f"{w}.variants: expected a list, e.g. [refined, raw]")
        for v in variants:
            if v not in VARIANTS:
                raise ConfigError(f"{w}.variants: unknown variant {v!r}.{did_you_mean(str(v), VARIANTS)}",
                                  f"Variants: {', '.join(VARIANTS)}.")
        optional = t.get("optional", False)
        if not isinstance(optional, bool):
            raise ConfigError(f"{w}.optional: expected true or false")
        targets.append(TargetSpec(name, str(t["plugin"]), dict(t.get("params") or {}), dict(t.get("baseline") or {}),
                                  dict(t.get("finetune") or {}), tuple(dict.fromkeys(variants)), optional))
    names = [t.name for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: two targets are named '{dup[0]}'; give each a distinct 'name'")
    rep = _check_keys(data.get("report"), REPORT_KEYS, f"{source}: report")
    contact = _int(rep.get("contact_views", 4), f"{source}: report.contact_views", 1)
    refine_reports = rep.get("refine_reports", False)
    if not isinstance(refine_reports, bool):
        raise ConfigError(f"{source}: report.refine_reports: expected true or false")
    ft = _check_keys(data.get("finetune"), ("min_yaw", "oversample"), f"{source}: finetune")
    min_yaw = ft.get("min_yaw", ExperimentConfig.finetune_min_yaw)
    if isinstance(min_yaw, bool) or not isinstance(min_yaw, (int, float)) or not 0 <= min_yaw < 90:
        raise ConfigError(f"{source}: finetune.min_yaw must be a number in [0, 90), got {min_yaw!r}")
    oversample = _int(ft.get("oversample", ExperimentConfig.finetune_oversample), f"{source}: finetune.oversample", 1)
    return ExperimentConfig(seed, device, rig, resolution, train, test, float(fmy), frontal, refine, palette,
                            simulated, tuple(targets), contact, refine_reports, float(min_yaw), oversample,
                            workers)


def _merge(base: dict, over: dict) -> dict:
    """Deep merge of mappings (over wins); a role block whose 'plugin' changes drops base params."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            if "plugin" in v and v["plugin"] != out[k].get("plugin"):
                out[k] = copy.deepcopy(v)
            else:
                out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_sets(data: dict, sets: Sequence[str]) -> dict:
    """`--set data.resolution=64` style overrides (values parsed as YAML) on a config mapping.
    A list index is a number: `--set targets.0.baseline.steps=10`."""
    import yaml

    data = copy.deepcopy(data)
    for arg in sets:
        if "=" not in arg:
            raise ConfigError(f"--set {arg}: expected KEY.PATH=VALUE, e.g. data.resolution=64")
        lhs, text = arg.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        keys = [k for k in lhs.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"--set {arg}: empty key")
        node: Any = data
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise ConfigError(f"--set {arg}: '{k}' is not an index of the list at {'.'.join(keys[:i]) or 'top'}")
                if last:
                    node[int(k)] = value
                else:
                    node = node[int(k)]
            else:
                if last:
                    node[k] = value
                else:
                    if k == "targets" and "targets" not in node:
                        node[k] = copy.deepcopy(list(DEFAULT_TARGETS))
                    node = node.setdefault(k, {})
                    if not isinstance(node, (dict, list)):
                        raise ConfigError(f"--set {arg}: '{k}' is not a mapping")
    return data


def load_config(path: Path | None, sets: Sequence[str] = ()) -> tuple[ExperimentConfig, dict]:
    """(validated config, the raw mapping after --set) from a YAML file (None: the defaults)."""
    from .config import load_yaml

    data = load_yaml(path) if path is not None else {}
    data = apply_sets(data, sets)
    return config_from_dict(data, str(path) if path is not None else "config"), data


# experiment folder -----------------------------------------------------------------------------
def is_experiment_dir(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _results_config(config: ExperimentConfig) -> dict:
    """The settings that shape results: all but `workers` (how many processes share the work)."""
    d = config.to_dict()
    d.pop("workers")
    return d


def prepare_out(out: Path, config: ExperimentConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber: an OUT with results needs --overwrite or --resume; a non-empty folder
    that is not an experiment is never deleted. On resume, the stored config must match."""
    import yaml

    out = Path(out)
    if resume and overwrite:
        raise SplatrefineError("--resume and --overwrite exclude each other", "Give one of them.")
    if out.exists() and not out.is_dir():
        raise SplatrefineError(f"{out}: exists and is not a folder", "Choose another experiment folder.")
    if out.is_dir() and any(out.iterdir()):
        if not is_experiment_dir(out):
            raise SplatrefineError(f"{out}: exists, is not empty and is not an experiment folder; refusing to use it",
                                   "Choose a new or empty folder.")
        if overwrite:
            shutil.rmtree(out)
        elif resume:
            stored = out / CONFIG_FILE
            if stored.is_file():
                old = config_from_dict(yaml.safe_load(stored.read_text()), str(stored))
                if _results_config(old) != _results_config(config):
                    raise SplatrefineError(
                        f"{out}: was started with another configuration ({stored}); --resume would mix results",
                        "Resume with the same --config/--set, or use --overwrite to start again.")
            return
        else:
            raise SplatrefineError(f"{out}: already holds an experiment",
                                   "Add --resume to continue it, --overwrite to start again, or choose another folder.")
    from .io.atomic import ensure_writable_dir

    ensure_writable_dir(out, "Choose a writable folder.")


# the runner ------------------------------------------------------------------------------------
class Experiment:
    """Runs the stages of one experiment in `out` (see the module docstring)."""

    def __init__(self, config: ExperimentConfig, out: Path, registry: Any = None,
                 on_stage: Callable[[str], None] | None = None, installed_plugins: bool | None = None):
        """`installed_plugins`: whether `registry` holds just the installed plugins (the default
        when none is given), which worker processes can rebuild; otherwise every stage stays in
        this process."""
        from .registry import Registry
        from .schema import CELEBAMASK_HQ

        self.config = config
        self.out = Path(out)
        self.registry = registry or Registry()
        self._installed_plugins = registry is None if installed_plugins is None else installed_plugins
        self.state = RunState.load(self.out / MARKER)
        marker = self.out / MARKER
        # wall time of earlier (interrupted) invocations, so a resumed run reports its whole cost
        self._wall_before = float(json.loads(marker.read_text()).get("wall_seconds", 0.0)) if marker.is_file() else 0.0
        self._t0 = time.perf_counter()
        self._jobs_in_process = True  # run() decides, from the number of workers
        self.on_stage = on_stage
        self.schema = CELEBAMASK_HQ
        self.notes: list[str] = []
        self._device: str | None = None

    # paths ----------------------------------------------------------------------------------
    def capture_dir(self, split: str, identity: int) -> Path:
        return self.out / "data" / split / f"id_{identity:04d}"

    @property
    def frontal_dir(self) -> Path:
        return self.out / "data" / "frontal"

    def parser_dir(self, target: str, variant: str) -> Path:
        return self.out / "parsers" / target / variant

    def refine_key(self, target: TargetSpec, variant: str) -> str:
        if variant in ("simulated", "simulated-raw"):
            return "simulated-argmax"
        return f"{target.name}-{'palette' if variant == 'palette' else 'argmax'}"

    def run_dir(self, key: str, identity: int) -> Path:
        return self.out / "refine" / key / f"id_{identity:04d}"

    @property
    def device(self) -> str:
        if self._device is None:
            from .devices import resolve_device

            self._device = resolve_device(self.config.device)
        return self._device

    # driver ----------------------------------------------------------------------------------
    def _stage(self, name: str, fn: Callable[[], Any]) -> None:
        if name in self.state.completed:
            log.info("experiment stage %s already complete, skipping", name)
            return
        if self.on_stage:
            self.on_stage(name)
        t0 = time.perf_counter()
        fn()
        self._record(name, time.perf_counter() - t0)

    def _record(self, name: str, seconds: float) -> None:
        self.state.completed.append(name)
        self.state.timings[name] = round(seconds, 2)
        self._save_state()

    def _save_state(self) -> None:
        self.state.save(self.out / MARKER, format=FORMAT, wall_seconds=self.wall_seconds())

    def wall_seconds(self) -> float:
        return round(self._wall_before + time.perf_counter() - self._t0, 1)

    def workers(self, jobs: int) -> int:
        from .workers import resolve_workers

        return resolve_workers(self.config.workers, self.device, jobs) if self._installed_plugins else 1

    def executor(self, workers: int):
        """What runs the stages' jobs: the default executor (`local`: this process for one worker,
        else a pool), chosen by name from the registry like every executor (docs/fleet.md)."""
        from .defaults import default_executor
        from .executors import ExecutorRegistry

        return ExecutorRegistry(self.registry.manager).build(default_executor(), {"workers": workers})

    def active_targets(self) -> list[TargetSpec]:
        targets, notes = active_targets(self.config, self.registry)
        for n in notes:
            if n not in self.notes:
                self.notes.append(n)
        return targets

    def run(self) -> dict:
        import yaml

        from .io.atomic import write_text

        cfg = self.config
        write_text(self.out / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self._save_state()
        targets = self.active_targets()
        self._stage("data", self.stage_data)
        stages = self.plan(targets)
        workers = self.workers(len(stages) * len(cfg.train_identities))  # at most that many jobs at once
        self._jobs_in_process = workers <= 1
        todo = [s for s in stages if s.name not in self.state.completed]
        run_graph(todo, workers, "experiment", on_start=self.on_stage, on_done=self._record,
                  executor=self.executor(workers))
        self.state.completed = [s for s in self.state.completed if s != "results"]
        self._stage("results", lambda: self.stage_results(targets))
        return json.loads((self.out / "results.json").read_text())

    def plan(self, targets: list[TargetSpec]) -> list[GraphStage]:
        """Every stage after `data`, in priority order: baselines (all else waits on them), then
        fine-tunes (one starts as soon as its labels are refined, while other refines fill the
        other workers), refines and evaluations. Jobs are made when a stage starts: with
        `_jobs_in_process` they run here, with this registry; otherwise in worker processes
        (module-level, picklable, installed plugins)."""
        def job(kind: str, target: TargetSpec, variant: str) -> Job:
            if self._jobs_in_process:
                method = getattr(self, f"stage_{kind}")
                return (method, (target,) if kind == "baseline" else (target, variant))
            return (run_stage, (self.config, str(self.out), kind, target.name, variant))

        baselines, refines, finetunes, evaluations = [], {}, [], []
        for t in targets:
            base = f"baseline/{t.name}"
            baselines.append(GraphStage(base, (), lambda t=t: [job("baseline", t, "baseline")]))
            evaluations.append(GraphStage(f"evaluate/{t.name}/baseline", (base,),
                                          lambda t=t: [job("evaluate", t, "baseline")]))
            for v in t.variants:
                key = self.refine_key(t, v)
                refine = f"refine/{key}"
                refines.setdefault(refine, GraphStage(
                    refine, () if key == "simulated-argmax" else (base,),
                    lambda t=t, v=v: self._refine_jobs(t, v)))
                finetune = f"finetune/{t.name}/{v}"
                finetunes.append(GraphStage(finetune, (base, refine),
                                            lambda t=t, v=v: self._finetune_jobs(t, v, job("finetune", t, v))))
                evaluations.append(GraphStage(f"evaluate/{t.name}/{v}", (finetune,),
                                              lambda t=t, v=v: [job("evaluate", t, v)]))
        # A refine that feeds several fine-tunes goes last, so the run ends on fine-tunes side by side
        # rather than on one alone (cpu.yaml: bisenet-argmax feeds `refined` and `raw`; measured 55
        # min with it first and 49 with it last, docs/results.md).
        feeds = {name: sum(name in f.after for f in finetunes) for name in refines}
        ordered_refines = sorted(refines.values(), key=lambda r: feeds[r.name])
        return baselines + finetunes + ordered_refines + evaluations

    # stages ------------------------------------------------------------------------------------
    def stage_data(self) -> None:
        """Synthetic captures of every identity, and the frontal GT dataset of the train and
        frontal-only identities."""
        from .io.atomic import atomic_dir
        from .io.labels import write_image, write_labels
        from .workers import run_jobs

        cfg = self.config
        todo = ([("train", i) for i in cfg.train_identities] + [("test", i) for i in cfg.test_identities]
                + [("frontal-only", i) for i in cfg.frontal_identities])
        jobs = [(str(self.capture_dir(split, ident)), ident, cfg.rig, cfg.resolution) for split, ident in todo
                if not (self.capture_dir(split, ident) / "capture.json").is_file()]
        run_jobs(write_identity, jobs, self.workers(len(jobs)), "synthesize identities")
        samples = []
        with atomic_dir(self.frontal_dir) as tmp:
            for split, ident in [t for t in todo if t[0] != "test"]:
                cap = self.registry.open_capture(str(self.capture_dir(split, ident)))
                yaw = cap.cameras().yaw
                if yaw is None or not cap.has_labels:
                    raise SplatrefineError(f"{self.capture_dir(split, ident)}: synthetic capture has no subject or GT")
                for view, y in zip(cap.views, yaw):
                    if abs(float(y)) >= cfg.frontal_max_yaw:
                        continue
                    name = f"id_{ident:04d}_{view.name}"
                    write_image(tmp / "images" / f"{name}.png", view.image)
                    write_labels(tmp / "labels" / f"{name}.png", view.labels, self.schema)
                    samples.append({"name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png",
                                    "yaw": float(y), "identity": ident})
            if not samples:
                raise SplatrefineError(f"no view of the train identities has |yaw| < {cfg.frontal_max_yaw}",
                                       "Use a rig with frontal views or raise data.frontal_max_yaw.")
            _write_manifest(tmp, samples, self.schema)

    def _new_parser(self, target: TargetSpec, checkpoint: Path | None) -> Any:
        from .config import build_settings
        from .roles import ComponentContext, Role

        spec = self.registry.get(Role.TARGET_PARSER, target.plugin)
        params = dict(target.params)
        if checkpoint is not None:
            params["checkpoint"] = str(checkpoint)
        settings = build_settings(spec.config_cls, params, f"target '{target.name}' ({target.plugin})")
        return spec.factory(settings, ComponentContext(device=self.device, seed=self.config.seed))

    def stage_baseline(self, target: TargetSpec) -> None:
        """The target parser trained from scratch on frontal GT views of the train identities."""
        from .datasets import LabelledDataset

        work = self.parser_dir(target.name, "baseline")
        parser = self._new_parser(target, None)
        ds = LabelledDataset(self.frontal_dir, self.schema)
        history = parser.fit(ds, workdir=work / "work", resume=True, **target.baseline)
        parser.save(work / "parser")
        _write_history(work / "history.json", history, len(ds))
        shutil.rmtree(work / "work", ignore_errors=True)  # the resume checkpoint, no longer needed

    def _refine_data(self, target: TargetSpec, variant: str) -> dict:
        return refine_run_data(self.config, target, variant, self.parser_dir(target.name, "baseline") / "parser")

    def _refine_jobs(self, target: TargetSpec, variant: str) -> list[Job]:
        """One engine run per train identity with the variant's initial parser and aggregation."""
        from .engine import is_run_dir

        key = self.refine_key(target, variant)
        data = self._refine_data(target, variant)
        source = f"experiment refine '{key}'"
        fn = functools.partial(refine_identity, registry=self.registry) if self._jobs_in_process else refine_identity
        jobs = []
        for ident in self.config.train_identities:
            run_dir = self.run_dir(key, ident)
            if run_dir.exists() and not is_run_dir(run_dir):
                shutil.rmtree(run_dir)  # interrupted before its first stage finished: ours to redo
            run_dir.mkdir(parents=True, exist_ok=True)
            jobs.append((fn, (data, source, str(self.capture_dir("train", ident)), str(run_dir),
                              self.config.refine_reports)))
        return jobs

    def _finetune_jobs(self, target: TargetSpec, variant: str, job: Job) -> list[Job]:
        """The fine-tune's datasets are written here, in one process, since variants share them."""
        self._dataset_roots(target, variant)
        return [job]

    def _dataset_roots(self, target: TargetSpec, variant: str) -> list[Path]:
        """The frontal GT dataset plus the variant's labels at views with |yaw| >= finetune.min_yaw,
        the latter `finetune.oversample` times (the frontal data outnumbers the new poses)."""
        key = self.refine_key(target, variant)
        kind = "raw" if variant in ("raw", "simulated-raw") else "refined"
        return [self.frontal_dir] + [self._variant_dataset(key, kind)] * self.config.finetune_oversample

    def _variant_dataset(self, key: str, kind: str) -> Path:
        """OUT/datasets/KEY-KIND: images + labels (the refined ones, or the initial parser's argmax
        at the input views for KIND raw) of every train identity, views with |yaw| below
        `finetune.min_yaw` left out (the frontal GT data covers those poses)."""
        from .io.atomic import atomic_dir
        from .io.labels import write_image

        root = self.out / "datasets" / f"{key}-{kind}"
        if (root / MANIFEST).is_file():
            return root
        min_yaw = self.config.finetune_min_yaw
        samples = []
        with atomic_dir(root) as tmp:
            (tmp / "images").mkdir(parents=True, exist_ok=True)
            (tmp / "labels").mkdir(parents=True, exist_ok=True)
            for ident in self.config.train_identities:
                run = RunLayout(self.run_dir(key, ident))
                if kind == "raw":
                    cap = self.registry.open_capture(str(self.capture_dir("train", ident)))
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
            _write_manifest(tmp, samples, self.schema)
        return root

    def stage_finetune(self, target: TargetSpec, variant: str) -> None:
        """The baseline fine-tuned on the variant's labels plus the frontal GT data."""
        from .datasets import LabelledDataset

        work = self.parser_dir(target.name, variant)
        parser = self._new_parser(target, self.parser_dir(target.name, "baseline") / "parser")
        ds = LabelledDataset(self._dataset_roots(target, variant), self.schema)
        history = parser.fit(ds, workdir=work / "work", resume=True, **target.finetune)
        parser.save(work / "parser")
        _write_history(work / "history.json", history, len({x.image for x in ds.samples}),
                       self.config.finetune_oversample)
        shutil.rmtree(work / "work", ignore_errors=True)

    def _test_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(images uint8 [N,H,W,3], GT uint8 [N,H,W], yaw [N], names) over every test identity."""
        if getattr(self, "_test_cache", None) is None:
            images, gts, yaws, names = [], [], [], []
            for ident in self.config.test_identities:
                cap = self.registry.open_capture(str(self.capture_dir("test", ident)))
                images.append(cap.images())
                gts.append(np.stack([v.labels for v in cap.views]))
                yaws.append(cap.cameras().yaw)
                names += [f"id_{ident:04d}/{v.name}" for v in cap.views]
            self._test_cache = (np.concatenate(images), np.concatenate(gts), np.concatenate(yaws), names)
        return self._test_cache

    def stage_evaluate(self, target: TargetSpec, variant: str) -> None:
        """Predict every test view, score per bucket and per class; predictions kept for figures."""
        from .io.atomic import atomic_path, write_text
        from .metrics import evaluate_labels

        images, gt, yaw, _ = self._test_set()
        parser = self._new_parser(target, self.parser_dir(target.name, variant) / "parser")
        chunk = 16
        pred = np.concatenate([parser.predict_numpy(images[i:i + chunk]).argmax(axis=1).astype(np.uint8)
                               for i in range(0, len(images), chunk)])
        metrics = evaluate_labels(pred, gt, yaw, self.schema)
        buckets = np.array([_bucket(y) for y in yaw])
        metrics["per_class_by_bucket"] = {
            b: evaluate_labels(pred[buckets == b], gt[buckets == b], yaw[buckets == b], self.schema)["per_class"]
            for b in POSE_BUCKETS if (buckets == b).any()}
        folder = self.out / "eval" / target.name
        with atomic_path(folder / f"{variant}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, pred)
        write_text(folder / f"{variant}.json", json.dumps(metrics, indent=1))

    def stage_results(self, targets: list[TargetSpec]) -> None:
        from .io.atomic import write_text

        results = collect_results(self, targets)
        figures_dir = self.out / "figures"
        results["figures"] = write_figures(self, targets, results, figures_dir)
        write_text(self.out / "results.json", json.dumps(results, indent=1))
        write_text(self.out / "results.md", results_markdown(results))


def active_targets(config: ExperimentConfig, registry: Any) -> tuple[list[TargetSpec], list[str]]:
    """Targets whose plugin is installed, and notes on the optional ones skipped (an `smp` target
    without segmentation-models-pytorch). A missing non-optional target is a PluginError."""
    from .roles import Role

    out, notes = [], []
    for t in config.targets:
        if t.optional and t.plugin not in registry.names(Role.TARGET_PARSER):
            notes.append(f"target '{t.name}' skipped: no target_parser plugin '{t.plugin}' is installed")
            continue
        registry.get(Role.TARGET_PARSER, t.plugin)  # raises, with did-you-mean
        if t.optional and t.plugin == "smp":
            import importlib.util

            if importlib.util.find_spec("segmentation_models_pytorch") is None:
                notes.append(f"target '{t.name}' skipped: segmentation-models-pytorch is not importable "
                             "(pip install 'splatrefine[smp]')")
                continue
        out.append(t)
    return out, notes


def refine_run_data(config: ExperimentConfig, target: TargetSpec, variant: str, baseline_parser: Path) -> dict:
    """The refine config mapping (the layout of `splatrefine refine -c`) of one variant: the
    experiment's refine block (merged with the palette block for `palette`), and as initial parser
    the `simulated` parser or the target's baseline loaded from `baseline_parser`."""
    base = config.refine if variant != "palette" else _merge(config.refine, config.palette)
    data: dict[str, Any] = {role: copy.deepcopy(base[role]) for role in REFINE_ROLES}
    data["seed"] = config.seed
    data["device"] = config.device
    data["target_parser"] = {"plugin": target.plugin, "params": dict(target.params)}
    if variant.startswith("simulated"):
        data["initial_parser"] = {"plugin": "simulated", "params": dict(config.simulated.get("params") or {})}
    else:
        data["initial_parser"] = {"plugin": target.plugin,
                                  "params": {**target.params, "checkpoint": str(baseline_parser)}}
    return data


def validate(config: ExperimentConfig, registry: Any) -> list[str]:
    """Check every plugin and setting the experiment will use, before anything is written.
    Returns the notes of active_targets()."""
    from .config import build_settings, resolve
    from .roles import Role

    targets, notes = active_targets(config, registry)
    if not targets:
        raise SplatrefineError("no target parser to run: every target is optional and missing", "; ".join(notes))
    for t in targets:
        spec = registry.get(Role.TARGET_PARSER, t.plugin)
        build_settings(spec.config_cls, dict(t.params), f"targets '{t.name}' params")
        from .training import train_options

        for what in ("baseline", "finetune"):
            try:
                train_options(build_settings(spec.config_cls, dict(t.params), t.name), getattr(t, what))
            except ConfigError as exc:
                raise ConfigError(f"targets '{t.name}' {what}: {exc.message}", exc.hint) from None
        for v in t.variants:
            if v.startswith("simulated"):
                registry.get(Role.INITIAL_PARSER, "simulated")
            data = refine_run_data(config, t, v, Path("baseline-parser"))
            resolve(registry, data, source=f"experiment refine config for '{t.name}/{v}'")
    return notes


def _engine_class(with_report: bool) -> type:
    """The engine, or (the default) the engine with its per-run report stage left out: the
    experiment writes its own figures, and a report per identity and variant costs minutes."""
    from .engine import Engine

    if with_report:
        return Engine

    class ExperimentEngine(Engine):
        def stage_report(self) -> None:
            self.notes.append("per-run report skipped by the experiment (report.refine_reports: false)")

    return ExperimentEngine


def run_stage(config: ExperimentConfig, out: str, kind: str, target_name: str, variant: str) -> None:
    """One baseline, finetune or evaluate stage of the experiment in OUT, in a worker process."""
    exp = Experiment(config, Path(out))
    target = next(t for t in config.targets if t.name == target_name)
    method = getattr(exp, f"stage_{kind}")
    method(target) if kind == "baseline" else method(target, variant)


def refine_identity(data: dict, source: str, capture_dir: str, run_dir: str, with_report: bool,
                    registry: Any = None) -> None:
    """One engine run (the refine config mapping `data`) of the capture in `capture_dir`; a job of
    the refine stage, so module-level and with picklable arguments."""
    from .config import resolve

    if registry is None:
        from .registry import Registry

        registry = Registry()
    config = resolve(registry, data, source=source)
    cap = registry.open_capture(capture_dir)
    _engine_class(with_report)(registry, config, cap, Path(run_dir)).run()


def write_identity(folder: Path | str, identity: int, rig: str, resolution: int) -> Path:
    """One synthetic identity (the procedural head of seed `identity`, as `splatrefine synth`
    numbers them) as a capture folder; its "synthetic" block lets readers render GT anywhere."""
    from .io.capture_folder import write_capture_folder
    from .plugins.synthetic.rigs import synthesize_capture, synthetic_block

    capture = synthesize_capture(identity, rig, resolution)
    return write_capture_folder(capture, Path(folder), extra={"synthetic": synthetic_block(identity, rig, resolution)})


def _write_manifest(root: Path, samples: list[dict], schema: Any) -> None:
    """root/manifest.json in the layout LabelledDataset reads ({"schema", "samples": [...]})."""
    from .io.atomic import write_text

    write_text(root / MANIFEST, json.dumps({"schema": schema.name, "samples": samples}, indent=1))


def _bucket(yaw: float) -> str:
    from .types import pose_bucket

    return pose_bucket(yaw)


def _write_history(path: Path, history: dict, n: int, oversample: int = 1) -> None:
    from .io.atomic import write_text

    loss = history.get("loss", [])
    write_text(path, json.dumps({"samples": n, "oversample": oversample, "steps": len(loss), "loss": loss,
                                 "lr": history.get("lr", [])}))


# results ---------------------------------------------------------------------------------------
def _scores(m: dict) -> dict:
    out = {"all": {"miou": m["miou"], "mean_f1": m["mean_f1"], "pixel_acc": m.get("pixel_acc")}}
    for b in POSE_BUCKETS:
        if b in m.get("buckets", {}):
            bm = m["buckets"][b]
            out[b] = {"miou": bm["miou"], "mean_f1": bm["mean_f1"], "pixel_acc": bm.get("pixel_acc"),
                      "n_views": bm.get("n_views")}
    return out


def collect_results(exp: Experiment, targets: list[TargetSpec]) -> dict:
    """results.json: per target, per parser (baseline + variants) scores, per-class IoU, deltas,
    the refined label quality on the train identities, goals and timings."""
    cfg = exp.config
    res: dict[str, Any] = {
        "format": "splatrefine-experiment-results", "version": 1,
        "config": cfg.to_dict(), "notes": list(exp.notes),
        "test_views": {b: 0 for b in POSE_BUCKETS}, "targets": {}, "refine": {},
    }
    _, _, yaw, _ = exp._test_set()
    for y in yaw:
        res["test_views"][_bucket(y)] += 1
    for t in targets:
        rows = {}
        for v in ("baseline",) + t.variants:
            m = json.loads((exp.out / "eval" / t.name / f"{v}.json").read_text())
            rows[v] = {"scores": _scores(m), "per_class": m["per_class"],
                       "per_class_by_bucket": m.get("per_class_by_bucket", {}),
                       "description": VARIANT_HELP.get(v, "trained on frontal GT views only")}
            hist = exp.parser_dir(t.name, v) / "history.json"
            if hist.is_file():
                h = json.loads(hist.read_text())
                rows[v]["train"] = {"samples": h["samples"], "oversample": h.get("oversample", 1), "steps": h["steps"],
                                    "final_loss": h["loss"][-1] if h["loss"] else None}
        base = rows["baseline"]["scores"]
        for v in t.variants:
            s = rows[v]["scores"]
            rows[v]["delta"] = {b: {"miou": s[b]["miou"] - base[b]["miou"], "mean_f1": s[b]["mean_f1"] - base[b]["mean_f1"]}
                                for b in s if b in base}
        entry: dict[str, Any] = {"plugin": t.plugin, "params": t.params, "parsers": rows}
        if PRIMARY_VARIANT in t.variants and "extreme" in base and "frontal" in base:
            d = rows[PRIMARY_VARIANT]["delta"]
            entry["goals"] = {
                "extreme_gain": d["extreme"]["miou"], "extreme_gain_goal": GOAL_EXTREME_GAIN,
                "extreme_met": d["extreme"]["miou"] >= GOAL_EXTREME_GAIN,
                "frontal_change": d["frontal"]["miou"], "frontal_drop_goal": -GOAL_FRONTAL_DROP,
                "frontal_met": d["frontal"]["miou"] >= -GOAL_FRONTAL_DROP,
            }
        res["targets"][t.name] = entry
        for v in t.variants:
            key = exp.refine_key(t, v)
            if key in res["refine"]:
                continue
            res["refine"][key] = _refine_quality(exp, key)
    res["timings"] = dict(exp.state.timings)
    res["total_seconds"] = round(sum(exp.state.timings.values()), 1)
    res["wall_seconds"] = exp.wall_seconds()
    return res


def _refine_quality(exp: Experiment, key: str) -> dict:
    """Mean over train identities of the run metrics (initial / refined input / refined novel)."""
    acc: dict[str, dict[str, list[float]]] = {}
    for ident in exp.config.train_identities:
        p = RunLayout(exp.run_dir(key, ident)).metrics
        if not p.is_file():
            continue
        m = json.loads(p.read_text())
        for what, mm in m.items():
            if not isinstance(mm, dict) or "miou" not in mm:
                continue
            d = acc.setdefault(what, {})
            d.setdefault("all", []).append(mm["miou"])
            for b, bm in mm.get("buckets", {}).items():
                d.setdefault(b, []).append(bm["miou"])
    return {what: {b: float(np.mean(v)) for b, v in d.items()} for what, d in acc.items()}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _id_range(ids: Sequence[int]) -> str:
    ids = sorted(ids)
    contiguous = ids == list(range(ids[0], ids[0] + len(ids)))
    return f"{ids[0]}-{ids[-1]}" if contiguous and len(ids) > 2 else ", ".join(map(str, ids))


def results_markdown(res: dict) -> str:
    """The tables of results.md (values in percent; deltas in percentage points)."""
    cfg = res["config"]
    d = cfg["data"]
    lines = ["# Extreme-pose experiment: results", ""]
    lines.append(f"Train identities {d['train_identities']}, test identities {d['test_identities']} "
                 f"(disjoint), rig {d['rig']} at {d['resolution']}x{d['resolution']} px; baselines trained on "
                 f"the views with |yaw| < {d['frontal_max_yaw']:g} deg of the train identities"
                 + (f" and of {len(d['frontal_identities'])} frontal-only "
                    f"identit{'y' if len(d['frontal_identities']) == 1 else 'ies'} "
                    f"({_id_range(d['frontal_identities'])})" if d.get("frontal_identities") else "")
                 + ". Test views per bucket: "
                 + ", ".join(f"{b} {n}" for b, n in res["test_views"].items()) + ".")
    lines.append("mIoU and mean F1 in percent over the test identities' views (background excluded); "
                 "deltas in percentage points against the baseline.")
    for note in res.get("notes", []):
        lines += ["", f"Note: {note}"]
    for name, t in res["targets"].items():
        rows = t["parsers"]
        lines += ["", f"## Target parser `{name}` ({t['plugin']})", ""]
        if "goals" in t:
            g = t["goals"]
            lines.append(f"Goals (fine-tuned on refined labels vs baseline): extreme {_signed(g['extreme_gain'])} points "
                         f"(goal >= +{100 * g['extreme_gain_goal']:.0f}: {'met' if g['extreme_met'] else 'NOT met'}); "
                         f"frontal {_signed(g['frontal_change'])} points (goal >= {100 * g['frontal_drop_goal']:.0f}: "
                         f"{'met' if g['frontal_met'] else 'NOT met'}).")
            lines.append("")
        lines.append("### mIoU and mean F1 per pose bucket (%)")
        lines.append("")
        head = ["parser"] + [f"mIoU {b}" for b in POSE_BUCKETS] + ["mIoU all"] + [f"F1 {b}" for b in POSE_BUCKETS] + \
            ["F1 all", "delta mIoU extreme", "delta mIoU frontal"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for v, r in rows.items():
            s = r["scores"]
            cells = [v] + [_pct(s.get(b, {}).get("miou")) for b in POSE_BUCKETS] + [_pct(s["all"]["miou"])]
            cells += [_pct(s.get(b, {}).get("mean_f1")) for b in POSE_BUCKETS] + [_pct(s["all"]["mean_f1"])]
            dl = r.get("delta", {})
            cells += [_signed(dl.get("extreme", {}).get("miou")) if dl else "", _signed(dl.get("frontal", {}).get("miou")) if dl else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for v, r in rows.items():
            tr = r.get("train")
            extra = ""
            if tr:
                times = f", the new views {tr['oversample']}x" if tr["oversample"] > 1 else ""
                extra = f" ({tr['samples']} training images{times}, {tr['steps']} steps)"
            lines.append(f"- `{v}`: {r['description']}{extra}")
        primary = PRIMARY_VARIANT if PRIMARY_VARIANT in rows else next((v for v in rows if v != "baseline"), None)
        if primary:
            lines += ["", f"### Per-class IoU (%), baseline vs `{primary}`: all test views and the extreme bucket", ""]
            lines.append("| class | baseline all | fine-tuned all | baseline extreme | fine-tuned extreme |")
            lines.append("|---|---|---|---|---|")
            b0, b1 = rows["baseline"], rows[primary]
            classes = [c for c in b0["per_class"] if c in b1["per_class"]]
            for c in classes:
                e0 = b0["per_class_by_bucket"].get("extreme", {}).get(c, {}).get("iou")
                e1 = b1["per_class_by_bucket"].get("extreme", {}).get(c, {}).get("iou")
                lines.append(f"| {c} | {_pct(b0['per_class'][c]['iou'])} | {_pct(b1['per_class'][c]['iou'])} | "
                             f"{_pct(e0)} | {_pct(e1)} |")
    if res.get("refine"):
        lines += ["", "## Label quality on the train identities (mIoU %, mean over identities)", "",
                  "Initial = the initial parser's labels at the input views; refined input / novel = the "
                  "refined labels at the input views and at the sampled new views.", ""]
        lines.append("| refine runs | labels | " + " | ".join(POSE_BUCKETS) + " | all |")
        lines.append("|---|---|" + "---|" * (len(POSE_BUCKETS) + 1))
        for key, q in res["refine"].items():
            for what in ("initial", "refined_input", "refined_novel"):
                if what in q:
                    lines.append(f"| {key} | {what} | " + " | ".join(_pct(q[what].get(b)) for b in POSE_BUCKETS)
                                 + f" | {_pct(q[what].get('all'))} |")
    lines += ["", "## Time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    for k, v in res["timings"].items():
        lines.append(f"| {k} | {v:.1f} |")
    lines.append(f"| sum of the stages (they overlap when workers > 1) | {res['total_seconds']:.1f} |")
    if "wall_seconds" in res:
        lines.append(f"| wall time of the experiment | {res['wall_seconds']:.1f} |")
    figs = res.get("figures", {})
    if figs:
        lines += ["", "## Figures", ""]
        for label, path in figs.items():
            lines.append(f"![{label}]({path})")
    return "\n".join(lines) + "\n"


def write_figures(exp: Experiment, targets: list[TargetSpec], res: dict, folder: Path) -> dict[str, str]:
    """Per target: a bar chart of mIoU per pose bucket (baseline and every variant), and per pose
    bucket a contact sheet of test views (image | GT | baseline | fine-tuned). Returns
    {caption: path relative to OUT}."""
    from .figures import bar_chart, contact_sheet, save_png

    out: dict[str, str] = {}
    images, gt, yaw, names = exp._test_set()
    buckets = np.array([_bucket(y) for y in yaw])
    for t in targets:
        rows = res["targets"][t.name]["parsers"]
        series = {v: [None if b not in r["scores"] else 100.0 * r["scores"][b]["miou"] for b in POSE_BUCKETS]
                  for v, r in rows.items()}
        groups = [f"{b} ({res['test_views'][b]} views)" for b in POSE_BUCKETS]
        p = folder / f"miou_{t.name}.png"
        save_png(p, bar_chart(groups, series, title=f"Test identities, target {t.name}: mIoU per pose bucket",
                              ylabel="mIoU (%)", value_format="{:.0f}", size=(9.0, 4.2)))
        out[f"mIoU per pose bucket ({t.name})"] = str(p.relative_to(exp.out))
        primary = PRIMARY_VARIANT if PRIMARY_VARIANT in t.variants else (t.variants[0] if t.variants else None)
        if primary is None:
            continue
        base = np.load(exp.out / "eval" / t.name / "baseline.npy")
        fine = np.load(exp.out / "eval" / t.name / f"{primary}.npy")
        for b in POSE_BUCKETS:
            idx = np.flatnonzero(buckets == b)
            if not len(idx):
                continue
            pick = np.unique(idx[np.linspace(0, len(idx) - 1, min(exp.config.contact_views, len(idx))).round().astype(int)])
            sheet_rows = [[images[i], exp.schema.colorize(gt[i]), exp.schema.colorize(base[i]),
                           exp.schema.colorize(fine[i])] for i in pick]
            labels = [f"{names[i]}\nyaw {yaw[i]:+.0f} deg" for i in pick]
            p = folder / f"contact_{t.name}_{b}.png"
            save_png(p, contact_sheet(sheet_rows, ["image", "GT", "baseline", f"fine-tuned ({primary})"], labels))
            out[f"test views, {b} ({t.name})"] = str(p.relative_to(exp.out))
    return out


def run_experiment(out: Path, *, config_path: Path | None = None, sets: Sequence[str] = (), resume: bool = False,
                   overwrite: bool = False, device: str | None = None, quiet: bool = False, registry: Any = None,
                   on_stage: Callable[[str], None] | None = None) -> dict:
    """Check everything, prepare OUT and run the experiment; returns results.json's content.

    Bad input (overlapping identities, an OUT holding results without overwrite/resume, an unknown
    plugin or setting) raises a SplatrefineError before anything is written.
    """
    from .progress import set_progress_enabled

    set_progress_enabled(not quiet)
    sets = list(sets)
    if device is not None:
        sets.append(f"device={device}")
    config, _ = load_config(config_path, sets)
    from .registry import Registry

    exp_registry = registry if registry is not None else Registry()
    validate(config, exp_registry)
    prepare_out(Path(out), config, resume=resume, overwrite=overwrite)
    exp = Experiment(config, Path(out), exp_registry, on_stage=on_stage, installed_plugins=registry is None)
    try:
        return exp.run()
    except KeyboardInterrupt:
        raise SplatrefineError(f"interrupted; {out} keeps every finished stage",
                               "Rerun the same command with --resume to continue.") from None
