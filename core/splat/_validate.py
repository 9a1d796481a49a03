"""Argument checks for `rasterize`: one ValueError naming the argument and the expected shape."""

from __future__ import annotations

import math

import torch

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "cpu", "gsplat")


def _shape(t: torch.Tensor) -> str:
    return "[" + ",".join(str(s) for s in t.shape) + "]"


def validate(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    backgrounds: torch.Tensor | None,
    render_mode: str,
    backend: str,
    color_only: tuple[int, int] | None = None,
) -> tuple[int, int, int]:
    """Check every argument of `rasterize`; returns (C, N, D). Raises ValueError on bad input."""
    named = [("means", means), ("quats", quats), ("scales", scales), ("opacities", opacities),
             ("colors", colors), ("viewmats", viewmats), ("Ks", Ks)]
    if backgrounds is not None:
        named.append(("backgrounds", backgrounds))
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: expected a floating point tensor, got dtype {t.dtype}")
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means: expected shape [N,3], got {_shape(means)}")
    N = means.shape[0]
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4) or viewmats.shape[0] < 1:
        raise ValueError(f"viewmats: expected shape [C,4,4] with C >= 1, got {_shape(viewmats)}")
    C = viewmats.shape[0]
    expected = {
        "quats": (N, 4), "scales": (N, 3), "opacities": (N,), "Ks": (C, 3, 3),
    }
    for name, t in named:
        if name in expected and tuple(t.shape) != expected[name]:
            want = "[" + ",".join(str(s) for s in expected[name]) + "]"
            raise ValueError(f"{name}: expected shape {want} (N={N}, C={C}), got {_shape(t)}")
    if colors.dim() == 2 and colors.shape[0] == N:
        D = colors.shape[1]
    elif colors.dim() == 3 and colors.shape[:2] == (C, N):
        D = colors.shape[2]
    else:
        raise ValueError(f"colors: expected shape [N,D] or [C,N,D] (N={N}, C={C}), got {_shape(colors)}")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode: expected one of {', '.join(RENDER_MODES)}, got {render_mode!r}")
    if render_mode in ("RGB", "RGB+D", "RGB+ED") and D < 1:
        raise ValueError(f"colors: expected at least one feature channel (D >= 1), got {_shape(colors)}")
    if backgrounds is not None and tuple(backgrounds.shape) != (C, D):
        raise ValueError(f"backgrounds: expected shape [C,D] = [{C},{D}], got {_shape(backgrounds)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if color_only is not None:
        ok = (isinstance(color_only, tuple) and len(color_only) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in color_only))
        if not ok or not 0 <= color_only[0] <= color_only[1] <= D:
            raise ValueError(f"color_only: expected a (start, stop) pair of ints with 0 <= start <= stop <= D = {D}, "
                             f"got {color_only!r}")
        if render_mode in ("D", "ED"):
            raise ValueError(f"color_only: render_mode {render_mode!r} renders no colors")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name}: expected a positive int (image size in pixels), got {v!r}")
    if not (near_plane >= 0 and far_plane > near_plane):
        raise ValueError(f"near_plane/far_plane: expected 0 <= near_plane < far_plane, got {near_plane}, {far_plane}")
    if not eps2d >= 0:
        raise ValueError(f"eps2d: expected a non-negative float, got {eps2d}")
    device, dtype = means.device, means.dtype
    for name, t in named:
        if t.device != device:
            raise ValueError(f"{name}: on device {t.device}, expected {device} (the device of means)")
        if t.dtype != dtype:
            raise ValueError(f"{name}: dtype {t.dtype}, expected {dtype} (the dtype of means)")
    with torch.no_grad():
        for name, t in named:
            # a finite sum implies finite elements (one reduction, no bool tensor); only an
            # overflowing sum of finite values takes the exact check
            if t.numel() and not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: contains NaN or infinite values")
    return C, N, D
