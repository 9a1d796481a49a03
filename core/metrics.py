"""Face-parsing metrics against ground truth, overall and per pose bucket.

Conventions (the face-parsing ones):
- Counts are accumulated over all views of a set (one confusion matrix), then per class
  IoU = TP / (TP + FP + FN) and F1 = 2 TP / (2 TP + FP + FN).
- mIoU and mean F1 average the classes that occur in the prediction or the GT, background excluded;
  a class absent from both is skipped (None when no class is left to average).
- GT pixels equal to 255 (ignore) are left out entirely.
- A prediction of 255 ("the aggregator had no opinion") on a valid GT pixel is a miss for the GT
  class (a false negative, and wrong for pixel accuracy) but a false positive for no class.
- pixel_acc = correct / valid GT pixels (background included);
  coverage = fraction of valid GT pixels whose prediction is not 255.
- Buckets (splatrefine.types.pose_bucket: frontal |yaw| < 30, mid 30-60, extreme >= 60 degrees) are
  computed only when `yaw` is given, and list only buckets that have views.
"""

from __future__ import annotations

import numpy as np

from .schema import IGNORE, LabelSchema
from .types import GT_NAME, POSE_BUCKETS, pose_bucket


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K+1] counts: rows = GT class, columns = predicted class, last column = pred 255.
    GT 255 pixels are skipped. pred/gt uint8 of the same shape."""
    g = gt.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    valid = g != IGNORE
    g, p = g[valid], p[valid]
    p = np.where(p == IGNORE, num_classes, p)
    return np.bincount(g * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1)


def scores(cm: np.ndarray, schema: LabelSchema) -> dict:
    """miou, mean_f1, pixel_acc, coverage and per_class from a [K, K+1] confusion matrix."""
    K = schema.num_classes
    tp = np.diag(cm[:, :K]).astype(np.float64)
    gt_count = cm.sum(axis=1).astype(np.float64)
    pred_count = cm[:, :K].sum(axis=0).astype(np.float64)
    fn = gt_count - tp
    fp = pred_count - tp
    total = float(cm.sum())
    per_class: dict[str, dict[str, float]] = {}
    ious, f1s = [], []
    for k in range(K):
        if gt_count[k] + pred_count[k] == 0:
            continue
        iou = tp[k] / (tp[k] + fp[k] + fn[k])
        f1 = 2 * tp[k] / (2 * tp[k] + fp[k] + fn[k])
        per_class[schema.classes[k]] = {"iou": float(iou), "f1": float(f1)}
        if k != 0:
            ious.append(iou)
            f1s.append(f1)
    return {
        "miou": float(np.mean(ious)) if ious else None,
        "mean_f1": float(np.mean(f1s)) if f1s else None,
        "pixel_acc": float(tp.sum() / total) if total else None,
        "coverage": float(1.0 - cm[:, K].sum() / total) if total else None,
        "per_class": per_class,
    }


def evaluate_labels(pred: np.ndarray, gt: np.ndarray, yaw: np.ndarray | None, schema: LabelSchema) -> dict:
    """Score predicted label maps against GT.

    pred, gt: uint8 [V,H,W] (255 = ignore); yaw: degrees [V] relative to the subject, or None.
    -> {"miou", "mean_f1", "pixel_acc", "coverage", "per_class": {name: {"iou", "f1"}},
        "buckets": {"frontal"|"mid"|"extreme": {"miou", "mean_f1", "pixel_acc", "n_views"}}}
    (values in 0..1; background appears in per_class but not in the means). Raises ValueError for
    mismatched shapes or labels outside the schema.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be [V,H,W] of the same shape, got {pred.shape} and {gt.shape}")
    K = schema.num_classes
    for name, arr in (("pred", pred), ("gt", gt)):
        bad = schema.validate_labels(arr)
        if len(bad):
            raise ValueError(f"{name} holds labels outside schema {schema.name}: {bad.tolist()[:5]}")
    cms = np.stack([confusion(pred[i], gt[i], K) for i in range(len(gt))]) if len(gt) else np.zeros((0, K, K + 1), np.int64)
    out = scores(cms.sum(axis=0), schema)
    out["buckets"] = {}
    if yaw is not None:
        yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
        if len(yaw) != len(gt):
            raise ValueError(f"yaw has {len(yaw)} values for {len(gt)} views")
        names = np.array([pose_bucket(y) for y in yaw])
        for bucket in POSE_BUCKETS:
            idx = np.nonzero(names == bucket)[0]
            if len(idx) == 0:
                continue
            s = scores(cms[idx].sum(axis=0), schema)
            out["buckets"][bucket] = {"miou": s["miou"], "mean_f1": s["mean_f1"], "pixel_acc": s["pixel_acc"],
                                      "n_views": int(len(idx))}
    return out


def scored_against(metrics: dict) -> str:
    """What a run's metrics.json was scored against: the capture's `labels_name` ("GT",
    "pseudo-GT", ...; GT_NAME for runs written before the field)."""
    name = metrics.get("labels_name")
    return name if isinstance(name, str) and name else GT_NAME
