"""Pseudo-GT labels for a rendered scan: a parser's labels from the views where it is reliable,
lifted onto the mesh's triangles by visibility voting and rendered back at every view.

1. Reliable views: |yaw| <= max_yaw and |pitch| <= max_pitch (default 30 and 15 degrees).
2. Every foreground pixel of a reliable view votes its parser label for the triangle it sees
   (face-id buffer); a parser's "no opinion" (255) is a vote too ("none").
3. A triangle takes its majority vote when it has at least `min_votes`; a "none" majority or too
   few votes leave it unlabelled. Triangles no reliable pixel centre hit (smaller than a pixel, or
   hidden) take the majority of labelled neighbours sharing a vertex, up to `fill_rings` rings.
4. Every view is labelled from its face-id buffer: background pixels 0, unlabelled triangles 255.
   Strict variant: triangles with a "none" majority (the parser's sources agree they are none of
   its classes) are 0 as well, so a face class painted onto hair or neck is scored as an error.
Only classes the parser produced in reliable views can appear; for MediaPipe that leaves hair,
ears, neck, cloth, hat, glasses and earrings at 255 (unscored). Biases: docs/real_scans.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from splatrefine.schema import IGNORE
from splatrefine.types import Capture

Labeller = Callable[[np.ndarray, str], np.ndarray]


def reliable_views(yaw: np.ndarray, pitch: np.ndarray, max_yaw: float = 30.0, max_pitch: float = 15.0) -> np.ndarray:
    """bool [V]: views whose labels are trusted as sources."""
    return (np.abs(np.asarray(yaw)) <= max_yaw + 1e-6) & (np.abs(np.asarray(pitch)) <= max_pitch + 1e-6)


def vote(face_ids: np.ndarray, labels: np.ndarray, num_faces: int, num_classes: int) -> np.ndarray:
    """int64 [F, K+1] vote counts: column k = class k, column K = "none" (label 255).
    face_ids int [V,H,W] (-1 = background), labels uint8 [V,H,W]."""
    fg = face_ids >= 0
    f = face_ids[fg].astype(np.int64)
    c = labels[fg].astype(np.int64)
    c = np.where(c >= num_classes, num_classes, c)  # 255 (and anything outside the schema) -> none
    return np.bincount(f * (num_classes + 1) + c, minlength=num_faces * (num_classes + 1)).reshape(
        num_faces, num_classes + 1)


def decide(votes: np.ndarray, min_votes: int = 3) -> np.ndarray:
    """uint8 [F] majority class per triangle; 255 for a "none" majority or fewer than min_votes."""
    k = votes.shape[1] - 1
    winner = votes.argmax(axis=1)
    out = np.where((winner < k) & (votes.sum(axis=1) >= min_votes), winner, IGNORE).astype(np.uint8)
    return out


def fill_unseen(face_labels: np.ndarray, seen: np.ndarray, faces: np.ndarray, num_classes: int,
                rings: int = 2) -> np.ndarray:
    """Triangles without votes (`seen` False) take the majority label of labelled triangles that
    share a vertex with them, repeated `rings` times. Seen triangles are never changed."""
    out = face_labels.copy()
    nv = int(faces.max()) + 1 if len(faces) else 0
    for _ in range(int(rings)):
        todo = ~seen & (out == IGNORE)
        if not todo.any():
            break
        known = out != IGNORE
        # per vertex: label counts of the labelled triangles around it
        vc = np.zeros((nv, num_classes), np.int64)
        for k in range(3):
            np.add.at(vc, (faces[known, k], out[known].astype(np.int64)), 1)
        fc = vc[faces[todo, 0]] + vc[faces[todo, 1]] + vc[faces[todo, 2]]
        has = fc.sum(axis=1) > 0
        idx = np.nonzero(todo)[0]
        out[idx[has]] = fc[has].argmax(axis=1).astype(np.uint8)
        seen = seen | (out != IGNORE)
    return out


def render_labels(face_ids: np.ndarray, face_labels: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
    """uint8 [V,H,W]: background 0, a triangle's label elsewhere (255 = unlabelled); triangles in
    `outside` (bool [F], when given) are 0 too."""
    table = face_labels.copy()
    if outside is not None:
        table[outside] = 0
    out = np.zeros(face_ids.shape, np.uint8)
    fg = face_ids >= 0
    out[fg] = table[face_ids[fg]]
    return out


def lift(face_ids: np.ndarray, labels: np.ndarray, faces: np.ndarray, num_classes: int,
         min_votes: int = 3, fill_rings: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [F] triangle labels, bool [F] "outside": a "none" majority of at least min_votes)
    from the labels of source views (steps 2-3 of the module docstring). face_ids int [S,H,W] and
    labels uint8 [S,H,W] of the source views only."""
    votes = vote(face_ids, labels, len(faces), num_classes)
    face_labels = decide(votes, min_votes)
    outside = (votes.argmax(axis=1) == num_classes) & (votes.sum(axis=1) >= min_votes)
    return fill_unseen(face_labels, votes.sum(axis=1) > 0, faces, num_classes, fill_rings), outside


