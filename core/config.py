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
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
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
    """A settings dataclass as plain YAML data (the inverse of `build_settings`)."""
    return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return settings_to_dict(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, PurePath):
        return str(v)
    return v


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


def _bad(where: str, value: Any, expected: str, fix: str) -> ConfigError:
    """The one line every type error reads as: the key, what it expected, the bad value, the fix."""
    return ConfigError(f"{where}: expected {expected}, got {value!r}; {fix}")


def _expected(tp: Any) -> str:
    """`tp` in words ("an integer", "a list of 2 numbers", ...), for error lines."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple and args and args[-1] is not Ellipsis:
        inner = {_expected(a) for a in args}
        what = inner.pop() if len(inner) == 1 else "values"
        return f"a list of {len(args)} {_plural(what)}"
    if origin in (tuple, list) or tp in (tuple, list):
        return f"a list of {_plural(_expected(args[0]))}" if args and args[0] is not Any else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} settings ({', '.join(f.name for f in dataclasses.fields(tp))})"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "a path"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, f"a {_type_name(tp)}")


def _plural(what: str) -> str:
    for article in ("an ", "a "):
        if what.startswith(article):
            return what[len(article):] + "s"
    return what


def _example(tp: Any) -> str:
    """A YAML value of type `tp`, for the fix in an error line."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return str(args[0])
    if origin is tuple and args and args[-1] is not Ellipsis:
        return "[" + ", ".join(_example(a) for a in args) + "]"
    if origin in (tuple, list) or tp in (tuple, list):
        return f"[{_example(args[0]) if args and args[0] is not Any else 1}, ...]"
    if origin is dict or tp is dict:
        return "{key: value}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return str(next(iter(tp)).value)
    if dataclasses.is_dataclass(tp):
        return "{" + ", ".join(f"{f.name}: ..." for f in dataclasses.fields(tp)[:2]) + "}"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "path/to/file"
    return {bool: "true", int: "3", float: "0.5", str: "text"}.get(tp, "...")


