"""Evaluate a model on a split's reviewed images and record the result on its version.

mAP@0.5 and AP@[.5:.95] come from pycocotools (:mod:`napari_al.core.evaluation`). The result
is merged into the model version's metrics together with the labelling effort recorded when
the version was trained (or the current effort for a version trained elsewhere), so
:func:`effort_series` can plot mAP against annotation seconds for every model, whichever
front end trained or evaluated it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.workflow.errors import WorkflowError
from napari_al.core.workflow.examples import OnSkip, read_rows
from napari_al.core.workflow.training import labelling_effort

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

Progress = Callable[[int, int], None]


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """A JSON-friendly copy: numpy scalars become Python numbers, nested dicts kept."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        out[k] = _plain(v) if isinstance(v, dict) else (v.item() if hasattr(v, "item") else v)
    return out


def record_metrics(
    store: ProjectStore,
    version: int | None,
    extra: dict[str, Any],
    *,
    split: str | None = None,
    split_key: str = "split",
) -> None:
    """Merge ``extra`` into model version ``version``'s metrics (no-op for None or 0).

    ``split``: the split ``extra`` was measured on. When it is not ``val`` and the version's
    figures of this kind already come from ``val`` (``metrics[split_key] == "val"``), ``extra``
    goes under ``metrics["by_split"][split]`` instead: the val mAP is what the mAP-against-
    seconds curve plots, and a calibration fitted on val is what the loop uses, so a look at
    the train or test split must not replace them."""
    if not version:
        return
    for row in store.model_versions():
        if row.id == version:
            metrics = dict(row.metrics)
            if split not in (None, "val") and metrics.get(split_key) == "val":
                by_split = dict(metrics.get("by_split") or {})
                by_split[split] = {**by_split.get(split, {}), **_plain(extra)}
                metrics["by_split"] = by_split
            else:
                metrics.update(_plain(extra))
            store.set_model_metrics(version, metrics)
            return


@dataclass
class SplitPredictions:
    """A detector's predictions on a split's complete images, with their human boxes.

    ``rows``: the images (``ImageRow``); ``ground_truth[i]``: ``(boxes (K, 4) xyxy float64,
    labels (K,) int64 class indices, ignore regions (R, 4) xyxy)`` of ``rows[i]``;
    ``predictions[i]``: the detector's ``Predictions`` (boxes, labels, scores) of ``rows[i]``.
    """

    split: str
    rows: list[Any]
    ground_truth: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)


def complete_rows(store: ProjectStore, split: str) -> list[Any]:
    """The split's complete images; :class:`WorkflowError` (a ValueError) naming the splits that
    could be evaluated instead when it has none."""
    rows = [r for r in store.images(split=split) if r.review_state == "complete"]
    if not rows:
        others = sorted({r.split for r in store.images(review_state="complete")} - {split, "pool"})
        hint = (
            f" (this project has reviewed {', '.join(others)} images: choose one)" if others else ""
        )
        raise WorkflowError(
            f"no reviewed images in split {split!r} to evaluate on: mark some {split} images "
            f"complete or import a labelled split{hint}"
        )
    return rows


def predict_split(
    store: ProjectStore,
    detector: Detector,
    split: str = "val",
    *,
    progress: Progress | None = None,
    batch_size: int = 2,
    on_skip: OnSkip | None = None,
) -> SplitPredictions:
    """Run ``detector`` on ``split``'s complete images (``batch_size`` per forward pass) and
    read their human boxes: the input of :func:`evaluate_model` and of the calibration's
    measurement, so that both share one pass. An image whose file is missing or cannot be
    decoded is reported to ``on_skip`` (default: a logged warning) and left out of ``rows``
    (the metrics then count the others: ``images`` in the result). Raises
    :class:`WorkflowError` when the split has no complete image, or none readable."""
    classes = store.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    rows = complete_rows(store, split)
    out = SplitPredictions(split, [])
    for start in range(0, len(rows), batch_size):
        batch, images = read_rows(store, rows[start : start + batch_size], on_skip)
        out.rows.extend(batch)
        out.predictions.extend(detector.predict(images) if images else [])
        for r in batch:
            bx = store.boxes(image_id=r.id, statuses=HUMAN_STATUSES)
            regions = store.ignore_regions(image_id=r.id)
            out.ground_truth.append(
                (
                    np.asarray([b.xyxy for b in bx], np.float64).reshape(-1, 4),
                    np.asarray([index[b.class_id] for b in bx], np.int64),
                    np.asarray([g.xyxy for g in regions], np.float64).reshape(-1, 4),
                )
            )
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    if not out.rows:
        raise WorkflowError(
            f"none of the {len(rows)} reviewed {split} images can be read (see the warnings); "
            "restore the files ('napari-al info DIR' lists the unreadable ones)"
        )
    return out


def evaluate_model(
    store: ProjectStore,
    detector: Detector,
    split: str = "val",
    *,
    progress: Progress | None = None,
    record: bool = True,
    batch_size: int = 2,
    predictions: SplitPredictions | None = None,
) -> dict[str, Any]:
    """mAP@0.5 (``map50``), AP@[.5:.95] (``map``) and per-class AP of ``detector`` on the human
    boxes of ``split``'s complete images, plus ``split``, ``images`` and the effort keys.
    Detections on the images' ignore regions count neither as true nor as false positives.

    ``predictions``: the detector's predictions on the split from :func:`predict_split`
    (default: made here). With ``record`` the result is stored on the detector's model version.
    Raises :class:`~napari_al.core.workflow.errors.WorkflowError` (a ValueError) when the split
    has no complete image.
    """
    from napari_al.core.evaluation import evaluate

    if predictions is None:
        predictions = predict_split(
            store, detector, split, progress=progress, batch_size=batch_size
        )
    elif predictions.split != split:
        raise ValueError(f"predictions of split {predictions.split!r} given for {split!r}")
    classes = [c.name for c in store.classes()]
    out = _plain(evaluate(predictions.ground_truth, predictions.predictions, classes).as_dict())
    out["split"] = split
    out["images"] = len(predictions.rows)
    effort = _effort_of(store, detector.model_version)
    out.update(effort)
    if record:
        record_metrics(store, detector.model_version, out, split=split)
    return out


def _effort_of(store: ProjectStore, version: int) -> dict[str, float]:
    """The effort recorded when ``version`` was trained, else the current effort."""
    current = labelling_effort(store)
    for row in store.model_versions():
        if row.id == version:
            return {k: float(row.metrics.get(k, v)) for k, v in current.items()}
    return current


def effort_series(store: ProjectStore) -> list[dict[str, float]]:
    """Per model version with a recorded mAP@0.5: ``version``, ``map50``,
    ``annotation_seconds`` (seconds) and ``boxes_annotated``, oldest first."""
    rows = []
    for row in store.model_versions():
        m = row.metrics
        if m.get("map50") is None or "annotation_seconds" not in m:
            continue
        rows.append(
            {
                "version": float(row.id),
                "map50": float(m["map50"]),
                "annotation_seconds": float(m["annotation_seconds"]),
                "boxes_annotated": float(m.get("boxes_annotated", float("nan"))),
            }
        )
    return rows
