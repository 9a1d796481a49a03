"""`splatrefine export RUN --format cvat-mask -o OUT.zip`: refined views in CVAT's Segmentation mask 1.1.

The views go out worst first (lowest view confidence, see RefinedRun.view_confidence), so a person
fixes the masks that need it most. The layout is written with our own code (cvat_mask.py); an
OUT ending in .zip is one zip file, anything else a folder. Both are written atomically.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SplatrefineError
from . import cvat_mask as cm
from .runs import RefinedRun

SOURCES = ("all", "input", "novel")


@dataclass(frozen=True)
class Selection:
    names: list[str]  # worst first
    confidence: dict[str, float]


def select_views(run: RefinedRun, *, source: str = "all", below: float | None = None,
                 worst: int | None = None) -> Selection:
    """Views of `source` ('all', 'input', 'novel'), least confident first; `below` keeps views whose
    confidence is under it, `worst` keeps the first N (both may be given)."""
    if source not in SOURCES:
        raise SplatrefineError(f"--source {source}: expected one of {', '.join(SOURCES)}")
    if below is not None and not 0.0 <= below <= 1.0:
        raise SplatrefineError(f"--below {below}: a confidence threshold is in 0..1")
    if worst is not None and worst < 1:
        raise SplatrefineError(f"--worst {worst}: give at least 1 view")
    names = [s["name"] for s in run.samples if source == "all" or s.get("source", "input") == source]
    conf = {n: run.view_confidence(n) for n in names}
    names.sort(key=lambda n: (conf[n], n))
    if below is not None:
        names = [n for n in names if conf[n] < below]
    if worst is not None:
        names = names[:worst]
    if not names:
        raise SplatrefineError(f"{run.path}: no refined view matches (source {source}"
                               + (f", confidence below {below}" if below is not None else "") + ")",
                               "Raise --below or leave it out.")
    return Selection(names, conf)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def cvat_mask_files(run: RefinedRun, names: list[str], labels: dict[str, np.ndarray] | None = None) -> dict[str, bytes]:
    """{relative path: content} of the export (ImageSets lists `names` in the given order); `labels`
    replaces the refined labels of some views (an edited export, as the benchmark and tests make)."""
    labels = labels or {}
    from ..io.labels import read_image

    files = {cm.LABELMAP: cm.labelmap_text(run.schema).encode(),
             f"{cm.IMAGESETS}/{cm.SUBSET}.txt": ("\n".join(names) + "\n").encode()}
    for n in names:
        files[f"{cm.MASKS}/{n}.png"] = _png(cm.colour_lut(labels[n] if n in labels else run.labels(n), run.schema))
        files[f"{cm.IMAGES}/{n}.jpg"] = _jpg(read_image(run.file(run.sample(n), "image")))
    return files


def write_files(files: dict[str, bytes], out: Path) -> None:
    """A zip file (OUT.zip) or a folder, atomically."""
    from ..io.atomic import atomic_dir, atomic_path

    out = Path(out)
    if out.suffix.lower() == ".zip":
        if out.is_dir():
            raise SplatrefineError(f"{out}: is a folder", "Give a file name ending in .zip, or a folder without .zip.")
        with atomic_path(out) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for rel in sorted(files):
                    info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_STORED if rel.endswith((".png", ".jpg")) else zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, files[rel])
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SplatrefineError(f"{out}: exists and is not an empty folder", "Choose a new output with -o.")
    with atomic_dir(out) as tmp:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


def export_cvat_mask(run: RefinedRun, out: Path, *, source: str = "all", below: float | None = None,
                     worst: int | None = None) -> Selection:
    sel = select_views(run, source=source, below=below, worst=worst)
    write_files(cvat_mask_files(run, sel.names), out)
    return sel
