"""Camera rigs around a procedural head, and whole synthetic captures (in memory or on disk).

Rigs (cameras on a sphere of radius 1 m around the head centre, looking at a point 3.5 cm below it
so neck and shoulders are in frame; vertical field of view 0.42 m at the head):
  facescape-like  61 views: pitch 0 at yaw -90..90 every 15 degrees, and pitch -30, -15, 15, 30
                  at 12 yaws evenly spread over -90..90 (like FaceScape's dome of cameras)
  turntable       36 views: yaw -180..170 every 10 degrees at pitch 0 (includes the back)
  frontal-only    33 views: yaw -25..25 every 5 degrees at pitch -10, 0, 10 (|yaw| < 30)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from splatrefine.errors import ConfigError, did_you_mean
from splatrefine.types import Cameras, Capture, GroundTruth, Subject, View

from .head import sample_head
from .render import render_head

RIGS = ("facescape-like", "turntable", "frontal-only")  # the one list (synth, render-scan, the experiment)
DISTANCE = 1.0
FIELD = 0.42  # metres seen across the image at the head's distance
TARGET = np.array([0.0, -0.035, 0.0])
GENERATOR = "splatrefine.plugins.synthetic"
GENERATOR_VERSION = 1


def head_subject() -> Subject:
    """The subject frame of every synthetic head: centre at the origin, face along +z, up +y."""
    return Subject(center=np.zeros(3), frontal=np.array([0.0, 0.0, 1.0]), up=np.array([0.0, 1.0, 0.0]))


def check_rig(rig: str) -> str:
    if rig not in RIGS:
        raise ConfigError(f"unknown rig '{rig}'.{did_you_mean(str(rig), RIGS)}", f"Rigs: {', '.join(RIGS)}.")
    return rig


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 16 <= resolution <= 4096:
        raise ConfigError(f"resolution must be an integer from 16 to 4096, got {resolution!r}")
    return int(resolution)


def rig_poses(rig: str) -> list[tuple[float, float]]:
    """(yaw, pitch) in degrees of every camera of `rig`."""
    check_rig(rig)
    if rig == "facescape-like":
        poses = [(float(y), 0.0) for y in range(-90, 91, 15)]
        for pitch in (-30.0, -15.0, 15.0, 30.0):
            poses += [(float(y), pitch) for y in np.linspace(-90.0, 90.0, 12)]
        return poses
    if rig == "turntable":
        return [(float(y), 0.0) for y in range(-180, 180, 10)]
    return [(float(y), float(p)) for p in (-10, 0, 10) for y in range(-25, 26, 5)]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera [4,4], OpenCV axes (x right, y down, z forward), upright for `up`."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ eye
    return M


def pose_cameras(poses: list[tuple[float, float]], resolution: int, names: list[str] | None = None) -> Cameras:
    """Cameras at (yaw, pitch) degrees around a synthetic head (same distance and lens as the rigs).
    yaw > 0 moves the camera towards the subject's own left (+x), pitch > 0 looks from above."""
    res = check_resolution(resolution)
    f = res * DISTANCE / FIELD
    K = np.array([[f, 0.0, res / 2.0], [0.0, f, res / 2.0], [0.0, 0.0, 1.0]])
    vms = []
    for yaw, pitch in poses:
        a, p = np.radians(yaw), np.radians(pitch)
        eye = DISTANCE * np.array([np.cos(p) * np.sin(a), np.sin(p), np.cos(p) * np.cos(a)])
        vms.append(look_at(eye, TARGET, np.array([0.0, 1.0, 0.0])))
    names = names or [f"view_{i:03d}" for i in range(len(poses))]
    return Cameras(np.stack(vms), np.stack([K] * len(vms)), res, res, tuple(names),
                   yaw=np.array([p[0] for p in poses]), pitch=np.array([p[1] for p in poses]))


def rig_cameras(rig: str, resolution: int = 256) -> Cameras:
    """Every camera of `rig` at `resolution` x `resolution`, with yaw/pitch."""
    return pose_cameras(rig_poses(rig), resolution)


def render_gt(identity_seed: int, cameras: Cameras, rgb: bool = True) -> GroundTruth:
    """Exact labels (uint8 [C,H,W]) and, with `rgb`, RGB (uint8 [C,H,W,3]) of identity
    `identity_seed` at any cameras (labels alone skip the supersampled shading)."""
    out = render_head(sample_head(identity_seed), cameras, rgb=rgb)
    return GroundTruth(labels=out.labels, rgb=out.rgb)


def synthesize_capture(identity_seed: int, rig: str = "facescape-like", resolution: int = 256) -> Capture:
    """A capture of one procedural identity: images, exact labels and masks at every camera of
    `rig`, the subject frame, and `render_gt` for any other cameras."""
    cams = rig_cameras(rig, resolution)
    out = render_head(sample_head(int(identity_seed)), cams)
    views = [View(cams.names[i], cams[i], out.rgb[i], out.labels[i], out.mask[i]) for i in range(len(cams))]
    return Capture(views=views, subject=head_subject(), source=f"synthetic:{int(identity_seed)}",
                   render_gt=partial(render_gt, int(identity_seed)))


def synthetic_block(identity_seed: int, rig: str, resolution: int) -> dict:
    """The capture.json "synthetic" block: enough to regenerate the capture and its GT."""
    return {"generator": GENERATOR, "version": GENERATOR_VERSION, "identity_seed": int(identity_seed),
            "rig": rig, "resolution": int(resolution)}


def identity_seeds(identities: int, seed: int) -> list[int]:
    """Identity seeds of a synthetic set: `seed` * 10007 + i."""
    return [int(seed) * 10007 + i for i in range(int(identities))]


def write_synthetic(out_dir: str | Path, identities: int = 1, seed: int = 0, rig: str = "facescape-like",
                    resolution: int = 256) -> list[Path]:
    """Write OUT/id_000, OUT/id_001, ... (one capture folder per identity); returns their paths."""
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.progress import progress_task

    if isinstance(identities, bool) or not isinstance(identities, (int, np.integer)) or identities < 1:
        raise ConfigError(f"identities must be a positive integer, got {identities!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    check_rig(rig)
    check_resolution(resolution)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder", "Give a new or existing folder for the captures.")
    paths = []
    with progress_task("synth", int(identities)) as advance:
        for i, ident in enumerate(identity_seeds(identities, seed)):
            capture = synthesize_capture(ident, rig, resolution)
            path = out / f"id_{i:03d}"
            write_capture_folder(capture, path, extra={"synthetic": synthetic_block(ident, rig, resolution)})
            paths.append(path)
            advance(1)
    return paths
