"""Every hook splatrefine calls. Plugins implement them with `splatrefine.hookimpl`.

Each hook is documented in docs/hooks.md too (a test checks that every hook here appears there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from .executors import ExecutorSpec
    from .roles import ComponentSpec
    from .types import Capture

PROJECT = "splatrefine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def splatrefine_register_components(register: Callable[[ComponentSpec], None]) -> None:
    """Offer this plugin's components.

    Called once per plugin manager, right after plugins are loaded. Call `register(spec)` once per
    component with a `splatrefine.roles.ComponentSpec(role, name, factory, config_cls, summary)`.
    Returns nothing. Registering a (role, name) another plugin already registered is an error that
    names both plugins. Do not import heavy libraries here: import them inside the factory.
    """


@hookspec(firstresult=True)
def splatrefine_open_capture(path: str) -> Capture | None:
    """Read a capture from `path` (a folder or a file), if this plugin understands it.

    Called when a command is given a capture path. Return a `splatrefine.types.Capture`, or None
    when the path is not in this plugin's format. Stops at the first non-None result. Raise
    `splatrefine.errors.CaptureError` when the path IS in this format but broken (missing image,
    bad camera), with a message naming the file and the problem.
    """


@hookspec
def splatrefine_register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """Offer this plugin's executors (what runs jobs: `splatrefine batch`'s refines, an
    experiment's stages).

    Called once when a `splatrefine.executors.ExecutorRegistry` is built. Call `register(spec)` once
    per executor with a `splatrefine.executors.ExecutorSpec(name, factory, config_cls, summary)`;
    `factory(config)` returns an object with the `splatrefine.executors.Executor` protocol. Returns
    nothing. A name another plugin already registered is an error naming both plugins. Import the
    executor's libraries (ray, submitit) inside the factory.
    """


@hookspec
def splatrefine_register_commands(cli: click.Group) -> None:
    """Add this plugin's commands to the `splatrefine` command line (`splatrefine mycommand ...`).

    Called once per process, the first time the CLI needs its list of commands (`--help`) or is
    given a name that is not a core command; never for core commands alone, so they start without
    loading plugins. `cli` is a `click.Group`: use `@cli.command()` or `cli.add_command(cmd)`.
    Returns nothing. A name a core command already has is ignored (with a warning). Import heavy
    libraries inside the command, not here.
    """


@hookspec(firstresult=True)
def splatrefine_write_demo_capture(folder: Path, seed: int) -> Path | None:
    """Write the capture `splatrefine refine --demo` refines.

    Called once per fresh demo run with `folder` (the run's `capture/` folder, new or empty) and
    the run's seed. Write a capture inside `folder` and return its path, or None to leave it to
    another plugin. Stops at the first non-None result. The builtin is the synthetic plugin's
    (one procedural head with exact GT); without any, `refine --demo` says so in one line.
    """
