"""`splatrefine refine --demo` with the old fit loop and the new one, side by side (issue 23).

"old" is this checkout with plugins/dual_gs/ and examples/configs/demo.yaml taken from git
revision --old (default: the last commit before issue 23's fit-loop work); "new" is this checkout
as it is. Everything else (the rasterizer, the engine, the aggregators) is the same in both, so
the difference is the fit loop's alone. Each side runs from its own copy of the package (made
once under --workdir), in a child process, alternating old/new (new first every other repeat) so
that the load of a shared machine falls on both alike. Per run: wall time, the fit stage, ms per
fit iteration (history.json), max RSS, and the demo's summary (extreme input-view mIoU, novel-view
mIoU). Printed: every run, the medians per side, and new / old ratios of the medians.

    python bench/demo_speed.py                       # 3 repeats of each side (~20 min idle)
    python bench/demo_speed.py --repeats 1 --only new
    python bench/demo_speed.py --new-set representation.iterations=600
    python bench/demo_speed.py --profile 300 --repeats 1   # bench/dual_gs.py --profile in each, alternating
    python bench/demo_speed.py --whole --warmup        # the whole package at --old: the issue's demo

With --whole the old side is the whole package at --old (rasterizer, engine, aggregators and its
demo.yaml too): the demo as the issue measured it (147 s on its machine), so new / old x 147 s
estimates today's demo on that machine. --warmup runs each side once first, unrecorded (each
package copy compiles its numba kernels on its first run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_REV = "49be392"  # main before issue 23's fit-loop changes
OLD_PATHS = ("plugins/dual_gs", "examples/configs/demo.yaml")
# package-dir of pyproject.toml: where each top-level folder goes inside `splatrefine`
LAYOUT = (("core", ""), ("registry", "registry"), ("plugins", "plugins"), ("examples/configs", "configs"))


ISSUE_DEMO_S = 147.0  # issue 23: `refine --demo` at OLD_REV on an idle 2-core machine


def make_package(dest: Path, rev: str | None, paths: tuple[str, ...] = OLD_PATHS) -> Path:
    """A plain-import copy of the package under dest/splatrefine (the checkout, with `paths` from
    `rev` when given); returns dest, the folder to put on PYTHONPATH."""
    if dest.exists():
        shutil.rmtree(dest)
    pkg = dest / "splatrefine"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for src, sub in LAYOUT:
        shutil.copytree(ROOT / src, pkg / sub if sub else pkg, ignore=ignore, dirs_exist_ok=True)
    if rev is not None:
        for path in paths:
            target = pkg / _package_path(path)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, path], check=True,
                                     capture_output=True).stdout
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
                src = Path(tmp) / path
                if src.is_dir():
                    shutil.copytree(src, target)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
    return dest


def _package_path(path: str) -> str:
    for src, sub in sorted(LAYOUT, key=lambda kv: -len(kv[0])):
        if path == src or path.startswith(src + "/"):
            rest = path[len(src):].lstrip("/")
            return "/".join(p for p in (sub, rest) if p)
    raise ValueError(path)


def run_demo(pythonpath: Path, out: Path, sets: list[str], threads: int) -> dict:
    """One `refine --demo` in a child process: wall seconds, max RSS, stage timings, metrics."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-c", "import sys; from splatrefine.cli import main; sys.exit(main())",
           "refine", "--demo", "-o", str(out), "--overwrite", "-q"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=str(out.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"refine --demo failed ({proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
    stages = json.loads((out / "stages.json").read_text())["timings"]
    history = json.loads((out / "model" / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    steps = history["iteration"][-1]
    return {
        "wall_s": wall, "fit_s": stages["fit"], "render_s": stages["render"],
        "ms_per_iteration": 1000 * history["seconds"][-1] / max(steps, 1), "iterations": steps,
        "gaussians": history["gaussians"][-1], "max_rss_gb": usage.ru_maxrss / 2 ** 20,
        "extreme": metrics["refined_input"]["buckets"]["extreme"]["miou"],
        "novel": metrics["refined_novel"]["miou"], "input": metrics["refined_input"]["miou"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


KEYS = (("wall_s", "wall s", "{:.1f}"), ("fit_s", "fit s", "{:.1f}"), ("render_s", "render s", "{:.1f}"),
        ("iterations", "iterations", "{:.0f}"), ("ms_per_iteration", "ms / iteration", "{:.1f}"),
        ("cpu_s", "CPU s", "{:.1f}"), ("max_rss_gb", "max RSS GB", "{:.2f}"), ("gaussians", "Gaussians", "{:.0f}"),
        ("extreme", "extreme mIoU", "{:.3f}"), ("novel", "novel mIoU", "{:.3f}"), ("input", "input mIoU", "{:.3f}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=OLD_REV, help="git revision of the old fit loop (plugins/dual_gs, demo.yaml)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("old", "new"), default=None, help="run one side only")
    ap.add_argument("--new-set", action="append", default=[], metavar="ROLE.KEY=VALUE",
                    help="--set for the new side's refine (to try a setting)")
    ap.add_argument("--old-set", action="append", default=[], metavar="ROLE.KEY=VALUE")
    ap.add_argument("--whole", action="store_true", help="the old side is the whole package at --old")
    ap.add_argument("--warmup", action="store_true", help="run each side once first, unrecorded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "splatrefine_demo_speed")
    ap.add_argument("--json", type=Path, default=None, help="write every run here")
    ap.add_argument("--profile", type=int, default=None, metavar="STEPS",
                    help="instead: bench/dual_gs.py --profile STEPS (time per part of the fit step) in each side")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    sides = [s for s in ("old", "new") if args.only in (None, s)]
    old_paths = tuple(src for src, _ in LAYOUT) if args.whole else OLD_PATHS
    paths = {s: make_package(args.workdir / f"pkg_{s}", args.old if s == "old" else None, old_paths) for s in sides}
    sets = {"old": args.old_set, "new": args.new_set}
    if args.profile is not None:
        for r in range(args.repeats):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                env = dict(os.environ, PYTHONPATH=str(paths[s]), OMP_NUM_THREADS=str(args.threads))
                cmd = [sys.executable, str(ROOT / "bench" / "dual_gs.py"), "--profile", str(args.profile),
                       "--threads", str(args.threads)]
                for item in sets[s]:
                    cmd += ["--set", item.split(".", 1)[-1]]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                print(f"## repeat {r} {s}\n{out}", flush=True)
        return 0
    if args.warmup:
        for s in sides:
            run_demo(paths[s], args.workdir / f"run_{s}", sets[s], args.threads)
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(args.repeats):
        order = sides if r % 2 == 0 else sides[::-1]
        for s in order:
            res = run_demo(paths[s], args.workdir / f"run_{s}", sets[s], args.threads)
            runs[s].append(res)
            print(f"repeat {r} {s}: " + ", ".join(f"{label} {fmt.format(res[k])}" for k, label, fmt in KEYS),
                  flush=True)
    med = {s: {k: statistics.median(x[k] for x in runs[s]) for k, _, _ in KEYS} for s in sides}
    head = "| median of %d | " % args.repeats + " | ".join(sides) + (" | new / old |" if len(sides) == 2 else " |")
    print("\n" + head + "\n|---|" + "---|" * (len(sides) + (len(sides) == 2)))
    for k, label, fmt in KEYS:
        cells = [fmt.format(med[s][k]) for s in sides]
        if len(sides) == 2:
            cells.append(f"{med['new'][k] / med['old'][k]:.2f}" if med["old"][k] else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.whole and args.old == OLD_REV and len(sides) == 2:
        print(f"\nthe demo on the issue's machine ({ISSUE_DEMO_S:.0f} s at {OLD_REV}), scaled by new / old wall time: "
              f"{ISSUE_DEMO_S * med['new']['wall_s'] / med['old']['wall_s']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"old_rev": args.old, "whole": args.whole, "runs": runs, "median": med},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
