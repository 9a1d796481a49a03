"""Read an edited Segmentation mask 1.1 export (a zip or a folder) back into label maps, safely.

Nothing is extracted to disk. Zip members are read in memory after their names are checked (no
absolute paths, drive letters or `..`; backslashes count as separators) and their sizes are capped
(per member, in total, and the number of members). The layout may sit at the top of the zip or in
one folder inside it (a zipped export folder).
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SplatrefineError
from . import cvat_mask as cm
from .runs import RefinedRun

MAX_MEMBERS = 100_000
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 4 << 30
MAX_RATIO = 200  # unpacked / packed; PNG masks compress well but not 1000-fold


@dataclass(frozen=True)
class Edited:
    """Edited label maps uint8 [H,W] by view name, and where each came from (for messages)."""

    labels: dict[str, np.ndarray]
    where: dict[str, str]
    source: str = ""


class _Source:
    """Relative paths -> bytes, from a zip or a folder; `label` names the source in messages."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.label = str(path)
        self._zip: zipfile.ZipFile | None = None
        self._names: list[str] = []
        self.prefix = ""
        if self.path.is_dir():
            root = self.path.resolve()
            for p in sorted(self.path.rglob("*")):
                if p.is_file():
                    if not p.resolve().is_relative_to(root):
                        raise SplatrefineError(f"{p}: links outside {self.path}", "Copy the files into the folder.")
                    self._names.append(p.relative_to(self.path).as_posix())
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise SplatrefineError(f"{self.path}: not a zip file", "Give the zip CVAT exported, or its unpacked folder.")
            try:
                self._zip = zipfile.ZipFile(self.path)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise SplatrefineError(f"{self.path}: cannot read the zip ({exc})") from None
            self._check(infos)
            self._names = [i.filename for i in infos if not i.is_dir()]
        else:
            raise SplatrefineError(f"{self.path}: no such file or folder")
        self.prefix = self._find_prefix()

    def _check(self, infos: list[zipfile.ZipInfo]) -> None:
        if len(infos) > MAX_MEMBERS:
            raise SplatrefineError(f"{self.path}: {len(infos)} members (at most {MAX_MEMBERS})")
        total = 0
        for i in infos:
            name = i.filename.replace("\\", "/")
            parts = name.split("/")
            if name.startswith("/") or (len(parts[0]) == 2 and parts[0][1] == ":") or ".." in parts:
                raise SplatrefineError(f"{self.path}: member '{i.filename}' points outside the archive",
                                       "Re-export the dataset; a zip must hold relative paths only.")
            if i.file_size > MAX_MEMBER_BYTES:
                raise SplatrefineError(f"{self.path}: member '{i.filename}' unpacks to {i.file_size} bytes "
                                       f"(limit {MAX_MEMBER_BYTES})")
            if i.compress_size and i.file_size / i.compress_size > MAX_RATIO and i.file_size > (1 << 20):
                raise SplatrefineError(f"{self.path}: member '{i.filename}' is compressed {i.file_size // i.compress_size}"
                                       f"-fold (limit {MAX_RATIO}); refusing a possible zip bomb")
            total += i.file_size
        if total > MAX_TOTAL_BYTES:
            raise SplatrefineError(f"{self.path}: unpacks to {total} bytes (limit {MAX_TOTAL_BYTES})")

    def _find_prefix(self) -> str:
        tops = [n for n in self._names if posixpath.basename(n) == cm.LABELMAP and n.count("/") <= 1]
        if cm.LABELMAP in tops:
            return ""
        if len(tops) == 1:
            return tops[0][: -len(cm.LABELMAP)]
        raise SplatrefineError(f"{self.label}: no {cm.LABELMAP}: not a CVAT 'Segmentation mask 1.1' export", cm.HINT)

    def names(self, folder: str) -> list[str]:
        """Paths (relative to the layout root) directly inside `folder`."""
        base = self.prefix + folder.rstrip("/") + "/"
        return sorted(n[len(self.prefix):] for n in self._names if n.startswith(base) and "/" not in n[len(base):])

    def where(self, rel: str) -> str:
        return f"{self.label}:{self.prefix}{rel}" if self._zip is not None else str(self.path / self.prefix / rel)

    def read(self, rel: str) -> bytes:
        full = self.prefix + rel
        if self._zip is not None:
            with self._zip.open(full) as fh:
                data = fh.read(MAX_MEMBER_BYTES + 1)
        else:
            data = (self.path / full).read_bytes()
        if len(data) > MAX_MEMBER_BYTES:
            raise SplatrefineError(f"{self.where(rel)}: larger than {MAX_MEMBER_BYTES} bytes")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _item_ids(src: _Source) -> list[str]:
    lists = [n for n in src.names(cm.IMAGESETS) if n.endswith(".txt")]
    if not lists:
        raise SplatrefineError(f"{src.label}: no {cm.IMAGESETS}/*.txt: not a CVAT 'Segmentation mask 1.1' export",
                               cm.HINT)
    ids: list[str] = []
    for rel in lists:
        for line in src.read(rel).decode("utf-8", errors="replace").splitlines():
            item = line.strip()
            if item and item not in ids:
                ids.append(item)
    return ids


def _mask(src: _Source, rel: str, size: tuple[int, int], view: str) -> np.ndarray:
    where = src.where(rel)
    try:
        img = Image.open(io.BytesIO(src.read(rel)))
        if img.size != size:
            raise SplatrefineError(f"{where}: mask is {img.width}x{img.height} but view '{view}' is "
                                   f"{size[0]}x{size[1]}", "Keep the exported image size; do not resize masks.")
        img.load()
    except SplatrefineError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SplatrefineError(f"{where}: cannot read the mask ({exc})") from None
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_edited(path: Path, run: RefinedRun) -> Edited:
    """The masks of an edited export as label maps of the run's schema, by view name.

    Checks: the layout (labelmap.txt, ImageSets/Segmentation/*.txt, SegmentationClass/), the
    labelmap (known names, no repeated name or colour), each mask's view (in the run), size and
    colours (all in the labelmap). Items listed without a mask are skipped (nothing was drawn).
    """
    src = _Source(Path(path))
    try:
        by_colour = cm.parse_labelmap(src.read(cm.LABELMAP).decode("utf-8", errors="replace"),
                                      src.where(cm.LABELMAP), run.schema)
        ids = _item_ids(src)
        masks = {posixpath.splitext(posixpath.basename(n))[0]: n for n in src.names(cm.MASKS) if n.lower().endswith(".png")}
        if not masks:
            raise SplatrefineError(f"{src.label}: no {cm.MASKS}/*.png: not a CVAT 'Segmentation mask 1.1' export",
                                   cm.HINT)
        known = set(run.names)
        labels: dict[str, np.ndarray] = {}
        where: dict[str, str] = {}
        for item in ids:
            rel = masks.get(item)
            if rel is None:
                continue
            if item not in known:
                raise SplatrefineError(f"{src.where(rel)}: no view '{item}' in {run.refined}",
                                       "Correct only views that 'splatrefine export' wrote for this run.")
            s = run.sample(item)
            rgb = _mask(src, rel, (int(s["width"]), int(s["height"])), item)
            labels[item] = cm.colours_to_labels(rgb, by_colour, src.where(rel))
            where[item] = src.where(rel)
        if not labels:
            raise SplatrefineError(f"{src.label}: none of the items in {cm.IMAGESETS}/ has a mask in {cm.MASKS}/",
                                   cm.HINT)
        return Edited(labels, where, str(path))
    finally:
        src.close()
