"""Possibly missed objects: low-threshold candidates that no known box covers.

The survey seed asks active learning to target false negatives too (Nakamura et al. 2024):
candidates the detector scores above ``min_score`` but below its display threshold, overlapping
no shown prediction and no human box (IoU below ``max_iou``), are shown to the person as
suggestions (magenta in the viewer) and drive the ``missed`` scorer. A candidate centred in a
region the person answered "no" for its class (:mod:`napari_al.core.workflow.regions`) is not
suggested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.workflow.examples import load_rgb
from napari_al.core.workflow.regions import known_empty
from napari_al.core.workflow.settings import SuggestSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

#: One suggestion: (xyxy in image pixels, candidate score 0-1, class index).
Suggestion = tuple[tuple[float, float, float, float], float, int]


def suggest_missed(
    store: ProjectStore,
    detector: Detector,
    image_id: int,
    settings: SuggestSettings | None = None,
) -> list[Suggestion]:
    """Possibly missed objects on ``image_id``, best first, at most ``settings.limit``.

    Known boxes are every box of the image except rejected ones. An unreadable image yields
    no suggestion (the predict and rank passes report it).
    """
    from napari_al.core.scoring.missed import possibly_missed

    s = settings or SuggestSettings()
    row = store.image(image_id)
    try:
        pixels = load_rgb(store.abs_path(row))
    except (OSError, ValueError):
        return []
    views = detector.scoring_views([pixels], candidates=True)[0]
    missed = possibly_missed(views, iou_thresh=s.max_iou, min_score=s.min_score)
    if len(missed) == 0:
        return []
    boxes = np.asarray(missed.boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.ones(len(boxes), bool)
    known = [b.xyxy for b in store.boxes(image_id=image_id) if b.status != "rejected"]
    if known:
        keep &= box_iou(boxes, np.asarray(known, np.float64)).max(axis=1) < s.max_iou
    ids = [c.id for c in store.classes()]
    labels = [ids[int(k)] if 0 <= int(k) < len(ids) else -1 for k in missed.labels]
    keep &= ~known_empty(store, image_id, boxes, labels)
    out: list[Suggestion] = []
    for i in np.flatnonzero(keep)[: s.limit]:
        b = boxes[i]
        out.append(
            (
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                float(missed.scores[i]),
                int(missed.labels[i]),
            )
        )
    return out