def _choice_error(where: str, value: Any, choices: Sequence[Any]) -> ConfigError:
    names = [str(c) for c in choices]
    hint = did_you_mean(str(value), names) or " Write one of them exactly."
    return ConfigError(f"{where}: {value!r} is not one of {', '.join(names)}.{hint}")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type `tp`; a ConfigError naming `where` (the
    key), the bad value, the expected type and the fix if it can't.

    Handled: bool, int (a whole float is accepted), float, str, Optional/unions, Literal, Enum
    (a member, its value or its name), tuples (fixed length or `tuple[T, ...]`), lists, dicts,
    paths (a string -> `Path`), nested dataclasses (a mapping, built and validated by
    `build_settings`) and `Any`. Any other annotation takes an instance of it and nothing else.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:
            return coerce(value, alternatives[0], where)
        for a in alternatives:
            try:
                return coerce(value, a, where)
            except ConfigError:
                continue
        raise _bad(where, value, _expected(tp), f"write e.g. {_example(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise _choice_error(where, value, args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value == member.value or (isinstance(value, str) and value == member.name):
                return member
        raise _choice_error(where, value, [m.value for m in tp])
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _bad(where, value, _expected(tp), f"write a list, e.g. {_example(tp)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _bad(where, value, _expected(tp), f"write {len(args)} values, e.g. {_example(tp)}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _bad(where, value, "a mapping", "write it as {key: value, ...}")
        if len(args) == 2:
            return {coerce(k, args[0], f"{where} key"): coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _bad(where, value, _expected(tp), f"write it as a mapping, e.g. {_example(tp)}")
        return build_settings(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, PurePath):
            return tp(value)
        if isinstance(value, str) and value.strip():
            return tp(value)
        raise _bad(where, value, "a path", "write the path as a string, e.g. weights/model.pth")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(where, value, "true or false", "write true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad(where, value, "an integer", "write a whole number, e.g. 3")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        fix = "write a number, e.g. 0.5"
        if isinstance(value, str):
            try:
                fix = f"YAML reads {value} as text: write {float(value)!r}"
            except ValueError:
                pass
        raise _bad(where, value, "a number", fix)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(where, value, "a string", f"quote it, e.g. '{value}'")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _bad(where, value, _expected(tp), f"give a {_type_name(tp)}")
    raise ConfigError(f"{where}: the setting's type {_type_name(tp)} is not supported by splatrefine.config",
                      "Annotate the setting with bool, int, float, str, a Path, a tuple, a list, a dict, "
                      "a Literal, an Enum or a dataclass.")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


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
        default = _default(f)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = {**settings_to_dict(default), **value}  # a nested group: only the keys written change
        v = coerce(value, hints[key], f"{where}.{key}")
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if lo is not None and item < lo:
                    raise ConfigError(f"{where}.{key}: {item} is below the minimum {lo}")
                if hi is not None and item > hi:
                    raise ConfigError(f"{where}.{key}: {item} is above the maximum {hi}")
        if choices is not None and v not in choices:
            raise _choice_error(f"{where}.{key}", v, list(choices))
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


@dataclass(frozen=True)
class Components:
    """What `resolve_components` returns: per resolved role, the plugin name and its validated
    settings, and the roles whose plugin nobody chose (the defaults filled them in)."""

    plugins: dict[Role, str]
    settings: dict[Role, Any]
    defaulted: frozenset = frozenset()


def resolve_components(registry, data: Mapping | None = None, plugin_args: Sequence[str] = (),
                       set_args: Sequence[str] = (), *, roles: Sequence[Role] | None = None,
                       defaults: Mapping[Role, str] | None = None, extra: Mapping[Role, dict] | None = None,
                       source: str = "config") -> Components:
    """The one reader of a config's role blocks, `--plugin` and `--set`: YAML data + `--plugin
    ROLE=NAME` + `--set ROLE.KEY=VALUE` -> validated settings per role.

    Precedence: dataclass defaults < YAML (`data[role] = {plugin, params}`) < --plugin < --set <
    `extra[role]` (settings a command fixes itself, e.g. evaluate's checkpoint). A --plugin that
    changes a role's plugin drops the params written for the previous one.

    `roles` (default: all) are the roles to resolve. A command that builds fewer (parse, train,
    evaluate build one parser) ignores the YAML blocks of other roles and refuses --plugin/--set
    for them; with a single role, `--plugin NAME` needs no role. With every role, a bare `--plugin
    NAME` must be unique across roles, every top-level key of `data` must be a role or one of
    TOP_LEVEL_KEYS (read by `resolve`, skipped here). `defaults` replaces the packaged
    defaults.yaml choices. Errors are ConfigErrors naming `source`, the argument or the setting;
    the user's own --plugin/--set roles are checked first, so their typo is the error they see.
    """
    every = roles is None
    roles = tuple(Role) if roles is None else tuple(Role(r) for r in roles)
    only = "" if every else ", ".join(r.value for r in roles)
    plugins = {r: n for r, n in {**default_plugins(), **(defaults or {})}.items() if r in roles}
    chosen: set[Role] = set()
    params: dict[Role, dict] = {r: {} for r in roles}
    for key, value in (data or {}).items():
        if key in TOP_LEVEL_KEYS:
            continue
        if not every:
            if key not in [r.value for r in roles]:
                continue  # a full run config: these commands read only their own roles' blocks
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
    explicit: set[Role] = set()
    for arg in plugin_args:
        if "=" in arg:
            key, name = arg.split("=", 1)
            role = _role(key.strip(), "--plugin")
        elif len(roles) == 1:
            name, role = arg, roles[0]
        else:
            name = arg
            found = [r for r in registry.roles_of(name.strip()) if r in roles]
            if len(found) != 1:
                what = "no component" if not found else f"components in several roles ({', '.join(r.value for r in found)})"
                raise ConfigError(f"--plugin {name}: {what} named '{name}'; write --plugin ROLE={name}",
                                  "Run 'splatrefine plugins list' to see what is installed.")
            role = found[0]
        if role not in roles:
            raise ConfigError(f"--plugin {arg}: this command uses only {only}")
        name = name.strip()
        if plugins[role] != name:
            params[role] = {}  # settings written for another plugin do not carry over
        plugins[role] = name
        chosen.add(role)
        explicit.add(role)
    example = f"{roles[0].value}.KEY=VALUE" if len(roles) == 1 else "ROLE.KEY=VALUE, e.g. representation.iterations=500"
    for arg in set_args:
        if "=" not in arg or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"--set {arg}: expected {example}")
        (key_role, *path), value = parse_set(arg, example)
        role = _role(key_role, "--set")
        if role not in roles:
            raise ConfigError(f"--set {arg}: this command uses only {only} settings")
        node = params[role]
        for i, k in enumerate(path[:-1]):  # a nested settings dataclass: ROLE.OUTER.INNER=VALUE
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {arg}: {role.value}.{'.'.join(path[:i + 1])} is not a group of settings")
        node[path[-1]] = value
        explicit.add(role)
    for role, values in (extra or {}).items():
        params[Role(role)].update(values)
    settings = {}
    for role in sorted(roles, key=lambda r: (r not in explicit, list(Role).index(r))):
        spec = registry.get(role, plugins[role])
        settings[role] = build_settings(spec.config_cls, params[role], f"{role.value} '{spec.name}'",
                                        show=f"{role.value}/{spec.name}")
    return Components({r: plugins[r] for r in roles}, {r: settings[r] for r in roles},
                      frozenset(set(roles) - chosen))


def resolve(registry, data: dict | None = None, plugin_args: Sequence[str] = (), set_args: Sequence[str] = (),
            source: str = "config") -> RunConfig:
    """Merge YAML data, --plugin and --set into a validated RunConfig: every role through
    `resolve_components`, plus the run-wide seed, device and schema."""
    data = dict(data or {})
    top = {k: data[k] for k in TOP_LEVEL_KEYS if k in data}
    components = resolve_components(registry, data, plugin_args, set_args, source=source)
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
    return RunConfig(components.plugins, components.settings, seed, device, schema, components.defaulted)


def __getattr__(name: str):
    # DEFAULT_PLUGINS was a constant here; the choices now live in the packaged defaults.yaml
    if name == "DEFAULT_PLUGINS":
        return default_plugins()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
