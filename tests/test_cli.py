"""CLI behaviour: exact error lines, exit codes, listing, config, the third-party example."""

import json
import os
from importlib import metadata

import pytest
from click.testing import CliRunner

from splatrefine import cli
from splatrefine.testing import FAKE_CONFIG, make_fake_registry


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(cli, "_registry", make_fake_registry)


def _lines(result):
    return [ln for ln in result.output.splitlines() if ln.strip()]


def test_unknown_plugin_suggests_and_says_how_to_list(runner, fakes):
    result = runner.invoke(cli.main, ["config", "show", "--plugin", "view_sampler=fake-smapler"])
    assert result.exit_code == 2
    assert _lines(result) == [
        "Error: no view_sampler named 'fake-smapler'. Did you mean 'fake-sampler'?",
        "  Run 'splatrefine plugins list --role view_sampler' to see what is installed.",
    ]


def test_unknown_setting_suggests(runner, fakes, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    result = runner.invoke(cli.main, ["config", "show", "-c", str(cfg), "--set", "view_sampler.cont=3"])
    assert result.exit_code == 2
    assert _lines(result)[0] == "Error: view_sampler 'fake-sampler' has no setting 'cont'. Did you mean 'count'?"
    assert "Traceback" not in result.output


def test_config_show_prints_resolved_yaml(runner, fakes, tmp_path):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    result = runner.invoke(cli.main, ["config", "show", "-c", str(cfg), "--set", "view_sampler.count=6"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["view_sampler"] == {"plugin": "fake-sampler", "params": {"count": 6}}


def test_missing_capture_path(runner, fakes, tmp_path):
    missing = tmp_path / "nope"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    result = runner.invoke(cli.main, ["refine", str(missing), "-c", str(cfg), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert _lines(result)[0] == f"Error: {missing}: no such file or folder"
    assert not (tmp_path / "run").exists()


def test_refine_needs_a_capture_or_demo(runner):
    result = runner.invoke(cli.main, ["refine"])
    assert result.exit_code == 2
    assert _lines(result)[0] == "Error: no capture given"


def test_plugins_list_and_show(runner, fakes):
    result = runner.invoke(cli.main, ["plugins", "list", "--json"])
    assert result.exit_code == 0
    names = {(c["role"], c["name"]) for c in json.loads(result.output)["components"]}
    assert ("view_sampler", "fake-sampler") in names
    result = runner.invoke(cli.main, ["plugins", "show", "view_sampler/fake-sampler"])
    assert result.exit_code == 0
    assert "count: int = 4" in result.output and "number of novel cameras" in result.output
    result = runner.invoke(cli.main, ["plugins", "show", "view_sampler"])
    assert result.exit_code == 2 and "expected ROLE/NAME" in result.output


def test_broken_third_party_plugin_is_listed_and_cli_still_works(runner, monkeypatch):
    class Broken:
        name, value, dist = "broken", "broken_pkg.plugin", None

        def load(self):
            raise ImportError("No module named 'broken_pkg'")

    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [Broken()])
    result = runner.invoke(cli.main, ["plugins", "list"])
    assert result.exit_code == 0
    assert "failed to load: broken = broken_pkg.plugin: ImportError: No module named 'broken_pkg'" in result.output
    assert runner.invoke(cli.main, ["--help"]).exit_code == 0


def _spiral_installed() -> bool:
    return any(ep.name == "spiral" for ep in metadata.entry_points(group="splatrefine.plugins"))


def test_third_party_example_plugin_is_listed_and_selectable(runner, tmp_path):
    if not _spiral_installed():
        if os.environ.get("CI"):
            pytest.fail("CI must install examples/third_party_plugin")
        pytest.skip("pip install ./examples/third_party_plugin")
    result = runner.invoke(cli.main, ["plugins", "list", "--role", "view_sampler"])
    assert "spiral" in result.output
    result = runner.invoke(cli.main, ["config", "show", "--plugin", "view_sampler=spiral", "--set", "view_sampler.count=5"])
    assert result.exit_code == 0, result.output
    assert "plugin: spiral" in result.output and "count: 5" in result.output


def test_capture_info_json_layout(runner, tmp_path):
    import numpy as np

    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.testing import tiny_capture

    cap = tiny_capture(views=3)
    path = write_capture_folder(cap, tmp_path / "cap")
    result = runner.invoke(cli.main, ["capture", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [v["name"] for v in info["views"]] == [v.name for v in cap.views]
    first = info["views"][0]
    assert (first["width"], first["height"]) == (32, 32)
    assert np.allclose(first["K"], cap.views[0].camera.K) and np.allclose(first["viewmat"], cap.views[0].camera.viewmat)
    text = runner.invoke(cli.main, ["capture", "info", str(path)])
    assert text.exit_code == 0 and "3 views" in text.output


def test_capture_info_broken_capture_is_one_line(runner, tmp_path):
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.testing import tiny_capture

    path = write_capture_folder(tiny_capture(views=2), tmp_path / "cap")
    image = sorted((path / "images").iterdir())[0]
    image.unlink()
    result = runner.invoke(cli.main, ["capture", "info", str(path)])
    assert result.exit_code == 2
    assert len(_lines(result)) <= 2 and str(image.name) in result.output and "Traceback" not in result.output


# bad input: every case one line (plus a hint), exit 2, nothing written ------------------------------
@pytest.mark.parametrize("args, lines", [
    (["--set", "view_sampler.yaw=[90,-90]"],
     ["Error: view_sampler 'orbit': yaw range [90, -90] is reversed; write it low to high: [-90, 90]"]),
    (["--set", "view_sampler.pitch=[-100,0]"],
     ["Error: view_sampler 'orbit': pitch range [-100, 0] must lie within [-90, 90] degrees"]),
    (["--set", "representation.iterations=0"],
     ["Error: representation 'dual-gs'.iterations: 0 is below the minimum 1"]),
    (["--plugin", "label_aggregator=cleanup", "--set", "label_aggregator.base=cleanup"],
     ["Error: label_aggregator 'cleanup': base cannot be 'cleanup' itself without base_params",
      "  Set base to argmax or palette-cluster."]),
    (["--plugin", "seed=3"], ["Error: --plugin: 'seed' is a run setting, not a role; set it with --seed N"]),
    (["--plugin", "device=cpu"],
     ["Error: --plugin: 'device' is a run setting, not a role; set it with --device auto|cpu|cuda"]),
    (["--set", "schema.x=1"],
     ["Error: --set: 'schema' is a run setting, not a role; set it with 'schema: NAME' in the -c config file"]),
])
def test_config_show_and_refine_reject_the_same_settings_before_any_file(runner, tmp_path, args, lines):
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.testing import tiny_capture

    shown = runner.invoke(cli.main, ["config", "show", *args])
    assert shown.exit_code == 2 and _lines(shown) == lines
    cap = write_capture_folder(tiny_capture(), tmp_path / "cap")
    for target in ([str(cap)], ["--demo"]):
        result = runner.invoke(cli.main, ["refine", *target, "-o", str(tmp_path / "run"), "-q", *args])
        assert result.exit_code == 2 and _lines(result) == lines
        assert not (tmp_path / "run").exists()


def test_refine_seed_option_is_recorded(runner, fakes, tmp_path):
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.testing import tiny_capture

    cap = write_capture_folder(tiny_capture(), tmp_path / "cap")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    result = runner.invoke(cli.main, ["refine", str(cap), "-c", str(cfg), "-o", str(tmp_path / "run"), "-q",
                                      "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["seed"] == 7
    for cmd in (["refine"], ["synth", "x"], ["experiment", "x"]):
        assert "--seed" in runner.invoke(cli.main, [*cmd, "--help"]).output


def test_synth_refuses_to_replace_captures_without_overwrite(runner, tmp_path):
    out = tmp_path / "caps"
    (out / "id_000").mkdir(parents=True)
    (out / "id_000" / "capture.json").write_text("{}")
    result = runner.invoke(cli.main, ["synth", str(out), "--identities", "1", "--resolution", "64"])
    assert result.exit_code == 2
    assert _lines(result) == [f"Error: {out / 'id_000'}: already exists",
                              "  Add --overwrite to replace it, or choose another OUT_DIR."]
    assert (out / "id_000" / "capture.json").read_text() == "{}"


def test_duplicate_image_in_transforms_json(runner, tmp_path):
    from splatrefine.io.nerfstudio import write_nerfstudio
    from splatrefine.testing import tiny_capture

    write_nerfstudio(tiny_capture(views=3), tmp_path / "ns")
    m = tmp_path / "ns" / "transforms.json"
    data = json.loads(m.read_text())
    data["frames"][2]["file_path"] = data["frames"][0]["file_path"]
    m.write_text(json.dumps(data))
    result = runner.invoke(cli.main, ["refine", str(m), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert _lines(result) == [f"Error: {m}: frames[0] and frames[2] name the same image '{data['frames'][0]['file_path']}'",
                              "  Each view needs its own image; remove the duplicate entry."]
    assert not (tmp_path / "run").exists()


def test_mediapipe_install_hint_is_the_documented_one():
    from pathlib import Path

    from splatrefine.plugins.mediapipe_parser.parser import INSTALL_COMMAND, INSTALL_HINT

    assert INSTALL_COMMAND == "pip install --no-deps mediapipe==0.10.14 absl-py attrs flatbuffers 'protobuf>=4.25.3,<5'"
    assert INSTALL_COMMAND in INSTALL_HINT
    docs = Path(__file__).resolve().parents[1] / "docs" / "parsers.md"
    assert INSTALL_COMMAND in docs.read_text() and "pip install 'splatrefine[mediapipe]'" not in docs.read_text()


@pytest.mark.slow
def test_train_parser_json_records_what_ran(runner, tmp_path):
    pytest.importorskip("torch")
    from splatrefine.datasets import write_labelled_folder
    from splatrefine.testing import tiny_capture

    cap = tiny_capture(views=4, size=32)
    root = write_labelled_folder(tmp_path / "ds", [v.name for v in cap.views], [v.image for v in cap.views],
                                 [v.labels for v in cap.views])
    out = tmp_path / "parser"
    result = runner.invoke(cli.main, ["train", str(root), "-o", str(out), "--steps", "3", "-q",
                                      "--set", "target_parser.input_size=32", "--set", "target_parser.train_batch_size=2"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "parser.json").read_text())
    assert info["params"]["steps"] == 3 and info["trained"] == {"steps": 3, "images": 4, "batch_size": 2,
                                                                 "precision": "fp32"}
