"""Registers the `simulated` initial parser, reads synthetic capture folders with their GT renderer,
adds the `synth` command and writes the capture of `refine --demo`.

Cheap to import: numpy only (scipy and numba are imported when a component runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from splatrefine import hookimpl
from splatrefine.roles import ComponentContext, ComponentSpec, Role
from splatrefine.types import Capture

from .simulated import PROTOCOLS, NoiseSettings, simulate


@dataclass(frozen=True)
class SimulatedParserConfig:
    protocol: str = field(default="pose", metadata={
        "help": "noise model: 'pose' (a frontal-trained parser: clean at yaw 0, worse with |yaw|), "
                "'pixel-flip' or 'region-flip' (Semantic-NeRF label noise at `ratio`)",
        "choices": PROTOCOLS})
    severity: float = field(default=1.0, metadata={
        "help": "'pose': scales every error (1.0 = calibrated, see docs/benchmark.md; 0 = nearly clean)",
        "min": 0.0, "max": 5.0})
    frontal: float = field(default=0.15, metadata={
        "help": "'pose': difficulty at yaw 0 relative to yaw 90", "min": 0.0, "max": 1.0})
    power: float = field(default=2.0, metadata={
        "help": "'pose': difficulty grows as (|yaw| / 90) ** power", "min": 0.1, "max": 10.0})
    ratio: float = field(default=0.1, metadata={
        "help": "'pixel-flip' / 'region-flip': fraction of pixels / regions given a wrong class",
        "min": 0.0, "max": 1.0})
    seed: int = field(default=0, metadata={"help": "noise seed (combined with the run seed)", "min": 0})


class SimulatedParser:
    """A SIMULATED parser: corrupts the capture's GT labels (see splatrefine.plugins.synthetic.simulated)."""

    def __init__(self, config: SimulatedParserConfig, context: ComponentContext | None = None):
        self.config = config
        self.run_seed = context.seed if context is not None else 0
        self.settings = NoiseSettings(protocol=config.protocol, severity=config.severity, frontal=config.frontal,
                                      power=config.power, ratio=config.ratio)

    def parse(self, capture: Capture) -> np.ndarray:
        """-> float32 [V,K,H,W] probabilities; raises CaptureError when the capture has no GT labels."""
        return simulate(capture, self.settings, seed=self.config.seed, run_seed=self.run_seed)


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.INITIAL_PARSER, "simulated", SimulatedParser, SimulatedParserConfig,
                           summary="SIMULATION of a frontal-trained parser: GT labels + seeded pose-dependent noise"))


@hookimpl
def splatrefine_register_commands(cli):
    from .commands import synth

    cli.add_command(synth)


@hookimpl
def splatrefine_write_demo_capture(folder, seed):
    """The capture `refine --demo` refines: one procedural head (identity seeds from `seed`) on
    the FaceScape-like rig at 256 px, written to FOLDER/id_000."""
    from .rigs import write_synthetic

    return write_synthetic(folder, identities=1, seed=seed, rig="facescape-like", resolution=256)[0]


@hookimpl(tryfirst=True)
def splatrefine_open_capture(path: str) -> Capture | None:
    """A capture folder whose capture.json has a "synthetic" block: read it and attach `render_gt`
    (exact labels at any camera). None for anything else."""
    from splatrefine.errors import CaptureError
    from splatrefine.io.capture_folder import is_capture_folder, read_capture_folder, read_capture_json_extra

    from .rigs import GENERATOR, GENERATOR_VERSION, render_gt

    if not is_capture_folder(path):
        return None
    try:
        data = read_capture_json_extra(path)
    except CaptureError:
        return None  # malformed: the builtin reader reports it
    block = data.get("synthetic") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        return None
    where = f"{path}: capture.json 'synthetic' block"
    if block.get("generator") != GENERATOR or block.get("version") != GENERATOR_VERSION:
        raise CaptureError(f"{where} was written by {block.get('generator')!r} version {block.get('version')!r}; "
                           f"this splatrefine reads {GENERATOR} version {GENERATOR_VERSION}",
                           "Regenerate the capture with 'splatrefine synth'.")
    seed = block.get("identity_seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CaptureError(f"{where}: identity_seed must be a non-negative integer, got {seed!r}")
    capture = read_capture_folder(path)
    capture.render_gt = partial(render_gt, seed)
    return capture
