"""Benchmark of the experiment's refine stage: identities one after another vs side by side.

    python bench/refine_workers.py                                  # 4 identities, 600 dual-gs steps
    python bench/refine_workers.py --identities 6 --iterations 1000 --workers 2

Synthesizes the identities (facescape-like rig, 96 px), then refines each with the experiment's
refine settings and the `simulated` initial parser, first with 1 worker (one process, every
thread) and then with --workers processes of one thread each, as `splatrefine experiment` does.
Prints the wall time of both and their ratio, and checks that both give the same label quality.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # numba and torch in one process (1-worker run)

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def refine_all(root: Path, captures: list[Path], data: dict, workers: int) -> float:
    from splatrefine.plugins.extreme_pose.stages import refine_identity
    from splatrefine.workers import run_jobs

    jobs = []
    for cap in captures:
        run_dir = root / cap.name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        jobs.append((data, "bench", str(cap), str(run_dir), False))
    t0 = time.perf_counter()
    run_jobs(refine_identity, jobs, workers, f"refine ({workers} worker(s))", serial_progress=False)
    return time.perf_counter() - t0


def extreme_miou(root: Path) -> float:
    vals = [json.loads((d / "metrics.json").read_text())["refined_input"]["buckets"]["extreme"]["miou"]
            for d in sorted(root.iterdir())]
    return sum(vals) / len(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from splatrefine.plugins.extreme_pose.config import DEFAULT_REFINE
    from splatrefine.plugins.extreme_pose.stages import write_identity
    from splatrefine.progress import set_progress_enabled

    set_progress_enabled(False)
    data = copy.deepcopy(DEFAULT_REFINE)
    data["representation"]["params"]["iterations"] = args.iterations
    data["initial_parser"] = {"plugin": "simulated"}
    data["seed"] = 0
    data["device"] = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        captures = [write_identity(tmp / "data" / f"id_{i:04d}", i, "facescape-like", 96)
                    for i in range(args.identities)]
        serial = refine_all(tmp / "serial", captures, data, 1)
        q_serial = extreme_miou(tmp / "serial")
        parallel = refine_all(tmp / "parallel", captures, data, args.workers)
        q_parallel = extreme_miou(tmp / "parallel")
    print(f"{args.identities} identities, {args.iterations} dual-gs steps each")
    print(f"1 worker:  {serial:7.1f} s   refined extreme mIoU {100 * q_serial:.1f}")
    print(f"{args.workers} workers: {parallel:7.1f} s   refined extreme mIoU {100 * q_parallel:.1f}")
    print(f"speedup {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
