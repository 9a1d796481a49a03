"""`splatrefine refine`: resolve the config, open the capture (or a plugin's demo capture), run the engine.

Everything that can be checked before a run folder is written is checked first, so bad input
never leaves a half-made run behind.
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources
from pathlib import Path

from .config import load_yaml, resolve
from .devices import resolve_device
from .engine import Engine, is_run_dir, prepare_run_dir
from .errors import SplatrefineError
from .metrics import scored_against
from .progress import set_progress_enabled
from .roles import Role
from .run_layout import RunLayout
from .types import GT_NAME, POSE_BUCKETS

log = logging.getLogger(__name__)

DEMO_RUN_DIR = Path("runs/demo")


def demo_config_text() -> str:
    """examples/configs/demo.yaml, shipped inside the package as splatrefine.configs."""
    return resources.files("splatrefine.configs").joinpath("demo.yaml").read_text()


def run_refine(*, capture: Path | None, demo: bool, config_path: Path | None, plugin_args: list[str],
               set_args: list[str], output: Path | None, resume: bool, overwrite: bool,
               device: str | None, quiet: bool, registry=None, seed: int | None = None,
               on_note=None) -> dict:
    """Check everything (config, device, capture, components, output folder), then run the engine.

    A start that fails before its first stage finishes removes the folder it made. `on_note`
    gets notes that matter before the run (the parser chosen, what a resume recomputes)."""
    import yaml

    from .registry import Registry

    set_progress_enabled(not quiet)
    registry = registry or Registry()
    if demo and not registry.manager.hook.splatrefine_write_demo_capture.get_hookimpls():
        raise SplatrefineError("refine --demo needs a plugin that writes the demo capture (the builtin synthetic "
                               "plugin, splatrefine.plugins.synthetic), and none is loaded")
    if config_path is not None:
        data = load_yaml(config_path)
    elif demo:
        data = yaml.safe_load(demo_config_text())
    else:
        data = {}
    if device is not None:
        data["device"] = device
    if seed is not None:
        data["seed"] = seed
    source = str(config_path or ("demo.yaml" if demo else "config"))
    config = resolve(registry, data, plugin_args, set_args, source=source)
    resolve_device(config.device)
    notes: list[str] = []

    if demo:
        run_dir = Path(output) if output else DEMO_RUN_DIR
        capture_dir = RunLayout(run_dir).demo_capture
        if resume and is_run_dir(run_dir) and capture_dir.is_dir():
            cap = registry.open_capture(str(_written_capture(capture_dir)))
            engine = _engine(registry, config, cap, run_dir)
            fresh = prepare_run_dir(run_dir, resume=True, overwrite=False)
        else:
            fresh = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
            try:
                written = registry.manager.hook.splatrefine_write_demo_capture(folder=capture_dir, seed=config.seed)
                if written is None:
                    raise SplatrefineError("refine --demo: no loaded plugin wrote a demo capture")
                cap = registry.open_capture(str(written))
                engine = _engine(registry, config, cap, run_dir)
            except BaseException:
                if fresh:
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
    else:
        cap = registry.open_capture(str(capture))
        if len(cap) < 2:
            raise SplatrefineError(f"{capture}: has {len(cap)} view(s); refinement needs at least 2")
        if Role.INITIAL_PARSER in config.defaulted and not cap.has_labels:
            default = config.plugins[Role.INITIAL_PARSER]
            name = default_real_parser(registry, capture, default)
            config = resolve(registry, data, [*plugin_args, f"initial_parser={name}"], set_args, source=source)
            notes.append(f"{capture} has no GT labels, so the initial parser is '{name}' (the {default} one needs GT)")
        run_dir = Path(output) if output else Path("runs") / Path(str(capture).rstrip("/")).name
        engine = _engine(registry, config, cap, run_dir)
        fresh = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)

    for note in notes:
        (on_note or engine.notes.append)(note)
    try:
        summary = engine.run(on_note=on_note)
    except KeyboardInterrupt:
        if _discard_failed_start(engine, fresh):
            raise SplatrefineError(f"interrupted before the first stage finished; {run_dir} was removed") from None
        raise SplatrefineError(f"interrupted; {run_dir} keeps every finished stage",
                               "Rerun the same command with --resume to continue.") from None
    except OSError as exc:  # full disk, permissions: every file is written atomically, so the run can resume
        if _discard_failed_start(engine, fresh):
            raise SplatrefineError(f"{exc.filename or run_dir}: cannot write ({exc.strerror})",
                                   "Free space or fix permissions, then run again.") from None
        raise SplatrefineError(f"{exc.filename or run_dir}: cannot write ({exc.strerror})",
                               "Free space or fix permissions, then rerun with --resume.") from None
    except BaseException:
        _discard_failed_start(engine, fresh)
        raise
    summary["line"] = summary_line(summary.get("metrics"))
    return summary


def _written_capture(capture_dir: Path) -> Path:
    """The demo capture an earlier start wrote into `capture_dir`: its one folder (the synthetic
    plugin's id_000), or `capture_dir` itself when it holds no single folder."""
    folders = [p for p in sorted(capture_dir.iterdir()) if p.is_dir()] if capture_dir.is_dir() else []
    return folders[0] if len(folders) == 1 else capture_dir


def _engine(registry, config, cap, run_dir: Path) -> Engine:
    """The engine with its components built: a missing dependency or a checkpoint that does not
    load stops the run here, before its folder is touched."""
    engine = Engine(registry, config, cap, run_dir)
    engine.build_components()
    return engine


def _discard_failed_start(engine: Engine, fresh: bool) -> bool:
    """Remove the run folder of a start that failed before any stage finished (when this run
    made the folder); -> whether it did."""
    if fresh and not engine.state.completed and engine.run_dir.is_dir():
        shutil.rmtree(engine.run_dir, ignore_errors=True)
        return True
    return False


def default_real_parser(registry, capture: Path | None, default: str | None = None) -> str:
    """The initial parser for a capture without GT labels when nobody chose one: the first of the
    packaged defaults' `without_gt` list that is registered, installed and needs no setting (what
    each spec's `requires` declares). SplatrefineError when there is none: one line saying how to
    choose one or install one, from the same declarations; `default` is the initial parser that
    needs GT (the packaged default when None)."""
    from .defaults import default_plugins, parsers_without_gt

    role = Role.INITIAL_PARSER
    default = default or default_plugins()[role]
    specs = [registry.get(role, n) for n in parsers_without_gt() if n in registry.names(role)]
    for spec in specs:
        if not spec.requires.missing() and not spec.requires.settings:
            return spec.name
    choose, install = [], []
    for spec in specs:
        usage, missing = spec.requires.usage(role, spec.name), spec.requires.missing()
        if not missing:
            choose.append(usage)
        else:
            how = f" ({spec.requires.install})" if spec.requires.install else ""
            install.append(f"install {', '.join(missing)}{how} and use {usage}")
    ways = ([f"choose one with {' or '.join(choose)}"] if choose else []) + install
    if not ways:
        ways = [f"choose one with --plugin {role.value}=NAME ('splatrefine plugins list --role {role.value}')"]
    raise SplatrefineError(f"{capture}: has no GT labels, so the default initial parser '{default}' cannot run, "
                           f"and no real parser is installed: {', or '.join(ways)}")


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
    name = scored_against(metrics)
    return line if name == GT_NAME else f"{line} (against {name})"
