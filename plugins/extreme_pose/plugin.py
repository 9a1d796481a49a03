"""Adds `splatrefine experiment`. Cheap to import: the command module imports torch inside the command."""

from __future__ import annotations

from splatrefine import hookimpl


@hookimpl
def splatrefine_register_commands(cli):
    from .command import experiment_cmd

    cli.add_command(experiment_cmd)
