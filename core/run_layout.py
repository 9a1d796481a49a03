"""Where everything lives in a run folder: one name for each path (README: "A run folder holds ...").

`RunLayout(run_dir).initial_probs` is a path; the constants are the names themselves, for code that
needs a name rather than a path (stage outputs, a merged manifest's relative paths). Only names:
no I/O here, so every layer can import it.

    RUN/run.json            RECORD          what made the run (run_record.py)
    RUN/config.yaml         CONFIG          the resolved config
    RUN/stages.json         STAGES_FILE     finished stages, their timings and keys
    RUN/initial/            INITIAL         probs.npy (float16 [V,K,H,W]) + labels/NAME.png
    RUN/model/              MODEL           model.pt, splats.ply, history.json (+ fit checkpoints)
    RUN/sample/             SAMPLE          cameras.json (input and novel cameras)
    RUN/refined/            REFINED         a dataset: images/, labels/, confidence/, manifest.json,
                                            cameras.json (nerfstudio); itself a capture
    RUN/gt/                 GT              GT labels at the scored views
    RUN/metrics.json        METRICS
    RUN/report.html         REPORT          + report/ (REPORT_DIR: its pictures)
    RUN/capture/            DEMO_CAPTURE    the synthesized capture of `refine --demo`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD = "run.json"
CONFIG = "config.yaml"
STAGES_FILE = "stages.json"
INITIAL = "initial"
MODEL = "model"
SAMPLE = "sample"
REFINED = "refined"
GT = "gt"
METRICS = "metrics.json"
REPORT = "report.html"
REPORT_DIR = "report"
DEMO_CAPTURE = "capture"

# inside the folders above
PROBS = "probs.npy"
LABELS = "labels"
MANIFEST = "manifest.json"  # a dataset's manifest (refined/, a fleet's OUT/, the experiment's datasets)
CAMERAS = "cameras.json"
MODEL_FILE = "model.pt"
SPLATS = "splats.ply"
HISTORY = "history.json"


def label_png(name: str) -> str:
    """The file name of view NAME's label PNG in a labels folder."""
    return f"{name}.png"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def record(self) -> Path:
        return self.root / RECORD

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def stages(self) -> Path:
        return self.root / STAGES_FILE

    @property
    def initial(self) -> Path:
        return self.root / INITIAL

    @property
    def initial_probs(self) -> Path:
        return self.initial / PROBS

    @property
    def initial_labels(self) -> Path:
        return self.initial / LABELS

    def initial_label(self, name: str) -> Path:
        return self.initial_labels / label_png(name)

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def model_file(self) -> Path:
        return self.model / MODEL_FILE

    @property
    def splats(self) -> Path:
        return self.model / SPLATS

    @property
    def history(self) -> Path:
        return self.model / HISTORY

    @property
    def sample(self) -> Path:
        return self.root / SAMPLE

    @property
    def sample_cameras(self) -> Path:
        return self.sample / CAMERAS

    @property
    def refined(self) -> Path:
        return self.root / REFINED

    @property
    def refined_manifest(self) -> Path:
        return self.refined / MANIFEST

    @property
    def refined_cameras(self) -> Path:
        return self.refined / CAMERAS

    @property
    def gt(self) -> Path:
        return self.root / GT

    def gt_label(self, name: str) -> Path:
        return self.gt / label_png(name)

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def demo_capture(self) -> Path:
        return self.root / DEMO_CAPTURE
