"""The simulator's ``dialog`` strategy (issue 13, item 7): the simulated person answers the
dialog planner's questions (:mod:`napari_al.core.workflow.dialog`), one at a time, best first,
until the round's seconds are spent.

Per round: one planning pass of the round's model over the pool (or the round's random
``pool_subset``; :func:`~napari_al.core.workflow.score_gains` with the strategy's scorer: it
stores the model's predictions of those images, the boxes a verify question names), then the
queue (:func:`~napari_al.core.workflow.plan_questions`' order). The person takes the first
question still open, answers it, and the image's questions are planned again
(:func:`~napari_al.core.workflow.replan`: new click or refined boxes to verify, regions now
covered, a draw question once nothing else is left there), with the calibrated rule refitted on
the answers so far. The round ends when its seconds are spent (the last answer may overrun) or
nothing is left to ask. Every cost is charged on the store's clock before its action, as for
every oracle, so the store's ``annotation_seconds`` is the round's cost.

The answers (:class:`DialogAnswers`, a part of :class:`~napari_al.simulation.oracle.Oracle`):

- ``verify``: the oracle's judgement of that one box against the ground truth
  (:func:`~napari_al.simulation.oracle.plan_verification`: yes, wrong class, a redraw of a
  badly placed box, or no), a rich answer and its follow-up instead of a redraw with
  ``rich_answers``; each as the verify oracle charges it (``verify_s``, + ``class_change_s``, +
  ``draw_s``; Papadopoulos et al. 2016).
- ``region``: yes when an object of the class without any box (human, pending or shown) has
  its centre in the region, else no (``verify_s``); after a yes each such object is labelled
  by the supervision in force: a centre click and the yes/no on its box (``click_s`` +
  ``verify_s``, Papadopoulos et al. 2017) or a drawn box (``draw_s``).
- ``draw``: every object of the image without a human box is labelled the same way, then the
  image is marked complete (``image_s``).

The image turns ``partial`` (no cost) at its first answer, so what is answered trains.

**Seconds per round**: ``SimConfig.dialog_seconds``, else what drawing ``budget_images`` images
costs by the initial set (its seconds per image, the random initial set being drawn in full):
random drawing's round, an upper bound of what the verify strategies spend per round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow
from napari_al.core.data import HUMAN_STATUSES, RICH_ANSWERS

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator
    from napari_al.core.costs import CostModel
    from napari_al.core.store import ActionRow, ProjectStore
    from napari_al.core.workflow import ClickCandidates, Question
    from napari_al.simulation.config import SimConfig, SimStrategy
    from napari_al.simulation.oracle import GroundTruth
    from napari_al.simulation.project import SimProject

#: Action kinds of the markers a round leaves (``napari_al.simulation.project.MARKER_KIND``).
_MARKER = "sim_round"


def seconds_since(store: ProjectStore, action_id: int) -> float:
    """Annotation seconds logged after action ``action_id`` (the sum of their ``dt``)."""
    return float(sum(a.dt or 0.0 for a in store.actions(since_id=action_id)))


def dialog_budget(store: ProjectStore, config: SimConfig) -> float:
    """The seconds of one dialog round (module docstring)."""
    if config.dialog_seconds is not None:
        return float(config.dialog_seconds)
    done = [
        a
        for a in store.actions(kind=_MARKER)
        if int(a.payload.get("round", -1)) == 0 and a.payload.get("phase") == "labelled"
    ]
    if not done:
        raise RuntimeError("the dialog round needs the initial set's round 0 (no marker)")
    spent = float(sum(a.dt or 0.0 for a in store.actions() if a.id < done[0].id))
    return spent / max(int(config.init_images), 1) * int(config.budget_images)


def _settings(config: SimConfig) -> workflow.DialogSettings:
    return workflow.DialogSettings(
        supervision=config.dialog_supervision, scatter_images=config.dialog_scatter_images
    )


def answer_dialog(
    proj: SimProject,
    strategy: SimStrategy,
    detector: Any,
    query: dict[str, Any],
    marker: ActionRow,
    config: SimConfig,
) -> dict[str, int]:
    """Answer the planner's questions on ``query["images"]`` until ``query["budget_s"]``
    seconds are spent since ``marker`` (resumable: the seconds already spent count). Returns how
    many questions of each kind were answered."""
    store, oracle = proj.store, proj.oracle
    budget = float(query["budget_s"])
    images = [int(i) for i in query["images"]]
    asked: dict[str, int] = {}
    if not images or seconds_since(store, marker.id) >= budget:
        return asked
    q = workflow.QuerySettings(
        strategy=strategy.scorer,
        aggregation=strategy.aggregation,
        seed=int(query.get("seed", 0)),
        unit="question",
    )
    gains = workflow.score_gains(store, detector, q, images)
    min_score = config.verify_min_score
    if min_score is None and config.calibration == "none":
        min_score = config.costs.verify_threshold  # raw scores against verify_s / draw_s
    planner = workflow.Planner.build(
        store, _settings(config), costs=config.costs, gains=gains, min_score=min_score
    )
    queue = planner.queue(images)
    while queue and seconds_since(store, marker.id) < budget:
        question = queue.pop(0)
        if not workflow.is_open(store, question):
            continue
        oracle.answer_question(question, gains.candidates.get(question.image_id))
        asked[question.kind] = asked.get(question.kind, 0) + 1
        planner.refresh()
        queue = workflow.replan(queue, planner, question.image_id)
    return asked


class DialogAnswers:
    """The answers to the planner's questions (module docstring); a mixin of
    :class:`~napari_al.simulation.oracle.Oracle`, which sets what is declared here."""

    store: ProjectStore
    gt: Any
    costs: CostModel
    verify_iou: float
    redraw_iou: float
    rich_answers: bool
    verify_min_score: float | None
    calibrated: bool
    class_ids: list[int]
    _index: dict[int, int]
    annotator: Annotator
    _charge: Any
    _apply: Any
    _draw: Any
    _complete: Any
    _claimed: Any
    _answer_rich: Any
    _click_true_box: Any

    def answer_question(
        self, question: Question, candidates: ClickCandidates | None = None
    ) -> dict[str, int]:
        """Answer one of the planner's questions from the ground truth (module docstring);
        ``candidates``: the model's candidates of the image (the boxes clicks pick from).
        Returns the answers given, by kind."""
        image_id = question.image_id
        if self.store.image(image_id).review_state == "unseen":
            self._charge("review_state")
            self.store.set_review_state(image_id, "partial")
        tally: dict[str, int] = dict.fromkeys(("accept", "set_class", "correct", "reject"), 0)
        tally["draw"] = 0
        if question.kind == "verify":
            self._answer_verify(question, tally)
        elif question.kind == "region":
            self._answer_region(question, tally, candidates)
        else:
            gt: GroundTruth = self.gt[image_id]
            todo = sorted(set(range(len(gt))) - self._claimed(image_id))
            self._label(image_id, todo, question.supervision, tally, candidates)
            self._complete(image_id)
        return {k: v for k, v in tally.items() if v}

    def _label(
        self,
        image_id: int,
        todo: Sequence[int],
        supervision: str,
        tally: dict[str, int],
        candidates: ClickCandidates | None,
    ) -> None:
        """Label true boxes ``todo`` of the image: a click each (``click``) or a drawn box."""
        gt: GroundTruth = self.gt[image_id]
        for j in todo:
            if supervision == "click":
                self._click_true_box(image_id, gt, j, tally, candidates=candidates)
            else:
                self._draw(image_id, j)
                tally["draw"] += 1

    def _answer_verify(self, question: Question, tally: dict[str, int]) -> None:
        from napari_al.simulation.oracle import plan_verification

        box = self.store.box(int(question.box_id))  # type: ignore[arg-type]
        gt: GroundTruth = self.gt[box.image_id]
        claimed = self._claimed(box.image_id)
        plan, _ = plan_verification(
            np.asarray([box.xyxy], np.float64),
            np.asarray([self._index[box.class_id]], np.int64),
            gt,
            claimed,
            self.verify_iou,
            self.redraw_iou,
            rich=self.rich_answers,
        )
        decision, j = plan[0]
        if decision in RICH_ANSWERS:
            assert j is not None
            missing = sorted(set(range(len(gt))) - claimed - {j})
            self._answer_rich(box, gt, decision, j, missing, tally)
        else:
            self._apply(box.id, gt, decision, j)
        tally[decision] = tally.get(decision, 0) + 1

    def _unboxed(self, image_id: int) -> list[int]:
        """True boxes of the image no box a person sees holds (IoU >= ``verify_iou`` with a
        human, pending click/refined or shown box)."""
        from napari_al.simulation.oracle import claim_ground_truth

        rule = workflow.verify_rule(
            self.store, self.costs, min_score=self.verify_min_score, calibrated=self.calibrated
        )
        seen = [
            b.xyxy
            for b in self.store.boxes(image_id=image_id)
            if b.status in (*HUMAN_STATUSES, "pseudo")
            or (b.status == "predicted" and rule.shows(b))
        ]
        gt: GroundTruth = self.gt[image_id]
        claimed = claim_ground_truth(np.asarray(seen, np.float64), gt, self.verify_iou)
        return sorted(set(range(len(gt))) - claimed)

    def _answer_region(
        self, question: Question, tally: dict[str, int], candidates: ClickCandidates | None
    ) -> None:
        image_id = question.image_id
        gt: GroundTruth = self.gt[image_id]
        assert question.xyxy is not None and question.class_id is not None
        x1, y1, x2, y2 = question.xyxy
        centre = (gt.boxes[:, :2] + gt.boxes[:, 2:]) / 2
        found = [
            j
            for j in self._unboxed(image_id)
            if self.class_ids[int(gt.labels[j])] == question.class_id
            and x1 <= centre[j, 0] <= x2
            and y1 <= centre[j, 1] <= y2
        ]
        region = workflow.RegionQuestion(
            image_id,
            question.xyxy,
            question.class_id,
            question.class_name,
            question.expected,
            question.p_yes,
        )
        self._charge("region")
        workflow.answer_region(self.annotator, region, yes=bool(found))
        key = "region_yes" if found else "region_no"
        tally[key] = tally.get(key, 0) + 1
        self._label(image_id, found, question.supervision, tally, candidates)
