"""How the simulated person labels the objects the shown boxes missed (``SimConfig.missed_by``,
``napari-al simulate --missed-by``), part of :class:`~napari_al.simulation.oracle.Oracle`.

- ``draw`` (the default, as before): every missed true box is drawn, ``draw_s`` each.
- ``click``: each missed true box is clicked at its centre (``click_s``, Papadopoulos et al.
  2017) with its class, through the workflow's click path
  (:func:`~napari_al.core.workflow.propose_click_box` with the round's detector's candidates,
  :func:`~napari_al.core.workflow.click_candidates` once per image, else the box found in the
  image; :func:`~napari_al.core.workflow.record_click`); the proposed box is verified
  (the Oracle's ``_click_true_box``): yes (``verify_s``) when its IoU with that true box is at
  least ``verify_iou``, else no and the object is drawn, one ``correct`` of the click box onto
  it (``verify_s + draw_s``, the price of a no and a drawing; the store keeps one box for the
  object). A click that finds no box is logged as ``click_none`` (``click_s``) and the object
  drawn (``draw_s``).
- ``region``: the region questions first (:func:`~napari_al.core.workflow.region_questions`
  on the same candidates, after the shown boxes are answered; Benenson's annotation dialogs,
  Nakamura et al. 2024 on false negatives): "any more <class> here?" (``verify_s``, action kind
  ``region``) is answered yes when a missing true box of that class has its centre in the
  region, else no (the region becomes known empty of the class); after a yes the person clicks
  every such box (as ``click``); what is still missing is drawn. Without a model trained in
  the project there are no candidates, so no questions: everything is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator
    from napari_al.core.costs import CostModel
    from napari_al.core.store import ProjectStore
    from napari_al.simulation.oracle import GroundTruth

#: How missed objects are labelled (``SimConfig.missed_by``); ``draw`` is the default.
MISSED_BY = ("draw", "click", "region")


class _Image:
    """One image's model candidates, computed at most once (None: no model trained in the
    project; then the clicks' boxes come from the pixels)."""

    def __init__(self, store: ProjectStore, image_id: int, detector: Any) -> None:
        self.store, self.image_id, self.detector = store, image_id, detector
        self._candidates: workflow.ClickCandidates | None = None

    @property
    def candidates(self) -> workflow.ClickCandidates | None:
        if self._candidates is None and workflow.has_model(self.detector):
            row = self.store.image(self.image_id)
            pixels = workflow.load_rgb(self.store.abs_path(row))
            self._candidates = workflow.click_candidates(self.detector, pixels)
        return self._candidates

    def for_clicks(self) -> workflow.ClickCandidates:
        """The candidates a click picks its box from: the model's, else none (the pixels)."""
        if self.candidates is not None:
            return self.candidates
        n = len(self.store.classes())
        return workflow.ClickCandidates(np.zeros((0, 4), np.float32), np.zeros((0, n), np.float32))


class MissedObjects:
    """Labelling the missed objects by ``missed_by`` (module docstring); a mixin of
    :class:`~napari_al.simulation.oracle.Oracle`, which sets the attributes and methods
    declared here."""

    store: ProjectStore
    gt: Any
    costs: CostModel
    verify_min_score: float | None
    calibrated: bool
    class_ids: list[int]
    missed_by: str
    annotator: Annotator
    #: The Oracle's: advance the clock by an answer's cost; click true box ``t`` of an image.
    _charge: Callable[[str], None]
    _click_true_box: Callable[..., None]

    def label_missing(
        self, image_id: int, missing: list[int], tally: dict[str, int], detector: Any = None
    ) -> list[int]:
        """Label the missing true boxes ``missing`` (indices) by :attr:`missed_by`, counting
        answers in ``tally``; returns the ones still to draw. ``detector``: the round's model
        (its candidates give the click boxes and the region questions)."""
        if self.missed_by == "draw" or not missing:
            return missing
        image = _Image(self.store, image_id, detector)
        gt: GroundTruth = self.gt[image_id]
        if self.missed_by == "click":
            for j in missing:
                self._click_true_box(image_id, gt, j, tally, candidates=image.for_clicks())
            return []
        return self._ask_regions(image, missing, tally)

    def _ask_regions(self, image: _Image, missing: list[int], tally: dict[str, int]) -> list[int]:
        """The region questions, then clicks in the yes-regions; returns what is left."""
        free = sorted(missing)
        if image.candidates is None:
            return free
        rule = workflow.verify_rule(
            self.store, self.costs, min_score=self.verify_min_score, calibrated=self.calibrated
        )
        questions = workflow.region_questions(
            self.store, image.image_id, image.candidates, costs=self.costs, shown=rule.shows
        )
        gt: GroundTruth = self.gt[image.image_id]
        centre = (gt.boxes[:, :2] + gt.boxes[:, 2:]) / 2
        for q in questions:
            found = [
                j
                for j in free
                if self.class_ids[int(gt.labels[j])] == q.class_id and q.contains(centre[j])
            ]
            self._charge("region")
            workflow.answer_region(self.annotator, q, yes=bool(found))
            key = "region_yes" if found else "region_no"
            tally[key] = tally.get(key, 0) + 1
            for j in found:
                self._click_true_box(image.image_id, gt, j, tally, candidates=image.for_clicks())
            free = [j for j in free if j not in found]
        return free
