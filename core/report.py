"""The run report: RUN/report.html plus its pictures in RUN/report/*.png (relative links, so the
report opens offline and can be moved together with its folder).

`write_report(run_dir)` reads what the stages left in the run directory (layout in design.md) and
shows what is there: a summary table, mIoU per pose bucket, per-class IoU before/after, loss curves,
stage timings, and contact sheets per pose bucket (input views: RGB | initial | refined | GT |
error; novel views: RGB | refined | GT | error). Missing pieces degrade: a missing picture is an
'n/a' tile, a run without GT has no metrics sections (said once at the top), a run without a
history has no loss curves. The pictures folder and the HTML are each written atomically.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SplatrefineError
from .metrics import scored_against
from .run_layout import REPORT_DIR, RunLayout
from .schema import LabelSchema
from .types import GT_NAME, POSE_BUCKETS, pose_bucket

log = logging.getLogger(__name__)

MAX_SHEET_ROWS = 8
TILE_HEIGHT = 128
METRIC_SETS = (("initial", "initial parser (input views)"),
               ("refined_input", "refined (input views)"),
               ("refined_novel", "refined (novel views)"))
# history.json series that are not loss terms (plotted apart or not at all)
NOT_LOSSES = frozenset({"iteration", "gaussians", "seconds", "time", "elapsed", "step", "its", "epoch"})
BUCKET_TEXT = {"frontal": "frontal (|yaw| < 30°)", "mid": "mid (30° ≤ |yaw| < 60°)",
               "extreme": "extreme (|yaw| ≥ 60°)", "unposed": "no pose known"}
# the roles a refine runs (the target parser is trained later, by `splatrefine train`/`experiment`)
REFINE_ROLES = ("initial_parser", "representation", "view_sampler", "label_aggregator")
METRIC_DEFINITIONS = (
    "How the numbers are computed (splatrefine.metrics): per class, IoU = TP / (TP + FP + FN), with the "
    "pixels of all views of a set counted together. mIoU averages that IoU over the classes present in "
    "the prediction or the GT of the set, background excluded; a class absent from both is left out of "
    "the average, a class in the GT that is never predicted counts as 0. GT pixels marked 255 (ignore) "
    "are not scored; a refined pixel without a label (255) is a miss for its GT class. Pose buckets are "
    "by the camera's yaw relative to the face: frontal |yaw| < 30°, mid 30° ≤ |yaw| < 60°, extreme "
    "|yaw| ≥ 60° (yaw rounded to 10⁻⁶°, so a nominal 30° view is mid). Input views are scored against "
    "the capture's GT labels; novel views against GT rendered at their cameras, which only synthetic "
    "captures can do.")


@dataclass
class Sample:
    name: str
    source: str
    yaw: float | None
    pitch: float | None
    image: Path | None
    labels: Path | None
    coverage: float | None

    @property
    def bucket(self) -> str:
        return "unposed" if self.yaw is None else pose_bucket(self.yaw)


def _read_json(path: Path) -> Any | None:
    """The JSON at `path`, None when absent; SplatrefineError naming the file when malformed."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SplatrefineError(f"{path}: cannot read as JSON ({exc})",
                               "The run directory is damaged; rerun the stage that writes it.") from None


def _inside(base: Path, rel: Any, manifest: Path, what: str) -> Path | None:
    if rel is None:
        return None
    if not isinstance(rel, str) or not rel:
        raise SplatrefineError(f"{manifest}: {what} must be a relative path, got {rel!r}")
    p = (base / rel).resolve()
    if not p.is_relative_to(base.resolve()):
        raise SplatrefineError(f"{manifest}: {what} '{rel}' points outside {base}")
    return p


def _safe_name(name: Any, manifest: Path) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise SplatrefineError(f"{manifest}: sample name {name!r} is not a plain file name")
    return name


