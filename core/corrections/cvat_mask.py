"""CVAT's "Segmentation mask 1.1" layout (Pascal VOC segmentation), written and read with our own code.

    labelmap.txt                      one `name:R,G,B::` line per label (header comment allowed)
    ImageSets/Segmentation/default.txt  one item name per line
    SegmentationClass/NAME.png        colour mask: every pixel is one label's colour
    JPEGImages/NAME.jpg               the picture the person draws on

Our labels are the schema's classes with the schema's palette (background (0, 0, 0) first, as CVAT
expects) plus `ignore` (white) for pixels the aggregator left without a label (255).
"""

from __future__ import annotations

import numpy as np

from ..errors import SplatrefineError
from ..schema import IGNORE, LabelSchema

LABELMAP = "labelmap.txt"
IMAGESETS = "ImageSets/Segmentation"
SUBSET = "default"
MASKS = "SegmentationClass"
IMAGES = "JPEGImages"
IGNORE_NAME = "ignore"
IGNORE_COLOUR = (255, 255, 255)
HINT = "Export from CVAT with 'Export annotations' -> 'Segmentation mask 1.1' (or edit the zip 'splatrefine export' wrote)."


def labelmap_entries(schema: LabelSchema) -> list[tuple[str, tuple[int, int, int], int]]:
    """(name, colour, class index) of every label we write: the schema's classes, then ignore (255)."""
    if IGNORE_COLOUR in schema.palette or IGNORE_NAME in schema.classes:
        raise ValueError(f"schema {schema.name} uses the reserved ignore colour or name")
    out = [(name, tuple(int(c) for c in rgb), i) for i, (name, rgb) in enumerate(zip(schema.classes, schema.palette))]
    return out + [(IGNORE_NAME, IGNORE_COLOUR, IGNORE)]


def labelmap_text(schema: LabelSchema) -> str:
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b), _ in labelmap_entries(schema)]
    return "\n".join(lines) + "\n"


def colour_lut(labels: np.ndarray, schema: LabelSchema) -> np.ndarray:
    """uint8 [H,W] class indices (255 = ignore) -> uint8 [H,W,3] mask colours."""
    lut = np.zeros((256, 3), np.uint8)
    for _, rgb, idx in labelmap_entries(schema):
        lut[idx] = rgb
    return lut[labels]


def parse_labelmap(text: str, where: str, schema: LabelSchema) -> dict[int, int]:
    """labelmap.txt -> {packed colour 0xRRGGBB: class index (255 = ignore)}.

    Names are matched to the schema's classes (and `ignore`) exactly; an unknown name, a repeated
    name or colour, a line without a colour or a malformed colour is a SplatrefineError naming `where`.
    """
    known = {name: idx for name, _, idx in labelmap_entries(schema)}
    by_colour: dict[int, int] = {}
    names: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        name = fields[0].strip()
        if len(fields) < 2 or not fields[1].strip():
            raise SplatrefineError(f"{where}: line {n}: label '{name}' has no colour; expected 'name:R,G,B::'",
                                   HINT)
        try:
            rgb = tuple(int(c) for c in fields[1].split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise SplatrefineError(f"{where}: line {n}: label '{name}' has colour '{fields[1]}'; expected R,G,B "
                                   "in 0..255", HINT)
        if name not in known:
            from ..errors import did_you_mean

            raise SplatrefineError(
                f"{where}: line {n}: label '{name}' is not a class of schema '{schema.name}'."
                f"{did_you_mean(name, known)}",
                f"Use the label names of the export's labelmap.txt ({', '.join(list(known)[:4])}, ...).")
        if name in names:
            raise SplatrefineError(f"{where}: line {n}: label '{name}' is listed twice", "Keep one line per label.")
        code = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
        if code in by_colour:
            raise SplatrefineError(f"{where}: line {n}: colour {rgb[0]},{rgb[1]},{rgb[2]} of '{name}' is already used "
                                   "by another label", "Give every label its own colour.")
        names.add(name)
        by_colour[code] = known[name]
    if not by_colour:
        raise SplatrefineError(f"{where}: no labels", HINT)
    return by_colour


def colours_to_labels(rgb: np.ndarray, by_colour: dict[int, int], where: str) -> np.ndarray:
    """uint8 [H,W,3] mask -> uint8 [H,W] class indices; a colour not in the labelmap is an error."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    values, inverse = np.unique(code, return_inverse=True)
    mapped = np.empty(values.shape, np.uint8)
    for j, v in enumerate(values.tolist()):
        if v not in by_colour:
            c = f"{v >> 16},{(v >> 8) & 255},{v & 255}"
            raise SplatrefineError(f"{where}: colour {c} is not a label of labelmap.txt",
                                   "Paint only with the labels of labelmap.txt (no anti-aliasing or blending).")
        mapped[j] = by_colour[v]
    return mapped[inverse.reshape(code.shape)]
