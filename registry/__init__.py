"""Plugin manager factory, discovery, lookup and listing.

    pm = make_plugin_manager()
    registry = Registry(pm)            # collects every ComponentSpec
    spec = registry.get(Role.VIEW_SAMPLER, "orbit")
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from splatrefine import hookspecs
from splatrefine.errors import PluginError, did_you_mean
from splatrefine.roles import ComponentContext, ComponentSpec, Role

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "splatrefine.plugins"
DISABLE_AUTOLOAD_ENV = "SPLATREFINE_DISABLE_PLUGIN_AUTOLOAD"

# Every builtin plugin module, registered in this order. Third parties use the entry-point group.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "splatrefine.io.plugin",
    "splatrefine.plugins.samplers.plugin",
    "splatrefine.plugins.aggregators.plugin",
    "splatrefine.plugins.dual_gs.plugin",
    "splatrefine.plugins.bisenet.plugin",
    "splatrefine.plugins.smp_parsers.plugin",
    "splatrefine.plugins.mediapipe_parser.plugin",
    "splatrefine.plugins.labels_parser.plugin",
    "splatrefine.plugins.synthetic.plugin",
    "splatrefine.plugins.scan.plugin",
    "splatrefine.plugins.executors.plugin",
    "splatrefine.plugins.extreme_pose.plugin",
)


@dataclass
class LoadFailure:
    name: str
    source: str
    error: str


@dataclass
class PluginManager:
    """pluggy's manager plus what failed to load (listed by `plugins list`, never raised)."""

    pm: pluggy.PluginManager
    failures: list[LoadFailure] = field(default_factory=list)

    @property
    def hook(self):
        return self.pm.hook


