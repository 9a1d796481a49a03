"""Registers the builtin executors. Cheap to import: ray is imported when a Ray executor starts."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.executors import ExecutorSpec

from .local import LocalConfig, make_local
from .ray_executor import RayConfig, RayExecutor


@hookimpl
def splatrefine_register_executors(register):
    register(ExecutorSpec("local", make_local, LocalConfig,
                          summary="a process pool on this machine, one compute thread per worker"))
    register(ExecutorSpec("ray", RayExecutor, RayConfig,
                          summary="tasks on a Ray cluster (an existing one at --address, else a local one)"))
