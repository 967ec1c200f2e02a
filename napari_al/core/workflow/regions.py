"""Region questions for missed objects through the workflow: the one path the widget, the
notebook ``Session`` and the simulator share (issue 13, item 4).

"Any more <class> here?" (yes/no, one verification, ``CostModel.verify_s``), asked where the
missed-object estimate expects objects that no shown or human box covers
(:mod:`napari_al.core.regions`: Benenson's annotation dialogs, "this region is unclear: label
the objects in it"; Nakamura et al. 2024 in the survey on false negatives). A yes is followed
by "click every missed object here": centre clicks through :mod:`napari_al.core.workflow.clicks`
(``click_s`` each, then the proposed box's yes/no). A no makes the region known empty of the
class: stored as a ``rejected`` box with source ``region``, background in training
(:mod:`napari_al.core.workflow.examples`), never asked again.

- :func:`region_questions`: the questions for one image, from the model's candidates
  (:func:`~napari_al.core.workflow.clicks.click_candidates`, or the round's possibly missed
  suggestions through :func:`suggestion_candidates`) and the store's boxes now.
- :func:`answer_region`: ONE user action of kind ``region`` (``Annotator.answer_region``).
- :func:`known_empty`: which boxes lie in a region answered "no" for their class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_al.core.costs import CostModel
from napari_al.core.data import REGION_SOURCE
from napari_al.core.regions import find_regions, inside
from napari_al.core.workflow.clicks import ClickCandidates, _scored_probs
from napari_al.core.workflow.crops import in_reviewed_area
from napari_al.core.workflow.settings import RegionSettings

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator, Command
    from napari_al.core.store import BoxRow, ProjectStore
    from napari_al.core.workflow.suggest import Suggestion

XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class RegionQuestion:
    """ "Any more <class> here?" about one region of one image.

    ``xyxy``: the region, image pixels; ``class_id``/``class_name``: the class asked about;
    ``expected``: the missed objects the estimate expects there (the sum of its candidates'
    probabilities); ``chance``: the probability that there is at least one; ``candidates``: how
    many candidate boxes were merged into it.
    """

    image_id: int
    xyxy: XYXY
    class_id: int
    class_name: str
    expected: float
    chance: float
    candidates: int = 1

    @property
    def text(self) -> str:
        """The question in words."""
        return f"any more {self.class_name} here?"

    def contains(self, point: Sequence[float]) -> bool:
        """Whether the point ``(x, y)`` (image pixels) lies in the region (edges included)."""
        x, y = (float(v) for v in point)
        x1, y1, x2, y2 = self.xyxy
        return x1 <= x <= x2 and y1 <= y <= y2


def suggestion_candidates(
    suggestions: Sequence[Suggestion], n_classes: int, model_version: int | None = None
) -> ClickCandidates:
    """The round's possibly missed suggestions (:func:`~napari_al.core.workflow.suggest_missed`:
    ``(xyxy, score, class index)``) as candidates: each box's probability row holds its score
    at its class, 0 elsewhere. ``model_version``: the model they came from (its calibration
    then applies)."""
    rows = list(suggestions)
    probs = np.zeros((len(rows), int(n_classes)), np.float32)
    for i, (_, score, k) in enumerate(rows):
        probs[i, int(k)] = float(score)
    return ClickCandidates(
        boxes=np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
        probs=probs,
        model_version=model_version,
        labels=np.asarray([int(r[2]) for r in rows], np.int64),
    )


def _known(store: ProjectStore, image_id: int, shown: Callable[[BoxRow], bool]) -> np.ndarray:
    """The boxes that cover a candidate: every box of the image except unshown predictions
    and regions answered "no" (those count by class, :func:`known_empty`)."""
    rows = [
        b.xyxy
        for b in store.boxes(image_id=image_id)
        if b.source != REGION_SOURCE and (b.status != "predicted" or shown(b))
    ]
    return np.asarray(rows, np.float64).reshape(-1, 4)


def _empty(store: ProjectStore, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The regions answered "no" on the image, ``(R, 4)``, and their class ids ``(R,)``."""
    rows = store.empty_regions(image_id)
    return (
        np.asarray([b.xyxy for b in rows], np.float64).reshape(-1, 4),
        np.asarray([b.class_id for b in rows], np.int64),
    )


