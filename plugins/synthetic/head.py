"""A seeded procedural head: identity parameters and the ellipsoids that make up its geometry.

Head frame = world frame of a synthetic capture: metres, origin at the head centre,
x = the subject's own left, y = up, z = frontal (the face looks along +z). So the subject's
left ear sits at +x and is labelled `l_ear`, which a frontal camera (yaw 0) sees at image right.

Every part is an ellipsoid (centre, radii, rotation); some are clipped shells (hair) or carry
regions (eyelids on the eyeball, brows on the skin, upper/lower lip and an open mouth on the lips).
Rendering is in `render.py`; labels and colours per part in `materials.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HAIR_STYLES = ("short", "fringe", "long", "receding", "bun")

SKIN_TONES = np.array([
    [244, 208, 186], [233, 188, 160], [222, 170, 135], [198, 144, 106],
    [170, 116, 82], [136, 90, 62], [104, 68, 48], [78, 52, 38],
], dtype=np.float64) / 255.0
HAIR_COLOURS = np.array([
    [22, 18, 16], [48, 32, 22], [86, 58, 36], [132, 96, 60], [196, 160, 104],
    [150, 66, 34], [150, 148, 146], [62, 46, 40],
], dtype=np.float64) / 255.0
EYE_COLOURS = np.array([
    [72, 44, 26], [104, 70, 40], [60, 100, 150], [80, 120, 80], [120, 100, 60], [40, 30, 24],
], dtype=np.float64) / 255.0
CLOTH_COLOURS = np.array([
    [40, 60, 120], [150, 40, 45], [230, 230, 225], [40, 40, 44], [70, 120, 80], [200, 170, 90],
    [120, 80, 140], [90, 110, 130],
], dtype=np.float64) / 255.0
BACKDROPS = np.array([
    [210, 212, 214], [160, 170, 180], [120, 130, 120], [230, 225, 210], [90, 95, 105],
], dtype=np.float64) / 255.0


@dataclass(frozen=True)
class Part:
    """One ellipsoid: `rot` columns are its local axes in the head frame, `radii` along them.
    `kind` picks the label/colour rule in materials.py; `side` is +1 (subject's left), -1 or 0."""

    name: str
    kind: str
    center: np.ndarray
    radii: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    side: int = 0
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HeadParams:
    """Everything that makes one identity (all lengths in metres, colours RGB 0..1)."""

    seed: int
    cranium: tuple[float, float, float]
    jaw: tuple[float, float, float]
    jaw_y: float
    jaw_z: float
    eye_sep: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_y: float
    brow_thick: float
    brow_arch: float
    brow_len: float
    nose_len: float
    nose_w: float
    nose_d: float
    nose_y: float
    lip_w: float
    lip_h: float
    lip_y: float
    mouth_open: float
    ear_size: float
    ear_flare: float
    neck_w: float
    shoulder_w: float
    hair_style: str
    hair_front: float
    hair_thick: float
    glasses: bool
    neckline: bool
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    eye: tuple[float, float, float]
    lip: tuple[float, float, float]
    cloth: tuple[float, float, float]
    frame: tuple[float, float, float]
    backdrop: tuple[float, float, float]


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.04) -> tuple[float, float, float]:
    c = table[rng.integers(len(table))] * (1.0 + rng.uniform(-jitter, jitter, 3))
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))