def make_plugin_manager(entrypoints: bool = True, strict: bool = False) -> PluginManager:
    """A fresh plugin manager with the builtins and (unless disabled) entry-point plugins.

    Each third-party plugin loads in its own try: a broken one is recorded in `failures` and
    skipped, unless `strict` is set, which re-raises. Setting SPLATREFINE_DISABLE_PLUGIN_AUTOLOAD=1
    turns entry points off.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    manager = PluginManager(pm)
    for modname in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    sources: dict[str, tuple[str, str]] = {}
    if entrypoints and os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("1", "true", "yes"):
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"{ep.name} = {ep.value}" + (f" ({ep.dist.name})" if ep.dist else "")
            try:
                pm.register(ep.load(), name=f"entrypoint:{ep.name}")
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the CLI
                if strict:
                    raise
                _record(manager, ep.name, source, f"{type(exc).__name__}: {exc}")
            else:
                sources[f"entrypoint:{ep.name}"] = (ep.name, source)
    drop_unknown_hooks(manager, sources, strict)
    return manager


def _record(manager: PluginManager, name: str, source: str, error: str) -> None:
    log.warning("plugin %s failed to load: %s", source, error)
    manager.failures.append(LoadFailure(name, source, error))


def drop_unknown_hooks(manager: PluginManager, sources: dict[str, tuple[str, str]] | None = None,
                       strict: bool = False) -> None:
    """pluggy's `check_pending()`: a plugin that implements a hook no spec declares (a misspelled
    `splatrefine_regster_components`) would otherwise be silently ignored. Each such third-party
    plugin is unregistered and listed in `failures` (re-raised with `strict`); in a builtin it is
    our bug and raises. `sources` maps plugin names to (entry-point name, "name = module (dist)")."""
    pm = manager.pm
    sources = sources or {}
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            plugin_name = pm.get_name(exc.plugin) or repr(exc.plugin)
            hooks = sorted(name for name, caller in vars(pm.hook).items()
                           if not name.startswith("_") and not caller.has_spec()
                           and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls()))
            known = [name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")]
            error = "; ".join(f"unknown hook '{h}'.{did_you_mean(h, known)}" for h in hooks)
            if strict or plugin_name in BUILTIN_PLUGINS:
                raise PluginError(f"plugin {plugin_name}: {error}",
                                  "Hook implementations must use the names in splatrefine.hookspecs.") from None
            pm.unregister(exc.plugin)
            name, source = sources.get(plugin_name, (plugin_name, plugin_name))
            _record(manager, name, source, f"PluginValidationError: {error}")


def per_plugin(manager: PluginManager, hook_name: str) -> list[tuple[str, Any]]:
    """(plugin name, caller) for each plugin implementing `hook_name`, in registration order.

    Each caller is pluggy's own hook caller restricted to that one plugin
    (`pm.subset_hook_caller`), so the hook is called through pluggy (argument checks, wrappers)
    while one plugin's exception can be told from another's and listed as its failure."""
    pm = manager.pm
    impls = [impl for impl in getattr(pm.hook, hook_name).get_hookimpls()
             if not (impl.hookwrapper or getattr(impl, "wrapper", False))]
    plugins = {impl.plugin_name: impl.plugin for impl in impls}
    return [(name, pm.subset_hook_caller(hook_name, [p for n, p in plugins.items() if n != name]))
            for name in plugins]


class Registry:
    """Every component the loaded plugins offer, looked up by (role, name)."""

    def __init__(self, manager: PluginManager | None = None):
        self.manager = manager or make_plugin_manager()
        drop_unknown_hooks(self.manager)  # again: tests and wrappers register plugins after the factory
        self.failures = list(self.manager.failures)
        self._specs: dict[tuple[Role, str], ComponentSpec] = {}
        self._sources: dict[tuple[Role, str], str] = {}
        for source, call in per_plugin(self.manager, "splatrefine_register_components"):

            def register(spec: ComponentSpec, _source: str = source) -> None:
                self._add(spec, _source)

            try:
                call(register=register)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001
                if source in BUILTIN_PLUGINS:
                    raise
                self.failures.append(LoadFailure(source, source, f"{type(exc).__name__}: {exc}"))

    def _add(self, spec: ComponentSpec, source: str) -> None:
        key = (Role(spec.role), spec.name)
        if key in self._specs:
            raise PluginError(
                f"{key[0].value} '{spec.name}' is registered twice: by {self._sources[key]} and by {source}",
                "Uninstall one of the two plugins, or rename one component.",
            )
        self._specs[key] = spec
        self._sources[key] = source

    def specs(self, role: Role | None = None) -> list[ComponentSpec]:
        return [s for (r, _), s in sorted(self._specs.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))
                if role is None or r == role]

    def source(self, role: Role, name: str) -> str:
        return self._sources[(role, name)]

    def names(self, role: Role) -> list[str]:
        return [s.name for s in self.specs(role)]

    def get(self, role: Role | str, name: str) -> ComponentSpec:
        role = Role(role)
        try:
            return self._specs[(role, name)]
        except KeyError:
            raise PluginError(
                f"no {role.value} named '{name}'.{did_you_mean(name, self.names(role))}",
                f"Run 'splatrefine plugins list --role {role.value}' to see what is installed.",
            ) from None

    def build(self, role: Role | str, name: str, settings: Any = None, context: ComponentContext | None = None, *,
              where: str | None = None) -> Any:
        """The component `name` of `role` made by its factory with `context` (default: this
        registry's `context()`). `settings`: an instance of its config class, or a mapping of
        params (None: defaults) validated first (ConfigError naming `where`, default "ROLE 'NAME'").
        Components are built through `ComponentContext.component`, which calls this."""
        from splatrefine.config import build_settings

        role = Role(role)
        spec = self.get(role, name)
        context = context if context is not None else self.context()
        if settings is None or isinstance(settings, Mapping):
            settings = build_settings(spec.config_cls, dict(settings or {}), where or f"{role.value} '{spec.name}'",
                                      show=None if where else f"{role.value}/{spec.name}")
        elif not isinstance(settings, spec.config_cls):
            raise TypeError(f"{role.value} '{name}' takes {spec.config_cls.__name__} settings, "
                            f"not {type(settings).__name__}")
        return spec.factory(settings, context)

    def context(self, device: str = "cpu", seed: int = 0) -> ComponentContext:
        """A ComponentContext that builds components from this registry (library use, tests)."""
        return ComponentContext(device=device, seed=seed, registry=self)

    def roles_of(self, name: str) -> list[Role]:
        """Every role that has a component called `name`."""
        return [r for (r, n) in self._specs if n == name]

    def open_capture(self, path: str):
        """The capture at `path`, read by the first reader that understands it."""
        from splatrefine.errors import CaptureError

        if not os.path.exists(path):
            raise CaptureError(f"{path}: no such file or folder", "Give the path of a capture folder or file.")
        capture = self.manager.hook.splatrefine_open_capture(path=str(path))
        if capture is None:
            raise CaptureError(
                f"{path}: not a capture any installed reader understands",
                "Expected capture.json, transforms.json, a COLMAP sparse model or a FaceScape folder.",
            )
        return capture
