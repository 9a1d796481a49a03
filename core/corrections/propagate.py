"""`splatrefine correct RUN EDITED`: hand corrections become ground truth and spread through the 3D model.

1. Read the edited masks (edited.py); a view whose mask differs from its refined labels is
   *corrected* (views corrected in an earlier round stay corrected).
2. Update the class head of the run's model with the representation's `relabel` capability
   (splatrefine.roles.Relabelable): corrected views weigh `weight` (and vote as one), every other
   view's labels as the refine rendered them weigh 1 (or the initial parser's labels, or nothing:
   `others`).
3. Re-render every view with the new head and aggregate; corrected views keep the person's labels.
   An observing aggregator (`transfer`) is shown the input views as refine showed them, with the
   corrected views' labels in place of the parser's, so it carries the corrections too.
4. Write the new refined/ aside and swap it in; the model's new head replaces model/model.pt
   (the first pre-correction model is kept as model/model.before-corrections.pt, and every later
   round starts from it with all corrections so far, so rounds do not compound).

The manifest marks each view `corrected`, `propagated` (its labels changed) or `unchanged`;
refined/corrections.json and refined/corrections.png record the round (summary.py). Everything that
can be checked is checked before anything is written.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SplatrefineError
from ..roles import ComponentContext, ObservingAggregator, PlyExporter, Relabelable, RelabelerProvider, Role
from ..schema import IGNORE
from .edited import Edited
from .runs import RefinedRun

log = logging.getLogger(__name__)

OTHERS = ("refined", "initial", "none")
RENDER_CHUNK = 8
BACKUP = "model.before-corrections.pt"


@dataclass
class CorrectOptions:
    weight: float = 100.0  # corrected views' weight against 1 for the others (bench/corrections.py)
    others: str = "refined"
    method: str = "fit"  # docs/corrections.md: never lowered a bucket on the three benchmarks
    prior: float = 1.0  # how strongly every view anchors what it sees to the current class head
    device: str | None = None


@dataclass
class Outcome:
    corrected: list[str]
    status: dict[str, str]
    changed: dict[str, float]  # fraction of pixels whose label changed
    seconds: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def _components(run: RefinedRun, registry: Any, options: CorrectOptions) -> tuple[Any, Any, Any, str]:
    """(representation, relabeler, a function making a fresh aggregator, representation name) as the
    run's config.yaml chose them."""
    import yaml

    from ..config import resolve
    from ..devices import resolve_device

    cfg_path = run.layout.config
    if not cfg_path.is_file():
        raise SplatrefineError(f"{cfg_path}: missing; correct rebuilds the run's components from it",
                               "Correct a run folder written by 'splatrefine refine'.")
    data = yaml.safe_load(cfg_path.read_text()) or {}
    if options.device:
        data["device"] = options.device
    config = resolve(registry, data, [], [], source=str(cfg_path))
    ctx = ComponentContext(device=resolve_device(config.device), seed=config.seed, registry=registry)
    rname = config.plugins[Role.REPRESENTATION]
    rep = ctx.component(Role.REPRESENTATION, rname, config.settings[Role.REPRESENTATION])

    def make_agg():
        return ctx.component(Role.LABEL_AGGREGATOR, config.plugins[Role.LABEL_AGGREGATOR],
                             config.settings[Role.LABEL_AGGREGATOR])

    if isinstance(rep, Relabelable):
        relabeler = rep
    elif isinstance(rep, RelabelerProvider):
        relabeler = rep.relabeler(method=options.method, prior=options.prior, seed=config.seed)
    else:
        raise SplatrefineError(f"{cfg_path}: representation '{rname}' cannot update its class head (no relabel)",
                               "Corrections propagate only through representations that implement "
                               "splatrefine.roles.Relabelable or RelabelerProvider.")
    return rep, relabeler, make_agg, rname


def _others(run: RefinedRun, names: list[str], mode: str) -> dict[str, np.ndarray]:
    from ..io.labels import read_labels

    if mode == "refined":
        return {n: run.labels(n) for n in names}
    if mode == "initial":
        out = {}
        for n in names:
            p = run.layout.initial_label(n)
            if p.is_file():
                out[n] = read_labels(p, run.schema)
        return out
    return {}


