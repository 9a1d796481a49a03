"""torch.autograd.Function around the numba tile kernels (binning, forward, backward)."""

from __future__ import annotations

import numpy as np
import torch

from . import _kernels as K
from . import _native

TILE = 16


def tile_rects(means2d: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int) -> torch.Tensor:
    """Tile ranges [C,N,4] int32 (x0, x1, y0, y1; x1/y1 exclusive), gsplat's isect_tiles rule.

    means2d [C,N,2], radii [C,N,2] int32 (0 = culled -> empty range).
    """
    m = means2d.detach() / TILE
    r = radii.to(means2d.dtype) / TILE
    lo = torch.floor(m - r).to(torch.int32)
    hi = torch.ceil(m + r).to(torch.int32)
    x0 = lo[..., 0].clamp(0, tiles_x)
    x1 = hi[..., 0].clamp(0, tiles_x)
    y0 = lo[..., 1].clamp(0, tiles_y)
    y1 = hi[..., 1].clamp(0, tiles_y)
    rect = torch.stack([x0, x1, y0, y1], dim=-1)
    culled = ~(radii > 0).all(-1)
    rect[culled] = 0
    return rect


def depth_order(depths: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Flat slots (c*N + n) of visible Gaussians sorted by (camera, depth), stable. [V] int64."""
    C, N = depths.shape
    lib = _native.load()
    if lib is not None:
        d = depths.detach().contiguous()
        r = radii.contiguous()
        order = torch.empty(C * N, dtype=torch.int64)
        suf = "f32" if d.dtype == torch.float32 else "f64"
        V = getattr(lib, "sr_depth_order_" + suf)(d.data_ptr(), r.data_ptr(), C, N,
                                                  order.data_ptr())
        return order[:V]
    visible = (radii > 0).all(-1)
    parts = []
    for c in range(C):
        idx = torch.nonzero(visible[c]).squeeze(1)
        if idx.numel():
            o = torch.sort(depths[c, idx].detach(), stable=True).indices
            parts.append(idx[o] + c * N)
    if not parts:
        return torch.zeros(0, dtype=torch.int64)
    return torch.cat(parts)


def _p(a: np.ndarray) -> int:
    """Address of a C-contiguous array for the native kernels."""
    assert a.flags.c_contiguous
    return a.ctypes.data


def _bin_native(lib, m2, cn, op, radii, order, C, N, width, height, tiles_x, tiles_y):
    """prepare_geometry + tile_rects + bin_tiles in the compiled library (same results):
    -> geom [G,8], rect [G,4], tile_start [C*T+1], gid [M], slot [M], slot_start [V+1]."""
    G, V = C * N, order.shape[0]
    suf = "f32" if m2.dtype == np.float32 else "f64"
    geom = np.empty((G, 8), m2.dtype)
    rect = np.empty((G, 4), np.int32)
    trect = np.empty((G, 4), np.int32)
    tile_start = np.empty(C * tiles_x * tiles_y + 1, np.int64)
    slot_start = np.empty(V + 1, np.int64)
    rd = radii.contiguous().numpy()
    args = _native.BinArgs(
        means2d=_p(m2), conics=_p(cn), opac=_p(op), radii=_p(rd), order=_p(order), geom=_p(geom),
        rect=_p(rect), trect=_p(trect), tile_start=_p(tile_start), slot_start=_p(slot_start),
        C=C, N=N, V=V, width=width, height=height, tiles_x=tiles_x, tiles_y=tiles_y)
    M = getattr(lib, "sr_bin_count_" + suf)(args)
    gid = np.empty(M, np.int32)
    slot = np.empty(M, np.int32)
    args.gid, args.slot = _p(gid), _p(slot)
    getattr(lib, "sr_bin_fill_" + suf)(args)
    return geom, rect, tile_start, gid, slot, slot_start


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opac, feats, bgs, radii, depths, width, height, color_only=None):
        C, N, D = feats.shape
        dtype = means2d.dtype
        npdtype = np.float32 if dtype == torch.float32 else np.float64
        consts = K.make_consts(npdtype)
        tiles_x = (width + TILE - 1) // TILE
        tiles_y = (height + TILE - 1) // TILE
        lib = _native.load()
        with torch.no_grad():
            order = depth_order(depths, radii).numpy()
            m2 = means2d.detach().reshape(C * N, 2).contiguous().numpy()
            cn = conics.detach().reshape(C * N, 3).contiguous().numpy()
            op = opac.detach().reshape(C * N).contiguous().numpy()
            Dp = max(8, (D + 7) // 8 * 8)
            fe = np.zeros((C * N, Dp), npdtype)
            fe[:, :D] = feats.detach().reshape(C * N, D).numpy()
            has_bg = bgs is not None
            bg = bgs.detach().contiguous().numpy() if has_bg else np.zeros((C, D), npdtype)
            if color_only is not None:
                bg = bg.copy()  # zeroed in part after the forward below: not the caller's memory
            if lib is not None:
                geom, rect, tile_start, gid, slot, slot_start = _bin_native(
                    lib, m2, cn, op, radii, order, C, N, width, height, tiles_x, tiles_y)
            else:
                visible = (radii > 0).all(-1)
                trect = tile_rects(means2d, radii, tiles_x, tiles_y).reshape(C * N, 4).numpy()
                cam_of = np.repeat(np.arange(C, dtype=np.int32), N)
                geom = np.zeros((C * N, 8), npdtype)
                rect = np.empty((C * N, 4), np.int32)
                K.prepare_geometry(m2, cn, op, visible.reshape(-1).numpy(), width, height, consts,
                                   geom, rect)
                tile_start, gid, slot, slot_start = K.bin_tiles(order, trect, cam_of,
                                                                tiles_x * tiles_y, tiles_x, C)
            out = torch.empty((C, height, width, D), dtype=dtype)
            alpha = torch.empty((C, height, width), dtype=dtype)
            T = torch.empty((C, height, width), dtype=dtype)
            last = torch.empty((C, height, width), dtype=torch.int32)
            used = np.empty(max(1, gid.shape[0]), np.uint8)  # did intersection s reach a pixel
            args = None
            if lib is not None:
                suf = "f32" if npdtype == np.float32 else "f64"
                args = _native.RasterArgs(
                    geom=_p(geom), rect=_p(rect), feats=_p(fe), bgs=_p(bg),
                    tile_start=_p(tile_start), gid=_p(gid), slot_of=_p(slot), out=_p(out.numpy()),
                    out_alpha=_p(alpha.numpy()), out_T=_p(T.numpy()), out_last=_p(last.numpy()),
                    used=_p(used), Dp=fe.shape[1], has_bg=int(has_bg), width=width,
                    height=height, tiles_x=tiles_x, tiles_y=tiles_y,
                    n_tiles=tile_start.shape[0] - 1, D=D)
                getattr(lib, "sr_forward_" + suf)(args)
            else:
                K.raster_forward(geom, rect, fe, bg, has_bg, tile_start, gid, width, height,
                                 tiles_x, tiles_y, consts, out.numpy(), alpha.numpy(), T.numpy(),
                                 last.numpy())
        if color_only is not None:
            # The backward reads the features and the background only in the geometry's gradient
            # (feature . render gradient); the features' own gradient is the compositing weight
            # times the render gradient. With these channels zeroed there, their render
            # gradients reach their features alone, bit for bit what a backward without them
            # gives the geometry.
            fe[:, color_only[0]:color_only[1]] = 0
            bg[:, color_only[0]:color_only[1]] = 0
        ctx.state = (geom, rect, fe, bg, has_bg, tile_start, gid, slot, slot_start, order,
                     T, last, consts, width, height, tiles_x, tiles_y, C, N, D, lib, used, args)
        return out, alpha[..., None]

    @staticmethod
    def backward(ctx, g_out, g_alpha):
        (geom, rect, fe, bg, has_bg, tile_start, gid, slot, slot_start, order,
         T, last, consts, width, height, tiles_x, tiles_y, C, N, D, lib, used, args) = ctx.state
        dtype = T.dtype
        if g_out is None:
            g_out = torch.zeros((C, height, width, D), dtype=dtype)
        if g_alpha is None:
            g_alpha = torch.zeros((C, height, width, 1), dtype=dtype)
        M = gid.shape[0]
        gbuf = np.empty((M, 8 + fe.shape[1]), consts.dtype)
        grads = torch.zeros((C * N, gbuf.shape[1]), dtype=dtype)
        if lib is not None:
            suf = "f32" if dtype == torch.float32 else "f64"
            # the kernel reads the gradients through their strides: an expanded one (the
            # gradient of a sum) is not copied
            go, ga = g_out, g_alpha
            args.g_out, args.g_alpha, args.gbuf = go.data_ptr(), ga.data_ptr(), _p(gbuf)
            args.go_s[:] = go.stride()
            args.ga_s[:] = ga.stride()[:3]
            getattr(lib, "sr_backward_" + suf)(args)
            getattr(lib, "sr_reduce_" + suf)(_p(order), order.shape[0], _p(slot_start), _p(gbuf),
                                              gbuf.shape[1], _p(grads.numpy()))
        else:
            go = g_out.contiguous()
            ga = g_alpha.reshape(C, height, width).contiguous()
            K.raster_backward(geom, rect, fe, bg, has_bg, tile_start, gid, slot, width, height,
                              tiles_x, tiles_y, consts, T.numpy(), last.numpy(), go.numpy(),
                              ga.numpy(), gbuf)
            K.reduce_grads(order, slot_start, gbuf, grads.numpy())
        grads = grads.reshape(C, N, gbuf.shape[1])
        v_means2d = grads[..., 0:2]
        v_conics = grads[..., 2:5]
        v_opac = grads[..., 5]
        v_feats = grads[..., 8:8 + D]
        v_bg = torch.einsum("chwd,chw->cd", go, T) if has_bg and ctx.needs_input_grad[4] else None
        return v_means2d, v_conics, v_opac, v_feats, v_bg, None, None, None, None, None


def composite(means2d, conics, opac, feats, bgs, radii, depths, width, height, color_only=None):
    """Front-to-back alpha compositing of projected Gaussians (differentiable).

    means2d [C,N,2], conics [C,N,3], opac [C,N], feats [C,N,D], bgs [C,D] | None,
    radii [C,N,2] int32, depths [C,N] -> (render [C,H,W,D], alpha [C,H,W,1]). color_only
    (start, stop): feature channels whose render gradients reach those features only, not the
    geometry (means2d, conics, opac).
    """
    return _Composite.apply(means2d, conics, opac, feats, bgs, radii, depths, width, height, color_only)


def isect_tiles(means2d: torch.Tensor, radii: torch.Tensor, depths: torch.Tensor, width: int,
                height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tile/Gaussian intersection list of the CPU backend, in compositing order.

    means2d [C,N,2], radii int32 [C,N,2], depths [C,N] -> (camera [M], tile [M] (row-major tile
    index within the camera), slot [M] (c*N + n)), sorted by (camera, tile, depth) as gsplat's
    isect_tiles + sort.
    """
    C, N = depths.shape
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    order = depth_order(depths, radii).numpy()
    lib = _native.load()
    if lib is not None:  # the binning the native kernels use
        m2 = means2d.detach().reshape(C * N, 2).contiguous().numpy()
        ones = np.ones(C * N, m2.dtype)
        _, _, tile_start, gid, _, _ = _bin_native(lib, m2, np.ones((C * N, 3), m2.dtype), ones,
                                                  radii, order, C, N, width, height, tiles_x,
                                                  tiles_y)
    else:
        trect = tile_rects(means2d, radii, tiles_x, tiles_y).reshape(C * N, 4).numpy()
        cam_of = np.repeat(np.arange(C, dtype=np.int32), N)
        tile_start, gid, _, _ = K.bin_tiles(order, trect, cam_of, tiles_x * tiles_y, tiles_x, C)
    counts = np.diff(tile_start)
    tile_flat = np.repeat(np.arange(C * tiles_x * tiles_y), counts)
    cam = tile_flat // (tiles_x * tiles_y)
    tile = tile_flat % (tiles_x * tiles_y)
    return torch.from_numpy(cam), torch.from_numpy(tile), torch.from_numpy(gid.astype(np.int64))
