"""`projection.project` as one compiled kernel per direction (the CPU fast path).

Same values as the torch code in projection.py (same operation order, no FMA contraction), but
without the ~300 small torch ops its autograd graph costs per call. Used when the native library
is loaded and the cameras need no gradient; projection.project stays the definition and the
fallback.
"""

from __future__ import annotations

import torch

from . import _native


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d,
                near_plane, far_plane):
        lib = _native.load()
        C, N = viewmats.shape[0], means.shape[0]
        dtype = means.dtype
        suf = "f32" if dtype == torch.float32 else "f64"
        m, q, s = means.detach().contiguous(), quats.detach().contiguous(), scales.detach().contiguous()
        vm, ks = viewmats.detach().contiguous(), Ks.detach().contiguous()
        op = opacities.detach().contiguous() if opacities is not None else None
        radii = torch.empty((C, N, 2), dtype=torch.int32)
        means2d = torch.empty((C, N, 2), dtype=dtype)
        depths = torch.empty((C, N), dtype=dtype)
        conics = torch.empty((C, N, 3), dtype=dtype)
        getattr(lib, "sr_project_fwd_" + suf)(_native.ProjectArgs(
            means=_ptr(m), quats=_ptr(q), scales=_ptr(s), opac=_ptr(op) if op is not None else None,
            viewmats=_ptr(vm), Ks=_ptr(ks), radii=_ptr(radii), means2d=_ptr(means2d),
            depths=_ptr(depths), conics=_ptr(conics), C=C, N=N, width=width, height=height,
            eps2d=eps2d, near_plane=near_plane, far_plane=far_plane))
        ctx.save_for_backward(m, q, s, vm, ks)
        ctx.args = (width, height, eps2d, near_plane, far_plane)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics

    @staticmethod
    def backward(ctx, _g_radii, g_means2d, g_depths, g_conics):
        m, q, s, vm, ks = ctx.saved_tensors
        width, height, eps2d, near_plane, far_plane = ctx.args
        C, N = vm.shape[0], m.shape[0]
        dtype = m.dtype

        def grad_or_zeros(g, shape):
            return torch.zeros(shape, dtype=dtype) if g is None else g.contiguous()

        g_m2 = grad_or_zeros(g_means2d, (C, N, 2))
        g_d = grad_or_zeros(g_depths, (C, N))
        g_c = grad_or_zeros(g_conics, (C, N, 3))
        g_means = torch.empty_like(m)
        g_quats = torch.empty_like(q)
        g_scales = torch.empty_like(s)
        suf = "f32" if dtype == torch.float32 else "f64"
        getattr(_native.load(), "sr_project_bwd_" + suf)(_native.ProjectArgs(
            means=_ptr(m), quats=_ptr(q), scales=_ptr(s), viewmats=_ptr(vm), Ks=_ptr(ks),
            g_means2d=_ptr(g_m2), g_depths=_ptr(g_d), g_conics=_ptr(g_c), g_means=_ptr(g_means),
            g_quats=_ptr(g_quats), g_scales=_ptr(g_scales), C=C, N=N, width=width, height=height,
            eps2d=eps2d, near_plane=near_plane, far_plane=far_plane))
        return g_means, g_quats, g_scales, None, None, None, None, None, None, None, None


def usable(viewmats: torch.Tensor, Ks: torch.Tensor) -> bool:
    """Whether the compiled projection can stand in for the torch one for these cameras."""
    return not (viewmats.requires_grad or Ks.requires_grad) and _native.load() is not None


def project_native(means, quats, scales, viewmats, Ks, width, height, *, eps2d=0.3,
                   near_plane=0.01, far_plane=1e10, opacities=None):
    """projection.project, compiled: -> radii int32 [C,N,2], means2d [C,N,2], depths [C,N],
    conics [C,N,3]. Gradients flow to means, quats and scales (not to opacities or cameras)."""
    return _Project.apply(means, quats, scales, opacities, viewmats, Ks, width, height,
                          float(eps2d), float(near_plane), float(far_plane))
