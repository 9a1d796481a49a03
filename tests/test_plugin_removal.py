"""The core knows no plugin by name: without a builtin plugin the rest still works, and commands
arrive through `splatrefine_register_commands`."""

import ast
import json
from importlib import metadata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import splatrefine.registry as registry_mod
from splatrefine import cli, hookimpl
from splatrefine.registry import BUILTIN_PLUGINS, DISABLE_AUTOLOAD_ENV, Registry, make_plugin_manager
from splatrefine.roles import Role
from splatrefine.testing import FAKE_CONFIG, make_fake_registry

SYNTHETIC = "splatrefine.plugins.synthetic.plugin"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def fresh_commands(monkeypatch):
    """The CLI collects its plugins' commands anew in this test (and as before after it)."""
    monkeypatch.setattr(cli.main, "_plugin_commands", None)


@pytest.fixture
def without_synthetic(monkeypatch, fresh_commands):
    monkeypatch.setattr(registry_mod, "BUILTIN_PLUGINS", tuple(m for m in BUILTIN_PLUGINS if m != SYNTHETIC))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")


def _lines(result):
    return [ln for ln in result.output.splitlines() if ln.strip()]


def test_synth_comes_from_the_synthetic_plugin(runner, fresh_commands):
    assert "synth" not in cli.main.commands  # not a core command
    result = runner.invoke(cli.main, ["--help"])
    assert result.exit_code == 0 and "  synth " in result.output


def test_without_the_synthetic_plugin_the_rest_works(runner, without_synthetic, monkeypatch, tmp_path):
    from splatrefine.io.capture_folder import write_capture_folder
    from splatrefine.testing import tiny_capture

    registry = Registry(make_plugin_manager(entrypoints=False))
    assert SYNTHETIC not in {n for n, _ in registry.manager.pm.list_name_plugin()}
    assert "simulated" not in registry.names(Role.INITIAL_PARSER)
    assert all(registry.names(role) for role in Role)

    listed = runner.invoke(cli.main, ["plugins", "list"])
    assert listed.exit_code == 0, listed.output
    assert "  orbit " in listed.output and "simulated" not in listed.output and "failed" not in listed.output

    helped = runner.invoke(cli.main, ["--help"])
    assert helped.exit_code == 0 and "synth" not in helped.output and "  refine " in helped.output
    missing = runner.invoke(cli.main, ["synth", str(tmp_path / "caps")])
    assert missing.exit_code == 2 and "No such command 'synth'" in missing.output

    demo = runner.invoke(cli.main, ["refine", "--demo", "-o", str(tmp_path / "demo"), "-q"])
    assert demo.exit_code == 2
    assert _lines(demo) == ["Error: refine --demo needs a plugin that writes the demo capture (the builtin "
                            "synthetic plugin, splatrefine.plugins.synthetic), and none is loaded"]
    assert not (tmp_path / "demo").exists()

    # a capture refines with another plugin's initial parser; the default one is simply not there
    monkeypatch.setattr(cli, "_registry", make_fake_registry)
    cap = write_capture_folder(tiny_capture(), tmp_path / "cap")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({k: v for k, v in FAKE_CONFIG.items() if k != "initial_parser"}))
    default = runner.invoke(cli.main, ["refine", str(cap), "-c", str(cfg), "-o", str(tmp_path / "r0"), "-q"])
    assert default.exit_code == 2 and _lines(default)[0].startswith("Error: no initial_parser named 'simulated'.")
    ran = runner.invoke(cli.main, ["refine", str(cap), "-c", str(cfg), "--plugin", "initial_parser=fake-parser",
                                   "-o", str(tmp_path / "run"), "-q"])
    assert ran.exit_code == 0, ran.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["initial_parser"]["plugin"] == "fake-parser"


class _Commands:
    @hookimpl
    def splatrefine_register_commands(self, cli):
        @cli.command()
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

        @cli.command("refine")
        def not_the_core_refine():
            """Takes a core command's name."""


class _Broken:
    @hookimpl
    def splatrefine_register_commands(self, cli):
        raise RuntimeError("boom")


class _EntryPoint:
    dist = None

    def __init__(self, name, plugin):
        self.name, self.value, self._plugin = name, f"{name}_pkg.plugin", plugin

    def load(self):
        return self._plugin


