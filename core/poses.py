"""Camera pose relative to the subject: yaw/pitch in degrees, and estimating the subject's frame.

yaw = 0 looks at the face; positive yaw moves the camera towards the subject's own left (so the
subject's left ear comes into view); pitch > 0 looks from above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a type hint only: types.py imports this module (Capture.cameras)
    from .types import Cameras


@dataclass
class Subject:
    """Where the subject is and which way it faces, in world coordinates."""

    center: np.ndarray
    frontal: np.ndarray  # unit vector from the head centre towards the face
    up: np.ndarray  # unit vector from the chin towards the top of the head


def subject_left(subject: Subject) -> np.ndarray:
    left = np.cross(subject.up, subject.frontal)
    return left / np.linalg.norm(left)


# yaw/pitch are rounded to this many decimals (of a degree): a rig's nominal -30 comes back from
# the trigonometry as -29.999999999999993 and would fall into the bucket below (frontal < 30).
ANGLE_DECIMALS = 6


def yaw_pitch(centers: np.ndarray, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """Camera centres [C,3] -> (yaw [C], pitch [C]) in degrees, snapped to ANGLE_DECIMALS."""
    d = centers - subject.center
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    f = subject.frontal / np.linalg.norm(subject.frontal)
    u = subject.up - f * (subject.up @ f)
    u = u / np.linalg.norm(u)
    left = np.cross(u, f)
    yaw = np.degrees(np.arctan2(d @ left, d @ f))
    pitch = np.degrees(np.arcsin(np.clip(d @ u, -1.0, 1.0)))
    return np.round(yaw, ANGLE_DECIMALS) + 0.0, np.round(pitch, ANGLE_DECIMALS) + 0.0  # + 0.0: no -0.0


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera [4,4] (OpenCV axes) for a camera at `eye` looking at `target`."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # image right; then y = z x x points image-down, opposite to `up`
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def direction(yaw_deg: float, pitch_deg: float, subject: Subject) -> np.ndarray:
    """Unit vector from the subject's centre towards a camera at (yaw, pitch)."""
    f = subject.frontal / np.linalg.norm(subject.frontal)
    u = subject.up - f * (subject.up @ f)
    u = u / np.linalg.norm(u)
    left = np.cross(u, f)
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.cos(p) * (np.cos(y) * f + np.sin(y) * left) + np.sin(p) * u


def optical_focus(cameras: Cameras) -> np.ndarray:
    """The world point closest, in least squares, to every camera's optical axis [3]."""
    axes = cameras.viewmats[:, 2, :3]  # optical axis (camera +z) in world coordinates
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, a in zip(cameras.centers, axes):
        P = np.eye(3) - np.outer(a, a)
        A += P
        b += P @ o
    return np.linalg.lstsq(A, b, rcond=None)[0]


def estimate_subject(cameras: Cameras) -> Subject:
    """Guess the subject frame from the cameras alone (captures that do not state it).

    centre: the point closest (least squares) to every camera's optical axis; frontal: the mean
    direction from that centre to the cameras (capture rigs surround the face, not the back of
    the head); up: the mean of the cameras' -y axes (images are taken upright).
    """
    R = cameras.viewmats[:, :3, :3]
    origins = cameras.centers
    center = optical_focus(cameras)
    d = origins - center
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    frontal = d.mean(axis=0)
    if np.linalg.norm(frontal) < 1e-6:
        frontal = d[0]
    frontal = frontal / np.linalg.norm(frontal)
    up = -R[:, 1, :].mean(axis=0)
    up = up - frontal * (up @ frontal)
    up = up / np.linalg.norm(up)
    return Subject(center=center, frontal=frontal, up=up)
