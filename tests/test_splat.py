"""splatrefine.splat.rasterize against the pure-torch reference (tests/splat_reference.py) and
gsplat's own CPU-runnable reference (gsplat.cuda._torch_impl)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from splat_reference import ref_project, ref_rasterize  # noqa: E402
from splatrefine.splat import rasterize  # noqa: E402


def make_scene(n=300, cams=2, d=4, seed=0, dtype=torch.float64, width=48, height=40):
    """Random Gaussians in front of (and some behind) `cams` cameras, with the awkward cases:
    near-degenerate (flat, needle) scales, fully opaque Gaussians, an opaque stack, Gaussians
    partly off-screen and behind the camera."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.6
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.12 + 0.005
    k = max(1, n // 10)
    scales[:k, 0] = 1e-6  # flat discs
    scales[k:2 * k, 1:] = 1e-5  # needles
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    opac[2 * k:3 * k] = 1.0  # fully opaque
    # an opaque stack along the optical axis
    m = min(12, n - 4 * k)
    stack = slice(3 * k, 3 * k + m)
    means[stack] = torch.tensor([0.05, -0.02, 0.0], dtype=dtype) + 0.02 * torch.arange(
        m, dtype=dtype)[:, None]
    opac[stack] = 0.995
    scales[stack] = 0.15
    means[-k:, 2] -= 3.0  # behind the camera (camera at z = -2 looking +z)
    means[-2 * k:-k, 0] += 1.6  # partly or fully off-screen to the right
    colors = torch.rand(n, d, generator=g, dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(cams, 1, 1)
    for c in range(cams):
        a = 0.35 * c
        viewmats[c, :3, :3] = torch.tensor(
            [[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]], dtype=dtype)
        viewmats[c, 2, 3] = 2.0
    Ks = torch.tensor([[55.0, 0, width / 2 + 1.3], [0, 57.0, height / 2 - 0.7], [0, 0, 1]],
                      dtype=dtype)[None].repeat(cams, 1, 1)
    bgs = torch.rand(cams, d, generator=g, dtype=dtype)
    return means, quats, scales, opac, colors, viewmats, Ks, width, height, bgs


def _grads(fn, params, bg, rest, mode, seed=1):
    params = [p.detach().clone().requires_grad_(True) for p in params]
    bg = bg.detach().clone().requires_grad_(True)
    render, alpha, meta = fn(*params, *rest, backgrounds=bg, render_mode=mode)
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(render.shape, generator=g, dtype=render.dtype)
    wa = torch.rand(alpha.shape, generator=g, dtype=alpha.dtype)
    loss = (render * w).sum() + (alpha * wa).sum()
    grads = torch.autograd.grad(loss, params + [bg], allow_unused=True)
    return render.detach(), alpha.detach(), grads


NAMES = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]


@pytest.mark.parametrize("mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
def test_matches_reference_float64(mode):
    means, quats, scales, opac, colors, vm, Ks, W, H, bgs = make_scene(seed=3)
    rest = (vm, Ks, W, H)
    params = [means, quats, scales, opac, colors]
    r, a, g = _grads(rasterize, params, bgs, rest, mode)
    r2, a2, g2 = _grads(ref_rasterize, params, bgs, rest, mode)
    assert r.shape == (2, H, W, {"RGB": 4, "D": 1, "ED": 1}.get(mode, 5))
    assert a.shape == (2, H, W, 1)
    assert 0.3 < a.mean().item() < 0.95  # a scene with real coverage and holes
    assert torch.allclose(r, r2, atol=1e-5, rtol=0)
    assert torch.allclose(a, a2, atol=1e-5, rtol=0)
    for name, x, y in zip(NAMES, g, g2):
        if y is None:  # colors / backgrounds do not reach "D"/"ED" renders
            assert x is None or float(x.abs().max()) == 0.0, name
            continue
        scale = float(y.abs().max())
        assert scale > 0, name
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-4 * scale), name


def test_matches_reference_float32_multicam_colors():
    """float32 (the production dtype), per-camera colors [C,N,D] with D = 22 (3 RGB + 19 classes)."""
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(seed=5, dtype=torch.float32, cams=3)
    g = torch.Generator().manual_seed(9)
    colors = torch.rand(3, means.shape[0], 22, generator=g)
    bgs = torch.rand(3, 22, generator=g)
    params = [means, quats, scales, opac, colors]
    r, a, gr = _grads(rasterize, params, bgs, (vm, Ks, W, H), "RGB+ED")
    r2, a2, gr2 = _grads(ref_rasterize, params, bgs, (vm, Ks, W, H), "RGB+ED")
    assert r.shape == (3, H, W, 23)
    assert (r[..., :22] - r2[..., :22]).abs().max() < 1e-5
    assert (a - a2).abs().max() < 1e-5
    # expected depth divides by alpha: compare where the pixel is covered
    cov = a2[..., 0] > 0.05
    assert ((r[..., 22] - r2[..., 22])[cov]).abs().max() < 1e-4
    for name, x, y in zip(NAMES, gr, gr2):
        rel = float((x - y).norm() / y.norm())
        assert rel < 1e-4, (name, rel)


def test_transmittance_stop_and_alpha_clamp():
    """An opaque stack: alpha is clamped to 0.999 and a pixel stops before T <= 1e-4."""
    n = 30
    dtype = torch.float64
    means = torch.zeros(n, 3, dtype=dtype)
    means[:, 2] = torch.linspace(0.0, 1.0, n, dtype=dtype)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=dtype).repeat(n, 1)
    scales = torch.full((n, 3), 0.5, dtype=dtype)
    opac = torch.ones(n, dtype=dtype)
    colors = (torch.arange(n, dtype=dtype)[:, None].repeat(1, 3) + 1) / n
    vm = torch.eye(4, dtype=dtype)[None]
    vm[0, 2, 3] = 3.0
    Ks = torch.tensor([[[40.0, 0, 16.5], [0, 40.0, 16.5], [0, 0, 1]]], dtype=dtype)
    r, a, _ = rasterize(means, quats, scales, opac, colors, vm, Ks, 32, 32)
    # At the centre pixel every Gaussian has alpha = min(0.999, 1): the first leaves T = 1e-3, the
    # second would leave 1e-6 <= 1e-4, so the pixel stops before it: only the first one counts.
    c = r[0, 16, 16]
    assert torch.allclose(c, torch.full((3,), 0.999 / n, dtype=dtype), atol=1e-12)
    assert abs(a[0, 16, 16, 0].item() - 0.999) < 1e-12
    r2, a2, _ = ref_rasterize(means, quats, scales, opac, colors, vm, Ks, 32, 32)
    assert torch.allclose(r, r2, atol=1e-9) and torch.allclose(a, a2, atol=1e-9)


