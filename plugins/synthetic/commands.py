"""`splatrefine synth`: the synthetic plugin's command (registered through
`splatrefine_register_commands`). Cheap to import: click and the rig names (numpy); the writer
runs only in the command."""

from __future__ import annotations

from pathlib import Path

import click

from splatrefine.errors import SplatrefineError

from .rigs import RIGS


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--identities", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rig", default="facescape-like", show_default=True,
              type=click.Choice(RIGS))
@click.option("--resolution", default=256, show_default=True, type=click.IntRange(16, 4096))
@click.option("--overwrite", is_flag=True, help="Replace captures already in OUT_DIR.")
def synth(out_dir, identities, seed, rig, resolution, overwrite) -> None:
    """Write procedural head captures with exact GT labels to OUT_DIR (one folder per identity)."""
    from .rigs import write_synthetic

    existing = [out_dir / f"id_{i:03d}" for i in range(identities) if (out_dir / f"id_{i:03d}").exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SplatrefineError(f"{existing[0]}: already exists{more}",
                               "Add --overwrite to replace it, or choose another OUT_DIR.")

    paths = write_synthetic(out_dir, identities=identities, seed=seed, rig=rig, resolution=resolution)
    for p in paths:
        click.echo(str(p))
