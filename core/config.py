"""Run configuration: which plugin plays each role, with what settings.

Precedence: dataclass defaults < YAML < --plugin ROLE=NAME < --set ROLE.KEY=VALUE.

YAML layout::

    seed: 0
    initial_parser:   {plugin: simulated, params: {severity: 1.0}}
    representation:   {plugin: dual-gs, params: {iterations: 3000}}

A component's settings are a frozen dataclass; `metadata` on a field may carry "help", "min",
"max" and "choices", all enforced here. Checks that span fields (a range whose low end must not
exceed its high end, ...) go in an optional `validate(self)` method of the dataclass, which raises
ConfigError; it runs whenever settings are built, so `config show` and `refine` reject the same
things before any run folder exists.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .defaults import default_plugins
from .errors import ConfigError, did_you_mean
from .roles import Role

TOP_LEVEL_KEYS = ("seed", "device", "schema")
ROLE_KEYS = ("plugin", "params")
# how to set each run-wide key from the command line (they are not roles: --plugin/--set do not take them)
TOP_LEVEL_HOW = {"seed": "--seed N", "device": "--device auto|cpu|cuda", "schema": "'schema: NAME' in the -c config file"}


@dataclass
class RunConfig:
    """The resolved choice per role (name + validated settings) and the run-wide settings."""

    plugins: dict[Role, str]
    settings: dict[Role, Any]
    seed: int = 0
    device: str = "auto"
    schema: str = "celebamask-hq"
    # roles whose plugin nobody chose (neither the YAML nor --plugin): the packaged defaults (defaults.yaml) filled them in
    defaulted: frozenset = frozenset()

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"seed": self.seed, "device": self.device, "schema": self.schema}
        for role in Role:
            out[role.value] = {"plugin": self.plugins[role], "params": settings_to_dict(self.settings[role])}
        return out

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def settings_to_dict(settings: Any) -> dict:
    out = {}
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def field_types(config_cls: type) -> dict[str, Any]:
    import sys

    module = sys.modules.get(config_cls.__module__)
    return typing.get_type_hints(config_cls, vars(module) if module else None)


def describe_settings(config_cls: type) -> list[dict]:
    """name, type, default and help of each setting (for `plugins show`)."""
    hints = field_types(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append({
            "name": f.name,
            "type": _type_name(hints[f.name]),
            "default": list(default) if isinstance(default, tuple) else default,
            "help": f.metadata.get("help", ""),
        })
    return rows


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type; ConfigError naming `where` if it can't."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if errors else ConfigError(f"{where}: None is not allowed")
    if origin is typing.Literal:
        if value in args:
            return value
        hint = did_you_mean(str(value), [str(a) for a in args])
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}.{hint}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build_settings(config_cls: type, params: dict, where: str, show: str | None = None) -> Any:
    """An instance of `config_cls` from defaults overridden by `params`, fully validated.

    `show` ("ROLE/NAME") makes the unknown-setting hint point at `splatrefine plugins show`."""
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: params must be a mapping, got {params!r}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = field_types(config_cls)
    values = {}
    for key, value in params.items():
        if key not in fields:
            if show:
                hint = f"Run 'splatrefine plugins show {show}' to see its settings."
            elif len(fields) <= 8:
                hint = f"Settings: {', '.join(fields) or '(none)'}."
            else:
                hint = None
            raise ConfigError(f"{where} has no setting '{key}'.{did_you_mean(str(key), fields)}", hint)
        f = fields[key]
        v = coerce(value, hints[key], f"{where}.{key}")
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if lo is not None and item < lo:
                    raise ConfigError(f"{where}.{key}: {item} is below the minimum {lo}")
                if hi is not None and item > hi:
                    raise ConfigError(f"{where}.{key}: {item} is above the maximum {hi}")
        if choices is not None and v not in choices:
            raise ConfigError(f"{where}.{key}: {v!r} is not one of {', '.join(map(str, choices))}.{did_you_mean(str(v), map(str, choices))}")
        values[key] = v
    try:
        settings = config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    validate = getattr(settings, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return settings


def load_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of roles at the top level")
    return data


def parse_set(arg: str, example: str = "representation.iterations=500") -> tuple[list[str], Any]:
    """One `--set KEY.PATH=VALUE` -> (the dotted key split at its dots, the value parsed as YAML;
    text that is not valid YAML stays a string). ConfigError naming the argument and showing
    `example` when there is no '=' or the key is empty."""
    if "=" not in arg:
        raise ConfigError(f"--set {arg}: expected KEY.PATH=VALUE, e.g. {example}")
    lhs, text = arg.split("=", 1)
    keys = [k.strip() for k in lhs.strip().split(".") if k.strip()]
    if not keys:
        raise ConfigError(f"--set {arg}: empty key, e.g. {example}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return keys, value


def apply_sets(data: dict, sets: Sequence[str], *, defaults: Mapping[str, Any] | None = None,
               example: str = "representation.iterations=500") -> dict:
    """A deep copy of the config mapping `data` with every `--set KEY.PATH=VALUE` applied.

    The path walks nested mappings (missing ones are created) and lists (a number is an index:
    `targets.0.baseline.steps=5`); the value is parsed as YAML (`--set data.ids=[1,2]`). A
    top-level key missing from `data` that a path descends into starts from a deep copy of
    `defaults[key]` (so `targets.0.steps=5` edits the default targets). This is the generic form
    for configs laid out as nested mappings (the experiment's); a refine's `--set ROLE.KEY=VALUE`
    is read by `resolve`. Raises ConfigError naming the argument: no '=', an index past a list's
    end, a path through a value that is not a mapping or list.
    """
    data = copy.deepcopy(data)
    for arg in sets:
        keys, value = parse_set(arg, example)
        node: Any = data
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    where = ".".join(keys[:i]) or "top"
                    raise ConfigError(f"--set {arg}: '{k}' is not an index of the list at {where}",
                                      f"Use a number below {len(node)}.")
                if last:
                    node[int(k)] = value
                else:
                    node = node[int(k)]
            elif last:
                node[k] = value
            else:
                if i == 0 and k not in node and defaults and k in defaults:
                    node[k] = copy.deepcopy(defaults[k])
                node = node.setdefault(k, {})
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"--set {arg}: '{k}' is not a mapping")
    return data


def _role(key: str, where: str) -> Role:
    """The role named `key`; ConfigError with a suggestion otherwise. On the command line
    (`where` --plugin/--set) the run-wide keys are not offered: they have options of their own."""
    try:
        return Role(key)
    except ValueError:
        roles = [r.value for r in Role]
        if where.startswith("--"):
            if key in TOP_LEVEL_KEYS:
                raise ConfigError(f"{where}: '{key}' is a run setting, not a role; set it with {TOP_LEVEL_HOW[key]}") from None
            raise ConfigError(f"{where}: unknown role '{key}'.{did_you_mean(key, roles)}",
                              f"Roles: {', '.join(roles)}.") from None
        known = roles + list(TOP_LEVEL_KEYS)
        raise ConfigError(f"{where}: unknown key '{key}'.{did_you_mean(key, known)}",
                          f"Known keys: {', '.join(known)}.") from None


def resolve(registry, data: dict | None = None, plugin_args: list[str] = (), set_args: list[str] = (),
            source: str = "config") -> RunConfig:
    """Merge YAML data, --plugin and --set into a validated RunConfig."""
    data = dict(data or {})
    top = {k: data.pop(k) for k in TOP_LEVEL_KEYS if k in data}
    plugins = default_plugins()
    chosen: set[Role] = set()
    params: dict[Role, dict] = {r: {} for r in Role}
    for key, value in data.items():
        role = _role(str(key), source)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {role.value} must be a mapping with 'plugin' and 'params'")
        for k in value:
            if k not in ROLE_KEYS:
                raise ConfigError(f"{source}: {role.value} has unknown key '{k}'.{did_you_mean(str(k), ROLE_KEYS)}")
        if "plugin" in value:
            plugins[role] = str(value["plugin"])
            chosen.add(role)
        params[role] = dict(value.get("params") or {})
    for arg in plugin_args:
        if "=" in arg:
            key, name = arg.split("=", 1)
            role = _role(key.strip(), "--plugin")
        else:
            name = arg
            roles = registry.roles_of(name)
            if len(roles) != 1:
                what = "no component" if not roles else f"components in several roles ({', '.join(r.value for r in roles)})"
                raise ConfigError(f"--plugin {name}: {what} named '{name}'; write --plugin ROLE={name}",
                                  "Run 'splatrefine plugins list' to see what is installed.")
            role = roles[0]
        if plugins[role] != name.strip():
            params[role] = {}  # settings written for another plugin do not carry over
        plugins[role] = name.strip()
        chosen.add(role)
    for arg in set_args:
        if "=" not in arg or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"--set {arg}: expected ROLE.KEY=VALUE, e.g. representation.iterations=500")
        lhs, text = arg.split("=", 1)
        key_role, key = lhs.split(".", 1)
        role = _role(key_role.strip(), "--set")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        params[role][key.strip()] = value
    settings = {}
    explicit = {_role(a.split("=", 1)[0].strip(), "--plugin") for a in plugin_args if "=" in a}
    explicit |= {_role(a.split(".", 1)[0].strip(), "--set") for a in set_args}
    # the user's own choices are checked first, so their typo is the error they see
    for role in sorted(Role, key=lambda r: (r not in explicit, list(Role).index(r))):
        spec = registry.get(role, plugins[role])
        settings[role] = build_settings(spec.config_cls, params[role], f"{role.value} '{spec.name}'",
                                        show=f"{role.value}/{spec.name}")
    settings = {role: settings[role] for role in Role}
    seed = coerce(top.get("seed", 0), int, f"{source}: seed")
    device = coerce(top.get("device", "auto"), str, f"{source}: device")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: device must be auto, cpu or cuda, got {device!r}")
    schema = coerce(top.get("schema", "celebamask-hq"), str, f"{source}: schema")
    from .schema import get_schema

    try:
        get_schema(schema)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", exc.hint) from None
    if seed < 0:
        raise ConfigError(f"{source}: seed must be a non-negative integer, got {seed}")
    return RunConfig(plugins, settings, seed, device, schema, frozenset(set(Role) - chosen))


def __getattr__(name: str):
    # DEFAULT_PLUGINS was a constant here; the choices now live in the packaged defaults.yaml
    if name == "DEFAULT_PLUGINS":
        return default_plugins()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
