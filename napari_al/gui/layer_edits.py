"""Mouse edits on the ``boxes`` layer, applied to the store (part of the annotation controller).

Edits made with the mouse on the ``boxes`` layer arrive as the layer's finished data events
(``added``, ``changed``, ``removed``; the ``-ing`` ones fire mid-gesture and only serve to note
which boxes are about to be removed). Shapes map to store boxes through the ``box_id`` feature;
a shape with ``box_id`` -1 (drawn) or a repeated id (pasted) is a new box. The events are noted
at once and applied right after napari finishes its own handling (a zero-delay timer, or
:meth:`LayerEdits.flush`), each as one store action.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import clip_xyxy
from napari_al.core.store import StoreError
from napari_al.gui.notify import NO_CLASS_HINT, notify_user

if TYPE_CHECKING:
    from napari.layers import Shapes

    from napari_al.core.annotator import Annotator
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView

log = logging.getLogger(__name__)


class LayerEdits:
    """Layer edits of :class:`~napari_al.gui.controller.AnnotationController` (a mixin)."""

    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    focus_box: int | None
    current_class_id: int | None
    _pending: list[tuple[str, Any]]
    _flush_scheduled: bool
    _from_layer: bool
    _layer_connected: Shapes | None
    _keys_bound: bool

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
                notify_user("warning", f"edit not saved: {exc}")
                self.reload()
            except Exception as exc:
                log.exception("applying a %s edit failed", kind)
                notify_user("error", f"edit not saved: {type(exc).__name__}: {exc}")
                self.reload()

    # -- applying the edits ---------------------------------------------------------------

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
        if empty and not by_name:
            notify_user("warning", f"the box was not kept. {NO_CLASS_HINT}")
        elif empty:
            notify_user("warning", "a box must be at least 1 pixel wide and high inside the image")
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
                        notify_user("warning", "a box cannot leave the image; it was put back")
                        self.view.sync_box(store.box(box_id), box_id, force=True)
                        continue
                    annotator.correct(box_id, xyxy)
                    self.view.sync_box(store.box(box_id), box_id)
        finally:
            self._from_layer = False
        self._emit("data")
