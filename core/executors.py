"""Executors: what runs jobs (one refine per capture of a fleet, an experiment's stages).

An executor is a component chosen by name, like the five roles' components, but offered through
its own hook (`splatrefine_register_executors`) because it does not take part in a refine run:
it runs them. Builtins: `local` (a process pool on this machine) and `ray` (a Ray cluster); a
third party adds one (Slurm via submitit, say) with

    @hookimpl
    def splatrefine_register_executors(register):
        register(ExecutorSpec("slurm", SlurmExecutor, SlurmConfig, summary="..."))

`factory(config)` gets an instance of the frozen dataclass `config_cls` (the executor's only
settings schema, shown by `splatrefine plugins list`) and returns an object with the `Executor`
protocol below. Nothing here imports torch or ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import PluginError, did_you_mean


@dataclass(frozen=True)
class ExecutorSpec:
    """One named executor: `factory(config) -> Executor`; `config_cls` is a frozen dataclass."""

    name: str
    factory: Callable[[Any], Any]
    config_cls: type
    summary: str


@runtime_checkable
class Executor(Protocol):
    """Runs module-level functions with picklable arguments, possibly elsewhere.

    Used as a context manager: `__enter__` starts it (spawns workers, connects to a cluster) and
    raises SplatrefineError before any job when it cannot (unreachable cluster, missing GPUs);
    `__exit__` stops it, cancelling running jobs when the block ends with an exception.
    """

    slots: int
    """How many jobs run at once (a scheduler keeps this many submitted)."""

    in_process: bool
    """True when jobs run in the caller's process, one at a time, during `submit` (they may then
    show their own progress bars)."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def submit(self, fn: Callable[..., Any], args: tuple, name: str = "") -> Any:
        """Start `fn(*args)`; -> a handle for `wait` and `result`."""

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """-> the handles among `handles` that have finished, at least one unless `timeout` seconds
        pass first (then possibly none)."""

    def result(self, handle: Any) -> Any:
        """The job's return value; re-raises the exception it raised."""

    def cancel(self) -> None:
        """Stop every job not yet finished, now (their work is lost; jobs should be resumable)."""


class ExecutorRegistry:
    """Every executor the loaded plugins offer, by name."""

    def __init__(self, manager: Any = None):
        if manager is None:
            from .registry import make_plugin_manager

            manager = make_plugin_manager()
        from .registry import BUILTIN_PLUGINS, LoadFailure, per_plugin

        self._specs: dict[str, ExecutorSpec] = {}
        self._sources: dict[str, str] = {}
        self.failures: list = []
        for source, call in per_plugin(manager, "splatrefine_register_executors"):
            def register(spec: ExecutorSpec, _source: str = source) -> None:
                if spec.name in self._specs:
                    raise PluginError(f"executor '{spec.name}' is registered twice: by "
                                      f"{self._sources[spec.name]} and by {_source}",
                                      "Uninstall one of the two plugins, or rename one executor.")
                self._specs[spec.name] = spec
                self._sources[spec.name] = _source

            try:
                call(register=register)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken third-party plugin must not break the CLI
                if source in BUILTIN_PLUGINS:
                    raise
                self.failures.append(LoadFailure(source, source, f"{type(exc).__name__}: {exc}"))

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ExecutorSpec]:
        return [self._specs[n] for n in self.names()]

    def source(self, name: str) -> str:
        return self._sources[name]

    def get(self, name: str) -> ExecutorSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise PluginError(f"no executor named '{name}'.{did_you_mean(name, self.names())}",
                              f"Installed executors: {', '.join(self.names()) or '(none)'}.") from None

    def build(self, name: str, params: dict) -> Any:
        """The executor `name` with `params` (validated against its config_cls), not yet started."""
        from .config import build_settings

        spec = self.get(name)
        return spec.factory(build_settings(spec.config_cls, params, f"executor '{name}'"))


def __getattr__(name: str):
    # DEFAULT_EXECUTOR was a constant here; the choice now lives in the packaged defaults.yaml
    if name == "DEFAULT_EXECUTOR":
        from .defaults import default_executor

        return default_executor()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
