"""What the store's labels teach: training examples, and the "already judged" rule.

Desai et al. 2019 (box-level active learning with partial labels): boxes a person accepted,
corrected or drew are full targets; unverified predictions on partly reviewed images are noisy
labels whose loss is damped by ``lambda_d``; rejected boxes are explicit background; ignore
regions give no loss. A prediction lying on an object a person already judged (IoU at least
:data:`JUDGED_IOU` with a human or rejected box) is neither a noisy label nor worth asking
about again: that rule is :func:`judged_mask`, used by training and by box queries alike.

Centre clicks (:mod:`napari_al.core.clicks`): the box proposed for a click (status ``pseudo``,
source ``click``) trains, until the person confirms it, as a noisy label damped by
``lambda_d`` like any unverified box (the click says an object is there; the box is the
machine's guess), and predictions on it (IoU >= :data:`JUDGED_IOU`) add no second noisy
label. Accepted or corrected, it is a full target. Rejected, it is not background (the click
still says an object is there, only the box was wrong): its area becomes an ignore region.

Rich verification answers (:mod:`napari_al.core.answers`, Benenson's slides): a box answered
``part``, ``container`` or ``several`` (status ``rejected``, source the answer) marks an object
whose box it is not, and the refined box proposed for it (status ``pseudo``, source
``refined``) trains like a click box, judged by human and background boxes only (not by the
box it was proposed for). Such a rejected box (a click, refined or answered box:
:data:`~napari_al.core.data.OBJECT_SOURCES`) is an ignore region **until the object is
labelled**: once a training box of the image (a human box or a noisy label) has its centre
inside it or holds at least :data:`EXPLAINED_FRACTION` of its area, the region is dropped, since
the engine drops every box centred in an ignore region (``engine/losses.py``), which would
otherwise drop the very box that answers the question (the refined box inside a ``container``,
the clicks inside a ``several``, a box drawn over a rejected click box).

Region questions (:mod:`napari_al.core.workflow.regions`): a region answered "no" to "any more
<class> here?" is a ``rejected`` box of that class with source ``region``. It trains as
explicit background, like a rejected box (the engine's background is class-agnostic: anchors
and proposals at IoU >= 0.5 with it; the engine drops it where it overlaps a labelled box), and
the image's unverified predictions of that class centred in it are not noisy labels (the
answer says no unlabelled object of the class is there). It does not make other predictions
or proposals (click, refined boxes) count as judged.

Large images (a side over ``TileSettings.tile_above``) train in crops of the detector's input
size from their reviewed regions, the rest of the image neither positive nor background:
:mod:`napari_al.core.workflow.crops`. Inside a reviewed region the rules above apply as on a
``complete`` image.

Self-training (``TrainSettings.self_training``, off by default; :func:`pseudo_label_examples`,
chosen by :mod:`napari_al.core.workflow.selftraining`): on a sample of *unreviewed* images,
the model's confident predictions that are stable under a horizontal flip train as pseudo
labels, damped by ``lambda_d`` like the noisy labels above.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import box_iou, inside_fraction
from napari_al.core.data import (
    CLICK_SOURCE,
    HUMAN_STATUSES,
    OBJECT_SOURCES,
    REFINED_SOURCE,
    REGION_SOURCE,
)
from napari_al.core.images import MAX_SIDE
from napari_al.core.lazy_images import reads_lazily
from napari_al.core.regions import inside
from napari_al.core.workflow.crops import (
    TileShape,
    crop_examples,
    default_tile_shape,
    trains_in_crops,
)
from napari_al.core.workflow.settings import TileSettings

if TYPE_CHECKING:
    from napari_al.core.engine import TrainingExample
    from napari_al.core.store import ImageRow, ProjectStore, TrainingSnapshot

log = logging.getLogger(__name__)

#: IoU with a human or rejected box at or above which a prediction counts as already judged.
JUDGED_IOU = 0.5
#: Splits held out for evaluation: they never train, never seed a core-set, never fit the
#: missed-object regressor and do not count as labelling effort.
HELD_OUT_SPLITS = ("val", "test")
#: Box statuses that record a person's judgement (a rejected box is judged background).
JUDGED_STATUSES = (*HUMAN_STATUSES, "rejected")

#: A rejected box that marks an object (module docstring) stops being an ignore region once a
#: training box holds this fraction of its area (or has its centre inside it).
EXPLAINED_FRACTION = 0.5
#: Sources of the machine's proposals for an object a person said is there (click, refined).
PROPOSAL_SOURCES = (CLICK_SOURCE, REFINED_SOURCE)

#: Called with (image id, message) for each image that could not be read and was skipped.
OnSkip = Callable[[int, str], None]


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as the detector's input: uint8 ``(H, W, 3)`` (16-bit, float, gray and
    palette images converted by :mod:`napari_al.core.images`). Raises OSError/ValueError."""
    from napari_al.core.images import read_image, to_rgb_uint8

    return to_rgb_uint8(read_image(path))


