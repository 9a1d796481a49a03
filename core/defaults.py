"""splatrefine's default plugin choices, from the packaged examples/configs/defaults.yaml.

The core names no plugin: which component plays each role when nobody chose one, which initial
parsers a capture without GT labels gets instead, and which executor runs jobs without --executor,
are data (`splatrefine.configs/defaults.yaml`), read once and checked here. A broken file is one
ConfigError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from .errors import ConfigError
from .roles import Role

DEFAULTS_FILE = "defaults.yaml"
_WHERE = f"splatrefine.configs/{DEFAULTS_FILE}"
KEYS = ("plugins", "without_gt", "executor")


@dataclass(frozen=True)
class Defaults:
    plugins: dict[Role, str]
    executor: str
    without_gt: tuple[str, ...] = ()


def parse_defaults(text: str, where: str = _WHERE) -> Defaults:
    """Check the defaults file's text: a mapping with `plugins` (one plugin name per role, every
    role), `without_gt` (a list of initial parser names, may be empty) and `executor` (a name).
    ConfigError naming `where` and the problem otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or set(data) != set(KEYS):
        raise ConfigError(f"{where}: expected exactly the keys 'plugins', 'without_gt' and 'executor'")
    plugins = data["plugins"]
    roles = [r.value for r in Role]
    if not isinstance(plugins, dict) or set(plugins) != set(roles):
        raise ConfigError(f"{where}: 'plugins' must name one plugin for each role ({', '.join(roles)})")
    without_gt = data["without_gt"]
    if not isinstance(without_gt, list):
        raise ConfigError(f"{where}: without_gt must be a list of initial parser names, got {without_gt!r}")
    named = [*plugins.items(), *(("without_gt", v) for v in without_gt), ("executor", data["executor"])]
    for key, value in named:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {key} must be a plugin name, got {value!r}")
    return Defaults({Role(k): plugins[k] for k in roles}, data["executor"], tuple(without_gt))


@lru_cache(maxsize=1)
def load_defaults() -> Defaults:
    """The packaged defaults (read once per process)."""
    return parse_defaults(resources.files("splatrefine.configs").joinpath(DEFAULTS_FILE).read_text())


def default_plugins() -> dict[Role, str]:
    """The plugin each role uses when neither the config file nor --plugin chooses one (a copy)."""
    return dict(load_defaults().plugins)


def parsers_without_gt() -> tuple[str, ...]:
    """The initial parsers, in order of preference, for a capture without GT labels when nobody
    chose one (the default initial parser may need GT): refine takes the first that is installed
    and needs no setting (`ComponentSpec.requires`), and otherwise says how to get each."""
    return load_defaults().without_gt


def default_executor() -> str:
    """The executor `splatrefine batch` and the experiment use without --executor."""
    return load_defaults().executor
