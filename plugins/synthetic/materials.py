"""Labels and surface colours of each kind of head part, as functions of the 3D surface point.

Because a label depends only on the part hit and the point hit, every camera that sees a point
gives it the same label (multiview-consistent by construction).
"""

from __future__ import annotations

import numpy as np

from splatrefine.schema import CELEBAMASK_HQ

from .head import HeadParams, Part
from .texture import fbm, value_noise

L = {name: i for i, name in enumerate(CELEBAMASK_HQ.classes)}


def side_label(base: str, side: int) -> int:
    """'l_' is the subject's own left (+x in the head frame)."""
    return L[("l_" if side > 0 else "r_") + base]


def keep_hit(part: Part, local: np.ndarray, world: np.ndarray, seed: int) -> np.ndarray:
    """Which surface points of a clipped shell exist (hair only); local = unit-sphere coords [N,3]."""
    if part.kind == "hair_cap":
        u, v, w = local[:, 0], local[:, 1], local[:, 2]
        theta = np.arctan2(u, w)  # 0 = front, +-pi = back
        b = (1.0 + np.cos(theta)) / 2.0
        front, back = part.params["front"], part.params["back"]
        h = back + (front - back) * b ** 1.5
        h = h + part.params["ear_notch"] * np.exp(-((np.abs(theta) - 1.55) / 0.3) ** 2)
        h = h + 0.035 * np.sin(7.0 * theta + seed) + 0.03 * (value_noise(world * 180.0, seed + 7) - 0.5)
        return v > h
    if part.kind == "hair_long":
        ragged = 0.012 * (value_noise(world * 150.0, seed + 11) - 0.5)
        return (local[:, 2] < part.params["max_w"]) & (world[:, 1] > part.params["min_y"] + ragged)
    return np.ones(len(local), dtype=bool)


def _brows(head: HeadParams, world: np.ndarray) -> np.ndarray:
    """Which skin points [N,3] lie on an eyebrow."""
    x, y, z = world[:, 0], world[:, 1], world[:, 2]
    ax = np.abs(x)
    x0 = head.eye_sep - 0.6 * head.brow_len
    x1 = head.eye_sep + 0.75 * head.brow_len
    t = (ax - x0) / (x1 - x0)
    yc = head.brow_y + head.brow_arch * np.sin(np.pi * np.clip(t, 0, 1) * 0.85 + 0.25) - 0.002 * t
    thick = head.brow_thick * (1.0 - 0.45 * np.clip(t, 0, 1))
    return (t >= 0) & (t <= 1) & (np.abs(y - yc) < thick / 2) & (z > 0.02)


def _neckline(part: Part, world: np.ndarray) -> np.ndarray:
    """Which cloth points [N,3] show the neck through a neckline."""
    x, y, z = world[:, 0], world[:, 1], world[:, 2]
    top, bottom, w = -0.17, -0.235, part.params["neck_w"] * 1.5
    return (z > 0) & (y > bottom) & (np.abs(x) < w * (y - bottom) / (top - bottom))


def _eye_opening(part: Part, local: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inside the eyelid opening, dx, dy from the eye centre, upper lid height at dx) of eyeball points."""
    dx = world[:, 0] - part.center[0]
    dy = world[:, 1] - part.center[1]
    a, b = part.params["open_w"], part.params["open_h"]
    r = np.clip(1.0 - (dx / a) ** 2, 0.0, 1.0)
    upper = b * r ** 0.6 * (1.0 + 0.25 * part.side * dx / a)
    lower = -0.75 * b * r ** 0.8
    inside = (np.abs(dx) < a) & (dy < upper) & (dy > lower) & (local[:, 2] > 0)
    return inside, dx, dy, upper


def _lip_regions(part: Part, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper lip, lower lip, height of the split between them) of lip points; the rest is the mouth."""
    u, v = local[:, 0], local[:, 1]
    split = 0.12 - 0.22 * u ** 2 + 0.06 * np.exp(-(np.abs(u) - 0.18) ** 2 / 0.01)
    gap = part.params["open"]
    return v > split + gap / 2, v < split - gap / 2, split


def labels(part: Part, local: np.ndarray, world: np.ndarray, head: HeadParams) -> np.ndarray:
    """Labels uint8 [N] of surface points of `part` (local = unit-sphere coords, world [N,3])."""
    lab = np.full(len(local), L["skin"], dtype=np.uint8)
    if part.kind == "skin":
        brow = _brows(head, world)
        lab[brow] = np.where(world[brow, 0] >= 0, L["l_brow"], L["r_brow"])
    elif part.kind == "neck":
        lab[:] = L["neck"]
    elif part.kind == "cloth":
        lab[:] = L["cloth"]
        if part.params.get("neckline"):
            lab[_neckline(part, world)] = L["neck"]
    elif part.kind == "nose":
        lab[:] = L["nose"]
    elif part.kind == "eye":
        lab[_eye_opening(part, local, world)[0]] = side_label("eye", part.side)
    elif part.kind == "ear":
        lab[:] = side_label("ear", part.side)
    elif part.kind == "lips":
        upper, lower, _ = _lip_regions(part, local)
        lab[:] = L["mouth"]
        lab[upper] = L["u_lip"]
        lab[lower] = L["l_lip"]
    elif part.kind in ("hair", "hair_cap", "hair_long"):
        lab[:] = L["hair"]
    elif part.kind in ("frame", "lens"):
        lab[:] = L["eye_g"]
    else:  # pragma: no cover - every kind above is built by head.build_parts
        raise ValueError(f"unknown part kind {part.kind!r}")
    return lab


