"""OUT/manifest.json: the refined samples of every finished capture in one dataset manifest, with
paths relative to OUT, so `splatrefine train OUT` (splatrefine.datasets) reads the fleet directly.
Sample names are prefixed with the capture's run name, so they stay unique across captures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..run_layout import MANIFEST, REFINED

log = logging.getLogger(__name__)


def merged_samples(out: Path, records: list[dict]) -> tuple[str | None, list[dict]]:
    schema, samples = None, []
    for rec in records:
        if rec.get("status") != "done":
            continue
        refined = f"{rec['run']}/{REFINED}"
        try:
            data = json.loads((Path(out) / refined / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("%s: no readable refined manifest (%s); left out of the merged one", rec["name"], exc)
            continue
        if schema is None:
            schema = data.get("schema")
        elif data.get("schema") != schema:
            log.warning("%s: labels in schema %s, not %s; left out of the merged manifest",
                        rec["name"], data.get("schema"), schema)
            continue
        for s in data.get("samples", []):
            merged = {**s, "name": f"{rec['name']}__{s['name']}", "capture": rec["name"],
                      "image": f"{refined}/{s['image']}"}
            for key in ("labels", "confidence"):
                if key in s:
                    merged[key] = f"{refined}/{s[key]}"
            merged.pop("viewmat", None)
            merged.pop("K", None)
            samples.append(merged)
    return schema, samples


def write_manifest(out: Path, records: list[dict]) -> Path | None:
    """Write OUT/manifest.json; None (and nothing written) when no capture finished."""
    from .. import run_record

    schema, samples = merged_samples(out, records)
    if not samples:
        return None
    return run_record.write_manifest(out, schema, samples)
