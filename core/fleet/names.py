"""Run folder names: one per capture, readable, never two alike."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_names(labels: Sequence[str]) -> list[str]:
    """A folder name per capture label (its path relative to SOURCE, e.g. '122/3_mouth_stretch' ->
    '122__3_mouth_stretch'). Labels that would sanitize to the same name get a short hash of the
    label appended, so distinct labels never collide."""
    base = []
    for label in labels:
        parts = [p for p in label.replace("\\", "/").split("/") if p not in ("", ".")]
        name = _UNSAFE.sub("_", "__".join(parts)).strip("._") or "capture"
        base.append(name)
    counts = Counter(base)
    out = [b if counts[b] == 1 else f"{b}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
           for label, b in zip(labels, base)]
    if len(set(out)) != len(out):  # only when the labels themselves repeat
        raise ValueError("run_names: labels must be distinct")
    return out
