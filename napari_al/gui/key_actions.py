"""What the annotation keys do, and binding them (part of the annotation controller).

:class:`KeyActions` holds the actions behind :data:`~napari_al.gui.keys.KEYS` (accept, reject,
class 1-9, next unreviewed box, complete, skip, undo/redo, the toggles) for
:class:`~napari_al.gui.controller.AnnotationController`, which sets up the state they use.
Each action runs through the controller's ``_run``: a store refusal becomes a warning and a
reload, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.core.project import plural
from napari_al.gui.keys import KEYS
from napari_al.gui.notify import NO_CLASS_HINT, notify_user

if TYPE_CHECKING:
    import napari
    from napari.layers import Shapes

    from napari_al.core.annotator import Annotator
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView


class KeyActions:
    """The key actions of :class:`~napari_al.gui.controller.AnnotationController` (a mixin)."""

    viewer: napari.viewer.Viewer
    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    focus_box: int | None
    current_class_id: int | None
    skipped: set[int]
    _keys_bound: bool

    # -- the key actions ------------------------------------------------------------------

    def _judge(self, what: str, act: Callable[[int], Any]) -> None:
        _, annotator = self._require()
        ids = self.target_boxes()
        if not ids:
            notify_user("info", f"{what}: no box selected (click one, or press G)")
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
            if not classes:
                notify_user("warning", NO_CLASS_HINT)
                return
            if not 1 <= n <= len(classes):
                notify_user("warning", f"there is no class {n} (the project has {len(classes)})")
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
                notify_user(
                    "info", "every box of this image is reviewed (Shift+W marks it complete)"
                )
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
                notify_user(
                    "info",
                    f"image complete; {left} unreviewed {plural(left, 'prediction')} left as "
                    f"{'it is' if left == 1 else 'they are'}",
                )
            self._emit("data")
            self._advance()

        self._run("complete image", act)

    def complete_region(self) -> None:
        """Mark the part of the image on screen complete (a reviewed region,
        :func:`napari_al.core.workflow.mark_region_complete`)."""

        def act() -> None:
            store, annotator = self._require()
            image_id = self.view.image_id
            if image_id is None:
                return
            row = store.image(image_id)
            from napari_al.gui.viewer_state import visible_rect

            x1, y1, x2, y2 = visible_rect(self.view.viewer)
            rect = (
                max(0.0, x1),
                max(0.0, y1),
                min(float(row.width), x2),
                min(float(row.height), y2),
            )
            if rect[2] - rect[0] < 1 or rect[3] - rect[1] < 1:
                notify_user("info", "complete region: the image is not on screen")
                return
            if workflow.mark_region_complete(annotator, image_id, rect) is None:
                notify_user("info", "the whole image is complete already")
                return
            w, h = rect[2] - rect[0], rect[3] - rect[1]
            left = workflow.unreviewed_in_region(annotator, image_id, rect)
            note = (
                f"; {left} unreviewed {plural(left, 'prediction')} in it "
                f"{'trains' if left == 1 else 'train'} as background (W accepts)"
                if left
                else ""
            )
            notify_user(
                "info",
                f"region complete: {w:.0f} x {h:.0f} px at ({rect[0]:.0f}, {rect[1]:.0f}){note}",
            )
            self._emit("data")

        self._run("complete region", act)

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
            notify_user("info", "nothing to undo" if undo else "nothing to redo")
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

    def set_min_prediction_score(self, value: float | None) -> None:
        """Hide (and skip in review) the predictions scoring below ``value``; None: those the
        calibrated rule does not show (P(yes) x draw_s <= verify_s, the default)."""
        self.min_prediction_score = None if value is None else float(value)
        self._apply_prediction_rule()
        self.reload()
        if self.store is not None and self.image_id is not None and self.focus_box is None:
            self._focus(self.annotator.next_unreviewed_box(self.image_id))

    def toggle_highlights(self) -> None:
        """Hide or show the highlights layer (regions, suggestions, focus)."""
        self.view.set_highlights_visible(not self.view.show_highlights)

    # -- binding the keys -----------------------------------------------------------------

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
