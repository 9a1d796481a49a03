"""Benchmark of `splatrefine correct` on a synthetic head: do hand corrections spread to other views?

One refined run of a procedural head (exact GT), demo-like but small (128 px, 1500 fit steps,
about 3 minutes on 2 cores). For each k: copy the run, replace the k least confident views
(`export`'s order) by their GT in an edited Segmentation mask 1.1 zip, run `correct`, and score
the views that were NOT corrected against GT per pose bucket, before and after. `batch` corrects
the k views in one round; `sequential` runs k rounds of one view each, re-ranking after each
round as a person would with `export --worst 1`; `ceiling` corrects every input view except every
4th (k is ignored) and scores those held out and the novel views: how far corrections can carry at
all through this run's geometry. Each row also sorts the wrong pixels of the uncorrected views per
bucket into silhouette (foreground against background), boundary (the pixel touches a change of
GT label) and interior. Goal (issue 22): k = 2 lifts the uncorrected extreme-pose views by >= 5
mIoU points and lowers no bucket.

    python bench/corrections.py --out bench/results/corrections.json
    python bench/corrections.py --run RUN --ks 2 --methods vote fit --weights 5 20 50 --protocols batch
    python bench/corrections.py --aggregator transfer --ks 2 --protocols batch ceiling

With several `--run`s (e.g. the refine runs of an extreme-pose experiment, whose initial parser is
the frontal-only trained baseline: `--run runs/X/refine/bisenet-argmax/id_*`) every setting is
run on each and a last table gives the mean over runs and the smallest change of any run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

BUCKETS = ("frontal", "mid", "extreme")


def refine_config(iterations: int, seed: int, aggregator: str = "argmax") -> dict:
    return {"seed": seed, "device": "cpu", "initial_parser": {"plugin": "simulated"},
            # flat-coloured procedural heads: the demo's settings (examples/configs/demo.yaml, docs/dual_gs.md)
            "representation": {"plugin": "dual-gs", "params": {
                "iterations": iterations, "init_points": 3000, "class_moves_geometry": True,
                "max_gaussians": 20000, "depth_variance_weight": 0.0}},
            "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 8, "pitch_count": 1}},
            "label_aggregator": {"plugin": aggregator}, "target_parser": {"plugin": "bisenet"}}


def make_run(work: Path, resolution: int, iterations: int, seed: int, identity_seed: int,
             aggregator: str = "argmax") -> tuple[Path, float]:
    from splatrefine.plugins.synthetic import write_synthetic
    from splatrefine.progress import set_progress_enabled
    from splatrefine.refine import run_refine

    set_progress_enabled(False)
    cap = write_synthetic(work / "caps", identities=1, seed=identity_seed, rig="facescape-like",
                          resolution=resolution)[0]
    cfg = work / "refine.yaml"
    cfg.write_text(yaml.safe_dump(refine_config(iterations, seed, aggregator)))
    t0 = time.perf_counter()
    run_refine(capture=cap, demo=False, config_path=cfg, plugin_args=[], set_args=[], output=work / "run",
               resume=False, overwrite=False, device="cpu", quiet=True)
    return work / "run", time.perf_counter() - t0


def gt_labels(run) -> dict[str, np.ndarray]:
    from splatrefine.io.labels import read_labels

    return {n: read_labels(run.path / "gt" / f"{n}.png", run.schema) for n in run.names}


def bucket_scores(run, names: list[str], labels: dict, gt: dict) -> dict:
    from splatrefine.metrics import evaluate_labels

    yaw = np.array([run.sample(n)["yaw"] for n in names], np.float64)
    m = evaluate_labels(np.stack([labels[n] for n in names]), np.stack([gt[n] for n in names]), yaw, run.schema)
    out = {b: (None if b not in m["buckets"] else m["buckets"][b]["miou"]) for b in BUCKETS}
    out["all"] = m["miou"]
    out["views"] = {b: m["buckets"].get(b, {}).get("n_views", 0) for b in BUCKETS}
    return out


def error_anatomy(run, names: list[str], labels: dict, gt: dict) -> dict:
    """Per bucket, the share of wrong pixels (GT not 255) on the silhouette (one of prediction and GT
    is background, the other not), on a GT label boundary, and in the interior of a GT region."""
    from splatrefine.corrections.runs import near_boundary
    from splatrefine.types import pose_bucket

    counts: dict[str, np.ndarray] = {}
    for n in names:
        pred, true = labels[n], gt[n]
        wrong = (pred != true) & (true != 255)
        silhouette = wrong & ((pred == 0) != (true == 0))
        boundary = wrong & ~silhouette & near_boundary(true, 1)
        c = counts.setdefault(pose_bucket(run.sample(n)["yaw"]), np.zeros(3))
        c += [silhouette.sum(), boundary.sum(), (wrong & ~silhouette & ~boundary).sum()]
    return {b: dict(zip(("silhouette", "boundary", "interior"), (c / max(c.sum(), 1)).round(4).tolist()))
            for b, c in counts.items()}


def one_case(base: Path, work: Path, k: int, method: str, weight: float, others: str, source: str,
             prior: float = 1.0, protocol: str = "batch") -> dict:
    """batch: one edited zip with the k least confident views; sequential: k rounds of 'export the
    least confident view not yet corrected, correct it' (each round sees the previous one's result)."""
    from splatrefine.corrections.edited import read_edited
    from splatrefine.corrections.export import cvat_mask_files, select_views, write_files
    from splatrefine.corrections.propagate import CorrectOptions, correct_run
    from splatrefine.corrections.runs import open_run
    from splatrefine.registry import Registry

    run_dir = work / f"k{k}_{method}_{weight:g}_{others}_{prior:g}_{protocol}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(base, run_dir)
    run = open_run(run_dir)
    gt = gt_labels(run)
    before = {n: run.labels(n) for n in run.names}
    options = CorrectOptions(weight=weight, others=others, method=method, prior=prior, device="cpu")
    if protocol == "ceiling":
        inputs = [n for n in run.names if run.sample(n).get("source", "input") == "input"]
        rounds = [[n for i, n in enumerate(inputs) if i % 4]]
    elif protocol == "batch":
        rounds = [select_views(run, source=source, worst=k).names]
    else:
        rounds = [None] * k
    chosen: list[str] = []
    timing = {"relabel": 0.0, "render": 0.0}
    t0 = time.perf_counter()
    for i, names in enumerate(rounds):
        current = open_run(run_dir)
        if names is None:
            names = [n for n in select_views(current, source=source).names if n not in chosen][:1]
        chosen += names
        zpath = work / f"edited_k{k}_{i}.zip"
        write_files(cvat_mask_files(current, names, {n: gt[n] for n in names}), zpath)
        out = correct_run(current, read_edited(zpath, current), Registry(), options)
        for key in timing:
            timing[key] += out.seconds[key]
    seconds = time.perf_counter() - t0
    after_run = open_run(run_dir)
    after = {n: after_run.labels(n) for n in after_run.names}
    others_names = [n for n in run.names if n not in chosen]
    row = {"k": k, "protocol": protocol, "method": method, "weight": weight, "prior": prior, "others": others,
           "corrected": chosen, "corrected_yaw": [run.sample(n)["yaw"] for n in chosen],
           "before": bucket_scores(run, others_names, before, gt),
           "after": bucket_scores(run, others_names, after, gt),
           "errors_after": error_anatomy(run, others_names, after, gt),
           "seconds": round(seconds, 2), "timing": timing,
           "status": {s: sum(v == s for v in out.status.values()) for s in ("corrected", "propagated", "unchanged")}}
    row["delta"] = {b: (None if row["before"][b] is None else 100 * (row["after"][b] - row["before"][b]))
                    for b in list(BUCKETS) + ["all"]}
    shutil.rmtree(run_dir)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| k | protocol | method | weight | prior | corrected (yaw) | " + " | ".join(f"{b} before -> after" for b in BUCKETS)
             + " | all | time (s) | extreme wrong px: silhouette / boundary / interior |", "|---" * (len(BUCKETS) + 9) + "|"]
    for r in rows:
        yaws = ", ".join(f"{y:+.0f}" for y in r["corrected_yaw"])
        if len(r["corrected_yaw"]) > 6:
            yaws = f"{len(r['corrected_yaw'])} views"
        e = r.get("errors_after", {}).get("extreme")
        anatomy = "n/a" if e is None else " / ".join(f"{100 * e[key]:.0f}%" for key in ("silhouette", "boundary", "interior"))
        cells = []
        for b in list(BUCKETS) + ["all"]:
            if r["before"][b] is None:
                cells.append("n/a")
            else:
                cells.append(f"{100 * r['before'][b]:.1f} -> {100 * r['after'][b]:.1f} ({r['delta'][b]:+.1f})")
        lines.append(f"| {r['k']} | {r['protocol']} | {r['method']} | {r['weight']:g} | {r['prior']:g} | {yaws} | " + " | ".join(cells)
                     + f" | {r['timing']['relabel'] + r['timing']['render']:.1f} | {anatomy} |")
    return "\n".join(lines)


def mean_table(rows: list[dict]) -> str:
    """Per setting, the mean over runs of each bucket's mIoU before -> after, and the smallest change
    of any run (the goal's "lowers no bucket" is about each run, not the mean)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["k"], r["protocol"], r["method"], r["weight"], r["prior"]), []).append(r)
    lines = ["| k | protocol | method | weight | prior | runs | " + " | ".join(f"{b}: mean before -> after (min change)"
                                                                        for b in list(BUCKETS) + ["all"])
             + " | time (s) |", "|---" * (len(BUCKETS) + 8) + "|"]
    for (k, protocol, method, weight, prior), rs in groups.items():
        cells = []
        for b in list(BUCKETS) + ["all"]:
            pairs = [(r["before"][b], r["after"][b]) for r in rs if r["before"][b] is not None]
            if not pairs:
                cells.append("n/a")
                continue
            before = 100 * float(np.mean([p[0] for p in pairs]))
            after = 100 * float(np.mean([p[1] for p in pairs]))
            worst = min(100 * (a - b0) for b0, a in pairs)
            cells.append(f"{before:.1f} -> {after:.1f} ({after - before:+.1f}, min {worst:+.1f})")
        seconds = float(np.mean([r["timing"]["relabel"] + r["timing"]["render"] for r in rs]))
        lines.append(f"| {k} | {protocol} | {method} | {weight:g} | {prior:g} | {len(rs)} | " + " | ".join(cells)
                     + f" | {seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--methods", nargs="+", default=["fit"], choices=["fit", "vote"])
    ap.add_argument("--weights", type=float, nargs="+", default=[100.0])
    ap.add_argument("--priors", type=float, nargs="+", default=[1.0])
    ap.add_argument("--protocols", nargs="+", default=["batch", "sequential"], choices=["batch", "sequential", "ceiling"],
                    help="batch: one zip of the k least confident views; sequential: k rounds of one view each; "
                         "ceiling: every input view but every 4th corrected")
    ap.add_argument("--others", default="refined", choices=["refined", "initial", "none"])
    ap.add_argument("--source", default="input", choices=["all", "input", "novel"],
                    help="views a person is shown (and may correct)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identity-seed", type=int, default=3)
    ap.add_argument("--aggregator", default="argmax", help="label_aggregator of the refine run (argmax, transfer, ...)")
    ap.add_argument("--run", type=Path, nargs="+", default=None,
                    help="reuse these refined runs instead of making one (each is copied, never changed)")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_corrections_") as tmp:
        work = Path(tmp) if args.work is None else args.work
        work.mkdir(parents=True, exist_ok=True)
        fit_s = None
        if args.run is None:
            base, fit_s = make_run(work, args.resolution, args.iterations, args.seed, args.identity_seed,
                                   args.aggregator)
            print(f"refined run: {fit_s:.1f} s", file=sys.stderr)
            bases = [base]
        else:
            bases = args.run
        rows = []
        for base in bases:
            for k in args.ks:
                for method in args.methods:
                    for w in args.weights:
                        for prior in args.priors:
                            for protocol in args.protocols:
                                rows.append(one_case(base, work, k, method, w, args.others, args.source, prior,
                                                     protocol))
                                rows[-1]["run"] = str(base)
                                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    if len(bases) > 1:
        print()
        print(mean_table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"settings": json.loads(json.dumps(vars(args), default=str)),
                                        "refine_seconds": fit_s, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