class Observations:
    """What an observing aggregator (splatrefine.roles.ObservingAggregator) is shown, as the engine
    shows it: the initial parser's probabilities [H,W,K] at the input views, and for the corrected
    views their corrected labels as one-hot probabilities (the parser's where they are 255)."""

    def __init__(self, run: RefinedRun, truth: dict[str, np.ndarray]):
        path = run.layout.initial_probs
        self.inputs = [s["name"] for s in run.samples if s.get("source", "input") == "input"]
        self.initial = np.load(path, mmap_mode="r") if path.is_file() else None
        if self.initial is not None and self.initial.shape[0] != len(self.inputs):
            raise SplatrefineError(f"{path}: {self.initial.shape[0]} views but refined/ has {len(self.inputs)} "
                                   "input views", "The run folder is inconsistent; rerun refine.")
        self.K = run.schema.num_classes
        self.truth = truth

    @property
    def names(self) -> set[str]:
        return (set(self.inputs) if self.initial is not None else set()) | set(self.truth)

    def get(self, names: list[str]) -> np.ndarray:
        out = []
        for n in names:
            if self.initial is not None and n in self.inputs:
                base = np.moveaxis(np.asarray(self.initial[self.inputs.index(n)], np.float32), 0, -1)
            else:
                base = None
            lab = self.truth.get(n)
            if lab is not None:
                valid = lab != IGNORE
                onehot = np.eye(self.K, dtype=np.float32)[np.where(valid, lab, 0)]
                if base is None:
                    base = np.full(onehot.shape, 1.0 / self.K, np.float32)
                base = np.where(valid[..., None], onehot, base)
            out.append(base)
        return np.stack(out)


def _chunks(names: list[str]):
    for s in range(0, len(names), RENDER_CHUNK):
        yield names[s:s + RENDER_CHUNK]


def _render_all(run: RefinedRun, rep: Any, make_agg: Any, model: Any, names: list[str],
                observations: Observations | None) -> tuple[dict, dict]:
    """Aggregated labels and confidence [H,W] by view name for `names` (one size), rendered a
    chunk at a time; an observing aggregator is first shown every observed view of that size."""
    agg = make_agg()
    observed: set[str] = set()
    if observations is not None and isinstance(agg, ObservingAggregator):
        size = run.labels(names[0]).shape
        observed = {n for n in observations.names if run.labels(n).shape == size}
        for chunk in _chunks([n for n in run.names if n in observed]):
            renders = rep.render(model, run.cameras(chunk))
            renders.observed = observations.get(chunk)
            renders.trusted = np.array([n in observations.truth for n in chunk])
            agg.observe(renders)
    labels, conf = {}, {}
    for group in ([n for n in names if n in observed], [n for n in names if n not in observed]):
        for chunk in _chunks(group):
            renders = rep.render(model, run.cameras(chunk))
            if observed:
                renders.observed = observations.get(chunk) if chunk[0] in observed else None
            lab, c = agg.aggregate(renders, run.schema)
            for i, n in enumerate(chunk):
                labels[n], conf[n] = lab[i], c[i]
    return labels, conf


def plan(run: RefinedRun, edited: Edited) -> tuple[list[str], list[str]]:
    """(views corrected in this round, all corrected views including earlier rounds)."""
    before = {s["name"] for s in run.samples if s.get("correction") == "corrected"}
    new = [n for n in run.names if n in edited.labels and not np.array_equal(edited.labels[n], run.labels(n))]
    return new, [n for n in run.names if n in before or n in new]


