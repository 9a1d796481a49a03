"""Independent jobs in parallel worker processes, one compute thread each.

On a small CPU, jobs side by side on one thread each get through more work than one job at a time
on every thread: a dual-gs fit keeps barely more than one core busy (1000 steps on a 96 px capture
take 83 s on one thread, 71 s on two), and a parser's training step gains little from a second
thread (2 cores: BiSeNet at 144 px 1.04 s/step on two threads, 1.22 on one; two trainings side by
side, one thread each, 1.35 s/step each, so 1.5x the steps per second).

`run_jobs` runs a flat list of jobs (e.g. one per identity); `run_graph` runs stages that depend
on one another (the experiment's), a free worker always taking the next job of the first ready
stage.

Workers are spawned (not forked: torch and numba thread pools do not survive a fork) and limit
torch, numba and OpenMP to one thread before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .progress import progress_task

T = TypeVar("T")


def resolve_workers(workers: int | str, device: str, jobs: int) -> int:
    """`workers: auto` is one per CPU core (at most 8: each holds its own torch, about 1 GB) on the
    CPU, and 1 on CUDA (the GPU is shared, and a fit there is fast); never more than there are jobs."""
    if workers == "auto":
        workers = 1 if device == "cuda" else min(8, os.cpu_count() or 1)
    return max(1, min(int(workers), jobs))


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
    from .progress import set_progress_enabled

    set_progress_enabled(False)


def _spawn_pool(workers: int) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


def run_jobs(fn: Callable[..., T], jobs: Sequence[tuple], workers: int, description: str,
             serial_progress: bool = True) -> list[T]:
    """`[fn(*args) for args in jobs]`, in `workers` processes when more than one, with one progress
    bar over the jobs (in one process only with `serial_progress`: jobs that show their own bars
    cannot run inside another). In processes, `fn` must be a module-level function and its
    arguments picklable. The first job to raise cancels the jobs not yet started and re-raises in
    the caller; jobs already running finish."""
    if workers <= 1 or len(jobs) <= 1:
        bar = progress_task(description, len(jobs)) if serial_progress else contextlib.nullcontext(lambda n=1: None)
        out = []
        with bar as advance:
            for args in jobs:
                out.append(fn(*args))
                advance(1)
        return out

    from concurrent.futures import FIRST_EXCEPTION, wait

    results: dict[int, Any] = {}
    with progress_task(f"{description} ({workers} workers)", len(jobs)) as advance, _spawn_pool(workers) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    results[futures[f]] = f.result()  # re-raises the job's exception here
                    advance(1)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return [results[i] for i in range(len(jobs))]


Job = tuple[Callable[..., Any], tuple]


@dataclass(frozen=True)
class GraphStage:
    """A stage of `run_graph`: it starts once every stage named in `after` is done; `jobs()`,
    called in the caller's process when it starts (so it may prepare inputs), gives its jobs."""

    name: str
    after: tuple[str, ...]
    jobs: Callable[[], list[Job]]


def run_graph(stages: Sequence[GraphStage], workers: int, description: str,
              on_start: Callable[[str], None] | None = None,
              on_done: Callable[[str, float], None] | None = None) -> None:
    """Run every stage once the stages it comes after are done (a name not among `stages` counts
    as done). `stages` is the priority order: a free worker takes the next job of the first
    started stage that has one left. `on_start(name)` when a stage is ready, `on_done(name, seconds)`
    when its last job ends (seconds since its first job started: a stage's wall time).

    With one worker everything runs here, in that order, and the jobs may show their own progress;
    with more, the jobs run in worker processes (module-level functions, picklable arguments) under
    one progress bar over the stages. The first job to raise stops the workers (what they were
    doing is lost, so a job should be resumable) and re-raises here."""
    known = {s.name for s in stages}
    if len(known) != len(stages):
        raise ValueError("run_graph: stage names must be unique")
    priority = {s.name: i for i, s in enumerate(stages)}
    waiting = list(stages)
    done: set[str] = set()
    queue: list[tuple[int, int, str, Job]] = []  # (stage priority, job index, stage, job)
    left: dict[str, int] = {}
    started: dict[str, float] = {}

    def finish(name: str) -> None:
        done.add(name)
        if on_done:
            on_done(name, time.perf_counter() - started[name])

    def start_ready() -> None:
        progressed = True
        while progressed:
            progressed = False
            for stage in [s for s in waiting if all(a in done or a not in known for a in s.after)]:
                waiting.remove(stage)
                if on_start:
                    on_start(stage.name)
                jobs = stage.jobs()
                left[stage.name] = len(jobs)
                queue.extend((priority[stage.name], i, stage.name, job) for i, job in enumerate(jobs))
                if not jobs:
                    started[stage.name] = time.perf_counter()
                    finish(stage.name)
                    progressed = True
        queue.sort(key=lambda q: q[:2])

    def job_done(name: str) -> None:
        left[name] -= 1
        if left[name] == 0:
            finish(name)
            start_ready()

    start_ready()
    if workers <= 1:
        while queue:
            _, _, name, (fn, args) = queue.pop(0)
            started.setdefault(name, time.perf_counter())
            fn(*args)
            job_done(name)
    else:
        _run_graph_in_processes(queue, workers, description, len(stages), done, started, job_done)
    if waiting:
        raise ValueError(f"run_graph: stages never ready: {', '.join(s.name for s in waiting)}")


def _run_graph_in_processes(queue: list, workers: int, description: str, total: int, done: set[str],
                            started: dict[str, float], job_done: Callable[[str], None]) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    running: dict[Any, str] = {}
    with progress_task(f"{description} ({workers} workers)", total) as advance, _spawn_pool(workers) as pool, \
            _terminate_raises():
        try:
            while queue or running:
                while queue and len(running) < workers:
                    _, _, name, (fn, args) = queue.pop(0)
                    started.setdefault(name, time.perf_counter())
                    running[pool.submit(fn, *args)] = name
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    name = running.pop(f)
                    f.result()  # re-raises the job's exception here
                    before = len(done)
                    job_done(name)
                    advance(len(done) - before, running=", ".join(sorted(set(running.values()))))
        except BaseException:
            _stop_workers(pool)
            raise


@contextlib.contextmanager
def _terminate_raises():
    """SIGTERM (e.g. `kill`) raises SystemExit here, so the workers are stopped with this process
    rather than left running their jobs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_workers(pool: Any) -> None:
    """Terminate the pool's processes rather than wait for their jobs (a parser's training can
    take many minutes). ProcessPoolExecutor only has a public way from Python 3.14."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
