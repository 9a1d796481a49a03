"""Which file holds which view's map: a folder's maps by file stem, matched to view names."""

from __future__ import annotations

from pathlib import Path

from splatrefine.errors import CaptureError, ConfigError

SUFFIXES = {"auto": (".png", ".npy", ".npz"), "png": (".png",), "npy": (".npy", ".npz")}
SHOWN = 3  # names quoted in an error before "..."


def _some(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def find_maps(folder: str | Path | None, fmt: str) -> dict[str, Path]:
    """{stem: file} for every map of format `fmt` in `folder` (not recursive).

    Raises ConfigError for a missing folder and CaptureError when a stem has two maps (a.png and
    a.npy), since either could be meant."""
    if folder is None or str(folder) == "":
        raise ConfigError("initial_parser 'labels' needs the folder of label maps",
                          "Set it with --set initial_parser.path=FOLDER.")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder of label maps (initial_parser 'labels' path)",
                          "Point --set initial_parser.path=FOLDER at the folder that holds VIEW.png / VIEW.npy files.")
    by_stem: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() in SUFFIXES[fmt] and f.is_file():
            by_stem.setdefault(f.stem, []).append(f)
    clashes = [files for files in by_stem.values() if len(files) > 1]
    if clashes:
        kinds = {f.suffix.lower() for files in clashes for f in files}
        hint = ("Keep one file per view, or pick one kind with --set initial_parser.format=png (or npy)."
                if ".png" in kinds and fmt == "auto" else "Keep one file per view.")
        raise CaptureError(f"{clashes[0][0]}: {len(clashes)} view(s) have more than one map "
                           f"({_some([' and '.join(f.name for f in files) for files in clashes])})", hint)
    return {stem: files[0] for stem, files in by_stem.items()}


def match_views(maps: dict[str, Path], names: list[str], folder: str | Path, fmt: str,
                allow_missing: bool) -> list[Path | None]:
    """The map of each view name, in view order (None for a view without one when `allow_missing`).

    A view without a map is a CaptureError unless `allow_missing`; no map for any view always is."""
    files = [maps.get(n) for n in names]
    absent = [n for n, f in zip(names, files) if f is None]
    kinds = "/".join(s.lstrip(".") for s in SUFFIXES[fmt])
    if len(absent) == len(names):
        found = sorted(maps)
        there = f"the folder has {_some(found)}" if found else f"the folder has no {kinds} files"
        raise CaptureError(f"{folder}: no map matches any of the capture's {len(names)} views "
                           f"(views are named {_some(names)}; {there})",
                           f"Name each map after its view: {names[0]}.png or {names[0]}.npy.")
    if absent and not allow_missing:
        raise CaptureError(f"{folder}: no map for {len(absent)} of the {len(names)} views ({_some(absent)})",
                           f"Add {absent[0]}.{kinds.split('/')[0]} and the others, or let such views "
                           "stay without an opinion with --set initial_parser.missing=uniform.")
    return files
