"""Label schemas: class names, palette, left/right swap pairs and mappings between schemas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class LabelSchema:
    """An ordered set of classes. Label maps are uint8 indices into `classes`; 255 means ignore.

    `flip_pairs` are the class pairs a horizontal image flip swaps (l_eye <-> r_eye, ...).
    'l_' is the subject's own left: image right in a frontal photo.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    ignore_index: int = IGNORE

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.palette):
            raise ValueError(f"schema {self.name}: {len(self.classes)} classes but {len(self.palette)} palette colours")
        if len(self.classes) >= IGNORE:
            raise ValueError(f"schema {self.name}: at most {IGNORE} classes")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        return self.classes.index(name)

    def palette_array(self) -> np.ndarray:
        """uint8 [K,3]."""
        return np.asarray(self.palette, dtype=np.uint8)

    def flat_palette(self) -> list[int]:
        """A 768-entry PIL palette: schema colours first, ignore (255) drawn white."""
        pal = [0] * 768
        for i, rgb in enumerate(self.palette):
            pal[3 * i : 3 * i + 3] = rgb
        pal[3 * IGNORE : 3 * IGNORE + 3] = (255, 255, 255)
        return pal

    def flip_lut(self) -> np.ndarray:
        """uint8 [256] lookup table that swaps every l_/r_ pair and keeps everything else."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """uint8 [...,3] RGB picture of a label map (ignore drawn white)."""
        lut = np.full((256, 3), 255, dtype=np.uint8)
        lut[: self.num_classes] = self.palette_array()
        return lut[labels]

    def validate_labels(self, labels: np.ndarray) -> np.ndarray:
        """Indices >= num_classes other than 255, as a sorted array (empty when the map is valid)."""
        values = np.unique(labels)
        return values[(values >= self.num_classes) & (values != self.ignore_index)]


# CelebAMask-HQ's 19 classes in the face-parsing.PyTorch order.
CELEBAMASK_HQ = LabelSchema(
    name="celebamask-hq",
    classes=(
        "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
        "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
    ),
    # face-parsing.PyTorch's visualisation colours for classes 1..18, background black.
    palette=(
        (0, 0, 0), (255, 85, 0), (255, 170, 0), (255, 0, 85), (255, 0, 170), (0, 255, 0),
        (85, 255, 0), (170, 255, 0), (0, 255, 85), (0, 255, 170), (0, 0, 255), (85, 0, 255),
        (170, 0, 255), (0, 85, 255), (0, 170, 255), (255, 255, 0), (255, 255, 85),
        (255, 255, 170), (255, 0, 255),
    ),
    flip_pairs=((2, 3), (4, 5), (7, 8)),
)

# LaPa's 11 classes in the dataset's own order.
LAPA = LabelSchema(
    name="lapa",
    classes=(
        "background", "skin", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye", "nose",
        "upper_lip", "inner_mouth", "lower_lip", "hair",
    ),
    palette=(
        (0, 0, 0), (255, 85, 0), (255, 170, 0), (255, 0, 85), (255, 0, 170), (0, 255, 0),
        (0, 0, 255), (170, 0, 255), (85, 0, 255), (0, 85, 255), (255, 255, 170),
    ),
    flip_pairs=((2, 3), (4, 5)),
)

SCHEMAS: dict[str, LabelSchema] = {s.name: s for s in (CELEBAMASK_HQ, LAPA)}

# Explicit class-name tables between schemas; a class with no counterpart maps to ignore (None).
_MAPPINGS: dict[tuple[str, str], dict[str, str | None]] = {
    ("lapa", "celebamask-hq"): {
        "background": "background", "skin": "skin", "left_eyebrow": "l_brow",
        "right_eyebrow": "r_brow", "left_eye": "l_eye", "right_eye": "r_eye", "nose": "nose",
        "upper_lip": "u_lip", "inner_mouth": "mouth", "lower_lip": "l_lip", "hair": "hair",
    },
    ("celebamask-hq", "lapa"): {
        "background": "background", "skin": "skin", "l_brow": "left_eyebrow",
        "r_brow": "right_eyebrow", "l_eye": "left_eye", "r_eye": "right_eye", "eye_g": None,
        "l_ear": "skin", "r_ear": "skin", "ear_r": None, "nose": "nose", "mouth": "inner_mouth",
        "u_lip": "upper_lip", "l_lip": "lower_lip", "neck": "skin", "neck_l": None,
        "cloth": "background", "hair": "hair", "hat": None,
    },
}


def schema_mapping(source: LabelSchema, target: LabelSchema) -> np.ndarray:
    """uint8 [256] lookup table from `source` indices to `target` indices (unmapped -> 255).

    Raises KeyError when no explicit table exists between the two schemas.
    """
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if source.name == target.name:
        lut[: source.num_classes] = np.arange(source.num_classes)
        return lut
    table = _MAPPINGS[(source.name, target.name)]
    for i, name in enumerate(source.classes):
        dst = table[name]
        if dst is not None:
            lut[i] = target.index(dst)
    return lut


def get_schema(name: str) -> LabelSchema:
    from .errors import ConfigError, did_you_mean

    try:
        return SCHEMAS[name]
    except KeyError:
        raise ConfigError(
            f"unknown label schema '{name}'.{did_you_mean(name, SCHEMAS)}",
            f"Known schemas: {', '.join(SCHEMAS)}.",
        ) from None