def _samples(run: Path) -> tuple[list[Sample], str | None]:
    manifest_path = RunLayout(run).refined_manifest
    manifest = _read_json(manifest_path)
    if manifest is None:
        return [], None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise SplatrefineError(f"{manifest_path}: expected {{'schema': ..., 'samples': [...]}}")
    base = RunLayout(run).refined
    out = []
    for i, s in enumerate(manifest["samples"]):
        if not isinstance(s, dict):
            raise SplatrefineError(f"{manifest_path}: sample {i} is not a mapping")
        name = _safe_name(s.get("name"), manifest_path)
        yaw, pitch, cov = s.get("yaw"), s.get("pitch"), s.get("coverage")
        out.append(Sample(
            name, str(s.get("source", "input")),
            float(yaw) if isinstance(yaw, (int, float)) else None,
            float(pitch) if isinstance(pitch, (int, float)) else None,
            _inside(base, s.get("image"), manifest_path, f"sample '{name}' image"),
            _inside(base, s.get("labels"), manifest_path, f"sample '{name}' labels"),
            float(cov) if isinstance(cov, (int, float)) else None,
        ))
    schema = manifest.get("schema")
    return out, schema if isinstance(schema, str) else None


def _schema(name: str | None, run: Path) -> LabelSchema:
    from .schema import CELEBAMASK_HQ, get_schema

    if name is None:
        cfg = _read_yaml(RunLayout(run).config) or {}
        name = cfg.get("schema") if isinstance(cfg, dict) else None
    if not name:
        return CELEBAMASK_HQ
    try:
        return get_schema(str(name))
    except Exception as exc:  # noqa: BLE001 - an unknown schema only costs the colours
        log.warning("report: unknown schema %r (%s); drawing labels with celebamask-hq colours", name, exc)
        return CELEBAMASK_HQ


def _read_yaml(path: Path) -> Any | None:
    import yaml

    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        log.warning("report: cannot read %s (%s)", path, exc)
        return None


def _load_image(path: Path | None) -> np.ndarray | None:
    from .io.labels import read_image

    if path is None or not path.is_file():
        return None
    try:
        return read_image(path)
    except SplatrefineError as exc:
        log.warning("report: %s", exc)
        return None


def _load_labels(path: Path | None, schema: LabelSchema) -> np.ndarray | None:
    from .io.labels import read_labels

    if path is None or not path.is_file():
        return None
    try:
        return read_labels(path, schema)
    except SplatrefineError as exc:
        log.warning("report: %s", exc)
        return None


def _pick(samples: list[Sample], n: int) -> list[Sample]:
    """At most n samples, spread evenly over the sorted yaw range."""
    ordered = sorted(samples, key=lambda s: (s.yaw if s.yaw is not None else 0.0, s.pitch or 0.0, s.name))
    if len(ordered) <= n:
        return ordered
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, n)).astype(int))
    return [ordered[i] for i in idx]


def _pose_text(s: Sample) -> str:
    if s.yaw is None:
        return s.name
    pitch = "" if s.pitch is None else f", pitch {int(round(s.pitch)):+d}°"
    return f"{s.name}\nyaw {int(round(s.yaw)):+d}°{pitch}"


def _sheet(run: Path, samples: list[Sample], schema: LabelSchema, novel: bool, gt_name: str) -> np.ndarray:
    from .figures import contact_sheet, error_map

    rows, labels = [], []
    for s in samples:
        refined = _load_labels(s.labels, schema)
        gt = _load_labels(RunLayout(run).gt_label(s.name), schema)
        err = None
        if refined is not None and gt is not None and refined.shape == gt.shape:
            err = error_map(refined, gt)
        row = [_load_image(s.image)]
        if not novel:
            initial = _load_labels(RunLayout(run).initial_label(s.name), schema)
            row.append(None if initial is None else schema.colorize(initial))
        row += [None if refined is None else schema.colorize(refined),
                None if gt is None else schema.colorize(gt), err]
        rows.append(row)
        labels.append(_pose_text(s))
    columns = ["RGB (render)", "refined", gt_name, "error"] if novel else \
        ["RGB (render)", "initial", "refined", gt_name, "error"]
    return contact_sheet(rows, columns, labels, tile_height=TILE_HEIGHT)


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) or math.isnan(v) else f"{100.0 * v:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str) -> str:
    return f'<img src="{REPORT_DIR}/{html.escape(name)}" alt="{html.escape(alt)}">'


def _numeric_series(values: Any) -> list[float] | None:
    if not isinstance(values, list) or not values:
        return None
    out = []
    for v in values:
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan"))
    return out


