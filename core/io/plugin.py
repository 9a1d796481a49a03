"""Builtin capture readers (implementations of splatrefine_open_capture).

One hook implementation tries, in order: our capture folder, nerfstudio transforms.json, COLMAP
sparse models, FaceScape multiview folders. Detection looks only at file names and json keys, so it
is cheap; the matching reader then raises CaptureError when the files are broken.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..types import Capture
from .detect import detect_format, read_capture


@hookimpl
def splatrefine_open_capture(path: str) -> Capture | None:
    """Read `path` with the first builtin reader whose format it is; None when none matches."""
    fmt = detect_format(path)
    if fmt is None:
        return None
    return read_capture(path, fmt)
