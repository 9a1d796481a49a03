"""The job a fleet runs once per capture, on whatever executor: one refine into its run folder.

A user error (bad cameras, too few views, a folder that is not ours) comes back as a failed
record with its one-line message, so the other captures go on; so does an unexpected error (with
its traceback in the log). A job that is run again (after its worker was killed, or on a rerun of
the fleet) resumes the run folder: finished stages are skipped, a fit continues from its last
checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

JOBS_DIR = ".fleet/jobs"


def attempt_path(out: Path, name: str) -> Path:
    """OUT/.fleet/jobs/NAME.json: where and since when the capture's latest attempt runs."""
    return Path(out) / JOBS_DIR / f"{name}.json"


def refine_capture(capture: str, out: str, name: str, run_dir: str, config_path: str | None,
                   plugin_args: list[str], set_args: list[str]) -> dict:
    """Refine `capture` into `run_dir`; -> {"status": "done"|"failed", "error", "seconds", "line",
    "notes", "resumed", "host", "pid"}."""
    from ..engine import is_run_dir
    from ..errors import SplatrefineError
    from ..io.atomic import write_text
    from ..refine import run_refine

    t0 = time.time()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    write_text(attempt_path(Path(out), name), json.dumps({**where, "started": t0, "capture": capture}))
    run = Path(run_dir)
    resume = is_run_dir(run)
    record: dict = {**where, "resumed": resume}
    try:
        summary = run_refine(capture=Path(capture), demo=False, config_path=Path(config_path) if config_path else None,
                             plugin_args=list(plugin_args), set_args=list(set_args), output=run, resume=resume,
                             overwrite=not resume and run.is_dir() and any(run.iterdir()), device=None, quiet=True)
        record.update(status="done", line=summary.get("line", ""), notes=list(summary.get("notes", [])))
    except SplatrefineError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # refine's "interrupted": the fleet stops too
            raise KeyboardInterrupt from None
        record.update(status="failed", error=exc.message.splitlines()[0] if exc.message else type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - one capture's bug must not stop the fleet
        log.exception("capture %s failed", capture)
        first = str(exc).splitlines()[0] if str(exc) else ""
        record.update(status="failed", error=f"internal error: {type(exc).__name__}: {first}")
    record["seconds"] = round(time.time() - t0, 3)
    return record
