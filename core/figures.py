"""Pictures for reports: contact sheets, error maps, bar and line charts, as uint8 RGB arrays.

Small on purpose; every function returns a uint8 [H,W,3] image (no files, no global state) and
`save_png` writes one atomically. Matplotlib (Agg, no pyplot) and Pillow are imported inside the
functions, so importing this module is cheap.

    sheet = contact_sheet([[rgb, labels_rgb, None]], ["RGB", "refined", "GT"], ["view_0001"])
    save_png(run / "report" / "sheet.png", sheet)

Error-map colours (see `error_map`): correct = black, wrong = red, predicted ignore (255) on a
labelled pixel = yellow, pixel without GT (GT 255) = grey.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

IGNORE = 255
ERROR_COLOURS = {
    "correct": (0, 0, 0),
    "wrong": (230, 30, 30),
    "ignored by the aggregator": (240, 200, 0),
    "no GT": (128, 128, 128),
}
BACKGROUND = (255, 255, 255)
NA_FILL = (225, 225, 225)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H,W] or [H,W,1|3|4] (or float in 0..1) -> uint8 [H,W,3]."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def resize_to_height(image: np.ndarray, height: int, *, smooth: bool = True) -> np.ndarray:
    """uint8 [H,W,3] scaled to `height` rows keeping the aspect ratio (nearest neighbour when
    `smooth` is False, for label pictures)."""
    from PIL import Image

    img = to_rgb(image)
    h, w = img.shape[:2]
    if h == height:
        return img
    new_w = max(1, round(w * height / h))
    resample = Image.BILINEAR if smooth else Image.NEAREST
    return np.asarray(Image.fromarray(img).resize((new_w, height), resample), dtype=np.uint8)


def text_tile(text: str, width: int, height: int, *, fill: tuple[int, int, int] = NA_FILL,
              size: int | None = None) -> np.ndarray:
    """uint8 [height,width,3] with `text` centred (e.g. the 'n/a' tile of a missing picture)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (int(width), int(height)), fill)
    draw = ImageDraw.Draw(img)
    font = _font(size or max(10, min(width, height) // 6))
    box = draw.multiline_textbbox((0, 0), text, font=font)
    x = (width - (box[2] - box[0])) / 2 - box[0]
    y = (height - (box[3] - box[1])) / 2 - box[1]
    draw.multiline_text((x, y), text, fill=(90, 90, 90), font=font, align="center")
    return np.asarray(img, dtype=np.uint8)


def error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """pred, gt uint8 [H,W] label maps -> uint8 [H,W,3] with ERROR_COLOURS (255 = ignore in both)."""
    if pred.shape != gt.shape:
        raise ValueError(f"error_map: prediction {pred.shape} and GT {gt.shape} differ in size")
    out = np.zeros(pred.shape + (3,), np.uint8)
    valid = gt != IGNORE
    out[valid & (pred != gt)] = ERROR_COLOURS["wrong"]
    out[valid & (pred == IGNORE)] = ERROR_COLOURS["ignored by the aggregator"]
    out[~valid] = ERROR_COLOURS["no GT"]
    return out


def contact_sheet(rows: Sequence[Sequence[np.ndarray | None]], column_labels: Sequence[str],
                  row_labels: Sequence[str] | None = None, *, tile_height: int = 128,
                  gap: int = 4) -> np.ndarray:
    """A grid of pictures with a header row and optional row labels -> uint8 [H,W,3].

    rows: R lists of C images (uint8 [h,w,3] or [h,w]; None draws an 'n/a' tile). Every tile is
    scaled to `tile_height` rows; a column is as wide as its widest tile or its label (which may
    hold line breaks), so labels never overlap. Label pictures (few
    distinct colours) should be passed already coloured (LabelSchema.colorize).
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("contact_sheet: no rows")
    ncol = len(column_labels)
    if any(len(r) != ncol for r in rows):
        raise ValueError(f"contact_sheet: every row needs {ncol} pictures (one per column label)")
    scaled = [[None if t is None else resize_to_height(t, tile_height, smooth=_is_photo(t)) for t in r]
              for r in rows]
    size = max(11, tile_height // 9)
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    titles = [probe.multiline_textbbox((0, 0), str(t), font=font) for t in column_labels]
    widths = []
    for j in range(ncol):
        ws = [t.shape[1] for r in scaled for t in [r[j]] if t is not None]
        widths.append(max(max(ws) if ws else tile_height, titles[j][2]))
    label_w = 0
    if row_labels is not None:
        label_w = max(probe.multiline_textbbox((0, 0), str(t), font=font)[2] for t in row_labels) + 2 * gap
    header_h = max(16, tile_height // 6) + (size + 3) * max(str(t).count("\n") for t in column_labels)
    W = label_w + sum(widths) + gap * (ncol + 1)
    H = header_h + len(rows) * (tile_height + gap) + gap
    sheet = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x = label_w + gap
    for j, text in enumerate(column_labels):
        draw.multiline_text((x + (widths[j] - titles[j][2]) / 2, 2), str(text), fill=(0, 0, 0), font=font,
                            align="center")
        x += widths[j] + gap
    for i, r in enumerate(scaled):
        y = header_h + i * (tile_height + gap)
        if row_labels is not None:
            draw.multiline_text((gap, y + 4), str(row_labels[i]), fill=(0, 0, 0), font=font)
        x = label_w + gap
        for j, t in enumerate(r):
            tile = t if t is not None else text_tile("n/a", widths[j], tile_height)
            sheet.paste(Image.fromarray(tile), (x + (widths[j] - tile.shape[1]) // 2, y))
            x += widths[j] + gap
    return np.asarray(sheet, dtype=np.uint8)


def _is_photo(image: np.ndarray) -> bool:
    """Heuristic: many distinct colours -> smooth scaling; label pictures keep hard edges."""
    a = to_rgb(image)
    sample = a[:: max(1, a.shape[0] // 32), :: max(1, a.shape[1] // 32)].reshape(-1, 3)
    return len(np.unique(sample, axis=0)) > 40


def _render(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])


def bar_chart(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str,
              ylabel: str, ylim: tuple[float, float] | None = (0.0, 100.0), value_format: str = "{:.1f}",
              size: tuple[float, float] = (8.0, 4.0), dpi: int = 100, rotate_labels: bool = False) -> np.ndarray:
    """Grouped bars: one group per `groups` entry, one bar per series (None = no bar, 'n/a' written)
    -> uint8 [size*dpi,3]. Values are written on the bars with `value_format`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups), dtype=np.float64)
    small = len(groups) * n > 24
    for k, (name, values) in enumerate(series.items()):
        if len(values) != len(groups):
            raise ValueError(f"bar_chart: series '{name}' has {len(values)} values for {len(groups)} groups")
        xs = x - 0.4 + width * (k + 0.5)
        vals = np.array([np.nan if v is None else float(v) for v in values])
        bars = ax.bar(xs, np.nan_to_num(vals), width, label=name)
        for xi, v, b in zip(xs, vals, bars):
            text = "n/a" if np.isnan(v) else value_format.format(v)
            ax.text(xi, 0 if np.isnan(v) else v, text, ha="center", va="bottom",
                    fontsize=6 if small else 8, rotation=90 if small else 0)
    ax.set_xticks(x)
    ax.set_xticklabels(list(groups), rotation=60 if rotate_labels else 0, ha="right" if rotate_labels else "center",
                       fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(ylim[0], ylim[1] * 1.28)  # headroom for the legend
        ax.set_yticks(np.linspace(ylim[0], ylim[1], 6))
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper right", ncol=min(3, n))
    fig.tight_layout()
    return _render(fig)


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
               ylabel: str, log_y: bool = False, size: tuple[float, float] = (6.0, 3.6),
               dpi: int = 100) -> np.ndarray:
    """One line per series name -> (x values, y values); non-finite points are dropped. log_y is
    ignored when a value is <= 0. -> uint8 [size*dpi,3]."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for name, (xs, ys) in series.items():
        xa = np.asarray(xs, dtype=np.float64)
        ya = np.asarray(ys, dtype=np.float64)
        ok = np.isfinite(xa) & np.isfinite(ya)
        positive &= bool((ya[ok] > 0).all())
        ax.plot(xa[ok], ya[ok], label=name, linewidth=1.2)
    if log_y and positive:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _render(fig)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write uint8 [H,W,3] as PNG atomically."""
    from PIL import Image

    from .io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(to_rgb(image)).save(tmp, format="PNG", optimize=False)
