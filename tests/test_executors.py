"""Executors as plugins: the builtins by name, a third party's through the same hook, a duplicate
name refused; the local pool retries the jobs of a worker killed with SIGKILL; run_graph on any
executor."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from splatrefine import hookimpl
from splatrefine.errors import PluginError
from splatrefine.executors import ExecutorRegistry, ExecutorSpec
from splatrefine.registry import make_plugin_manager
from splatrefine.workers import GraphStage, InProcess, ProcessPool, WorkerLost, run_graph, run_jobs


@dataclass(frozen=True)
class CountingConfig:
    label: str = "x"


class Counting(InProcess):
    """A third party's executor: runs jobs here and counts them."""

    def __init__(self, config: CountingConfig):
        self.config = config
        self.submitted: list[str] = []

    def submit(self, fn, args, name=""):
        self.submitted.append(name)
        return super().submit(fn, args, name)


class ThirdParty:
    @hookimpl
    def splatrefine_register_executors(self, register):
        register(ExecutorSpec("counting", Counting, CountingConfig, summary="runs jobs here, counting them"))


def _registry(*plugins) -> ExecutorRegistry:
    manager = make_plugin_manager(entrypoints=False)
    for p in plugins:
        manager.pm.register(p)
    return ExecutorRegistry(manager)


def test_builtins_and_a_third_party_executor_are_chosen_by_name():
    reg = _registry(ThirdParty())
    assert reg.names() == ["counting", "local", "ray"]
    assert reg.source("counting") != reg.source("local") == "splatrefine.plugins.executors.plugin"
    ex = reg.build("counting", {"label": "y"})
    assert ex.config.label == "y"
    order: list[str] = []
    stages = [GraphStage("a", (), lambda: [(order.append, ("a",))]),
              GraphStage("b", ("a",), lambda: [(order.append, ("b",)), (order.append, ("b",))])]
    run_graph(stages, 1, "test", executor=ex)
    assert order == ["a", "b", "b"] and ex.submitted == ["a", "b", "b"]
    assert run_jobs(str.upper, [("p",), ("q",)], 1, "test", executor=reg.build("counting", {})) == ["P", "Q"]


def test_unknown_setting_and_duplicate_names_are_errors():
    with pytest.raises(PluginError, match=r"no executor named 'counter'\. Did you mean 'counting'\?"):
        _registry(ThirdParty()).get("counter")
    with pytest.raises(Exception, match="executor 'local' has no setting 'adress'"):
        _registry().build("local", {"adress": "x"})
    with pytest.raises(PluginError, match="executor 'counting' is registered twice"):
        _registry(ThirdParty(), ThirdParty())


def die_once(marker: str, value: int) -> int:
    """SIGKILL this worker the first time (the marker file says it happened), then succeed."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 10


def die_always(value: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return value


@pytest.mark.slow
def test_local_pool_retries_the_jobs_of_a_killed_worker(tmp_path):
    marker = str(tmp_path / "killed")
    assert run_jobs(die_once, [(marker, 1), (marker, 2)], 1, "test", executor=ProcessPool(1, max_retries=1)) == [10, 20]
    assert int(Path(marker).read_text()) != os.getpid()
    with ProcessPool(1, max_retries=0) as pool:
        h = pool.submit(die_always, (3,), "doomed")
        assert pool.wait([h]) == [h]
        with pytest.raises(WorkerLost, match="job doomed: its worker process died 1 time"):
            pool.result(h)


def test_an_executor_without_ray_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(PluginError) as exc:
        with _registry().build("ray", {}):
            pass
    assert str(exc.value) == ("executor 'ray' needs Ray, which is not installed\n"
                              "  Install it with: pip install 'splatrefine[ray]'")