def loss_series(history: dict) -> dict[str, tuple[list[float], list[float]]]:
    """The loss terms of a history.json as {name: (iterations, values)}: every numeric series but
    the iteration, the Gaussian count, timings (NOT_LOSSES) and learning rates (lr*)."""
    it = _numeric_series(history.get("iteration"))
    out = {}
    for key, vals in history.items():
        if key in NOT_LOSSES or str(key).startswith("lr"):
            continue
        ys = _numeric_series(vals)
        if ys is not None:
            out[str(key)] = (it if it is not None and len(it) == len(ys) else [float(i) for i in range(len(ys))], ys)
    return out


def _settings_text(params: Any) -> str:
    """' (iterations=1500, count=24)' from a role's params, '' when there are none."""
    if not isinstance(params, dict) or not params:
        return ""
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return f" ({text if len(text) <= 300 else text[:297] + '...'})"


def _averaged_text(m: dict | None, schema: LabelSchema) -> str:
    """'17 of 18 classes (no hat)' for the classes a metric set's mIoU averaged."""
    per_class = (m or {}).get("per_class") or {}
    names = [c for c in schema.classes[1:] if c in per_class]
    missing = [c for c in schema.classes[1:] if c not in per_class]
    text = f"{len(names)} of {schema.num_classes - 1} classes"
    return text + (f" (absent from prediction and GT: {', '.join(missing)})" if missing else "")


def _bucket_miou(m: dict | None, bucket: str) -> float | None:
    if not isinstance(m, dict):
        return None
    if bucket == "all":
        v = m.get("miou")
    else:
        b = (m.get("buckets") or {}).get(bucket)
        if not isinstance(b, dict) or not b.get("n_views"):
            return None
        v = b.get("miou")
    return 100.0 * float(v) if isinstance(v, (int, float)) else None


def _headline(metrics: dict | None, gt_name: str) -> str:
    """'mIoU initial -> refined at the input views: frontal 64.0 % -> 80.0 %, ...' or ''."""
    if not metrics:
        return ""
    parts = []
    for b in POSE_BUCKETS:
        ini, ref = _bucket_miou(metrics.get("initial"), b), _bucket_miou(metrics.get("refined_input"), b)
        if ini is not None and ref is not None:
            parts.append(f"{b} {ini:.1f} % → {ref:.1f} %")
    line = "mIoU, initial → refined at the input views: " + ", ".join(parts) if parts else ""
    novel = _bucket_miou(metrics.get("refined_novel"), "all")
    if novel is not None:
        line += ("; " if line else "") + f"refined at the novel views: {novel:.1f} %"
    return line if not line or gt_name == GT_NAME else f"{line} (against {gt_name})"


