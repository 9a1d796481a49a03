"""Where everything lives in an experiment folder (one name for each path), and how a folder is
prepared: an OUT holding results needs --overwrite or --resume, a folder that is not an
experiment is never deleted.

    OUT/experiment.json              MARKER       format, wall seconds, finished stages and their timings
    OUT/experiment.yaml              CONFIG_FILE  the validated config
    OUT/data/SPLIT/id_NNNN/                       synthetic captures (SPLIT: train, test, frontal-only)
    OUT/data/frontal/                             the frontal GT dataset (manifest.json)
    OUT/refine/KEY/id_NNNN/                       one refine run folder per train identity
    OUT/corrected/KEY/id_NNNN/                    a copy of it after the simulated clean-up (`corrected`)
    OUT/datasets/KEY-KIND/                        a fine-tune dataset (KIND: refined, corrected or raw)
    OUT/parsers/TARGET/VARIANT/                   parser/ (a parser folder) + history.json
    OUT/eval/TARGET/VARIANT.json|.npy             test metrics and predictions
    OUT/figures/  OUT/results.json  OUT/results.md
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from splatrefine.errors import SplatrefineError

from .config import ExperimentConfig, config_from_dict

MARKER = "experiment.json"  # {"format": ..., "wall_seconds": ..., "completed": [...], "timings": {stage: wall s}}
CONFIG_FILE = "experiment.yaml"
FORMAT = "splatrefine-experiment"


@dataclass(frozen=True)
class ExperimentLayout:
    """The paths of the experiment folder `out`."""

    out: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    @property
    def marker(self) -> Path:
        return self.out / MARKER

    @property
    def config(self) -> Path:
        return self.out / CONFIG_FILE

    def capture_dir(self, split: str, identity: int) -> Path:
        return self.out / "data" / split / f"id_{identity:04d}"

    @property
    def frontal_dir(self) -> Path:
        return self.out / "data" / "frontal"

    def run_dir(self, key: str, identity: int) -> Path:
        return self.out / "refine" / key / f"id_{identity:04d}"

    def corrected_dir(self, key: str, identity: int) -> Path:
        """A copy of refine run KEY/id after the `corrected` variant's simulated clean-up."""
        return self.out / "corrected" / key / f"id_{identity:04d}"

    def dataset_dir(self, key: str, kind: str) -> Path:
        return self.out / "datasets" / f"{key}-{kind}"

    def parser_dir(self, target: str, variant: str) -> Path:
        return self.out / "parsers" / target / variant

    def eval_file(self, target: str, variant: str, suffix: str) -> Path:
        """OUT/eval/TARGET/VARIANT.json (metrics) or .npy (predictions)."""
        return self.out / "eval" / target / f"{variant}{suffix}"

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    @property
    def results_json(self) -> Path:
        return self.out / "results.json"

    @property
    def results_md(self) -> Path:
        return self.out / "results.md"


def is_experiment_dir(path: Path) -> bool:
    return ExperimentLayout(path).marker.is_file()


def prepare_out(out: Path, config: ExperimentConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber: an OUT with results needs --overwrite or --resume; a non-empty folder
    that is not an experiment is never deleted. On resume, the stored config must match (but for
    `workers`: how many processes share the work does not change results)."""
    import yaml

    out = Path(out)
    if resume and overwrite:
        raise SplatrefineError("--resume and --overwrite exclude each other", "Give one of them.")
    if out.exists() and not out.is_dir():
        raise SplatrefineError(f"{out}: exists and is not a folder", "Choose another experiment folder.")
    if out.is_dir() and any(out.iterdir()):
        if not is_experiment_dir(out):
            raise SplatrefineError(f"{out}: exists, is not empty and is not an experiment folder; refusing to use it",
                                   "Choose a new or empty folder.")
        if overwrite:
            shutil.rmtree(out)
        elif resume:
            stored = ExperimentLayout(out).config
            if stored.is_file():
                old = config_from_dict(yaml.safe_load(stored.read_text()), str(stored))
                if old.results_dict() != config.results_dict():
                    raise SplatrefineError(
                        f"{out}: was started with another configuration ({stored}); --resume would mix results",
                        "Resume with the same --config/--set, or use --overwrite to start again.")
            return
        else:
            raise SplatrefineError(f"{out}: already holds an experiment",
                                   "Add --resume to continue it, --overwrite to start again, or choose another folder.")
    from splatrefine.io.atomic import ensure_writable_dir

    ensure_writable_dir(out, "Choose a writable folder.")