def skip_message(path: Path | str, exc: BaseException) -> str:
    """``PATH: reason`` for an image left out of a pass, the path once: the readers' errors
    often start with it already (``LazyImage``, ``read_image``)."""
    text = str(exc)
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


def _warn_skip(image_id: int, message: str) -> None:
    log.warning("image %d skipped: %s", image_id, message)


def read_rows(
    store: ProjectStore, rows: Sequence[ImageRow], on_skip: OnSkip | None = None
) -> tuple[list[ImageRow], list[np.ndarray]]:
    """The images of ``rows`` that can be read, and those rows. A missing, corrupt or
    unsupported file is reported to ``on_skip`` (default: a logged warning) and left out, so
    one bad file does not stop a pass over the pool."""
    ok, images = [], []
    for row in rows:
        try:
            images.append(load_rgb(store.abs_path(row)))
        except (OSError, ValueError) as exc:
            (on_skip or _warn_skip)(int(row.id), skip_message(store.abs_path(row), exc))
            continue
        ok.append(row)
    return ok, images


def judged_mask(
    boxes: np.ndarray | Sequence[Sequence[float]],
    judged: np.ndarray | Sequence[Sequence[float]],
    *,
    iou: float = JUDGED_IOU,
) -> np.ndarray:
    """Which of ``boxes`` (``(n, 4)`` xyxy pixels) lie on something a person already judged:
    IoU >= ``iou`` (default :data:`JUDGED_IOU`; the simulator passes its ``verify_iou``) with
    any of ``judged`` (``(m, 4)``). Returns bool ``(n,)``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    j = np.asarray(judged, np.float64).reshape(-1, 4)
    if not len(b) or not len(j):
        return np.zeros(len(b), bool)
    return box_iou(b, j).max(axis=1) >= iou


def judged_boxes(store: ProjectStore, image_id: int) -> np.ndarray:
    """The image's human and rejected boxes, ``(m, 4)`` float64 xyxy pixels."""
    rows = store.boxes(image_id, statuses=JUDGED_STATUSES)
    return np.asarray([b.xyxy for b in rows], np.float64).reshape(-1, 4)


def training_examples(
    store: ProjectStore,
    snapshot: TrainingSnapshot,
    exclude_splits: Sequence[str] = HELD_OUT_SPLITS,
    noisy_min_score: float = 0.0,
    *,
    tiles: TileSettings | None = None,
    tile_shape: TileShape | None = None,
) -> list[TrainingExample]:
    """Partial-label training examples from a consistent snapshot of the store.

    Per image (not in ``exclude_splits``, and reviewed at least partly): accepted, corrected
    and drawn boxes are full targets; ``pseudo`` boxes, and ``predicted`` boxes of a
    ``partial`` image scoring at least ``noisy_min_score``, are noisy labels unless already
    judged (:func:`judged_mask`; a prediction on an unconfirmed click box counts as judged);
    rejected boxes are background, except a rejected click box, which is ignored (module
    docstring); a region answered "no" is background and keeps the predictions of its class
    centred in it from being noisy labels (module docstring); ignore regions give no loss; a
    ``complete`` image with no boxes is a negative. ``unseen`` images teach nothing yet.
    Examples that teach nothing are left out.

    An image with a side over ``tiles.tile_above`` (default :class:`TileSettings`) trains in
    crops of ``tile_shape(height, width)`` (default: a new workflow detector's input, 480 x
    640 px; the training workflow passes the detector's own) from its reviewed regions, or
    anywhere once it is ``complete``, read window by window; the area outside them is
    neither positive nor background (:mod:`napari_al.core.workflow.crops`). Every other image
    trains whole, as before; one over :data:`~napari_al.core.images.MAX_SIDE` px per side
    that cannot be read window by window (not a tiled TIFF) is left out with a logged warning.
    """
    tiles = tiles or TileSettings()
    index = {c.id: i for i, c in enumerate(snapshot.classes)}
    examples: list[TrainingExample] = []
    for item in snapshot.images:
        row = item.image
        if row.split in exclude_splits or row.review_state == "unseen":
            continue
        path = store.abs_path(row)
        crops = trains_in_crops(row, tiles)
        if max(row.width, row.height) > MAX_SIDE and not (crops and reads_lazily(path)):
            log.warning(
                "image %d (%s) left out of training: larger than %d px per side and not "
                "a tiled TIFF read window by window (docs/large-images.md)",
                row.id,
                row.path,
                MAX_SIDE,
            )
            continue
        if crops:
            full = _example(path, "complete", item, index, noisy_min_score)
            examples += crop_examples(full, item, tile_shape or default_tile_shape, tiles.overlap)
            continue
        example = _example(path, row.review_state, item, index, noisy_min_score)
        if example.informative:
            examples.append(example)
    return examples


