"""The `splatrefine` command line. Heavy libraries are imported inside commands, never here.

Usage errors (SplatrefineError) print one or two lines and exit 2, with no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .commands.user_errors import exit_2_on_user_error
from .errors import SplatrefineError


class _Group(click.Group):
    """Turns SplatrefineError anywhere below into 'Error: ...' and exit code 2, and adds the
    plugins' commands (`splatrefine_register_commands`) the first time they are needed: listing
    the commands (`--help`) or a name no core command has. Core commands never load plugins."""

    _plugin_commands: dict[str, click.Command] | None = None

    def invoke(self, ctx: click.Context):
        with exit_2_on_user_error():
            return super().invoke(ctx)

    def plugin_commands(self) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            self._plugin_commands = _load_plugin_commands(self)
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self.plugin_commands().get(cmd_name)


def _load_plugin_commands(core: click.Group) -> dict[str, click.Command]:
    """Every command the loaded plugins add (a fresh plugin manager; called once per process).

    Each plugin's hook runs on its own: a third-party plugin that raises, or that takes a name a
    core command or an earlier plugin has, loses those commands (with a warning) and nothing else."""
    import logging

    from .registry import BUILTIN_PLUGINS, make_plugin_manager

    log = logging.getLogger(__name__)
    pm = make_plugin_manager().pm
    plugins = [impl.plugin for impl in pm.hook.splatrefine_register_commands.get_hookimpls()]
    found: dict[str, click.Command] = {}
    for plugin in plugins:  # in registration order: builtins first, so theirs keep their names
        name = pm.get_name(plugin)
        collector = click.Group(core.name)
        call = pm.subset_hook_caller("splatrefine_register_commands", [p for p in plugins if p is not plugin])
        try:
            call(cli=collector)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the CLI
            if name in BUILTIN_PLUGINS:
                raise
            log.warning("plugin %s: its commands are not added: %s: %s", name, type(exc).__name__, exc)
            continue
        for cmd_name, cmd in collector.commands.items():
            if cmd_name in core.commands or cmd_name in found:
                log.warning("plugin %s: its command '%s' is ignored: another command has that name", name, cmd_name)
            else:
                found[cmd_name] = cmd
    return found


def _registry():
    from .registry import Registry

    return Registry()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="splatrefine")
def main() -> None:
    """Refine noisy multiview face-parsing labels with dual 3D Gaussian Splatting."""


# refine ---------------------------------------------------------------------------------------
@main.command()
@click.argument("capture", required=False, type=click.Path(path_type=Path))
@click.option("--demo", is_flag=True, help="Synthesize a head capture and refine it with the demo config.")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), help="YAML config.")
@click.option("--plugin", "plugins", multiple=True, metavar="ROLE=NAME", help="Choose a plugin for a role.")
@click.option("--set", "sets", multiple=True, metavar="ROLE.KEY=VALUE", help="Override one setting.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Run folder (default runs/<capture>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in the output folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to compute.")
@click.option("--seed", type=click.IntRange(0), default=None, help="The run's random seed (default: the config's, 0).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def refine(capture, demo, config_path, plugins, sets, output, resume, overwrite, device, seed, quiet) -> None:
    """Refine the labels of CAPTURE (a capture folder, transforms.json, COLMAP model or FaceScape folder)."""
    from .refine import run_refine

    if demo and capture is not None:
        raise SplatrefineError("give either CAPTURE or --demo, not both")
    if not demo and capture is None:
        raise SplatrefineError("no capture given", "Give a capture path, or run 'splatrefine refine --demo'.")
    summary = run_refine(capture=capture, demo=demo, config_path=config_path, plugin_args=list(plugins),
                         set_args=list(sets), output=output, resume=resume, overwrite=overwrite,
                         device=device, quiet=quiet, registry=_registry(), seed=seed,
                         on_note=lambda note: click.echo(f"Note: {note}", err=True))
    for note in summary["notes"]:
        click.echo(f"Note: {note}")
    click.echo(f"Report: {summary['report']}")
    if summary.get("line"):
        click.echo(summary["line"])


# capture --------------------------------------------------------------------------------------
@main.group()
def capture() -> None:
    """Inspect captures."""


@capture.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def capture_info(path, as_json) -> None:
    """Show what a reader sees in PATH: views, sizes, intrinsics and world-to-camera matrices."""
    from .io.describe import describe_capture
    from .types import GT_NAME

    info = describe_capture(_registry().open_capture(str(path)))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    name = info["labels_name"]
    labels = "no" if not info["has_labels"] else "yes" if name == GT_NAME else f"yes ({name})"
    click.echo(f"{info['source']}: {info['num_views']} views, schema {info['schema']}, "
               f"labels: {labels}, masks: {'yes' if info['has_masks'] else 'no'}")
    for v in info["views"]:
        K = v["K"]
        click.echo(f"  {v['name']:<24} {v['width']}x{v['height']}  fx={K[0][0]:.1f} fy={K[1][1]:.1f} "
                   f"cx={K[0][2]:.1f} cy={K[1][2]:.1f}")


# plugins --------------------------------------------------------------------------------------
@main.group()
def plugins() -> None:
    """List and describe installed plugins."""


def _role_option():
    from .roles import Role

    return click.option("--role", type=click.Choice([r.value for r in Role]), help="Only this role.")


@plugins.command("list")
@_role_option()
@click.option("--json", "as_json", is_flag=True)
def plugins_list(role, as_json) -> None:
    """Every component by role, and any plugin that failed to load."""
    from .roles import Role

    reg = _registry()
    rows = [{"role": s.role.value, "name": s.name, "summary": s.summary, "source": reg.source(s.role, s.name)}
            for s in reg.specs(Role(role) if role else None)]
    failed = [{"name": f.name, "source": f.source, "error": f.error} for f in reg.failures]
    from .executors import ExecutorRegistry

    ex = ExecutorRegistry(reg.manager)
    executors = [] if role else [{"name": s.name, "summary": s.summary, "source": ex.source(s.name)} for s in ex.specs()]
    if as_json:
        click.echo(json.dumps({"components": rows, "executors": executors, "failed": failed}, indent=2))
        return
    current = None
    for r in [*rows, *({"role": "executor", **e} for e in executors)]:
        if r["role"] != current:
            current = r["role"]
            click.echo(f"{current}:")
        click.echo(f"  {r['name']:<18} {r['summary']}")
    for f in failed:
        click.echo(f"failed to load: {f['source']}: {f['error']}")


@plugins.command("show")
@click.argument("what", metavar="ROLE/NAME")
def plugins_show(what) -> None:
    """Settings of one component, with defaults and help."""
    from .config import describe_settings
    from .config import _role as parse_role

    if "/" not in what:
        raise SplatrefineError(f"'{what}': expected ROLE/NAME, e.g. view_sampler/orbit")
    role_name, name = what.split("/", 1)
    reg = _registry()
    spec = reg.get(parse_role(role_name, "plugins show"), name)
    click.echo(f"{spec.role.value}/{spec.name}: {spec.summary}  (from {reg.source(spec.role, spec.name)})")
    for row in describe_settings(spec.config_cls):
        click.echo(f"  {row['name']}: {row['type']} = {row['default']!r}")
        if row["help"]:
            click.echo(f"      {row['help']}")


# config ---------------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """Resolved configuration."""


@config_group.command("show")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path))
@click.option("--plugin", "plugins", multiple=True, metavar="ROLE=NAME")
@click.option("--set", "sets", multiple=True, metavar="ROLE.KEY=VALUE")
def config_show(config_path, plugins, sets) -> None:
    """Print the configuration a run would use (defaults < YAML < --plugin < --set)."""
    from .config import load_yaml, resolve

    data = load_yaml(config_path) if config_path else {}
    cfg = resolve(_registry(), data, list(plugins), list(sets), source=str(config_path or "config"))
    click.echo(cfg.dump(), nl=False)


# parsers and the other commands live in their own modules (torch is imported inside the commands);
# `synth`, `render-scan` and `experiment` come from plugins (splatrefine_register_commands)
from .commands.corrections import correct_cmd, export_cmd  # noqa: E402
from .commands.batch import batch_cmd  # noqa: E402
from .commands.parsers import evaluate_cmd, parse_cmd, train_cmd  # noqa: E402

for _cmd in (parse_cmd, train_cmd, evaluate_cmd, batch_cmd, export_cmd, correct_cmd):
    main.add_command(_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
