"""Test helpers (an opt-in pytest plugin: `pytest_plugins = ["splatrefine.testing"]`).

- `tiny_capture(...)`: a labelled sphere "head" seen by a ring of cameras, with exact GT at any
  camera, in a few milliseconds.
- fake components, one per role, registered by `FakePlugin` under names starting with "fake-".
  They are for engine and CLI tests only and are never registered as builtins.
- fixtures: `registry` (fresh, builtins only), `fake_registry` (fresh + fakes), `tiny` (a capture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hookspecs import hookimpl
from .poses import direction, look_at, yaw_pitch
from .roles import ComponentContext, ComponentSpec, Role
from .schema import CELEBAMASK_HQ, LabelSchema
from .types import Cameras, Capture, GroundTruth, Renders, Subject, View

SUBJECT = Subject(center=np.zeros(3), frontal=np.array([0.0, 0.0, 1.0]), up=np.array([0.0, -1.0, 0.0]))
_RADIUS = 1.0


def ring_cameras(yaws, pitch: float = 0.0, size: int = 32, distance: float = 4.0, prefix: str = "cam") -> Cameras:
    """Cameras at `distance` looking at the origin, at the given yaws (degrees) and one pitch."""
    f = size * 1.2
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    viewmats = np.stack([look_at(distance * direction(y, pitch, SUBJECT), SUBJECT.center, SUBJECT.up) for y in yaws])
    cams = Cameras(viewmats, np.repeat(K[None], len(viewmats), axis=0), size, size,
                   tuple(f"{prefix}_{i:03d}" for i in range(len(viewmats))))
    yaw, pit = yaw_pitch(cams.centers, SUBJECT)
    return Cameras(cams.viewmats, cams.Ks, size, size, cams.names, yaw, pit)


def render_sphere(cameras: Cameras, schema: LabelSchema = CELEBAMASK_HQ) -> tuple[np.ndarray, np.ndarray]:
    """Exact (rgb uint8 [C,H,W,3], labels uint8 [C,H,W]) of the labelled unit sphere."""
    H, W = cameras.height, cameras.width
    v, u = np.mgrid[0:H, 0:W] + 0.5
    rgbs, labels = [], []
    for i in range(len(cameras)):
        K, M = cameras.Ks[i], cameras.viewmats[i]
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        R, t = M[:3, :3], M[:3, 3]
        origin = -R.T @ t
        d = d_cam @ R
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        b = d @ origin
        c = origin @ origin - _RADIUS**2
        disc = b * b - c
        hit = disc > 0
        s = -b - np.sqrt(np.where(hit, disc, 0))
        p = origin + s[..., None] * d
        lab = np.zeros((H, W), np.uint8)
        # the subject's left is -x here (left = up x frontal with up = -y, frontal = +z)
        part = np.where(p[..., 1] < -0.45, schema.index("hair"),
               np.where(p[..., 0] < -0.75, schema.index("l_ear"),
               np.where(p[..., 0] > 0.75, schema.index("r_ear"),
               np.where(p[..., 2] > 0.0, schema.index("skin"), schema.index("hair")))))
        lab[hit] = part[hit]
        rgb = schema.palette_array()[lab].astype(np.float32)
        shade = np.clip(-(d * p).sum(-1), 0.2, 1.0)
        rgb = np.where(hit[..., None], 0.3 * rgb + 0.7 * rgb * shade[..., None], 0.0)
        rgbs.append(rgb.astype(np.uint8))
        labels.append(lab)
    return np.stack(rgbs), np.stack(labels)


def tiny_capture(views: int = 6, size: int = 32, yaw_range: tuple[float, float] = (-90.0, 90.0)) -> Capture:
    """A labelled sphere seen from `views` cameras on a yaw ring; `render_gt` works at any camera."""
    cams = ring_cameras(np.linspace(*yaw_range, views), size=size)
    rgb, labels = render_sphere(cams)
    vs = [View(n, cams[i], rgb[i], labels[i], labels[i] > 0) for i, n in enumerate(cams.names)]

    def render_gt(cameras: Cameras, rgb: bool = True) -> GroundTruth:
        rgb_, lab_ = render_sphere(cameras)
        return GroundTruth(labels=lab_, rgb=rgb_ if rgb else None)

    return Capture(vs, CELEBAMASK_HQ, SUBJECT, source="tiny-sphere", render_gt=render_gt)


# fake components --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeParserConfig:
    confidence: float = field(default=0.9, metadata={"help": "probability given to the GT class", "min": 0.0, "max": 1.0})


class FakeParser:
    """GT labels as soft one-hot probabilities (needs a capture with labels)."""

    def __init__(self, config: FakeParserConfig, context: ComponentContext):
        self.config = config

    def parse(self, capture: Capture) -> np.ndarray:
        K = capture.schema.num_classes
        labels = np.stack([v.labels for v in capture.views])
        probs = np.full((len(labels), K) + labels.shape[1:], (1 - self.config.confidence) / (K - 1), np.float32)
        np.put_along_axis(probs, labels[:, None].astype(np.int64), self.config.confidence, axis=1)
        return probs


@dataclass(frozen=True)
class FakeRepresentationConfig:
    pass


class FakeRepresentation:
    """'Fits' by remembering the capture; renders the exact sphere (so refinement is perfect)."""

    def __init__(self, config: FakeRepresentationConfig, context: ComponentContext):
        self.calls = 0

    def fit(self, capture: Capture, initial_probs: np.ndarray, workdir: Path | None = None):
        self.calls += 1
        return {"views": len(capture)}

    def render(self, model, cameras: Cameras) -> Renders:
        rgb, labels = render_sphere(cameras)
        K = CELEBAMASK_HQ.num_classes
        probs = np.eye(K, dtype=np.float32)[labels]
        alpha = (labels > 0).astype(np.float32)
        return Renders(cameras, rgb.astype(np.float32) / 255, alpha, alpha * 4.0, probs=probs)

    def save(self, model, path: Path) -> None:
        import json

        Path(path).write_text(json.dumps(model))

    def load(self, path: Path):
        import json

        return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class FakeSamplerConfig:
    count: int = field(default=4, metadata={"help": "number of novel cameras", "min": 1})


class FakeSampler:
    def __init__(self, config: FakeSamplerConfig, context: ComponentContext):
        self.config = config

    def sample(self, capture: Capture) -> Cameras:
        return ring_cameras(np.linspace(-80, 80, self.config.count), pitch=20.0,
                            size=capture.views[0].camera.width, prefix="novel")


@dataclass(frozen=True)
class FakeAggregatorConfig:
    pass


class FakeAggregator:
    def __init__(self, config: FakeAggregatorConfig, context: ComponentContext):
        pass

    def aggregate(self, renders: Renders, schema: LabelSchema):
        return renders.probs.argmax(-1).astype(np.uint8), renders.probs.max(-1)


class FakePlugin:
    """Registers one fake component per role (target_parser reuses the fake parser)."""

    @hookimpl
    def splatrefine_register_components(self, register):
        register(ComponentSpec(Role.INITIAL_PARSER, "fake-parser", FakeParser, FakeParserConfig, "test: GT as soft labels"))
        register(ComponentSpec(Role.TARGET_PARSER, "fake-parser", FakeParser, FakeParserConfig, "test: GT as soft labels"))
        register(ComponentSpec(Role.REPRESENTATION, "fake-representation", FakeRepresentation,
                               FakeRepresentationConfig, "test: renders the exact sphere"))
        register(ComponentSpec(Role.VIEW_SAMPLER, "fake-sampler", FakeSampler, FakeSamplerConfig, "test: a ring"))
        register(ComponentSpec(Role.LABEL_AGGREGATOR, "fake-aggregator", FakeAggregator, FakeAggregatorConfig,
                               "test: argmax"))


FAKE_CONFIG = {
    "initial_parser": {"plugin": "fake-parser"},
    "representation": {"plugin": "fake-representation"},
    "view_sampler": {"plugin": "fake-sampler"},
    "label_aggregator": {"plugin": "fake-aggregator"},
    "target_parser": {"plugin": "fake-parser"},
}


def make_fake_registry():
    from .registry import Registry, make_plugin_manager

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(FakePlugin(), name="splatrefine.testing.fakes")
    return Registry(manager)


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def registry():
        from .registry import Registry, make_plugin_manager

        return Registry(make_plugin_manager(entrypoints=False))

    @pytest.fixture
    def fake_registry():
        return make_fake_registry()

    @pytest.fixture
    def tiny() -> Capture:
        return tiny_capture()
