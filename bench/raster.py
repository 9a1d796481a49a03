"""Benchmark of splatrefine.splat.rasterize (CPU backend) against the pure-torch reference.

    OMP_WAIT_POLICY=PASSIVE python bench/raster.py            # full table (a few minutes)
    python bench/raster.py --cases 20000x256x22 --repeat 5     # one case

For N in {5k, 20k, 100k}, resolution {256, 512}, D in {3, 22}: forward and forward+backward
median ms, the process CPU time of forward+backward (robust when other work shares the cores),
peak memory of one forward+backward (MB of resident memory it adds, measured in a fresh child
process from VmHWM), and the speedup of
forward+backward over tests/splat_reference.py (dense per-tile pure torch, autograd) measured in
the same run (n/a where the reference would evaluate more than --ref-pairs pixel-Gaussian pairs).

Old vs new in the same run (`--baseline REV`, default the commit before the kernel rework; `none`
skips it): for the --compare cases the rasterizer of git revision REV (its whole splatrefine.splat,
exported with `git archive` and imported through PYTHONPATH) and the working tree's run in two
worker processes that take turns, one forward+backward each, --compare-rounds times; the table
gives both medians (wall and process CPU ms) and old/new ratios, and the issue's 38 ms target
baseline scaled by the measured ratio.

    python bench/raster.py --cases 20000x256x22 --compare-rounds 40

`--profile [CASE...]` prints where the time goes instead: thread-CPU ms of each stage (validation,
projection, depth sort, binning, forward, backward, reduction, the rest) on one thread, for REV
and this tree side by side.

The scene is a fitted-head-like cloud: flat Gaussians on an ellipsoid surface (spacing-sized,
log-normal scales, opacities spread over 0.05..1) plus a volume of smaller interior ones, seen
from 2.2 head radii so the head fills about 70% of the frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from splatrefine.splat import rasterize  # noqa: E402


def head_scene(n: int, d: int, res: int, seed: int = 0, dtype=torch.float32):
    """(means, quats, scales, opacities, colors, viewmats [1,4,4], Ks [1,3,3]) of a head-like cloud."""
    g = torch.Generator().manual_seed(seed)
    n_surf = int(n * 0.85)
    n_vol = n - n_surf
    axes = torch.tensor([0.8, 1.0, 0.9])
    v = torch.randn(n_surf, 3, generator=g)
    v = v / v.norm(dim=1, keepdim=True)
    surf = v * axes
    normal = v / axes
    normal = normal / normal.norm(dim=1, keepdim=True)
    vol = (torch.rand(n_vol, 3, generator=g) * 2 - 1) * axes * 0.9
    means = torch.cat([surf, vol])
    area = 4 * math.pi * 0.9 ** 2
    spacing = math.sqrt(area / n_surf)
    sc = spacing * torch.exp(0.35 * torch.randn(n, 3, generator=g)) * 0.8
    sc[:n_surf, 2] *= 0.15  # flat along the local normal
    sc[n_surf:] *= 0.6
    # quaternion that turns z onto the surface normal (random spin for volume Gaussians)
    z = torch.tensor([0.0, 0.0, 1.0]).expand(n_surf, 3)
    axis = torch.cross(z, normal, dim=1)
    cosang = (z * normal).sum(1).clamp(-1, 1)
    ang = torch.acos(cosang)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp(min=1e-9)
    q_surf = torch.cat([torch.cos(ang / 2)[:, None], axis * torch.sin(ang / 2)[:, None]], 1)
    q_vol = torch.randn(n_vol, 4, generator=g)
    quats = torch.cat([q_surf, q_vol])
    opac = torch.sigmoid(torch.randn(n, generator=g) * 1.5 + 0.5).clamp(0.05, 1.0)
    colors = torch.rand(n, d, generator=g)
    dist = 2.2
    viewmat = torch.eye(4)
    viewmat[2, 3] = dist
    f = 0.5 * res / math.tan(math.radians(25.0))
    K = torch.tensor([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])
    out = (means, quats, sc, opac, colors, viewmat[None], K[None])
    return tuple(t.to(dtype).contiguous() for t in out)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS:")


def peak_of(n: int, res: int, d: int) -> float:
    """In a fresh process: peak resident MB added by one forward+backward (after a tiny warm-up
    call has loaded the kernels), from VmHWM (ru_maxrss would carry the parent's peak over exec)."""
    _fwd_bwd(rasterize, head_scene(200, d, 32), 32)
    args = head_scene(n, d, res)
    base = _rss_mb()
    _fwd_bwd(rasterize, args, res)
    return _status_mb("VmHWM:") - base


def _peak_child(n: int, res: int, d: int) -> float:
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--peak-of", f"{n}x{res}x{d}"],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _fwd(fn, args, res):
    with torch.no_grad():
        r, a, _ = fn(*args, res, res)
    return r


def _fwd_bwd(fn, args, res):
    params = [t.detach().requires_grad_(True) for t in args[:5]]
    r, a, _ = fn(*params, *args[5:], res, res)
    loss = r.sum() + a.sum()
    loss.backward()
    return r


def _time(fn, repeat):
    """(median wall ms, median process CPU ms) over `repeat` calls."""
    ts, cs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        fn()
        cs.append((time.process_time() - c0) * 1000.0)
        ts.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(ts), statistics.median(cs)


def _ref_pairs(args, res) -> int:
    """Pixel-Gaussian pairs the reference evaluates: tile intersections x 256."""
    from splat_reference import ref_project

    means, quats, scales, _, _, vm, K = args
    with torch.no_grad():
        radii, m2, _, _ = ref_project(means, quats, scales, vm, K, res, res)
    vis = (radii[0] > 0).all(-1)
    r = radii[0, vis].to(m2.dtype)
    m = m2[0, vis]
    tiles = math.ceil(res / 16)
    lo = torch.floor(m / 16 - r / 16).clamp(0, tiles)
    hi = torch.ceil(m / 16 + r / 16).clamp(0, tiles)
    return int(((hi - lo).clamp(min=0).prod(-1) * 256).sum().item())


def run_case(n, res, d, repeat, ref_pairs_limit, ref_repeat):
    from splat_reference import ref_rasterize

    args = head_scene(n, d, res)
    _fwd_bwd(rasterize, args, res)  # warm-up (builds or loads the cached kernels)
    fwd, _ = _time(lambda: _fwd(rasterize, args, res), repeat)
    fb, fb_cpu = _time(lambda: _fwd_bwd(rasterize, args, res), repeat)
    peak = _peak_child(n, res, d)
    pairs = _ref_pairs(args, res)
    if pairs <= ref_pairs_limit:
        ref, _ = _time(lambda: _fwd_bwd(ref_rasterize, args, res), ref_repeat)
        speed = f"{ref / fb:7.1f}x"
        ref_s = f"{ref:9.0f}"
    else:
        speed, ref_s = "    n/a", "      n/a"
    with torch.no_grad():
        _, _, meta = rasterize(*args, res, res)
    return fwd, fb, fb_cpu, peak, ref_s, speed, int((meta["radii"] > 0).all(-1).sum())


BASELINE_REV = "49be392"  # before the kernel rework (issue 23 item 4): 38 ms in the issue
ISSUE_BASELINE_MS = 38.0  # the issue's forward+backward for ISSUE_CASE (target <= 30 ms)
ISSUE_CASE = "20000x256x22"


def serve(case: str) -> None:
    """Worker for --baseline: build the case, warm up, then per stdin line run one forward+backward
    and print 'wall_ms cpu_ms'."""
    n, res, d = (int(v) for v in case.split("x"))
    args = head_scene(n, d, res)
    for _ in range(2):
        _fwd_bwd(rasterize, args, res)
    import splatrefine.splat as splat

    print("READY", splat.__file__, flush=True)
    for _line in sys.stdin:
        t0, c0 = time.perf_counter(), time.process_time()
        _fwd_bwd(rasterize, args, res)
        print(f"{(time.perf_counter() - t0) * 1e3:.3f} {(time.process_time() - c0) * 1e3:.3f}",
              flush=True)


STAGES = [  # (label, where, attribute): what `--profile` times
    ("validate", "_validate", "validate"),
    ("project fwd", "lib", "sr_project_fwd_f32"),
    ("depth sort", "lib", "sr_depth_order_f32"),
    ("binning", "lib", "sr_bin_count_f32"), ("binning", "lib", "sr_bin_fill_f32"),
    ("binning", "_composite", "tile_rects"), ("binning", "_kernels", "prepare_geometry"),
    ("binning", "_kernels", "bin_tiles"),
    ("composite fwd", "lib", "sr_forward_f32"),
    ("composite bwd", "lib", "sr_backward_f32"),
    ("gradient reduce", "lib", "sr_reduce_f32"),
    ("project bwd", "lib", "sr_project_bwd_f32"),
]


def profile_stages(case: str, iters: int = 20) -> dict[str, float]:
    """Mean thread-CPU ms per forward+backward of each stage, on one thread (torch and the
    kernels), so that other processes on the machine do not count; 'other' is the rest (Python,
    torch ops, allocation, autograd)."""
    import importlib

    torch.set_num_threads(1)
    from splatrefine.splat import _native

    lib = _native.load()
    spent: dict[str, float] = {}
    for label, where, attr in STAGES:
        obj = lib if where == "lib" else importlib.import_module(f"splatrefine.splat.{where}")
        fn = getattr(obj, attr, None) if obj is not None else None
        if fn is None:
            continue

        def timed(*a, _fn=fn, _label=label, **k):
            c0 = time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                spent[_label] = spent.get(_label, 0.0) + (time.thread_time() - c0) * 1e3

        setattr(obj, attr, timed)
    n, res, d = (int(v) for v in case.split("x"))
    args = head_scene(n, d, res)
    for _ in range(3):
        _fwd_bwd(rasterize, args, res)
    spent.clear()
    c0 = time.thread_time()
    for _ in range(iters):
        _fwd_bwd(rasterize, args, res)
    total = (time.thread_time() - c0) * 1e3 / iters
    out = {k: v / iters for k, v in spent.items()}
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


def profile(case: str, rev: str) -> None:
    """--profile: stage times of this tree (and of `rev` in a worker, side by side)."""
    import json
    import subprocess
    import tempfile

    cols = {"new": profile_stages(case)}
    if rev != "none":
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ)
            env["PYTHONPATH"] = str(_export_revision(rev, Path(tmp))) + os.pathsep + env.get("PYTHONPATH", "")
            out = subprocess.run([sys.executable, __file__, "--profile-json", case], env=env,
                                 capture_output=True, text=True, check=True).stdout
            cols = {f"old {rev}": json.loads(out.strip().splitlines()[-1]), **cols}
    labels = [lb for lb in dict.fromkeys([s[0] for s in STAGES] + ["other", "total"])
              if any(lb in c for c in cols.values())]
    print(f"\nwhere the time goes, {case}: thread-CPU ms per forward+backward, one thread, "
          "mean of 20")
    print(f"{'stage':>16} " + " ".join(f"{k:>13}" for k in cols) + ("    old/new" if len(cols) == 2 else ""))
    for lb in labels:
        vals = [c.get(lb, 0.0) for c in cols.values()]
        ratio = f"{vals[0] / vals[1]:10.2f}x" if len(vals) == 2 and vals[1] > 0.05 else ""
        print(f"{lb:>16} " + " ".join(f"{v:13.2f}" for v in vals) + ratio)


