"""Rich verification answers through the workflow: the one path the widget's answer keys, the
notebook ``Session`` and the simulator's oracle share (issue 13, item 3).

A person shown a box answers one of :data:`napari_al.core.answers.ANSWERS` (Benenson's
"Human-in-the-loop annotations" slides, ``../shared/seeds``: "yes/no or
yes/part/container/mixed/missed", after Papadopoulos et al., CVPR 2016). :func:`answer_box`
records the answer as ONE user action (one transaction, one logged action, undoable by the
annotator) and returns the follow-up question:

- ``yes`` / ``no`` / ``wrong_class``: the store's ``accept`` / ``reject`` / ``set_class``; a
  training target or background; no follow-up;
- ``part`` / ``container``: the box is kept out of training (status ``rejected``, source the
  answer: an ignore region until the object is labelled, :mod:`~napari_al.core.workflow.examples`)
  and, in the same action, the refined box (:func:`napari_al.core.answers.refine_box`: the best
  candidate of the box's class holding it / inside it) is stored ``pseudo`` with source
  ``refined``, awaiting yes/no (follow-up ``verify``); without a fitting candidate the person
  draws the box (follow-up ``draw``);
- ``several``: the box becomes an ignore region the same way, and the person clicks the objects
  in it (follow-up ``click``: centre clicks, :mod:`napari_al.core.workflow.clicks`).

The candidates: the model's low-threshold candidates of the image
(:func:`~napari_al.core.workflow.clicks.click_candidates`) when given, or when a detector
trained in the project is at hand (it runs here, blocking); else the image's stored
predictions (:func:`stored_candidates`). Their class probabilities go through the model
version's calibration, as for clicks; candidates lying on a box a person already labelled or
rejected as background (IoU >= :data:`~napari_al.core.workflow.examples.JUDGED_IOU`) are never
proposed.

Each answer is charged ``verify_s`` by :class:`~napari_al.core.costs.CostModel`; the follow-up
is charged as its own actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.answers import (
    CONTAIN_FRACTION,
    MIN_AREA_RATIO,
    MIN_PROBABILITY,
    REFINE_ANSWERS,
    check_answer,
    refine_box,
)
from napari_al.core.data import OBJECT_SOURCES
from napari_al.core.workflow.clicks import (
    ClickCandidates,
    _scored_probs,
    click_candidates,
    has_model,
)
from napari_al.core.workflow.examples import JUDGED_STATUSES, judged_mask
from napari_al.core.workflow.fields import check_fields
from napari_al.core.workflow.fields import option as _opt

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator, Command
    from napari_al.core.store import BoxRow, ProjectStore

#: The follow-up questions: yes/no on the refined box, draw the object's box, click the objects.
FOLLOWUPS = ("verify", "draw", "click")


@dataclass(frozen=True)
class AnswerSettings:
    """How a refined box is chosen for a ``part`` or ``container`` answer
    (:func:`napari_al.core.answers.refine_box`)."""

    contain: float = _opt(
        CONTAIN_FRACTION,
        "fraction (0-1) of the smaller box's area that lies inside the larger for a candidate "
        "nested with the judged box",
        minimum=0.0,
        maximum=1.0,
    )
    min_area_ratio: float = _opt(
        MIN_AREA_RATIO,
        "how many times larger (part) or smaller (container) in area the refined box is",
        minimum=1.0,
    )
    min_probability: float = _opt(
        MIN_PROBABILITY,
        "lowest class probability (0-1; the calibrated P(yes) where the model has a "
        "calibration) of a candidate that may be proposed",
        minimum=0.0,
        maximum=1.0,
    )
    calibrated: bool = _opt(
        True, "score the candidates by calibrated P(yes) where the model has a calibration"
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Answered:
    """An answer as recorded, and what to ask next.

    ``command``: the annotator's command (undo takes the whole answer back); ``followup``: one
    of :data:`FOLLOWUPS` or None; ``box_id``: the judged box; ``refined_box_id``: the refined
    box awaiting yes/no (follow-up ``verify``); ``region``: the judged box's xyxy (image
    pixels), where to draw (``draw``) or click (``click``) the object(s); ``probability``: the
    refined box's class probability as scored (calibrated where available).
    """

    answer: str
    command: Command
    box_id: int
    followup: str | None = None
    refined_box_id: int | None = None
    region: tuple[float, float, float, float] | None = None
    probability: float | None = None


def stored_candidates(store: ProjectStore, image_id: int) -> ClickCandidates:
    """The image's stored model predictions (status ``predicted``, with a score) as candidates:
    ``probs`` ``(N, C)`` holds each box's score in its class's column, 0 elsewhere (boxes and
    probabilities float64: the stored values exactly); ``model_version`` the newest of theirs
    (predictions of an image come from one model)."""
    classes = [c.id for c in store.classes()]
    rows = [b for b in store.boxes(image_id, statuses="predicted") if b.score is not None]
    probs = np.zeros((len(rows), len(classes)), np.float64)
    for i, b in enumerate(rows):
        probs[i, classes.index(b.class_id)] = float(b.score or 0.0)
    versions = [int(b.model_version) for b in rows if b.model_version]
    return ClickCandidates(
        boxes=np.asarray([b.xyxy for b in rows], np.float64).reshape(-1, 4),
        probs=probs,
        model_version=max(versions) if versions else None,
    )


def _labelled_elsewhere(store: ProjectStore, box: BoxRow) -> np.ndarray:
    """``(m, 4)``: the image's human boxes and boxes rejected as background, the judged box
    and boxes that mark an object (click, refined, answered) left out."""
    rows = store.boxes(box.image_id, statuses=JUDGED_STATUSES)
    keep = [
        b.xyxy
        for b in rows
        if b.id != box.id and not (b.status == "rejected" and b.source in OBJECT_SOURCES)
    ]
    return np.asarray(keep, np.float64).reshape(-1, 4)


def propose_refined_box(
    store: ProjectStore,
    box: BoxRow,
    answer: str,
    candidates: ClickCandidates,
    settings: AnswerSettings | None = None,
) -> tuple[tuple[float, float, float, float], float, float] | None:
    """The refined box for a ``part``/``container`` answer about ``box``: ``(xyxy, raw class
    probability, probability as scored)``, or None when no candidate fits (module docstring).
    Writes nothing."""
    s = settings or AnswerSettings()
    if not len(candidates):
        return None
    ids = [c.id for c in store.classes()]
    k = ids.index(box.class_id)
    probs = _scored_probs(store, candidates, s.calibrated)
    boxes = np.asarray(candidates.boxes, np.float64).reshape(-1, 4)
    free = ~judged_mask(boxes, _labelled_elsewhere(store, box))
    probs = np.where(free[:, None], probs, 0.0)
    i = refine_box(
        box.xyxy,
        answer,
        boxes,
        probs,
        k,
        contain=s.contain,
        min_area_ratio=s.min_area_ratio,
        min_probability=s.min_probability,
    )
    if i is None:
        return None
    xyxy = tuple(float(v) for v in boxes[i])
    return xyxy, float(candidates.probs[i, k]), float(probs[i, k])  # type: ignore[return-value]


def _candidates(
    store: ProjectStore, image_id: int, detector: Any, pixels: np.ndarray | None
) -> ClickCandidates:
    if has_model(detector):
        if pixels is None:
            from napari_al.core.images import read_image

            pixels = read_image(store.abs_path(store.image(image_id)))
        return click_candidates(detector, pixels)
    return stored_candidates(store, image_id)


def answer_box(
    annotator: Annotator,
    box_id: int,
    answer: str,
    *,
    class_id: int | None = None,
    detector: Any = None,
    candidates: ClickCandidates | None = None,
    pixels: np.ndarray | None = None,
    settings: AnswerSettings | None = None,
) -> Answered:
    """Record a person's answer about box ``box_id`` (one of
    :data:`napari_al.core.answers.ANSWERS`) as one user action and say what to ask next
    (module docstring). ``class_id``: the right class, for ``wrong_class`` only.
    ``candidates``/``detector``/``pixels``: where a refined box comes from (given candidates;
    else the detector's, run here when it is trained in the project; else the stored
    predictions). Raises ValueError for an unknown answer or a ``wrong_class`` without
    ``class_id`` or naming the box's own class, and
    :class:`~napari_al.core.store.StoreError` for a box that is gone (the store then holds what
    it held before)."""
    check_answer(answer)
    store = annotator.store
    box = store.box(box_id)
    if answer == "yes":
        return Answered(answer, annotator.accept(box_id), box.id)
    if answer == "no":
        return Answered(answer, annotator.reject(box_id), box.id)
    if answer == "wrong_class":
        if class_id is None:
            raise ValueError("a wrong_class answer needs the right class (class_id)")
        if int(class_id) == box.class_id:
            name = next((c.name for c in store.classes() if c.id == box.class_id), box.class_id)
            raise ValueError(
                f"box {box.id} is already {name}: a wrong_class answer names another class "
                "(answer yes if the box is right)"
            )
        return Answered(answer, annotator.set_class(box_id, class_id), box.id)
    if answer not in REFINE_ANSWERS:  # several: the person clicks the objects in the box
        command = annotator.answer(box_id, answer)
        return Answered(answer, command, box.id, "click", region=box.xyxy)
    if candidates is None:
        candidates = _candidates(store, box.image_id, detector, pixels)
    found = propose_refined_box(store, box, answer, candidates, settings)
    if found is None:
        command = annotator.answer(box_id, answer)
        return Answered(answer, command, box.id, "draw", region=box.xyxy)
    xyxy, score, probability = found
    command = annotator.answer(
        box_id,
        answer,
        refined=xyxy,
        refined_score=score,
        refined_model_version=candidates.model_version,
    )
    refined = command.box_ids[-1]
    return Answered(answer, command, box.id, "verify", refined, box.xyxy, probability)
