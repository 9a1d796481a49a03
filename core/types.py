"""The data model: cameras, captures and renders. numpy only, so every layer can use it cheaply.

Camera conventions follow gsplat: `viewmat` is world-to-camera [4,4] with OpenCV axes (x right,
y down, z forward), `K` is the [3,3] pinhole intrinsic matrix with pixel centres at +0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .schema import CELEBAMASK_HQ, LabelSchema

# Subject lives with the pose maths (poses.py imports nothing from here at run time); re-exported here
from .poses import Subject, estimate_subject, yaw_pitch

POSE_BUCKETS = ("frontal", "mid", "extreme")


def pose_bucket(yaw_deg: float) -> str:
    """frontal |yaw| < 30, mid 30..60, extreme >= 60 degrees."""
    a = abs(float(yaw_deg))
    return "frontal" if a < 30.0 else ("mid" if a < 60.0 else "extreme")


@dataclass(frozen=True)
class Camera:
    """One pinhole camera: world-to-camera `viewmat` [4,4], intrinsics `K` [3,3], image size."""

    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates [3]."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N,3] -> (pixel coordinates [N,2], camera-space depth [N])."""
        pc = points @ self.viewmat[:3, :3].T + self.viewmat[:3, 3]
        uvw = pc @ self.K.T
        return uvw[:, :2] / uvw[:, 2:3], pc[:, 2]


@dataclass(frozen=True)
class Cameras:
    """A batch of C cameras sharing one image size, as `splatrefine.splat.rasterize` takes them.

    viewmats float64 [C,4,4], Ks float64 [C,3,3]; `yaw`/`pitch` are degrees relative to the
    subject's frontal direction when known (else None).
    """

    viewmats: np.ndarray
    Ks: np.ndarray
    width: int
    height: int
    names: tuple[str, ...] = ()
    yaw: np.ndarray | None = None
    pitch: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.names:
            object.__setattr__(self, "names", tuple(f"view_{i:04d}" for i in range(len(self.viewmats))))

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def __getitem__(self, i: int) -> Camera:
        return Camera(self.viewmats[i], self.Ks[i], self.width, self.height)

    def subset(self, index: Sequence[int] | np.ndarray) -> Cameras:
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            viewmats=self.viewmats[idx],
            Ks=self.Ks[idx],
            names=tuple(self.names[i] for i in idx),
            yaw=None if self.yaw is None else self.yaw[idx],
            pitch=None if self.pitch is None else self.pitch[idx],
        )

    @property
    def centers(self) -> np.ndarray:
        """Camera centres in world coordinates [C,3]."""
        R = self.viewmats[:, :3, :3]
        t = self.viewmats[:, :3, 3]
        return -np.einsum("cji,cj->ci", R, t)

    @staticmethod
    def stack(cameras: Sequence[Camera], names: Sequence[str] = ()) -> Cameras:
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras of different sizes cannot be batched: {sorted(sizes)}")
        (w, h), = sizes
        return Cameras(
            np.stack([c.viewmat for c in cameras]).astype(np.float64),
            np.stack([c.K for c in cameras]).astype(np.float64),
            int(w), int(h), tuple(names),
        )


@dataclass
class View:
    """One captured image: uint8 RGB [H,W,3], its camera, optional GT labels uint8 [H,W] and
    optional foreground mask bool [H,W]."""

    name: str
    camera: Camera
    image: np.ndarray
    labels: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class GroundTruth:
    """Exact labels rendered at arbitrary cameras (synthetic captures): uint8 [C,H,W] + rgb."""

    labels: np.ndarray
    rgb: np.ndarray | None = None


GT_NAME = "GT"  # Capture.labels_name of labels people drew (the default)


@dataclass
class Capture:
    """A multiview capture: views, the label schema of any GT labels, and what is known of the
    subject. `render_gt(cameras, rgb=True)`, when set, renders exact GT at any cameras (synthetic
    captures); with rgb=False only the labels (GroundTruth.rgb None)."""

    views: list[View]
    schema: LabelSchema = CELEBAMASK_HQ
    subject: Subject | None = None
    points: np.ndarray | None = None  # [N,3] world points (e.g. COLMAP points3D)
    point_colors: np.ndarray | None = None  # uint8 [N,3]
    source: str = ""
    render_gt: Callable[..., GroundTruth] | None = field(default=None, repr=False)
    # what reports call the views' labels: GT_NAME when people drew them, "pseudo-GT" when a parser
    # made them (a real scan's labels lifted from its near-frontal views, docs/real_scans.md)
    labels_name: str = GT_NAME

    def __len__(self) -> int:
        return len(self.views)

    @property
    def has_labels(self) -> bool:
        return bool(self.views) and all(v.labels is not None for v in self.views)

    @property
    def has_masks(self) -> bool:
        return bool(self.views) and all(v.mask is not None for v in self.views)

    def cameras(self) -> Cameras:
        """All views' cameras as one batch, with yaw/pitch relative to the subject: the capture's
        own subject frame when known, else one estimated from the cameras (poses.estimate_subject)."""
        sizes = sorted({(v.camera.width, v.camera.height) for v in self.views})
        if len(sizes) > 1:
            from .errors import CaptureError

            raise CaptureError(f"{self.source or 'capture'}: views come in {len(sizes)} image sizes {sizes}; "
                               "refinement needs one size", "Resize the images (and scale K) to one size first.")
        cams = Cameras.stack([v.camera for v in self.views], [v.name for v in self.views])
        yaw, pitch = yaw_pitch(cams.centers, self.subject or estimate_subject(cams))
        return replace(cams, yaw=yaw, pitch=pitch)

    def images(self) -> np.ndarray:
        """uint8 [V,H,W,3]."""
        return np.stack([v.image for v in self.views])


@dataclass
class Renders:
    """What a representation renders at C cameras (float32, channel-last, on the CPU).

    rgb [C,H,W,3] in 0..1; probs [C,H,W,K] class probabilities summing to 1 per pixel (None for a
    palette-mode model); seg_rgb [C,H,W,3] colour-coded segmentation (palette mode only);
    alpha [C,H,W]; depth [C,H,W] expected depth. observed [C,H,W,K]: the initial parser's
    probabilities at these cameras when they are the capture's input views (set by the engine, so an
    aggregator can weigh a view's own labels against the 3D consensus), else None. trusted [C] bool:
    which of those observed labels a person drew or checked (`splatrefine correct`): ground truth
    an aggregator should not weigh against the consensus; None = none.
    """

    cameras: Cameras
    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    probs: np.ndarray | None = None
    seg_rgb: np.ndarray | None = None
    observed: np.ndarray | None = None
    trusted: np.ndarray | None = None
