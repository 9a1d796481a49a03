"""Which builtin format a path is in, and reading it with the matching reader.

Formats are tried in a fixed order: our capture folder, nerfstudio, COLMAP, FaceScape.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..types import Capture


def _readers() -> list[tuple[str, Callable[[Path], bool], Callable[[Path], Capture]]]:
    from . import capture_folder, colmap, facescape, nerfstudio

    return [
        ("splatrefine", capture_folder.is_capture_folder, capture_folder.read_capture_folder),
        ("nerfstudio", nerfstudio.is_nerfstudio, nerfstudio.read_nerfstudio),
        ("colmap", colmap.is_colmap, colmap.read_colmap),
        ("facescape", facescape.is_facescape, facescape.read_facescape),
    ]


FORMATS = ("splatrefine", "nerfstudio", "colmap", "facescape")


def detect_format(path: str | os.PathLike) -> str | None:
    """The name of the first builtin format `path` is in ("splatrefine", "nerfstudio", "colmap",
    "facescape"), or None."""
    p = Path(path)
    if not p.exists():
        return None
    for name, detect, _ in _readers():
        if detect(p):
            return name
    return None


def read_capture(path: str | os.PathLike, fmt: str | None = None) -> Capture:
    """Read `path` as `fmt` (detected when None). CaptureError when unreadable or unrecognised."""
    from ..errors import CaptureError

    p = Path(path)
    if not p.exists():
        raise CaptureError(f"{p}: no such file or folder")
    fmt = fmt or detect_format(p)
    for name, _, read in _readers():
        if name == fmt:
            return read(p)
    raise CaptureError(
        f"{p}: not a capture any builtin reader understands",
        "Expected capture.json, transforms.json, a COLMAP sparse model or a FaceScape folder.",
    )
