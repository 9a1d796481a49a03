"""Independent jobs (one identity each) in parallel worker processes, one compute thread each.

A dual-gs fit keeps barely more than one core busy (its per-step work is small; measured here:
1000 steps on a 96 px capture take 83 s on one thread and 71 s on two), so on a small CPU two
identities fitted side by side, one thread each, finish in little more than the time of one.
Training a parser does scale with threads, so only per-identity stages use this.

Workers are spawned (not forked: torch and numba thread pools do not survive a fork) and limit
torch, numba and OpenMP to one thread before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
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

    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    results: dict[int, Any] = {}
    with progress_task(f"{description} ({workers} workers)", len(jobs)) as advance, \
            ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
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
