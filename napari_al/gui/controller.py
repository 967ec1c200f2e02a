"""The annotation loop in a viewer: actions, keys, layer edits, queried items, highlights.

:class:`AnnotationController` joins a :class:`~napari_al.core.annotator.Annotator` (every
action to the store at once, with undo/redo) and an :class:`~napari_al.gui.viewer_state.ImageView`
(the layers). The keys of :mod:`napari_al.gui.keys` call its methods; so do the widget's
buttons and the tests.

The class is put together from one part per concern:

- this module: the project, showing an image, focus and highlights, the wrapper that turns a
  store refusal into a warning, and applying a finished background job's result;
- :mod:`napari_al.gui.key_actions`: what the keys do (accept, reject, class, complete, skip,
  undo/redo, toggles) and binding them;
- :mod:`napari_al.gui.navigation`: moving to the next image and between queried items;
- :mod:`napari_al.gui.layer_edits`: mouse edits on the ``boxes`` layer, applied to the store;
- :mod:`napari_al.gui.click_mode`: click mode (K), a centre click becomes a box;
- :mod:`napari_al.gui.answer_keys`: the rich verification answers (part, container, several).
- :mod:`napari_al.gui.region_mode`: region questions, "any more <class> here?" (Shift+M yes,
  Shift+X no).
- :mod:`napari_al.gui.dialog_mode`: the dialog planner's questions, one at a time (J).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.core.annotator import Annotator, Change, StaleCommand
from napari_al.core.store import ProjectStore, StoreError
from napari_al.gui.answer_keys import AnswerKeys
from napari_al.gui.click_mode import ClickMode
from napari_al.gui.dialog_mode import DialogMode
from napari_al.gui.key_actions import KeyActions
from napari_al.gui.layer_edits import LayerEdits
from napari_al.gui.navigation import Navigation
from napari_al.gui.notify import notify_user
from napari_al.gui.region_mode import RegionMode
from napari_al.gui.viewer_state import ImageView

if TYPE_CHECKING:
    import napari
    from napari.layers import Shapes

    from napari_al.core.selection import QueryItem

log = logging.getLogger(__name__)

#: Events the controller tells its listeners about.
EVENTS = ("image", "data", "class", "queries", "model", "mode", "question")


class AnnotationController(
    KeyActions, Navigation, LayerEdits, ClickMode, AnswerKeys, RegionMode, DialogMode
):
    """Drives one viewer's annotation loop on one project store."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.view = ImageView(viewer)
        self.view.on_boxes_layer = self._connect_boxes_layer
        self.store: ProjectStore | None = None
        self.annotator: Annotator | None = None
        self.detector: Any = None
        self.queries: list[QueryItem] = []
        self.query_index = -1
        self.missed: dict[int, list[tuple[tuple[float, float, float, float], float, int]]] = {}
        self.focus_box: int | None = None
        self.current_class_id: int | None = None
        self.skipped: set[int] = set()
        self.listeners: list[Callable[[str], None]] = []
        self._pending: list[tuple[str, Any]] = []
        self._flush_scheduled = False
        self._from_layer = False
        self._layer_connected: Shapes | None = None
        self._keys_bound = False
        #: The person's explicit raw-score threshold of the predictions shown (None: the
        #: workflow's calibrated rule, P(yes) x draw_s > verify_s).
        self.min_prediction_score: float | None = None
        self._init_click_mode()
        self._init_region_mode()
        self._init_dialog_mode()

    # -- listeners ------------------------------------------------------------------------

    def _emit(self, what: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(what)
            except Exception:  # a broken listener must not break annotation
                log.exception("listener failed on %s", what)

    # -- project --------------------------------------------------------------------------

    def set_store(self, store: ProjectStore | None) -> None:
        """Start annotating another project (None: close)."""
        if self.annotator is not None:
            self.annotator.unsubscribe(self._on_change)
        self.region_clicking = self.region_question = None
        if self.click_mode:
            self.set_click_mode(False)
        self._reset_clicks()
        self.store = store
        self.annotator = None if store is None else Annotator(store)
        if self.annotator is not None:
            self.annotator.subscribe(self._on_change)
        self._apply_prediction_rule()
        self.detector = None
        self.queries, self.query_index, self.missed = [], -1, {}
        self.focus_box = None
        self.skipped = set()
        self.view.image_id = None
        self._draw_question()
        classes = [] if store is None else store.classes()
        self.current_class_id = classes[0].id if classes else None
        self.view.set_current_class(classes[0].name if classes else "")
        if store is not None:  # the last ranking, from the CLI or an earlier session
            self.queries = workflow.stored_queries(store)
        self.load_questions()  # the dialog planner's stored queue
        self._emit("class")
        self._emit("queries")
        self._emit("model")

    def _require(self) -> tuple[ProjectStore, Annotator]:
        if self.store is None or self.annotator is None:
            raise StoreError("no project is open")
        return self.store, self.annotator

    @property
    def image_id(self) -> int | None:
        return self.view.image_id

    # -- showing images -------------------------------------------------------------------

    def show_image(self, image_id: int, focus_first: bool = True) -> dict[str, float]:
        """Show an image with its boxes, highlights and suggestions; focus its first
        unreviewed box. Returns the switch timing (seconds, by part)."""
        store, annotator = self._require()
        self.flush()
        self._apply_prediction_rule()  # the answers so far recalibrate the model's scores
        timing = self.view.show(store, image_id)
        self.focus_box = None
        self._render_highlights()
        if focus_first:
            self._focus(annotator.next_unreviewed_box(image_id))
        self._emit("image")
        return timing

    def _render_highlights(self, query: QueryItem | None = None) -> None:
        image_id = self.view.image_id
        if image_id is None:
            return
        names = self._class_names()
        regions = [
            (q.box, "region", f"region {q.score:.2f}")
            for q in self.queries
            if q.unit == "region" and q.image == image_id and q.box is not None and q is not query
        ]
        if self.store is not None:  # the regions marked complete (Shift+C)
            regions += [
                (r.xyxy, "reviewed", "complete") for r in self.store.reviewed_regions(image_id)
            ]
        suggestions = self.missed.get(image_id, [])
        if suggestions and self.store is not None:  # none in a region answered "no"
            ids = [c.id for c in self.store.classes()]
            labels = [ids[c] if 0 <= c < len(ids) else -1 for _, _, c in suggestions]
            empty = workflow.known_empty(
                self.store, image_id, [x for x, _, _ in suggestions], labels
            )
            suggestions = [s for s, e in zip(suggestions, empty, strict=True) if not e]
        missed = [
            (xyxy, "missed", f"missed? {names[c] if 0 <= c < len(names) else c} {s:.2f}")
            for xyxy, s, c in suggestions
        ]
        query_marks = (
            [(query.box, "query", f"query {query.score:.2f}")]
            if query is not None and query.box is not None and query.image == image_id
            else []
        )
        self.view.set_overlays(regions, missed, query_marks)
        self.refresh_region_question()

    def _class_names(self) -> list[str]:
        return [] if self.store is None else [c.name for c in self.store.classes()]

    def reload(self) -> None:
        """Re-read the current image's boxes (after rescoring, or an error)."""
        if self.store is not None and self.view.image_id is not None:
            self.view.reload(self.store)
            if self.focus_box is not None and self.view.index_of(self.focus_box) is None:
                self._focus(None)
            self._emit("data")

    # -- focus and targets ----------------------------------------------------------------

    def _focus(self, box_id: int | None, center: bool = False) -> None:
        self.focus_box = box_id
        if box_id is None or self.store is None:
            self.view.select_boxes([])
            return
        try:
            row = self.store.box(box_id)
        except StoreError:
            self.focus_box = None
            self.view.select_boxes([])
            return
        # the focused box is shown selected (napari draws its outline and handles; editing
        # the highlights layer instead costs a dims update per key press)
        self.view.select_boxes([box_id])
        if center:
            self.view.bring_into_view(row.xyxy)

    def target_boxes(self) -> list[int]:
        """The boxes the keys act on: the selected shapes, else the focused box."""
        ids = self.view.selected_box_ids()
        if ids:
            return ids
        if self.focus_box is not None and self.view.index_of(self.focus_box) is not None:
            return [self.focus_box]
        return []

    # -- running actions safely -----------------------------------------------------------

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run an action; a store refusal becomes a warning and a reload, never a crash."""
        try:
            self.flush()
            return fn()
        except StaleCommand as exc:
            notify_user("warning", str(exc))
            self.reload()
        except StoreError as exc:
            notify_user("warning", f"{what}: {exc}")
            self.reload()
        except Exception as exc:
            log.exception("%s failed", what)
            notify_user("error", f"{what} failed: {type(exc).__name__}: {exc}")
            self.reload()
        return None

    def _on_change(self, change: Change) -> None:
        """The annotator changed the store: mirror the boxes of the image on screen."""
        if self._from_layer or self.store is None:
            return
        if change.image_id == self.view.image_id:
            for box_id in change.box_ids:
                self.view.sync_box(self._box_or_none(box_id), box_id)
            if any(c.kind in ("region", "complete_region") for c in change.command.leaves):
                # answered no, taken back or given again: the marks and the next question
                i = self.query_index
                self._render_highlights(self.queries[i] if 0 <= i < len(self.queries) else None)
        self._emit("data")

    def _box_or_none(self, box_id: int):  # type: ignore[no-untyped-def]
        assert self.store is not None
        try:
            return self.store.box(box_id)
        except StoreError:
            return None

    # -- background results ---------------------------------------------------------------

    @property
    def model_version(self) -> int | None:
        """The store's model version of the model in use (None: no model, or not trained here)."""
        return (self.detector.model_version or None) if self.detector is not None else None

    def set_detector(self, detector: Any) -> None:
        """Use ``detector`` from now on (one reference swap: the model in use changes here);
        its calibration now decides which predictions are shown."""
        self.detector = detector
        self._click_cache.clear()  # clicks waiting for candidates get the new model's
        self._apply_prediction_rule()
        self._emit("model")

    def _apply_prediction_rule(self) -> None:
        """Show and offer for review the predictions the workflow's rule shows: the calibrated
        one, or the person's explicit threshold (:attr:`min_prediction_score`)."""
        shows = lambda row: True  # noqa: E731
        if self.store is not None:
            shows = workflow.verify_rule(self.store, min_score=self.min_prediction_score).shows
        self.view.shows_prediction = shows
        if self.annotator is not None:
            self.annotator.shows = shows

    def apply_result(self, result: Any) -> None:
        """Apply a finished job's result (main thread): swap the model atomically, show the
        new ranking and suggestions, re-read the current image's boxes."""
        if result.detector is not None:
            self.set_detector(result.detector)
        if result.missed:
            self.missed.update(result.missed)
        if result.queries is not None:
            self.set_queries(result.queries)
        image_id = self.view.image_id
        if image_id is not None and (image_id in result.predicted_images or result.missed):
            self.reload()
            self._render_highlights()
            if self.annotator is not None and not self.target_boxes():
                # the new predictions replaced the selected box: select the next one to review
                self._focus(self.annotator.next_unreviewed_box(image_id))

    def close(self) -> None:
        if self._click_runner is not None:
            self._click_runner.cancel()
        if self._keys_bound:
            self.unbind_keys()
        self.set_store(None)
        self.view.close()
