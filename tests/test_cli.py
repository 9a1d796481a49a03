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
