"""Per-identity jobs in worker processes: results in job order, errors that keep their hint."""

from __future__ import annotations

import os

import pytest

from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.workers import resolve_workers, run_jobs


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


def test_jobs_in_processes_keep_order_and_run_single_threaded():
    out = run_jobs(thread_settings, [("a",), ("b",), ("c",)], 2, "test")
    assert out == [("a", 1, "1"), ("b", 1, "1"), ("c", 1, "1")]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_its_error_with_hint(workers):
    with pytest.raises(ConfigError) as exc:
        run_jobs(fail_on, [("a", "b"), ("b", "b"), ("c", "b")], workers, "test")
    assert str(exc.value) == "job b failed\n  Fix job b."


def test_error_pickles_with_hint():
    import pickle

    err = pickle.loads(pickle.dumps(SplatrefineError("what", "how")))
    assert (err.message, err.hint) == ("what", "how")
