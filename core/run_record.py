"""A run folder's contract: RUN/run.json records what made the run, and decides what a resume may reuse.

run.json = {"splatrefine": version, "capture": {"path", "fingerprint", "views", "scene"},
"config": the resolved config}. Each stage has a key: a digest of the config entries it reads and
of the keys of the stages it reads from (STAGE_INPUTS). stages.json stores the key each stage ran
with, so after a config change a resume recomputes exactly the stages whose key changed (and,
through the chain, everything downstream of them). A changed capture or package version is not
something a resume can patch: `check_resume` refuses with one line naming the difference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .errors import SplatrefineError
from .io.fingerprint import capture_difference
from .run_layout import MANIFEST, RECORD

# stage -> (config entries it reads, stages whose outputs it reads). target_parser and device are
# read by no stage: changing them recomputes nothing.
STAGE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "parse": (("initial_parser", "schema", "seed"), ()),
    "fit": (("representation", "seed"), ("parse",)),
    "sample": (("view_sampler", "seed"), ()),
    "render": (("representation", "label_aggregator", "schema"), ("parse", "fit", "sample")),
    "evaluate": (("schema",), ("parse", "render")),
    "report": ((), ("parse", "fit", "sample", "render", "evaluate")),
}


def stage_keys(config: dict) -> dict[str, str]:
    """{stage: digest} for the resolved config dict (RunConfig.to_dict()), in STAGE_INPUTS order."""
    keys: dict[str, str] = {}
    for stage, (entries, upstream) in STAGE_INPUTS.items():
        payload = {"config": {e: config.get(e) for e in entries}, "after": [keys[u] for u in upstream]}
        keys[stage] = hashlib.blake2b(json.dumps(payload, sort_keys=True, default=str).encode(),
                                      digest_size=8).hexdigest()
    return keys


def config_changes(old: dict, new: dict) -> list[str]:
    """'view_sampler.params.count: 48 -> 24' for each setting that differs (device left out)."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out if d else {prefix.rstrip("."): {}}

    a = {k.rstrip("."): v for k, v in flat(old).items()}
    b = {k.rstrip("."): v for k, v in flat(new).items()}
    changes = []
    for key in list(a) + [k for k in b if k not in a]:
        if key == "device" or a.get(key, "(unset)") == b.get(key, "(unset)"):
            continue
        changes.append(f"{key}: {_short(a.get(key, '(unset)'))} -> {_short(b.get(key, '(unset)'))}")
    return changes


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def write_manifest(folder: Path, schema: str, samples: list[dict], extra: Mapping[str, Any] | None = None) -> Path:
    """Write FOLDER/manifest.json, the manifest of a labelled dataset (a run's refined/, a
    labelled folder, a fleet's OUT/): {"schema": NAME, ...extra, "samples": [...]}, each sample a
    dict with at least "name" and "image" (paths relative to FOLDER). Written atomically (temp file
    + rename); the one writer of the format splatrefine.datasets and correct read. -> its path."""
    from .io.atomic import write_text

    extra = {k: v for k, v in (extra or {}).items() if k not in ("schema", "samples")}
    path = Path(folder) / MANIFEST
    write_text(path, json.dumps({"schema": schema, **extra, "samples": list(samples)}, indent=1))
    return path


def read_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SplatrefineError(f"{path}: cannot read the run record ({exc})",
                               "Add --overwrite to start the run again, or choose another -o.") from None
    if not isinstance(data, dict) or not isinstance(data.get("capture"), dict):
        raise SplatrefineError(f"{path}: not a splatrefine run record",
                               "Add --overwrite to start the run again, or choose another -o.")
    return data


def make_record(capture_path: str, fingerprint: dict, config: dict) -> dict:
    return {"splatrefine": __version__, "capture": {"path": capture_path, **fingerprint}, "config": config}


def check_resume(run_dir: Path, record: dict, capture_path: str, fingerprint: dict) -> list[str]:
    """Notes for a resume of the run in `run_dir` (made as `record` says) with this capture;
    SplatrefineError when the capture or the package version differ."""
    notes = []
    old = record["capture"]
    then = record.get("splatrefine")
    if then != __version__:
        raise SplatrefineError(
            f"{run_dir}: was made by splatrefine {then}, this is {__version__}; its stages cannot be reused",
            "Add --overwrite to start the run again, or choose another -o.")
    diff = capture_difference(old, fingerprint)
    if diff is not None:
        where = (f"was made from {old.get('path')}, not {capture_path}" if old.get("path") != capture_path
                 else f"capture {capture_path} changed since the run was made")
        raise SplatrefineError(f"{run_dir}: {where}: {diff}",
                               "Add --overwrite to start again from this capture, or choose another -o.")
    if old.get("path") != capture_path:
        notes.append(f"the capture moved from {old.get('path')} to {capture_path} (same content)")
    return notes
