"""What SOURCE holds: a folder of captures (each subfolder in any format a reader opens), a
FaceScape tree (ID/EXPRESSION/ tuple folders; the reader skips views whose `valid` flag is
false), or a text file of capture paths (one a line, relative to the file; '#' comments).

Only cheap format detection happens here: each capture is read by its own job, whose errors are
recorded per capture. Entries no builtin format recognises are tried with every installed reader
(third-party formats), and the ones none opens are reported as unreadable before any work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CaptureError, SplatrefineError
from ..io.detect import detect_format


@dataclass(frozen=True)
class Entry:
    path: Path
    label: str  # the capture's path relative to SOURCE (or to the listed paths' common folder)
    problem: str | None = None  # why it cannot be refined, when known before any work


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise SplatrefineError(f"{folder}: cannot list ({exc.strerror})") from None


def _from_folder(source: Path) -> list[Entry]:
    if detect_format(source):
        return [Entry(source, source.name)]
    entries = []
    for child in _subdirs(source):
        if detect_format(child):
            entries.append(Entry(child, child.name))
            continue
        inner = [g for g in _subdirs(child) if detect_format(g)]
        if inner:  # a FaceScape tree: ID/EXPRESSION/
            entries.extend(Entry(g, f"{child.name}/{g.name}") for g in inner)
        else:
            entries.append(Entry(child, child.name, problem="unrecognised"))
    return entries


def _from_list(source: Path) -> list[Entry]:
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SplatrefineError(f"{source}: cannot read the list of captures ({getattr(exc, 'strerror', None) or exc})") from None
    paths: list[Path] = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            p = Path(os.path.expanduser(text))
            p = (p if p.is_absolute() else source.parent / p).resolve()
            if p not in paths:
                paths.append(p)
    if not paths:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    entries = []
    for p in paths:
        label = str(p.relative_to(common))
        if not p.exists():
            entries.append(Entry(p, label, problem=f"{p}: no such file or folder"))
        else:
            entries.append(Entry(p, label, problem=None if detect_format(p) else "unrecognised"))
    return entries


def find_captures(source: Path, registry, exclude: Path | None = None) -> list[Entry]:
    """Every capture SOURCE names (but `exclude`, the fleet's own OUT, and what is inside it);
    SplatrefineError when it names none that can be read."""
    source = Path(source)
    if not source.exists():
        raise SplatrefineError(f"{source}: no such file or folder",
                               "Give a folder of captures, a FaceScape tree or a text file of capture paths.")
    entries = _from_folder(source) if source.is_dir() else _from_list(source)
    if exclude is not None:
        skip = Path(exclude).resolve()
        entries = [e for e in entries if not (e.path.resolve() == skip or skip in e.path.resolve().parents)]
    checked = []
    for e in entries:
        if e.problem == "unrecognised":  # maybe a third-party format: ask every reader
            try:
                registry.open_capture(str(e.path))
                e = Entry(e.path, e.label)
            except CaptureError as exc:
                e = Entry(e.path, e.label, problem=exc.message)
        checked.append(e)
    if not any(e.problem is None for e in checked):
        what = "lists" if source.is_file() else "holds"
        raise SplatrefineError(f"{source}: {what} no capture any installed reader understands"
                               + (f" ({len(checked)} unreadable)" if checked else ""),
                               "Expected subfolders with capture.json, transforms.json, a COLMAP model or "
                               "FaceScape params.json (ID/EXPRESSION/), or a text file of such paths.")
    return checked
