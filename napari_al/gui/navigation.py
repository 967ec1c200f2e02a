"""Moving between images and queried items (part of the annotation controller).

:class:`Navigation` walks the ranked query list (images, boxes or regions), skipping images
that are complete or skipped, and falls back to the next incomplete image, for
:class:`~napari_al.gui.controller.AnnotationController`, which sets up the state it uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.gui.notify import notify_user

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator
    from napari_al.core.selection import QueryItem
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView


class Navigation:
    """Image and queried-item navigation of
    :class:`~napari_al.gui.controller.AnnotationController` (a mixin)."""

    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    queries: list[QueryItem]
    query_index: int
    skipped: set[int]

    # -- images ---------------------------------------------------------------------------

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
            notify_user("info", "every image is complete or skipped")
            return False
        current = self.view.image_id or 0
        later = [r for r in rows if r.id > current]
        self.show_image((later or rows)[0].id)
        return True

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
                notify_user("info", "no queried items yet: use Rescore / Retrain in the widget")
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
            notify_user("info", "every queried image is complete or skipped: retrain or rescore")
        return False

    def go_to_item(self, index: int) -> None:
        """Show queried item ``index``: its image, and its box or region."""
        item = self.queries[index]
        self.query_index = index
        _, annotator = self._require()
        if item.image != self.view.image_id:
            self.show_image(int(item.image), focus_first=False)
        self._render_highlights(query=item)
        if item.unit == "region" and item.box is not None:
            # the camera jumps (zooms) to the region; the focus stays inside it (a box
            # elsewhere in a large image would move the camera off the region)
            self.view.center_on(item.box, zoom=True)
            self._focus(self._first_unreviewed_in(item.box), center=True)
            self._emit("queries")
            return
        if item.unit == "box" and item.box is not None:
            # the stored box of the queried object; none (a large image's ranking windows are
            # not prediction's, docs/large-images.md): an unreviewed box centred in it, else
            # nothing, with the query on screen, never a box elsewhere in the image
            box_id = self._match_box(item.box) or self._first_unreviewed_in(item.box)
            if box_id is None:
                self.view.bring_into_view(item.box)
        else:
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
