"""`splatrefine export` and `splatrefine correct`: the hand clean-up round trip through CVAT.

    splatrefine export RUN --format cvat-mask -o worst.zip --worst 10
    splatrefine correct RUN edited.zip

Plain click.Command objects the main group adds; torch is imported only inside `correct`.
"""

from __future__ import annotations

from pathlib import Path

import click

from .user_errors import user_errors as _user_errors


def _registry():
    from ..registry import Registry

    return Registry()

FORMATS = ("cvat-mask",)


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="cvat-mask", show_default=True,
              help="CVAT 'Segmentation mask 1.1' (labelmap.txt, SegmentationClass/, JPEGImages/).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="OUT.zip (one zip file) or a new folder.")
@click.option("--source", type=click.Choice(["all", "input", "novel"]), default="all", show_default=True,
              help="Which refined views.")
@click.option("--below", type=float, default=None, help="Only views whose confidence is below this (0..1).")
@click.option("--worst", type=int, default=None, help="Only the N least confident views.")
@_user_errors
def export_cmd(run, fmt, output, source, below, worst) -> None:
    """Write RUN's refined views (least confident first) for hand correction in an annotation tool."""
    from ..corrections.export import export_cvat_mask
    from ..corrections.runs import open_run

    sel = export_cvat_mask(open_run(run), output, source=source, below=below, worst=worst)
    click.echo(f"{output}: {len(sel.names)} view(s) in {fmt} layout, least confident first "
               f"({sel.names[0]} {sel.confidence[sel.names[0]]:.3f} ... "
               f"{sel.names[-1]} {sel.confidence[sel.names[-1]]:.3f})")


@click.command("correct")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("edited", type=click.Path(path_type=Path))
@click.option("--weight", type=float, default=100.0, show_default=True,
              help="Weight of a corrected view against 1 for every other view.")
@click.option("--prior", type=float, default=1.0, show_default=True,
              help="How strongly every view keeps what it sees as it was (only weight / prior matters).")
@click.option("--others", type=click.Choice(["refined", "initial", "none"]), default="refined", show_default=True,
              help="Low-weight labels for the views nobody corrected.")
@click.option("--method", type=click.Choice(["fit", "vote"]), default="fit", show_default=True,
              help="fit: gradient steps on the class head; vote: closed-form per-Gaussian vote (faster; for "
                   "labels that are wrong only at their edges).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to compute.")
@_user_errors
def correct_cmd(run, edited, weight, prior, others, method, device) -> None:
    """Take hand-corrected masks (EDITED: a zip or folder in Segmentation mask 1.1) as ground truth
    and propagate them through RUN's 3D model to every other view."""
    from ..corrections.edited import read_edited
    from ..corrections.propagate import CorrectOptions, correct_run
    from ..corrections.runs import open_run
    from ..report import write_report

    r = open_run(run)
    out = correct_run(r, read_edited(edited, r), _registry(),
                      CorrectOptions(weight=weight, prior=prior, others=others, method=method, device=device))
    if not out.corrected:
        click.echo(f"{edited}: {out.summary['note']}")
        return
    write_report(r.path)
    counts = {k: sum(v == k for v in out.status.values()) for k in ("corrected", "propagated", "unchanged")}
    click.echo(f"corrected {len(out.corrected)} view(s) ({', '.join(out.corrected)}); "
               f"{counts['propagated']} propagated, {counts['unchanged']} unchanged; "
               f"{out.seconds['relabel'] + out.seconds['render']:.1f} s")
    gt = out.summary.get("gt_uncorrected")
    if gt:
        parts = [f"{b} {100 * gt['before'][b]:.1f} -> {100 * gt['after'][b]:.1f}"
                 for b in ("frontal", "mid", "extreme") if gt["before"].get(b) is not None]
        click.echo("mIoU of the views not corrected: " + ", ".join(parts))
