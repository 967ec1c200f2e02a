"""Region-level completeness (issue 14): "mark region complete" beside "mark image complete".

A large image is reviewed region by region: a person labels every object in a rectangle and
marks it complete. A part of :class:`~napari_al.core.annotator.Annotator` (a mixin): one user
action = one transaction = one logged ``complete_region`` action
(:meth:`~napari_al.core.store.ProjectStore.complete_region`), on the annotator's undo stack.
What it teaches: :mod:`napari_al.core.workflow.crops`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from napari_al.core.store.rows import BOX_TOLERANCE_PX

if TYPE_CHECKING:
    from napari_al.core.annotator import Command
    from napari_al.core.store import ProjectStore


class RegionReviewActions:
    """:meth:`complete_region` of :class:`~napari_al.core.annotator.Annotator` (a mixin; the
    annotator provides the store, the stack and the review-state helper)."""

    store: ProjectStore
    _push: Callable[[Command], Command]
    _partial_change: Callable[[int], tuple[str | None, str | None]]

    def complete_region(self, image_id: int, xyxy: Iterable[float]) -> Command | None:
        """Every object in ``xyxy`` (``x1, y1, x2, y2`` image pixels) of the image is labelled.

        One transaction and one logged ``complete_region`` action; an ``unseen`` image turns
        ``partial`` in the same action (as with a box action), or ``complete`` when the
        rectangle covers the whole image (within :data:`~napari_al.core.store.rows.
        BOX_TOLERANCE_PX`: the same statement as "mark image complete"). Returns the command
        (its ``region_id`` is the new region; undo deletes it and puts the review state back),
        or None, changing nothing, when the whole image is ``complete`` already or the
        rectangle lies inside a region already marked complete. Raises
        :class:`~napari_al.core.store.StoreError` for an unknown image or a rectangle outside
        it or empty."""
        from napari_al.core.annotator import Command

        xyxy = tuple(float(v) for v in xyxy)
        with self.store.transaction():
            image = self.store.image(image_id)
            if image.review_state == "complete":
                return None
            w, h = float(image.width), float(image.height)
            x1, y1, x2, y2 = xyxy
            cx1, cy1, cx2, cy2 = min(max(x1, 0), w), min(max(y1, 0), h), min(x2, w), min(y2, h)
            if (cx1 < cx2 and cy1 < cy2) and any(  # an empty one: the store's error
                r.x1 <= cx1 and r.y1 <= cy1 and cx2 <= r.x2 and cy2 <= r.y2
                for r in self.store.reviewed_regions(image_id)
            ):
                return None  # already known complete: a second copy would only clutter
            tol = BOX_TOLERANCE_PX
            whole = x1 <= tol and y1 <= tol and x2 >= w - tol and y2 >= h - tol
            if whole:
                review_before, review_after = image.review_state, "complete"
            else:
                review_before, review_after = self._partial_change(image_id)
            action_id, region_id = self.store.complete_region(
                image_id, xyxy, review_state=review_after
            )
            after = self.store.reviewed_region(region_id)
        return self._push(
            Command(
                "complete_region",
                int(image_id),
                review_before=review_before,
                review_after=review_after,
                action_id=action_id,
                region_id=region_id,
                region_after=after,
            )
        )
