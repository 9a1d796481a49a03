"""`splatrefine batch SOURCE -o OUT`: refine a fleet of captures on an executor (splatrefine.fleet).

    splatrefine batch caps/ -o runs/fleet -c examples/configs/demo.yaml
    splatrefine batch facescape/ -o runs/fs --executor ray --address head:6379 --cpus-per-task 2

Exit codes: 0 every capture refined, 1 some failed (listed first, and in OUT/fleet.json), 2 bad
input (nothing run, nothing written).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("batch")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Fleet folder: fleet.json, fleet.html, manifest.json, runs/<capture>/.")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), help="YAML config for every refine.")
@click.option("--plugin", "plugins", multiple=True, metavar="ROLE=NAME", help="Choose a plugin for a role.")
@click.option("--set", "sets", multiple=True, metavar="ROLE.KEY=VALUE",
              help="Override one setting (executor.KEY=VALUE sets the executor's).")
@click.option("--seed", type=int, default=None, help="Seed of every refine.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to compute.")
@click.option("--executor", default=None, metavar="NAME", help="What runs the refines: local (default), ray, ...")
@click.option("--workers", default=None, metavar="N|auto", help="local: worker processes (default auto).")
@click.option("--address", default=None, metavar="HOST:PORT", help="ray: an existing cluster (default: a local one).")
@click.option("--cpus-per-task", type=float, default=None, help="ray: CPUs reserved per capture.")
@click.option("--gpus-per-task", type=float, default=None, help="ray: GPUs reserved per capture.")
@click.option("--max-retries", type=int, default=None, help="Runs of a capture again after its worker died.")
@click.option("--resume", is_flag=True, help="Continue the fleet in OUT (rerunning without it does the same).")
@click.option("--overwrite", is_flag=True, help="Delete the fleet in OUT and start again.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def batch_cmd(source, out, config_path, plugins, sets, seed, device, executor, workers, address, cpus_per_task,
              gpus_per_task, max_retries, resume, overwrite, quiet) -> None:
    """Refine every capture of SOURCE (a folder of captures, a FaceScape tree ID/EXPRESSION/, or a
    text file of capture paths) into OUT, one run folder per capture. Rerunning skips finished
    captures and resumes interrupted ones."""
    from ..fleet.driver import BatchOptions, run_batch, split_executor_sets

    sets, params = split_executor_sets(list(sets))
    for key, value in (("workers", workers), ("address", address), ("cpus_per_task", cpus_per_task),
                       ("gpus_per_task", gpus_per_task), ("max_retries", max_retries)):
        if value is not None:
            params[key] = int(value) if key == "workers" and str(value).isdigit() else value
    res = run_batch(BatchOptions(source=source, out=out, config_path=config_path, plugin_args=list(plugins),
                                 set_args=sets, seed=seed, device=device, quiet=quiet, executor=executor,
                                 executor_params=params, resume=resume, overwrite=overwrite))
    failed = [r for r in res["captures"] if r["status"] != "done"]
    for r in failed:
        click.echo(f"{r['status'].upper()} {r['name']}: {r.get('error', '')}".rstrip(": "))
    c = res["counts"]
    click.echo(f"{c.get('done', 0)} of {len(res['captures'])} captures refined, {c.get('failed', 0)} failed "
               f"({res['wall_seconds']:.1f} s on {res['executor']}); {out / 'fleet.html'}")
    if failed:
        raise click.exceptions.Exit(1)
