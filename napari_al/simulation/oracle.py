"""The simulated annotator: answers from the ground truth through the store's user actions.

Oracle modes (``SimStrategy.oracle``):

- ``draw``: image-level full drawing, the classic baseline: every ground-truth box of a chosen
  image is drawn (``draw_s`` each) and the image is marked complete;
- ``verify``: Papadopoulos et al. 2016 / Benenson's slides ("verify instead of draw"): each of
  the model's boxes shown on a chosen image gets a yes/no question (``verify_s``). A box is
  shown where ``P(yes) x draw_s > verify_s`` with P(yes) from the model version's calibrated
  scores (:func:`napari_al.core.workflow.verify_rule`; raw scores with ``calibrated=False``),
  or, with an explicit ``verify_min_score``, where its raw score reaches it. Yes when IoU >=
  0.5 with a not yet matched ground-truth box of the same class (accepted as is); a box at IoU
  >= 0.5 with a box of another class gets a class change (+ ``class_change_s``); a badly placed
  box (best IoU in [``redraw_iou``, 0.5) with a free ground-truth box) is redrawn (+ ``draw_s``);
  the rest (false positives, duplicates) are rejected. Ground-truth boxes left unmatched (missed
  objects) are drawn. Matching is greedy by score, same-class matches first. With
  ``rich_answers`` (Benenson's slides, :mod:`napari_al.core.answers`), a badly placed box is
  answered from geometry instead (:func:`rich_answer`): ``several`` when at least two true
  boxes lie at least half inside it, ``part`` when it lies mostly (:data:`CONTAIN_FRACTION`)
  inside its true box and is smaller, ``container`` when its true box lies mostly inside it and
  is smaller, else ``correct`` as before. A rich answer costs ``verify_s`` and goes through
  :func:`napari_al.core.workflow.answer_box` (candidates: the image's stored predictions); its
  follow-up: yes on the refined box when it has IoU >= ``verify_iou`` with the true box (a
  class change if its class differs), else a redraw of it (``correct``); no refined box: the
  true box is drawn; ``several``: a centre click on each true box still free that lies at least
  half inside the box (``click_s``, :func:`napari_al.core.workflow.click`'s proposal), then yes
  on the clicked box (or a redraw, or a draw when the click found no box);
- ``box``: Desai et al. box-level querying: the chosen candidate boxes are each verified
  (``verify_s``); one at IoU >= 0.5 with a free ground-truth box takes that box's class (a class
  change if it differs), below 0.5 it is marked background (rejected). Nothing else in the image
  is labelled: the image becomes ``partial`` and its other predictions stay noisy labels. The
  queried box is asked whatever its P(yes): the strategy chose it for what its answer teaches.

How the objects the shown boxes missed are labelled (``missed_by``: drawn, clicked, or found
through region questions first): :mod:`napari_al.simulation.missed`. The answers to the dialog
planner's questions (the ``dialog`` strategy): :mod:`napari_al.simulation.dialog`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.answers import CONTAIN_FRACTION
from napari_al.core.boxes import as_xyxy, box_area, box_iou, inside_fraction
from napari_al.core.costs import CostModel
from napari_al.core.data import HUMAN_STATUSES, RICH_ANSWERS, ImageRecord
from napari_al.core.workflow import SuggestSettings, verify_rule
from napari_al.simulation.dialog import DialogAnswers
from napari_al.simulation.missed import MISSED_BY, MissedObjects

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator
    from napari_al.core.store import BoxRow, ProjectStore
    from napari_al.core.workflow import ClickCandidates

#: A true box at least this fraction inside a shown box is one of the objects it holds (two or
#: more: the answer ``several``; each is then clicked).
SEVERAL_INSIDE = 0.5

#: The simulated clock starts here (Unix seconds); small, so float sums stay exact to ~1e-10 s.
CLOCK_T0 = 1_000_000.0
#: A weak prediction overlapping a shown or human box this much is not a possibly missed object
#: (the GUI's rule, :attr:`napari_al.core.workflow.SuggestSettings.max_iou`: 0.3).
MISSED_IOU = SuggestSettings().max_iou


class SimClock:
    """The stores' clock: stands still except when the oracle spends annotation time."""

    def __init__(self, t0: float = CLOCK_T0) -> None:
        self.t = float(t0)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.t += float(seconds)