def correct_run(run: RefinedRun, edited: Edited, registry: Any, options: CorrectOptions | None = None) -> Outcome:
    from ..io.atomic import atomic_dir
    from ..io.labels import write_image, write_labels
    from ..run_record import write_manifest
    from .summary import round_summary, write_summary

    options = options or CorrectOptions()
    if options.others not in OTHERS:
        raise SplatrefineError(f"--others {options.others}: expected one of {', '.join(OTHERS)}")
    if not options.weight > 0:
        raise SplatrefineError(f"--weight {options.weight}: must be > 0")
    if not options.prior > 0:
        raise SplatrefineError(f"--prior {options.prior}: must be > 0")
    new, corrected = plan(run, edited)
    if not new:
        return Outcome([], {}, {}, summary={"note": "no edited mask differs from refined/; nothing to do"})
    layout = run.layout
    model_dir = layout.model
    if not layout.model_file.is_file():
        raise SplatrefineError(f"{layout.model_file}: missing; correct needs the fitted model",
                               f"Rerun: splatrefine refine CAPTURE -o {run.path} --resume")
    rep, relabeler, make_agg, _ = _components(run, registry, options)
    t0 = time.perf_counter()
    # every round starts from the model as refine left it, with every correction so far: rounds
    # do not compound (re-voting a voted head blurs it), and k rounds equal one round of k views
    first = model_dir / BACKUP if (model_dir / BACKUP).is_file() else layout.model_file
    model = rep.load(first)
    names = run.names
    current = {n: run.labels(n) for n in names}
    truth = {n: (edited.labels[n] if n in edited.labels else current[n]) for n in corrected}
    # views render in size groups (novel views may have their own size); the class head update
    # takes the group of the corrected views
    groups: dict[tuple[int, int], list[str]] = {}
    for n in names:
        groups.setdefault(current[n].shape, []).append(n)
    sizes = {truth[n].shape for n in truth}
    if len(sizes) > 1:
        raise SplatrefineError(f"{edited.source}: the corrected views have several sizes {sorted(sizes)}",
                               "Correct views of one size per round.")
    src = groups[sizes.pop()]
    rest = [n for n in src if n not in truth]
    if options.others == "refined" and first.name == BACKUP:
        # the labels refine rendered: the model before corrections, shown only the parser
        others = _render_all(run, rep, make_agg, model, rest, Observations(run, {}))[0] if rest else {}
    else:
        others = _others(run, rest, options.others)
    # every view takes part: a view without labels (255) still anchors what it sees to the current head
    blank = np.full_like(next(iter(truth.values())), IGNORE)
    labels = np.stack([truth[n] if n in truth else others.get(n, blank) for n in src])
    weights = np.array([options.weight if n in truth else (1.0 if n in others else 0.0) for n in src], np.float32)
    t1 = time.perf_counter()
    model = relabeler.relabel(model, run.cameras(src), labels, weights)
    t2 = time.perf_counter()
    new_labels, new_conf = {}, {}
    for group in groups.values():
        lab, conf = _render_all(run, rep, make_agg, model, group, Observations(run, truth))
        new_labels.update(lab)
        new_conf.update(conf)
    t3 = time.perf_counter()
    status, changed = {}, {}
    for n in names:
        if n in truth:
            new_labels[n] = truth[n]
            new_conf[n] = (truth[n] != IGNORE).astype(np.float32)
        changed[n] = float((new_labels[n] != current[n]).mean())
        status[n] = "corrected" if n in truth else ("propagated" if changed[n] > 0 else "unchanged")

    outcome = Outcome(new, status, changed)
    outcome.seconds = {"load": round(t1 - t0, 3), "relabel": round(t2 - t1, 3), "render": round(t3 - t2, 3)}
    summary = round_summary(run, edited, outcome, current, new_labels, options)
    with atomic_dir(run.refined) as tmp:
        shutil.copytree(run.refined, tmp, dirs_exist_ok=True)
        samples = []
        for sample in run.samples:
            n = sample["name"]
            write_labels(tmp / sample["labels"], new_labels[n], run.schema)
            write_image(tmp / sample["confidence"], (np.clip(new_conf[n], 0, 1) * 255 + 0.5).astype(np.uint8))
            samples.append({**sample, "correction": status[n], "changed": round(changed[n], 6),
                            "coverage": float((new_labels[n] != IGNORE).mean())})
        write_manifest(tmp, run.schema.name, samples, extra=run.manifest)
        write_summary(tmp, run, summary, current, new_labels, status, changed)
        if not (model_dir / BACKUP).exists():
            shutil.copy2(layout.model_file, model_dir / BACKUP)
        rep.save(model, layout.model_file)
        if isinstance(rep, PlyExporter) and layout.splats.exists():
            rep.export_ply(model, layout.splats)
    outcome.seconds["total"] = round(time.perf_counter() - t0, 3)
    outcome.summary = summary
    return outcome