def test_third_party_commands_are_added_and_isolated(runner, fresh_commands, monkeypatch):
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group=None: [_EntryPoint("broken", _Broken()), _EntryPoint("hello", _Commands())])
    result = runner.invoke(cli.main, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"
    helped = runner.invoke(cli.main, ["--help"])
    assert "  synth " in helped.output and "  hello " in helped.output  # the broken plugin took nothing else down
    assert cli.main.get_command(None, "refine") is cli.main.commands["refine"]  # the core keeps its names


def test_the_demo_capture_comes_from_the_synthetic_plugin(tmp_path):
    from splatrefine.refine import _written_capture

    pm = make_plugin_manager(entrypoints=False).pm
    assert [i.plugin_name for i in pm.hook.splatrefine_write_demo_capture.get_hookimpls()] == [SYNTHETIC]
    (tmp_path / "capture" / "id_000").mkdir(parents=True)
    assert _written_capture(tmp_path / "capture") == tmp_path / "capture" / "id_000"  # what --resume reopens


def test_without_the_experiment_plugin_the_rest_works(runner, fresh_commands, monkeypatch, tmp_path):
    monkeypatch.setattr(registry_mod, "BUILTIN_PLUGINS",
                        tuple(m for m in BUILTIN_PLUGINS if m != "splatrefine.plugins.extreme_pose.plugin"))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "experiment" not in cli.main.commands  # not a core command
    helped = runner.invoke(cli.main, ["--help"])
    assert helped.exit_code == 0 and "experiment" not in helped.output and "  synth " in helped.output
    assert runner.invoke(cli.main, ["experiment", str(tmp_path / "x")]).exit_code == 2
    listed = runner.invoke(cli.main, ["plugins", "list"])
    assert listed.exit_code == 0 and "  simulated " in listed.output and "failed" not in listed.output


ROOT = Path(__file__).resolve().parents[1]


def core_imports_where(matches) -> list[str]:
    """'path:line' of every import in core/ and registry/ (lazy ones too) that names a module
    `matches` accepts (absolute or relative module names, and module.name for `from` imports)."""
    found = []
    for folder in ("core", "registry"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
                else:
                    continue
                if any(matches(n) for n in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_core_does_not_import_the_experiment():
    """The experiment lives in its plugin: no module of core/ or registry/ imports it (or the
    former splatrefine.experiment), lazily or not."""
    found = core_imports_where(lambda n: "extreme_pose" in n or n.split(".")[-1] == "experiment")
    assert found == []
    assert not (ROOT / "core" / "experiment.py").exists()



SCAN = "splatrefine.plugins.scan.plugin"


def test_render_scan_comes_from_the_scan_plugin(runner, fresh_commands):
    assert "render-scan" not in cli.main.commands  # not a core command
    pm = make_plugin_manager(entrypoints=False).pm
    assert [i.plugin_name for i in pm.hook.splatrefine_register_commands.get_hookimpls()
            if i.plugin_name == SCAN] == [SCAN]
    helped = runner.invoke(cli.main, ["--help"])
    assert helped.exit_code == 0 and "  render-scan " in helped.output
    usage = runner.invoke(cli.main, ["render-scan", "--help"])
    assert usage.exit_code == 0 and "--pseudo-gt" in usage.output


def test_without_the_scan_plugin_the_rest_works(runner, fresh_commands, monkeypatch, tmp_path):
    monkeypatch.setattr(registry_mod, "BUILTIN_PLUGINS", tuple(m for m in BUILTIN_PLUGINS if m != SCAN))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    helped = runner.invoke(cli.main, ["--help"])
    assert helped.exit_code == 0 and "render-scan" not in helped.output
    assert "  synth " in helped.output and "  experiment " in helped.output and "  refine " in helped.output
    missing = runner.invoke(cli.main, ["render-scan", str(tmp_path / "head.obj"), "-o", str(tmp_path / "cap")])
    assert missing.exit_code == 2 and "No such command 'render-scan'" in missing.output
    listed = runner.invoke(cli.main, ["plugins", "list"])
    assert listed.exit_code == 0 and "  mediapipe " in listed.output and "failed" not in listed.output
    assert not (tmp_path / "cap").exists()


def test_the_core_imports_no_plugin():
    """core/ and registry/ import no module of splatrefine.plugins, lazily or not (the registry
    names the builtins only as strings in BUILTIN_PLUGINS)."""
    assert core_imports_where(lambda n: n == "plugins" or n.startswith(("plugins.", "splatrefine.plugins"))) == []