def _export_revision(rev: str, dest: Path) -> Path:
    """`git archive` core/ of `rev` into dest; returns a folder to put on PYTHONPATH whose
    `splatrefine` is that revision's core/."""
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parents[1]
    data = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev, "core"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest / "src", filter="data")
    (dest / "path").mkdir()
    (dest / "path" / "splatrefine").symlink_to(dest / "src" / "core")
    return dest / "path"


def compare(case: str, rev: str, rounds: int) -> None:
    """Old (revision `rev`) vs new (this tree) forward+backward, alternating worker processes."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        old_path = _export_revision(rev, Path(tmp))
        workers = {}
        for name, extra in (("old", str(old_path)), ("new", None)):
            env = dict(os.environ)
            if extra:
                env["PYTHONPATH"] = extra + os.pathsep + env.get("PYTHONPATH", "")
            workers[name] = subprocess.Popen(
                [sys.executable, __file__, "--serve", case], env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True)
        for name, w in workers.items():
            line = w.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"{name} worker failed to start")
            where = line.split()[1]
            if (name == "old") != where.startswith(tmp):
                raise RuntimeError(f"{name} worker imported splatrefine from {where}")
        times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for i in range(rounds):
            for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
                w = workers[name]
                w.stdin.write("run\n")
                w.stdin.flush()
                wall, cpu = (float(v) for v in w.stdout.readline().split())
                times[name].append((wall, cpu))
        for w in workers.values():
            w.stdin.close()
            w.wait()
    med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
           for k, v in times.items()}
    (ow, oc), (nw, nc) = med["old"], med["new"]
    scaled = (f"   issue's {ISSUE_BASELINE_MS:.0f} ms / ratio = {ISSUE_BASELINE_MS * nw / ow:4.1f} ms"
              if case == ISSUE_CASE else "")
    print(f"{case:>13}  old {rev}: {ow:6.1f} ms ({oc:6.1f} cpu)   new: {nw:6.1f} ms ({nc:6.1f} cpu)   "
          f"old/new: {ow / nw:4.2f}x wall, {oc / nc:4.2f}x cpu{scaled}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=None, help="NxRESxD, e.g. 20000x256x22 (none given: only the old-vs-new comparison)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--ref-repeat", type=int, default=1)
    ap.add_argument("--ref-pairs", type=float, default=3e8,
                    help="skip the reference above this many pixel-Gaussian pairs")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help="git revision to compare against in the same run ('none' to skip)")
    ap.add_argument("--compare", nargs="*", default=["20000x256x22"],
                    help="cases for the old-vs-new comparison")
    ap.add_argument("--compare-rounds", type=int, default=30)
    ap.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", nargs="*", default=None,
                    help="stage times (one thread) of these cases, old and new side by side")
    ap.add_argument("--profile-json", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peak_of:
        print(peak_of(*(int(v) for v in a.peak_of.split("x"))))
        return
    if a.serve:
        serve(a.serve)
        return
    if a.profile_json:
        import json

        print(json.dumps(profile_stages(a.profile_json)))
        return
    if a.profile is not None:
        for case in a.profile or ["20000x256x22"]:
            profile(case, a.baseline)
        return
    if a.cases is not None:  # `--cases` alone: no table, only the comparison
        cases = [tuple(int(v) for v in c.split("x")) for c in a.cases]
    else:
        cases = [(n, r, d) for n in (5000, 20000, 100000) for r in (256, 512) for d in (3, 22)]
    import numba

    print(f"torch {torch.__version__} threads={torch.get_num_threads()}  numba {numba.__version__} "
          f"threads={numba.get_num_threads()} layer={numba.threading_layer() if _layer_ready() else '?'}  "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (wall times assume idle cores; "
          "'cpu ms' is process CPU time of fwd+bwd over both threads)")
    print(f"{'N':>7} {'res':>4} {'D':>3} {'visible':>7} {'fwd ms':>8} {'fwd+bwd ms':>10} "
          f"{'cpu ms':>7} {'peak MB':>8} {'ref ms':>9} {'speedup':>8}")
    for n, r, d in cases:
        fwd, fb, cpu, peak, ref_s, speed, vis = run_case(n, r, d, a.repeat, a.ref_pairs,
                                                         a.ref_repeat)
        print(f"{n:>7} {r:>4} {d:>3} {vis:>7} {fwd:8.1f} {fb:10.1f} {cpu:7.1f} {peak:8.0f} "
              f"{ref_s} {speed}", flush=True)
    if a.baseline != "none" and a.compare:
        print(f"\nold vs new, same run: alternating worker processes, median of {a.compare_rounds} "
              f"forward+backward each (load average {os.getloadavg()[0]:.2f})")
        for case in a.compare:
            try:
                compare(case, a.baseline, a.compare_rounds)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"{case:>13}  no comparison with {a.baseline}: {exc}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _layer_ready() -> bool:
    try:
        import numba

        numba.threading_layer()
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    main()
