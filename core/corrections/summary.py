"""What a correction round leaves for people: refined/corrections.json, refined/corrections.png
(before | after for the corrected views and the views that changed most) and the report section."""

from __future__ import annotations

import datetime as _dt
import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..run_layout import RunLayout
from ..schema import IGNORE
from ..types import POSE_BUCKETS, pose_bucket

JSON_FILE = "corrections.json"
SHEET_FILE = "corrections.png"
MAX_PROPAGATED_ROWS = 6


def _bucket(sample: dict) -> str:
    yaw = sample.get("yaw")
    return "unposed" if not isinstance(yaw, (int, float)) else pose_bucket(yaw)


def _gt_scores(run, names: list[str], labels: dict[str, np.ndarray]) -> dict | None:
    """mIoU overall and per pose bucket of `labels` at `names` against RUN/gt/, None without GT."""
    from ..io.labels import read_labels
    from ..metrics import evaluate_labels

    have = [n for n in names if run.layout.gt_label(n).is_file()]
    if not have:
        return None
    gt = np.stack([read_labels(run.layout.gt_label(n), run.schema) for n in have])
    yaw = [run.sample(n).get("yaw") for n in have]
    yaw = None if any(y is None for y in yaw) else np.asarray(yaw, np.float64)
    m = evaluate_labels(np.stack([labels[n] for n in have]), gt, yaw, run.schema)
    out = {"all": m["miou"], "n_views": len(have)}
    for b, v in m["buckets"].items():
        out[b] = v["miou"]
        out[f"{b}_views"] = v["n_views"]
    return out


def round_summary(run, edited, outcome, before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                  options) -> dict:
    """One round's record: who was corrected, how much every other view changed (per pose bucket)
    and, when the run has GT, mIoU of the views NOT corrected before and after."""
    views = {}
    for s in run.samples:
        n = s["name"]
        views[n] = {"status": outcome.status[n], "changed": round(outcome.changed[n], 6), "bucket": _bucket(s),
                    "source": s.get("source", "input"), "yaw": s.get("yaw")}
    buckets = {}
    for b in list(POSE_BUCKETS) + ["unposed"]:
        rows = [v for v in views.values() if v["bucket"] == b and v["status"] != "corrected"]
        if rows:
            buckets[b] = {"views": len(rows), "propagated": sum(v["status"] == "propagated" for v in rows),
                          "mean_changed": round(float(np.mean([v["changed"] for v in rows])), 6),
                          "max_changed": round(float(np.max([v["changed"] for v in rows])), 6)}
    others = [n for n in run.names if outcome.status[n] != "corrected"]
    gt_before, gt_after = _gt_scores(run, others, before), _gt_scores(run, others, after)
    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "edited": Path(edited.source).name,
        "corrected": outcome.corrected,
        "all_corrected": [n for n in run.names if outcome.status[n] == "corrected"],
        "method": options.method, "weight": options.weight, "others": options.others,
        "seconds": dict(outcome.seconds),
        "buckets": buckets,
        "gt_uncorrected": None if gt_before is None else {"before": gt_before, "after": gt_after},
        "views": views,
    }


def _sheet(run, rows: list[str], before, after, status) -> np.ndarray:
    from ..figures import contact_sheet
    from ..io.labels import read_image

    pics, labels = [], []
    for n in rows:
        s = run.sample(n)
        img = read_image(run.file(s, "image"))
        diff = before[n] != after[n]
        change = np.full(after[n].shape + (3,), 40, np.uint8)
        change[diff] = run.schema.colorize(after[n])[diff]
        change[diff & ((after[n] == 0) | (after[n] == IGNORE))] = 255  # to background / ignore: white
        pics.append([img, run.schema.colorize(before[n]), run.schema.colorize(after[n]), change])
        yaw = s.get("yaw")
        pose = "" if not isinstance(yaw, (int, float)) else f"\nyaw {int(round(yaw)):+d}°"
        labels.append(f"{n}{pose}\n{status[n]}, {100 * diff.mean():.1f} % changed")
    return contact_sheet(pics, ["RGB (render)", "before", "after", "changed\n(white: to background)"],
                         labels, tile_height=128)


def write_summary(folder: Path, run, summary: dict, before, after, status, changed) -> None:
    """refined/corrections.json (every round, this one last) and refined/corrections.png into `folder`."""
    from ..figures import save_png
    from ..io.atomic import write_text

    old = run.refined / JSON_FILE
    rounds = []
    if old.is_file():
        try:
            rounds = list(json.loads(old.read_text()).get("rounds", []))
        except (OSError, ValueError, AttributeError):
            rounds = []
    summary["round"] = len(rounds) + 1
    write_text(folder / JSON_FILE, json.dumps({"rounds": rounds + [summary]}, indent=1))
    prop = sorted((n for n in run.names if status[n] == "propagated"), key=lambda n: -changed[n])
    rows = list(summary["corrected"]) + prop[:MAX_PROPAGATED_ROWS]
    save_png(folder / SHEET_FILE, _sheet(run, rows, before, after, status))


def _table(header: list[str], rows: list[list[str]]) -> str:
    cell = "".join
    head = cell(f"<th>{html.escape(c)}</th>" for c in header)
    body = cell("<tr>" + cell(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * v:.1f}"


def report_section(run_dir: Path, pics: Path) -> str:
    """HTML for the run report ('' when the run was never corrected); copies the sheet into `pics`."""
    path = RunLayout(run_dir).refined / JSON_FILE
    try:
        rounds = json.loads(path.read_text())["rounds"]
        last = rounds[-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""
    parts = [f"<h2>Corrections</h2><p>{len(rounds)} round(s) of hand corrections; the last (round "
             f"{html.escape(str(last.get('round')))}) corrected {len(last.get('corrected', []))} view(s): "
             f"{html.escape(', '.join(last.get('corrected', [])))}. All corrected views: "
             f"{len(last.get('all_corrected', []))}. Method {html.escape(str(last.get('method')))}, weight "
             f"{html.escape(str(last.get('weight')))}, took {last.get('seconds', {}).get('relabel', 0) + last.get('seconds', {}).get('render', 0):.1f} s "
             "(class head + re-render; geometry and RGB unchanged). The metrics above are the refine's, "
             "before any correction; this table scores only the views nobody corrected.</p>"]
    gt = last.get("gt_uncorrected") or {}
    rows = []
    for b, v in (last.get("buckets") or {}).items():
        row = [b, str(v.get("views")), str(v.get("propagated")), _pct(v.get("mean_changed")), _pct(v.get("max_changed"))]
        if gt:
            row += [_pct(gt.get("before", {}).get(b)), _pct(gt.get("after", {}).get(b))]
        rows.append(row)
    head = ["pose bucket", "views not corrected", "propagated (labels changed)", "mean changed pixels (%)",
            "max changed pixels (%)"] + (["mIoU before (%)", "mIoU after (%)"] if gt else [])
    parts.append(_table(head, rows))
    sheet = RunLayout(run_dir).refined / SHEET_FILE
    if sheet.is_file():
        shutil.copyfile(sheet, Path(pics) / SHEET_FILE)
        parts.append(f'<img src="report/{SHEET_FILE}" alt="corrected and most-changed views, before and after">')
    return "".join(parts)