def sample_head(seed: int) -> HeadParams:
    """A random identity, fully determined by `seed`."""
    rng = np.random.default_rng([int(seed), 0x5EAD])
    s = rng.uniform(0.94, 1.06)
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    skin = np.array(_pick(rng, SKIN_TONES, 0.03))
    hair = _pick(rng, HAIR_COLOURS, 0.08)
    lip = tuple(float(v) for v in np.clip(skin * np.array([0.86, 0.62, 0.62]) + np.array([0.05, 0.0, 0.0]), 0, 1))
    style = HAIR_STYLES[rng.integers(len(HAIR_STYLES))]
    return HeadParams(
        seed=int(seed),
        cranium=(0.077 * s * u(0.95, 1.05), 0.1 * s * u(0.96, 1.04), 0.098 * s * u(0.96, 1.04)),
        jaw=(0.06 * s * u(0.9, 1.1), 0.072 * s * u(0.93, 1.07), 0.074 * s),
        jaw_y=-0.038 * s * u(0.92, 1.08),
        jaw_z=0.021 * s,
        eye_sep=0.031 * s * u(0.93, 1.07),
        eye_y=0.004 * s + u(-0.003, 0.003),
        eye_w=0.0145 * s * u(0.9, 1.1),
        eye_h=0.0058 * s * u(0.8, 1.2),
        brow_y=0.021 * s + u(-0.002, 0.003),
        brow_thick=0.0065 * s * u(0.8, 1.3),
        brow_arch=u(0.002, 0.006),
        brow_len=0.021 * s * u(0.9, 1.12),
        nose_len=0.029 * s * u(0.88, 1.12),
        nose_w=0.0105 * s * u(0.85, 1.2),
        nose_d=0.019 * s * u(0.85, 1.15),
        nose_y=-0.024 * s + u(-0.002, 0.002),
        lip_w=0.026 * s * u(0.88, 1.12),
        lip_h=0.0105 * s * u(0.8, 1.2),
        lip_y=-0.06 * s + u(-0.003, 0.003),
        mouth_open=u(0.12, 0.32) if rng.random() < 0.35 else 0.0,
        ear_size=s * u(0.9, 1.12),
        ear_flare=u(0.15, 0.45),
        neck_w=0.05 * s * u(0.9, 1.12),
        shoulder_w=0.19 * s * u(0.92, 1.1),
        hair_style=str(style),
        hair_front=u(0.42, 0.6) if style != "receding" else u(0.7, 0.8),
        hair_thick=u(0.006, 0.016) * (1.6 if style in ("long", "bun") else 1.0),
        glasses=bool(rng.random() < 0.3),
        neckline=bool(rng.random() < 0.5),
        skin=tuple(float(v) for v in skin),
        hair=hair,
        eye=_pick(rng, EYE_COLOURS),
        lip=lip,
        cloth=_pick(rng, CLOTH_COLOURS, 0.1),
        frame=_pick(rng, np.array([[20, 20, 22], [90, 60, 40], [160, 160, 170], [120, 30, 30]]) / 255.0),
        backdrop=_pick(rng, BACKDROPS, 0.03),
    )


CRANIUM_CENTER = np.array([0.0, 0.012, -0.008])


def _axes(v_axis: np.ndarray, w_hint: np.ndarray) -> np.ndarray:
    """Rotation whose local y is `v_axis` and local z is as close to `w_hint` as possible."""
    v = v_axis / np.linalg.norm(v_axis)
    w = w_hint - v * (w_hint @ v)
    w = w / np.linalg.norm(w)
    u = np.cross(v, w)
    return np.stack([u, v, w], axis=1)


def _rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def front_z(p: HeadParams, x: float, y: float) -> float:
    """z of the skin surface (cranium or jaw, whichever is in front) at (x, y)."""
    best = -1.0
    for c, r in ((CRANIUM_CENTER, np.array(p.cranium)), (np.array([0.0, p.jaw_y, p.jaw_z]), np.array(p.jaw))):
        q = 1.0 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
        if q > 0:
            best = max(best, c[2] + r[2] * np.sqrt(q))
    return best


def side_x(p: HeadParams, y: float, z: float) -> float:
    """x of the cranium surface on the subject's left at (y, z)."""
    c, r = CRANIUM_CENTER, np.array(p.cranium)
    q = 1.0 - ((y - c[1]) / r[1]) ** 2 - ((z - c[2]) / r[2]) ** 2
    return float(c[0] + r[0] * np.sqrt(max(q, 0.0)))


