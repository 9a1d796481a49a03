"""Check everything a fleet needs, then run one refine job per capture on the executor.

Before any work (and before OUT is written): the config resolves, SOURCE names at least one
readable capture, OUT is new, empty or a fleet folder, and the executor starts (a Ray cluster
answers, has the GPUs asked for). Any of these failing is one SplatrefineError (exit 2).

Rerunning the same command skips captures whose run folder finished with the same config, and
resumes the others (and retries the failed ones). fleet.json is rewritten after every capture, so
an interrupted fleet (Ctrl-C, SIGTERM, a lost driver) leaves an accurate record.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SplatrefineError
from .names import run_names
from .status import FLEET_JSON, RUNS_DIR, counts, read_fleet, run_details, run_finished, sort_records, write_fleet

FLEET_CONFIG = "fleet.yaml"


@dataclass
class BatchOptions:
    source: Path
    out: Path
    config_path: Path | None = None
    plugin_args: list[str] = field(default_factory=list)
    set_args: list[str] = field(default_factory=list)
    seed: int | None = None
    device: str | None = None
    quiet: bool = False
    executor: str | None = None
    executor_params: dict = field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False


def split_executor_sets(set_args: list[str]) -> tuple[list[str], dict]:
    """`--set executor.KEY=VALUE` go to the executor; the rest to the refine config."""
    import yaml

    rest, params = [], {}
    for arg in set_args:
        lhs = arg.split("=", 1)[0]
        if lhs.startswith("executor.") and "=" in arg:
            params[lhs[len("executor."):].strip()] = yaml.safe_load(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, params


def _check_out(out: Path, resume: bool, overwrite: bool) -> dict | None:
    """-> the fleet OUT already holds (None when new or empty); refuses anything else."""
    if out.exists() and not out.is_dir():
        raise SplatrefineError(f"{out}: exists and is not a folder", "Choose another output with -o.")
    if not out.is_dir() or not any(out.iterdir()):
        if resume:
            raise SplatrefineError(f"{out}: holds no fleet to resume (no {FLEET_JSON})",
                                   "Run without --resume, or choose another output with -o.")
        return None
    previous = read_fleet(out)
    if previous is None:
        raise SplatrefineError(f"{out}: exists, is not empty and holds no fleet (no readable {FLEET_JSON})",
                               "Choose a new or empty folder with -o.")
    return previous


def _config_key(config, opts: BatchOptions) -> dict:
    return json.loads(json.dumps({"config": config.to_dict(), "plugin": list(opts.plugin_args),
                                  "set": list(opts.set_args)}))


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_batch(opts: BatchOptions, registry: Any = None, executors: Any = None) -> dict:
    """Run the fleet; -> fleet.json's content. SplatrefineError before any work on bad input."""
    import yaml

    from ..config import load_yaml, resolve
    from ..devices import resolve_device
    from ..defaults import default_executor
    from ..executors import ExecutorRegistry
    from ..io.atomic import write_text
    from ..progress import set_progress_enabled
    from .sources import find_captures

    set_progress_enabled(not opts.quiet)
    if registry is None:
        from ..registry import Registry

        registry = Registry()
    if opts.resume and opts.overwrite:
        raise SplatrefineError("give either --resume or --overwrite, not both")
    data = load_yaml(opts.config_path) if opts.config_path else {}
    if opts.seed is not None:
        data["seed"] = opts.seed
    if opts.device is not None:
        data["device"] = opts.device
    config = resolve(registry, dict(data), opts.plugin_args, opts.set_args, source=str(opts.config_path or "config"))
    # GPUs asked per task are the executor's to check (on a cluster, the driver may have none)
    device = config.device if opts.executor_params.get("gpus_per_task") else resolve_device(config.device)
    out = Path(opts.out)
    entries = find_captures(Path(opts.source), registry, exclude=out)
    previous = _check_out(out, opts.resume, opts.overwrite)

    executors = executors or ExecutorRegistry(registry.manager)
    name = opts.executor or default_executor()
    params = dict(opts.executor_params)
    if device == "cuda" and "workers" in {f for f in getattr(executors.get(name).config_cls, "__dataclass_fields__", {})}:
        params.setdefault("workers", 1)  # one GPU shared by every local worker: one at a time
    executor = executors.build(name, params)

    names = run_names([e.label for e in entries])
    key = _config_key(config, opts)
    same_config = previous is not None and previous.get("settings") == key and not opts.overwrite
    with executor:  # starts (or refuses) before anything is written
        if opts.overwrite and previous is not None:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / FLEET_CONFIG, yaml.safe_dump(data, sort_keys=False))
        meta = {"version": 1, "source": str(opts.source), "executor": name, "executor_params": params,
                "slots": executor.slots, "settings": key,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": None}
        records: dict[str, dict] = {}
        todo = []
        for e, run_name in zip(entries, names):
            run = out / RUNS_DIR / run_name
            rec = {"name": run_name, "capture": str(e.path), "run": f"{RUNS_DIR}/{run_name}", "status": "pending"}
            if e.problem:
                rec.update(status="failed", error=e.problem)
            elif same_config and run_finished(run):
                rec.update(status="done", skipped=True, **run_details(run))
            else:
                todo.append((e, run_name))
            records[run_name] = rec
        return _run(executor, opts, out, meta, records, todo)


def _run(executor: Any, opts: BatchOptions, out: Path, meta: dict, records: dict[str, dict], todo: list) -> dict:
    from ..progress import progress_task
    from ..workers import sigterm_raises
    from .html import write_html
    from .job import refine_capture
    from .manifest import write_manifest

    t0 = time.monotonic()
    config_path = str((out / FLEET_CONFIG).resolve())
    running: dict[Any, str] = {}
    finished_now = 0
    write_fleet(out, meta, list(records.values()))

    def info() -> dict:
        c = counts(list(records.values()))
        left = len(todo) + len(running)
        eta = _eta((time.monotonic() - t0) / finished_now * left) if finished_now and left else "-"
        return {"done": c.get("done", 0), "failed": c.get("failed", 0), "running": len(running), "eta": eta}

    try:
        with progress_task(f"batch on {meta['executor']} ({executor.slots} at once)", len(records)) as advance, \
                sigterm_raises():
            advance(len(records) - len(todo), **info())
            while todo or running:
                while todo and len(running) < executor.slots:
                    entry, run_name = todo.pop(0)
                    records[run_name]["status"] = "running"
                    args = (str(entry.path), str(out.resolve()), run_name, str((out / RUNS_DIR / run_name).resolve()),
                            config_path, list(opts.plugin_args), list(opts.set_args))
                    running[executor.submit(refine_capture, args, run_name)] = run_name
                for handle in executor.wait(list(running)):
                    run_name = running.pop(handle)
                    try:
                        rec = executor.result(handle)
                    except Exception as exc:  # noqa: BLE001 - a lost worker, a cancelled task
                        first = str(exc).splitlines()[0] if str(exc) else ""
                        rec = {"status": "failed", "error": f"{type(exc).__name__}: {first}".rstrip(": ")}
                    records[run_name].update(rec)
                    if rec.get("status") == "done":
                        records[run_name].pop("error", None)
                        records[run_name].update(run_details(out / RUNS_DIR / run_name))
                    finished_now += 1
                    advance(1, **info())
                    write_fleet(out, meta, list(records.values()))
    except (KeyboardInterrupt, SystemExit) as exc:
        executor.cancel()
        for rec in records.values():
            if rec["status"] == "running":
                rec["status"] = "interrupted"
        _finish(out, meta, records, t0, write_html, write_manifest)
        if isinstance(exc, SystemExit):
            raise
        raise SplatrefineError(f"interrupted; {out} keeps every finished capture",
                               "Rerun the same command to continue.") from None
    return _finish(out, meta, records, t0, write_html, write_manifest)


def _finish(out: Path, meta: dict, records: dict[str, dict], t0: float, write_html, write_manifest) -> dict:
    meta = {**meta, "wall_seconds": round(time.monotonic() - t0, 3)}
    ordered = sort_records(list(records.values()))
    write_fleet(out, meta, ordered)
    write_manifest(out, ordered)
    write_html(out, meta, ordered)
    return {**meta, "counts": counts(ordered), "captures": ordered}

