"""The gsplat backend on CUDA against the CPU backend, in the same process on the same machine.

    python bench/raster_cuda.py --cases 20000x256x22 100000x512x22 --out gsplat.json

For each case (N Gaussians x resolution x channels, bench/raster.py's head-like cloud): median wall
ms of one forward and of one forward+backward through `splatrefine.splat.rasterize` with
backend="gsplat" (CUDA-synchronised, after warm-up calls) and with backend="cpu", and the ratio.
The CPU side uses whatever cores the machine has (torch.get_num_threads() is printed), so its
numbers are that machine's, not the 2-core figures of docs/rasterizer.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raster import head_scene  # noqa: E402

from splatrefine.splat import rasterize  # noqa: E402


def _call(args, res, backend, backward):
    params = [t.detach().requires_grad_(backward) for t in args[:5]]
    with torch.set_grad_enabled(backward):
        r, a, _ = rasterize(*params, *args[5:], res, res, backend=backend)
        if backward:
            (r.sum() + a.sum()).backward()


def median_ms(args, res, backend, backward, repeat):
    sync = torch.cuda.synchronize if backend == "gsplat" else (lambda: None)
    for _ in range(2):
        _call(args, res, backend, backward)
    sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _call(args, res, backend, backward)
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["20000x256x22"], help="NxRESxD")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per case and backend (CPU: a quarter)")
    ap.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/raster_cuda.py: torch sees no CUDA device; run it on a GPU machine")
    rows = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    print(f"{'case':>16} {'gsplat fwd':>11} {'gsplat f+b':>11} {'cpu fwd':>9} {'cpu f+b':>9} {'cpu/gsplat f+b':>15}")
    for case in a.cases:
        n, res, d = (int(x) for x in case.split("x"))
        cpu_args = head_scene(n, d, res)
        gpu_args = tuple(t.cuda() for t in cpu_args)
        row = {"case": case,
               "gsplat_fwd_ms": median_ms(gpu_args, res, "gsplat", False, a.repeat),
               "gsplat_fwd_bwd_ms": median_ms(gpu_args, res, "gsplat", True, a.repeat),
               "cpu_fwd_ms": median_ms(cpu_args, res, "cpu", False, max(3, a.repeat // 4)),
               "cpu_fwd_bwd_ms": median_ms(cpu_args, res, "cpu", True, max(3, a.repeat // 4))}
        row["cpu_over_gsplat_fwd_bwd"] = row["cpu_fwd_bwd_ms"] / row["gsplat_fwd_bwd_ms"]
        rows.append(row)
        print(f"{case:>16} {row['gsplat_fwd_ms']:>9.2f}ms {row['gsplat_fwd_bwd_ms']:>9.2f}ms "
              f"{row['cpu_fwd_ms']:>7.1f}ms {row['cpu_fwd_bwd_ms']:>7.1f}ms {row['cpu_over_gsplat_fwd_bwd']:>14.1f}x")
    if a.out:
        a.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                     "cpu_threads": torch.get_num_threads(), "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
