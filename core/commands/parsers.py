"""`splatrefine parse`, `train` and `evaluate`: 2D parsers on folders of images.

    splatrefine parse IMAGES_DIR -o OUT --plugin initial_parser=bisenet --set initial_parser.checkpoint=79999_iter.pth
    splatrefine train RUN/refined CAPTURE -o PARSER --plugin target_parser=bisenet --epochs 20
    splatrefine evaluate PARSER DATASET -o EVAL

The commands are plain click.Command objects (`parse_cmd`, `train_cmd`, `evaluate_cmd`) that the
main group adds. torch is imported inside the command bodies only, so `splatrefine --help` stays
cheap. A SplatrefineError prints one line (plus an optional hint) and exits 2.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import SplatrefineError
from ..roles import NotingParser, Role, TargetParser
from .user_errors import user_errors as _user_errors  # the CLI's one handler (also imported from here)

log = logging.getLogger(__name__)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _registry():
    from ..registry import Registry

    return Registry()


def default_parser() -> str:
    """The trainable parser parse/train/evaluate build without --plugin: the target_parser of the
    packaged defaults.yaml (bisenet)."""
    from ..defaults import default_plugins

    return default_plugins()[Role.TARGET_PARSER]


def resolve_parser(registry: Any, role: Role, plugin_args: Sequence[str] = (), set_args: Sequence[str] = (),
                   config_data: dict | None = None, source: str = "config",
                   extra: dict | None = None) -> tuple[str, Any]:
    """(plugin name, validated settings) of the one parser these commands build, read by the run
    config's reader (`splatrefine.config.resolve_components`, restricted to `role`; the default
    is `default_parser()`)."""
    from ..config import resolve_components

    got = resolve_components(registry, config_data, plugin_args, set_args, roles=(role,),
                             defaults={role: default_parser()}, extra={role: extra or {}}, source=source)
    return got.plugins[role], got.settings[role]


def _build(registry: Any, role: Role, name: str, settings: Any, device: str, seed: int) -> Any:
    from ..roles import ComponentContext

    return ComponentContext(device=device, seed=seed, registry=registry).component(role, name, settings)


def _load_config(path: Path | None) -> dict:
    from ..config import load_yaml

    return load_yaml(path) if path else {}


def _image_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise SplatrefineError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise SplatrefineError(f"{folder}: expected a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    if not files and (folder / "images").is_dir():
        return _image_files(folder / "images")
    if not files:
        raise SplatrefineError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return files


def labels_from_probs(probs: Any) -> Any:
    """float [V,K,H,W] -> uint8 [V,H,W] argmax; pixels with a uniform distribution (the parser had
    no opinion) become 255."""
    from ..class_maps import argmax_classes

    labels, top = argmax_classes(probs)
    labels[top <= 1.0 / probs.shape[1] + 1e-6] = 255
    return labels


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise SplatrefineError(f"{out}: already exists and is not empty", "Pass --overwrite to replace it.")


def _quiet(quiet: bool) -> None:
    from ..progress import set_progress_enabled

    set_progress_enabled(not quiet)


_device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                              show_default=True, help="Where to compute.")
_seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation and training.")
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


# parse -----------------------------------------------------------------------------------------
@click.command("parse")
@click.argument("images_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Folder for the label PNGs.")
@click.option("--plugin", "plugins", multiple=True, metavar="[initial_parser=]NAME",
              help="The parser (default: the packaged defaults' target_parser).")
@click.option("--set", "sets", multiple=True, metavar="initial_parser.KEY=VALUE", help="Override one setting.")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), help="YAML config (its initial_parser block).")
@click.option("--schema", default="celebamask-hq", show_default=True, help="Label schema of the written PNGs.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@_device_option
@_seed_option
@_quiet_option
@_user_errors
def parse_cmd(images_dir, out, plugins, sets, config_path, schema, overwrite, device, seed, quiet) -> None:
    """Label every image in IMAGES_DIR with a parser; writes OUT/NAME.png (palettized, 255 = ignore)."""
    import numpy as np

    from ..io.atomic import atomic_dir
    from ..io.labels import read_image, write_labels
    from ..schema import get_schema
    from ..types import Camera, Capture, View

    _quiet(quiet)
    files = _image_files(images_dir)
    _check_out(out, overwrite)
    schema_obj = get_schema(schema)
    registry = _registry()
    name, settings = resolve_parser(registry, Role.INITIAL_PARSER, plugins, sets, _load_config(config_path),
                                    str(config_path or "config"))
    from ..training import ParserOptions

    if isinstance(settings, ParserOptions) and not settings.checkpoint:
        click.echo(f"Note: {name} has no checkpoint: its weights are random "
                   f"(--set initial_parser.checkpoint=PATH).", err=True)
    parser = _build(registry, Role.INITIAL_PARSER, name, settings, device, seed)
    images = {}
    for f in files:
        try:
            images[f] = read_image(f)
        except SplatrefineError as exc:
            raise SplatrefineError(exc.message) from None
    by_size: dict[tuple, list[Path]] = {}
    for f, img in images.items():
        by_size.setdefault(img.shape, []).append(f)
    with atomic_dir(out) as tmp:
        for shape, group in by_size.items():
            h, w = shape[:2]
            K = np.array([[max(h, w), 0.0, w / 2], [0.0, max(h, w), h / 2], [0.0, 0.0, 1.0]])
            views = [View(f.stem, Camera(np.eye(4), K, w, h), images[f]) for f in group]
            probs = parser.parse(Capture(views, schema=schema_obj, source=str(images_dir)))
            labels = labels_from_probs(probs)
            for f, lab in zip(group, labels):
                write_labels(tmp / f"{f.stem}.png", lab, schema_obj)
    for note in parser.notes if isinstance(parser, NotingParser) else []:
        click.echo(f"Note: {note}")
    click.echo(f"Wrote {len(files)} label maps to {out}")


# train -----------------------------------------------------------------------------------------
@click.command("train")
@click.argument("datasets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Parser folder to write.")
@click.option("--plugin", "plugins", multiple=True, metavar="[target_parser=]NAME",
              help="The parser (default: the packaged defaults' target_parser).")
@click.option("--set", "sets", multiple=True, metavar="target_parser.KEY=VALUE", help="Override one setting.")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), help="YAML config (its target_parser block).")
@click.option("--epochs", type=click.IntRange(1), help="Passes over the data (overrides the setting).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (overrides epochs).")
@click.option("--schema", default="celebamask-hq", show_default=True, help="Label schema of the datasets.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in OUT.train/.")
@click.option("--overwrite", is_flag=True, help="Replace an existing parser folder.")
@_device_option
@_seed_option
@_quiet_option
@_user_errors
def train_cmd(datasets, out, plugins, sets, config_path, epochs, steps, schema, resume, overwrite, device, seed,
              quiet) -> None:
    """Train (fine-tune) a target parser on DATASET folders (a run's refined/, images/ + labels/, or a
    capture with labels; several are mixed). Writes OUT/parser.json + weights.pt + history.json."""
    import shutil

    from ..datasets import LabelledDataset
    from ..io.atomic import write_text
    from ..schema import get_schema

    _quiet(quiet)
    _check_out(out, overwrite)
    dataset = LabelledDataset(list(datasets), schema=get_schema(schema))
    dataset.load_all()  # validate every file before any training
    registry = _registry()
    name, settings = resolve_parser(registry, Role.TARGET_PARSER, plugins, sets, _load_config(config_path),
                                    str(config_path or "config"))
    parser = _build(registry, Role.TARGET_PARSER, name, settings, device, seed)
    overrides = {k: v for k, v in (("epochs", epochs), ("steps", steps)) if v is not None}
    workdir = out.with_name(out.name + ".train")
    workdir.mkdir(parents=True, exist_ok=True)
    history = parser.fit(dataset, workdir=workdir, resume=resume, **overrides)
    parser.save(out)
    write_text(out / "history.json", json.dumps(history))
    shutil.rmtree(workdir, ignore_errors=True)
    loss = history["loss"]
    click.echo(f"Trained {name} on {len(dataset)} images for {len(loss)} steps "
               f"(loss {loss[0]:.3f} -> {loss[-1]:.3f}); saved {out}")


# evaluate --------------------------------------------------------------------------------------
@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("datasets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Folder for metrics.json etc.")
@click.option("--labels", "labels_dir", help="Label folder inside each dataset to score against (e.g. gt), default labels/.")
@click.option("--plugin", "plugins", multiple=True, metavar="[target_parser=]NAME",
              help="For a bare state-dict CHECKPOINT: the parser it belongs to (default: the packaged defaults' target_parser).")
@click.option("--set", "sets", multiple=True, metavar="target_parser.KEY=VALUE", help="For a bare state-dict CHECKPOINT.")
@click.option("--schema", default="celebamask-hq", show_default=True, help="Label schema of the datasets.")
@click.option("--sheet", "sheet_rows", type=click.IntRange(0), default=12, show_default=True,
              help="Rows (image | GT | prediction) in the contact sheet.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@_device_option
@_quiet_option
@_user_errors
def evaluate_cmd(checkpoint, datasets, out, labels_dir, plugins, sets, schema, sheet_rows, overwrite, device,
                 quiet) -> None:
    """Score a parser (a folder written by 'train', or a state-dict file) on DATASET folders:
    OUT/metrics.json, OUT/predictions/NAME.png, OUT/contact_sheet.png and a per-pose-bucket table."""
    import numpy as np

    from ..datasets import LabelledDataset
    from ..io.atomic import atomic_dir
    from ..io.labels import write_labels
    from ..schema import get_schema
    from ..training import load_parser

    _quiet(quiet)
    _check_out(out, overwrite)
    schema_obj = get_schema(schema)
    dataset = LabelledDataset(list(datasets), schema=schema_obj, labels_dir=labels_dir)
    registry = _registry()
    if checkpoint.is_dir():
        if plugins or sets:
            raise SplatrefineError(f"{checkpoint}: a parser folder already names its plugin and settings; "
                                   "--plugin/--set are for a bare state-dict file")
        parser = load_parser(registry, checkpoint, device=device)
    else:
        if not checkpoint.is_file():
            raise SplatrefineError(f"{checkpoint}: no such parser folder or checkpoint file")
        name, settings = resolve_parser(registry, Role.TARGET_PARSER, plugins, sets,
                                        extra={"checkpoint": str(checkpoint)})
        parser = _build(registry, Role.TARGET_PARSER, name, settings, device, 0)
    if not isinstance(parser, TargetParser):
        raise SplatrefineError(f"{checkpoint}: evaluate needs a trainable parser (a target_parser: with predict)")
    if parser.schema.name != schema_obj.name:
        raise SplatrefineError(f"{checkpoint}: the parser predicts schema '{parser.schema.name}' "
                               f"but the dataset is read as '{schema_obj.name}'", "Pass --schema.")

    images, gts = dataset.load_all()
    preds = []
    for img in images:
        preds.append(labels_from_probs(parser.predict_numpy(img[None]))[0])
    size = gts[0].shape
    preds_c = np.stack([_resize_nearest(p, size) for p in preds])
    gts_c = np.stack([_resize_nearest(g, size) for g in gts])
    from ..metrics import evaluate_labels

    metrics = evaluate_labels(preds_c, gts_c, dataset.yaw, schema_obj)
    metrics["n_images"] = len(images)
    metrics["checkpoint"] = str(checkpoint)
    metrics["datasets"] = [str(d) for d in datasets]
    with atomic_dir(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        for name_, p in zip(dataset.names, preds):
            write_labels(tmp / "predictions" / f"{name_}.png", p, schema_obj)
        if sheet_rows:
            from ..io.labels import write_image

            write_image(tmp / "contact_sheet.png", contact_sheet(images, gts, preds, schema_obj, dataset.yaw, sheet_rows))
    for line in metrics_table(metrics):
        click.echo(line)
    click.echo(f"Wrote {out / 'metrics.json'}")


def _resize_nearest(labels: Any, size: tuple[int, int]) -> Any:
    import numpy as np

    if labels.shape == tuple(size):
        return labels
    h, w = labels.shape
    ys = (np.arange(size[0]) + 0.5) * h / size[0]
    xs = (np.arange(size[1]) + 0.5) * w / size[1]
    return labels[ys.astype(int)[:, None], xs.astype(int)[None, :]]


def metrics_table(metrics: dict) -> list[str]:
    """Per-bucket table lines: bucket, views, mIoU, mean F1, pixel accuracy ('-' where undefined)."""

    def num(v: Any, width: int) -> str:
        return f"{v:>{width}.3f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"

    rows = [f"{'bucket':<9}{'views':>6}{'mIoU':>8}{'mean F1':>9}{'pix acc':>9}"]
    buckets = metrics.get("buckets") or {}
    for b in ("frontal", "mid", "extreme"):
        if b in buckets:
            m = buckets[b]
            rows.append(f"{b:<9}{m.get('n_views', 0):>6}{num(m.get('miou'), 8)}{num(m.get('mean_f1'), 9)}"
                        f"{num(m.get('pixel_acc'), 9)}")
    rows.append(f"{'all':<9}{metrics.get('n_images', ''):>6}{num(metrics.get('miou'), 8)}"
                f"{num(metrics.get('mean_f1'), 9)}{num(metrics.get('pixel_acc'), 9)}")
    return rows


def contact_sheet(images: Sequence[Any], gts: Sequence[Any], preds: Sequence[Any], schema: Any, yaw: Any,
                  rows: int, cell: int = 128) -> Any:
    """uint8 [rows*cell, 3*cell, 3]: image | GT | prediction per row, samples spread over yaw."""
    import numpy as np
    from PIL import Image

    order = np.argsort(yaw) if yaw is not None else np.arange(len(images))
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(rows, len(order))).round().astype(int))]

    def fit(arr: Any, nearest: bool) -> Any:
        im = Image.fromarray(arr)
        return np.asarray(im.resize((cell, cell), Image.NEAREST if nearest else Image.BILINEAR))

    lines = [np.concatenate([fit(images[i], False), fit(schema.colorize(gts[i]), True),
                             fit(schema.colorize(preds[i]), True)], axis=1) for i in pick]
    return np.concatenate(lines, axis=0)
