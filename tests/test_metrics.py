"""Metrics on hand-made label maps with answers worked out by hand."""

import numpy as np
import pytest

from splatrefine.metrics import confusion, evaluate_labels
from splatrefine.schema import CELEBAMASK_HQ as S


def test_known_answer_with_ignore_and_pred_ignore():
    gt = np.array([[[0, 1, 1], [2, 2, 255]]], dtype=np.uint8)
    pred = np.array([[[0, 1, 2], [2, 255, 1]]], dtype=np.uint8)
    m = evaluate_labels(pred, gt, None, S)
    # skin: tp 1, fn 1 (the pred 1 on GT 255 is ignored) -> IoU 1/2, F1 2/3
    # l_brow: tp 1, fp 1, fn 1 (one of them a pred 255) -> IoU 1/3, F1 1/2
    assert m["per_class"]["skin"] == pytest.approx({"iou": 0.5, "f1": 2 / 3})
    assert m["per_class"]["l_brow"] == pytest.approx({"iou": 1 / 3, "f1": 0.5})
    assert m["per_class"]["background"] == pytest.approx({"iou": 1.0, "f1": 1.0})
    assert set(m["per_class"]) == {"background", "skin", "l_brow"}  # absent classes skipped
    assert m["miou"] == pytest.approx(5 / 12)  # background excluded
    assert m["mean_f1"] == pytest.approx(7 / 12)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["coverage"] == pytest.approx(4 / 5)
    assert m["buckets"] == {}


def test_false_positive_class_counts_and_perfect_is_one():
    gt = np.zeros((1, 4, 4), np.uint8)
    gt[0, :2] = 1
    pred = gt.copy()
    assert evaluate_labels(pred, gt, None, S)["miou"] == 1.0
    pred[0, 0, 0] = 10  # nose predicted, absent from GT: IoU 0 enters the mean
    m = evaluate_labels(pred, gt, None, S)
    assert m["per_class"]["nose"]["iou"] == 0.0
    assert m["per_class"]["skin"]["iou"] == pytest.approx(7 / 8)
    assert m["miou"] == pytest.approx((7 / 8 + 0.0) / 2)
    assert m["pixel_acc"] == pytest.approx(15 / 16)


def test_counts_are_pooled_over_views():
    gt = np.zeros((2, 2, 4), np.uint8)
    gt[0, 0, :] = 1  # 4 skin pixels in view 0
    gt[1, 0, 0] = 1  # 1 skin pixel in view 1
    pred = gt.copy()
    pred[1, 0, 0] = 0  # view 1 misses its only skin pixel
    m = evaluate_labels(pred, gt, None, S)
    assert m["per_class"]["skin"]["iou"] == pytest.approx(4 / 5)  # not the mean of 1.0 and 0.0


def test_buckets_by_yaw():
    gt = np.zeros((4, 2, 2), np.uint8)
    gt[:, 0, :] = 1
    pred = gt.copy()
    pred[1, 0, 0] = 0  # mid view: skin IoU 1/2
    pred[2, 0, :] = 17  # extreme view: skin all wrong
    m = evaluate_labels(pred, gt, np.array([0.0, 45.0, -80.0, 29.9]), S)
    b = m["buckets"]
    assert set(b) == {"frontal", "mid", "extreme"}
    assert b["frontal"] == pytest.approx({"miou": 1.0, "mean_f1": 1.0, "pixel_acc": 1.0, "n_views": 2})
    assert b["mid"]["miou"] == pytest.approx(0.5) and b["mid"]["pixel_acc"] == pytest.approx(0.75)
    assert b["extreme"]["miou"] == pytest.approx(0.0)  # skin 0 and hair 0
    assert b["extreme"]["n_views"] == 1
    only_frontal = evaluate_labels(gt[:1], gt[:1], np.array([10.0]), S)["buckets"]
    assert set(only_frontal) == {"frontal"}


def test_all_ignore_gt_and_confusion_shape():
    gt = np.full((1, 2, 2), 255, np.uint8)
    m = evaluate_labels(gt.copy(), gt, None, S)
    assert m["miou"] is None and m["pixel_acc"] is None
    cm = confusion(np.array([[255, 1]], np.uint8), np.array([[1, 1]], np.uint8), S.num_classes)
    assert cm.shape == (19, 20) and cm[1, 19] == 1 and cm[1, 1] == 1


def test_bad_input_raises():
    a = np.zeros((1, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        evaluate_labels(a, np.zeros((1, 2, 3), np.uint8), None, S)
    with pytest.raises(ValueError, match="outside schema"):
        evaluate_labels(a + 30, a, None, S)
    with pytest.raises(ValueError, match="yaw"):
        evaluate_labels(a, a, np.zeros(3), S)
