"""The head frame of a scan: where its face looks, which way is up, its size in metres.

The rigs (splatrefine.plugins.synthetic.rigs) circle a head at the origin with the face along +z
and up +y, in metres. A scan comes in its own units and orientation; `HeadFrame` maps it there:
`p_head = scale * rotation @ (p_mesh - center)`.

How the frame is found (docs/real_scans.md):
1. Orientation. `--frontal` (and `--up`) in the mesh's coordinates when given. Otherwise a search:
   the mesh's principal axes (PCA of the vertices) give 6 candidate up directions (each axis, both
   signs); around each, 8 yaws every 45 degrees. Each candidate is rendered from the front camera
   and given to MediaPipe's face mesh; among candidates with a face, the one whose nose tip sits
   most centrally between the eyes (the most symmetric, i.e. most frontal, view) wins.
2. Refinement from landmarks (whenever MediaPipe is installed). The front view's landmarks are
   lifted onto the mesh through the depth buffer: eye centres (mean of each eye contour) and the
   mouth centre (mean of the lips). Left = right eye -> left eye, up = mouth -> eye midpoint made
   perpendicular to it, frontal = left x up. This is done twice (the second time from the
   improved front view). Scale puts the eye centres 63 mm apart (an adult average), and the eye
   midpoint lands where the procedural heads have theirs (0, 4 mm, 80 mm).
   With `--frontal` given, the landmarks still set scale and centre, but the orientation is the
   user's.
3. Without landmarks (no MediaPipe, or no face found with `--frontal`): the mesh's extent along up
   becomes 0.25 m and its bounding-box centre the origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from splatrefine.errors import ConfigError, SplatrefineError

from .mesh import Mesh

log = logging.getLogger(__name__)
HEAD_HEIGHT = 0.25  # metres: a mesh's extent along up when no landmarks give its size
EYE_DISTANCE = 0.063  # metres between the eye centres
EYE_POSITION = np.array([0.0, 0.004, 0.08])  # eye midpoint in the procedural heads' frame
SEARCH_RESOLUTION = 192
NO_MEDIAPIPE = ("no frontal direction given and mediapipe is not installed to find one",
                "Pass --frontal x,y,z (the direction the face looks, in the mesh's coordinates; "
                "optionally --up x,y,z), or install mediapipe as docs/parsers.md says.")


@dataclass
class HeadFrame:
    """rotation [3,3] (rows: the subject's left, up, frontal in mesh coordinates), center [3] (mesh
    coordinates of the head origin), scale (metres per mesh unit), method (how it was found)."""

    rotation: np.ndarray
    center: np.ndarray
    scale: float
    method: str

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        """Mesh coordinates [N,3] -> head frame (metres) [N,3]."""
        return self.scale * (vertices - self.center) @ self.rotation.T

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Head frame [N,3] -> mesh coordinates [N,3]."""
        return points @ self.rotation / self.scale + self.center

    def to_json(self) -> dict:
        return {"rotation": self.rotation.tolist(), "center": self.center.tolist(), "scale": float(self.scale),
                "method": self.method}


