"""The five roles a component can play, the protocol each must satisfy, and ComponentSpec.

Nothing here imports torch: listing plugins stays cheap. Tensor shapes are given as [B,3,H,W] etc.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .types import Cameras, Capture, Renders
    from .schema import LabelSchema


class Role(str, enum.Enum):
    INITIAL_PARSER = "initial_parser"
    REPRESENTATION = "representation"
    VIEW_SAMPLER = "view_sampler"
    LABEL_AGGREGATOR = "label_aggregator"
    TARGET_PARSER = "target_parser"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ComponentContext:
    """What a factory gets besides its config: where to compute, the run's seed, and the one way
    to build a component by name (`component`), for whoever builds components (the engine, the
    parser commands, training, a component that wraps another: cleanup after argmax).

    `registry` (a `splatrefine.registry.Registry`; `Registry().context()` makes a context for
    library use) is where names are looked up. `build(role, name, params)` is kept for plugins
    written against it: by default `component` with a params mapping; a test may pass its own,
    which then receives every params build.
    """

    device: str = "cpu"
    seed: int = 0
    build: Callable[[Role, str, dict], Any] | None = None
    registry: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.build is None:
            object.__setattr__(self, "build", self._from_registry)

    def component(self, role: Role | str, name: str, settings: Any = None, *, where: str | None = None) -> Any:
        """The component `name` of `role`, built with this context (its device, seed, registry).

        `settings` is an instance of the component's config class (already validated), or a
        mapping of params (None: the defaults) validated against it first; a bad one is a
        ConfigError naming `where` (default "ROLE 'NAME'"). An unknown name is a PluginError with
        a "did you mean"; so is a context with no registry.
        """
        role = Role(role)
        if (settings is None or isinstance(settings, Mapping)) and where is None:
            return self.build(role, name, dict(settings or {}))
        return self._from_registry(role, name, settings, where=where)

    def _from_registry(self, role: Role, name: str, settings: Any, where: str | None = None) -> Any:
        if self.registry is None:
            from .errors import PluginError

            raise PluginError(f"cannot build {Role(role).value} '{name}': this ComponentContext has no registry",
                              "Build components through a registry: Registry().context(...).component(...).")
        return self.registry.build(role, name, settings, self, where=where)


@dataclass(frozen=True)
class Requirements:
    """What a component needs before it is of use, declared by its plugin so that the core can tell
    a user how to get it without naming any plugin (refine's hint for a capture without GT):

    modules   importable modules it needs beyond splatrefine's own dependencies: ("mediapipe",)
    install   the one shell command that installs them
    settings  KEY=VALUE settings a user must give for useful output: ("checkpoint=PATH",)
    note      what those values are: "a BiSeNet checkpoint"
    """

    modules: tuple[str, ...] = ()
    install: str = ""
    settings: tuple[str, ...] = ()
    note: str = ""

    def missing(self) -> list[str]:
        """The declared modules that cannot be imported here (found without importing them)."""
        import importlib.util

        def found(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                return False

        return [m for m in self.modules if not found(m)]

    def usage(self, role: Role | str, name: str) -> str:
        """How to choose the component on the command line: '--plugin ROLE=NAME [--set ROLE.KEY=VALUE]...
        [(note)]'."""
        role = Role(role).value
        words = [f"--plugin {role}={name}", *(f"--set {role}.{s}" for s in self.settings)]
        return " ".join(words) + (f" ({self.note})" if self.settings and self.note else "")


@dataclass(frozen=True)
class ComponentSpec:
    """One named implementation of a role.

    factory(config, context) -> component; `config` is an instance of the frozen dataclass
    `config_cls` (the only schema of the component's settings: defaults and help text).
    Import heavy libraries (torch models, numba kernels, gsplat, OpenCV) inside the factory.
    `requires` declares what must be installed (and how) or set before it is of use.
    """

    role: Role
    name: str
    factory: Callable[[Any, ComponentContext], Any]
    config_cls: type
    summary: str
    requires: Requirements = Requirements()


@runtime_checkable
class InitialParser(Protocol):
    """Predicts noisy per-view class probabilities for a whole capture."""

    def parse(self, capture: Capture) -> np.ndarray:
        """-> float32 [V,K,H,W] class probabilities (K = capture.schema.num_classes), each pixel
        summing to 1. A pixel the parser has no opinion on is uniform over classes."""


@runtime_checkable
class NotingParser(Protocol):
    """An optional capability of an initial parser: things the user should know after `parse`
    (views without a face, labels it could not find), shown by `splatrefine parse`."""

    notes: list[str]


@runtime_checkable
class TargetParser(Protocol):
    """A trainable 2D parser (bisenet, smp, ...). Trainable parsers also serve as initial parsers
    through `parse`."""

    schema: LabelSchema  # the label schema its outputs use (evaluate refuses a dataset in another)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images float [B,3,H,W] in 0..1 -> probabilities float [B,K,H,W]."""

    def predict_numpy(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [B,H,W,3] -> probabilities float32 [B,K,H,W] (`splatrefine evaluate`)."""

    def parse(self, capture: Capture) -> np.ndarray:
        """As InitialParser.parse: a trainable parser is an initial parser too."""

    def fit(self, dataset: Any, workdir: Path | None = None, resume: bool = False, **overrides: Any) -> dict:
        """Train on a labelled dataset (splatrefine.datasets.LabelledDataset); `workdir` holds
        checkpoints, `resume` continues from the one there, `overrides` replace training settings
        for this fit (epochs, steps, lr, ...). Returns a history dict (losses per step)."""

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


@runtime_checkable
class Representation(Protocol):
    """A 3D model fitted to the images and the initial labels, renderable at any camera."""

    def fit(self, capture: Capture, initial_probs: np.ndarray, workdir: Path | None = None) -> Any:
        """initial_probs [V,K,H,W] float32, or float16 read-only and memory-mapped as the engine
        passes initial/probs.npy (read it a few views at a time, or np.asarray(..., np.float32));
        `workdir` holds checkpoints so a fit can resume. Returns the fitted model."""

    def render(self, model: Any, cameras: Cameras) -> Renders: ...

    def save(self, model: Any, path: Path) -> None: ...

    def load(self, path: Path) -> Any: ...


@runtime_checkable
class PlyExporter(Protocol):
    """An optional capability of a representation: write the fitted model as a 3DGS PLY (the
    engine's fit stage writes model/splats.ply with it; `correct` rewrites it)."""

    def export_ply(self, model: Any, path: Path) -> None: ...


@runtime_checkable
class Relabelable(Protocol):
    """An optional capability of a representation: refit only its class head to label maps, the
    geometry and colour untouched (`splatrefine correct` propagates hand corrections with it)."""

    def relabel(self, model: Any, cameras: Cameras, labels: np.ndarray, weights: np.ndarray) -> Any:
        """labels uint8 [C,H,W] at `cameras` (255 = no opinion), weights float [C] per view ->
        the model with a new class head."""


@runtime_checkable
class RelabelerProvider(Protocol):
    """An optional capability of a representation whose class-head update lives in a helper
    object rather than in the representation itself: `splatrefine correct` asks it for a
    Relabelable configured with the command's options."""

    def relabeler(self, method: str, prior: float, seed: int) -> Relabelable:
        """method: how the head is updated ("vote", "fit", as the representation documents);
        prior: how strongly every view anchors what it sees to the current head; seed."""


@runtime_checkable
class ViewSampler(Protocol):
    def sample(self, capture: Capture) -> Cameras:
        """-> cameras to render, with yaw/pitch (degrees relative to the subject) filled in."""


@runtime_checkable
class LabelAggregator(Protocol):
    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """-> (labels uint8 [C,H,W] with 255 = ignore, confidence float32 [C,H,W] in 0..1)."""


@runtime_checkable
class ObservingAggregator(Protocol):
    """An optional capability of a label aggregator: before any `aggregate` call, the engine renders
    every input view and passes it to `observe` with `renders.observed` (the initial parser's
    probabilities there) set, so the aggregator can carry labels from the input views to any camera
    through the rendered geometry."""

    def observe(self, renders: Renders) -> None:
        """One chunk of input views (called once per chunk, in capture order)."""


PROTOCOLS: dict[Role, type] = {  # what every component of a role must have
    Role.INITIAL_PARSER: InitialParser,
    Role.REPRESENTATION: Representation,
    Role.VIEW_SAMPLER: ViewSampler,
    Role.LABEL_AGGREGATOR: LabelAggregator,
    Role.TARGET_PARSER: TargetParser,
}

# the optional capabilities a component of a role may declare (the core checks them with isinstance)
CAPABILITIES: dict[Role, tuple[type, ...]] = {
    Role.INITIAL_PARSER: (NotingParser,),
    Role.REPRESENTATION: (PlyExporter, Relabelable, RelabelerProvider),
    Role.VIEW_SAMPLER: (),
    Role.LABEL_AGGREGATOR: (ObservingAggregator,),
    Role.TARGET_PARSER: (),
}


def protocol_problems(component: Any, protocol: type) -> list[str]:
    """What keeps `component` from satisfying `protocol`, beyond isinstance (which sees only that
    the names exist): each protocol method's parameters must be accepted by the component's method
    under the same names (or by its *args/**kwargs). [] when it conforms."""
    import inspect

    problems = []
    members = [n for n in getattr(protocol, "__protocol_attrs__", None) or _protocol_attrs(protocol)]
    for name in sorted(members):
        if not hasattr(component, name):
            problems.append(f"no {name}")
            continue
        want = getattr(protocol, name, None)
        if not callable(want):
            continue
        have = inspect.signature(getattr(component, name))
        params = list(have.parameters.values())
        var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        by_name = {p.name: p for p in params}
        for p in list(inspect.signature(want).parameters.values())[1:]:  # skip self
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                if p.kind is p.VAR_KEYWORD and not var_kw:
                    problems.append(f"{name}() takes no **{p.name}")
                continue
            got = by_name.get(p.name)
            if got is None or got.kind in (got.VAR_POSITIONAL, got.VAR_KEYWORD):
                if not (var_kw and (var_pos or p.kind is p.KEYWORD_ONLY or p.default is not p.empty)):
                    problems.append(f"{name}() has no parameter '{p.name}'")
            elif p.default is not p.empty and got.default is got.empty:
                problems.append(f"{name}() requires '{p.name}', which the protocol makes optional")
        extra = [q.name for q in params if q.name not in inspect.signature(want).parameters
                 and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
        if extra:
            problems.append(f"{name}() requires {', '.join(extra)}, which the core never passes")
    return problems


def _protocol_attrs(protocol: type) -> set[str]:
    """The members a Protocol declares (Python < 3.12 has no __protocol_attrs__)."""
    names: set[str] = set()
    for base in protocol.__mro__[:-1]:
        if base.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in vars(base) if not n.startswith("_")}
        names |= set(getattr(base, "__annotations__", {}))
    return names
