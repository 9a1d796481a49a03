"""Import path of the capture writers used by `splatrefine synth` (they live in rigs.py)."""

from .rigs import synthesize_capture, synthetic_block, write_synthetic

__all__ = ["synthesize_capture", "synthetic_block", "write_synthetic"]
