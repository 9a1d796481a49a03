"""`splatrefine experiment OUT`: the extreme-pose experiment in one command.

    splatrefine experiment runs/extreme_pose -c examples/extreme_pose/cpu.yaml
    splatrefine experiment runs/extreme_pose --resume          # continue after an interruption

A plain click.Command (`experiment_cmd`) that the plugin adds through
`splatrefine_register_commands`. torch and the plugins are imported inside the body only. A
SplatrefineError prints one line (plus a hint) and exits 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from splatrefine.commands.user_errors import exit_2_on_user_error


@click.command("experiment")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="Experiment YAML (default: the reduced CPU scale of examples/extreme_pose/cpu.yaml).")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override one setting, e.g. data.resolution=64 or targets.0.baseline.steps=50.")
@click.option("--resume", is_flag=True, help="Continue an interrupted experiment in OUT.")
@click.option("--overwrite", is_flag=True, help="Delete the experiment in OUT and start again.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to compute.")
@click.option("--seed", type=click.IntRange(0), default=None, help="The experiment's seed (same as --set seed=N).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def experiment_cmd(out, config_path, sets, resume, overwrite, device, seed, quiet) -> None:
    """Train a parser on frontal views, refine multiview captures with it, fine-tune it on the
    refined labels and compare both on held-out identities per pose bucket. Writes OUT/results.md."""
    if seed is not None:
        sets = (*sets, f"seed={seed}")
    with exit_2_on_user_error():
        from splatrefine.types import POSE_BUCKETS

        from .plan import run_experiment

        def stage(name: str) -> None:
            if not quiet:
                click.echo(f"[experiment] {name}", err=True)

        res = run_experiment(out, config_path=config_path, sets=sets, resume=resume, overwrite=overwrite,
                             device=device, quiet=quiet, on_stage=stage)
    for note in res.get("notes", []):
        click.echo(f"Note: {note}")
    for name, t in res["targets"].items():
        for v, r in t["parsers"].items():
            s = r["scores"]
            cells = ", ".join(f"{b} {100 * s[b]['miou']:.1f}" for b in POSE_BUCKETS if b in s)
            click.echo(f"{name}/{v}: mIoU {cells}")
        for key, tag in (("goals", ""), ("goals_corrected", " after the simulated clean-up")):
            if key in t:
                g = t[key]
                click.echo(f"{name}{tag}: extreme {100 * g['extreme_gain']:+.1f} points "
                           f"({'met' if g['extreme_met'] else 'not met'}), frontal {100 * g['frontal_change']:+.1f} "
                           f"points ({'met' if g['frontal_met'] else 'not met'})")
    click.echo(f"Results: {Path(out) / 'results.md'}")
