"""The experiment's figures: per target a bar chart of mIoU per pose bucket and, per pose bucket,
a contact sheet of test views (drawn with splatrefine.figures; matplotlib is imported there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splatrefine.types import POSE_BUCKETS, pose_bucket

from .config import PRIMARY_VARIANT, TargetSpec
from .stages import Workspace


def write_figures(ws: Workspace, targets: list[TargetSpec], res: dict, folder: Path) -> dict[str, str]:
    """Per target: a bar chart of mIoU per pose bucket (baseline and every variant; `res` is
    results.json's content), and per pose bucket a contact sheet of test views (image | GT |
    baseline | fine-tuned). Returns {caption: path relative to OUT}."""
    from splatrefine.figures import bar_chart, contact_sheet, save_png

    out: dict[str, str] = {}
    root = ws.layout.out
    images, gt, yaw, names = ws.test_set
    buckets = np.array([pose_bucket(y) for y in yaw])
    for t in targets:
        rows = res["targets"][t.name]["parsers"]
        series = {v: [None if b not in r["scores"] else 100.0 * r["scores"][b]["miou"] for b in POSE_BUCKETS]
                  for v, r in rows.items()}
        groups = [f"{b} ({res['test_views'][b]} views)" for b in POSE_BUCKETS]
        p = folder / f"miou_{t.name}.png"
        save_png(p, bar_chart(groups, series, title=f"Test identities, target {t.name}: mIoU per pose bucket",
                              ylabel="mIoU (%)", value_format="{:.0f}", size=(9.0, 4.2)))
        out[f"mIoU per pose bucket ({t.name})"] = str(p.relative_to(root))
        primary = PRIMARY_VARIANT if PRIMARY_VARIANT in t.variants else (t.variants[0] if t.variants else None)
        if primary is None:
            continue
        base = np.load(ws.layout.eval_file(t.name, "baseline", ".npy"))
        fine = np.load(ws.layout.eval_file(t.name, primary, ".npy"))
        for b in POSE_BUCKETS:
            idx = np.flatnonzero(buckets == b)
            if not len(idx):
                continue
            pick = np.unique(idx[np.linspace(0, len(idx) - 1, min(ws.config.contact_views, len(idx))).round().astype(int)])
            sheet_rows = [[images[i], ws.schema.colorize(gt[i]), ws.schema.colorize(base[i]),
                           ws.schema.colorize(fine[i])] for i in pick]
            labels = [f"{names[i]}\nyaw {yaw[i]:+.0f} deg" for i in pick]
            p = folder / f"contact_{t.name}_{b}.png"
            save_png(p, contact_sheet(sheet_rows, ["image", "GT", "baseline", f"fine-tuned ({primary})"], labels))
            out[f"test views, {b} ({t.name})"] = str(p.relative_to(root))
    return out
