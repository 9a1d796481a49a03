"""Fleet throughput: captures per hour with the `local` and `ray` executors on this machine, Ray's
per-task overhead, and a projection of FaceScape's ~7,000 captures on N CPU nodes and N GPUs.

The same small synthetic captures (procedural heads with exact GT) go through `splatrefine batch`
once per executor, each into a fresh OUT, with `workers` jobs at once (local: a process pool of
`workers`; ray: a local cluster of `workers` CPUs, one CPU per task). The projection scales the
measured per-capture cost (see `project`): two more refines, at twice and four times the bench
resolution, give a fixed and a per-pixel part of a fit step and of the other stages.

    python bench/fleet.py --out bench/results/fleet.json
    python bench/fleet.py --captures 8 --resolution 64 --iterations 200 --workers 2
    python bench/fleet.py --device cuda --workers 4 --gpus-per-task 0.25   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import yaml  # noqa: E402

FACESCAPE_CAPTURES = 7000  # 359 identities x 20 expressions, less the tuples FaceScape marks unusable
REAL = {"resolution": 256, "iterations": 3000, "views": 60}  # examples/extreme_pose/gpu.yaml scale
BENCH_VIEWS = 33  # the frontal-only rig


def refine_config(iterations: int, device: str) -> dict:
    return {"seed": 0, "device": device, "initial_parser": {"plugin": "simulated"},
            "representation": {"plugin": "dual-gs", "params": {"iterations": iterations, "init_points": 1500,
                                                                "checkpoint_every": 50}},
            "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 6, "pitch_count": 1}},
            "label_aggregator": {"plugin": "argmax"}}


def run_fleet(executor: str, params: dict, source: Path, config: Path, out: Path, device: str) -> dict:
    from splatrefine.fleet import BatchOptions, run_batch

    t0 = time.perf_counter()
    res = run_batch(BatchOptions(source=source, out=out, config_path=config, quiet=True, device=device,
                                 executor=executor, executor_params=params))
    wall = time.perf_counter() - t0
    done = [c for c in res["captures"] if c["status"] == "done"]
    if len(done) != len(res["captures"]):
        raise SystemExit(f"{executor}: {len(res['captures']) - len(done)} captures failed: "
                         + "; ".join(c.get("error", "") for c in res["captures"] if c["status"] != "done"))
    stages = sorted({s for c in done for s in c["timings"]})
    return {
        "executor": executor, "params": params, "captures": len(done), "slots": res["slots"],
        "wall_seconds": round(wall, 2),
        "captures_per_hour": round(len(done) / wall * 3600, 1),
        "job_seconds_mean": round(statistics.mean(c["seconds"] for c in done), 2),
        "stage_seconds_mean": {s: round(statistics.mean(c["timings"].get(s, 0.0) for c in done), 3) for s in stages},
    }


def _noop() -> int:
    return os.getpid()


def ray_overhead(cpus: int, tasks: int) -> dict:
    """Cluster start, a no-op task's round trip one at a time, and no-op throughput; the same
    through the `ray` executor (its worker wrapper limits threads and imports torch once)."""
    import ray

    from splatrefine.executors import ExecutorRegistry

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t0
    try:
        noop = ray.remote(_noop)
        ray.get([noop.remote() for _ in range(cpus * 2)])  # workers up
        t0 = time.perf_counter()
        for _ in range(tasks):
            ray.get(noop.remote())
        serial_ms = (time.perf_counter() - t0) / tasks * 1000
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(tasks)])
        throughput = tasks / (time.perf_counter() - t0)
        with ExecutorRegistry().build("ray", {"cpus_per_task": 1}) as ex:
            ex.result(ex.submit(os.getpid, ()))  # warm: torch imported in the worker
            t0 = time.perf_counter()
            for _ in range(tasks):
                ex.result(ex.submit(os.getpid, ()))
            executor_ms = (time.perf_counter() - t0) / tasks * 1000
    finally:
        ray.shutdown()
    return {"cluster_start_seconds": round(start, 2), "noop_round_trip_ms": round(serial_ms, 2),
            "noop_tasks_per_second": round(throughput, 1), "executor_round_trip_ms": round(executor_ms, 2),
            "tasks": tasks}


def scaling(work: Path, resolutions: tuple[int, int], iterations: int, device: str, warmup: int) -> dict:
    """One refine per resolution, in this process, one after the other (after an unrecorded one at
    `warmup` px, so imports and kernel compilation are not counted), with FaceScape-like Gaussian
    counts: fit seconds per step and the other stages' seconds, per pixel count."""
    from splatrefine.plugins.synthetic import write_synthetic
    from splatrefine.refine import run_refine

    cfg = refine_config(iterations, device)
    cfg["representation"]["params"]["init_points"] = 8000
    path = work / "scaling.yaml"
    path.write_text(yaml.safe_dump(cfg))
    points = {}
    for res in (warmup, *resolutions):
        cap = write_synthetic(work / f"scale_{res}", identities=1, seed=7, rig="frontal-only", resolution=res)[0]
        run_refine(capture=cap, demo=False, config_path=path, plugin_args=[], set_args=[], output=work / f"run_{res}",
                   resume=False, overwrite=False, device=None, quiet=True)
        timings = json.loads((work / f"run_{res}" / "stages.json").read_text())["timings"]
        if res == warmup:
            continue
        points[res] = {"fit_seconds_per_step": round(timings["fit"] / iterations, 4),
                       "other_seconds": round(sum(v for k, v in timings.items() if k != "fit"), 3)}
    return {"iterations": iterations, "init_points": 8000, "views": BENCH_VIEWS, "points": points}


