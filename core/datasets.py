"""Labelled image datasets for training and evaluating 2D parsers.

A dataset folder is any of:

- ``images/`` + ``labels/`` (label PNGs named after the images), optionally with ``manifest.json``
  (a run's ``refined/`` folder: ``{"schema", "samples": [{"name", "image", "labels", "yaw", ...}]}``);
- a capture folder (``capture.json`` whose views name their ``labels``): yaw comes from the
  capture's subject when it is known;
- a run folder: its ``refined/`` subfolder is used.

Several folders can be mixed (``LabelledDataset([run/refined, capture])``). Only the file list is
read up front; pixels are read on access. Every problem is a SplatrefineError naming the file.
numpy only: no torch here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CaptureError, SplatrefineError
from .run_layout import MANIFEST, REFINED
from .schema import CELEBAMASK_HQ, LabelSchema, get_schema, schema_mapping

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One image/label pair. `yaw` in degrees relative to the subject (None when unknown);
    `source` names the folder it came from; `schema` is the name of the schema its label PNG
    is written in (mapped onto the dataset's schema on read)."""

    name: str
    image: Path
    labels: Path
    yaw: float | None = None
    source: str = ""
    schema: str = ""


class LabelledDataset:
    """Image/label pairs from one or more dataset folders, in a stable order.

    `labels_dir` (default ``labels``) picks another label folder inside each root, e.g. ``gt``,
    or an absolute folder, for evaluating against ground truth instead of refined labels.
    """

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike], schema: LabelSchema = CELEBAMASK_HQ,
                 labels_dir: str | os.PathLike | None = None):
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        if not roots:
            raise SplatrefineError("no dataset folder given")
        self.schema = schema
        self.samples: list[Sample] = []
        self._luts: dict[str, np.ndarray] = {}
        for root in roots:
            self.samples.extend(self._scan(Path(root), labels_dir))
        if not self.samples:
            raise SplatrefineError(f"{', '.join(map(str, roots))}: no labelled images found",
                                   "Expected images/ + labels/ (a run's refined/ folder) or a capture folder with labels.")

    # ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (image uint8 [H,W,3], labels uint8 [H,W] in this dataset's schema, 255 = ignore)."""
        from .io.labels import read_image, read_labels

        s = self.samples[i]
        try:
            image = read_image(s.image)
            labels = read_labels(s.labels, get_schema(s.schema) if s.schema else self.schema)
        except CaptureError as exc:
            raise SplatrefineError(exc.message, exc.hint) from None
        if s.schema and s.schema != self.schema.name:
            labels = self._lut(s.schema)[labels]
        if labels.shape != image.shape[:2]:
            raise SplatrefineError(
                f"{s.labels}: labels are {labels.shape[1]}x{labels.shape[0]} but the image {s.image.name} is "
                f"{image.shape[1]}x{image.shape[0]}")
        return image, labels

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def yaw(self) -> np.ndarray | None:
        """float [N] degrees, or None unless every sample knows its yaw."""
        if any(s.yaw is None for s in self.samples):
            return None
        return np.asarray([s.yaw for s in self.samples], dtype=np.float64)

    def load_all(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every (image, labels) pair read and validated: the first bad file raises."""
        images, labels = [], []
        for i in range(len(self)):
            img, lab = self[i]
            images.append(img)
            labels.append(lab)
        return images, labels

    # ---------------------------------------------------------------------------------------
    def _lut(self, source: str) -> np.ndarray:
        if source not in self._luts:
            try:
                self._luts[source] = schema_mapping(get_schema(source), self.schema)
            except KeyError:
                raise SplatrefineError(
                    f"labels in schema '{source}' cannot be used with schema '{self.schema.name}': no mapping between them"
                ) from None
        return self._luts[source]

    def _scan(self, root: Path, labels_dir: str | os.PathLike | None) -> list[Sample]:
        if not root.exists():
            raise SplatrefineError(f"{root}: no such dataset folder")
        if not root.is_dir():
            raise SplatrefineError(f"{root}: a dataset must be a folder (images/ + labels/, or a capture folder)")
        if not (root / "images").is_dir() and not (root / "capture.json").is_file() and (root / REFINED).is_dir():
            root = root / REFINED  # a run folder
        if (root / MANIFEST).is_file():
            return self._scan_manifest(root, labels_dir)
        if (root / "capture.json").is_file():
            return self._scan_capture(root, labels_dir)
        return self._scan_plain(root, labels_dir)

    def _labels_root(self, root: Path, labels_dir: str | os.PathLike | None) -> Path | None:
        if labels_dir is None:
            return None
        p = Path(labels_dir)
        if p.is_absolute():
            candidates = [p]
        else:  # inside the dataset, or beside it (a run's gt/ beside its refined/)
            candidates = [root / p, root.parent / p]
        for c in candidates:
            if c.is_dir():
                return c
        raise SplatrefineError(f"{candidates[0]}: no such labels folder")

    def _scan_plain(self, root: Path, labels_dir) -> list[Sample]:
        images_dir = root / "images"
        if not images_dir.is_dir():
            raise SplatrefineError(f"{root}: no images/ folder",
                                   "A dataset folder holds images/ and labels/ (label PNGs named after the images).")
        lab_root = self._labels_root(root, labels_dir) or root / "labels"
        if not lab_root.is_dir():
            raise SplatrefineError(f"{root}: no labels/ folder beside images/")
        out = []
        for img in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
            lab = lab_root / f"{img.stem}.png"
            if not lab.is_file():
                raise SplatrefineError(f"{img}: image has no labels ({lab} is missing)")
            out.append(Sample(img.stem, img, lab, None, str(root), self.schema.name))
        return out

    def _scan_manifest(self, root: Path, labels_dir) -> list[Sample]:
        from .io.common import load_json, safe_join

        m = root / MANIFEST
        try:
            data = load_json(m)
        except CaptureError as exc:
            raise SplatrefineError(exc.message, exc.hint) from None
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise SplatrefineError(f"{m}: expected {{\"schema\": ..., \"samples\": [...]}}")
        schema = str(data.get("schema", self.schema.name))
        get_schema(schema)
        if schema != self.schema.name:
            self._lut(schema)
        lab_root = self._labels_root(root, labels_dir)
        out = []
        for k, s in enumerate(data["samples"]):
            where = f"samples[{k}]"
            if not isinstance(s, dict) or "image" not in s or "name" not in s:
                raise SplatrefineError(f"{m}: {where} needs at least \"name\" and \"image\"")
            try:
                img = safe_join(root, s["image"], m, f"{where}.image")
                if lab_root is not None:
                    lab = lab_root / f"{Path(str(s['image'])).stem}.png"
                else:
                    if "labels" not in s:
                        raise SplatrefineError(f"{m}: {where} ({s['name']}) has no \"labels\"")
                    lab = safe_join(root, s["labels"], m, f"{where}.labels")
            except CaptureError as exc:
                raise SplatrefineError(exc.message, exc.hint) from None
            if not img.is_file():
                raise SplatrefineError(f"{img}: image named in {m} is missing")
            if not lab.is_file():
                raise SplatrefineError(f"{img}: image has no labels ({lab} is missing)")
            yaw = s.get("yaw")
            if yaw is not None and not isinstance(yaw, (int, float)):
                raise SplatrefineError(f"{m}: {where}.yaw must be a number, got {yaw!r}")
            out.append(Sample(str(s["name"]), img, lab, None if yaw is None else float(yaw), str(root), schema))
        return out

    def _scan_capture(self, root: Path, labels_dir) -> list[Sample]:
        from .io.capture_folder import read_capture_json_extra
        from .io.common import safe_join

        m = root / "capture.json"
        try:
            data = read_capture_json_extra(m)
        except CaptureError as exc:
            raise SplatrefineError(exc.message, exc.hint) from None
        views = data.get("views")
        if not isinstance(views, list):
            raise SplatrefineError(f"{m}: no \"views\" list")
        schema = str(data.get("schema", self.schema.name))
        get_schema(schema)
        if schema != self.schema.name:
            self._lut(schema)
        yaws = _capture_yaws(data, m)
        lab_root = self._labels_root(root, labels_dir)
        out = []
        for k, v in enumerate(views):
            where = f"views[{k}]"
            if not isinstance(v, dict) or "image" not in v:
                raise SplatrefineError(f"{m}: {where} has no \"image\"")
            try:
                img = safe_join(root, v["image"], m, f"{where}.image")
                if lab_root is not None:
                    lab = lab_root / f"{img.stem}.png"
                elif v.get("labels"):
                    lab = safe_join(root, v["labels"], m, f"{where}.labels")
                else:
                    raise SplatrefineError(f"{img}: image has no labels (view {v.get('name', k)!r} in {m} names none)")
            except CaptureError as exc:
                raise SplatrefineError(exc.message, exc.hint) from None
            if not lab.is_file():
                raise SplatrefineError(f"{img}: image has no labels ({lab} is missing)")
            name = str(v.get("name", img.stem))
            out.append(Sample(name, img, lab, None if yaws is None else float(yaws[k]), str(root), schema))
        return out


def _capture_yaws(data: dict, manifest: Path) -> np.ndarray | None:
    """Yaw of each view of a capture.json from its subject and view matrices (None when unknown)."""
    subj = data.get("subject")
    if not isinstance(subj, dict):
        return None
    try:
        from .poses import yaw_pitch
        from .types import Subject

        subject = Subject(*(np.asarray(subj[k], dtype=np.float64) for k in ("center", "frontal", "up")))
        vm = np.asarray([v["viewmat"] for v in data["views"]], dtype=np.float64)
        centers = -np.einsum("cji,cj->ci", vm[:, :3, :3], vm[:, :3, 3])
        yaw, _ = yaw_pitch(centers, subject)
    except (KeyError, TypeError, ValueError) as exc:
        raise SplatrefineError(f"{manifest}: cannot compute view yaw from subject and viewmats ({exc})") from None
    return yaw


def write_labelled_folder(root: str | os.PathLike, names: Sequence[str], images: Sequence[np.ndarray],
                         labels: Sequence[np.ndarray], schema: LabelSchema = CELEBAMASK_HQ,
                         yaw: Sequence[float] | None = None) -> Path:
    """Write images/NAME.png + labels/NAME.png + manifest.json (with yaw when given) atomically;
    the layout LabelledDataset reads. images uint8 [H,W,3], labels uint8 [H,W]."""
    from .io.atomic import atomic_dir
    from .io.labels import write_image, write_labels
    from .run_record import write_manifest

    root = Path(root)
    with atomic_dir(root) as tmp:
        samples = []
        for i, (name, img, lab) in enumerate(zip(names, images, labels)):
            write_image(tmp / "images" / f"{name}.png", img)
            write_labels(tmp / "labels" / f"{name}.png", lab, schema)
            s = {"name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png"}
            if yaw is not None:
                s["yaw"] = float(yaw[i])
            samples.append(s)
        write_manifest(tmp, schema.name, samples)
    return root
