"""splatrefine: multiview-consistent label refinement with dual 3D Gaussian Splatting.

Importing this package is cheap: no torch, numba, gsplat or OpenCV at import time.
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (pluggy is light; plugins write @splatrefine.hookimpl)

__all__ = ["__version__", "hookimpl"]