def write_report(run_dir: Path) -> Path:
    """Write RUN/report.html and RUN/report/*.png from the run directory; -> the HTML path.

    Reads (each optional): refined/manifest.json (+ the images and labels it names), initial/labels/,
    gt/, metrics.json, model/history.json, stages.json, config.yaml.
    """
    from .figures import ERROR_COLOURS, bar_chart, line_chart, save_png
    from .io.atomic import atomic_dir, write_text

    run = Path(run_dir)
    if not run.is_dir():
        raise SplatrefineError(f"{run}: no such run directory", "Run 'splatrefine refine CAPTURE -o RUN' first.")
    samples, schema_name = _samples(run)
    schema = _schema(schema_name, run)
    layout = RunLayout(run)
    metrics = _read_json(layout.metrics)
    if metrics is not None and not isinstance(metrics, dict):
        raise SplatrefineError(f"{layout.metrics}: expected a mapping")
    history = _read_json(layout.history)
    stages = _read_json(layout.stages)
    config = _read_yaml(layout.config)
    record = _read_json(layout.record)
    capture = record.get("capture") if isinstance(record, dict) and isinstance(record.get("capture"), dict) else {}
    notes: list[str] = []
    parts: list[str] = []

    with atomic_dir(layout.report_dir) as pics:
        # -- summary ---------------------------------------------------------------------------
        n_in = sum(s.source == "input" for s in samples)
        n_nov = sum(s.source == "novel" for s in samples)
        rows = [["capture", str(capture.get("path") or "unknown (the run has no run.json)")],
                ["run directory", str(run.resolve())],
                ["label schema", f"{schema.name} ({schema.num_classes} classes)"],
                ["refined samples", f"{n_in} input views, {n_nov} novel views"]]
        if isinstance(record, dict) and record.get("splatrefine"):
            rows.append(["splatrefine version", str(record["splatrefine"])])
        for src, text in (("input", "input views"), ("novel", "novel views")):
            cov = [s.coverage for s in samples if s.source == src and s.coverage is not None]
            if cov:
                rows.append([f"mean label coverage, {text} (%)", f"{100 * float(np.mean(cov)):.1f}"])
        if isinstance(config, dict):
            for role in REFINE_ROLES:
                entry = config.get(role)
                if isinstance(entry, dict) and entry.get("plugin"):
                    rows.append([f"{role} plugin", str(entry["plugin"]) + _settings_text(entry.get("params"))])
            if "seed" in config:
                rows.append(["seed", str(config["seed"])])
        if metrics:
            for key, text in METRIC_SETS:
                m = metrics.get(key)
                if isinstance(m, dict):
                    rows.append([f"mIoU, {text} (%)", _pct(m.get("miou"))])
                    rows.append([f"mean F1, {text} (%)", _pct(m.get("mean_f1"))])
                    if "pixel_acc" in m:
                        rows.append([f"pixel accuracy, {text} (%)", _pct(m.get("pixel_acc"))])
        else:
            notes.append("This run has no ground truth (no metrics.json): metrics sections are skipped.")
        if not samples:
            notes.append("No refined samples (refined/manifest.json is missing): no contact sheets.")
        gt_name = scored_against(metrics or {})
        headline = _headline(metrics, gt_name)
        definitions = f"<p class='def'>{html.escape(METRIC_DEFINITIONS)}</p>" if metrics else ""
        if gt_name != GT_NAME:
            notes.append(f"The capture's labels are {gt_name} (capture.json \"labels_name\"): a parser made them, "
                         "nobody drew them. Every score and error column here is agreement with them, not accuracy.")
        parts.append("<h2>Summary</h2>" + (f"<p><b>{html.escape(headline)}</b></p>" if headline else "")
                     + definitions + _table(["item", "value"], rows))

        # -- metrics ---------------------------------------------------------------------------
        if metrics:
            groups = list(POSE_BUCKETS) + ["all"]
            series = {text: [_bucket_miou(metrics.get(key), b) for b in groups]
                      for key, text in METRIC_SETS if isinstance(metrics.get(key), dict)}
            save_png(pics / "miou_buckets.png", bar_chart(
                [BUCKET_TEXT.get(g, "all views") for g in groups], series,
                title="mIoU per pose bucket", ylabel="mIoU (%)"))
            trows = []
            for key, text in METRIC_SETS:
                m = metrics.get(key)
                if not isinstance(m, dict):
                    continue
                b = m.get("buckets") or {}
                trows.append([text] + [f"{_pct((b.get(g) or {}).get('miou'))} ({int((b.get(g) or {}).get('n_views', 0))} views)"
                                       for g in POSE_BUCKETS] + [_pct(m.get("miou"))])
            averaged = [f"{text}: {_averaged_text(metrics.get(key), schema)}" for key, text in METRIC_SETS
                        if isinstance(metrics.get(key), dict)]
            parts.append("<h2>mIoU per pose bucket</h2>" + _img("miou_buckets.png", "mIoU per pose bucket bar chart")
                         + _table(["labels"] + [f"{BUCKET_TEXT[g]} mIoU (%)" for g in POSE_BUCKETS] + ["all mIoU (%)"],
                                  trows)
                         + "<p class='def'>Classes averaged in 'all' (background excluded): "
                         + html.escape("; ".join(averaged)) + ". A bucket's mIoU averages the classes present "
                         "in that bucket's views.</p>")
            classes = [c for c in schema.classes
                       if any(c in ((metrics.get(k) or {}).get("per_class") or {}) for k, _ in METRIC_SETS)]
            if classes:
                cseries = {}
                for key, text in METRIC_SETS:
                    pc = (metrics.get(key) or {}).get("per_class")
                    if isinstance(pc, dict):
                        cseries[text] = [100.0 * pc[c]["iou"] if isinstance(pc.get(c), dict)
                                         and isinstance(pc[c].get("iou"), (int, float)) else None for c in classes]
                save_png(pics / "iou_per_class.png", bar_chart(
                    classes, cseries, title="IoU per class, before and after refinement", ylabel="IoU (%)",
                    size=(min(16.0, max(8.0, 0.3 * len(classes) * max(1, len(cseries)))), 4.5), rotate_labels=True,
                    value_format="{:.0f}"))
                crow = [[c] + [("n/a" if v[i] is None else f"{v[i]:.1f}") for v in cseries.values()]
                        for i, c in enumerate(classes)]
                parts.append("<h2>IoU per class</h2>" + _img("iou_per_class.png", "per-class IoU bar chart")
                             + _table(["class"] + [f"IoU, {t} (%)" for t in cseries], crow))

        # -- training --------------------------------------------------------------------------
        if isinstance(history, dict):
            it = _numeric_series(history.get("iteration"))
            losses = loss_series(history)
            block = ""
            if losses:
                save_png(pics / "loss.png", line_chart(losses, title="fitting losses", xlabel="iteration",
                                                       ylabel="loss (unitless)", log_y=True))
                block += _img("loss.png", "loss curves")
            g = _numeric_series(history.get("gaussians"))
            if g is not None:
                xs = it if it is not None and len(it) == len(g) else list(range(len(g)))
                save_png(pics / "gaussians.png", line_chart({"gaussians": (xs, g)}, title="number of Gaussians",
                                                            xlabel="iteration", ylabel="Gaussians (count)"))
                block += _img("gaussians.png", "number of Gaussians")
            if block:
                parts.append("<h2>Fitting</h2><div class='row'>" + block + "</div>")
        if isinstance(stages, dict) and isinstance(stages.get("timings"), dict):
            done = set(stages.get("completed") or [])
            timings = {k: v for k, v in stages["timings"].items() if isinstance(v, (int, float))}
            trows = [[k, f"{v:.1f}", "yes" if k in done else "no"] for k, v in timings.items()]
            trows.append(["total", f"{sum(timings.values()):.1f}", ""])
            parts.append("<h2>Stage timings</h2>" + _table(["stage", "time (s)", "completed"], trows))

        # -- contact sheets --------------------------------------------------------------------
        if samples:
            legend = ", ".join(f"<span class='sw' style='background:rgb{c}'></span>{html.escape(k)}"
                               for k, c in ERROR_COLOURS.items())
            sheets = [f"<h2>Contact sheets</h2><p>Error column: {legend}. At most {MAX_SHEET_ROWS} views per "
                      "sheet, spread over the yaw range. 'n/a': that picture is not in the run.</p>"]
            for source, novel in (("input", False), ("novel", True)):
                for bucket in list(POSE_BUCKETS) + ["unposed"]:
                    chosen = [s for s in samples if s.source == source and s.bucket == bucket]
                    if not chosen:
                        continue
                    picked = _pick(chosen, MAX_SHEET_ROWS)
                    fname = f"sheet_{source}_{bucket}.png"
                    save_png(pics / fname, _sheet(run, picked, schema, novel, gt_name))
                    sheets.append(f"<h3>{source} views, {html.escape(BUCKET_TEXT[bucket])}: "
                                  f"{len(picked)} of {len(chosen)} shown</h3>" + _img(fname, f"{source} {bucket} contact sheet"))
            parts.append("".join(sheets))
        from .corrections.summary import report_section  # hand corrections (splatrefine correct), if any

        parts.append(report_section(run, pics))

    note_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>splatrefine report: {html.escape(run.resolve().name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 0.9em; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; height: auto; display: block; margin: 0.4em 0; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.row img {{ max-width: 48%; }}
.note {{ background: #fff6d5; padding: 0.4em 0.8em; border-left: 4px solid #e0b000; }}
.def {{ font-size: 0.85em; color: #444; max-width: 60em; }}
.sw {{ display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #888; margin: 0 0.3em 0 0.6em;
       vertical-align: middle; }}
</style></head><body>
<h1>splatrefine run report</h1>
<p>Run {html.escape(str(run.resolve()))} of capture {html.escape(str(capture.get("path") or "unknown"))},
report written {stamp}. Percentages are of pixels (IoU, F1, accuracy, coverage); times are
wall-clock seconds.</p>
{note_html}
{''.join(parts)}
</body></html>
"""
    out = layout.report
    write_text(out, page)
    return out
