"""A run folder is a contract: run.json records the capture, config and version; --resume reuses
only what still matches and says what it recomputes; a failed start leaves nothing behind."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from splatrefine import __version__, cli
from splatrefine.io.capture_folder import write_capture_folder
from splatrefine.testing import FAKE_CONFIG, make_fake_registry, tiny_capture


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_registry", make_fake_registry)
    cap = write_capture_folder(tiny_capture(), tmp_path / "cap")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    return cap, cfg, tmp_path / "run"


def _refine(*args):
    return CliRunner().invoke(cli.main, ["refine", *map(str, args), "-q"])


def _lines(result):
    return [ln for ln in result.output.splitlines() if ln.strip()]


def _mtimes(run):
    return {p: (run / p).stat().st_mtime_ns for p in ("initial/probs.npy", "model/model.pt", "sample/cameras.json",
                                                       "refined/manifest.json")}


def test_run_json_records_capture_config_and_version(setup):
    cap, cfg, run = setup
    assert _refine(cap, "-c", cfg, "-o", run).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    assert record["splatrefine"] == __version__
    assert record["capture"]["path"] == str(cap.resolve())
    assert len(record["capture"]["views"]) == 6 and len(record["capture"]["fingerprint"]) == 24
    assert record["config"]["view_sampler"] == {"plugin": "fake-sampler", "params": {"count": 4}}
    assert set(json.loads((run / "stages.json").read_text())["keys"]) == {
        "parse", "fit", "sample", "render", "evaluate", "report"}


def test_resume_with_a_changed_setting_recomputes_exactly_the_stages_that_read_it(setup):
    cap, cfg, run = setup
    assert _refine(cap, "-c", cfg, "-o", run).exit_code == 0
    before = _mtimes(run)
    result = _refine(cap, "-c", cfg, "-o", run, "--resume", "--set", "view_sampler.count=6")
    assert result.exit_code == 0, result.output
    assert "Note: the config changed (view_sampler.params.count: 4 -> 6): recomputing sample, render, " \
           "evaluate, report" in result.output
    assert "Note: reusing parse, fit from" in result.output
    after = _mtimes(run)
    assert after["initial/probs.npy"] == before["initial/probs.npy"]
    assert after["model/model.pt"] == before["model/model.pt"]
    assert after["sample/cameras.json"] != before["sample/cameras.json"]
    manifest = json.loads((run / "refined" / "manifest.json").read_text())
    assert sum(s["source"] == "novel" for s in manifest["samples"]) == 6
    assert json.loads((run / "run.json").read_text())["config"]["view_sampler"]["params"]["count"] == 6
    assert "count: 6" in (run / "config.yaml").read_text()
    # a setting no stage reads (the target parser) recomputes nothing
    again = _mtimes(run)
    result = _refine(cap, "-c", cfg, "-o", run, "--resume", "--set", "view_sampler.count=6",
                     "--set", "target_parser.confidence=0.5")
    assert result.exit_code == 0, result.output
    assert "Note: the config changed (target_parser.params.confidence: 0.9 -> 0.5): no finished stage reads it" \
        in result.output
    assert _mtimes(run) == again


def test_resume_with_another_capture_refuses_and_names_the_difference(setup, tmp_path):
    cap, cfg, run = setup
    assert _refine(cap, "-c", cfg, "-o", run).exit_code == 0
    other = write_capture_folder(tiny_capture(views=5), tmp_path / "other")
    stages = (run / "stages.json").read_text()
    result = _refine(other, "-c", cfg, "-o", run, "--resume")
    assert result.exit_code == 2
    assert _lines(result) == [
        f"Error: {run}: was made from {cap.resolve()}, not {other.resolve()}: 6 views then, 5 now "
        "(missing 'cam_005')",
        "  Add --overwrite to start again from this capture, or choose another -o.",
    ]
    assert (run / "stages.json").read_text() == stages
    # the same capture edited in place: the changed view is named
    from PIL import Image

    image = cap / "images" / "cam_002.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 255
    Image.fromarray(pixels).save(image)
    result = _refine(cap, "-c", cfg, "-o", run, "--resume")
    assert result.exit_code == 2
    assert _lines(result)[0] == (f"Error: {run}: capture {cap.resolve()} changed since the run was made: "
                                 "the image of view 'cam_002' differs")


@pytest.mark.slow
def test_unchanged_resume_reproduces_the_uninterrupted_run(setup, tmp_path):
    cap, cfg, run = setup
    assert _refine(cap, "-c", cfg, "-o", run).exit_code == 0
    whole = tmp_path / "whole"
    assert _refine(cap, "-c", cfg, "-o", whole).exit_code == 0
    # interrupted after fit: later stages' outputs gone, stages.json says so
    state = json.loads((run / "stages.json").read_text())
    state["completed"] = ["parse", "fit"]
    (run / "stages.json").write_text(json.dumps(state))
    for name in ("refined", "gt"):
        import shutil

        shutil.rmtree(run / name)
    (run / "metrics.json").unlink()
    result = _refine(cap, "-c", cfg, "-o", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "recomputing" not in result.output
    assert json.loads((run / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())
    for p in sorted((whole / "refined" / "labels").iterdir()):
        assert (run / "refined" / "labels" / p.name).read_bytes() == p.read_bytes()


def test_existing_run_without_flags_names_all_three_ways_out(setup):
    cap, cfg, run = setup
    assert _refine(cap, "-c", cfg, "-o", run).exit_code == 0
    result = _refine(cap, "-c", cfg, "-o", run)
    assert result.exit_code == 2
    assert _lines(result) == [f"Error: {run}: already holds a run",
                              "  Add --resume to continue it, --overwrite to start again, or choose another -o."]


# failed starts and the default initial parser ----------------------------------------------------
def _unlabelled(tmp_path):
    cap = tiny_capture()
    for v in cap.views:
        v.labels = None
    return write_capture_folder(cap, tmp_path / "nogt")


def _config_without_parser(tmp_path):
    cfg = tmp_path / "noparser.yaml"
    cfg.write_text(json.dumps({k: v for k, v in FAKE_CONFIG.items() if k != "initial_parser"}))
    return cfg


def test_no_gt_and_no_real_parser_stops_before_any_work(setup, tmp_path, monkeypatch):
    from splatrefine.roles import Requirements

    _, _, run = setup
    # mediapipe's plugin declares the module it needs: here it is not importable
    real_missing = Requirements.missing
    monkeypatch.setattr(Requirements, "missing",
                        lambda self: ["mediapipe"] if "mediapipe" in self.modules else real_missing(self))
    cap = _unlabelled(tmp_path)
    result = _refine(cap, "-c", _config_without_parser(tmp_path), "-o", run)
    assert result.exit_code == 2
    assert _lines(result) == [
        f"Error: {cap}: has no GT labels, so the default initial parser 'simulated' cannot run, and no real "
        "parser is installed: choose one with --plugin initial_parser=bisenet --set initial_parser.checkpoint=PATH "
        "(a BiSeNet checkpoint), or install mediapipe (pip install --no-deps mediapipe==0.10.14 absl-py attrs "
        "flatbuffers 'protobuf>=4.25.3,<5') and use --plugin initial_parser=mediapipe"]
    assert not run.exists()


class _UniformParser:
    """A 'real' parser for the test: no opinion anywhere (needs no GT)."""

    def __init__(self, config, context):
        pass

    def parse(self, capture):
        v, (h, w) = len(capture), capture.views[0].image.shape[:2]
        k = capture.schema.num_classes
        return np.full((v, k, h, w), 1.0 / k, np.float32)


def test_no_gt_defaults_to_an_installed_real_parser(setup, tmp_path, monkeypatch):
    from dataclasses import make_dataclass

    from splatrefine import defaults, hookimpl
    from splatrefine.roles import ComponentSpec, Role

    class RealPlugin:
        @hookimpl
        def splatrefine_register_components(self, register):
            register(ComponentSpec(Role.INITIAL_PARSER, "fake-real", _UniformParser,
                                   make_dataclass("C", [], frozen=True), "test: uniform"))

    def registry():
        reg = make_fake_registry()
        reg.manager.pm.register(RealPlugin())
        return type(reg)(reg.manager)

    _, _, run = setup
    monkeypatch.setattr(cli, "_registry", registry)
    monkeypatch.setattr(defaults, "parsers_without_gt", lambda: ("not-registered", "fake-real", "mediapipe"))
    cap = _unlabelled(tmp_path)
    result = _refine(cap, "-c", _config_without_parser(tmp_path), "-o", run)
    assert result.exit_code == 0, result.output
    assert f"Note: {cap} has no GT labels, so the initial parser is 'fake-real' (the simulated one needs GT)" \
        in result.output
    assert json.loads((run / "run.json").read_text())["config"]["initial_parser"]["plugin"] == "fake-real"
    # a capture with GT keeps the default (simulated) parser
    from splatrefine.config import resolve

    cfg = resolve(registry(), {k: v for k, v in FAKE_CONFIG.items() if k != "initial_parser"})
    assert cfg.plugins[Role.INITIAL_PARSER] == "simulated" and Role.INITIAL_PARSER in cfg.defaulted


def test_default_real_parser_is_mediapipe_when_importable(monkeypatch):
    import importlib.util

    from splatrefine.defaults import parsers_without_gt
    from splatrefine.refine import default_real_parser
    from splatrefine.registry import Registry, make_plugin_manager

    assert parsers_without_gt() == ("mediapipe", "bisenet")  # bisenet needs a checkpoint: never taken unasked
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "mediapipe" else None)
    assert default_real_parser(Registry(make_plugin_manager(entrypoints=False)), "cap") == "mediapipe"


def test_cuda_without_cuda_leaves_no_folder(setup):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cap, cfg, run = setup
    result = _refine(cap, "-c", cfg, "-o", run, "--device", "cuda")
    assert result.exit_code == 2
    assert _lines(result) == ["Error: --device cuda: no CUDA device is available", "  Use --device cpu or auto."]
    assert not run.exists()


def test_a_start_that_fails_in_its_first_stage_removes_the_folder(setup, tmp_path):
    _, cfg, run = setup
    cap = _unlabelled(tmp_path)  # the fake parser needs GT: it fails inside the parse stage
    result = _refine(cap, "-c", cfg, "-o", run)
    assert result.exit_code != 0
    assert not run.exists()
    result = _refine(cap, "-c", cfg, "-o", run)  # the retry is not blocked by a leftover folder
    assert "already holds a run" not in result.output and "holds no splatrefine run" not in result.output
