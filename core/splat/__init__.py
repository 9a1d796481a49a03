"""splatrefine.splat: differentiable Gaussian rasterization with gsplat.rasterization's meaning.

One function, `rasterize`, with two backends: "cpu" (ours: torch projection + compiled tile
kernels) and "gsplat" (CUDA). See docs/rasterizer.md.

Importing this package is cheap (no torch/numba at import); the heavy modules load on first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["rasterize"]


def rasterize(
    means: "torch.Tensor",
    quats: "torch.Tensor",
    scales: "torch.Tensor",
    opacities: "torch.Tensor",
    colors: "torch.Tensor",
    viewmats: "torch.Tensor",
    Ks: "torch.Tensor",
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: "torch.Tensor | None" = None,
    render_mode: str = "RGB",
    backend: str = "auto",
    color_only: tuple[int, int] | None = None,
) -> tuple["torch.Tensor", "torch.Tensor", dict[str, Any]]:
    """Render N Gaussians into C cameras, differentiably.

    Args:
        means [N,3] world positions; quats [N,4] wxyz rotations (need not be normalised);
        scales [N,3] linear (not log) axis lengths; opacities [N] in 0..1;
        colors [N,D] or [C,N,D] post-activation features of any width D;
        viewmats [C,4,4] world-to-camera (OpenCV axes); Ks [C,3,3] pinhole intrinsics;
        width, height image size in pixels; near_plane/far_plane depth culling; eps2d 2D low-pass;
        backgrounds [C,D] per-camera background features (None = 0);
        render_mode "RGB" | "D" | "ED" | "RGB+D" | "RGB+ED" (D = accumulated z-depth,
        ED = expected depth, appended as a last channel in the "RGB+" modes);
        backend "auto" (gsplat for CUDA tensors when installed, else cpu) | "cpu" | "gsplat";
        color_only (start, stop), cpu backend only: channels of colors whose gradients reach those
        colors alone, not the Gaussians' geometry (as if a detached copy of the geometry rendered
        them; one backward pass instead of two when a loss on them must not move the geometry).

    Returns:
        render_colors [C,H,W,D'] (D' = D, 1 or D+1 by mode), render_alphas [C,H,W,1], meta dict
        with "means2d" [C,N,2] (retain_grad-able, for densification), "radii" int32 [C,N,2]
        (0 = culled), "depths" [C,N], "conics" [C,N,3], "width", "height", "tile_size",
        "n_cameras", "backend".

    Differentiable in means, quats, scales, opacities, colors and backgrounds.
    Raises ValueError naming the argument for wrong shapes, devices, dtypes, non-finite values,
    or zero-size images.
    """
    from ._validate import validate

    validate(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
             near_plane, far_plane, eps2d, backgrounds, render_mode, backend, color_only)
    chosen = backend
    if backend == "auto":
        chosen = "gsplat" if means.is_cuda and _gsplat_available() else "cpu"
    kwargs = dict(near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
                  backgrounds=backgrounds, render_mode=render_mode)
    if chosen == "gsplat":
        if color_only is not None:
            raise ValueError("color_only: the gsplat backend has no such option; render those channels "
                             "in a second call with the geometry detached")
        if not means.is_cuda:
            raise ValueError("backend: 'gsplat' needs CUDA tensors (means is on "
                             f"{means.device}); use backend='cpu' or 'auto'")
        if not _gsplat_available():
            raise ValueError("backend: 'gsplat' is not installed (pip install gsplat)")
        from .gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks,
                                width, height, **kwargs)
    if means.is_cuda:
        raise ValueError("backend: 'cpu' needs CPU tensors (means is on CUDA); use backend='gsplat'")
    from .cpu import rasterize_cpu

    return rasterize_cpu(means, quats, scales, opacities, colors, viewmats, Ks,
                         width, height, color_only=color_only, **kwargs)


def _gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # pragma: no cover - depends on the install
        return False
    return True
