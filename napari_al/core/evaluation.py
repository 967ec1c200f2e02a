"""Detection metrics computed by pycocotools: mAP@0.5 and COCO AP@[.5:.95], per class.

pycocotools is used as is (no hand-written matching). The quirks handled here:

- image, annotation and category ids start at 1 (category id = class index + 1);
- ground truth needs ``area`` (box area, used by the area ranges) and ``iscrowd = 0``;
- ignore regions (VOC ``difficult``, COCO ``iscrowd``, the store's ignore regions, which have
  no class) go in as ``iscrowd = 1`` annotations of every category, so COCOeval ignores them
  as it ignores crowds: a detection that matches no ordinary box but overlaps a region
  (intersection over the *detection's* area, COCOeval's crowd IoU, at the same thresholds)
  counts neither as a true nor as a false positive, and a region is never a miss. mAP@0.5
  reads the same evaluation, so both metrics ignore them. (The VOC devkit ignores detections
  matched to a ``difficult`` box by ordinary IoU; the two agree for a detection lying inside
  the region);
- boxes go in as ``[x, y, w, h]``; modern pycocotools computes box IoU without the old "+1"
  pixel convention, so xyxy pixel-edge boxes convert exactly;
- AP is COCO's 101-point interpolated precision averaged over recall (not VOC's all-point AP,
  which can differ by about a point); at most ``max_dets`` (default 100) detections per image
  count, highest scores first;
- its progress prints are silenced.

Classes with no ground-truth box get ``NaN`` per-class AP and are left out of the means; if no
class has ground truth both means are ``NaN``. With no predictions at all every class with ground
truth has AP 0.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_al.core.data import Predictions


@dataclass
class EvalResult:
    """Detection quality on a set of images."""

    map50: float
    map: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    n_images: int = 0
    n_gt: int = 0
    n_pred: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain types (NaN kept as float), e.g. for checkpoint metadata or JSON."""
        return {
            "map50": float(self.map50),
            "map": float(self.map),
            "per_class": {
                k: {kk: float(vv) for kk, vv in v.items()} for k, v in self.per_class.items()
            },
            "n_images": int(self.n_images),
            "n_gt": int(self.n_gt),
            "n_pred": int(self.n_pred),
        }


def _gt_parts(g: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (K, 4), labels (K,), ignore regions (R, 4))`` of one image's ground truth."""
    ignore: Any = ()
    if isinstance(g, Mapping):
        boxes, labels = g["boxes"], g["labels"]
        ignore = g.get("ignore_regions", ())
    elif isinstance(g, Predictions):
        boxes, labels = g.boxes, g.labels
    else:
        boxes, labels = g[0], g[1]
        if len(g) > 2:
            ignore = g[2]
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64).reshape(-1),
        np.asarray(ignore, np.float64).reshape(-1, 4),
    )


def _pred_parts(p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(p, Predictions):
        boxes, labels, scores = p.boxes, p.labels, p.scores
    elif isinstance(p, Mapping):
        boxes, labels, scores = p["boxes"], p["labels"], p["scores"]
    else:
        boxes, labels, scores = p[0], p[1], p[2]
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64).reshape(-1),
        np.asarray(scores, np.float64).reshape(-1),
    )


def _xywh(b: np.ndarray) -> list[float]:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def _gt_annotation(
    ann_id: int, image_id: int, label: int, box: np.ndarray, iscrowd: int
) -> dict[str, Any]:
    """A COCO ground-truth annotation of a 0-based ``label`` and an xyxy ``box``."""
    xywh = _xywh(box)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": label + 1,
        "bbox": xywh,
        "area": max(xywh[2], 0.0) * max(xywh[3], 0.0),
        "iscrowd": iscrowd,
    }


def evaluate(
    ground_truth: Sequence[Any],
    predictions: Sequence[Any],
    classes: Sequence[str],
    *,
    max_dets: int = 100,
) -> EvalResult:
    """mAP@0.5 and AP@[.5:.95] (overall and per class) with pycocotools.

    ``ground_truth[i]``: ``(boxes (K, 4) xyxy, labels (K,) 0-based)`` or a dict with those keys,
    optionally with ignore regions of no class: ``(boxes, labels, regions (R, 4) xyxy)`` or the
    key ``ignore_regions`` (ignored as COCOeval ignores crowds; see the module docstring);
    ``predictions[i]``: a :class:`Predictions`, a dict with ``boxes, labels, scores`` or such a
    tuple; one entry per image, in the same order.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(predictions):
        raise ValueError("ground truth and predictions must have one entry per image")
    n_classes = len(classes)
    images, annotations, detections = [], [], []
    n_gt_per_class = np.zeros(n_classes, np.int64)
    n_pred_per_class = np.zeros(n_classes, np.int64)
    for i, (g, p) in enumerate(zip(ground_truth, predictions, strict=True)):
        gb, gl, gi = _gt_parts(g)
        pb, pl, ps = _pred_parts(p)
        # images need no real size: bbox evaluation never uses it
        images.append({"id": i + 1, "width": 0, "height": 0})
        for b, lab in zip(gb, gl, strict=True):
            if not 0 <= lab < n_classes:
                raise ValueError(f"ground-truth label {lab} outside 0..{n_classes - 1}")
            annotations.append(_gt_annotation(len(annotations) + 1, i + 1, int(lab), b, 0))
            n_gt_per_class[lab] += 1
        for b in gi:  # a region of no class: a crowd of every category
            for c in range(n_classes):
                annotations.append(_gt_annotation(len(annotations) + 1, i + 1, c, b, 1))
        for b, lab, s in zip(pb, pl, ps, strict=True):
            if not 0 <= lab < n_classes:
                raise ValueError(f"predicted label {lab} outside 0..{n_classes - 1}")
            detections.append(
                {
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "bbox": _xywh(b),
                    "score": float(s),
                }
            )
            n_pred_per_class[lab] += 1
    categories = [{"id": c + 1, "name": str(name)} for c, name in enumerate(classes)]

    nan = float("nan")
    per_class: dict[str, dict[str, float]] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [T (IoU .5:.95), R (101 recalls), K, A (areas), M (maxDets)]
    iou_thrs = ev.params.iouThrs
    i50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    ap50s, aps = [], []
    for c, name in enumerate(classes):
        pc = precision[:, :, c, 0, -1]
        if n_gt_per_class[c] == 0 or (pc < 0).all():
            ap50, ap = nan, nan
        else:
            p50 = pc[i50]
            ap50 = float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else 0.0
            ap = float(np.mean(pc[pc > -1]))
            ap50s.append(ap50)
            aps.append(ap)
        per_class[str(name)] = {
            "ap50": ap50,
            "ap": ap,
            "n_gt": float(n_gt_per_class[c]),
            "n_pred": float(n_pred_per_class[c]),
        }
    return EvalResult(
        map50=float(np.mean(ap50s)) if ap50s else nan,
        map=float(np.mean(aps)) if aps else nan,
        per_class=per_class,
        n_images=len(images),
        n_gt=int(n_gt_per_class.sum()),
        n_pred=len(detections),
    )


def is_nan(x: float) -> bool:
    """``math.isnan`` that accepts None (no value) as NaN."""
    return x is None or math.isnan(x)
