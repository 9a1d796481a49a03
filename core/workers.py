"""Independent jobs in parallel worker processes, one compute thread each.

On a small CPU, jobs side by side on one thread each get through more work than one job at a time
on every thread: a dual-gs fit keeps barely more than one core busy (1000 steps on a 96 px capture
take 83 s on one thread, 71 s on two), and a parser's training step gains little from a second
thread (2 cores: BiSeNet at 144 px 1.04 s/step on two threads, 1.22 on one; two trainings side by
side, one thread each, 1.35 s/step each, so 1.5x the steps per second).

`run_jobs` runs a flat list of jobs (e.g. one per identity); `run_graph` runs stages that depend
on one another (the experiment's), a free worker always taking the next job of the first ready
stage. Both schedule onto an executor (splatrefine.executors.Executor): by default the ones here,
`InProcess` for one worker and `ProcessPool` for more (the `local` executor plugin), or any other
(`ray`), so there is one way to run jobs.

Workers are spawned (not forked: torch and numba thread pools do not survive a fork) and limit
torch, numba and OpenMP to one thread before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .progress import progress_task

T = TypeVar("T")
log = logging.getLogger(__name__)


def resolve_workers(workers: int | str, device: str, jobs: int) -> int:
    """`workers: auto` is one per CPU core (at most 8: each holds its own torch, about 1 GB) on the
    CPU, and 1 on CUDA (the GPU is shared, and a fit there is fast); never more than there are jobs."""
    if workers == "auto":
        workers = 1 if device == "cuda" else min(8, os.cpu_count() or 1)
    return max(1, min(int(workers), jobs))


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    from .progress import set_progress_enabled

    set_progress_enabled(False)


def _spawn_pool(workers: int) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


class WorkerLost(RuntimeError):
    """A job's worker process died (killed, out of memory) more often than the retries allow."""


class InProcess:
    """The executor for one worker: each job runs here, at once, when submitted (so it may show
    its own progress bars)."""

    slots = 1
    in_process = True

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], args: tuple, name: str = "") -> _Done:
        try:
            return _Done(fn(*args), None)
        except Exception as exc:  # noqa: BLE001 - handed back by result(), as a pool would
            return _Done(None, exc)

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        return list(handles)

    def result(self, handle: _Done) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value

    def cancel(self) -> None:
        return None


@dataclass(eq=False)
class _Done:
    value: Any
    error: BaseException | None


@dataclass(eq=False)
class _PoolJob:
    fn: Callable[..., Any]
    args: tuple
    name: str
    future: Any = None
    attempts: int = 1
    exhausted: bool = False  # out of retries: its broken future is its outcome


class ProcessPool:
    """The executor for several workers on this machine: spawned processes, one compute thread
    each. A worker killed in the middle of a job (SIGKILL, out of memory) breaks the pool; a new
    pool is started and the jobs it held are submitted again, up to `max_retries` times each, so
    jobs should be resumable."""

    in_process = False

    def __init__(self, workers: int, max_retries: int = 2):
        self.slots = max(1, int(workers))
        self.max_retries = max_retries
        self._pool: Any = None
        self._live: set[_PoolJob] = set()

    def __enter__(self) -> ProcessPool:
        self._pool = _spawn_pool(self.slots)
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            self.cancel()
        elif self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None

    def submit(self, fn: Callable[..., Any], args: tuple, name: str = "") -> _PoolJob:
        job = _PoolJob(fn, tuple(args), name)
        job.future = self._pool.submit(fn, *job.args)
        self._live.add(job)
        return job

    def wait(self, handles: Sequence[_PoolJob], timeout: float | None = None) -> list[_PoolJob]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        if not handles:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            by_future = {h.future: h for h in handles}
            finished, _ = wait_futures(by_future, timeout=left, return_when=FIRST_COMPLETED)
            if any(_broken(f) and not by_future[f].exhausted for f in finished):
                self._restart()
                continue
            done = [by_future[f] for f in finished]
            for h in done:
                self._live.discard(h)
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done

    def result(self, handle: _PoolJob) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.future.result()
        except BrokenProcessPool:
            raise WorkerLost(f"job {handle.name or handle.fn.__name__}: its worker process died "
                             f"{handle.attempts} time(s)") from None

    def cancel(self) -> None:
        if self._pool is not None:
            _stop_workers(self._pool)
        self._live.clear()

    def _restart(self) -> None:
        """A worker died: every job the old pool held is lost. Start a new pool and submit them
        again (a job out of retries keeps its broken future: `result` raises WorkerLost)."""
        log.warning("a worker process died; restarting the pool and retrying its jobs")
        _stop_workers(self._pool)
        self._pool = _spawn_pool(self.slots)
        for job in list(self._live):
            if job.future.done() and not _broken(job.future):
                continue
            if job.attempts > self.max_retries:
                job.exhausted = True
                continue
            job.attempts += 1
            job.future = self._pool.submit(job.fn, *job.args)


