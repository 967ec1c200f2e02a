"""The dialog planner in the viewer: one question at a time (part of the annotation controller;
issue 13, item 5).

The queue is the project's stored question set (``napari-al rank --unit question``, so a
restart asks the same questions; :func:`napari_al.core.workflow.stored_questions`), else the
workflow plans it here without running the model (:func:`napari_al.core.workflow.plan_questions`:
gains from the stored queue or the answers' entropy, regions from the candidates click mode
computed and the round's possibly missed suggestions). J (:data:`~napari_al.gui.keys.KEYS`)
asks the next question still open: it shows its image and selects the box of a verify question
(W, Q, 1-9, Shift+E/S/K answer it), draws the region of a region question as the dashed
``question`` layer (Shift+M, Shift+X), or names what is missing for a draw question (K or R,
then Shift+W). The answers are the existing keys' actions, so nothing here writes to the store.
Before each question the image of the previous one is planned again from the store as it is now
(:func:`napari_al.core.workflow.replan`). The *Questions* panel
(:class:`~napari_al.gui.sections.questions.QuestionsSection`) shows the question, its keys and
the seconds spent so far. Layers change only here, on the main thread (the key handler).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.core.workflow import Question, RegionQuestion
from napari_al.gui.notify import notify_user

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView


class DialogMode:
    """The planner's questions of :class:`~napari_al.gui.controller.AnnotationController`
    (a mixin)."""

    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    detector: Any
    missed: dict[int, list[Any]]
    _click_cache: dict[tuple[int, int, int], Any]

    def _init_dialog_mode(self) -> None:
        #: The queue, best first (:class:`~napari_al.core.workflow.Question`).
        self.dialog_queue: list[Question] = []
        #: The question asked now (None: none yet, or none left).
        self.question: Question | None = None
        #: Questions the person passed over with J before answering them (not asked again).
        self._passed: set[Any] = set()
        #: The stored queue the session started from (its gains and region questions).
        self._stored_questions: list[Question] = []
        #: Whether the last J found nothing left worth asking.
        self.dialog_done = False

    def load_questions(self) -> None:
        """Start from the project's stored question set (none: planned at the first J)."""
        self.question = None
        self.dialog_done = False
        self._passed = set()
        self._stored_questions = [] if self.store is None else workflow.stored_questions(self.store)
        self.dialog_queue = list(self._stored_questions)
        self._emit("question")  # type: ignore[attr-defined]

    def _dialog_candidates(self) -> dict[int, workflow.ClickCandidates]:
        """The model's candidates per image that the viewer holds: click mode's for the model
        in use, else the round's possibly missed suggestions."""
        assert self.store is not None
        det = self.detector
        version = (det.model_version or None) if det is not None else None
        n = len(self.store.classes())
        out = {i: workflow.suggestion_candidates(s, n, version) for i, s in self.missed.items()}
        if det is not None:
            for (image_id, v, ident), cands in self._click_cache.items():
                if v == int(det.model_version or 0) and ident == id(det):
                    out[image_id] = cands
        return out

    def _planner(self) -> workflow.Planner:
        assert self.store is not None
        return workflow.Planner.build(
            self.store,
            gains=workflow.QuestionGains.from_questions(
                [*self._stored_questions, *self.dialog_queue]
            ),
            candidates=self._dialog_candidates(),
            shown=self.view.shows_prediction,
            questions=self._stored_questions,
        )

    def next_question(self) -> None:
        """J: ask the next question of the planner still open."""
        self._run("next question", self._next_question)  # type: ignore[attr-defined]

    def _next_question(self) -> None:
        store, _ = self._require()  # type: ignore[attr-defined]
        planner = self._planner()
        previous = self.question
        if previous is not None:
            if workflow.is_open(store, previous):
                self._passed.add(previous.key)
            self.dialog_queue = workflow.replan(self.dialog_queue, planner, previous.image_id)
        question = self._first_open()
        if question is None:  # the queue is used up: plan over the pool (no model run)
            self.dialog_queue = planner.queue(workflow.pool_image_ids(store))
            question = self._first_open()
        self.question = question
        self.dialog_done = question is None
        if question is None:
            notify_user("info", "no question left worth its seconds: retrain, or rank again")
        else:
            self._ask(question)
        self._emit("question")  # type: ignore[attr-defined]

    def _first_open(self) -> Question | None:
        assert self.store is not None
        for q in self.dialog_queue:
            if q.key not in self._passed and workflow.is_open(self.store, q):
                return q
        return None

    def _ask(self, q: Question) -> None:
        """Show the question: its image, and its box (selected) or region (dashed)."""
        if q.image_id != self.view.image_id:
            self.show_image(q.image_id, focus_first=False)  # type: ignore[attr-defined]
        if q.kind == "verify":
            self._focus(q.box_id, center=True)  # type: ignore[attr-defined]
        elif q.kind == "region":
            self.refresh_region_question()  # type: ignore[attr-defined]
            if q.xyxy is not None:
                self.view.center_on(q.xyxy, zoom=True)
        else:
            self._focus(None)  # type: ignore[attr-defined]
        notify_user("info", f"{q.text} ({q.keys_text})")

    def pinned_region(self, image_id: int) -> RegionQuestion | None:
        """The region question the dialog asks on image ``image_id`` (None: none), which the
        ``question`` layer shows instead of the region mode's own choice."""
        q = self.question
        if q is None or q.kind != "region" or q.image_id != image_id or self.store is None:
            return None
        if q.xyxy is None or q.class_id is None or not workflow.is_open(self.store, q):
            return None
        return RegionQuestion(q.image_id, q.xyxy, q.class_id, q.class_name, q.expected, q.p_yes)

    def question_status(self) -> str:
        """Where the question stands: ``open``, ``answered`` or ``none``."""
        if self.question is None or self.store is None:
            return "none"
        return "open" if workflow.is_open(self.store, self.question) else "answered"
