"""The experiment's configuration: the schema (ExperimentConfig, TargetSpec), its validation from a
YAML mapping, `--set` overrides, and the checks against the installed plugins.

The defaults are the reduced CPU scale; examples/extreme_pose/cpu.yaml spells them out (a test
checks that the two agree) and gpu.yaml is the full scale. Plugin names appear here only as
default data (which refine, target and initial parsers the YAML gets when it names none).
Variants of a target (what its baseline is fine-tuned on):

    refined         initial = baseline, dual-gs logits + argmax, fine-tune on refined labels (ours)
    raw             initial = baseline, fine-tune on its own raw labels at the input views
    palette         initial = baseline, dual-gs `mode: palette` + palette-cluster (the paper's way)
    simulated       initial = the `simulated` block's parser, argmax, fine-tune on refined labels
    simulated-raw   fine-tune on that parser's raw labels at the input views

Where the stages run is the `executor` block, as for `splatrefine batch --executor`:

    executor: {plugin: ray, params: {address: "head:6379"}}    # default: {} = defaults.yaml's (local)

An executor with a `workers` setting (local) gets the experiment's `workers` unless the block sets
it; the data stage's synthesis always runs on this machine. Neither `workers` nor `executor`
changes what a --resume must match.

No torch here: it is imported inside the checks that need it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splatrefine.errors import ConfigError, PluginError, SplatrefineError, did_you_mean
from splatrefine.plugins.synthetic.rigs import RIGS  # the identities are the synthetic plugin's heads
from splatrefine.roles import Role

VARIANTS = ("refined", "raw", "palette", "simulated", "simulated-raw", "corrected")
PRIMARY_VARIANT = "refined"
CORRECTED_VARIANT = "corrected"  # the refined labels after the simulated manual clean-up
VARIANT_HELP = {
    "refined": "fine-tuned on labels refined from the baseline's (dual-gs logits, argmax)",
    "raw": "fine-tuned on the baseline's raw labels at the input views (no refinement)",
    "palette": "fine-tuned on labels refined from the baseline's (dual-gs palette, palette-cluster)",
    "simulated": "fine-tuned on labels refined from the simulated parser's (dual-gs logits, argmax)",
    "simulated-raw": "fine-tuned on the simulated parser's raw labels at the input views",
    "corrected": "fine-tuned on the refined labels after a simulated manual clean-up: each identity's "
                 "least confident input views replaced by their GT and carried to every view by `correct`",
}
GOAL_EXTREME_GAIN = 0.20
GOAL_FRONTAL_DROP = 0.01
# seen only in frontal views: a stand-in for a public frontal face-parsing dataset
DEFAULT_FRONTAL_IDENTITIES = tuple(range(100, 124))
# the initial parser of the simulated variants when the `simulated` block names no plugin
SIMULATED_PARSER = "simulated"


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
    """The whole experiment; `config_from_dict` validates a YAML mapping into one (defaults = cpu.yaml)."""

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
    simulated: dict = field(default_factory=dict)  # {"params": {...}} and, when chosen, {"plugin": NAME}
    targets: tuple[TargetSpec, ...] = ()
    contact_views: int = 4
    refine_reports: bool = False
    finetune_min_yaw: float = 30.0
    finetune_oversample: int = 2
    finetune_corrected_views: int = 2  # the `corrected` variant: views per identity a person fixes
    workers: int | str = "auto"  # per-identity stages (data, refine) in parallel processes
    executor: dict = field(default_factory=dict)  # {"plugin": NAME, "params": {...}}; {} = the default executor

    def to_dict(self) -> dict:
        # `executor` only when one was chosen: a default run's experiment.yaml and results.json stay as they were
        chosen = {"executor": copy.deepcopy(self.executor)} if self.executor else {}
        return {
            "seed": self.seed, "device": self.device, "workers": self.workers, **chosen,
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
            "finetune": {"min_yaw": self.finetune_min_yaw, "oversample": self.finetune_oversample,
                         "corrected_views": self.finetune_corrected_views},
            "report": {"contact_views": self.contact_views, "refine_reports": self.refine_reports},
        }

    def results_dict(self) -> dict:
        """The settings that shape results: all but `workers` and `executor` (how many processes,
        and where, share the work)."""
        d = self.to_dict()
        d.pop("workers")
        d.pop("executor", None)
        return d

    def target(self, name: str) -> TargetSpec:
        return next(t for t in self.targets if t.name == name)


TOP_KEYS = ("seed", "device", "workers", "executor", "data", "refine", "palette", "simulated", "targets", "finetune", "report")
DATA_KEYS = ("rig", "resolution", "train_identities", "test_identities", "frontal_max_yaw", "frontal_identities")
TARGET_KEYS = ("name", "plugin", "params", "baseline", "finetune", "variants", "optional")
REPORT_KEYS = ("contact_views", "refine_reports")
REFINE_ROLES = ("representation", "view_sampler", "label_aggregator")

DEFAULT_REFINE = {
    "representation": {"plugin": "dual-gs", "params": {"iterations": 800, "init_points": 12000,
                                                       "max_gaussians": 40000,
                                                       "class_moves_geometry": False,
                                                       "confidence_weighting": False,
                                                       "class_balance": 0.5,
                                                       "depth_variance_weight": 0.0}},
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
     "variants": ["refined", "raw", "palette", "simulated", "corrected"]},
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


# small checks ----------------------------------------------------------------------------------
def check_keys(d: Any, allowed: Sequence[str], where: str) -> dict:
    """`d` as a dict (None -> {}); ConfigError naming `where` for a non-mapping or an unknown key."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown key '{k}'.{did_you_mean(str(k), allowed)}",
                              f"Known keys: {', '.join(allowed)}.")
    return dict(d)