def test_gradcheck_tiny_scene():
    g = torch.Generator().manual_seed(11)
    n = 5
    dtype = torch.float64
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 0.6
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.1 + 0.08
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.5 + 0.3
    colors = torch.rand(n, 2, generator=g, dtype=dtype)
    bgs = torch.rand(1, 2, generator=g, dtype=dtype)
    vm = torch.eye(4, dtype=dtype)[None]
    vm[0, 2, 3] = 2.0
    Ks = torch.tensor([[[20.0, 0, 8.5], [0, 20.0, 7.5], [0, 0, 1]]], dtype=dtype)

    def f(m, q, s, o, c, b):
        r, a, _ = rasterize(m, q, s, o, c, vm, Ks, 17, 15, backgrounds=b, render_mode="RGB+D")
        return r, a

    inputs = tuple(t.requires_grad_(True) for t in (means, quats, scales, opac, colors, bgs))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_projection_and_tiles_match_gsplat_torch_impl():
    ti = pytest.importorskip("gsplat.cuda._torch_impl")
    from splatrefine.splat._composite import isect_tiles
    from splatrefine.splat.projection import project

    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(n=250, seed=7, width=70, height=50)
    covars, _ = ti._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii_g, m2_g, d_g, con_g, _ = ti._fully_fused_projection(covars=covars, means=means,
                                                               viewmats=vm, Ks=Ks, width=W,
                                                               height=H)
    radii, m2, d, con = project(means, quats, scales, vm, Ks, W, H)
    vis = (radii_g > 0).all(-1)
    assert vis.sum() > 200 and (~vis).sum() > 40  # culling is exercised
    assert torch.equal(radii, radii_g.to(torch.int32))
    assert torch.allclose(m2[vis], m2_g[vis], rtol=1e-10, atol=1e-9)
    assert torch.allclose(d, d_g, rtol=1e-12, atol=1e-12)
    assert torch.allclose(con[vis], con_g[vis], rtol=1e-9, atol=1e-9)
    # the reference of the test suite agrees too
    radii_r, m2_r, _, con_r = ref_project(means, quats, scales, vm, Ks, W, H)
    assert torch.equal(radii_r, radii) and torch.allclose(con_r[vis], con[vis], rtol=1e-9)

    tiles_x, tiles_y = math.ceil(W / 16), math.ceil(H / 16)
    _, isect_ids, flatten_ids = ti._isect_tiles(m2_g, radii_g, d_g, 16, tiles_x, tiles_y)
    tile_bits = (tiles_x * tiles_y).bit_length()
    key = isect_ids >> 32
    cam_g = key >> tile_bits
    tile_g = key & ((1 << tile_bits) - 1)
    cam, tile, slot = isect_tiles(m2, radii, d, W, H)
    assert len(slot) == len(flatten_ids) > 500
    assert torch.equal(cam, cam_g) and torch.equal(tile, tile_g)
    assert torch.equal(slot, flatten_ids.to(torch.int64))


