"""`local`: jobs in spawned worker processes on this machine (splatrefine.workers.ProcessPool),
one compute thread each; one worker runs them in this process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from splatrefine.errors import ConfigError
from splatrefine.workers import local_executor, resolve_workers


@dataclass(frozen=True)
class LocalConfig:
    workers: int | Literal["auto"] = field(default="auto", metadata={
        "help": "worker processes; auto = one per CPU core (at most 8)", "min": 1})
    max_retries: int = field(default=2, metadata={
        "help": "times a job is run again after its worker process died (killed, out of memory)", "min": 0})


def make_local(config: LocalConfig):
    if config.workers != "auto" and config.workers < 1:
        raise ConfigError(f"executor 'local'.workers: {config.workers} is below the minimum 1")
    workers = resolve_workers(config.workers, "cpu", 1 << 30)
    return local_executor(workers, config.max_retries)
