"""Self-training: which of the model's predictions on unreviewed images train as pseudo labels.

``TrainSettings.self_training`` = P (off by default): before a training run, the model about to
be fine-tuned (a recorded model version of the project) predicts a random sample (seeded by
the run's seed and the model version) of the unreviewed images (``unseen``, outside val and
test; at most ``self_training_images``, and never more than the reviewed images that train,
so a large pool does not swamp a few labelled images), on each image and on its horizontal
mirror (:meth:`Detector.scoring_views` with ``flip=True``, the view the ``consistency`` scorer
uses). A prediction becomes a pseudo label when

- it is confident: P(yes) >= P, with P(yes) from the model version's calibration
  (:func:`~napari_al.core.workflow.calibration.verify_rule`; the raw score where it has
  none), and
- it is stable under the flip (:func:`flip_stable`): the mirrored image's prediction,
  mapped back, matches it one-to-one with the same class and IoU >= :data:`FLIP_IOU`.

The pseudo labels are recomputed at each training, not stored: the model that makes them is
the one being fine-tuned, whose predictions on unreviewed images the store may not hold (the
simulator stores predictions on queried images only), and nothing needs a schema change. The
cost is two forward passes per sampled image per training. How they train:
:func:`~napari_al.core.workflow.examples.pseudo_label_examples`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.data import Predictions
from napari_al.core.scoring.base import match_boxes
from napari_al.core.workflow.calibration import verify_rule
from napari_al.core.workflow.examples import HELD_OUT_SPLITS, PseudoLabels, read_rows

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ImageRow, ProjectStore, TrainingSnapshot
    from napari_al.core.workflow.settings import TrainSettings

log = logging.getLogger(__name__)

#: IoU (after mapping the mirrored prediction back) at which a prediction is stable.
FLIP_IOU = 0.5
#: Images predicted per forward pass.
BATCH_SIZE = 2


def flip_stable(base: Predictions, flipped: Predictions, iou: float = FLIP_IOU) -> np.ndarray:
    """``(N,)`` bool: which of ``base``'s N boxes the ``flipped`` view confirms.

    ``flipped`` holds the predictions on the horizontally mirrored image, boxes already mapped
    back to original pixels (as :attr:`~napari_al.core.data.ScoringViews.flipped`). Boxes are
    matched one-to-one, greedily by IoU (:func:`~napari_al.core.scoring.base.match_boxes`),
    only between boxes of the same class; a base box is stable when matched at IoU >= ``iou``.
    """
    out = np.zeros(len(base), bool)
    if not len(base) or not len(flipped):
        return out
    overlap = box_iou(
        np.asarray(base.boxes, np.float64).reshape(-1, 4),
        np.asarray(flipped.boxes, np.float64).reshape(-1, 4),
    )
    same = np.asarray(base.labels).reshape(-1, 1) == np.asarray(flipped.labels).reshape(1, -1)
    rows, _ = match_boxes(np.where(same, overlap, -1.0), iou)
    out[rows] = True
    return out


def candidate_images(
    snapshot: TrainingSnapshot, limit: int, seed: int, version: int = 0
) -> list[ImageRow]:
    """A random sample (at most ``limit``, in id order) of the snapshot's ``unseen`` images
    outside val and test, seeded by ``seed`` and the model ``version`` (successive trainings
    with one seed see different images; a rerun sees the same ones)."""
    rows = [
        it.image
        for it in snapshot.images
        if it.image.review_state == "unseen" and it.image.split not in HELD_OUT_SPLITS
    ]
    if len(rows) > limit:
        pick = np.random.default_rng([seed, version]).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(pick.tolist())]
    return rows


def pseudo_labels(
    store: ProjectStore,
    snapshot: TrainingSnapshot,
    detector: Detector,
    settings: TrainSettings,
    reviewed: int,
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, PseudoLabels]:
    """Image id -> :class:`~napari_al.core.workflow.examples.PseudoLabels` for the sampled
    unreviewed images (module docstring); ``reviewed``: how many reviewed examples train (the
    sample is no larger). Empty when self-training is off, when ``detector`` is not a recorded
    model version of the project (a new detector's predictions teach nothing), or when there
    is nothing to sample. Unreadable images are logged and skipped."""
    threshold = settings.self_training
    version = int(detector.model_version or 0)
    if threshold is None or version <= 0 or reviewed <= 0:
        return {}
    limit = min(int(settings.self_training_images), int(reviewed))
    rows = candidate_images(snapshot, limit, settings.seed, version)
    rule = verify_rule(store)
    names = list(detector.classes)
    out: dict[int, PseudoLabels] = {}
    for start in range(0, len(rows), BATCH_SIZE):
        if should_stop is not None and should_stop():
            break
        batch, pixels = read_rows(store, rows[start : start + BATCH_SIZE])
        if not pixels:
            continue
        for row, views in zip(batch, detector.scoring_views(pixels, flip=True), strict=True):
            base = views.base
            assert views.flipped is not None
            p_yes = rule.probability_of_scores(
                base.scores, [names[int(k)] for k in base.labels], version
            )
            keep = (p_yes >= float(threshold)) & flip_stable(base, views.flipped)
            out[int(row.id)] = PseudoLabels(
                boxes=base.boxes[keep].astype(np.float32).reshape(-1, 4),
                labels=base.labels[keep].astype(np.int64),
                uncertain=base.boxes[~keep].astype(np.float32).reshape(-1, 4),
            )
    log.info(
        "self-training: %d pseudo labels on %d of %d sampled unreviewed images",
        sum(len(p.boxes) for p in out.values()),
        sum(bool(len(p.boxes)) for p in out.values()),
        len(rows),
    )
    return out
