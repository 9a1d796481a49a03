"""The extreme-pose experiment: bad-input refusals, config validation, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.plugins.extreme_pose.command import experiment_cmd
from splatrefine.plugins.extreme_pose.config import (
    VARIANTS,
    ExperimentConfig,
    apply_sets,
    config_from_dict,
    load_config,
)
from splatrefine.plugins.extreme_pose.layout import MARKER, prepare_out

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "extreme_pose"

# a minimal experiment: 2 train + 1 test identity at 32 px, a few steps, tiny fits (< 90 s on 2 cores)
TINY = {
    "seed": 0, "device": "cpu",
    "data": {"resolution": 32, "train_identities": [3, 4], "test_identities": [1000], "frontal_identities": [200]},
    "refine": {
        "representation": {"plugin": "dual-gs", "params": {"iterations": 8, "init_points": 300,
                                                           "checkpoint_every": 1000}},
        "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 3, "pitch_count": 1}},
    },
    "targets": [{"name": "bisenet", "plugin": "bisenet",
                 "params": {"input_size": 32, "batch_size": 32, "train_batch_size": 2},
                 "baseline": {"steps": 2}, "finetune": {"steps": 1},
                 "variants": ["refined", "raw", "palette", "simulated", "corrected"]}],
    "finetune": {"oversample": 2},
    "report": {"contact_views": 2},
}


def _run(args: list[str]):
    return CliRunner().invoke(experiment_cmd, args, catch_exceptions=False)


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_overlapping_identities_refused(tmp_path):
    cfg = _write(tmp_path, {"data": {"train_identities": [0, 1, 2], "test_identities": [2, 7]}})
    out = tmp_path / "out"
    r = _run([str(out), "-c", str(cfg), "-q"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[0] == (
        f"Error: {cfg}: identities 2 are in both data.train_identities and data.test_identities; "
        "train and test identities must be disjoint")
    assert not out.exists()


@pytest.mark.parametrize("data, message", [
    ({"train_identities": [0, 1], "test_identities": [5], "frontal_identities": [5, 6]},
     "identities 5 are in both data.frontal_identities and data.test_identities; "
     "frontal and test identities must be disjoint"),
    ({"train_identities": [0, 1], "test_identities": [5], "frontal_identities": [1, 6]},
     "identities 1 are in both data.frontal_identities and data.train_identities; "
     "frontal and train identities must be disjoint"),
])
def test_frontal_identities_must_be_disjoint(data, message):
    with pytest.raises(SplatrefineError) as exc:
        config_from_dict({"data": data}, "exp.yaml")
    assert str(exc.value) == f"exp.yaml: {message}"


def test_out_with_results_refused_unless_overwrite_or_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": "splatrefine-experiment", "completed": ["data"]}))
    (out / "results.json").write_text("{}")
    cfg = ExperimentConfig()
    with pytest.raises(SplatrefineError, match="already holds an experiment"):
        prepare_out(out, cfg, resume=False, overwrite=False)
    r = _run([str(out), "-q"])
    assert r.exit_code == 2
    assert r.output.splitlines()[0] == f"Error: {out}: already holds an experiment"
    assert (out / "results.json").is_file()  # untouched
    with pytest.raises(SplatrefineError, match="exclude each other"):
        prepare_out(out, cfg, resume=True, overwrite=True)
    prepare_out(out, cfg, resume=True, overwrite=False)  # no stored config: resumes
    assert (out / "results.json").is_file()
    prepare_out(out, cfg, resume=False, overwrite=True)
    assert out.is_dir() and not any(out.iterdir())


def test_foreign_folder_never_deleted(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for flags in ([], ["--overwrite"], ["--resume"]):
        r = _run([str(out), "-q", *flags])
        assert r.exit_code == 2, flags
        assert "is not an experiment folder" in r.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_cuda_without_cuda_refused_before_writing(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    r = _run([str(out), "--device", "cuda", "-q"])
    assert r.exit_code == 2
    assert "--device cuda: no CUDA device is available" in r.output and "Use --device cpu or auto." in r.output
    assert not out.exists()


def test_resume_with_another_config_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": "splatrefine-experiment", "completed": []}))
    (out / "experiment.yaml").write_text(yaml.safe_dump(config_from_dict({"seed": 1}).to_dict()))
    with pytest.raises(SplatrefineError, match="another configuration"):
        prepare_out(out, config_from_dict({"seed": 2}), resume=True, overwrite=False)
    prepare_out(out, config_from_dict({"seed": 1}), resume=True, overwrite=False)
    # how many processes share the work does not change results: resuming with another count is fine
    prepare_out(out, config_from_dict({"seed": 1, "workers": 1}), resume=True, overwrite=False)


@pytest.mark.parametrize("data, message", [
    ({"data": {"train_identities": [1, 1]}}, "identity 1 is listed twice"),
    ({"data": {"test_identities": []}}, "expected a non-empty list"),
    ({"data": {"rig": "dome"}}, "data.rig 'dome' is not one of"),
    ({"targets": [{"plugin": "bisenet", "variants": ["refind"]}]}, "Did you mean 'refined'?"),
    ({"traget": {}}, "unknown key 'traget'. Did you mean 'targets'?"),
    ({"finetune": {"min_yaw": 95}}, "finetune.min_yaw must be a number in [0, 90)"),
    ({"finetune": {"oversample": 0}}, "finetune.oversample: 0 is below the minimum 1"),
    ({"finetune": {"oversampel": 2}}, "Did you mean 'oversample'?"),
    ({"data": {"frontal_identities": [7, 7]}}, "identity 7 is listed twice"),
    ({"workers": 0}, "workers must be auto or a whole number >= 1, got 0"),
    ({"workers": "two"}, "workers must be auto or a whole number >= 1, got 'two'"),
])
def test_config_errors(data, message):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data, "exp.yaml")
    assert message in str(exc.value)


def test_unknown_plugin_or_setting_refused_before_writing(tmp_path):
    out = tmp_path / "out"
    cfg = _write(tmp_path, {"targets": [{"plugin": "bisnet"}]})
    r = _run([str(out), "-c", str(cfg), "-q"])
    assert r.exit_code == 2 and "no target_parser named 'bisnet'. Did you mean 'bisenet'?" in r.output
    r = _run([str(out), "--set", "refine.representation.params.iteratons=3", "-q"])
    assert r.exit_code == 2 and "Did you mean 'iterations'?" in r.output
    r = _run([str(out), "--set", "targets.0.baseline.step=3", "-q"])
    assert r.exit_code == 2 and "Did you mean 'steps'?" in r.output
    assert not out.exists()


def test_cpu_yaml_is_the_default_and_gpu_yaml_validates():
    cpu, _ = load_config(EXAMPLES / "cpu.yaml")
    assert cpu.to_dict() == config_from_dict({}).to_dict()
    gpu, _ = load_config(EXAMPLES / "gpu.yaml")
    assert gpu.resolution > cpu.resolution and len(gpu.train_identities) > len(cpu.train_identities)
    assert not set(gpu.train_identities) & set(gpu.test_identities)


def test_apply_sets():
    d = apply_sets({}, ["data.resolution=64", "targets.0.baseline.steps=5", "seed=3"])
    c = config_from_dict(d)
    assert (c.resolution, c.seed, c.targets[0].baseline["steps"]) == (64, 3, 5)
    assert c.targets[0].variants == ("refined", "raw", "palette", "simulated", "corrected")
    assert set(c.targets[0].variants) < set(VARIANTS)
    assert c.targets[1].optional and c.targets[1].plugin == "smp"


def raw_samples(out: Path) -> list[dict]:
    return json.loads((out / "datasets" / "bisenet-argmax-raw" / "manifest.json").read_text())["samples"]


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tmp_path, monkeypatch):
    import os

    import splatrefine.plugins.extreme_pose.plan as plan
    import splatrefine.workers as workers

    calls, graphs = [], []
    run_jobs, run_graph = workers.run_jobs, plan.run_graph

    def counting_run_jobs(fn, jobs, n, description, **kw):
        calls.append((description, len(jobs), n))
        return run_jobs(fn, jobs, n, description, **kw)

    def recording_run_graph(stages, n, description, **kw):
        def recorded(stage):
            def jobs():
                made = stage.jobs()
                graphs.append((stage.name, n, [getattr(fn, "__name__", None) for fn, _ in made]))
                return made
            return workers.GraphStage(stage.name, stage.after, jobs)
        return run_graph([recorded(s) for s in stages], n, description, **kw)

    monkeypatch.setattr(workers, "run_jobs", counting_run_jobs)
    monkeypatch.setattr(plan, "run_graph", recording_run_graph)
    out = tmp_path / "exp"
    r = _run([str(out), "-c", str(_write(tmp_path, TINY)), "-q"])
    assert r.exit_code == 0, r.output
    # the CLI (installed plugins) runs the stages side by side, one worker process per core, and
    # refines the identities of one stage side by side too
    cores = min(2, os.cpu_count() or 1)
    assert ("synthesize identities", 4, cores) in calls
    assert {n for _, n, _ in graphs} == {cores}
    started = [name for name, _, _ in graphs]
    assert started[:2] == ["baseline/bisenet", "refine/simulated-argmax"]  # nothing else is ready
    marker = json.loads((out / "experiment.json").read_text())
    assert sorted(started) == sorted(marker["completed"][1:-1])
    assert 0 < marker["wall_seconds"] and "| wall time of the experiment |" in (out / "results.md").read_text()
    jobs = dict((name, fns) for name, _, fns in graphs)
    if cores > 1:
        assert jobs["refine/bisenet-argmax"] == ["refine_identity"] * 2
        assert jobs["finetune/bisenet/raw"] == ["run_stage"]
        assert jobs["correct/bisenet-argmax"] == ["correct_identity"] * 2
    assert started.index("correct/bisenet-argmax") > started.index("refine/bisenet-argmax")
    assert started.index("finetune/bisenet/corrected") > started.index("correct/bisenet-argmax")
    assert f"Results: {out / 'results.md'}" in r.output
    res = json.loads((out / "results.json").read_text())
    rows = res["targets"]["bisenet"]["parsers"]
    assert list(rows) == ["baseline", "refined", "raw", "palette", "simulated", "corrected"]
    for v, row in rows.items():
        assert set(row["scores"]) == {"all", "frontal", "mid", "extreme"}
        for b in ("frontal", "mid", "extreme"):
            assert 0.0 <= row["scores"][b]["miou"] <= 1.0 and 0.0 <= row["scores"][b]["mean_f1"] <= 1.0
        assert "skin" in row["per_class"] and "extreme" in row["per_class_by_bucket"]
        if v != "baseline":
            d = row["delta"]["extreme"]["miou"]
            assert d == pytest.approx(row["scores"]["extreme"]["miou"] - rows["baseline"]["scores"]["extreme"]["miou"])
    # the rig's nominal +-30 / +-60 degree views count as mid / extreme (poses.yaw_pitch snaps them)
    assert res["test_views"] == {"frontal": 19, "mid": 20, "extreme": 22}
    goals = res["targets"]["bisenet"]["goals"]
    assert set(goals) >= {"extreme_gain", "extreme_met", "frontal_change", "frontal_met"}
    assert set(res["refine"]) == {"bisenet-argmax", "bisenet-palette", "simulated-argmax", "bisenet-argmax-corrected"}
    assert {"initial", "refined_input"} <= set(res["refine"]["simulated-argmax"])
    assert set(res["refine"]["bisenet-argmax-corrected"]) == {"uncorrected_before", "uncorrected_after"}
    # the simulated clean-up: a corrected copy of each refine run, its 2 least confident input views
    # now their GT; the refine runs themselves untouched
    for ident in (3, 4):
        copy = out / "corrected" / "bisenet-argmax" / f"id_{ident:04d}"
        rounds = json.loads((copy / "refined" / "corrections.json").read_text())["rounds"]
        assert len(rounds) == 1 and len(rounds[0]["corrected"]) == 2
        assert all(n.startswith("view_") for n in rounds[0]["corrected"])
        for n in rounds[0]["corrected"]:
            from splatrefine.io.labels import read_labels
            from splatrefine.schema import CELEBAMASK_HQ
            assert np.array_equal(read_labels(copy / "refined" / "labels" / f"{n}.png", CELEBAMASK_HQ),
                                  read_labels(copy / "gt" / f"{n}.png", CELEBAMASK_HQ))
        assert not (out / "refine" / "bisenet-argmax" / f"id_{ident:04d}" / "refined" / "corrections.json").exists()
    corrected = json.loads((out / "datasets" / "bisenet-argmax-corrected" / "manifest.json").read_text())["samples"]
    assert len(corrected) == len(json.loads((out / "datasets" / "bisenet-argmax-refined" / "manifest.json")
                                            .read_text())["samples"])
    # train and test data are disjoint identities; the frontal set holds only |yaw| < 30
    frontal = json.loads((out / "data" / "frontal" / "manifest.json").read_text())["samples"]
    assert {s["identity"] for s in frontal} == {3, 4, 200} and max(abs(s["yaw"]) for s in frontal) < 30
    assert {s["identity"] for s in raw_samples(out)} == {3, 4}  # frontal-only identities are never refined
    raw = raw_samples(out)
    assert min(abs(s["yaw"]) for s in raw) >= 30
    # the fine-tune mix holds the new views twice (finetune.oversample), counted once
    hist = json.loads((out / "parsers" / "bisenet" / "raw" / "history.json").read_text())
    assert (hist["samples"], hist["oversample"]) == (len(frontal) + len(raw), 2)
    from splatrefine.training import resolve_precision
    assert hist["precision"] == resolve_precision(res["targets"]["bisenet"]["params"].get("precision", "fp32"), "cpu")
    md = (out / "results.md").read_text()
    for needle in ("| parser | mIoU frontal | mIoU mid | mIoU extreme |", "| baseline |", "| refined |",
                   "| palette |", "| simulated |", "Per-class IoU", "and of 1 frontal-only identity (200)", "| l_ear |", "Label quality", "Goals",
                   "The identities are procedural heads (`splatrefine synth` seeds) with exact GT at every view",
                   f"({len(frontal) + len(raw)} training images, the new views 2x, 1 steps, {hist['precision']})"):
        assert needle in md, needle
    for name in ("miou_bisenet.png", "contact_bisenet_frontal.png", "contact_bisenet_mid.png",
                 "contact_bisenet_extreme.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    # a second run refuses; --resume only redoes the results stage
    r = _run([str(out), "-c", str(_write(tmp_path, TINY)), "-q"])
    assert r.exit_code == 2 and "already holds an experiment" in r.output
    before = json.loads((out / MARKER).read_text())["timings"]
    r = _run([str(out), "-c", str(_write(tmp_path, TINY)), "-q", "--resume"])
    assert r.exit_code == 0, r.output
    after = json.loads((out / MARKER).read_text())["timings"]
    assert {k: v for k, v in after.items() if k != "results"} == {k: v for k, v in before.items() if k != "results"}


def test_stage_priority(tmp_path):
    from splatrefine.plugins.extreme_pose.plan import Experiment

    exp = Experiment(config_from_dict({}), tmp_path / "exp")
    names = [s.name for s in exp.plan(list(exp.config.targets))]
    kinds = [n.split("/")[0].replace("correct", "refine") for n in names]
    assert kinds == sorted(kinds, key=["baseline", "finetune", "refine", "evaluate"].index)
    # the refine that feeds two fine-tunes (refined and raw) comes last among the refines; the
    # simulated clean-up of its runs (`corrected`) waits for it whatever its place
    refines = [n for n in names if n.startswith(("refine/", "correct/"))]
    assert refines == ["refine/bisenet-palette", "refine/simulated-argmax", "correct/bisenet-argmax",
                       "refine/smp-unet-argmax", "refine/bisenet-argmax"]
    stages = {s.name: s for s in exp.plan(list(exp.config.targets))}
    assert stages["correct/bisenet-argmax"].after == ("refine/bisenet-argmax",)
    assert set(stages["finetune/bisenet/corrected"].after) == {"baseline/bisenet", "correct/bisenet-argmax"}
    assert len(names) == len(set(names)) == 2 + 6 + 5 + 8


def test_a_refine_run_without_its_report(tmp_path):
    """The experiment's refines skip the engine's report stage (Engine.run(skip=...)), leaving it
    unrecorded so a later run without skip writes it; an unknown stage name is refused."""
    from splatrefine.config import resolve
    from splatrefine.engine import STAGES, Engine
    from splatrefine.testing import FAKE_CONFIG, make_fake_registry, tiny_capture

    reg = make_fake_registry()
    cfg = resolve(reg, {k: dict(v) for k, v in FAKE_CONFIG.items()})
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="no stage named reprot"):
        Engine(reg, cfg, tiny_capture(), run).run(skip=("reprot",))
    Engine(reg, cfg, tiny_capture(), run).run(skip=("report",))
    assert json.loads((run / "stages.json").read_text())["completed"] == [s for s in STAGES if s != "report"]
    assert (run / "metrics.json").is_file() and not (run / "report.html").exists()
    Engine(reg, cfg, tiny_capture(), run).run()
    assert json.loads((run / "stages.json").read_text())["completed"] == list(STAGES)
    assert (run / "report.html").is_file()


def test_executor_block(tmp_path):
    from splatrefine.plugins.extreme_pose.config import build_executor
    from splatrefine.registry import Registry

    chosen = config_from_dict({"executor": {"plugin": "local", "params": {"max_retries": 0}}})
    assert chosen.to_dict()["executor"] == {"plugin": "local", "params": {"max_retries": 0}}
    assert "executor" not in config_from_dict({}).to_dict()  # a default run's results.json is unchanged
    assert chosen.results_dict() == config_from_dict({}).results_dict()  # --resume may choose another
    registry = Registry()
    assert build_executor(config_from_dict({}), registry, 3).slots == 3  # the experiment's workers
    one = config_from_dict({"executor": {"params": {"workers": 1}}})
    assert build_executor(one, registry, 3).in_process  # the block's own setting wins
    with pytest.raises(ConfigError, match="executor: unknown key 'plugn'. Did you mean 'plugin'?"):
        config_from_dict({"executor": {"plugn": "ray"}}, "exp.yaml")
    out = tmp_path / "out"
    r = _run([str(out), "--set", "executor.plugin=rey", "-q"])
    assert r.exit_code == 2 and "no executor named 'rey'. Did you mean 'ray'?" in r.output
    r = _run([str(out), "--set", "executor.params.workres=2", "-q"])
    assert r.exit_code == 2 and "Did you mean 'workers'?" in r.output
    assert not out.exists()


def test_optional_targets_skipped_when_their_component_cannot_be_built():
    """No plugin name in the check: an optional target whose factory raises a PluginError (a
    missing dependency, as smp without segmentation-models-pytorch) is left out with a note."""
    from dataclasses import dataclass

    from splatrefine import hookimpl
    from splatrefine.errors import PluginError
    from splatrefine.plugins.extreme_pose.config import active_targets
    from splatrefine.registry import Registry, make_plugin_manager
    from splatrefine.roles import ComponentSpec, Role

    @dataclass(frozen=True)
    class Settings:
        size: int = 1

    def needy(settings, context):
        raise PluginError("the needy parser needs needylib (No module named 'needylib')", "pip install needylib")

    class Needy:
        @hookimpl
        def splatrefine_register_components(self, register):
            register(ComponentSpec(Role.TARGET_PARSER, "needy", needy, Settings, "needs needylib"))

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(Needy(), name="needy")
    registry = Registry(manager)
    cfg = config_from_dict({"targets": [{"name": "a", "plugin": "bisenet"}, {"name": "b", "plugin": "needy", "optional": True},
                                        {"name": "c", "plugin": "gone", "optional": True}]})
    targets, notes = active_targets(cfg, registry)
    assert [t.name for t in targets] == ["a"]
    assert notes == ["target 'b' skipped: the needy parser needs needylib (No module named 'needylib'). pip install needylib",
                     "target 'c' skipped: no target_parser plugin 'gone' is installed"]
    # a target that is not optional is never skipped: it fails where it is built, with that error
    assert [t.name for t in active_targets(config_from_dict({"targets": [{"plugin": "needy"}]}), registry)[0]] == ["needy"]
