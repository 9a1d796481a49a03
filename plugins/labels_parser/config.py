"""Settings of the `labels` initial parser (cheap to import: the registry lists them)."""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = ("auto", "png", "npy")
MISSING = ("error", "uniform")


@dataclass(frozen=True)
class LabelsConfig:
    path: str | None = field(default=None, metadata={
        "help": "folder of per-view maps named after the views: VIEW.png (label map) or VIEW.npy / "
                "VIEW.npz (float probabilities [K,H,W])"})
    format: str = field(default="auto", metadata={
        "help": "auto: whichever is there; png: label PNGs only; npy: probability arrays only (.npy, .npz)",
        "choices": FORMATS})
    smoothing: float = field(default=0.1, metadata={
        "help": "a hard label keeps 1 - smoothing on its class and spreads smoothing evenly over the "
                "others (0.1: 0.9 on the label); probability arrays are used as given",
        "min": 0.0, "max": 0.9})
    missing: str = field(default="error", metadata={
        "help": "a view without a map: 'error' stops before any work, 'uniform' leaves it without "
                "an opinion (uniform probabilities)",
        "choices": MISSING})
    schema: str | None = field(default=None, metadata={
        "help": "schema of the maps when it is not the capture's (e.g. lapa); mapped through the schema table"})
