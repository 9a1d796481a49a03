"""Plugin discovery, lookup and failure isolation."""

from dataclasses import dataclass
from importlib import metadata

import pytest

from splatrefine import hookimpl
from splatrefine.errors import PluginError
from splatrefine.registry import BUILTIN_PLUGINS, DISABLE_AUTOLOAD_ENV, Registry, make_plugin_manager
from splatrefine.roles import ComponentSpec, Role


@dataclass(frozen=True)
class _Cfg:
    pass


class _Dup:
    @hookimpl
    def splatrefine_register_components(self, register):
        register(ComponentSpec(Role.VIEW_SAMPLER, "fake-sampler", object, _Cfg, "a clash"))


class _BrokenEntryPoint:
    name = "broken"
    value = "broken_pkg.plugin"
    dist = None

    def load(self):
        raise ImportError("No module named 'broken_pkg'")


def test_fresh_managers_are_independent():
    a, b = make_plugin_manager(entrypoints=False), make_plugin_manager(entrypoints=False)
    assert a.pm is not b.pm
    assert {n for n, _ in a.pm.list_name_plugin()} >= set(BUILTIN_PLUGINS)


def test_every_role_has_a_builtin(registry):
    for role in Role:
        assert registry.names(role), f"no builtin {role.value}"


def test_lookup_suggests_the_closest_name(fake_registry):
    with pytest.raises(PluginError) as exc:
        fake_registry.get(Role.VIEW_SAMPLER, "fake-smapler")
    assert "no view_sampler named 'fake-smapler'. Did you mean 'fake-sampler'?" in str(exc.value)
    assert "splatrefine plugins list --role view_sampler" in str(exc.value)


def test_duplicate_component_names_both_sources():
    from splatrefine.testing import FakePlugin

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(FakePlugin(), name="first-plugin")
    manager.pm.register(_Dup(), name="second-plugin")
    with pytest.raises(PluginError) as exc:
        Registry(manager)
    message = str(exc.value)
    assert "view_sampler 'fake-sampler' is registered twice" in message
    assert "first-plugin" in message and "second-plugin" in message


def test_broken_entry_point_is_listed_not_raised(monkeypatch):
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [_BrokenEntryPoint()])
    manager = make_plugin_manager()
    assert [f.name for f in manager.failures] == ["broken"]
    assert "ImportError" in manager.failures[0].error
    with pytest.raises(ImportError):
        make_plugin_manager(strict=True)


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [_BrokenEntryPoint()])
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert make_plugin_manager().failures == []


def _misspelled_plugin_module():
    import types

    module = types.ModuleType("misspelled_pkg.plugin")

    @hookimpl
    def splatrefine_regster_components(register):
        register(ComponentSpec(Role.VIEW_SAMPLER, "never-seen", object, _Cfg, "misspelled hook"))

    module.splatrefine_regster_components = splatrefine_regster_components
    return module


class _MisspelledEntryPoint(_BrokenEntryPoint):
    name = "misspelled"
    value = "misspelled_pkg.plugin"

    def load(self):
        return _misspelled_plugin_module()


def test_misspelled_hook_is_a_listed_failure(monkeypatch):
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [_MisspelledEntryPoint()])
    manager = make_plugin_manager()
    assert [(f.name, f.source) for f in manager.failures] == [("misspelled", "misspelled = misspelled_pkg.plugin")]
    assert manager.failures[0].error == (
        "PluginValidationError: unknown hook 'splatrefine_regster_components'. "
        "Did you mean 'splatrefine_register_components'?")
    assert "entrypoint:misspelled" not in {n for n, _ in manager.pm.list_name_plugin()}
    registry = Registry(manager)
    assert registry.failures == manager.failures
    assert registry.names(Role.VIEW_SAMPLER) and "never-seen" not in registry.names(Role.VIEW_SAMPLER)
    with pytest.raises(PluginError, match="unknown hook 'splatrefine_regster_components'"):
        make_plugin_manager(strict=True)


def test_misspelled_hook_registered_after_the_factory_is_caught_by_the_registry():
    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(_misspelled_plugin_module(), name="late-plugin")
    registry = Registry(manager)
    assert [f.name for f in registry.failures] == ["late-plugin"]
    assert "Did you mean 'splatrefine_register_components'?" in registry.failures[0].error


def test_misspelled_hook_is_listed_by_the_cli(monkeypatch):
    from click.testing import CliRunner

    from splatrefine import cli

    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [_MisspelledEntryPoint()])
    result = CliRunner().invoke(cli.main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert ("failed to load: misspelled = misspelled_pkg.plugin: PluginValidationError: unknown hook "
            "'splatrefine_regster_components'. Did you mean 'splatrefine_register_components'?") in result.output


def test_a_third_party_module_with_a_misspelled_hook_is_a_failed_plugin(monkeypatch, tmp_path):
    """A tiny plugin module on disk, loaded through the entry-point group like any third party."""
    import importlib
    import sys

    (tmp_path / "reigster_pkg.py").write_text(
        "from splatrefine import hookimpl\n\n"
        "@hookimpl\n"
        "def splatrefine_reigster_components(register):\n"
        "    raise AssertionError('a misspelled hook is never called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class _EntryPoint(_BrokenEntryPoint):
        name, value = "reigster", "reigster_pkg"

        def load(self):
            return importlib.import_module("reigster_pkg")

    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [_EntryPoint()])
    try:
        manager = make_plugin_manager()
        assert [(f.name, f.error) for f in manager.failures] == [(
            "reigster", "PluginValidationError: unknown hook 'splatrefine_reigster_components'. "
                        "Did you mean 'splatrefine_register_components'?")]
        registry = Registry(manager)
        assert [f.name for f in registry.failures] == ["reigster"] and registry.names(Role.VIEW_SAMPLER)
    finally:
        sys.modules.pop("reigster_pkg", None)


def test_components_are_collected_through_pluggy_hook_callers():
    from splatrefine.testing import FakePlugin

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(FakePlugin(), name="fakes")
    calls = []
    manager.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append((name, [i.plugin_name for i in impls])),
                                       lambda outcome, name, impls, kwargs: None)
    registry = Registry(manager)
    assert "fake-sampler" in registry.names(Role.VIEW_SAMPLER)
    per_plugin = [plugins for name, plugins in calls if name == "splatrefine_register_components"]
    assert ["fakes"] in per_plugin and all(len(p) == 1 for p in per_plugin)  # one plugin per call: its own failure
