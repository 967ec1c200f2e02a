"""The annotation loop in a viewer: actions, keys, layer edits, queried items, highlights.

:class:`AnnotationController` joins a :class:`~napari_al.core.annotator.Annotator` (every
action to the store at once, with undo/redo) and an :class:`~napari_al.gui.viewer_state.ImageView`
(the layers). The keys of :mod:`napari_al.gui.keys` call its methods; so do the widget's
buttons and the tests.

Edits made with the mouse on the ``boxes`` layer arrive as the layer's finished data events
(``added``, ``changed``, ``removed``; the ``-ing`` ones fire mid-gesture and only serve to note
which boxes are about to be removed). Shapes map to store boxes through the ``box_id`` feature;
a shape with ``box_id`` -1 (drawn) or a repeated id (pasted) is a new box. The events are noted
at once and applied right after napari finishes its own handling (a zero-delay timer, or
:meth:`AnnotationController.flush`), each as one store action.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.annotator import Annotator, Change, StaleCommand
from napari_al.core.boxes import box_iou, clip_xyxy
from napari_al.core.store import ProjectStore, StoreError
from napari_al.gui.keys import KEYS
from napari_al.gui.viewer_state import ImageView

if TYPE_CHECKING:
    import napari
    from napari.layers import Shapes

    from napari_al.core.selection import QueryItem

log = logging.getLogger(__name__)

#: Events the controller tells its listeners about.
EVENTS = ("image", "data", "class", "queries", "model")


def _notify(level: str, message: str) -> None:
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning}.get(
        level, notifications.show_error
    )(message)


class AnnotationController:
    """Drives one viewer's annotation loop on one project store."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.view = ImageView(viewer)
        self.view.on_boxes_layer = self._connect_boxes_layer
        self.store: ProjectStore | None = None
        self.annotator: Annotator | None = None
        self.detector: Any = None
        self.model_version: int | None = None
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
        self.store = store
        self.annotator = None if store is None else Annotator(store)
        if self.annotator is not None:
            self.annotator.min_score = self.view.min_prediction_score
            self.annotator.subscribe(self._on_change)
        self.detector = None
        self.model_version = None
        self.queries, self.query_index, self.missed = [], -1, {}
        self.focus_box = None
        self.skipped = set()
        self.view.image_id = None
        classes = [] if store is None else store.classes()
        self.current_class_id = classes[0].id if classes else None
        self.view.set_current_class(classes[0].name if classes else "")
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
        missed = [
            (xyxy, "missed", f"missed? {names[c] if 0 <= c < len(names) else c} {s:.2f}")
            for xyxy, s, c in self.missed.get(image_id, [])
        ]
        query_marks = (
            [(query.box, "query", f"query {query.score:.2f}")]
            if query is not None and query.box is not None and query.image == image_id
            else []
        )
        self.view.set_overlays(regions, missed, query_marks)

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
        if center and not self._in_view(row.xyxy):
            self.view.center_on(row.xyxy)

    def _in_view(self, xyxy: Sequence[float]) -> bool:
        try:
            cam = self.viewer.camera
            h, w = self.viewer._canvas_size
            cy, cx = cam.center[-2:]
            half_h, half_w = h / 2 / cam.zoom, w / 2 / cam.zoom
        except Exception:
            return True
        x1, y1, x2, y2 = xyxy
        return cx - half_w <= x1 and x2 <= cx + half_w and cy - half_h <= y1 and y2 <= cy + half_h

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
            _notify("warning", str(exc))
            self.reload()
        except StoreError as exc:
            _notify("warning", f"{what}: {exc}")
            self.reload()
        except Exception as exc:
            log.exception("%s failed", what)
            _notify("error", f"{what} failed: {type(exc).__name__}: {exc}")
            self.reload()
        return None

    def _on_change(self, change: Change) -> None:
        """The annotator changed the store: mirror the boxes of the image on screen."""
        if self._from_layer or self.store is None:
            return
        if change.image_id == self.view.image_id:
            for box_id in change.box_ids:
                self.view.sync_box(self._box_or_none(box_id), box_id)
        self._emit("data")

    def _box_or_none(self, box_id: int):  # type: ignore[no-untyped-def]
        assert self.store is not None
        try:
            return self.store.box(box_id)
        except StoreError:
            return None

    # -- the key actions ------------------------------------------------------------------

    def _judge(self, what: str, act: Callable[[int], Any]) -> None:
        _, annotator = self._require()
        ids = self.target_boxes()
        if not ids:
            _notify("info", f"{what}: no box selected (click one, or press G)")
            return
        with annotator.group(what):
            for box_id in ids:
                act(box_id)
        if self.view.image_id is not None:
            self._focus(annotator.next_unreviewed_box(self.view.image_id, ids[-1]), center=True)

    def accept(self) -> None:
        """Accept the selected/focused box(es); focus the next unreviewed box."""
        self._run("accept", lambda: self._judge("accept", self._require()[1].accept))

    def reject(self) -> None:
        """Reject the selected/focused box(es); focus the next unreviewed box."""
        self._run("reject", lambda: self._judge("reject", self._require()[1].reject))

    def set_class_number(self, n: int) -> None:
        """Class ``n`` (1-based) for the selected/focused boxes and for the next drawn box."""

        def act() -> None:
            store, annotator = self._require()
            classes = store.classes()
            if not 1 <= n <= len(classes):
                _notify("warning", f"there is no class {n} (the project has {len(classes)})")
                return
            cls = classes[n - 1]
            self.set_current_class(cls.id)
            ids = [i for i in self.target_boxes() if store.box(i).class_id != cls.id]
            if ids:
                with annotator.group("set_class"):
                    for box_id in ids:
                        annotator.set_class(box_id, cls.id)

        self._run("set class", act)

    def set_current_class(self, class_id: int) -> None:
        """The class newly drawn boxes get."""
        if self.store is None:
            return
        names = {c.id: c.name for c in self.store.classes()}
        if class_id not in names:
            return
        self.current_class_id = class_id
        self.view.set_current_class(names[class_id])
        self._emit("class")

    def next_unreviewed(self) -> None:
        """Focus the next unreviewed box of the image (wrapping around)."""

        def act() -> None:
            _, annotator = self._require()
            if self.view.image_id is None:
                return
            after = self.focus_box
            ids = self.view.selected_box_ids()
            if ids:
                after = ids[-1]
            box_id = annotator.next_unreviewed_box(self.view.image_id, after)
            if box_id is None:
                _notify("info", "every box of this image is reviewed (Shift+W marks it complete)")
            self._focus(box_id, center=True)

        self._run("next unreviewed box", act)

    def complete_image(self) -> None:
        """Mark the image complete, then go to the next queried item (or image)."""

        def act() -> None:
            _, annotator = self._require()
            if self.view.image_id is None:
                return
            left = len(annotator.unreviewed_boxes(self.view.image_id))
            annotator.complete_image(self.view.image_id)
            if left:
                _notify("info", f"image complete; {left} unreviewed prediction(s) left as they are")
            self._emit("data")
            self._advance()

        self._run("complete image", act)

    def skip_image(self) -> None:
        """Skip the image (logged) and go to the next queried item (or image)."""

        def act() -> None:
            _, annotator = self._require()
            if self.view.image_id is None:
                return
            annotator.skip_image(self.view.image_id)
            self.skipped.add(self.view.image_id)
            self._advance()

        self._run("skip image", act)

    def _advance(self) -> None:
        if self.queries and self._step_item(+1):
            return
        self.next_image()

    def next_image(self) -> bool:
        """Show the next image (id order, wrapping) that is not complete and not skipped."""
        store, _ = self._require()
        rows = [
            r for r in store.images() if r.review_state != "complete" and r.id not in self.skipped
        ]
        if not rows:
            _notify("info", "every image is complete or skipped")
            return False
        current = self.view.image_id or 0
        later = [r for r in rows if r.id > current]
        self.show_image((later or rows)[0].id)
        return True

    def undo(self) -> None:
        """Undo the last action (shows its image when it happened on another one)."""
        self._run("undo", lambda: self._undo_redo(True))

    def redo(self) -> None:
        """Redo the last undone action."""
        self._run("redo", lambda: self._undo_redo(False))

    def _undo_redo(self, undo: bool) -> None:
        _, annotator = self._require()
        command = annotator.undo() if undo else annotator.redo()
        if command is None:
            _notify("info", "nothing to undo" if undo else "nothing to redo")
            return
        if command.image_id != self.view.image_id:
            self.show_image(command.image_id, focus_first=False)
        ids = [b for b in command.box_ids if self.view.index_of(b) is not None]
        if ids:
            self.focus_box = ids[-1]
            self.view.select_boxes(ids)

    def toggle_rejected(self) -> None:
        """Hide or show the rejected boxes."""
        self.view.show_rejected = not self.view.show_rejected
        self.reload()

    def set_min_prediction_score(self, value: float) -> None:
        """Hide (and skip in review) the predictions scoring below ``value``."""
        value = float(value)
        self.view.min_prediction_score = value
        if self.annotator is not None:
            self.annotator.min_score = value
        self.reload()
        if self.store is not None and self.image_id is not None and self.focus_box is None:
            self._focus(self.annotator.next_unreviewed_box(self.image_id))

    def toggle_highlights(self) -> None:
        """Hide or show the highlights layer (regions, suggestions, focus)."""
        self.view.set_highlights_visible(not self.view.show_highlights)

    # -- queried items --------------------------------------------------------------------

    def set_queries(self, items: Iterable[QueryItem]) -> None:
        self.queries = list(items)
        self.query_index = -1
        self._render_highlights()
        self._emit("queries")

    def next_item(self) -> None:
        """Go to the next queried item (skipping complete and skipped images)."""
        self._run("next item", lambda: self._step_item(+1, notify=True))

    def previous_item(self) -> None:
        """Go to the previous queried item."""
        self._run("previous item", lambda: self._step_item(-1, notify=True))

    def _step_item(self, step: int, notify: bool = False) -> bool:
        store, _ = self._require()
        if not self.queries:
            if notify:
                _notify("info", "no queried items yet: use Rescore / Retrain in the widget")
            return False
        states = {r.id: r.review_state for r in store.images()}
        n = len(self.queries)
        i = self.query_index
        for _ in range(n):
            i = (i + step) % n if i >= 0 or step > 0 else n - 1
            item = self.queries[i]
            if states.get(item.image) == "complete" or item.image in self.skipped:
                continue
            self.go_to_item(i)
            return True
        if notify:
            _notify("info", "every queried image is complete or skipped: retrain or rescore")
        return False

    def go_to_item(self, index: int) -> None:
        """Show queried item ``index``: its image, and its box or region."""
        item = self.queries[index]
        self.query_index = index
        _, annotator = self._require()
        if item.image != self.view.image_id:
            self.show_image(int(item.image), focus_first=False)
        self._render_highlights(query=item)
        box_id = None
        if item.unit == "box" and item.box is not None:
            box_id = self._match_box(item.box)
        if box_id is None and item.unit == "region" and item.box is not None:
            self.view.center_on(item.box, zoom=True)
            box_id = self._first_unreviewed_in(item.box)
        if box_id is None:
            box_id = annotator.next_unreviewed_box(int(item.image))
        self._focus(box_id, center=True)
        self._emit("queries")

    def _match_box(self, xyxy: Sequence[float], min_iou: float = 0.5) -> int | None:
        """The predicted box of the image on screen that best overlaps ``xyxy``."""
        assert self.store is not None and self.view.image_id is not None
        rows = self.store.boxes(image_id=self.view.image_id)
        if not rows:
            return None
        iou = box_iou(np.asarray([xyxy], float), np.asarray([r.xyxy for r in rows], float))[0]
        best = int(np.argmax(iou))
        return rows[best].id if iou[best] >= min_iou else None

    def _first_unreviewed_in(self, region: Sequence[float]) -> int | None:
        assert self.annotator is not None and self.view.image_id is not None
        x1, y1, x2, y2 = region
        for b in self.annotator.unreviewed_boxes(self.view.image_id):
            cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
            if x1 <= cx <= x2 and y1 <= cy <= y2:
                return b.id
        return None

    # -- keys -----------------------------------------------------------------------------

    def action(self, name: str) -> Callable[[], None]:
        """The controller method behind a key action name (``class_3`` -> class 3)."""
        if name.startswith("class_"):
            n = int(name.split("_", 1)[1])
            return lambda: self.set_class_number(n)
        return getattr(self, name)

    def bind_keys(self) -> None:
        """Bind :data:`~napari_al.gui.keys.KEYS`: viewer keys now, digits on the boxes layer."""
        for key in KEYS:
            if key.scope == "viewer":
                fn = self.action(key.action)
                self.viewer.bind_key(key.key, lambda _viewer, fn=fn: fn(), overwrite=True)
        self._keys_bound = True
        if self.view._alive(self.view._boxes_layer):
            self._bind_layer_keys(self.view.boxes_layer)

    def unbind_keys(self) -> None:
        for key in KEYS:
            if key.scope == "viewer":
                self.viewer.bind_key(key.key, None)
        self._keys_bound = False

    def _bind_layer_keys(self, layer: Shapes) -> None:
        for key in KEYS:
            if key.scope == "boxes":
                fn = self.action(key.action)
                layer.bind_key(key.key, lambda _layer, fn=fn: fn(), overwrite=True)

    # -- layer events ---------------------------------------------------------------------

    def _connect_boxes_layer(self, layer: Shapes) -> None:
        layer.events.data.connect(self._on_layer_data)
        # napari's paste (Ctrl+V) adds shapes without a data event; it does emit features
        layer.events.features.connect(self._on_layer_features)
        self._layer_connected = layer
        if self._keys_bound:
            self._bind_layer_keys(layer)

    def _on_layer_data(self, event: Any) -> None:
        if self.view.busy or self.store is None or self.view.image_id is None:
            return
        action = str(event.action)
        ids = self.view.box_ids()
        indices = [int(i) for i in (event.data_indices or ()) if isinstance(i, (int, np.integer))]
        if action == "removing":
            gone = [int(ids[i]) for i in indices if 0 <= i < len(ids) and ids[i] >= 0]
            self._queue("remove", gone)
        elif action == "added":
            self._queue("added", None)
        elif action == "changed":
            changed = [int(ids[i]) for i in indices if 0 <= i < len(ids)]
            self._queue("changed", changed)

    def _on_layer_features(self, event: Any = None) -> None:
        if self.view.busy or self.store is None or self.view.image_id is None:
            return
        ids = self.view.box_ids()
        if ids.size and (ids.min() < 0 or np.unique(ids).size != ids.size):
            self._queue("added", None)

    def _queue(self, kind: str, payload: Any) -> None:
        self._pending.append((kind, payload))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self.flush)

    def flush(self) -> None:
        """Apply the noted layer edits to the store now (each one store action)."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for kind, payload in pending:
            try:
                if kind == "remove":
                    self._apply_removed(payload)
                elif kind == "added":
                    self._apply_added()
                elif kind == "changed":
                    self._apply_changed(payload)
            except StoreError as exc:
                _notify("warning", f"edit not saved: {exc}")
                self.reload()
            except Exception as exc:
                log.exception("applying a %s edit failed", kind)
                _notify("error", f"edit not saved: {type(exc).__name__}: {exc}")
                self.reload()

    def _clipped(self, index: int) -> tuple[float, float, float, float] | None:
        assert self.view.image_row is not None
        row = self.view.image_row
        b = clip_xyxy([self.view.shape_xyxy(index)], row.width, row.height)[0]
        if not (b[2] - b[0] >= 1.0 and b[3] - b[1] >= 1.0) or not all(map(math.isfinite, b)):
            return None
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def _apply_removed(self, box_ids: list[int]) -> None:
        _, annotator = self._require()
        box_ids = [b for b in box_ids if self._box_or_none(b) is not None]
        if not box_ids:
            return
        self._from_layer = True
        try:
            with annotator.group("delete"):
                for box_id in box_ids:
                    annotator.delete(box_id)
        finally:
            self._from_layer = False
        if self.focus_box in box_ids:
            self._focus(None)
        self._emit("data")

    def _apply_added(self) -> None:
        store, annotator = self._require()
        image_id = self.view.image_id
        assert image_id is not None
        layer = self.view.boxes_layer
        ids = self.view.box_ids()
        seen: set[int] = set()
        new: list[int] = []
        for i, b in enumerate(ids):
            if b < 0 or b in seen:
                new.append(i)
            else:
                seen.add(int(b))
        if not new:
            return
        by_name = {c.name: c.id for c in store.classes()}
        labels = layer.features["label"].tolist() if "label" in layer.features else []
        drawn: list[tuple[int, tuple[float, float, float, float], int]] = []
        empty: list[int] = []
        for i in new:
            xyxy = self._clipped(i)
            label = labels[i] if i < len(labels) else None
            class_id = by_name.get(label, self.current_class_id)
            if xyxy is None or class_id is None:
                empty.append(i)
            else:
                drawn.append((i, xyxy, class_id))
        # note each new shape's place by a temporary negative id, then remove the unusable ones
        with self.view.programmatic():
            feats = layer.features
            for k, (i, _, _) in enumerate(drawn):
                feats.at[feats.index[i], "box_id"] = -(1000 + k)
            if empty:
                layer.remove(empty)
        if empty:
            _notify("warning", "a box must be at least 1 pixel wide and high inside the image")
        if not drawn:
            return
        self._from_layer = True
        try:
            with annotator.group("draw"):
                for k, (_, xyxy, class_id) in enumerate(drawn):
                    command = annotator.draw(image_id, xyxy, class_id)
                    assert command.box_id is not None
                    index = self.view.index_of(-(1000 + k))
                    if index is not None:
                        with self.view.programmatic():
                            feats = layer.features
                            feats.at[feats.index[index], "box_id"] = command.box_id
                    self.view.sync_box(store.box(command.box_id), command.box_id)
        finally:
            self._from_layer = False
        self._emit("data")

    def _apply_changed(self, box_ids: list[int]) -> None:
        store, annotator = self._require()
        edits: list[tuple[int, tuple[float, float, float, float] | None]] = []
        for box_id in box_ids:
            if box_id < 0:
                continue
            index = self.view.index_of(box_id)
            if index is None:
                continue
            row = self._box_or_none(box_id)
            if row is None:
                continue
            xyxy = self._clipped(index)
            if xyxy is not None and np.allclose(xyxy, row.xyxy, atol=1e-3):
                if self.view.boxes_layer.shape_type[index] != "rectangle":
                    self.view.sync_box(row, box_id, force=True)
                continue
            edits.append((box_id, xyxy))
        if not edits:
            return
        self._from_layer = True
        try:
            with annotator.group("correct"):
                for box_id, xyxy in edits:
                    if xyxy is None:  # dragged off the image: put it back
                        _notify("warning", "a box cannot leave the image; it was put back")
                        self.view.sync_box(store.box(box_id), box_id, force=True)
                        continue
                    annotator.correct(box_id, xyxy)
                    self.view.sync_box(store.box(box_id), box_id)
        finally:
            self._from_layer = False
        self._emit("data")

    # -- background results ---------------------------------------------------------------

    def apply_result(self, result: Any) -> None:
        """Apply a finished job's result (main thread): swap the model atomically, show the
        new ranking and suggestions, re-read the current image's boxes."""
        if result.detector is not None:
            self.detector = result.detector  # one reference swap: the model in use changes here
            self.model_version = result.model_version
            self._emit("model")
        if result.missed:
            self.missed.update(result.missed)
        if result.queries is not None:
            self.set_queries(result.queries)
        if self.view.image_id is not None and (
            self.view.image_id in result.predicted_images or result.missed
        ):
            self.reload()
            self._render_highlights()

    def close(self) -> None:
        if self._keys_bound:
            self.unbind_keys()
        self.set_store(None)
