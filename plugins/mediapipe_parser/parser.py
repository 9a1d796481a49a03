"""The `mediapipe` initial parser: MediaPipe face mesh (legacy solutions.face_mesh, 478 landmarks
with refine_landmarks) -> region polygons -> class probabilities.

Regions: skin (face oval), l_brow/r_brow, l_eye/r_eye, nose, u_lip/l_lip, mouth. Everything else
(hair, ears, neck, background, ...) is unknown to a face mesh and stays "no opinion" (uniform
probabilities, 255 in label maps). A view without a detected face is all "no opinion", with a
note in `notes` and the log. MediaPipe's LEFT_* is the subject's left, as CelebAMask-HQ's l_*.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splatrefine.errors import PluginError
from splatrefine.schema import CELEBAMASK_HQ, IGNORE, schema_mapping

log = logging.getLogger(__name__)
# the one way to install it (docs/parsers.md): without --no-deps, mediapipe pulls opencv-contrib-python over our
# headless OpenCV, and jax
INSTALL_COMMAND = "pip install --no-deps mediapipe==0.10.14 absl-py attrs flatbuffers 'protobuf>=4.25.3,<5'"
INSTALL_HINT = f"Install it with {INSTALL_COMMAND} (see docs/parsers.md)."


@dataclass(frozen=True)
class MediaPipeConfig:
    min_detection_confidence: float = field(default=0.5, metadata={
        "help": "face detector threshold; below it a view gets no labels", "min": 0.0, "max": 1.0})
    refine_landmarks: bool = field(default=True, metadata={"help": "478 landmarks with irises (false: 468)"})
    confidence: float = field(default=0.9, metadata={
        "help": "probability given to a region's class (the rest is spread over the other classes)",
        "min": 0.0, "max": 1.0})


def import_face_mesh():
    try:
        from mediapipe.python.solutions import face_mesh, face_mesh_connections
    except ImportError as exc:
        raise PluginError(f"the mediapipe parser needs mediapipe ({exc})", INSTALL_HINT) from None
    return face_mesh, face_mesh_connections


class MediaPipeParser:
    """parse(capture) -> float32 [V,K,H,W]; labels(image) -> uint8 [H,W] (CelebAMask-HQ, 255 = none)."""

    def __init__(self, config: MediaPipeConfig, context: Any = None):
        self.config = config
        self.face_mesh, conn = import_face_mesh()
        self.sets = {
            "face_oval": set(conn.FACEMESH_FACE_OVAL), "left_eye": set(conn.FACEMESH_LEFT_EYE),
            "right_eye": set(conn.FACEMESH_RIGHT_EYE), "left_brow": set(conn.FACEMESH_LEFT_EYEBROW),
            "right_brow": set(conn.FACEMESH_RIGHT_EYEBROW), "nose": set(conn.FACEMESH_NOSE),
            "lips": set(conn.FACEMESH_LIPS),
        }
        self.notes: list[str] = []

    def _mesh(self):
        return self.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                       refine_landmarks=self.config.refine_landmarks,
                                       min_detection_confidence=self.config.min_detection_confidence)

    def landmarks(self, image: np.ndarray, mesh: Any = None) -> np.ndarray | None:
        """uint8 RGB [H,W,3] -> pixel landmarks float [N,2] (N = 478 or 468), None without a face."""
        own = mesh is None
        mesh = mesh or self._mesh()
        try:
            with warnings.catch_warnings():  # mediapipe 0.10.14 calls a protobuf API that warns
                warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
                result = mesh.process(np.ascontiguousarray(image))
        finally:
            if own:
                mesh.close()
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h] for p in lm], dtype=np.float64)

    def labels(self, image: np.ndarray, name: str = "image", mesh: Any = None) -> np.ndarray:
        """uint8 [H,W] CelebAMask-HQ labels of one RGB image; all 255 when no face is found."""
        from .regions import label_map

        h, w = image.shape[:2]
        xy = self.landmarks(image, mesh)
        if xy is None:
            note = f"mediapipe found no face in view {name}: all its pixels are left without labels"
            log.warning(note)
            self.notes.append(note)
            return np.full((h, w), IGNORE, np.uint8)
        return label_map(xy, h, w, self.sets)

    def parse(self, capture: Any) -> np.ndarray:
        """float32 [V,K,H,W] in capture.schema: `confidence` on each region's class, uniform elsewhere."""
        from splatrefine.progress import progress_task

        schema = capture.schema
        lut = schema_mapping(CELEBAMASK_HQ, schema)
        k = schema.num_classes
        c = self.config.confidence
        out = []
        mesh = self._mesh()
        try:
            with progress_task("parse (mediapipe)", len(capture.views)) as advance:
                for view in capture.views:
                    lab = lut[self.labels(view.image, view.name, mesh)]
                    probs = np.full((k,) + lab.shape, 1.0 / k, np.float32)
                    known = lab != IGNORE
                    if known.any():
                        probs[:, known] = (1.0 - c) / max(k - 1, 1)
                        probs[lab[known], np.nonzero(known)[0], np.nonzero(known)[1]] = c
                    out.append(probs)
                    advance(1)
        finally:
            mesh.close()
        return np.stack(out)