def _linear(points: dict, key: str, pixels: float) -> float:
    """Through the two measured (pixels, value) points, at `pixels` (a falling line, i.e. noise,
    counts as flat at the larger value)."""
    (r0, p0), (r1, p1) = sorted((int(r), v) for r, v in points.items())  # JSON keys are strings
    x0, x1, y0, y1 = r0 * r0, r1 * r1, p0[key], p1[key]
    if y1 <= y0:
        return y0
    return y0 + (y1 - y0) / (x1 - x0) * (pixels - x0)


def project(measured: dict, scale: dict, cores: int, gpu_step_ms: float = 15.0, per_gpu: int = 4) -> dict:
    """FaceScape at REAL scale from measured per-capture costs.

    Assumptions (written into the result): a fit step costs a fixed part plus a part in proportion
    to the pixels it renders, both taken from the two scaling refines (their Gaussian counts start
    as FaceScape-scale fits do), and steps add up linearly; the other stages (parse, sample, render,
    evaluate, report) likewise, their pixel part times REAL views / bench views; plus the measured
    per-job overhead of the local fleet (process, imports, reading); one capture per core at a time,
    as the local executor and `--cpus-per-task 1` run them; no I/O bottleneck (captures on a shared
    file system); Ray's per-task overhead (milliseconds) is negligible next to a refine. GPU: not
    measured here (no GPU in this session): a gsplat fit step at 256 px is taken as `gpu_step_ms`
    (torch's per-step overhead dominates at this size), the other stages cost what they cost on
    the CPU (they are mostly PNG writing and the report), and `per_gpu` captures share a GPU at
    that speed (`--gpus-per-task 1/per_gpu`; a 256 px fit leaves a GPU mostly idle); run this
    script with --device cuda on a GPU machine to measure instead."""
    local = measured["local"]
    pixels = REAL["resolution"] ** 2
    fit_step = _linear(scale["points"], "fit_seconds_per_step", pixels)
    views = REAL["views"] / BENCH_VIEWS
    other = _linear(scale["points"], "other_seconds", pixels) * views
    overhead = max(0.0, local["job_seconds_mean"] - sum(local["stage_seconds_mean"].values()))
    cpu_capture_s = fit_step * REAL["iterations"] + other + overhead
    core_hours = FACESCAPE_CAPTURES * cpu_capture_s / 3600
    gpu_capture_s = gpu_step_ms / 1000 * REAL["iterations"] + other + overhead
    gpu_hours = FACESCAPE_CAPTURES * gpu_capture_s / per_gpu / 3600
    return {
        "assumptions": " ".join(project.__doc__.split("Assumptions (written into the result): ")[1].split()),
        "real_scale": REAL, "captures": FACESCAPE_CAPTURES,
        "fit_seconds_per_step_at_real_scale": round(fit_step, 4),
        "other_stages_seconds": round(other, 1), "job_overhead_seconds": round(overhead, 2),
        "cpu_seconds_per_capture": round(cpu_capture_s, 1),
        "cpu_core_hours": round(core_hours, 1),
        "cpu_nodes_32_cores_hours": {n: round(core_hours / (32 * n), 1) for n in (1, 4, 16, 64)},
        "gpu_step_ms_assumed": gpu_step_ms, "captures_per_gpu_assumed": per_gpu,
        "gpu_seconds_per_capture": round(gpu_capture_s, 1),
        "gpu_hours": round(gpu_hours, 1),
        "gpus_hours": {n: round(gpu_hours / n, 1) for n in (1, 8, 32, 128)},
        "this_machine_cores": cores,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", type=int, default=6)
    ap.add_argument("--resolution", type=int, default=48)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--gpus-per-task", type=float, default=0.0)
    ap.add_argument("--tasks", type=int, default=200, help="no-op tasks for Ray's overhead")
    ap.add_argument("--executors", nargs="+", default=["local", "ray"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--gpu-step-ms", type=float, default=15.0, help="assumed gsplat fit step at 256 px")
    ap.add_argument("--captures-per-gpu", type=int, default=4, help="assumed captures sharing one GPU")
    ap.add_argument("--reproject", type=Path, default=None, help="only redo the projection of a result file")
    args = ap.parse_args(argv)
    if args.reproject:
        result = json.loads(args.reproject.read_text())
        result["projection"] = project(result["fleets"], result["scaling"], result["machine"]["cpus"],
                                       args.gpu_step_ms, args.captures_per_gpu)
        args.reproject.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["projection"], indent=1))
        return 0

    from splatrefine.plugins.synthetic import write_synthetic
    from splatrefine.progress import set_progress_enabled

    set_progress_enabled(False)
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                    "setup": {k: v for k, v in vars(args).items() if k != "out"}}
    with tempfile.TemporaryDirectory(prefix="bench_fleet_") as tmp:
        work = Path(tmp)
        write_synthetic(work / "caps", identities=args.captures, seed=0, rig="frontal-only",
                        resolution=args.resolution)
        cfg = work / "refine.yaml"
        cfg.write_text(yaml.safe_dump(refine_config(args.iterations, args.device)))
        measured = {}
        for name in args.executors:
            params = ({"workers": args.workers} if name == "local" else
                      {"num_cpus": args.workers, "cpus_per_task": 1, "gpus_per_task": args.gpus_per_task})
            measured[name] = run_fleet(name, params, work / "caps", cfg, work / f"out_{name}", args.device)
            print(json.dumps(measured[name]), flush=True)
        result["fleets"] = measured
        if "ray" in args.executors:
            result["ray_overhead"] = ray_overhead(args.workers, args.tasks)
            print(json.dumps(result["ray_overhead"]), flush=True)
        if "local" in measured:
            result["scaling"] = scaling(work, (2 * args.resolution, 4 * args.resolution), args.iterations,
                                        args.device, warmup=args.resolution)
            print(json.dumps(result["scaling"]), flush=True)
            result["projection"] = project(measured, result["scaling"], os.cpu_count() or 1, args.gpu_step_ms,
                                           args.captures_per_gpu)
            print(json.dumps(result["projection"], indent=1), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