def parse_direction(text: str | None, option: str) -> np.ndarray | None:
    """'x,y,z' -> unit vector [3] (None passes through); ConfigError naming the option."""
    if text is None:
        return None
    try:
        v = np.array([float(t) for t in str(text).split(",")], dtype=np.float64)
    except ValueError:
        v = np.zeros(0)
    if v.shape != (3,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-9:
        raise ConfigError(f"{option} {text!r}: expected three numbers x,y,z that are not all zero",
                          f"For example {option} 0,0,1.")
    return v / np.linalg.norm(v)


def rotation_from(frontal: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rows (left, up, frontal) from a frontal and a rough up direction (up is made perpendicular)."""
    f = frontal / np.linalg.norm(frontal)
    u = up - (up @ f) * f
    if np.linalg.norm(u) < 1e-6:
        raise ConfigError("--up is parallel to --frontal", "Give an up direction across the face's direction.")
    u = u / np.linalg.norm(u)
    return np.stack([np.cross(u, f), u, f])


def default_up(vertices: np.ndarray, frontal: np.ndarray) -> np.ndarray:
    """Up when only the frontal direction is known: the mesh's +y (most scans are y-up) unless that
    is nearly along `frontal`, else the principal axis most perpendicular to it."""
    y = np.array([0.0, 1.0, 0.0])
    if abs(y @ frontal) < 0.9:
        return y
    axes = principal_axes(vertices)
    return axes[int(np.argmin(np.abs(axes @ frontal)))]


def principal_axes(vertices: np.ndarray) -> np.ndarray:
    """Rows: unit principal axes of the vertices, largest variance first [3,3]."""
    x = vertices - vertices.mean(axis=0)
    w, v = np.linalg.eigh(x.T @ x)
    return v[:, ::-1].T


def box_frame(vertices: np.ndarray, rotation: np.ndarray, method: str) -> HeadFrame:
    """Scale from the extent along up (-> HEAD_HEIGHT), origin at the bounding-box centre."""
    r = vertices @ rotation.T
    lo, hi = r.min(axis=0), r.max(axis=0)
    extent = float(hi[1] - lo[1])
    if extent <= 0:
        raise SplatrefineError("the mesh has no extent along its up direction", "Check --up (and --frontal).")
    return HeadFrame(rotation, ((lo + hi) / 2) @ rotation, HEAD_HEIGHT / extent, method)


class Landmarker:
    """MediaPipe face-mesh landmarks on renders of the mesh, lifted to 3D through the depth buffer."""

    def __init__(self) -> None:
        from splatrefine.plugins.mediapipe_parser.parser import MediaPipeConfig, MediaPipeParser

        self.parser = MediaPipeParser(MediaPipeConfig())
        self.mesh = self.parser._mesh()
        self.groups = {k: sorted({n for e in self.parser.sets[k] for n in e})
                       for k in ("left_eye", "right_eye", "lips", "nose")}

    def close(self) -> None:
        self.mesh.close()

    def front(self, mesh: Mesh, frame: HeadFrame, resolution: int = SEARCH_RESOLUTION) -> tuple | None:
        """Render `mesh` in `frame` from the rig's front camera; (landmarks [N,2], depth [H,W],
        camera) or None when no face is found."""
        from splatrefine.plugins.synthetic.rigs import pose_cameras

        from .raster import render_mesh

        cams = pose_cameras([(0.0, 0.0)], resolution)
        out = render_mesh(mesh, frame.apply(mesh.vertices), cams, supersample=2, threads=1)
        xy = self.parser.landmarks(out.rgb[0], self.mesh)
        return None if xy is None else (xy, out.depth[0], cams[0])

    def asymmetry(self, xy: np.ndarray) -> float:
        """|nose tip - eye midpoint| across the eye line, in eye distances (0 = frontal)."""
        le, re = xy[self.groups["left_eye"]].mean(0), xy[self.groups["right_eye"]].mean(0)
        d = le - re
        n = float(np.linalg.norm(d))
        if n < 1e-6:
            return np.inf
        return abs(float((xy[1] - (le + re) / 2) @ d)) / n ** 2

    def lift(self, found: tuple, frame: HeadFrame) -> dict[str, np.ndarray] | None:
        """Mesh-coordinate centres of the eyes and the mouth from one front view, or None."""
        xy, depth, cam = found
        h, w = depth.shape
        out = {}
        for key in ("left_eye", "right_eye", "lips"):
            pts = []
            for x, y in xy[self.groups[key]]:
                i, j = int(np.clip(np.floor(y), 0, h - 1)), int(np.clip(np.floor(x), 0, w - 1))
                d = float(depth[i, j])
                if d > 0:
                    pc = d * np.linalg.solve(cam.K, np.array([x, y, 1.0]))
                    pts.append(cam.viewmat[:3, :3].T @ (pc - cam.viewmat[:3, 3]))
            if len(pts) < 3:
                return None
            out[key] = frame.invert(np.mean(pts, axis=0)[None])[0]
        return out


def landmark_frame(points: dict[str, np.ndarray], rotation: np.ndarray | None) -> HeadFrame:
    """Frame from 3D eye and mouth centres (mesh coordinates); `rotation` kept when given."""
    le, re, mouth = points["left_eye"], points["right_eye"], points["lips"]
    eyes = (le + re) / 2
    dist = float(np.linalg.norm(le - re))
    if dist <= 0:
        raise SplatrefineError("the eye landmarks coincide on the mesh", "Pass --frontal and --up explicitly.")
    if rotation is None:
        left = (le - re) / dist
        up = eyes - mouth
        up = up - (up @ left) * left
        up = up / np.linalg.norm(up)
        rotation = np.stack([left, up, np.cross(left, up)])
        method = "landmarks"
    else:
        method = "given+landmarks"
    scale = EYE_DISTANCE / dist
    center = eyes - (EYE_POSITION / scale) @ rotation
    return HeadFrame(rotation, center, scale, method)


def _search(mesh: Mesh, lm: Landmarker) -> HeadFrame | None:
    """Best candidate orientation over principal up axes x 8 yaws (module docstring)."""
    axes = principal_axes(mesh.vertices)
    best, best_score = None, np.inf
    for k in range(3):
        for sign in (1.0, -1.0):
            up = sign * axes[k]
            a, b = axes[(k + 1) % 3], axes[(k + 2) % 3]
            for yaw in np.radians(np.arange(0, 360, 45)):
                R = rotation_from(np.cos(yaw) * a + np.sin(yaw) * b, up)
                r = mesh.vertices @ R.T
                lo, hi = r.min(axis=0), r.max(axis=0)
                frame = HeadFrame(R, ((lo + hi) / 2) @ R, HEAD_HEIGHT / max(float((hi - lo).max()), 1e-12), "search")
                found = lm.front(mesh, frame)
                if found is None:
                    continue
                score = lm.asymmetry(found[0])
                log.debug("up %s yaw %.0f: asymmetry %.3f", up.round(2), np.degrees(yaw), score)
                if score < best_score:
                    best, best_score = (frame, found), score
    if best is None:
        return None
    frame, found = best
    pts = lm.lift(found, frame)
    return None if pts is None else landmark_frame(pts, None)


def find_frame(mesh: Mesh, frontal: np.ndarray | None = None, up: np.ndarray | None = None) -> HeadFrame:
    """The head frame of `mesh` (module docstring). frontal/up: unit vectors in mesh coordinates."""
    if up is not None and frontal is None:
        raise ConfigError("--up needs --frontal", "Give both, or neither to let render-scan find the face.")
    try:
        from splatrefine.plugins.mediapipe_parser.parser import import_face_mesh

        import_face_mesh()
        have_mediapipe = True
    except SplatrefineError:
        have_mediapipe = False
    given = None if frontal is None else rotation_from(frontal, up if up is not None else default_up(mesh.vertices, frontal))
    if not have_mediapipe:
        if given is None:
            raise ConfigError(*NO_MEDIAPIPE)
        return box_frame(mesh.vertices, given, "given")
    lm = Landmarker()
    try:
        if given is None:
            frame = _search(mesh, lm)
            if frame is None:
                raise SplatrefineError(f"{mesh.path}: MediaPipe found no face in any orientation of the mesh",
                                       "Pass --frontal x,y,z (and --up x,y,z) in the mesh's coordinates.")
        else:
            frame = box_frame(mesh.vertices, given, "given")
        for _ in range(2):  # refine from the improved front view
            found = lm.front(mesh, frame)
            pts = None if found is None else lm.lift(found, frame)
            if pts is None:
                break
            frame = landmark_frame(pts, given)
        if given is None and lm.front(mesh, frame) is None:
            raise SplatrefineError(f"{mesh.path}: the face found by the search is lost in the refined front view",
                                   "Pass --frontal x,y,z (and --up x,y,z) in the mesh's coordinates.")
        return frame
    finally:
        lm.close()
