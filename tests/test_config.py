"""Config precedence and validation: defaults < YAML < --plugin < --set."""

from pathlib import Path

import pytest

from splatrefine.config import load_yaml, resolve
from splatrefine.errors import ConfigError
from splatrefine.roles import Role
from splatrefine.testing import FAKE_CONFIG


def _cfg(fake_registry, data=None, plugins=(), sets=()):
    base = {k: dict(v) for k, v in FAKE_CONFIG.items()}
    base.update(data or {})
    return resolve(fake_registry, base, list(plugins), list(sets))


def test_defaults_then_yaml_then_set(fake_registry):
    cfg = _cfg(fake_registry)
    assert cfg.settings[Role.VIEW_SAMPLER].count == 4
    cfg = _cfg(fake_registry, {"view_sampler": {"plugin": "fake-sampler", "params": {"count": 7}}})
    assert cfg.settings[Role.VIEW_SAMPLER].count == 7
    cfg = _cfg(fake_registry, {"view_sampler": {"plugin": "fake-sampler", "params": {"count": 7}}},
               sets=["view_sampler.count=9"])
    assert cfg.settings[Role.VIEW_SAMPLER].count == 9


def test_plugin_without_role_needs_a_unique_name(fake_registry):
    cfg = _cfg(fake_registry, plugins=["fake-sampler"])
    assert cfg.plugins[Role.VIEW_SAMPLER] == "fake-sampler"
    with pytest.raises(ConfigError, match="several roles"):
        _cfg(fake_registry, plugins=["fake-parser"])  # both initial_parser and target_parser


def test_unknown_setting_suggests_the_closest(fake_registry):
    with pytest.raises(ConfigError) as exc:
        _cfg(fake_registry, sets=["view_sampler.cuont=3"])
    assert str(exc.value).startswith("view_sampler 'fake-sampler' has no setting 'cuont'. Did you mean 'count'?")


def test_unknown_role_key_suggests_the_closest(fake_registry):
    with pytest.raises(ConfigError, match="unknown key 'view_smpler'. Did you mean 'view_sampler'"):
        _cfg(fake_registry, {"view_smpler": {"plugin": "x"}})


@pytest.mark.parametrize("value, message", [
    ("abc", "expected an integer, got 'abc'"),
    ("0", "0 is below the minimum 1"),
    ("2.5", "expected an integer, got 2.5"),
])
def test_wrong_type_or_range(fake_registry, value, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(fake_registry, sets=[f"view_sampler.count={value}"])


def test_set_needs_role_dot_key(fake_registry):
    with pytest.raises(ConfigError, match="expected ROLE.KEY=VALUE"):
        _cfg(fake_registry, sets=["count=3"])


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("view_sampler:\n  plugin: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(bad)
    assert str(bad) in str(exc.value) and "malformed YAML at line" in str(exc.value)


def test_yaml_is_loaded_safely(tmp_path: Path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_yaml(evil)


def test_resolved_config_round_trips(fake_registry, tmp_path):
    import yaml

    cfg = _cfg(fake_registry, sets=["view_sampler.count=5", "initial_parser.confidence=0.7"])
    again = resolve(fake_registry, yaml.safe_load(cfg.dump()))
    assert again.to_dict() == cfg.to_dict()


def test_apply_sets_walks_mappings_and_lists():
    from splatrefine.config import apply_sets

    base = {"data": {"resolution": 32}}
    out = apply_sets(base, ["data.resolution=64", "targets.0.steps=5", "seed=3", "data.ids=[1, 2]"],
                     defaults={"targets": [{"steps": 1}, {"steps": 2}]})
    assert out == {"data": {"resolution": 64, "ids": [1, 2]}, "targets": [{"steps": 5}, {"steps": 2}], "seed": 3}
    assert base == {"data": {"resolution": 32}}  # a copy
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE, e.g. data.resolution=64"):
        apply_sets({}, ["resolution"], example="data.resolution=64")
    with pytest.raises(ConfigError, match="'7' is not an index of the list at targets"):
        apply_sets({"targets": [{}]}, ["targets.7.steps=1"])
    with pytest.raises(ConfigError, match="'seed' is not a mapping"):
        apply_sets({"seed": 1}, ["seed.x=1"])
