"""Default plugin choices come from the packaged defaults.yaml, checked at load."""

import pytest

from splatrefine import hookimpl
from splatrefine.defaults import default_executor, default_plugins, parse_defaults, parsers_without_gt
from splatrefine.errors import ConfigError
from splatrefine.roles import Role


def test_packaged_defaults_name_every_role_and_the_executor():
    assert default_plugins() == {Role.INITIAL_PARSER: "simulated", Role.REPRESENTATION: "dual-gs",
                                 Role.VIEW_SAMPLER: "orbit", Role.LABEL_AGGREGATOR: "transfer",
                                 Role.TARGET_PARSER: "bisenet"}
    assert default_executor() == "local"
    assert parsers_without_gt() == ("mediapipe", "bisenet")


def test_old_constant_names_still_import():
    from splatrefine.config import DEFAULT_PLUGINS
    from splatrefine.executors import DEFAULT_EXECUTOR

    assert DEFAULT_PLUGINS == default_plugins() and DEFAULT_EXECUTOR == "local"


def test_default_plugins_is_a_copy():
    default_plugins()[Role.VIEW_SAMPLER] = "changed"
    assert default_plugins()[Role.VIEW_SAMPLER] == "orbit"


ROLES_OK = "plugins: {initial_parser: s, representation: d, view_sampler: o, label_aggregator: a, target_parser: b}\n"


@pytest.mark.parametrize("text, message", [
    ("plugins: [", "d.yaml: not valid YAML"),
    ("executor: local", "d.yaml: expected exactly the keys 'plugins', 'without_gt' and 'executor'"),
    (ROLES_OK + "executor: local", "d.yaml: expected exactly the keys 'plugins', 'without_gt' and 'executor'"),
    ("plugins: {initial_parser: simulated}\nwithout_gt: []\nexecutor: local",
     "d.yaml: 'plugins' must name one plugin for each role"),
    ("plugins: {initial_parser: simulated, representation: dual-gs, view_sampler: orbit, label_aggregator: 3,"
     " target_parser: bisenet}\nwithout_gt: []\nexecutor: local", "d.yaml: label_aggregator must be a plugin name, got 3"),
    (ROLES_OK + "without_gt: []\nexecutor: ''", "d.yaml: executor must be a plugin name, got ''"),
    (ROLES_OK + "without_gt: mediapipe\nexecutor: local",
     "d.yaml: without_gt must be a list of initial parser names, got 'mediapipe'"),
    (ROLES_OK + "without_gt: [mediapipe, 2]\nexecutor: local", "d.yaml: without_gt must be a plugin name, got 2"),
])
def test_a_broken_defaults_file_is_one_clear_error(text, message):
    with pytest.raises(ConfigError) as err:
        parse_defaults(text, "d.yaml")
    assert err.value.message.startswith(message), err.value.message


def test_the_wheel_ships_the_defaults_file():
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["splatrefine.configs"]
    assert (root / "examples/configs/defaults.yaml").is_file()
    assert any(fnmatch.fnmatch("defaults.yaml", p) for p in patterns)


def test_an_empty_without_gt_list_is_allowed():
    got = parse_defaults(ROLES_OK + "without_gt: []\nexecutor: local", "d.yaml")
    assert got.without_gt == () and got.plugins[Role.INITIAL_PARSER] == "s"


class _Declared:
    """A plugin whose initial parsers declare what they need (ComponentSpec.requires)."""

    @hookimpl
    def splatrefine_register_components(self, register):
        from dataclasses import make_dataclass

        from splatrefine.roles import ComponentSpec, Requirements

        cfg = make_dataclass("C", [], frozen=True)
        register(ComponentSpec(Role.INITIAL_PARSER, "needs-mod", object, cfg, "test",
                               requires=Requirements(modules=("splatrefine_no_such_module",), install="pip install x")))
        register(ComponentSpec(Role.INITIAL_PARSER, "needs-set", object, cfg, "test",
                               requires=Requirements(settings=("a=1", "b=B"), note="two settings")))


def _registry_with(plugin):
    from splatrefine.registry import Registry, make_plugin_manager

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(plugin, name="test.declared")
    return Registry(manager)


def test_the_no_gt_hint_is_built_from_what_plugins_declare(monkeypatch):
    from splatrefine import defaults
    from splatrefine.errors import SplatrefineError
    from splatrefine.refine import default_real_parser

    registry = _registry_with(_Declared())
    monkeypatch.setattr(defaults, "parsers_without_gt", lambda: ("needs-mod", "gone", "needs-set"))
    with pytest.raises(SplatrefineError) as err:
        default_real_parser(registry, "cap", "sim")
    assert err.value.message == (
        "cap: has no GT labels, so the default initial parser 'sim' cannot run, and no real parser is installed: "
        "choose one with --plugin initial_parser=needs-set --set initial_parser.a=1 --set initial_parser.b=B "
        "(two settings), or install splatrefine_no_such_module (pip install x) and use --plugin initial_parser=needs-mod")
    monkeypatch.setattr(defaults, "parsers_without_gt", lambda: ())
    with pytest.raises(SplatrefineError) as err:
        default_real_parser(registry, "cap", "sim")
    assert err.value.message.endswith("no real parser is installed: choose one with --plugin initial_parser=NAME "
                                      "('splatrefine plugins list --role initial_parser')")