def _broken(future: Any) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return future.done() and not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


def local_executor(workers: int, max_retries: int = 2) -> InProcess | ProcessPool:
    """The executor `workers` asks for on this machine: in this process for one, else a pool."""
    return InProcess() if workers <= 1 else ProcessPool(workers, max_retries)


def run_jobs(fn: Callable[..., T], jobs: Sequence[tuple], workers: int, description: str,
             serial_progress: bool = True, executor: Any = None) -> list[T]:
    """`[fn(*args) for args in jobs]` on `executor` (default: `local_executor(workers)`), with one
    progress bar over the jobs (in one process only with `serial_progress`: jobs that show their
    own bars cannot run inside another). Outside this process, `fn` must be a module-level function
    and its arguments picklable. The first job to raise stops the others and re-raises here."""
    executor = executor if executor is not None else local_executor(min(workers, len(jobs)))
    if executor.in_process:
        bar = progress_task(description, len(jobs)) if serial_progress else contextlib.nullcontext(lambda n=1: None)
    else:
        bar = progress_task(f"{description} ({executor.slots} workers)", len(jobs))
    results: dict[int, Any] = {}
    queue = list(enumerate(jobs))
    running: dict[Any, int] = {}
    with bar as advance, executor:
        while queue or running:
            while queue and len(running) < executor.slots:
                i, args = queue.pop(0)
                running[executor.submit(fn, tuple(args), f"{description} {i}")] = i
            for h in executor.wait(list(running)):
                results[running.pop(h)] = executor.result(h)  # re-raises the job's exception here
                advance(1)
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
              on_done: Callable[[str, float], None] | None = None, executor: Any = None) -> None:
    """Run every stage once the stages it comes after are done (a name not among `stages` counts
    as done). `stages` is the priority order: a free worker takes the next job of the first
    started stage that has one left. `on_start(name)` when a stage is ready, `on_done(name, seconds)`
    when its last job ends (seconds since its first job started: a stage's wall time).

    Jobs run on `executor` (default: `local_executor(workers)`). With one worker everything runs
    here, in that order, and the jobs may show their own progress; otherwise the jobs run in worker
    processes (module-level functions, picklable arguments) under one progress bar over the stages.
    The first job to raise stops the workers (what they were doing is lost, so a job should be
    resumable) and re-raises here."""
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
    executor = executor if executor is not None else local_executor(workers)
    if executor.in_process:
        bar: Any = contextlib.nullcontext(lambda n=1, **info: None)
        guard: Any = contextlib.nullcontext()
    else:
        bar = progress_task(f"{description} ({executor.slots} workers)", len(stages))
        guard = sigterm_raises()
    running: dict[Any, str] = {}
    with bar as advance, executor, guard:
        while queue or running:
            while queue and len(running) < executor.slots:
                _, _, name, (fn, args) = queue.pop(0)
                started.setdefault(name, time.perf_counter())
                running[executor.submit(fn, tuple(args), name)] = name
            for h in executor.wait(list(running)):
                name = running.pop(h)
                executor.result(h)  # re-raises the job's exception here
                before = len(done)
                job_done(name)
                advance(len(done) - before, running=", ".join(sorted(set(running.values()))))
    if waiting:
        raise ValueError(f"run_graph: stages never ready: {', '.join(s.name for s in waiting)}")


@contextlib.contextmanager
def sigterm_raises():
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
