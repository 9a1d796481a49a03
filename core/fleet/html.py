"""OUT/fleet.html: one self-contained page (inline CSS, JS and thumbnails) for the whole fleet.

A table of captures, failures on top, sortable by any column (click a header); mIoU per pose
bucket aggregated over the captures with GT (weighted by views); per capture a thumbnail of its
report's extreme-pose contact sheet (novel views first), linking to its report.html.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

from ..metrics import scored_against
from ..run_layout import RunLayout
from ..types import GT_NAME, POSE_BUCKETS

log = logging.getLogger(__name__)

FLEET_HTML = "fleet.html"
THUMB_SIZE = (240, 96)
METRIC_SETS = (("initial", "initial"), ("refined_input", "refined (input views)"),
               ("refined_novel", "refined (novel views)"))

_JS = """
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => r.cells[col].dataset.v ?? r.cells[col].textContent.trim();
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return asc ? c : -c;
  });
  rows.forEach(r => body.appendChild(r));
}));
"""
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:' \\25B2'} th[data-dir=desc]::after{content:' \\25BC'}
tr.failed td{background:#fde8e8} tr.interrupted td,tr.pending td,tr.running td{background:#fff6dd}
td.num{text-align:right;font-variant-numeric:tabular-nums} img{display:block}
"""


def _thumbnail(run: Path) -> str | None:
    """A data: URI of the run's extreme-pose contact sheet, scaled down (JPEG), or None."""
    from PIL import Image

    pics = RunLayout(run).report_dir
    for name in ("sheet_novel_extreme.png", "sheet_input_extreme.png", "sheet_novel_mid.png",
                 "sheet_input_mid.png", "sheet_novel_frontal.png", "sheet_input_frontal.png"):
        p = pics / name
        if p.is_file():
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    im.thumbnail(THUMB_SIZE)
                    buf = io.BytesIO()
                    im.save(buf, "JPEG", quality=75)
            except OSError as exc:
                log.warning("%s: cannot read (%s)", p, exc)
                return None
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return None


def _miou(metrics: dict | None, which: str, bucket: str | None = None) -> float | None:
    m = (metrics or {}).get(which)
    if not m:
        return None
    if bucket is None:
        return m.get("miou")
    b = (m.get("buckets") or {}).get(bucket)
    return b.get("miou") if b and b.get("n_views") else None


def _bucket(r: dict, which: str, bucket: str) -> dict | None:
    b = (((r.get("metrics") or {}).get(which) or {}).get("buckets") or {}).get(bucket)
    return b if b and b.get("n_views") and b.get("miou") is not None else None


def bucket_aggregate(records: list[dict]) -> dict[str, dict]:
    """{bucket: {"captures", "input_views", "novel_views", set: mIoU weighted by views}} over the
    captures with metrics (input views score `initial` and `refined_input`, novel views
    `refined_novel`)."""
    out = {}
    for bucket in POSE_BUCKETS:
        row: dict = {}
        for which, _ in METRIC_SETS:
            scored = [b for r in records if (b := _bucket(r, which, bucket))]
            weight = sum(b["n_views"] for b in scored)
            row[which] = sum(b["miou"] * b["n_views"] for b in scored) / weight if weight else None
        row["captures"] = sum(1 for r in records if any(_bucket(r, w, bucket) for w, _ in METRIC_SETS))
        row["input_views"] = sum(b["n_views"] for r in records if (b := _bucket(r, "initial", bucket)))
        row["novel_views"] = sum(b["n_views"] for r in records if (b := _bucket(r, "refined_novel", bucket)))
        out[bucket] = row
    return out


def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return '<td class="num" data-v="-1">–</td>'
    return f'<td class="num" data-v="{v:.6f}">{v:.{digits}f}</td>'


def _row(out: Path, r: dict) -> str:
    e = html.escape
    m = r.get("metrics")
    status = r.get("status", "")
    thumb = _thumbnail(out / r["run"]) if status == "done" else None
    report = f'{r["run"]}/report.html'
    cells = [f'<td>{e(status)}</td>',
             f'<td><a href="{e(report)}">{e(r["name"])}</a></td>' if status == "done" else f'<td>{e(r["name"])}</td>',
             _num(r.get("seconds"), 1) if not r.get("skipped") else '<td class="num" data-v="0">skipped</td>']
    for bucket in ("extreme", None):
        cells += [_num(_miou(m, "initial", bucket)), _num(_miou(m, "refined_input", bucket)),
                  _num(_miou(m, "refined_novel", bucket))]
    cells.append(f'<td>{e(r.get("host", ""))}</td>')
    cells.append(f'<td>{e(r.get("error") or r.get("line") or "")}</td>')
    cells.append(f'<td data-v=""><a href="{e(report)}"><img src="{thumb}" alt="contact sheet"></a></td>'
                 if thumb else '<td data-v=""></td>')
    return f'<tr class="{e(status)}">' + "".join(cells) + "</tr>"


def _not_gt_note(done: list[dict]) -> str:
    """A line naming how many of the scored captures were scored against labels a parser made
    (their capture's `labels_name`, e.g. pseudo-GT), or ''."""
    names = [scored_against(r["metrics"]) for r in done if isinstance(r.get("metrics"), dict)]
    other = sorted(set(names) - {GT_NAME})
    if not other:
        return ""
    n = sum(name != GT_NAME for name in names)
    return (f"<p>Of these {len(names)} captures, {n} {'is' if n == 1 else 'are'} scored against "
            f"{html.escape(' or '.join(other))}, not labels people drew: read those numbers as agreement "
            "with a parser, not accuracy.</p>")


def render_html(out: Path, meta: dict, records: list[dict]) -> str:
    from .status import counts

    e = html.escape
    c = counts(records)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
    done = [r for r in records if r.get("status") == "done"]
    agg = bucket_aggregate(done)
    parts = [f"<h1>Fleet: {e(str(meta.get('source', '')))}</h1>",
             f"<p>{len(records)} captures: {e(summary)}. Executor <b>{e(str(meta.get('executor')))}</b> "
             f"({meta.get('slots')} at once); wall time {meta.get('wall_seconds') or 0:.1f} s.</p>"]
    if any(row["captures"] for row in agg.values()):
        head = "".join(f"<th>{e(t)}</th>" for t in ["pose bucket", "captures", "input views", "novel views"]
                       + [t for _, t in METRIC_SETS])
        rows = "".join(f"<tr><td>{b}</td>" + "".join(f"<td class='num'>{row[k]}</td>" for k in
                                                      ("captures", "input_views", "novel_views"))
                       + "".join(_num(row[w]) for w, _ in METRIC_SETS) + "</tr>" for b, row in agg.items())
        parts.append("<h2>mIoU per pose bucket, all captures with GT (weighted by views)</h2>"
                     f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                     + _not_gt_note(done))
    head = ["status", "capture", "seconds", "extreme initial", "extreme refined", "extreme novel",
            "mIoU initial", "mIoU refined", "mIoU novel", "host", "message", "extreme-pose sheet"]
    parts.append("<h2>Captures</h2><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(_row(out, r) for r in records) + "</tbody></table>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>splatrefine fleet</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}<script>{_JS}</script></body></html>\n")


def write_html(out: Path, meta: dict, records: list[dict]) -> Path:
    from ..io.atomic import write_text

    path = Path(out) / FLEET_HTML
    write_text(path, render_html(Path(out), meta, records))
    return path
