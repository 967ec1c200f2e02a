"""Evaluation with pycocotools against hand-computed average precision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_al.core.data import Predictions
from napari_al.core.evaluation import evaluate

CLASSES = ["a", "b", "c"]


def _pred(boxes, labels, scores) -> dict:
    return {"boxes": np.array(boxes, float), "labels": np.array(labels), "scores": np.array(scores)}


def test_hand_computed_ap_with_a_false_positive() -> None:
    """GT: 2 boxes of class a. Detections by score: TP, FP, TP.

    Precision/recall: (1, .5), (.5, .5), (2/3, 1). COCO interpolates precision at 101 recall
    points: r <= .5 -> 1 (51 points), .5 < r <= 1 -> 2/3 (50 points)."""
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    pred = [_pred([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7])]
    r = evaluate(gt, pred, CLASSES)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert r.map50 == pytest.approx(expected, abs=1e-9)
    assert r.map == pytest.approx(expected, abs=1e-9)  # exact boxes: same at every IoU
    assert r.per_class["a"]["ap50"] == pytest.approx(expected, abs=1e-9)
    assert math.isnan(r.per_class["b"]["ap50"]) and math.isnan(r.per_class["c"]["ap"])
    assert (r.n_images, r.n_gt, r.n_pred) == (1, 2, 3)


def test_iou_thresholds_for_ap_50_95() -> None:
    """One GT, one detection with IoU 0.62: a hit at IoU .50, .55, .60 only -> AP = 3/10."""
    gt = [(np.array([[0, 0, 10, 10]]), np.array([1]))]
    pred = [_pred([[0, 0, 10, 6.2]], [1], [0.8])]
    r = evaluate(gt, pred, CLASSES)
    assert r.map50 == pytest.approx(1.0)
    assert r.map == pytest.approx(0.3)


def test_boxes_are_pixel_edges_without_plus_one() -> None:
    """GT [0, 0, 4, 4], detection [0, 0, 4, 1.9]: as pixel edges IoU = 7.6 / 16 = 0.475, a
    miss; the old "+1" convention would give (5 x 2.9) / (5 x 5) = 0.58, a hit."""
    gt = [(np.array([[0, 0, 4, 4]]), np.array([0]))]
    pred = [_pred([[0, 0, 4, 1.9]], [0], [0.9])]
    assert evaluate(gt, pred, CLASSES).map50 == 0.0


def test_two_classes_and_two_images_mean_over_classes_with_gt() -> None:
    gt = [
        (np.array([[0, 0, 10, 10]]), np.array([0])),
        (np.array([[5, 5, 25, 25], [40, 40, 60, 60]]), np.array([1, 0])),
    ]
    pred = [
        Predictions(
            boxes=np.array([[0, 0, 10, 10]], np.float32),
            labels=np.array([0]),
            scores=np.array([0.9], np.float32),
            probs=np.zeros((1, 4), np.float32),
            features=np.zeros((1, 0), np.float32),
            embedding=np.zeros(0, np.float32),
        ),
        (
            np.array([[40, 40, 60, 60], [100, 100, 120, 120]]),
            np.array([0, 2]),
            np.array([0.8, 0.99]),
        ),
    ]
    r = evaluate(gt, pred, CLASSES)
    assert r.per_class["a"]["ap50"] == pytest.approx(1.0)  # both a's found, no a false positive
    assert r.per_class["b"]["ap50"] == 0.0  # missed
    assert math.isnan(r.per_class["c"]["ap50"])  # no ground truth: a false positive is no AP
    assert r.map50 == pytest.approx(0.5)


def test_no_predictions_and_no_ground_truth() -> None:
    gt = [(np.array([[0, 0, 10, 10]]), np.array([2])), (np.zeros((0, 4)), np.zeros(0))]
    empty = [_pred(np.zeros((0, 4)), [], []), _pred(np.zeros((0, 4)), [], [])]
    r = evaluate(gt, empty, CLASSES)
    assert r.map50 == 0.0 and r.map == 0.0 and r.per_class["c"]["ap50"] == 0.0
    r = evaluate([(np.zeros((0, 4)), np.zeros(0))], [_pred([[0, 0, 5, 5]], [0], [0.5])], CLASSES)
    assert math.isnan(r.map50) and math.isnan(r.map)


def test_pycocotools_prints_are_silenced(capsys) -> None:
    gt = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    evaluate(gt, [_pred([[0, 0, 10, 10]], [0], [0.9])], CLASSES)
    assert capsys.readouterr().out == ""


def test_bad_labels_are_refused() -> None:
    gt = [(np.array([[0, 0, 10, 10]]), np.array([3]))]
    with pytest.raises(ValueError):
        evaluate(gt, [_pred(np.zeros((0, 4)), [], [])], CLASSES)
    with pytest.raises(ValueError):
        evaluate(gt[:0], [_pred(np.zeros((0, 4)), [], [])], CLASSES)


def test_detections_on_ignore_regions_are_neither_true_nor_false_positives() -> None:
    """As COCOeval ignores crowds and the VOC devkit ``difficult`` boxes (issue 16 item 6).

    GT: one ``a`` box and an ignore region of no class. Detections by score: one inside the
    region (``a``), one of class ``b`` on the region, then the true box. Counted as false
    positives, they would halve AP; ignored, AP is 1 at every IoU (mAP@0.5 included), and
    the region is not a missed object either."""
    boxes, labels = np.array([[0, 0, 10, 10]]), np.array([0])
    region = np.array([[20, 20, 40, 40]])
    pred = [_pred([[22, 22, 30, 30], [20, 20, 40, 40], [0, 0, 10, 10]], [0, 1, 0], [0.9, 0.8, 0.7])]
    plain = evaluate([(boxes, labels)], pred, CLASSES)
    assert plain.map50 == pytest.approx((51 * 1 / 2 + 50 * 1 / 2) / 101)
    for gt in (
        (boxes, labels, region),
        {"boxes": boxes, "labels": labels, "ignore_regions": region},
    ):
        r = evaluate([gt], pred, CLASSES)
        assert r.map50 == pytest.approx(1.0) and r.map == pytest.approx(1.0)
        assert r.per_class["a"]["ap50"] == pytest.approx(1.0)
        assert math.isnan(r.per_class["b"]["ap50"])  # a region is no ground truth of b
        assert (r.n_gt, r.n_pred) == (1, 3)
    # a region alone: nothing to find, nothing missed
    r = evaluate(
        [(np.zeros((0, 4)), np.zeros(0), region)], [_pred([[20, 20, 40, 40]], [0], [0.9])], CLASSES
    )
    assert math.isnan(r.map50) and r.n_gt == 0


def test_evaluate_model_ignores_the_store_ignore_regions(tmp_path) -> None:
    """The workflow passes the store's ignore regions to the evaluation."""
    from PIL import Image

    from napari_al.core.data import BoxRecord, Dataset, ImageRecord
    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow import evaluate_model

    class Detector:
        model_version = 0

        def predict(self, images):  # type: ignore[no-untyped-def]
            return [_pred([[20, 20, 40, 40], [0, 0, 10, 10]], [0, 0], [0.9, 0.7]) for _ in images]

    path = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(path)
    rec = ImageRecord(path, 64, 48, [BoxRecord(0, 0, 10, 10, "a")], "val", True)
    with ProjectStore.create(tmp_path) as store:
        store.import_dataset(Dataset(classes=["a"], images=[rec]))
        before = evaluate_model(store, Detector(), "val", record=False)["map50"]
        store.add_ignore_region(store.images()[0].id, (20, 20, 40, 40))
        after = evaluate_model(store, Detector(), "val", record=False)["map50"]
    assert before == pytest.approx(0.5, abs=0.01) and after == pytest.approx(1.0)
