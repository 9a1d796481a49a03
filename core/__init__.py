"""splatrefine: multiview-consistent label refinement with dual 3D Gaussian Splatting.

Importing this package is cheap: no torch, numba, gsplat or OpenCV at import time.
"""

import os

# The one place OMP_WAIT_POLICY is set. numba kernels and torch share the cores, so idle OpenMP
# threads must sleep, not spin (numba slows down ~10x after a torch backward otherwise). It only
# takes effect before the OpenMP runtime starts, i.e. before `import torch`; every process that
# runs splatrefine code imports this package first (the CLI, process-pool and Ray workers, which
# also inherit it), and a user's export wins. See docs/rasterizer.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (pluggy is light; plugins write @splatrefine.hookimpl)

__all__ = ["__version__", "hookimpl"]
