"""Default plugin choices come from the packaged defaults.yaml, checked at load."""

import pytest

from splatrefine.defaults import default_executor, default_plugins, parse_defaults
from splatrefine.errors import ConfigError
from splatrefine.roles import Role


def test_packaged_defaults_name_every_role_and_the_executor():
    assert default_plugins() == {Role.INITIAL_PARSER: "simulated", Role.REPRESENTATION: "dual-gs",
                                 Role.VIEW_SAMPLER: "orbit", Role.LABEL_AGGREGATOR: "transfer",
                                 Role.TARGET_PARSER: "bisenet"}
    assert default_executor() == "local"


def test_old_constant_names_still_import():
    from splatrefine.config import DEFAULT_PLUGINS
    from splatrefine.executors import DEFAULT_EXECUTOR

    assert DEFAULT_PLUGINS == default_plugins() and DEFAULT_EXECUTOR == "local"


def test_default_plugins_is_a_copy():
    default_plugins()[Role.VIEW_SAMPLER] = "changed"
    assert default_plugins()[Role.VIEW_SAMPLER] == "orbit"


@pytest.mark.parametrize("text, message", [
    ("plugins: [", "d.yaml: not valid YAML"),
    ("executor: local", "d.yaml: expected exactly the keys 'plugins' and 'executor'"),
    ("plugins: {initial_parser: simulated}\nexecutor: local", "d.yaml: 'plugins' must name one plugin for each role"),
    ("plugins: {initial_parser: simulated, representation: dual-gs, view_sampler: orbit, label_aggregator: 3,"
     " target_parser: bisenet}\nexecutor: local", "d.yaml: label_aggregator must be a plugin name, got 3"),
    ("plugins: {initial_parser: simulated, representation: dual-gs, view_sampler: orbit, label_aggregator: a,"
     " target_parser: bisenet}\nexecutor: ''", "d.yaml: executor must be a plugin name, got ''"),
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
