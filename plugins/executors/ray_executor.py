"""`ray`: each job is a Ray task, on an existing cluster (`address`) or on a local one started here.

Ray does the scheduling, the placement by resources (`cpus_per_task`, `gpus_per_task`) and the
fault tolerance: a task whose worker process dies (SIGKILL, out of memory, a lost node) is run
again up to `max_retries` times, so jobs must be resumable (a fleet's refines are). An exception a
job raises is not retried: it comes back to the caller as the job's own exception.

Jobs are module-level functions pickled by reference: on a multi-node cluster every node needs
splatrefine (and its plugins) installed, and the files the jobs read and write on a shared path.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from splatrefine.errors import PluginError, SplatrefineError
from splatrefine.workers import WorkerLost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayConfig:
    address: str = field(default="", metadata={
        "help": "an existing cluster: host:port of its head, 'auto', or ray://host:port; empty = start a local one"})
    cpus_per_task: float = field(default=1.0, metadata={"help": "CPUs Ray reserves for each job", "min": 0.0})
    gpus_per_task: float = field(default=0.0, metadata={"help": "GPUs Ray reserves for each job", "min": 0.0})
    max_retries: int = field(default=3, metadata={
        "help": "times a job is run again after its worker died (killed, out of memory, node lost)", "min": 0})
    num_cpus: int = field(default=0, metadata={"help": "CPUs of a local cluster started here; 0 = all", "min": 0})


def _run_job(fn: Callable[..., Any], args: tuple, threads: int) -> Any:
    """Inside a Ray worker: limit torch, numba and OpenMP to the task's CPUs, then run the job."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from splatrefine.progress import set_progress_enabled

    set_progress_enabled(False)
    return fn(*args)


def _check_reachable(address: str) -> None:
    """One line, fast, when nothing listens at host:port (ray.init would wait a minute first)."""
    if address == "auto" or address.startswith("ray://") and ":" not in address[6:]:
        return
    hostport = address[6:] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SplatrefineError(f"--address {address}: expected host:port, 'auto' or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=3.0):
            pass
    except OSError as exc:
        raise SplatrefineError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})",
                               "Start one with 'ray start --head', or leave out --address for a local cluster.") from None


class RayExecutor:
    in_process = False

    def __init__(self, config: RayConfig):
        self.config = config
        self.slots = 1
        self._own = False
        self._live: set[Any] = set()
        self._remote: Any = None
        self._ray: Any = None

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise PluginError("executor 'ray' needs Ray, which is not installed",
                              "Install it with: pip install 'splatrefine[ray]'") from None
        self._ray = ray
        cfg = self.config
        if cfg.address:
            _check_reachable(cfg.address)
        if not ray.is_initialized():  # else: this process already holds a connection (ray.init)
            if cfg.address:
                try:
                    ray.init(address=cfg.address, log_to_driver=False, logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError) as exc:
                    raise SplatrefineError(f"--address {cfg.address}: cannot connect to a Ray cluster "
                                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                                           "Check 'ray status' on the head node.") from None
            else:
                ray.init(num_cpus=cfg.num_cpus or None, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            self._own = True
        try:
            self._check_resources(ray.cluster_resources())
        except BaseException:
            self._shutdown()
            raise
        self._remote = ray.remote(_run_job)
        return self

    def _check_resources(self, resources: dict) -> None:
        cfg = self.config
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if cfg.gpus_per_task > gpus:
            raise SplatrefineError(f"--gpus-per-task {cfg.gpus_per_task:g}: the Ray cluster has "
                                   f"{'no GPUs' if not gpus else f'{gpus:g} GPU(s)'}",
                                   "Leave out --gpus-per-task, or start the cluster on nodes with GPUs.")
        if cfg.cpus_per_task > cpus:
            raise SplatrefineError(f"--cpus-per-task {cfg.cpus_per_task:g}: the Ray cluster has {cpus:g} CPU(s)")
        slots = [math.floor(cpus / cfg.cpus_per_task) if cfg.cpus_per_task else int(cpus)]
        if cfg.gpus_per_task:
            slots.append(math.floor(gpus / cfg.gpus_per_task))
        self.slots = max(1, min(slots))

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            self.cancel()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._own and self._ray is not None:
            self._ray.shutdown()
            self._own = False

    def submit(self, fn: Callable[..., Any], args: tuple, name: str = "") -> Any:
        cfg = self.config
        threads = max(1, int(cfg.cpus_per_task))
        ref = self._remote.options(num_cpus=cfg.cpus_per_task, num_gpus=cfg.gpus_per_task,
                                   max_retries=cfg.max_retries, retry_exceptions=False,
                                   name=name or fn.__name__).remote(fn, tuple(args), threads)
        self._live.add(ref)
        return ref

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        handles = list(handles)
        if not handles:
            return []
        ready, rest = self._ray.wait(handles, num_returns=1, timeout=timeout, fetch_local=False)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
            ready += more
        self._live.difference_update(ready)
        return ready

    def result(self, handle: Any) -> Any:
        from ray import exceptions as rex

        try:
            return self._ray.get(handle)
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError) as exc:
            raise WorkerLost(f"its Ray worker died {self.config.max_retries + 1} time(s) "
                             f"({type(exc).__name__})") from None

    def cancel(self) -> None:
        for ref in list(self._live):
            try:
                self._ray.cancel(ref, force=True)
            except Exception as exc:  # noqa: BLE001 - a task that just finished cannot be cancelled
                log.debug("cancel: %s", exc)
        self._live.clear()
