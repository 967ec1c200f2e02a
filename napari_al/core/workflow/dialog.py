"""The dialog planner through the workflow: one queue of questions for the widget's Questions
panel, ``napari-al rank --unit question`` and the simulator's ``dialog`` strategy (issue 13,
item 5).

The questions and the value rule that orders them are :mod:`napari_al.core.dialog` (Benenson's
annotation dialogs; Desai et al. 2019's switch from clicks to boxes). This module feeds them
from the project:

- :func:`score_gains`: one pass of the model over the images to plan (the query strategy's
  views, :func:`~napari_al.core.workflow.ranking.rank_pool`'s scoring, plus the low-threshold
  candidates): each base box's strategy value, each image's score and its missed-object
  estimate (the ``missed`` scorer's value where the strategy has it, else the candidate
  density, :func:`napari_al.core.scoring.missed.candidate_density`), each normalised to [0, 1]
  over the images planned (:class:`QuestionGains`). An image whose stored predictions are not
  the model's (another version, or none) gets the pass's base predictions stored, as
  :func:`~napari_al.core.workflow.predict_images` stores them, so a verify question names a box
  a person is shown; the gains follow the stored boxes they match (same class, IoU >= 0.9).
- :class:`Planner`: the questions of one image from the store as it is now (:meth:`Planner.image`):
  ``verify`` for each shown box (a prediction the calibrated rule shows, or a click or refined
  box awaiting yes/no) that no human, rejected or pending box already covers (IoU >=
  :data:`~napari_al.core.workflow.examples.JUDGED_IOU`) and that does not lie in a region
  answered "no" for its class; ``region`` for each region
  :func:`~napari_al.core.workflow.region_questions` finds in the model's candidates; ``draw``
  when neither is left. Without a scorer value a question's gain is the binary entropy of its
  answer's probability. The expected unlabelled objects of a draw question start from the mean
  count of human boxes on the project's complete images outside val/test (1 when there are
  none).
- :func:`plan_questions`: the queue over the pool (its incomplete images, skipped ones left out),
  best first; with ``save`` the first ``budget`` are stored as the project's latest question set
  (``query_sets`` with unit ``question``; :func:`stored_questions` reads it back), so the viewer
  and a restart see the same queue.
- :func:`replan`: a queue with one image's questions planned again (after an answer there).
- :func:`is_open`: whether a question is still to be answered.
- :func:`supervision`: ``click`` or ``box`` now (:func:`napari_al.core.dialog.supervision_mode`
  on the model versions' stored ``map``/``map50``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.costs import CostModel
from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.dialog import (
    Question,
    draw_question,
    missing_objects,
    normalise,
    order,
    region_question,
    supervision_mode,
    verify_question,
)
from napari_al.core.selection import QueryItem
from napari_al.core.workflow.calibration import VerifyRule, verify_rule
from napari_al.core.workflow.clicks import ClickCandidates, has_model
from napari_al.core.workflow.crops import in_reviewed_area
from napari_al.core.workflow.examples import (
    HELD_OUT_SPLITS,
    JUDGED_IOU,
    _warn_skip,
    judged_boxes,
    judged_mask,
)
from napari_al.core.workflow.prediction import pool_image_ids
from napari_al.core.workflow.regions import known_empty, region_questions
from napari_al.core.workflow.settings import DialogSettings, QuerySettings, RegionSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import BoxRow, ProjectStore
    from napari_al.core.workflow.examples import OnSkip

#: The unit of a stored question set (``query_sets.unit``).
QUESTION_UNIT = "question"
#: A base box of the planning pass names the stored prediction it overlaps this much (same class).
MATCH_IOU = 0.9


@dataclass
class QuestionGains:
    """The scorer values of one planning pass, normalised to [0, 1] over the images planned.

    ``box``: box id -> gain of a stored box; ``image``: image id -> gain of the image (its
    strategy score); ``missed``: image id -> its normalised missed-object estimate;
    ``candidates``: image id -> the model's low-threshold candidates (region questions);
    ``model_version``: the model that scored them; ``strategy``: its spec.
    """

    box: dict[int, float] = field(default_factory=dict)
    image: dict[int, float] = field(default_factory=dict)
    missed: dict[int, float] = field(default_factory=dict)
    candidates: dict[int, ClickCandidates] = field(default_factory=dict)
    model_version: int | None = None
    strategy: str = ""

    @classmethod
    def from_questions(cls, questions: Iterable[Question]) -> QuestionGains:
        """The gains a stored queue carries (a verify question's box, a draw question's image,
        a region question's image), for planning again without the model."""
        out = cls()
        for q in questions:
            if q.kind == "verify" and q.box_id is not None:
                out.box[q.box_id] = q.gain
            elif q.kind == "draw":
                out.image[q.image_id] = q.gain
            else:
                out.missed[q.image_id] = max(q.gain, out.missed.get(q.image_id, 0.0))
        return out


def _candidates_of(pred: Any, version: int | None) -> ClickCandidates:
    """A scoring pass's candidate predictions as :class:`ClickCandidates` (background column
    dropped), as :func:`~napari_al.core.workflow.click_candidates` makes them."""
    probs = np.asarray(pred.probs, np.float32)
    return ClickCandidates(
        boxes=np.asarray(pred.boxes, np.float32).reshape(-1, 4),
        probs=probs[:, 1:].reshape(len(pred), -1),
        model_version=version,
        labels=np.asarray(pred.labels, np.int64).reshape(-1),
    )


def _stored_ids(
    store: ProjectStore, image_id: int, base: Any, version: int | None
) -> list[int | None]:
    """The stored prediction each base box names: the image's predictions are first replaced
    by ``base`` where they are not of ``version`` (module docstring); then each base box takes
    the stored box of its class it overlaps at IoU >= :data:`MATCH_IOU` (None: none)."""
    classes = store.classes()
    preds = store.boxes(image_id=image_id, statuses="predicted")
    if not preds or any(int(b.model_version or 0) != int(version or 0) for b in preds):
        rows = [
            (
                tuple(map(float, base.boxes[i])),
                classes[int(base.labels[i])].id,
                float(base.scores[i]),
            )
            for i in range(len(base))
        ]
        return list(store.replace_predictions(image_id, rows, version))
    xyxy = np.asarray(base.boxes, np.float64).reshape(-1, 4)
    iou = box_iou(xyxy, [b.xyxy for b in preds]) if len(xyxy) else np.zeros((0, len(preds)))
    out: list[int | None] = []
    for i in range(len(xyxy)):
        cls = classes[int(base.labels[i])].id
        ok = [k for k, b in enumerate(preds) if b.class_id == cls and iou[i, k] >= MATCH_IOU]
        out.append(preds[max(ok, key=lambda k: iou[i, k])].id if ok else None)
    return out


def score_gains(
    store: ProjectStore,
    detector: Detector,
    query: QuerySettings | None = None,
    image_ids: Sequence[int] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
) -> QuestionGains:
    """One pass of ``detector`` over ``image_ids`` (default: the pool's incomplete images) with
    the strategy of ``query`` (module docstring); stores the pass's predictions where the stored
    ones are not this model's. Unreadable images are reported to ``on_skip`` and left out."""
    from napari_al.core.scoring.missed import candidate_density
    from napari_al.core.workflow.ranking import score_images

    q = dataclasses.replace(query or QuerySettings(), unit="box")
    plan, scored = score_images(
        store,
        detector,
        q,
        image_ids,
        use_cache=False,
        progress=progress,
        should_stop=should_stop,
        on_skip=on_skip,
        tile_large=False,  # the planner's gains need whole-image views (docs/large-images.md)
    )
    keep = scored.kept()
    version = int(detector.model_version or 0) or None
    out = QuestionGains(model_version=version, strategy=plan.strategy.spec)
    if not keep:
        return out
    pool = plan.strategy.combine_raw([scored.raws[i] for i in keep])  # type: ignore[misc]
    boxes: dict[int, float] = {}
    images: dict[int, float] = {}
    missed: dict[int, float] = {}
    has_box_scorer = bool(plan.strategy.box_scorers)
    for j, i in enumerate(keep):
        row = scored.rows[i]
        views, _ = scored.extra[i]
        ids_i = _stored_ids(store, row.id, views.base, version)
        if has_box_scorer:
            for k, box_id in enumerate(ids_i):
                if box_id is not None:
                    boxes[box_id] = float(pool.box_scores[j][k])
        images[row.id] = float(pool.image_scores[j])
        est = pool.breakdown.get("missed")
        missed[row.id] = float(est[j]) if est is not None else candidate_density(views)
        if views.candidates is not None:
            out.candidates[row.id] = _candidates_of(views.candidates, version)
    out.box, out.image, out.missed = normalise(boxes), normalise(images), normalise(missed)
    return out


def supervision(store: ProjectStore, settings: DialogSettings | None = None) -> tuple[str, str]:
    """``click`` or ``box`` for missed objects now, and why
    (:func:`napari_al.core.dialog.supervision_mode` on the model versions' metrics)."""
    s = settings or DialogSettings()
    history = [v.metrics for v in store.model_versions()]
    return supervision_mode(history, s.supervision, s.switch_min_rise)


def mean_objects(store: ProjectStore) -> float:
    """Mean number of human boxes on the complete images outside val/test (else on every
    complete image; 1.0 when there is none): the prior count of a draw question."""
    rows = [r for r in store.images(review_state="complete")]
    own = [r for r in rows if r.split not in HELD_OUT_SPLITS] or rows
    if not own:
        return 1.0
    counts = [len(store.boxes(image_id=r.id, statuses=HUMAN_STATUSES)) for r in own]
    return float(np.mean(counts))


@dataclass
class Planner:
    """Plans the questions of one image at a time from the store as it is now (module
    docstring). Build it with :meth:`build`; :meth:`refresh` after answers re-reads the
    calibrated rule (online calibration) and the supervision."""

    store: ProjectStore
    settings: DialogSettings
    costs: CostModel
    rule: VerifyRule
    gains: QuestionGains
    candidates: dict[int, ClickCandidates]
    region_settings: RegionSettings
    mode: str
    prior: float
    shown: Callable[[BoxRow], bool] | None = None
    #: Region questions of a stored queue, asked (while open) about images without candidates.
    known_regions: dict[int, list[Question]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        store: ProjectStore,
        settings: DialogSettings | None = None,
        *,
        costs: CostModel | None = None,
        gains: QuestionGains | None = None,
        candidates: Mapping[int, ClickCandidates] | None = None,
        region_settings: RegionSettings | None = None,
        shown: Callable[[BoxRow], bool] | None = None,
        min_score: float | None = None,
        questions: Iterable[Question] = (),
    ) -> Planner:
        """``gains``: a planning pass's (:func:`score_gains`), or None; ``candidates``: the
        model's candidates by image, beside those of ``gains``; ``shown``: which predictions a
        person is shown (default: the calibrated rule, or ``score >= min_score``);
        ``questions``: a stored queue (:func:`stored_questions`), whose region questions are
        asked again, while open, about images without candidates here."""
        s = settings or DialogSettings()
        costs = costs or CostModel()
        g = gains or QuestionGains()
        cands = {**g.candidates, **dict(candidates or {})}
        rule = verify_rule(store, costs, min_score=min_score)
        mode, _ = supervision(store, s)
        rs = region_settings or RegionSettings()
        known: dict[int, list[Question]] = {}
        for q in questions:
            if q.kind == "region":
                known.setdefault(q.image_id, []).append(q)
        prior = mean_objects(store)
        return cls(store, s, costs, rule, g, cands, rs, mode, prior, shown, known)

    def refresh(self) -> None:
        """Re-read the calibrated rule (answers refit it) and the supervision in force."""
        self.rule = verify_rule(self.store, self.costs, min_score=self.rule.min_score)
        self.mode, _ = supervision(self.store, self.settings)

    def _shows(self, box: BoxRow) -> bool:
        return self.shown(box) if self.shown is not None else self.rule.shows(box)

    def _verify(self, image_id: int) -> list[Question]:
        store, w = self.store, self.settings.saving_weight
        names = {c.id: c.name for c in store.classes()}
        rows = [
            b
            for b in store.boxes(image_id=image_id, statuses=("predicted", "pseudo"))
            if b.status == "pseudo" or self._shows(b)
        ]
        if not rows:
            return []
        xyxy = np.asarray([b.xyxy for b in rows], np.float64)
        covered = judged_mask(xyxy, judged_boxes(store, image_id), iou=JUDGED_IOU)
        pseudo = np.asarray([b.xyxy for b in rows if b.status == "pseudo"], np.float64)
        if len(pseudo):
            near = box_iou(xyxy, pseudo).max(axis=1) >= JUDGED_IOU
            covered |= near & np.asarray([b.status == "predicted" for b in rows])
        covered |= known_empty(store, image_id, xyxy, [b.class_id for b in rows])
        covered |= in_reviewed_area(store, image_id, xyxy)  # a region marked complete
        p = self.rule.probability(rows)
        out = []
        for b, skip, p_yes in zip(rows, covered, p, strict=True):
            if b.status == "predicted" and skip:
                continue
            unknown = bool(np.isnan(p_yes))
            out.append(
                verify_question(
                    image_id,
                    b.id,
                    b.xyxy,
                    b.class_id,
                    names.get(b.class_id, str(b.class_id)),
                    0.5 if unknown else float(p_yes),
                    None if unknown else self.gains.box.get(b.id),
                    self.costs,
                    saving_weight=w,
                    supervision=self.mode,
                )
            )
        return out

    def _regions(self, image_id: int) -> list[Question]:
        cands = self.candidates.get(image_id)
        if cands is None:  # none here: the stored queue's, while open
            return [q for q in self.known_regions.get(image_id, []) if is_open(self.store, q)]
        if not len(cands):
            return []
        found = region_questions(
            self.store,
            image_id,
            cands,
            costs=self.costs,
            settings=self.region_settings,
            shown=self._shows,
        )
        gain = self.gains.missed.get(image_id)
        return [
            region_question(
                image_id,
                r.xyxy,
                r.class_id,
                r.class_name,
                r.chance,
                r.expected,
                gain,
                self.costs,
                saving_weight=self.settings.saving_weight,
                supervision=self.mode,
            )
            for r in found
        ]

    def queue(self, image_ids: Iterable[int]) -> list[Question]:
        """The questions of ``image_ids`` worth asking now, best first (images a person
        skipped left out)."""
        skipped = _skipped(self.store)
        return order(q for i in image_ids if i not in skipped for q in self.image(i))

    def image(self, image_id: int) -> list[Question]:
        """The questions of image ``image_id`` worth asking now (value > 0), best first; none
        for a complete image."""
        if self.store.image(image_id).review_state == "complete":
            return []
        asked = order([*self._verify(image_id), *self._regions(image_id)])
        if asked:
            return asked
        labelled = len(self.store.boxes(image_id=image_id, statuses=(*HUMAN_STATUSES, "pseudo")))
        missing = missing_objects(self.prior, labelled)
        q = draw_question(
            image_id,
            missing,
            self.gains.image.get(image_id),
            self.costs,
            saving_weight=self.settings.saving_weight,
            supervision=self.mode,
        )
        return order([q])


def _skipped(store: ProjectStore) -> set[int]:
    return {int(a.image_id) for a in store.actions(kind="skip") if a.image_id is not None}


def plan_questions(
    store: ProjectStore,
    detector: Detector | None = None,
    settings: DialogSettings | None = None,
    *,
    query: QuerySettings | None = None,
    costs: CostModel | None = None,
    image_ids: Sequence[int] | None = None,
    gains: QuestionGains | None = None,
    candidates: Mapping[int, ClickCandidates] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
    save: bool = False,
) -> list[Question]:
    """The question queue over ``image_ids`` (default: the pool's incomplete images, those a
    person skipped left out), best first (module docstring).

    With a model trained in the project (``detector``) and no ``gains``, one planning pass
    (:func:`score_gains` with ``query``'s strategy) gives the gains and the candidates; without
    one, gains fall back to the answers' binary entropy and region questions come from
    ``candidates`` only. With ``save`` (and a run not stopped) the first ``query.budget``
    questions are stored as the project's latest question set."""
    q = query or QuerySettings()
    ids = pool_image_ids(store) if image_ids is None else list(image_ids)
    skipped = _skipped(store)
    ids = [i for i in ids if i not in skipped]
    if gains is None and has_model(detector):
        assert detector is not None
        unreadable: set[int] = set()

        def note(image_id: int, message: str) -> None:  # an unreadable image gets no question
            unreadable.add(int(image_id))
            (on_skip or _warn_skip)(image_id, message)

        gains = score_gains(
            store, detector, q, ids, progress=progress, should_stop=should_stop, on_skip=note
        )
        ids = [i for i in ids if i not in unreadable]
    elif gains is None:  # no pass reads the images: a file gone since import gets no question
        ids = _existing(store, ids, on_skip or _warn_skip)
    planner = Planner.build(store, settings, costs=costs, gains=gains, candidates=candidates)
    queue = begun_first(planner.queue(ids), planner)
    stopped = should_stop is not None and should_stop()
    if save and not stopped:
        version = None if detector is None else (detector.model_version or None)
        save_questions(store, queue[: q.budget], model_version=version, query=q, planner=planner)
    return queue


def _existing(store: ProjectStore, ids: Sequence[int], on_skip: OnSkip) -> list[int]:
    """``ids`` whose image file exists; each other one is reported to ``on_skip``."""
    kept = []
    for image_id in ids:
        path = store.abs_path(store.image(image_id))
        if path.exists():
            kept.append(image_id)
        else:
            on_skip(int(image_id), f"{path}: file not found (moved or deleted since import)")
    return kept


def replan(queue: Sequence[Question], planner: Planner, image_id: int) -> list[Question]:
    """``queue`` with the questions of ``image_id`` planned again by ``planner`` from the store
    as it is now, best first.

    Unless :attr:`DialogSettings.scatter_images` is set, an image a person has begun
    (review state ``partial``) keeps the front of the queue until it is complete: its questions
    come first, best first, then the rest. Questions scattered over many images leave them
    partly answered, and their unverified predictions then train as noisy labels (Desai et al.
    2019) and their unlabelled objects as damped background; on BCCD that lowered mAP@0.5
    from 0.476 to 0.441 (docs/benchmarks.md). Benenson's dialogs are per image for the same
    reason: an image is finished while the person has it in mind."""
    rest = [q for q in queue if q.image_id != image_id]
    mine = planner.image(image_id)
    if not planner.settings.scatter_images and mine and _begun(planner.store, image_id):
        return [*order(mine), *order(rest)]
    return order([*rest, *mine])


def begun_first(queue: Sequence[Question], planner: Planner) -> list[Question]:
    """``queue`` (best first) with the questions of the images a person has begun (review
    state ``partial``) ahead of the rest, each part keeping its order, unless
    :attr:`DialogSettings.scatter_images` is set (:func:`replan`'s rule, for a queue planned
    afresh: ``napari-al rank --unit question``, the viewer after a restart, a simulated round;
    without it the plan ignored begun images and the option changed nothing)."""
    if planner.settings.scatter_images:
        return list(queue)
    begun = {i for i in {q.image_id for q in queue} if _begun(planner.store, i)}
    return [q for q in queue if q.image_id in begun] + [q for q in queue if q.image_id not in begun]


def _begun(store: ProjectStore, image_id: int) -> bool:
    try:
        return store.image(image_id).review_state == "partial"
    except Exception:  # the image left the project
        return False


def is_open(store: ProjectStore, question: Question) -> bool:
    """Whether ``question`` still waits for its answer: its image is not complete; a verify
    question's box is still unreviewed (predicted or pseudo); a region question got no answer
    about that region and class; a draw question's image is not complete."""
    try:
        row = store.image(question.image_id)
    except Exception:  # the image left the project
        return False
    if row.review_state == "complete":
        return False
    if question.kind == "verify":
        try:
            box = store.box(int(question.box_id))  # type: ignore[arg-type]
        except Exception:
            return False
        return box.status in ("predicted", "pseudo")
    if question.kind == "region":
        assert question.xyxy is not None

        def same(region: Any, class_id: Any) -> bool:
            return (
                region is not None
                and class_id is not None
                and int(class_id) == question.class_id
                and bool(np.allclose(region, question.xyxy, atol=1e-3))
            )

        if any(same(b.xyxy, b.class_id) for b in store.empty_regions(question.image_id)):
            return False  # answered no (an undone no deletes the region: open again)
        return not any(
            a.payload.get("answer") == "yes"
            and same(a.payload.get("region"), a.payload.get("class_id"))
            for a in store.actions(kind="region", image_id=question.image_id)
        )
    return True


def question_item(q: Question) -> QueryItem:
    """A question as a stored query item (unit ``question``; the question in ``breakdown``)."""
    d = q.to_dict()
    d.pop("image_id")
    return QueryItem(q.image_id, q.value, QUESTION_UNIT, q.xyxy, None, d)


def save_questions(
    store: ProjectStore,
    questions: Sequence[Question],
    *,
    model_version: int | None,
    query: QuerySettings | None = None,
    planner: Planner | None = None,
) -> int:
    """Store ``questions`` as the project's latest question set (one transaction); returns its
    id."""
    settings: dict[str, Any] = dataclasses.asdict(query or QuerySettings())
    settings["unit"] = QUESTION_UNIT
    if planner is not None:
        settings["dialog"] = dataclasses.asdict(planner.settings)
        settings["supervision_in_force"] = planner.mode
        settings["costs"] = planner.costs.as_dict()
    return store.save_queries(
        [question_item(q) for q in questions], model_version=model_version, settings=settings
    )


def stored_questions(store: ProjectStore) -> list[Question]:
    """The project's latest stored question set (:func:`plan_questions` with ``save``), best
    first; empty when none was stored."""
    latest = store.latest_queries(unit=QUESTION_UNIT)
    if latest is None:
        return []
    out = []
    for item in latest.items:
        d = dict(item.breakdown)
        d["image_id"] = item.image_id
        out.append(Question.from_dict(d))
    return out
