"""Adds `splatrefine render-scan` (a capture folder rendered from a textured head scan). Cheap to
import: the command module imports the scan modules inside the command."""

from __future__ import annotations

from splatrefine import hookimpl


@hookimpl
def splatrefine_register_commands(cli):
    from .commands import render_scan_cmd

    cli.add_command(render_scan_cmd)
