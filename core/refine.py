"""`splatrefine refine`: resolve the config, open (or synthesize) the capture, run the engine.

Everything that can be checked before a run folder is written is checked first, so bad input
never leaves a half-made run behind.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from .config import load_yaml, resolve
from .engine import Engine, is_run_dir, prepare_run_dir
from .errors import SplatrefineError
from .progress import set_progress_enabled
from .types import POSE_BUCKETS

log = logging.getLogger(__name__)

DEMO_RUN_DIR = Path("runs/demo")


def demo_config_text() -> str:
    """examples/configs/demo.yaml, shipped inside the package as splatrefine.configs."""
    return resources.files("splatrefine.configs").joinpath("demo.yaml").read_text()


def run_refine(*, capture: Path | None, demo: bool, config_path: Path | None, plugin_args: list[str],
               set_args: list[str], output: Path | None, resume: bool, overwrite: bool,
               device: str | None, quiet: bool, registry=None) -> dict:
    import yaml

    from .registry import Registry

    set_progress_enabled(not quiet)
    registry = registry or Registry()
    if config_path is not None:
        data = load_yaml(config_path)
    elif demo:
        data = yaml.safe_load(demo_config_text())
    else:
        data = {}
    if device is not None:
        data["device"] = device
    config = resolve(registry, data, plugin_args, set_args, source=str(config_path or ("demo.yaml" if demo else "config")))

    if demo:
        run_dir = Path(output) if output else DEMO_RUN_DIR
        capture_dir = run_dir / "capture"
        if resume and is_run_dir(run_dir) and capture_dir.is_dir():
            prepare_run_dir(run_dir, resume=True, overwrite=False)
        else:
            prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
            from .plugins.synthetic import write_synthetic

            write_synthetic(capture_dir, identities=1, seed=config.seed, rig="facescape-like", resolution=256)
        cap = registry.open_capture(str(capture_dir / "id_000"))
    else:
        cap = registry.open_capture(str(capture))
        if len(cap) < 2:
            raise SplatrefineError(f"{capture}: has {len(cap)} view(s); refinement needs at least 2")
        run_dir = Path(output) if output else Path("runs") / Path(str(capture).rstrip("/")).name
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)

    engine = Engine(registry, config, cap, run_dir)
    try:
        summary = engine.run()
    except KeyboardInterrupt:
        raise SplatrefineError(f"interrupted; {run_dir} keeps every finished stage",
                               "Rerun the same command with --resume to continue.") from None
    except OSError as exc:  # full disk, permissions: every file is written atomically, so the run can resume
        raise SplatrefineError(f"{exc.filename or run_dir}: cannot write ({exc.strerror})",
                               "Free space or fix permissions, then rerun with --resume.") from None
    summary["line"] = summary_line(summary.get("metrics"))
    return summary


def summary_line(metrics: dict | None) -> str:
    """'mIoU initial -> refined: frontal 0.88 -> 0.95, ...' from metrics.json."""
    if not metrics:
        return ""
    parts = []
    for b in POSE_BUCKETS:
        ini = metrics["initial"]["buckets"].get(b)
        ref = metrics["refined_input"]["buckets"].get(b)
        if ini and ref:
            parts.append(f"{b} {ini['miou']:.3f} -> {ref['miou']:.3f}")
    line = "mIoU initial -> refined (input views): " + ", ".join(parts)
    novel = metrics.get("refined_novel")
    if novel:
        line += f"; novel views mIoU {novel['miou']:.3f}"
    return line