def _example(
    path: Path, review_state: str, item: Any, index: dict[int, int], noisy_min_score: float
) -> TrainingExample:
    from napari_al.core.engine import TrainingExample

    judged = [
        b.xyxy for b in item.boxes if b.status in JUDGED_STATUSES and b.source != REGION_SOURCE
    ]
    empty = [b for b in item.boxes if b.status == "rejected" and b.source == REGION_SOURCE]
    clicked = [b.xyxy for b in item.boxes if b.status == "pseudo" and b.source in PROPOSAL_SOURCES]
    # a proposal is not judged by the box it was proposed for (rejected, marking an object)
    background_or_human = [
        b.xyxy
        for b in item.boxes
        if b.status in JUDGED_STATUSES
        and not (b.status == "rejected" and b.source in OBJECT_SOURCES)
        and b.source != REGION_SOURCE
    ]
    boxes, labels, noisy, background, objects = [], [], [], [], []
    ignore = [r.xyxy for r in item.ignore_regions]
    for b in item.boxes:
        if b.status in HUMAN_STATUSES:
            boxes.append(b.xyxy), labels.append(index[b.class_id]), noisy.append(False)
        elif b.status == "pseudo" or (
            b.status == "predicted"
            and review_state == "partial"
            and (b.score is None or b.score >= noisy_min_score)
        ):
            seen = background_or_human if b.status == "pseudo" else [*judged, *clicked]
            if b.status == "predicted" and _in_empty(b, empty):
                continue
            if not judged_mask([b.xyxy], seen)[0]:
                boxes.append(b.xyxy), labels.append(index[b.class_id]), noisy.append(True)
        elif b.status == "rejected" and b.source in OBJECT_SOURCES:
            objects.append(b.xyxy)  # a wrong box for a real object: no loss there
        elif b.status == "rejected":
            background.append(b.xyxy)
    ignore.extend(r for r, done in zip(objects, explained(objects, boxes), strict=True) if not done)
    return TrainingExample(
        path=path,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        noisy=np.asarray(noisy, bool),
        background_boxes=np.asarray(background, np.float32).reshape(-1, 4),
        ignore_regions=np.asarray(ignore, np.float32).reshape(-1, 4),
        complete=review_state == "complete",
        loader=load_rgb,
    )


@dataclass(frozen=True)
class PseudoLabels:
    """What self-training keeps of the model's predictions on one unreviewed image.

    ``boxes`` ``(K, 4)`` float32 xyxy pixels and ``labels`` ``(K,)`` int64 0-based class
    indices (the project's class order): the pseudo labels; ``uncertain`` ``(U, 4)`` float32:
    the image's other predictions (not confident enough, or not stable under the flip), which
    become ignore regions (no loss) rather than background.
    """

    boxes: np.ndarray
    labels: np.ndarray
    uncertain: np.ndarray