@dataclass(frozen=True)
class GroundTruth:
    """The true boxes of one image: ``boxes`` (K, 4) xyxy, ``labels`` (K,) class indices."""

    boxes: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_record(cls, rec: ImageRecord, classes: Sequence[str]) -> GroundTruth:
        index = {c: i for i, c in enumerate(classes)}
        return cls(
            np.asarray([b.xyxy() for b in rec.boxes], np.float64).reshape(-1, 4),
            np.asarray([index[b.label] for b in rec.boxes], np.int64),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def claim_ground_truth(human_boxes: np.ndarray, gt: GroundTruth, min_iou: float = 0.5) -> set[int]:
    """Ground-truth boxes already covered by human boxes (greedy one-to-one, IoU >= min_iou)."""
    human_boxes = np.asarray(human_boxes, np.float64).reshape(-1, 4)
    if not len(human_boxes) or not len(gt):
        return set()
    from napari_al.core.scoring.base import match_boxes

    _, cols = match_boxes(box_iou(human_boxes, gt.boxes), min_iou)
    return {int(c) for c in cols}


def rich_answer(
    box: Sequence[float] | np.ndarray,
    gt_boxes: np.ndarray,
    j: int,
    *,
    contain: float = CONTAIN_FRACTION,
    several_inside: float = SEVERAL_INSIDE,
) -> str:
    """What an exact annotator answers about a badly placed ``box`` (xyxy) whose true box is
    ``gt_boxes[j]`` (``gt_boxes`` ``(K, 4)``, every true box of the image): ``several`` when at
    least two true boxes have at least ``several_inside`` of their area inside it; ``part`` when
    at least ``contain`` of its area lies inside the true box and it is smaller; ``container``
    when at least ``contain`` of the true box lies inside it and the true box is smaller; else
    ``correct`` (a redraw)."""
    b = as_xyxy(box)
    g = as_xyxy(gt_boxes)
    held = inside_fraction(g, b)[:, 0]  # how much of each true box lies inside the box
    if int((held >= several_inside).sum()) >= 2:
        return "several"
    area_b, area_g = float(box_area(b)[0]), float(box_area(g[j : j + 1])[0])
    if inside_fraction(b, g[j : j + 1])[0, 0] >= contain and area_b < area_g:
        return "part"
    if held[j] >= contain and area_g < area_b:
        return "container"
    return "correct"


def plan_verification(
    pred_boxes: np.ndarray,
    pred_labels: np.ndarray,
    gt: GroundTruth,
    claimed: Iterable[int] = (),
    verify_iou: float = 0.5,
    redraw_iou: float = 0.1,
    rich: bool = False,
) -> tuple[list[tuple[str, int | None]], list[int]]:
    """What an exact annotator answers about each model box, and which true boxes stay missing.

    Boxes are taken in the given order (by decreasing score). Three greedy passes, as a person
    looking at the whole image would pair boxes with objects: (1) IoU >= ``verify_iou`` with a
    free true box of the same class -> ``accept``; (2) IoU >= ``verify_iou`` with a free true box
    of another class -> ``set_class``; (3) IoU >= ``redraw_iou`` with a free true box ->
    ``correct`` (redrawn onto it). Everything else -> ``reject``. With ``rich``, a ``correct``
    becomes the rich answer the geometry gives (:func:`rich_answer`). Returns ``[(decision,
    true box index or None)]`` per model box and the indices of the true boxes no box matched
    (to draw).
    """
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    pred_labels = np.asarray(pred_labels, np.int64).reshape(-1)
    n = pred_boxes.shape[0]
    free = set(range(len(gt))) - set(claimed)
    iou = box_iou(pred_boxes, gt.boxes) if n and len(gt) else np.zeros((n, len(gt)))
    plan: list[tuple[str, int | None]] = [("reject", None)] * n
    done = np.zeros(n, bool)
    passes = (
        ("accept", verify_iou, True),
        ("set_class", verify_iou, False),
        ("correct", redraw_iou, False),
    )
    for decision, threshold, same_class in passes:
        if not math.isfinite(threshold) or threshold > 1:
            continue
        for i in range(n):
            if done[i] or not free:
                continue
            cands = [
                j
                for j in sorted(free)
                if iou[i, j] >= threshold and (not same_class or gt.labels[j] == pred_labels[i])
            ]
            if not cands:
                continue
            j = max(cands, key=lambda k: (iou[i, k], -k))
            answer = decision
            if rich and decision == "correct":
                answer = rich_answer(pred_boxes[i], gt.boxes, j)
            plan[i] = (answer, j)
            done[i] = True
            free.discard(j)
    return plan, sorted(free)


class Oracle(MissedObjects, DialogAnswers):
    """Answers queries from the ground truth through the store's user actions.

    Before each action the clock advances by that answer's cost, so the store logs it with
    ``dt`` = the cost. Answers are idempotent: human boxes already on an image claim their
    true boxes first, and a box already judged is not asked again (this makes resuming safe).
    """

    def __init__(
        self,
        store: ProjectStore,
        clock: SimClock,
        ground_truth: Mapping[int, GroundTruth],
        costs: CostModel | None = None,
        verify_iou: float = 0.5,
        redraw_iou: float = 0.1,
        verify_min_score: float | None = None,
        verify_missed_min_score: float | None = None,
        calibrated: bool = True,
        rich_answers: bool = False,
        missed_by: str = "draw",
    ) -> None:
        if missed_by not in MISSED_BY:
            raise ValueError(f"missed_by must be one of {', '.join(MISSED_BY)}, not {missed_by!r}")
        self.store = store
        self.clock = clock
        self.gt = ground_truth
        self.costs = costs or CostModel()
        self.verify_iou = float(verify_iou)
        self.redraw_iou = float(redraw_iou)
        #: An explicit raw-score threshold of the boxes shown (None: the rule of
        #: :meth:`shown_boxes`).
        self.verify_min_score = None if verify_min_score is None else float(verify_min_score)
        #: Whether the rule uses the calibrated P(yes) (else raw scores vs verify_s / draw_s).
        self.calibrated = bool(calibrated)
        self.verify_missed_min_score = verify_missed_min_score
        #: Answer badly placed boxes part / container / several (module docstring).
        self.rich_answers = bool(rich_answers)
        self._annotator: Annotator | None = None
        #: How the objects the shown boxes missed are labelled (:mod:`napari_al.simulation.missed`).
        self.missed_by = missed_by
        self.class_ids = [c.id for c in store.classes()]
        self._index = {cid: i for i, cid in enumerate(self.class_ids)}

    def _charge(self, kind: str) -> None:
        self.clock.advance(self.costs.of_kind(kind))

    def _claimed(self, image_id: int) -> set[int]:
        human = self.store.boxes(image_id=image_id, statuses=HUMAN_STATUSES)
        return claim_ground_truth(
            np.asarray([b.xyxy for b in human], np.float64), self.gt[image_id], self.verify_iou
        )

    def _draw(self, image_id: int, j: int) -> int:
        gt = self.gt[image_id]
        self._charge("draw")
        return self.store.draw_box(image_id, gt.boxes[j].tolist(), self.class_ids[gt.labels[j]])

    def _complete(self, image_id: int) -> None:
        if self.store.image(image_id).review_state != "complete":
            self._charge("complete")
            self.store.set_review_state(image_id, "complete")

    def draw_image(self, image_id: int) -> int:
        """Full drawing: every true box not yet labelled is drawn; returns how many."""
        todo = sorted(set(range(len(self.gt[image_id]))) - self._claimed(image_id))
        for j in todo:
            self._draw(image_id, j)
        self._complete(image_id)
        return len(todo)

    def _apply(self, box_id: int, gt: GroundTruth, decision: str, j: int | None) -> None:
        """Charge one answer about a model box and make it in the store."""
        self._charge(decision)
        if decision == "accept":
            self.store.accept_box(box_id)
        elif decision == "set_class":
            self.store.set_box_class(box_id, self.class_ids[gt.labels[j]])
        elif decision == "correct":
            self.store.correct_box(box_id, gt.boxes[j].tolist(), self.class_ids[gt.labels[j]])
        else:
            self.store.reject_box(box_id)

    def _judge_one(
        self, box: BoxRow, gt: GroundTruth, claimed: Iterable[int]
    ) -> tuple[str, int | None]:
        """One yes/no question about one model box (no redraw: a misplaced box is a no)."""
        plan, _ = plan_verification(
            np.asarray([box.xyxy], np.float64),
            np.asarray([self._index[box.class_id]], np.int64),
            gt,
            claimed,
            self.verify_iou,
            redraw_iou=math.inf,
        )
        decision, j = plan[0]
        self._apply(box.id, gt, decision, j)
        return decision, j

    def shown_boxes(self, image_id: int) -> list[BoxRow]:
        """The image's unjudged model boxes a person is shown: ``P(yes) x draw_s > verify_s``
        under the stored calibration (:func:`napari_al.core.workflow.verify_rule`), or raw
        ``score >= verify_min_score`` when that is set."""
        rule = verify_rule(
            self.store, self.costs, min_score=self.verify_min_score, calibrated=self.calibrated
        )
        boxes = self.store.boxes(image_id=image_id, statuses=("predicted", "pseudo"))
        return [b for b, shown in zip(boxes, rule.mask(boxes), strict=True) if shown]

    def verify_image(self, image_id: int, detector: Any = None) -> dict[str, int]:
        """Verify the unjudged model boxes shown (:meth:`shown_boxes`), label what they missed
        (:attr:`missed_by`; ``detector``: the round's model, whose candidates the clicks and
        region questions use), mark the image complete. Returns the number of answers of each
        kind."""
        gt = self.gt[image_id]
        pending = self.shown_boxes(image_id)
        pending.sort(key=lambda b: (-(b.score if b.score is not None else 0.0), b.id))
        plan, missing = plan_verification(
            np.asarray([b.xyxy for b in pending], np.float64),
            np.asarray([self._index[b.class_id] for b in pending], np.int64),
            gt,
            self._claimed(image_id),
            self.verify_iou,
            self.redraw_iou,
            rich=self.rich_answers,
        )
        tally = dict.fromkeys(("accept", "set_class", "correct", "reject", "draw"), 0)
        for box, (decision, j) in zip(pending, plan, strict=True):
            if decision in RICH_ANSWERS:
                assert j is not None
                missing = self._answer_rich(box, gt, decision, j, missing, tally)
            else:
                self._apply(box.id, gt, decision, j)
            tally[decision] = tally.get(decision, 0) + 1
        if self.verify_missed_min_score is not None and missing:
            missing = self._ask_about_missed(image_id, pending, missing, tally)
        missing = self.label_missing(image_id, missing, tally, detector)
        for j in missing:
            self._draw(image_id, j)
        tally["draw"] += len(missing)
        self._complete(image_id)
        return tally

    # -- rich answers (module docstring) ----------------------------------------------------

    @property
    def annotator(self) -> Annotator:
        """The simulated person's annotator (the workflow's answers take one; no undo kept)."""
        if self._annotator is None:
            from napari_al.core.annotator import Annotator

            self._annotator = Annotator(self.store, max_history=1)
        return self._annotator

    def _answer_rich(
        self,
        box: BoxRow,
        gt: GroundTruth,
        answer: str,
        j: int,
        missing: list[int],
        tally: dict[str, int],
    ) -> list[int]:
        """A rich answer about ``box`` (true box ``j``) and its follow-up; returns the true
        boxes still missing (those clicked for ``several`` are not)."""
        from napari_al.core.workflow import answer_box

        self._charge(answer)
        got = answer_box(self.annotator, box.id, answer)
        if got.followup == "verify":
            assert got.refined_box_id is not None
            self._verify_proposal(got.refined_box_id, gt, j, tally)
            return missing
        if got.followup == "draw":
            self._draw(box.image_id, j)
            tally["draw"] += 1
            return missing
        held = inside_fraction(gt.boxes, np.asarray([box.xyxy], np.float64))[:, 0]
        inside = [m for m in missing if held[m] >= SEVERAL_INSIDE]
        for t in [j, *inside]:
            self._click_true_box(box.image_id, gt, t, tally)
        return [m for m in missing if m not in inside]

    def _verify_proposal(self, box_id: int, gt: GroundTruth, j: int, tally: dict[str, int]) -> None:
        """Yes/no on a box the machine proposed for true box ``j``: yes (a class change where
        its class differs) at IoU >= ``verify_iou``, else a redraw onto the true box."""
        row = self.store.box(box_id)
        iou = float(box_iou(np.asarray([row.xyxy]), gt.boxes[j : j + 1])[0, 0])
        if iou < self.verify_iou:
            decision = "correct"
        else:
            decision = "accept" if self._index[row.class_id] == gt.labels[j] else "set_class"
        self._apply(box_id, gt, decision, j)
        tally[decision] += 1

    def _click_true_box(
        self,
        image_id: int,
        gt: GroundTruth,
        t: int,
        tally: dict[str, int],
        candidates: ClickCandidates | None = None,
    ) -> None:
        """A centre click on true box ``t`` (``click_s``), the box the workflow proposes for it
        (from ``candidates``, default the stored predictions, else the pixels), then yes/no on
        it; a click that finds no box (logged ``click_none``) is followed by a drawn one."""
        from napari_al.core.workflow import propose_click_box, record_click, stored_candidates

        x1, y1, x2, y2 = (float(v) for v in gt.boxes[t])
        self._charge("click")
        tally["click"] = tally.get("click", 0) + 1
        proposal = propose_click_box(
            self.store,
            image_id,
            ((x1 + x2) / 2, (y1 + y2) / 2),
            self.class_ids[int(gt.labels[t])],
            candidates=stored_candidates(self.store, image_id)
            if candidates is None
            else candidates,
        )
        if proposal is None:  # no box: logged, so the counts add up to the seconds; then drawn
            payload = {"click": [(x1 + x2) / 2, (y1 + y2) / 2]}
            self.store.log_action("click_none", image_id=image_id, payload=payload)
            self._draw(image_id, t)
            tally["draw"] += 1
            return
        command = record_click(self.annotator, proposal)
        assert command.box_id is not None
        self._verify_proposal(command.box_id, gt, t, tally)

    def _ask_about_missed(
        self, image_id: int, shown: Sequence[BoxRow], missing: list[int], tally: dict[str, int]
    ) -> list[int]:
        """Before drawing the objects the shown boxes missed, ask yes/no about the weaker
        predictions that no shown or human box covers (IoU < ``MISSED_IOU``, as the GUI's
        "possibly missed" marks), best first: a yes (IoU >= ``verify_iou`` with a missing true
        box) costs ``verify_s`` instead of ``draw_s``. Returns the true boxes still missing."""
        gt = self.gt[image_id]
        floor = float(self.verify_missed_min_score or 0.0)
        shown_ids = {b.id for b in shown}
        weak = [
            b
            for b in self.store.boxes(image_id=image_id, statuses="predicted")
            if b.id not in shown_ids and b.score is not None and floor <= b.score
        ]
        weak.sort(key=lambda b: (-float(b.score or 0.0), b.id))
        covered = [
            b.xyxy
            for b in self.store.boxes(image_id=image_id)
            if b.status in HUMAN_STATUSES or b.id in shown_ids
        ]
        free = set(missing)
        for box in weak:
            if not free:
                break
            if (
                covered
                and box_iou(
                    np.asarray([box.xyxy], np.float64), np.asarray(covered, np.float64)
                ).max()
                >= MISSED_IOU
            ):
                continue
            decision, j = self._judge_one(box, gt, set(range(len(gt))) - free)
            tally[decision] += 1
            tally["missed_asked"] = tally.get("missed_asked", 0) + 1
            covered.append(box.xyxy)
            if j is not None:
                free.discard(j)
        return sorted(free)

    def answer_box(self, box_id: int) -> str:
        """Box-level query (Desai et al.): one model box verified, class fixed if needed, or
        marked background below ``verify_iou``. The image becomes ``partial``. Returns the
        decision, or ``skipped`` when the box was already judged."""
        box = self.store.box(box_id)
        if box.status not in ("predicted", "pseudo"):
            return "skipped"
        image_id = box.image_id
        if self.store.image(image_id).review_state == "unseen":
            self._charge("review_state")
            self.store.set_review_state(image_id, "partial")
        decision, _ = self._judge_one(box, self.gt[image_id], self._claimed(image_id))
        return decision