def test_radii_meta_and_culling():
    means, quats, scales, opac, colors, vm, Ks, W, H, _ = make_scene(seed=2, dtype=torch.float32)
    means = means.clone().requires_grad_(True)
    r, a, meta = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H)
    assert meta["radii"].shape == (2, means.shape[0], 2) and meta["radii"].dtype == torch.int32
    k = means.shape[0] // 10
    assert (meta["radii"][:, -k:] == 0).all()  # behind the camera: culled
    meta["means2d"].retain_grad()
    r.sum().backward()
    g2 = meta["means2d"].grad
    assert g2.shape == (2, means.shape[0], 2)
    assert (g2[:, -k:] == 0).all() and g2.abs().sum() > 0
    assert torch.isfinite(means.grad).all()


def test_empty_scene_and_no_visible_gaussians():
    means, quats, scales, opac, colors, vm, Ks, W, H, bgs = make_scene(n=20, seed=1)
    means = means.clone()
    means[:, 2] = -5.0  # everything behind every camera
    r, a, _ = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backgrounds=bgs)
    assert (a == 0).all()
    assert torch.allclose(r, bgs[:, None, None, :].expand_as(r))
    r, a, _ = rasterize(means[:0], quats[:0], scales[:0], opac[:0], colors[:0], vm, Ks, W, H)
    assert r.shape == (2, H, W, 4) and (r == 0).all()


@pytest.mark.slow
def test_numba_kernels_match_native(monkeypatch):
    """The numba fallback (no C++ compiler) gives the same images and gradients."""
    from splatrefine.splat import _native

    if _native.load() is None:
        pytest.skip("native kernels unavailable: the numba path is what every other test runs")
    means, quats, scales, opac, colors, vm, Ks, W, H, bgs = make_scene(seed=4, dtype=torch.float32)
    params = [means, quats, scales, opac, colors]
    r, a, g = _grads(rasterize, params, bgs, (vm, Ks, W, H), "RGB+D")
    monkeypatch.setattr(_native, "load", lambda: None)
    r2, a2, g2 = _grads(rasterize, params, bgs, (vm, Ks, W, H), "RGB+D")
    assert (r - r2).abs().max() < 1e-5 and (a - a2).abs().max() < 1e-5
    for name, x, y in zip(NAMES, g, g2):
        assert float((x - y).norm() / y.norm()) < 1e-4, name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_opacity", [True, False])