def build_parts(p: HeadParams) -> list[Part]:
    """The head's ellipsoids (opaque parts first, then glasses lenses)."""
    cr = np.array(p.cranium)
    parts = [
        Part("cranium", "skin", CRANIUM_CENTER.copy(), cr),
        Part("jaw", "skin", np.array([0.0, p.jaw_y, p.jaw_z]), np.array(p.jaw)),
        Part("neck", "neck", np.array([0.0, -0.12, -0.016]), np.array([p.neck_w, 0.115, p.neck_w * 0.95]),
             params={"neckline": p.neckline}),
        Part("torso", "cloth", np.array([0.0, -0.27, -0.02]), np.array([p.shoulder_w, 0.11, 0.105]),
             params={"neckline": p.neckline, "neck_w": p.neck_w}),
    ]
    # nose: tilted so its lower end comes forward
    nz = front_z(p, 0.0, p.nose_y)
    tilt = 22.0
    parts.append(Part("nose", "nose", np.array([0.0, p.nose_y, nz - 0.25 * p.nose_d]),
                      np.array([p.nose_w, p.nose_len, p.nose_d]), _rot_x(tilt)))
    # eyes: eyeballs (wider than tall) sunk into the face; the eyelid opening is a region
    for side in (+1, -1):
        x = side * p.eye_sep
        ez = front_z(p, x, p.eye_y)
        radii = np.array([p.eye_w * 1.05, p.eye_w * 0.8, p.eye_w * 0.8])
        parts.append(Part(f"{'l' if side > 0 else 'r'}_eye", "eye", np.array([x, p.eye_y, ez - 0.55 * radii[2]]),
                          radii, _rot_y(side * 12.0), side,
                          {"open_w": p.eye_w, "open_h": p.eye_h}))
    # ears: thin, tilted back, flared forward
    for side in (+1, -1):
        ey, ez = p.eye_y - 0.012, -0.006
        ex = side_x(p, ey, ez)
        radii = np.array([0.0075, 0.029, 0.017]) * p.ear_size
        rot = _rot_y(side * np.degrees(p.ear_flare)) @ _rot_x(-14.0)
        parts.append(Part(f"{'l' if side > 0 else 'r'}_ear", "ear", np.array([side * (ex + 0.004), ey, ez]),
                          radii, rot, side))
    # lips
    lz = front_z(p, 0.0, p.lip_y)
    lip_d = 0.012
    parts.append(Part("lips", "lips", np.array([0.0, p.lip_y, lz - 0.5 * lip_d]), np.array([p.lip_w, p.lip_h, lip_d]),
                      params={"open": p.mouth_open}))
    # hair
    t = p.hair_thick
    cap = cr + np.array([t, t * 0.9, t])
    front = p.hair_front if p.hair_style != "fringe" else p.hair_front - 0.22
    back = -0.8 if p.hair_style in ("long", "bun") else -0.7
    parts.append(Part("hair_cap", "hair_cap", CRANIUM_CENTER.copy(), cap,
                      params={"front": front, "back": back, "ear_notch": 0.45 if p.hair_style != "long" else 0.2}))
    if p.hair_style == "long":
        parts.append(Part("hair_long", "hair_long", np.array([0.0, -0.045, -0.03]),
                          np.array([cr[0] + 0.022, 0.155, cr[2] * 0.88]),
                          params={"max_w": 0.12, "min_y": -0.16}))
    if p.hair_style == "bun":
        parts.append(Part("hair_bun", "hair", CRANIUM_CENTER + np.array([0.0, 0.07, -0.085]),
                          np.array([0.04, 0.036, 0.038])))
    if p.glasses:
        gz = front_z(p, p.eye_sep, p.eye_y) + 0.014
        lw, lh = p.eye_w * 1.6, p.eye_w * 1.2
        for side in (+1, -1):
            parts.append(Part(f"{'l' if side > 0 else 'r'}_lens", "lens", np.array([side * p.eye_sep, p.eye_y, gz]),
                              np.array([lw, lh, 0.0016]), _rot_y(side * 6.0), side))
            a = np.array([side * (p.eye_sep + lw * 0.98), p.eye_y + lh * 0.3, gz - 0.002])
            ex = side_x(p, p.eye_y, -0.01)
            b = np.array([side * (ex + 0.004), p.eye_y - 0.004, -0.012])
            axis = b - a
            parts.append(Part(f"{'l' if side > 0 else 'r'}_temple", "frame", (a + b) / 2,
                              np.array([0.0022, np.linalg.norm(axis) / 2, 0.0022]),
                              _axes(axis, np.array([0.0, 1.0, 0.0]))))
        gap = p.eye_sep - lw
        parts.append(Part("bridge", "frame", np.array([0.0, p.eye_y + lh * 0.35, gz + 0.001]),
                          np.array([max(gap, 0.003) * 1.1, 0.0022, 0.0022])))
    return parts