def pseudo_gt_labels(capture: Capture, face_ids: np.ndarray, faces: np.ndarray, labeller: Labeller,
                     max_yaw: float = 30.0, max_pitch: float = 15.0, min_votes: int = 3,
                     fill_rings: int = 2) -> tuple[np.ndarray, np.ndarray, dict]:
    """(labels uint8 [V,H,W], strict labels uint8 [V,H,W], summary) for every view of `capture`.
    face_ids int32 [V,H,W] in the order of capture.views; `labeller(image, name)` -> uint8 [H,W]
    labels in capture.schema (255 = no opinion); it is called on the reliable views only.
    "Strict" labels differ in one way: triangles the source views agree are none of the parser's
    classes (hair, ears, neck for MediaPipe) are 0 instead of 255, so a face class painted there
    counts as a false positive (docs/real_scans.md)."""
    cams = capture.cameras()
    src = np.nonzero(reliable_views(cams.yaw, cams.pitch, max_yaw, max_pitch))[0]
    if len(src) == 0:
        from splatrefine.errors import ConfigError

        raise ConfigError(f"no view has |yaw| <= {max_yaw} and |pitch| <= {max_pitch}",
                          "Render the scan on a rig with near-frontal views (e.g. --rig facescape-like).")
    src_labels = np.stack([labeller(capture.views[i].image, capture.views[i].name) for i in src])
    k = capture.schema.num_classes
    face_labels, outside = lift(face_ids[src], src_labels, faces, k, min_votes, fill_rings)
    present = sorted({int(c) for c in np.unique(face_labels) if c != IGNORE})
    info = {"method": "visibility voting of the reliable views' parser labels (docs/real_scans.md)",
            "max_yaw": float(max_yaw), "max_pitch": float(max_pitch), "min_votes": int(min_votes),
            "fill_rings": int(fill_rings), "source_views": [capture.views[i].name for i in src],
            "classes": [capture.schema.classes[c] for c in present],
            "labelled_faces": float((face_labels != IGNORE).mean()), "outside_faces": float(outside.mean())}
    return render_labels(face_ids, face_labels), render_labels(face_ids, face_labels, outside), info


PSEUDO_GT = "pseudo-GT"  # what reports call these labels (Capture.labels_name)


def pseudo_gt_capture(capture: Capture, face_ids: np.ndarray, faces: np.ndarray, labeller: Labeller,
                      max_yaw: float = 30.0, max_pitch: float = 15.0, min_votes: int = 3,
                      fill_rings: int = 2, strict: bool = False) -> tuple[Capture, dict]:
    """`capture` with pseudo-GT labels (`pseudo_gt_labels`; its strict ones with `strict`) at every
    view, and a summary for the capture.json scan block."""
    labels, strict_labels, info = pseudo_gt_labels(capture, face_ids, faces, labeller, max_yaw, max_pitch,
                                                   min_votes, fill_rings)
    chosen = strict_labels if strict else labels
    info["strict"] = bool(strict)
    views = [replace(v, labels=chosen[i]) for i, v in enumerate(capture.views)]
    return replace(capture, views=views, labels_name=PSEUDO_GT), info


def mediapipe_labeller(**settings) -> Labeller:
    """MediaPipe's labels (CelebAMask-HQ) for one image at a time; one face-mesh graph reused."""
    from splatrefine.plugins.mediapipe_parser.parser import MediaPipeConfig, MediaPipeParser

    parser = MediaPipeParser(MediaPipeConfig(**settings))

    def label(image: np.ndarray, name: str) -> np.ndarray:
        return parser.labels(image, name)

    return label