def test_compiled_projection_matches_torch_projection(dtype, with_opacity):
    """The compiled projection repeats projection.project's arithmetic: identical values, and
    gradients for every Gaussian (culled ones included) within 1e-4 relative."""
    from splatrefine.splat import _projection_native as fast
    from splatrefine.splat.projection import project

    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(n=400, cams=3, seed=6, dtype=dtype)
    if not fast.usable(vm, Ks):
        pytest.skip("native kernels unavailable")
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(s, generator=g, dtype=dtype) for s in ((3, 400, 2), (3, 400), (3, 400, 3))]
    results = []
    for fn in (project, fast.project_native):
        params = [t.clone().requires_grad_(True) for t in (means, quats, scales)]
        radii, m2, depths, conics = fn(*params, vm, Ks, W, H,
                                       opacities=opac if with_opacity else None)
        loss = sum((o * w).sum() for o, w in zip((m2, depths, conics), weights))
        results.append(((radii, m2.detach(), depths.detach(), conics.detach()),
                        torch.autograd.grad(loss, params)))
    (ref_out, ref_grads), (out, grads) = results
    assert torch.equal(ref_out[0], out[0])
    assert ((ref_out[0] > 0).all(-1)).sum() > 100 and ((ref_out[0] == 0).all(-1)).sum() > 20
    for x, y in zip(ref_out[1:], out[1:]):
        assert float((x - y).abs().max()) <= 1e-6 * float(x.abs().max())
    for name, x, y in zip(["means", "quats", "scales"], ref_grads, grads):
        assert float((x - y).norm() / x.norm()) < 1e-4, name


