"""What `export` and `correct` read from a run folder: refined/manifest.json and the files it names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SplatrefineError
from ..run_layout import MANIFEST, REFINED, RunLayout
from ..schema import IGNORE, LabelSchema, get_schema
from ..types import Cameras

__all__ = ["MANIFEST", "REFINED", "RefinedRun", "open_run", "near_boundary"]
BOUNDARY_PX = 2


def near_boundary(labels: np.ndarray, px: int) -> np.ndarray:
    """bool [H,W]: pixels within `px` pixels (4-connected steps) of a change of label."""
    from scipy import ndimage

    edge = np.zeros(labels.shape, bool)
    dy = labels[1:] != labels[:-1]
    dx = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return ndimage.binary_dilation(edge, iterations=px - 1) if px > 1 else edge


@dataclass(frozen=True)
class RefinedRun:
    """A run folder with a finished refined/: its schema and manifest samples (dicts as written)."""

    path: Path
    schema: LabelSchema
    manifest: dict

    @property
    def layout(self) -> RunLayout:
        """The paths of the run folder."""
        return RunLayout(self.path)

    @property
    def refined(self) -> Path:
        return self.layout.refined

    @property
    def samples(self) -> list[dict]:
        return self.manifest["samples"]

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.samples]

    def sample(self, name: str) -> dict:
        return self.samples[self.names.index(name)]

    def file(self, sample: dict, key: str) -> Path:
        """The file a sample names under `key` ('image', 'labels', 'confidence'), kept inside refined/."""
        rel = sample.get(key)
        if not isinstance(rel, str) or not rel:
            raise SplatrefineError(f"{self.refined / MANIFEST}: sample '{sample['name']}' has no {key}")
        p = (self.refined / rel).resolve()
        if not p.is_relative_to(self.refined.resolve()):
            raise SplatrefineError(f"{self.refined / MANIFEST}: sample '{sample['name']}' {key} '{rel}' points "
                                   "outside refined/")
        return p

    def labels(self, name: str) -> np.ndarray:
        from ..io.labels import read_labels

        return read_labels(self.file(self.sample(name), "labels"), self.schema)

    def confidence(self, name: str) -> np.ndarray:
        """float32 [H,W] in 0..1."""
        from ..io.labels import read_image

        return read_image(self.file(self.sample(name), "confidence"))[..., 0].astype(np.float32) / 255.0

    def view_confidence(self, name: str) -> float:
        """Mean confidence over the face pixels (not background, not ignore) at least BOUNDARY_PX
        from a label boundary; over all face pixels when none is that far, over the view when it
        has no face. Pixels at a boundary are unsure in every view (they straddle two regions),
        so counting them ranks views by how much boundary they show (frontal views first), not by
        how wrong they are; away from boundaries low confidence means the views disagreed."""
        conf = self.confidence(name)
        lab = self.labels(name)
        face = (lab != 0) & (lab != IGNORE)
        if not face.any():
            return float(conf.mean())
        inner = face & ~near_boundary(lab, BOUNDARY_PX)
        return float(conf[inner].mean() if inner.any() else conf[face].mean())

    def cameras(self, names: list[str] | None = None) -> Cameras:
        names = self.names if names is None else names
        ss = [self.sample(n) for n in names]
        sizes = {(int(s["width"]), int(s["height"])) for s in ss}
        if len(sizes) != 1:
            raise SplatrefineError(f"{self.refined / MANIFEST}: views of several sizes {sorted(sizes)}")
        (w, h), = sizes
        yaw = [s.get("yaw") for s in ss]
        pitch = [s.get("pitch") for s in ss]
        return Cameras(np.asarray([s["viewmat"] for s in ss], np.float64).reshape(-1, 4, 4),
                       np.asarray([s["K"] for s in ss], np.float64).reshape(-1, 3, 3), w, h, tuple(names),
                       None if any(y is None for y in yaw) else np.asarray(yaw, np.float64),
                       None if any(p is None for p in pitch) else np.asarray(pitch, np.float64))


def open_run(path: Path) -> RefinedRun:
    """The run at `path`, refusing one without a finished refined/ (one line naming the file)."""
    path = Path(path)
    if not path.is_dir():
        raise SplatrefineError(f"{path}: no such run folder", "Give the folder 'splatrefine refine ... -o RUN' wrote.")
    mpath = RunLayout(path).refined_manifest
    if not mpath.is_file():
        raise SplatrefineError(f"{path}: has no refined/ yet ({REFINED}/{MANIFEST} is missing)",
                               f"Finish the run first: splatrefine refine CAPTURE -o {path} --resume")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise SplatrefineError(f"{mpath}: cannot read as JSON ({exc})", "Rerun the render stage.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise SplatrefineError(f"{mpath}: expected {{'schema': ..., 'samples': [...]}}")
    seen: set[str] = set()
    for i, s in enumerate(manifest["samples"]):
        name = s.get("name") if isinstance(s, dict) else None
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise SplatrefineError(f"{mpath}: sample {i} has no plain file name")
        if name in seen:
            raise SplatrefineError(f"{mpath}: sample '{name}' is listed twice")
        seen.add(name)
    return RefinedRun(path, get_schema(str(manifest.get("schema", "celebamask-hq"))), manifest)