def pseudo_label_examples(
    store: ProjectStore,
    snapshot: TrainingSnapshot,
    pseudo: dict[int, PseudoLabels],
    exclude_splits: Sequence[str] = HELD_OUT_SPLITS,
) -> list[TrainingExample]:
    """Training examples of self-training: one per ``unseen`` image of ``snapshot`` in
    ``pseudo`` (image id -> :class:`PseudoLabels`) with at least one pseudo label.

    Self-training "uses high-confidence predictions on unlabeled samples as if they were
    actual annotations" (the survey, Active Learning and the Various Flavors of Supervision for
    Object Detection, 2025, section Semi-Supervised Learning, after Zoph et al. 2020); here
    "high confidence" is a calibrated P(yes) and agreement with the horizontally flipped image
    (the equivariance Benenson's slides use for self-consistency, trusted where it holds). The
    pseudo labels are noisy labels (``noisy`` True: weight ``lambda_d``, Desai et al. 2019
    eq. 3): the same kind of unverified model box as on a partly reviewed image. The image is
    not ``complete`` (background weighs ``partial_background_weight``, as on partly reviewed
    images), and the survey's warning that self-training "reinforces possibly correct,
    low-confidence predictions as background" is met by making the image's other predictions
    ignore regions, except those a pseudo label explains (:func:`explained`: the engine drops
    a box centred in an ignore region). A prediction on a box a person judged
    (:func:`judged_mask`) is no pseudo label; the image's own ignore regions stay.
    """
    from napari_al.core.engine import TrainingExample

    examples: list[TrainingExample] = []
    for item in snapshot.images:
        row = item.image
        labels = pseudo.get(int(row.id))
        if labels is None or row.split in exclude_splits or row.review_state != "unseen":
            continue
        seen = [b.xyxy for b in item.boxes if b.status in JUDGED_STATUSES or b.status == "pseudo"]
        keep = ~judged_mask(labels.boxes, seen)
        boxes = np.asarray(labels.boxes, np.float32).reshape(-1, 4)[keep]
        if not len(boxes):
            continue
        uncertain = np.asarray(labels.uncertain, np.float32).reshape(-1, 4)
        uncertain = uncertain[~explained(uncertain, boxes)]
        ignore = [r.xyxy for r in item.ignore_regions]
        examples.append(
            TrainingExample(
                path=store.abs_path(row),
                boxes=boxes,
                labels=np.asarray(labels.labels, np.int64).reshape(-1)[keep],
                noisy=np.ones(len(boxes), bool),
                ignore_regions=np.concatenate(
                    [np.asarray(ignore, np.float32).reshape(-1, 4), uncertain]
                ),
                complete=False,
                loader=load_rgb,
            )
        )
    return examples


def explained(
    regions: np.ndarray | Sequence[Sequence[float]], boxes: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """``(R,)`` bool: which ``regions`` (``(R, 4)`` xyxy, rejected boxes that mark an object)
    a training box of ``boxes`` (``(B, 4)``) now labels: a box centred inside the region, or
    holding at least :data:`EXPLAINED_FRACTION` of its area (module docstring)."""
    r = np.asarray(regions, np.float64).reshape(-1, 4)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(r) or not len(b):
        return np.zeros(len(r), bool)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    centred = (
        (r[:, None, 0] <= cx)
        & (cx <= r[:, None, 2])
        & (r[:, None, 1] <= cy)
        & (cy <= r[:, None, 3])
    )
    return (centred | (inside_fraction(r, b) >= EXPLAINED_FRACTION)).any(axis=1)


def _in_empty(box: Any, empty: Sequence[Any]) -> bool:
    """Whether ``box`` (a box row) has its centre in one of ``empty`` (region rows answered
    "no") of its class."""
    if not empty:
        return False
    regions = [e.xyxy for e in empty]
    return bool(inside([box.xyxy], [box.class_id], regions, [e.class_id for e in empty])[0])


def labels_hash(snapshot: TrainingSnapshot) -> str:
    """A short hash of the labels a model was trained on (recorded with the model version)."""
    h = hashlib.sha256()
    for item in snapshot.images:
        h.update(f"{item.image.sha256}:{item.image.review_state}".encode())
        for b in item.boxes:
            h.update(
                f"{b.x1:.2f},{b.y1:.2f},{b.x2:.2f},{b.y2:.2f},{b.class_id},{b.status}".encode()
            )
        for r in item.reviewed_regions:  # none: the hash of a project without them is unchanged
            h.update(f"reviewed:{r.x1:.2f},{r.y1:.2f},{r.x2:.2f},{r.y2:.2f}".encode())
    return h.hexdigest()[:16]
