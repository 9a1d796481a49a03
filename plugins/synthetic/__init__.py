"""Procedural multiview heads with exact ground truth, and a simulated noisy face parser.

`synthesize_capture(seed, rig, resolution)` builds a Capture (images, exact labels, masks,
subject frame, `render_gt` for any camera); `write_synthetic` writes capture folders;
the `simulated` initial parser corrupts GT labels with a pose-dependent noise model.
Importing this package is cheap (numpy only); scipy is imported inside functions.
"""

from .head import HeadParams, sample_head
from .rigs import RIGS, rig_cameras, synthesize_capture, write_synthetic

__all__ = ["HeadParams", "sample_head", "RIGS", "rig_cameras", "synthesize_capture", "write_synthetic"]
