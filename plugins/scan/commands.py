"""`splatrefine render-scan`: a capture folder rendered from a textured head scan (OBJ + texture); the
scan plugin's command (registered through `splatrefine_register_commands`).

    splatrefine render-scan james.obj -o caps/james                       # facescape-like rig, 256 px
    splatrefine render-scan head.obj -o caps/head --texture head.png --frontal 0,0,1 --up 0,1,0
    splatrefine render-scan james.obj -o caps/james_gt --pseudo-gt        # + MediaPipe pseudo-GT labels
    splatrefine render-scan james.obj -o caps/james_gts --pseudo-gt --strict   # hair/ears/neck scored as not-face

Everything is checked (output folder, mesh, texture, head frame) before the first file is written;
the folder is written to a temporary sibling and renamed into place. See docs/real_scans.md.
Cheap to import: click and the synthetic plugin's rig names; the scan modules are imported when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from splatrefine.commands.user_errors import user_errors
from splatrefine.errors import SplatrefineError
from splatrefine.plugins.synthetic.rigs import RIGS


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing output unless --overwrite (and never a file), and a place that cannot be
    written; creates nothing (the first folder is made when the capture is written)."""
    import os

    if out.exists() and not out.is_dir():
        raise SplatrefineError(f"{out}: exists and is not a folder", "Give a new folder for the capture.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SplatrefineError(f"{out}: already exists and is not empty", "Pass --overwrite to replace it.")
    base = out.absolute().parent
    while not base.exists():
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise SplatrefineError(f"{base}: cannot write there", "Give an output folder you can write to.")


@click.command("render-scan")
@click.argument("scan", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Capture folder to write.")
@click.option("--texture", type=click.Path(path_type=Path), help="Texture image (default: the .mtl's map_Kd).")
@click.option("--rig", default="facescape-like", show_default=True,
              type=click.Choice(RIGS))
@click.option("--resolution", default=256, show_default=True, type=click.IntRange(16, 4096))
@click.option("--frontal", metavar="X,Y,Z", help="Direction the face looks, in the mesh's coordinates (default: found with MediaPipe).")
@click.option("--up", metavar="X,Y,Z", help="Up direction in the mesh's coordinates (default: +y, or found with --frontal unset).")
@click.option("--supersample", default=3, show_default=True, type=click.IntRange(1, 4), help="RGB samples per pixel side.")
@click.option("--shading", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Strength of the Lambert term over the texture (0 = flat texture).")
@click.option("--pseudo-gt", "pseudo_gt", is_flag=True,
              help="Add MediaPipe pseudo-GT labels (lifted from the near-frontal views, docs/real_scans.md).")
@click.option("--strict", is_flag=True,
              help="With --pseudo-gt: what the parser's sources agree is none of its classes (hair, ears, neck) is 0, not 255.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a json summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@user_errors
def render_scan_cmd(scan, out, texture, rig, resolution, frontal, up, supersample, shading, pseudo_gt, strict,
                    overwrite, as_json, quiet) -> None:
    """Render the textured mesh SCAN (.obj with UVs) on a camera rig into a capture folder."""
    from splatrefine.progress import set_progress_enabled

    from .capture import render_scan_capture, scan_block, write_scan_capture
    from .frame import find_frame, parse_direction
    from .mesh import read_mesh

    set_progress_enabled(not quiet)
    if strict and not pseudo_gt:
        raise SplatrefineError("--strict only applies to --pseudo-gt labels", "Add --pseudo-gt, or drop --strict.")
    check_output(out, overwrite)
    frontal_v, up_v = parse_direction(frontal, "--frontal"), parse_direction(up, "--up")
    if pseudo_gt:
        from splatrefine.plugins.mediapipe_parser.parser import import_face_mesh

        import_face_mesh()  # a missing mediapipe is reported before any work
    mesh = read_mesh(scan, texture)
    frame = find_frame(mesh, frontal_v, up_v)
    capture, render = render_scan_capture(mesh, frame, rig, resolution, supersample, shading)
    block = scan_block(mesh, frame, rig, resolution, supersample, shading)
    summary = {"capture": str(out), "views": len(capture.views), "frame": frame.to_json()}
    if pseudo_gt:
        from .pseudo_gt import mediapipe_labeller, pseudo_gt_capture

        capture, info = pseudo_gt_capture(capture, render.face_ids, mesh.faces, mediapipe_labeller(), strict=strict)
        block["pseudo_gt"] = info
        summary["pseudo_gt"] = info
    write_scan_capture(capture, render.depth, render.face_ids, mesh.faces, out, block)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{out}: {len(capture.views)} views of {mesh.path.name} ({frame.method} head frame)")