def check_int(v: Any, where: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
        raise ConfigError(f"{where}: expected an integer, got {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ConfigError(f"{where}: {v} is below the minimum {lo}")
    return v


def check_ids(v: Any, where: str) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ConfigError(f"{where}: expected a non-empty list of identity numbers, got {v!r}")
    ids = tuple(check_int(x, f"{where}[{i}]", 0) for i, x in enumerate(v))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{where}: identity {dup[0]} is listed twice")
    return ids


def check_role_block(d: Any, where: str) -> dict:
    d = check_keys(d, ("plugin", "params"), where)
    if "params" in d and not isinstance(d["params"] or {}, dict):
        raise ConfigError(f"{where}.params: expected a mapping")
    return d


def merge_blocks(base: dict, over: dict) -> dict:
    """Deep merge of mappings (over wins); a role block whose 'plugin' changes drops base params."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            if "plugin" in v and v["plugin"] != out[k].get("plugin"):
                out[k] = copy.deepcopy(v)
            else:
                out[k] = merge_blocks(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# the YAML mapping -> ExperimentConfig ----------------------------------------------------------
def config_from_dict(data: dict | None, source: str = "config") -> ExperimentConfig:
    """Validate a YAML mapping (the layout of examples/extreme_pose/cpu.yaml) into a config.

    Missing keys take the reduced CPU-scale defaults. Raises ConfigError naming `source` and the key.
    """
    data = check_keys(data or {}, TOP_KEYS, source)
    d = check_keys(data.get("data"), DATA_KEYS, f"{source}: data")
    seed = check_int(data.get("seed", 0), f"{source}: seed")
    device = data.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: device must be auto, cpu or cuda, got {device!r}")
    workers = data.get("workers", "auto")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"{source}: workers must be auto or a whole number >= 1, got {workers!r}")
    executor = check_role_block(data.get("executor"), f"{source}: executor")
    if "plugin" in executor and (not isinstance(executor["plugin"], str) or not executor["plugin"]):
        raise ConfigError(f"{source}: executor.plugin: expected an executor's name (local, ray, ...), "
                          f"got {executor['plugin']!r}")
    if "params" in executor:
        executor["params"] = dict(executor["params"] or {})
    d = {**DEFAULT_DATA, **d}
    rig = d["rig"]
    if rig not in RIGS:
        raise ConfigError(f"{source}: data.rig {rig!r} is not one of {', '.join(RIGS)}.{did_you_mean(str(rig), RIGS)}")
    resolution = check_int(d["resolution"], f"{source}: data.resolution", 16)
    train = check_ids(d["train_identities"], f"{source}: data.train_identities")
    test = check_ids(d["test_identities"], f"{source}: data.test_identities")
    frontal = check_ids(d["frontal_identities"], f"{source}: data.frontal_identities") if d["frontal_identities"] else ()
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

    refine = merge_blocks(DEFAULT_REFINE, check_keys(data.get("refine"), REFINE_ROLES, f"{source}: refine"))
    for role in REFINE_ROLES:
        check_role_block(refine.get(role), f"{source}: refine.{role}")
    palette = merge_blocks(DEFAULT_PALETTE, check_keys(data.get("palette"), REFINE_ROLES, f"{source}: palette"))
    for role in REFINE_ROLES:
        check_role_block(palette.get(role), f"{source}: palette.{role}")
    given = check_role_block(data.get("simulated"), f"{source}: simulated")
    simulated: dict[str, Any] = {"params": dict(given.get("params") or {})}
    if "plugin" in given:
        if not isinstance(given["plugin"], str) or not given["plugin"]:
            raise ConfigError(f"{source}: simulated.plugin: expected an initial parser's name, got {given['plugin']!r}")
        simulated["plugin"] = given["plugin"]

    raw_targets = data.get("targets", copy.deepcopy(list(DEFAULT_TARGETS)))
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{source}: targets must be a non-empty list of target parsers")
    targets = []
    for i, t in enumerate(raw_targets):
        w = f"{source}: targets[{i}]"
        t = check_keys(t, TARGET_KEYS, w)
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
    rep = check_keys(data.get("report"), REPORT_KEYS, f"{source}: report")
    contact = check_int(rep.get("contact_views", 4), f"{source}: report.contact_views", 1)
    refine_reports = rep.get("refine_reports", False)
    if not isinstance(refine_reports, bool):
        raise ConfigError(f"{source}: report.refine_reports: expected true or false")
    ft = check_keys(data.get("finetune"), ("min_yaw", "oversample", "corrected_views"), f"{source}: finetune")
    min_yaw = ft.get("min_yaw", ExperimentConfig.finetune_min_yaw)
    if isinstance(min_yaw, bool) or not isinstance(min_yaw, (int, float)) or not 0 <= min_yaw < 90:
        raise ConfigError(f"{source}: finetune.min_yaw must be a number in [0, 90), got {min_yaw!r}")
    oversample = check_int(ft.get("oversample", ExperimentConfig.finetune_oversample), f"{source}: finetune.oversample", 1)
    corrected_views = check_int(ft.get("corrected_views", ExperimentConfig.finetune_corrected_views),
                                f"{source}: finetune.corrected_views", 1)
    return ExperimentConfig(seed, device, rig, resolution, train, test, float(fmy), frontal, refine, palette,
                            simulated, tuple(targets), contact, refine_reports, float(min_yaw), oversample,
                            corrected_views, workers, executor)


def apply_sets(data: dict, sets: Sequence[str]) -> dict:
    """`--set data.resolution=64` style overrides (values parsed as YAML) on a config mapping.
    A list index is a number: `--set targets.0.baseline.steps=10` (edits the default targets when
    the mapping has none)."""
    from splatrefine.config import apply_sets as apply_key_paths

    return apply_key_paths(data, sets, defaults={"targets": list(DEFAULT_TARGETS)}, example="data.resolution=64")


def load_config(path: Path | None, sets: Sequence[str] = ()) -> tuple[ExperimentConfig, dict]:
    """(validated config, the raw mapping after --set) from a YAML file (None: the defaults)."""
    from splatrefine.config import load_yaml

    data = load_yaml(path) if path is not None else {}
    data = apply_sets(data, sets)
    return config_from_dict(data, str(path) if path is not None else "config"), data


# what each variant refines with ----------------------------------------------------------------
def refine_key(target: TargetSpec, variant: str) -> str:
    """The refine runs a variant's labels come from (variants may share them: `refined` and `raw`
    read the same runs, and every target's simulated variants the same simulated runs)."""
    if variant in ("simulated", "simulated-raw"):
        return "simulated-argmax"
    return f"{target.name}-{'palette' if variant == 'palette' else 'argmax'}"


def simulated_parser(config: ExperimentConfig) -> str:
    """The initial parser of the simulated variants: the `simulated` block's plugin, else SIMULATED_PARSER."""
    return str(config.simulated.get("plugin", SIMULATED_PARSER))


def refine_run_data(config: ExperimentConfig, target: TargetSpec, variant: str, baseline_parser: Path) -> dict:
    """The refine config mapping (the layout of `splatrefine refine -c`) of one variant: the
    experiment's refine block (merged with the palette block for `palette`), and as initial parser
    the simulated block's parser or the target's baseline loaded from `baseline_parser`."""
    base = config.refine if variant != "palette" else merge_blocks(config.refine, config.palette)
    data: dict[str, Any] = {role: copy.deepcopy(base[role]) for role in REFINE_ROLES}
    data["seed"] = config.seed
    data["device"] = config.device
    data["target_parser"] = {"plugin": target.plugin, "params": dict(target.params)}
    if variant.startswith("simulated"):
        data["initial_parser"] = {"plugin": simulated_parser(config),
                                  "params": dict(config.simulated.get("params") or {})}
    else:
        data["initial_parser"] = {"plugin": target.plugin,
                                  "params": {**target.params, "checkpoint": str(baseline_parser)}}
    return data


# against the installed plugins -----------------------------------------------------------------
def build_executor(config: ExperimentConfig, registry: Any, workers: int) -> Any:
    """The executor that runs the stages' jobs (not yet started): the `executor` block's plugin
    and params, else the default executor (defaults.yaml: `local`). An executor with a `workers`
    setting the block leaves out gets `workers` (the experiment's `workers`, resolved)."""
    import dataclasses

    from splatrefine.defaults import default_executor
    from splatrefine.executors import ExecutorRegistry

    executors = ExecutorRegistry(registry.manager)
    name = str(config.executor.get("plugin") or default_executor())
    params = dict(config.executor.get("params") or {})
    if "workers" in {f.name for f in dataclasses.fields(executors.get(name).config_cls)}:
        params.setdefault("workers", workers)
    return executors.build(name, params)


def active_targets(config: ExperimentConfig, registry: Any) -> tuple[list[TargetSpec], list[str]]:
    """Targets to run, and notes on the optional ones left out: an optional target whose plugin is
    not installed, or whose component cannot be built here (its factory raises a PluginError: a
    missing dependency, such as segmentation-models-pytorch for `smp`). A missing non-optional
    target is a PluginError (with did-you-mean)."""
    out, notes = [], []
    for t in config.targets:
        if t.optional and t.plugin not in registry.names(Role.TARGET_PARSER):
            notes.append(f"target '{t.name}' skipped: no target_parser plugin '{t.plugin}' is installed")
            continue
        registry.get(Role.TARGET_PARSER, t.plugin)  # raises, with did-you-mean
        if t.optional:
            try:
                registry.context(device="cpu", seed=config.seed).component(
                    Role.TARGET_PARSER, t.plugin, dict(t.params), where=f"targets '{t.name}' params")
            except PluginError as exc:
                notes.append(f"target '{t.name}' skipped: {exc.message}" + (f". {exc.hint}" if exc.hint else ""))
                continue
        out.append(t)
    return out, notes


def validate(config: ExperimentConfig, registry: Any) -> tuple[list[TargetSpec], list[str]]:
    """Check every plugin and setting the experiment will use, before anything is written.
    Returns active_targets()."""
    from splatrefine.config import build_settings, resolve
    from splatrefine.training import train_options

    targets, notes = active_targets(config, registry)
    if not targets:
        raise SplatrefineError("no target parser to run: every target is optional and missing", "; ".join(notes))
    build_executor(config, registry, 1)
    for t in targets:
        spec = registry.get(Role.TARGET_PARSER, t.plugin)
        build_settings(spec.config_cls, dict(t.params), f"targets '{t.name}' params")
        for what in ("baseline", "finetune"):
            try:
                train_options(build_settings(spec.config_cls, dict(t.params), t.name), getattr(t, what))
            except ConfigError as exc:
                raise ConfigError(f"targets '{t.name}' {what}: {exc.message}", exc.hint) from None
        for v in t.variants:
            if v.startswith("simulated"):
                registry.get(Role.INITIAL_PARSER, simulated_parser(config))
            data = refine_run_data(config, t, v, Path("baseline-parser"))
            resolve(registry, data, source=f"experiment refine config for '{t.name}/{v}'")
    return targets, notes
