"""How much the experiment's fine-tune result moves with the training seed alone.

    python bench/finetune_spread.py runs/extreme_pose                       # bisenet, refined, seeds 1-4
    python bench/finetune_spread.py runs/extreme_pose --target smp-unet --seeds 1 2 --workers 2

Takes a finished `splatrefine experiment` folder and fine-tunes its baseline on the same labels
again (the variant's dataset, the same schedule and data mix) with other seeds of the parser's
training (batch order, augmentation), then scores each on the test views. The data, the
baseline and the labels are the run's own, so the spread printed is the one of the fine-tune
alone: how far apart two runs of the experiment can land on the same labels. The run's own result
(the seed of its config) is the first row unless that seed is in --seeds (or the run has no
evaluation of the variant: then pass it). The fine-tuned parsers live in a temporary folder and
are dropped; the experiment folder only gains the variant's dataset when it lacks one.

To try another fine-tune schedule on the same labels, pass `--finetune steps=600` (any key of the
target's `finetune:` block, YAML values); the run's own row is then left out, it had the old one.

To compare two refine settings, copy the folder (`cp -al`), replace refine/KEY/id_* with the
other setting's runs, remove datasets/KEY-refined and eval/TARGET/VARIANT.json, and run this on
both folders with the same seeds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BUCKETS = ("frontal", "mid", "extreme")


def bucket_miou(metrics: dict) -> dict:
    return {b: metrics["buckets"][b]["miou"] for b in BUCKETS}


def finetune_seed(out: str, target_name: str, variant: str, seed: int, scratch: str,
                  overrides: dict | None = None) -> dict:
    """One fine-tune of the run's baseline on the variant's labels with `seed`; its test mIoU per
    bucket (a worker process job: module level, plain arguments)."""
    from splatrefine.datasets import LabelledDataset
    from splatrefine.metrics import evaluate_labels
    from splatrefine.plugins.extreme_pose.config import load_config
    from splatrefine.plugins.extreme_pose.stages import Workspace, dataset_roots, predict_test_set

    config, _ = load_config(Path(out) / "experiment.yaml")
    ws = Workspace(config, out)
    target = config.target(target_name)
    parser = ws.new_parser(target, ws.baseline_parser(target))
    ds = LabelledDataset(dataset_roots(ws, target, variant), ws.schema)
    t0 = time.perf_counter()
    parser.fit(ds, workdir=Path(scratch) / f"seed_{seed}", seed=seed, **{**target.finetune, **(overrides or {})})
    seconds = time.perf_counter() - t0
    _, gt, yaw, _ = ws.test_set
    miou = bucket_miou(evaluate_labels(predict_test_set(ws, parser), gt, yaw, ws.schema))
    return {"seed": seed, "miou": miou, "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", type=Path, help="a finished `splatrefine experiment` folder")
    ap.add_argument("--target", default="bisenet")
    ap.add_argument("--variant", default="refined")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--workers", type=int, default=2, help="fine-tunes side by side, one thread each")
    ap.add_argument("--finetune", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change the target's fine-tune schedule, e.g. steps=600 lr=0.0005")
    ap.add_argument("--out", type=Path, default=None, help="write the rows and the summary as JSON here")
    args = ap.parse_args()
    import yaml

    overrides = {}
    for item in args.finetune:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--finetune {item!r}: expected KEY=VALUE, e.g. steps=600")
        overrides[key] = yaml.safe_load(value)

    from splatrefine.plugins.extreme_pose.config import load_config
    from splatrefine.plugins.extreme_pose.stages import Workspace, dataset_roots
    from splatrefine.workers import run_jobs

    out = args.experiment
    config, _ = load_config(out / "experiment.yaml")
    ws = Workspace(config, out)
    target = config.target(args.target)
    evals = {v: ws.layout.eval_file(target.name, v, ".json") for v in ("baseline", args.variant)}
    for path in (ws.baseline_parser(target), evals["baseline"]):
        if not path.exists():
            raise SystemExit(f"{path} is missing: finish the experiment first "
                             f"(splatrefine experiment {out} --resume)")
    dataset_roots(ws, target, args.variant)  # written here once, if missing, before the workers read it
    base = bucket_miou(json.loads(evals["baseline"].read_text()))
    rows = []
    if config.seed not in args.seeds and evals[args.variant].is_file() and not overrides:
        rows.append({"seed": config.seed, "miou": bucket_miou(json.loads(evals[args.variant].read_text())),
                     "run": True})
    with tempfile.TemporaryDirectory(prefix="finetune_spread_") as scratch:
        jobs = [(str(out), target.name, args.variant, s, scratch, overrides) for s in args.seeds]
        rows += run_jobs(finetune_seed, jobs, args.workers, f"fine-tune {target.name}/{args.variant}",
                         serial_progress=False)
    for r in rows:
        r["delta"] = {b: 100 * (r["miou"][b] - base[b]) for b in BUCKETS}

    print(f"\n{target.name} / {args.variant}: mIoU points against the baseline "
          f"(frontal {100 * base['frontal']:.1f}, extreme {100 * base['extreme']:.1f})")
    print(f"{'seed':>6} {'frontal':>8} {'mid':>8} {'extreme':>8}")
    for r in rows:
        d = r["delta"]
        tag = "  (the run)" if r.get("run") else ""
        print(f"{r['seed']:>6} {d['frontal']:>+8.1f} {d['mid']:>+8.1f} {d['extreme']:>+8.1f}{tag}")
    summary = {}
    for b in BUCKETS:
        xs = [r["delta"][b] for r in rows]
        summary[b] = {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                      "min": min(xs), "max": max(xs)}
    for stat in ("mean", "sd", "min", "max"):
        print(f"{stat:>6} " + " ".join(f"{summary[b][stat]:>+8.1f}" if stat != "sd" else f"{summary[b][stat]:>8.1f}"
                                       for b in BUCKETS))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"experiment": str(out), "target": target.name, "variant": args.variant,
                                        "finetune_overrides": overrides,
                                        "baseline": base, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