def known_empty(
    store: ProjectStore,
    image_id: int,
    boxes: np.ndarray | Sequence[Sequence[float]],
    class_ids: np.ndarray | Sequence[int],
) -> np.ndarray:
    """``(N,)`` bool: whether each box (``(N, 4)`` xyxy pixels, with its class id) has its
    centre in a region of the image answered "no" for its class."""
    regions, labels = _empty(store, image_id)
    return inside(boxes, np.asarray(class_ids, np.int64).reshape(-1), regions, labels)


def region_questions(
    store: ProjectStore,
    image_id: int,
    candidates: ClickCandidates,
    *,
    costs: CostModel | None = None,
    settings: RegionSettings | None = None,
    shown: Callable[[BoxRow], bool] | None = None,
) -> list[RegionQuestion]:
    """The region questions worth asking on image ``image_id``, best first
    (:func:`napari_al.core.regions.find_regions`).

    ``candidates``: the model's candidate boxes of the image (their class from
    ``candidates.labels``, probability through the model version's calibration where
    ``settings.calibrated``); covered by the image's boxes now: human, rejected and click
    boxes, and the predictions ``shown`` (default: the calibrated rule,
    :func:`~napari_al.core.workflow.verify_rule` with ``costs``); never inside a region
    already answered "no" for the class, nor about candidates in a region marked complete
    (:func:`~napari_al.core.workflow.crops.in_reviewed_area`). ``settings.min_chance`` 0 means
    ``costs.verify_s / costs.draw_s``. Reads the store only. Raises StoreError for an image
    that does not exist."""
    from napari_al.core.workflow.calibration import verify_rule

    store.image(image_id)  # an unknown image is an error, not "nothing to ask"

    s = settings or RegionSettings()
    costs = costs or CostModel()
    if shown is None:
        shown = verify_rule(store, costs).shows
    row = store.image(image_id)
    classes = store.classes()
    if not len(candidates) or not classes:
        return []
    labels = candidates.class_indices()
    probs = _scored_probs(store, candidates, s.calibrated)
    ok = (labels >= 0) & (labels < min(probs.shape[1], len(classes)))
    p = np.where(ok, probs[np.arange(len(labels)), np.where(ok, labels, 0)], 0.0)
    p[in_reviewed_area(store, image_id, candidates.boxes)] = 0.0  # all labelled there already
    empty, empty_ids = _empty(store, image_id)
    index = {c.id: i for i, c in enumerate(classes)}
    regions = find_regions(
        candidates.boxes,
        np.where(ok, labels, -1),
        p,
        known=_known(store, image_id, shown),
        empty=empty,
        empty_labels=[index.get(int(c), -1) for c in empty_ids],
        image_size=(row.width, row.height),
        cover_iou=s.cover_iou,
        min_probability=s.min_probability,
        gap=s.gap,
        max_fraction=s.max_fraction,
        min_chance=s.min_chance or costs.verify_threshold,
        limit=s.limit,
    )
    return [
        RegionQuestion(
            int(image_id),
            r.xyxy,
            classes[r.class_index].id,
            classes[r.class_index].name,
            r.expected,
            r.chance,
            len(r.members),
        )
        for r in regions
        if r.class_index >= 0
    ]


def answer_region(annotator: Annotator, question: RegionQuestion, yes: bool) -> Command | int:
    """The person's answer to ``question`` as ONE user action (:meth:`Annotator.answer_region`,
    one transaction, one logged ``region`` action, charged ``verify_s`` by the cost model).
    No: the region is known empty of the class (undoable; returns the command). Yes: logged
    only (returns the action id); the person then clicks every missed object in the region
    (:func:`~napari_al.core.workflow.click`)."""
    return annotator.answer_region(
        question.image_id,
        question.xyxy,
        question.class_id,
        bool(yes),
        expected=question.expected,
    )
