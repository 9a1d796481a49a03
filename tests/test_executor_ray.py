"""The `ray` executor on a real local Ray cluster (one for the module): a fleet whose worker is
killed with SIGKILL in the middle of a fit still ends with every capture refined; jobs' errors come
back as themselves; resources the cluster lacks are refused before any work."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a real Ray cluster: ~5 s to start, 25 s for the module

from splatrefine.cli import main  # noqa: E402
from splatrefine.errors import ConfigError  # noqa: E402

TINY = {
    "seed": 0,
    "device": "cpu",
    "initial_parser": {"plugin": "simulated"},
    "representation": {"plugin": "dual-gs", "params": {"iterations": 40, "init_points": 400,
                                                        "checkpoint_every": 5, "refine_every": 40}},
    "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 4, "pitch_count": 1}},
    "label_aggregator": {"plugin": "argmax"},
}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_jobs_run_as_ray_tasks_and_their_errors_come_back():
    from splatrefine.config import load_yaml
    from splatrefine.executors import ExecutorRegistry

    with ExecutorRegistry().build("ray", {"cpus_per_task": 1}) as ex:  # jobs must be importable on the workers
        assert ex.slots == 2 and not ex.in_process
        ok, bad = ex.submit(os.getpid, ()), ex.submit(load_yaml, ("/nowhere/x.yaml",))
        done = []
        while len(done) < 2:
            done += ex.wait([h for h in (ok, bad) if h not in done])
        assert ex.result(ok) != os.getpid()
        with pytest.raises(ConfigError) as exc:
            ex.result(bad)
        assert str(exc.value) == "/nowhere/x.yaml: cannot read config (No such file or directory)"
    assert ray.is_initialized()  # a cluster it did not start stays up


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-task", "1"], "--gpus-per-task 1: the Ray cluster has no GPUs"),
    (["--cpus-per-task", "4"], "--cpus-per-task 4: the Ray cluster has 2 CPU(s)"),
    (["--address", "127.0.0.1:9"], "--address 127.0.0.1:9: no Ray cluster answers there (Connection refused)"),
])
def test_resources_the_cluster_lacks_are_refused_before_any_work(tmp_path, args, message):
    src = tmp_path / "caps"
    from splatrefine.plugins.synthetic import write_synthetic

    write_synthetic(src, identities=1, seed=1, rig="frontal-only", resolution=32)
    result = CliRunner().invoke(main, ["batch", str(src), "-o", str(tmp_path / "out"), "--executor", "ray", *args])
    assert result.exit_code == 2 and result.output.splitlines()[0] == f"Error: {message}"
    assert not (tmp_path / "out").exists()


def _kill_mid_fit(out: Path, name: str, killed: list, deadline: float) -> None:
    """Wait until capture `name` is fitting (its first checkpoint written), then SIGKILL its worker."""
    run = out / "runs" / name
    attempt = out / ".fleet" / "jobs" / f"{name}.json"
    while time.monotonic() < deadline:
        if (run / "model" / "checkpoint.pt").is_file() and attempt.is_file():
            stages = json.loads((run / "stages.json").read_text()) if (run / "stages.json").is_file() else {}
            if "fit" not in stages.get("completed", []):
                pid = json.loads(attempt.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


def test_a_worker_killed_mid_fit_is_retried_and_every_capture_ends_refined(tmp_path):
    from splatrefine.plugins.synthetic import write_synthetic

    src = tmp_path / "caps"
    write_synthetic(src, identities=2, seed=2, rig="frontal-only", resolution=32)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_mid_fit, args=(out, "id_000", killed, time.monotonic() + 240), daemon=True)
    killer.start()
    result = CliRunner().invoke(main, ["batch", str(src), "-o", str(out), "-c", str(cfg), "--executor", "ray",
                                       "--max-retries", "2", "-q"], catch_exceptions=False)
    killer.join(timeout=1)
    assert killed, "the fit was never caught in the middle"
    assert result.exit_code == 0, result.output
    data = json.loads((out / "fleet.json").read_text())
    assert data["counts"] == {"done": 2} and data["executor"] == "ray"
    rec = {c["name"]: c for c in data["captures"]}["id_000"]
    assert rec["pid"] != killed[0] and rec["resumed"] is True  # a new worker took over the run folder
    for name in ("id_000", "id_001"):
        assert (out / "runs" / name / "report.html").is_file()
        assert json.loads((out / "runs" / name / "metrics.json").read_text())["refined_input"]["miou"] > 0