def test_compiled_depth_order_matches_stable_sort(monkeypatch):
    """Radix-sorted depth order equals torch's stable sort, ties and culled Gaussians included."""
    from splatrefine.splat import _composite, _native

    if _native.load() is None:
        pytest.skip("native kernels unavailable")
    g = torch.Generator().manual_seed(3)
    cases = []
    for dtype in (torch.float32, torch.float64):
        for C, N in ((1, 5000), (3, 700), (2, 0)):
            depths = torch.round((torch.rand(C, N, generator=g, dtype=dtype) * 5 + 0.02) * 40) / 40
            radii = (torch.rand(C, N, 2, generator=g) > 0.15).to(torch.int32) * 4
            cases.append((depths, radii, _composite.depth_order(depths, radii)))
    monkeypatch.setattr(_native, "load", lambda: None)
    for depths, radii, fast in cases:
        assert torch.equal(fast, _composite.depth_order(depths, radii))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_boxes_hold_every_pixel_that_can_count(dtype):
    """prepare_geometry's per-Gaussian pixel box (the bounding box of the ellipse
    sigma <= log(255 o) with 0.01 px of slack, which the kernels iterate over) holds every pixel
    centre that passes the kernels' sigma test, in the kernels' own arithmetic."""
    from splatrefine.splat import _kernels as K

    rng = np.random.default_rng(0)
    G, W, H = 400, 64, 48
    means = np.stack([rng.uniform(-5, W + 5, G), rng.uniform(-5, H + 5, G)], 1).astype(dtype)
    A = rng.normal(size=(G, 2, 2)) * rng.uniform(0.3, 6.0, (G, 1, 1))
    cov = A @ A.transpose(0, 2, 1) + 0.3 * np.eye(2)
    inv = np.linalg.inv(cov)
    conics = np.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], 1).astype(dtype)
    opac = rng.uniform(1.0 / 255, 1.0, G).astype(dtype)
    geom = np.zeros((G, 8), dtype)
    rect = np.empty((G, 4), np.int32)
    K.prepare_geometry(means, conics, opac, np.ones(G, bool), W, H, K.make_consts(dtype), geom, rect)
    px = np.arange(W, dtype=dtype) + dtype(0.5)
    py = np.arange(H, dtype=dtype) + dtype(0.5)
    for g in range(G):
        dx = means[g, 0] - px[None, :]
        dy = means[g, 1] - py[:, None]
        a, b, c = conics[g]
        sigma = dtype(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy  # the kernels' arithmetic
        ys, xs = np.nonzero(sigma <= geom[g, 6])
        if len(xs):
            assert rect[g, 0] <= xs.min() and xs.max() <= rect[g, 1], g
            assert rect[g, 2] <= ys.min() and ys.max() <= rect[g, 3], g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_binning_matches_numba(dtype):
    """sr_bin_count/sr_bin_fill give prepare_geometry + tile_rects + bin_tiles' arrays exactly."""
    from splatrefine.splat import _composite, _native
    from splatrefine.splat import _kernels as K
    from splatrefine.splat.projection import project

    lib = _native.load()
    if lib is None:
        pytest.skip("native kernels unavailable")
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(n=500, cams=3, seed=8, dtype=dtype)
    radii, m2, depths, conics = project(means, quats, scales, vm, Ks, W, H, opacities=opac)
    C, N = vm.shape[0], means.shape[0]
    tx, ty = (W + 15) // 16, (H + 15) // 16
    order = _composite.depth_order(depths, radii).numpy()
    m2n = m2.detach().reshape(C * N, 2).contiguous().numpy()
    cnn = conics.detach().reshape(C * N, 3).contiguous().numpy()
    opn = opac[None].expand(C, N).reshape(C * N).contiguous().numpy()
    native = _composite._bin_native(lib, m2n, cnn, opn, radii, order, C, N, W, H, tx, ty)
    visible = (radii > 0).all(-1).reshape(-1).numpy()
    geom = np.zeros((C * N, 8), m2n.dtype)
    rect = np.empty((C * N, 4), np.int32)
    K.prepare_geometry(m2n, cnn, opn, visible, W, H, K.make_consts(m2n.dtype), geom, rect)
    trect = _composite.tile_rects(m2, radii, tx, ty).reshape(C * N, 4).numpy()
    cam_of = np.repeat(np.arange(C, dtype=np.int32), N)
    ref = (geom, rect, *K.bin_tiles(order, trect, cam_of, tx * ty, tx, C))
    assert visible.sum() > 500 and len(native[3]) > 1000
    for name, x, y in zip(["geom", "rect", "tile_start", "gid", "slot", "slot_start"], native, ref):
        if name in ("geom", "rect"):
            x, y = x[visible], y[visible]
        assert np.array_equal(x, y), name


def test_expanded_and_strided_output_gradients():
    """The backward reads the render/alpha gradients through their strides: the expanded gradient
    of `render.sum()` and a non-contiguous one give the same gradients as dense copies."""
    means, quats, scales, opac, colors, vm, Ks, W, H, bgs = make_scene(seed=9, dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    render, alpha, _ = rasterize(*params, vm, Ks, W, H, backgrounds=bgs)
    g = torch.Generator().manual_seed(3)
    wide = torch.rand(render.shape[:-1] + (2 * render.shape[-1],), generator=g, dtype=render.dtype)
    expanded = torch.ones((), dtype=render.dtype).expand_as(render)  # what render.sum() sends
    a_expanded = torch.ones((), dtype=alpha.dtype).expand_as(alpha)
    for go in (expanded, wide[..., ::2]):
        assert not go.is_contiguous()
        got = torch.autograd.grad([render, alpha], params, [go, a_expanded], retain_graph=True)
        want = torch.autograd.grad([render, alpha], params, [go.contiguous(), a_expanded.contiguous()],
                                   retain_graph=True)
        for name, x, y in zip(NAMES, got, want):
            assert torch.equal(x, y), name


def test_native_library_is_cached():
    from splatrefine.splat import _native

    cxx = _native._compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    first, key = _native._build(cxx)
    mtime = first.stat().st_mtime_ns
    assert _native._build(cxx) == (first, key) and first.stat().st_mtime_ns == mtime  # no rebuild
    assert _native._holds_key(first, key) and not _native._holds_key(first, "0" * 64)


def test_cache_key_follows_sources_and_flags(tmp_path):
    """Any change to a kernel source (or a new file, or the flags) gives another library name."""
    import shutil

    from splatrefine.splat import _native

    cxx = _native._compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "csrc"
    shutil.copytree(_native.SOURCE_DIR, src)
    names = {p.name for p in _native.sources(src)}
    assert {"common.h", "raster.cpp", "projection.cpp", "depth_order.cpp"} <= names
    key = _native.cache_key(cxx, src)
    assert key == _native.cache_key(cxx, _native.SOURCE_DIR) == _native.cache_key(cxx, src)
    header = src / "common.h"
    header.write_text(header.read_text() + "\n// changed\n")
    changed = _native.cache_key(cxx, src)
    (src / "extra.cpp").write_text("// a new file\n")
    added = _native.cache_key(cxx, src)
    flagged = _native.cache_key(cxx, src, [*_native.FLAGS, "-DSOMETHING"])
    assert len({key, changed, added, flagged}) == 4


_LOAD_IN_CHILD = """
from splatrefine.splat import _native
lib = _native.load()
print("RESULT", int(_native.built_here()), int(lib is not None), _native.error())
"""


@pytest.mark.slow
def test_cold_cache_concurrent_processes_build_once(tmp_path):
    """Several processes loading a cold cache at once: one compiles, the others wait for it on
    the lock and load the same library; no temporary file is left behind."""
    import subprocess
    import sys

    from splatrefine.splat import _native

    if _native._compiler() is None:
        pytest.skip("no C++ compiler")
    env = {**os.environ, "SPLATREFINE_CACHE_DIR": str(tmp_path), "SPLATREFINE_SPLAT_KERNELS": "native"}
    procs = [subprocess.Popen([sys.executable, "-c", _LOAD_IN_CHILD], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(next(line.split()[1:] for line in out.splitlines() if line.startswith("RESULT")))
    assert sorted(r[0] for r in results) == ["0", "0", "0", "1"]  # exactly one build
    assert all(r[1:] == ["1", "None"] for r in results)  # every process loaded it
    libs = sorted(p.name for p in tmp_path.iterdir())
    assert len(libs) == 2 and libs[0].endswith(".lock") and libs[1].endswith(".so"), libs


def test_kernel_sources_ship_as_package_data():
    """csrc/ has no __init__.py: the .cpp/.h files reach the wheel only through package-data."""
    import fnmatch
    import tomllib
    from pathlib import Path

    from splatrefine.splat import _native

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data.get("splatrefine.splat", [])
    for src in _native.sources():
        rel = src.relative_to(_native.SOURCE_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} not in package-data"


def test_gsplat_adapter_with_cpu_substitute(monkeypatch):
    """The adapter makes one gsplat.rasterization call with all channels and maps its outputs;
    on a CPU-only machine gsplat.rasterization is replaced by our CPU rasterizer."""
    gsplat = pytest.importorskip("gsplat")
    from splatrefine.splat.cpu import rasterize_cpu
    from splatrefine.splat.gsplat_backend import rasterize_gsplat

    calls = []

    def fake_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                           near_plane=0.01, far_plane=1e10, radius_clip=0.0, eps2d=0.3,
                           sh_degree=None, packed=True, tile_size=16, backgrounds=None,
                           render_mode="RGB", sparse_grad=False, absgrad=False,
                           rasterize_mode="classic", channel_chunk=32, **kwargs):
        calls.append(dict(packed=packed, tile_size=tile_size, sh_degree=sh_degree,
                          rasterize_mode=rasterize_mode, channel_chunk=channel_chunk,
                          D=colors.shape[-1]))
        r, a, meta = rasterize_cpu(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                   height, near_plane=near_plane, far_plane=far_plane,
                                   eps2d=eps2d, backgrounds=backgrounds, render_mode=render_mode)
        return r, a, {"radii": meta["radii"], "means2d": meta["means2d"],
                      "depths": meta["depths"], "conics": meta["conics"], "opacities": opacities}

    monkeypatch.setattr(gsplat, "rasterization", fake_rasterization)
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(seed=6, dtype=torch.float32)
    colors = torch.rand(means.shape[0], 22, generator=torch.Generator().manual_seed(1))
    bgs = torch.rand(2, 22, generator=torch.Generator().manual_seed(2))
    for mode in ("RGB", "RGB+ED", "D"):
        r, a, meta = rasterize_gsplat(means, quats, scales, opac, colors, vm, Ks, W, H,
                                      near_plane=0.05, eps2d=0.3, backgrounds=bgs,
                                      render_mode=mode)
        r2, a2, meta2 = rasterize_cpu(means, quats, scales, opac, colors, vm, Ks, W, H,
                                      near_plane=0.05, eps2d=0.3, backgrounds=bgs,
                                      render_mode=mode)
        assert torch.equal(r, r2) and torch.equal(a, a2)
        assert torch.equal(meta["radii"], meta2["radii"]) and meta["backend"] == "gsplat"
    assert len(calls) == 3
    assert all(c["packed"] is False and c["tile_size"] == 16 and c["sh_degree"] is None
               and c["rasterize_mode"] == "classic" and c["channel_chunk"] > c["D"] for c in calls)


def test_auto_backend_on_cpu_tensors_uses_cpu():
    means, quats, scales, opac, colors, vm, Ks, W, H, _ = make_scene(n=40, seed=8)
    _, _, meta = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backend="auto")
    assert meta["backend"] == "cpu"
    with pytest.raises(ValueError, match="backend: 'gsplat' needs CUDA tensors"):
        rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backend="gsplat")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_parity_on_cuda():
    pytest.importorskip("gsplat")
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(seed=12, dtype=torch.float32,
                                                                 width=96, height=80)
    colors = torch.rand(means.shape[0], 22, generator=torch.Generator().manual_seed(3))
    bgs = torch.rand(2, 22, generator=torch.Generator().manual_seed(4))
    args = [means, quats, scales, opac, colors, vm, Ks]
    r, a, _ = rasterize(*args, W, H, backgrounds=bgs, render_mode="RGB+ED", backend="cpu")
    cuda = [t.cuda() for t in args]
    rg, ag, meta = rasterize(*cuda, W, H, backgrounds=bgs.cuda(), render_mode="RGB+ED",
                             backend="auto")
    assert meta["backend"] == "gsplat"
    assert (rg.cpu()[..., :22] - r[..., :22]).abs().max() < 1e-4
    assert (ag.cpu() - a).abs().max() < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_gsplat_gradients_match_cpu_on_cuda(mode):
    """The backward pass agrees too: every input's gradient of the same weighted loss, gsplat on
    CUDA against the CPU backend, in float32 with the production's 22 channels."""
    pytest.importorskip("gsplat")
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(seed=13, dtype=torch.float32,
                                                                 width=96, height=80)
    g = torch.Generator().manual_seed(5)
    colors = torch.rand(means.shape[0], 22, generator=g)
    bgs = torch.rand(2, 22, generator=g)
    params = [means, quats, scales, opac, colors]
    r, a, gr = _grads(rasterize, params, bgs, (vm, Ks, W, H), mode)

    def on_cuda(*args, **kw):  # CUDA inputs, CPU outputs (so the CPU-drawn loss weights apply)
        render, alpha, meta = rasterize(*args, **kw, backend="gsplat")
        return render.cpu(), alpha.cpu(), meta

    # the weights are drawn on the CPU in both runs, so both losses are the same function
    rg, ag, grg = _grads(on_cuda, [p.cuda() for p in params], bgs.cuda(), (vm.cuda(), Ks.cuda(), W, H), mode)
    assert (rg[..., :22] - r[..., :22]).abs().max() < 1e-4
    assert (ag - a).abs().max() < 1e-4
    rel = {name: float((x.cpu() - y).norm() / y.norm()) for name, x, y in zip(NAMES, grg, gr)}
    print("relative gradient difference, gsplat vs cpu:", rel)
    assert max(rel.values()) < 2e-3, rel


# --- bad input ---------------------------------------------------------------------------------

def _good():
    means, quats, scales, opac, colors, vm, Ks, W, H, bgs = make_scene(n=10, seed=0,
                                                                       dtype=torch.float32)
    return dict(means=means, quats=quats, scales=scales, opacities=opac, colors=colors,
                viewmats=vm, Ks=Ks, width=W, height=H), bgs


@pytest.mark.parametrize("name,value,match", [
    ("means", torch.zeros(10, 2), r"means: expected shape \[N,3\]"),
    ("quats", torch.zeros(10, 3), r"quats: expected shape \[10,4\]"),
    ("scales", torch.zeros(9, 3), r"scales: expected shape \[10,3\]"),
    ("opacities", torch.zeros(10, 1), r"opacities: expected shape \[10\]"),
    ("colors", torch.zeros(3, 10, 3), r"colors: expected shape \[N,D\] or \[C,N,D\]"),
    ("viewmats", torch.zeros(2, 3, 4), r"viewmats: expected shape \[C,4,4\]"),
    ("Ks", torch.zeros(1, 3, 3), r"Ks: expected shape \[2,3,3\]"),
    ("width", 0, r"width: expected a positive int"),
    ("height", 12.5, r"height: expected a positive int"),
    ("quats", torch.zeros(10, 4, dtype=torch.float64), r"quats: dtype torch.float64, expected"),
    ("means", torch.full((10, 3), float("nan")), r"means: contains NaN"),
    ("scales", torch.full((10, 3), float("inf")), r"scales: contains NaN or infinite"),
    ("opacities", torch.zeros(10, dtype=torch.int64), r"opacities: expected a floating point"),
])
def test_bad_input_raises_value_error(name, value, match):
    kw, _ = _good()
    kw[name] = value
    with pytest.raises(ValueError, match=match):
        rasterize(**kw)


def test_bad_mode_backend_and_backgrounds():
    kw, bgs = _good()
    with pytest.raises(ValueError, match="render_mode: expected one of"):
        rasterize(**kw, render_mode="RGBD")
    with pytest.raises(ValueError, match="backend: expected one of"):
        rasterize(**kw, backend="cuda")
    with pytest.raises(ValueError, match=r"backgrounds: expected shape \[C,D\] = \[2,4\]"):
        rasterize(**kw, backgrounds=bgs[:, :3])


@pytest.mark.parametrize("kernels", ["native", "numba"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_color_only_channels_reach_their_colors_and_not_the_geometry(monkeypatch, kernels, dtype):
    """One backward with color_only = (a, b) gives, bit for bit, what two backwards give: the
    geometry's and the other channels' gradients of a loss without channels a..b, and the
    gradients of channels a..b from the loss on them alone (dual-gs's class loss kept off the
    geometry)."""
    from splatrefine.splat import _native

    if kernels == "numba":
        monkeypatch.setattr(_native, "load", lambda: None)
    elif _native.load() is None:
        pytest.skip("native kernels unavailable")
    means, quats, scales, opac, _, vm, Ks, W, H, _ = make_scene(n=300, cams=2, seed=7, dtype=dtype)
    D, (a, b) = 11, (3, 9)
    g = torch.Generator().manual_seed(3)
    colors = torch.rand(2, 300, D, generator=g, dtype=dtype)
    bgs = torch.rand(2, D, generator=g, dtype=dtype)
    w_out = torch.randn(2, H, W, D + 1, generator=g, dtype=dtype)  # RGB+ED: a depth channel last
    w_alpha = torch.randn(2, H, W, 1, generator=g, dtype=dtype)
    inside = torch.zeros(D + 1, dtype=torch.bool)
    inside[a:b] = True

    def grads(loss_of, color_only=None):
        params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors, bgs)]
        render, alpha, _ = rasterize(*params[:5], vm, Ks, W, H, backgrounds=params[5], render_mode="RGB+ED",
                                     color_only=color_only)
        loss_of(render, alpha).backward()
        return render.detach(), [p.grad for p in params]

    geo_part = lambda r, al: (r * w_out * ~inside).sum() + (al * w_alpha).sum()  # noqa: E731
    color_part = lambda r, al: (r * w_out * inside).sum()  # noqa: E731
    r_one, one = grads(lambda r, al: geo_part(r, al) + color_part(r, al), color_only=(a, b))
    r_geo, geo = grads(geo_part)
    _, col = grads(color_part)
    assert torch.equal(r_one, r_geo)  # the forward is untouched
    for name, x, y in zip(["means", "quats", "scales", "opacities"], one, geo):
        assert torch.equal(x, y), name
        assert float(y.abs().max()) > 0, name
    assert torch.equal(one[4][..., a:b], col[4][..., a:b]) and float(col[4][..., a:b].abs().max()) > 0
    assert torch.equal(one[4][..., :a], geo[4][..., :a]) and torch.equal(one[4][..., b:], geo[4][..., b:])
    assert torch.equal(one[5], geo[5] + col[5])  # the backgrounds' gradient does not involve geometry
    # without color_only the same one backward moves the geometry by every channel
    _, both = grads(lambda r, al: geo_part(r, al) + color_part(r, al))
    assert not torch.equal(both[0], geo[0])


def test_color_only_checked():
    means, quats, scales, opac, colors, vm, Ks, W, H, _ = make_scene(n=20, d=4)
    for bad, needle in (((3, 2), "0 <= start <= stop <= D = 4"), ((0, 5), "D = 4"), ([0, 2], "pair of ints"),
                        ((0.0, 2), "pair of ints")):
        with pytest.raises(ValueError, match=f"color_only: .*{needle}"):
            rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, color_only=bad)
    with pytest.raises(ValueError, match="color_only: render_mode 'D' renders no colors"):
        rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, render_mode="D", color_only=(0, 2))
