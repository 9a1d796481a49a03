"""The experiment's results: results.json (per target, per parser: scores per pose bucket and per
class, deltas against the baseline, goals; the refined label quality on the train identities;
timings) and its tables as results.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from splatrefine.run_layout import RunLayout
from splatrefine.types import POSE_BUCKETS, pose_bucket

from .config import (
    CORRECTED_VARIANT,
    GOAL_EXTREME_GAIN,
    GOAL_FRONTAL_DROP,
    PRIMARY_VARIANT,
    VARIANT_HELP,
    TargetSpec,
    refine_key,
)
from .stages import Workspace


def _scores(m: dict) -> dict:
    out = {"all": {"miou": m["miou"], "mean_f1": m["mean_f1"], "pixel_acc": m.get("pixel_acc")}}
    for b in POSE_BUCKETS:
        if b in m.get("buckets", {}):
            bm = m["buckets"][b]
            out[b] = {"miou": bm["miou"], "mean_f1": bm["mean_f1"], "pixel_acc": bm.get("pixel_acc"),
                      "n_views": bm.get("n_views")}
    return out


def collect_results(ws: Workspace, targets: list[TargetSpec], *, notes: Sequence[str], timings: dict[str, float],
                    wall_seconds: float) -> dict:
    """results.json: per target, per parser (baseline + variants) scores, per-class IoU, deltas,
    the refined label quality on the train identities, goals and timings (`timings`: seconds per
    finished stage; `wall_seconds`: the experiment's wall time so far)."""
    cfg, layout = ws.config, ws.layout
    res: dict[str, Any] = {
        "format": "splatrefine-experiment-results", "version": 1,
        "config": cfg.to_dict(), "notes": list(notes),
        "test_views": {b: 0 for b in POSE_BUCKETS}, "targets": {}, "refine": {},
    }
    _, _, yaw, _ = ws.test_set
    for y in yaw:
        res["test_views"][pose_bucket(y)] += 1
    for t in targets:
        rows = {}
        for v in ("baseline",) + t.variants:
            m = json.loads(layout.eval_file(t.name, v, ".json").read_text())
            rows[v] = {"scores": _scores(m), "per_class": m["per_class"],
                       "per_class_by_bucket": m.get("per_class_by_bucket", {}),
                       "description": VARIANT_HELP.get(v, "trained on frontal GT views only")}
            hist = layout.parser_dir(t.name, v) / "history.json"
            if hist.is_file():
                h = json.loads(hist.read_text())
                rows[v]["train"] = {"samples": h["samples"], "oversample": h.get("oversample", 1), "steps": h["steps"],
                                    "final_loss": h["loss"][-1] if h["loss"] else None,
                                    "precision": h.get("precision")}
        base = rows["baseline"]["scores"]
        for v in t.variants:
            s = rows[v]["scores"]
            rows[v]["delta"] = {b: {"miou": s[b]["miou"] - base[b]["miou"], "mean_f1": s[b]["mean_f1"] - base[b]["mean_f1"]}
                                for b in s if b in base}
        entry: dict[str, Any] = {"plugin": t.plugin, "params": t.params, "parsers": rows}
        if "extreme" in base and "frontal" in base:
            # the goal is the refined labels'; with the simulated clean-up it is reported alongside
            for v, key in ((PRIMARY_VARIANT, "goals"), (CORRECTED_VARIANT, "goals_corrected")):
                if v in t.variants:
                    entry[key] = _goals(rows[v]["delta"])
        res["targets"][t.name] = entry
        for v in t.variants:
            key = refine_key(t, v)
            if v == CORRECTED_VARIANT and f"{key}-corrected" not in res["refine"]:
                res["refine"][f"{key}-corrected"] = corrected_quality(ws, key)
            if key in res["refine"]:
                continue
            res["refine"][key] = refine_quality(ws, key)
    res["timings"] = dict(timings)
    res["total_seconds"] = round(sum(timings.values()), 1)
    res["wall_seconds"] = wall_seconds
    return res


def _goals(d: dict) -> dict:
    return {"extreme_gain": d["extreme"]["miou"], "extreme_gain_goal": GOAL_EXTREME_GAIN,
            "extreme_met": d["extreme"]["miou"] >= GOAL_EXTREME_GAIN,
            "frontal_change": d["frontal"]["miou"], "frontal_drop_goal": -GOAL_FRONTAL_DROP,
            "frontal_met": d["frontal"]["miou"] >= -GOAL_FRONTAL_DROP}


def refine_quality(ws: Workspace, key: str) -> dict:
    """Mean over train identities of the run metrics (initial / refined input / refined novel)."""
    acc: dict[str, dict[str, list[float]]] = {}
    for ident in ws.config.train_identities:
        p = RunLayout(ws.layout.run_dir(key, ident)).metrics
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


def corrected_quality(ws: Workspace, key: str) -> dict:
    """Mean over train identities of the simulated clean-up's scores: the labels of the views NOT
    corrected (input and new views) before and after `correct` (refined/corrections.json)."""
    acc: dict[str, dict[str, list[float]]] = {}
    for ident in ws.config.train_identities:
        p = RunLayout(ws.layout.corrected_dir(key, ident)).refined / "corrections.json"
        if not p.is_file():
            continue
        gt = json.loads(p.read_text())["rounds"][-1].get("gt_uncorrected") or {}
        for when in ("before", "after"):
            for b, v in (gt.get(when) or {}).items():
                if b == "all" or b in POSE_BUCKETS:
                    acc.setdefault(f"uncorrected_{when}", {}).setdefault(b, []).append(v)
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
    lines.append("The identities are procedural heads (`splatrefine synth` seeds) with exact GT at every view, not "
                 "real faces: a result here holds for real captures only once it holds on real scans too "
                 "(docs/real_scans.md).")
    lines.append("mIoU and mean F1 in percent over the test identities' views (background excluded); "
                 "deltas in percentage points against the baseline.")
    for note in res.get("notes", []):
        lines += ["", f"Note: {note}"]
    for name, t in res["targets"].items():
        rows = t["parsers"]
        lines += ["", f"## Target parser `{name}` ({t['plugin']})", ""]
        for key, what in (("goals", "refined labels"),
                          ("goals_corrected", "refined labels after the simulated clean-up (`corrected`)")):
            if key in t:
                g = t[key]
                lines.append(f"Goals (fine-tuned on {what} vs baseline): extreme {_signed(g['extreme_gain'])} "
                             f"points (goal >= +{100 * g['extreme_gain_goal']:.0f}: "
                             f"{'met' if g['extreme_met'] else 'NOT met'}); frontal {_signed(g['frontal_change'])} "
                             f"points (goal >= {100 * g['frontal_drop_goal']:.0f}: {'met' if g['frontal_met'] else 'NOT met'}).")
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
                precision = f", {tr['precision']}" if tr.get("precision") else ""
                extra = f" ({tr['samples']} training images{times}, {tr['steps']} steps{precision})"
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
                  "refined labels at the input views and at the sampled new views; uncorrected before / after "
                  "(KEY-corrected) = the views nobody corrected in the simulated clean-up, before and after it.",
                  ""]
        lines.append("| refine runs | labels | " + " | ".join(POSE_BUCKETS) + " | all |")
        lines.append("|---|---|" + "---|" * (len(POSE_BUCKETS) + 1))
        for key, q in res["refine"].items():
            for what in ("initial", "refined_input", "refined_novel", "uncorrected_before", "uncorrected_after"):
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


def write_results(ws: Workspace, targets: list[TargetSpec], *, notes: Sequence[str], timings: dict[str, float],
                  wall_seconds: float) -> None:
    """OUT/results.json, the figures (OUT/figures/) and OUT/results.md."""
    from splatrefine.io.atomic import write_text

    from .figures import write_figures

    results = collect_results(ws, targets, notes=notes, timings=timings, wall_seconds=wall_seconds)
    results["figures"] = write_figures(ws, targets, results, ws.layout.figures)
    write_text(ws.layout.results_json, json.dumps(results, indent=1))
    write_text(ws.layout.results_md, results_markdown(results))
