"""Jobs and stage graphs in worker processes: order, dependencies, one thread each, errors that keep
their hint, and no worker left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.workers import GraphStage, resolve_workers, run_graph, run_jobs


def thread_settings(tag: str) -> tuple[str, int, str | None]:
    import torch

    return tag, torch.get_num_threads(), os.environ.get("NUMBA_NUM_THREADS")


def fail_on(tag: str, bad: str) -> str:
    if tag == bad:
        raise ConfigError(f"job {tag} failed", "Fix job b.")
    return tag


def test_resolve_workers():
    assert resolve_workers("auto", "cuda", 6) == 1
    assert resolve_workers("auto", "cpu", 6) == min(6, os.cpu_count() or 1)
    assert resolve_workers(4, "cpu", 3) == 3
    assert resolve_workers(2, "cpu", 0) == 1


@pytest.mark.slow
def test_jobs_in_processes_keep_order_and_run_single_threaded():
    out = run_jobs(thread_settings, [("a",), ("b",), ("c",)], 2, "test")
    assert out == [("a", 1, "1"), ("b", 1, "1"), ("c", 1, "1")]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_failing_job_raises_its_error_with_hint(workers):
    with pytest.raises(ConfigError) as exc:
        run_jobs(fail_on, [("a", "b"), ("b", "b"), ("c", "b")], workers, "test")
    assert str(exc.value) == "job b failed\n  Fix job b."


def test_error_pickles_with_hint():
    import pickle

    err = pickle.loads(pickle.dumps(SplatrefineError("what", "how")))
    assert (err.message, err.hint) == ("what", "how")


def append_line(path: str, text: str, wait_for: str = "") -> str:
    """Log the job's start and end; in between, wait until `wait_for` is logged (by a job that
    must be running at the same time) or 0.2 s."""
    import time

    with open(path, "a") as fh:
        fh.write(f"start {text}\n")
    time.sleep(0.2)
    deadline = time.monotonic() + 60
    while wait_for and wait_for not in open(path).read():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text}: {wait_for!r} never came")
        time.sleep(0.05)
    with open(path, "a") as fh:
        fh.write(f"end {text}\n")
    return text


def graph(path: str, fail: str = "", side_by_side: bool = False) -> list[GraphStage]:
    def jobs(name: str, n: int = 1):
        wait_for = "start c.0" if side_by_side and name == "a" else ""
        if name == fail:
            return lambda: [(fail_on, (name, fail))]
        return lambda: [(append_line, (path, f"{name}.{i}", wait_for)) for i in range(n)]

    return [GraphStage("a", (), jobs("a")),
            GraphStage("b", ("a",), jobs("b", 2)),
            GraphStage("c", (), jobs("c")),
            GraphStage("d", ("b", "c", "done-before"), jobs("d")),
            GraphStage("e", ("a",), lambda: [])]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_graph_runs_each_stage_after_the_ones_it_needs(tmp_path, workers):
    log = tmp_path / "log"
    log.touch()
    started, finished = [], []
    run_graph(graph(str(log), side_by_side=workers > 1), workers, "test", on_start=started.append,
              on_done=lambda name, seconds: finished.append((name, seconds)))
    lines = log.read_text().split()
    events = [f"{a} {b}" for a, b in zip(lines[::2], lines[1::2])]
    at = {e: i for i, e in enumerate(events)}
    for job in ("b.0", "b.1"):
        assert at["end a.0"] < at[f"start {job}"] < at[f"start d.0"]
    assert at["end c.0"] < at["start d.0"]
    assert sorted(started) == ["a", "b", "c", "d", "e"] and sorted(n for n, _ in finished) == sorted(started)
    assert all(s >= (0.2 if n != "e" else 0.0) for n, s in finished)
    if workers == 1:  # one at a time, in priority order: a before c, since a comes first
        assert events == ["start a.0", "end a.0", "start b.0", "end b.0", "start b.1", "end b.1",
                          "start c.0", "end c.0", "start d.0", "end d.0"]
    else:  # a and c side by side from the start (a waits for c to start)
        assert at["start c.0"] < at["end a.0"]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_graph_stops_at_the_first_error_with_its_hint(tmp_path, workers):
    log = tmp_path / "log"
    log.touch()
    with pytest.raises(ConfigError) as exc:
        run_graph(graph(str(log), fail="b"), workers, "test")
    assert str(exc.value) == "job b failed\n  Fix job b."
    assert "d.0" not in log.read_text()


def test_graph_refuses_stages_that_can_never_start():
    with pytest.raises(ValueError, match="never ready: x"):
        run_graph([GraphStage("x", ("x",), lambda: [])], 1, "test")


def _worker_pids(parent: int) -> set[int]:
    """Live processes of the pool spawned by `parent` (Linux /proc)."""
    from pathlib import Path

    pids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent) and b"spawn_main" in cmdline:
            pids.add(int(status.parent.name))
    return pids


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split(":", 1)[1].split()[0]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_workers_with_the_run():
    code = ("import time\n"
            "from splatrefine.workers import GraphStage, run_graph\n"
            "run_graph([GraphStage(n, (), lambda: [(time.sleep, (300,))]) for n in 'ab'], 2, 'test')\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while len(workers := _worker_pids(proc.pid)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the workers never started"
        time.sleep(0.2)
    time.sleep(1.0)  # both jobs submitted and running
    proc.terminate()
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived the run"
        time.sleep(0.2)