def albedo(part: Part, local: np.ndarray, world: np.ndarray, head: HeadParams) -> tuple[np.ndarray, np.ndarray]:
    """(albedo float32 [N,3], gloss float32 [N]) of surface points of `part`."""
    n = len(local)
    skin = np.asarray(head.skin, dtype=np.float32)
    hair = np.asarray(head.hair, dtype=np.float32)
    seed = head.seed
    gloss = np.full(n, 0.08, dtype=np.float32)
    x, y, z = world[:, 0], world[:, 1], world[:, 2]

    def skin_albedo() -> np.ndarray:
        t = 1.0 + 0.07 * fbm(world, 260.0, 3, seed) + 0.03 * fbm(world, 1400.0, 1, seed + 3)
        col = skin[None, :] * t[:, None]
        cheek = np.exp(-(((np.abs(x) - 0.042) / 0.016) ** 2 + ((y + 0.026) / 0.016) ** 2)) * (z > 0.02)
        col = col * (1.0 - 0.12 * cheek[:, None] * np.array([0.0, 1.0, 1.0], dtype=np.float32))
        return col

    def hair_albedo(scale: float = 1.0) -> np.ndarray:
        streak = value_noise(world * np.array([900.0, 70.0, 900.0]), seed + 5)
        clump = fbm(world, 90.0, 2, seed + 9)
        t = 0.7 + 0.45 * streak + 0.4 * clump
        return np.clip(hair[None, :] * t[:, None] * scale + 0.015, 0.0, 1.0)

    if part.kind == "skin":
        col = skin_albedo()
        brow = _brows(head, world)
        if brow.any():
            b = hair_albedo(0.75)[brow] * 0.8 + col[brow] * 0.2
            col[brow] = b
    elif part.kind == "neck":
        col = skin_albedo() * 0.9
    elif part.kind == "cloth":
        cloth = np.asarray(head.cloth, dtype=np.float32)
        weave = 0.05 * np.sin(x * 2200.0) * np.sin(y * 2200.0)
        t = 1.0 + 0.12 * fbm(world, 40.0, 3, seed + 21) + weave
        col = cloth[None, :] * t[:, None]
        if part.params.get("neckline"):
            v = _neckline(part, world)
            col[v] = skin_albedo()[v] * 0.9
    elif part.kind == "nose":
        col = skin_albedo() * np.array([1.02, 0.97, 0.97], dtype=np.float32)
        u, v, w = local[:, 0], local[:, 1], local[:, 2]
        nostril = ((np.abs(u) - 0.42) ** 2 / 0.05 + (w - 0.15) ** 2 / 0.12 < 1.0) & (v < -0.55)
        col[nostril] *= 0.35
    elif part.kind == "eye":
        inside, dx, dy, upper = _eye_opening(part, local, world)
        a, b = part.params["open_w"], part.params["open_h"]
        col = skin_albedo()
        lid = (~inside) & (local[:, 2] > 0) & (np.abs(dx) < a * 1.1) & (np.abs(dy - upper) < 0.0012)
        col[lid] *= 0.45
        rr = np.sqrt(dx ** 2 + (dy - 0.0005) ** 2)
        eye_col = np.tile(np.array([[0.9, 0.88, 0.85]], dtype=np.float32), (n, 1))
        iris = rr < 0.52 * b * 1.15 + 0.0022
        eye_col[iris] = np.asarray(head.eye, dtype=np.float32) * (0.8 + 0.4 * value_noise(world[iris] * 3000.0, seed + 13))[:, None]
        eye_col[rr < 0.0017] = 0.05
        col[inside] = eye_col[inside]
        gloss[inside] = 0.6
    elif part.kind == "ear":
        col = skin_albedo() * np.array([0.98, 0.93, 0.92], dtype=np.float32)
        u, v, w = local[:, 0], local[:, 1], local[:, 2]
        rad = np.sqrt(v ** 2 + w ** 2)
        outer = u > 0
        col[outer & (rad < 0.55)] *= 0.72
        col[outer & (rad > 0.8)] *= 1.06
    elif part.kind == "lips":
        upper, lower, split = _lip_regions(part, local)
        u, v = local[:, 0], local[:, 1]
        lipc = np.asarray(head.lip, dtype=np.float32)
        col = lipc[None, :] * (1.0 + 0.06 * fbm(world, 900.0, 2, seed + 17))[:, None]
        gloss[:] = 0.25
        mouth = ~(upper | lower)
        if mouth.any():
            teeth = mouth & (v > split) & (np.abs(u) < 0.6)
            col[mouth] = np.array([0.28, 0.07, 0.08], dtype=np.float32)
            col[teeth] = np.array([0.86, 0.83, 0.76], dtype=np.float32)
    elif part.kind in ("hair", "hair_cap", "hair_long"):
        col = hair_albedo()
        gloss[:] = 0.2
    elif part.kind in ("frame", "lens"):
        col = np.tile(np.asarray(head.frame, dtype=np.float32)[None, :], (n, 1))
        gloss[:] = 0.5
    else:  # pragma: no cover - every kind above is built by head.build_parts
        raise ValueError(f"unknown part kind {part.kind!r}")
    return np.clip(col, 0.0, 1.0).astype(np.float32), gloss
