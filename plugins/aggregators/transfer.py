"""`transfer`: labels carried from the input views to any camera through the rendered geometry.

A class head has to represent a 3 px eyebrow with Gaussians that are fuzzy along the ray, so its
renders come out thinner and shifted, most of all at grazing angles. The input views' own labels
are sharper where their parser is right. This aggregator uses the fitted model for geometry only:
every pixel of a target camera is lifted to 3D with the rendered depth, projected into every input
view, kept where that view sees the same surface (its own rendered depth agrees within
`depth_tolerance`, relative), and the views' labels there are summed as votes, each weighted by

    the parser's confidence at that pixel
    x (the view's agreement with the 3D consensus for that class / the best view's) ** reliability
    x cos(angle between the view's ray and the surface normal there) ** incidence
    x self_weight when the input view is the target camera itself.

A view that sees a surface edge-on spreads it over few pixels and labels it least reliably, so the
facing term prefers the views that look at each point head-on; the normal comes from the view's own
rendered depth.

The agreement is `splatrefine.agreement.class_agreement` (one-coin Dawid-Skene per view and class),
so a view whose "eye" lands where the other views see cheek contributes little eye. The rendered
class probabilities are mixed in at `consensus_weight` times the votes' total (at least one
confident view's worth), and decide alone on empty pixels. Opaque pixels where the views that see the point
mostly have no opinion (a face-mesh parser never labels hair, and only its mistakes at 45-60 degrees
put skin there) are 255 by default rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splatrefine.agreement import class_agreement, parser_confidence
from splatrefine.roles import ComponentContext
from splatrefine.schema import IGNORE, LabelSchema
from splatrefine.types import Renders

from .argmax import apply_ignore, check_renders


@dataclass(frozen=True)
class TransferConfig:
    depth_tolerance: float = field(default=0.01, metadata={
        "help": "an input view sees a point when its rendered depth there is within this fraction of "
                "the point's depth (0.01 = 1 cm at 1 m)", "min": 1e-4, "max": 1.0})
    reliability: float = field(default=2.0, metadata={
        "help": "power on each view's relative per-class agreement with the 3D consensus (0: every "
                "view alike)", "min": 0.0, "max": 16.0})
    self_weight: float = field(default=10.0, metadata={
        "help": "extra weight of an input view's own labels when rendering that same view", "min": 0.0})
    consensus_weight: float = field(default=0.25, metadata={
        "help": "weight of the rendered class probabilities relative to the transferred votes at the pixel "
                "(1: half and half; at least one view's worth where few views see the point)", "min": 0.0})
    unseen: str = field(default="ignore", metadata={
        "help": "opaque pixels where the input views that see the point mostly have no opinion (hair and "
                "ears for a face-mesh parser): 'ignore' (255) or 'consensus' (the rendered class "
                "probabilities decide)",
        "choices": ("ignore", "consensus")})
    incidence: float = field(default=1.0, metadata={
        "help": "power on the cosine between an input view's ray and the surface normal where it sees the "
                "point (0: every viewing angle alike)", "min": 0.0, "max": 16.0})
    trusted_weight: float = field(default=1.0, metadata={
        "help": "weight of the views whose labels a person drew or checked (splatrefine correct), which also "
                "count as fully agreeing with the consensus", "min": 0.0})
    min_alpha: float = field(default=0.5, metadata={
        "help": "pixels rendered less opaque than this are not lifted to 3D (they keep the rendered "
                "probabilities)", "min": 0.0, "max": 1.0})
    min_confidence: float = field(default=0.0, metadata={
        "help": "pixels whose top probability is below this become 255 (ignore)", "min": 0.0, "max": 1.0})


@dataclass
class _Source:
    name: str
    viewmat: np.ndarray
    K: np.ndarray
    depth: np.ndarray  # [H,W], 0 where the view renders empty
    labels: np.ndarray  # [H,W] int16 (a class index; int16 keeps 60 views at 256 px to 8 MB)
    confidence: np.ndarray  # [H,W] float32, 0 = no opinion
    agreement: np.ndarray  # [K]
    facing: np.ndarray  # [H,W] float32, cos(ray, surface normal) ** incidence; 0 where no normal
    speaks: bool  # the parser labelled some of the view (a view it failed on entirely abstains from nothing)
    trusted: bool = False  # labels a person drew (Renders.trusted): full agreement, `trusted_weight`


def lift(depth: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> np.ndarray:
    """World points [H,W,3] of every pixel centre at its depth (OpenCV camera, pixel centres at +0.5)."""
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    return (cam - t) @ R


def facing(depth: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> np.ndarray:
    """|cos| of the angle between each pixel's ray and the surface normal [H,W], the normal from the
    depth map's neighbours (central differences, one-sided next to empty pixels); 0 where a pixel
    has no non-empty neighbour along a row or a column."""
    from .transfer_kernel import facing_cos  # numba: loaded when a transfer runs, not on import

    P = lift(depth.astype(np.float64), viewmat, K)
    centre = -viewmat[:3, :3].T @ viewmat[:3, 3]
    out = np.empty(depth.shape, np.float32)
    facing_cos(P, np.ascontiguousarray(depth > 0), np.asarray(centre, np.float64), out)
    return out


@dataclass
class _Stack:
    """The sources' per-view arrays stacked for the kernel (padded to the largest image; see
    transfer_kernel for the layouts)."""
    count: int
    names: np.ndarray  # [S] object
    depth: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    facing: np.ndarray
    sizes: np.ndarray
    viewmats: np.ndarray
    Ks: np.ndarray
    trusted: np.ndarray
    speaks: np.ndarray
    classes: int  # 1 + the largest label of any source (the kernel does not check bounds)


def _stack(sources: list[_Source]) -> _Stack:
    S = len(sources)
    sizes = np.array([s.depth.shape for s in sources], np.int64).reshape(S, 2)
    Hm, Wm = sizes.max(0)
    depth = np.zeros((S, Hm, Wm), np.float32)
    labels = np.zeros((S, Hm, Wm), np.int16)
    confidence = np.zeros((S, Hm, Wm), np.float32)
    face = np.zeros((S, Hm, Wm), np.float32)
    for j, s in enumerate(sources):
        h, w = s.depth.shape
        depth[j, :h, :w] = s.depth
        labels[j, :h, :w] = s.labels
        confidence[j, :h, :w] = s.confidence
        face[j, :h, :w] = s.facing
    names = np.empty(S, object)
    names[:] = [s.name for s in sources]
    return _Stack(S, names, depth, labels, confidence, face, sizes,
                  np.stack([np.asarray(s.viewmat, np.float64) for s in sources]),
                  np.stack([np.asarray(s.K, np.float64) for s in sources]),
                  np.array([s.trusted for s in sources], bool), np.array([s.speaks for s in sources], bool),
                  int(labels.max()) + 1)


class TransferAggregator:
    name = "transfer"
    needs = "probs"

    def __init__(self, config: TransferConfig, context: ComponentContext | None = None):
        self.config = config
        self.sources: list[_Source] = []
        self._relative: np.ndarray | None = None
        self._stacked_sources: _Stack | None = None

    def observe(self, renders: Renders) -> None:
        """Keep what the transfer needs of each input view: depth, labels, confidence, agreement."""
        if renders.observed is None or renders.probs is None:
            return
        cams = renders.cameras
        K = renders.probs.shape[-1]
        trusted = np.zeros(len(cams.names), bool) if renders.trusted is None else np.asarray(renders.trusted, bool)
        for i, name in enumerate(cams.names):
            observed = np.asarray(renders.observed[i], np.float32)
            labels, conf = parser_confidence(observed)
            depth = np.where(renders.alpha[i] >= self.config.min_alpha, renders.depth[i], 0.0).astype(np.float32)
            agreement = class_agreement(renders.probs[i].reshape(-1, K), observed.reshape(-1, K), prior_pixels=50.0)
            viewmat, Kmat = np.asarray(cams.viewmats[i], np.float64), np.asarray(cams.Ks[i], np.float64)
            self.sources.append(_Source(
                name, viewmat, Kmat, depth, labels.astype(np.int16), conf.astype(np.float32), agreement,
                facing(depth, viewmat, Kmat) ** self.config.incidence, bool((conf > 0.5).any()), bool(trusted[i])))
        self._relative = None

    def _relative_agreement(self) -> np.ndarray:
        if self._relative is None:
            a = np.stack([s.agreement for s in self.sources])
            relative = np.clip(a / np.maximum(a.max(0, keepdims=True), 1e-12), 0.0, 1.0)
            relative[[s.trusted for s in self.sources]] = 1.0
            self._relative = relative ** self.config.reliability
        return self._relative

    def _stacked(self) -> _Stack | None:
        """The stack of the sources, rebuilt when sources were added since."""
        if not self.sources:
            return None
        if self._stacked_sources is None or self._stacked_sources.count != len(self.sources):
            self._stacked_sources = _stack(self.sources)
        return self._stacked_sources

    def transfer(self, depth: np.ndarray, alpha: np.ndarray, viewmat: np.ndarray, K: np.ndarray, name: str,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Votes [N,K] for the N = H*W pixels of one camera, and a mask [N] of the pixels labelled:
        their votes outweigh the abstentions (views that see the point with no opinion, weighted by
        how unsure they are; a view the parser failed on entirely does not abstain), so a point most
        views leave unlabelled stays unlabelled."""
        c = self.config
        H, W = depth.shape
        points = lift(depth, viewmat, K).reshape(-1, 3)
        fg = np.nonzero(alpha.reshape(-1) >= c.min_alpha)[0]
        pts = points[fg]
        stack = self._stacked()
        votes = np.zeros((len(fg), num_classes))
        abstain = np.zeros(len(fg))
        if len(fg) and stack is not None:
            if stack.classes > num_classes:
                raise ValueError(f"transfer: an input view has label {stack.classes - 1}, only {num_classes} classes")
            from .transfer_kernel import accumulate_votes  # numba: loaded when a transfer runs, not on import

            accumulate_votes(
                np.ascontiguousarray(pts), stack.depth, stack.labels, stack.confidence, stack.facing, stack.sizes,
                stack.viewmats, stack.Ks, self._relative_agreement(), stack.names == name, stack.trusted,
                stack.speaks, float(c.depth_tolerance), np.float32(c.self_weight), np.float32(c.trusted_weight),
                votes, abstain)
        out = np.zeros((H * W, num_classes))
        out[fg] = votes
        labelled = np.zeros(H * W, bool)
        labelled[fg] = votes.sum(-1) > abstain
        return out, labelled

    def aggregate(self, renders: Renders, schema: LabelSchema) -> tuple[np.ndarray, np.ndarray]:
        """-> (labels uint8 [C,H,W], confidence float32 [C,H,W] = share of the winning class's votes)."""
        check_renders(renders, schema, "probs", self.name)
        probs = np.asarray(renders.probs, dtype=np.float32)
        C, H, W, K = probs.shape
        fused = probs.copy()
        unseen = np.zeros((C, H, W), bool)
        if self.sources:
            from .transfer_kernel import fuse_votes

            cams = renders.cameras
            for i in range(C):
                votes, voted = self.transfer(
                    np.asarray(renders.depth[i], np.float64), np.asarray(renders.alpha[i]),
                    np.asarray(cams.viewmats[i], np.float64), np.asarray(cams.Ks[i], np.float64), cams.names[i], K)
                fuse_votes(votes, np.ascontiguousarray(probs[i].reshape(-1, K)), float(self.config.consensus_weight),
                           fused[i].reshape(-1, K))
                unseen[i] = ~voted.reshape(H, W)
        from splatrefine.class_maps import argmax_last  # numba: loaded when labels are made, not on import

        labels, top = argmax_last(fused)
        labels = labels.astype(np.uint8, copy=False)
        confidence = np.clip(top, 0.0, 1.0).astype(np.float32)
        labels = apply_ignore(labels, confidence, np.asarray(renders.alpha), self.config.min_confidence, 0.0)
        if self.config.unseen == "ignore":
            labels[unseen & (np.asarray(renders.alpha) >= self.config.min_alpha)] = IGNORE
        return labels, confidence
