"""What a capture's run folder says (finished? stage timings, metrics) and fleet.json itself.

fleet.json = {"version", "source", "executor", "settings", "started", "updated", "wall_seconds",
"counts": {status: n}, "captures": [record, ...]} with failures first; a record is
{"name", "capture", "run", "status" (done | failed | interrupted | pending), "error", "seconds",
"timings", "line", "metrics", "skipped", "resumed", "host"}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..run_layout import RunLayout

FLEET_JSON = "fleet.json"
RUNS_DIR = "runs"
ORDER = {"failed": 0, "interrupted": 1, "pending": 2, "running": 2, "done": 3}


def run_finished(run: Path) -> bool:
    """Every stage of the refine is recorded as finished in the run folder's stages.json."""
    from ..engine import RUN_MARKER, STAGES, RunState

    try:
        state = RunState.load(Path(run) / RUN_MARKER)
    except Exception:  # noqa: BLE001 - an unreadable stages.json is an unfinished run: the job says why
        return False
    return all(s in state.completed for s in STAGES)


def run_details(run: Path) -> dict:
    """Stage timings, metrics and the summary line, read from a finished run folder."""
    from ..engine import RUN_MARKER, RunState
    from ..refine import summary_line

    out: dict[str, Any] = {}
    try:
        out["timings"] = RunState.load(Path(run) / RUN_MARKER).timings
    except Exception:  # noqa: BLE001
        out["timings"] = {}
    p = RunLayout(run).metrics
    try:
        metrics = json.loads(p.read_text()) if p.is_file() else None
    except (OSError, json.JSONDecodeError):
        metrics = None
    out["metrics"] = metrics
    out["line"] = summary_line(metrics) if metrics else ""
    return out


def sort_records(records: list[dict]) -> list[dict]:
    """Failures first, then interrupted / pending, then done; by name within each."""
    return sorted(records, key=lambda r: (ORDER.get(r.get("status", ""), 9), r.get("name", "")))


def counts(records: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def read_fleet(out: Path) -> dict | None:
    p = Path(out) / FLEET_JSON
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_fleet(out: Path, meta: dict, records: list[dict]) -> None:
    from ..io.atomic import write_text

    ordered = sort_records(records)
    write_text(Path(out) / FLEET_JSON, json.dumps({**meta, "counts": counts(ordered), "captures": ordered}, indent=1))
