"""Region questions' answers: "any more <class> here?" (:mod:`napari_al.core.regions`).

One answer is ONE logged action of kind ``region`` (payload ``answer``, ``region``,
``class_id``, ``expected``), one transaction. A "no" makes the region known empty of the
class: it is stored as a box of that class with status ``rejected`` and source ``region``
(:data:`~napari_al.core.data.REGION_SOURCE`; the action's payload also has the box's
``before``/``after``, so undo deletes it like any box action). A "yes" changes no data: the
clicks that follow label the objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from napari_al.core.data import REGION_SOURCE
from napari_al.core.store.boxes import BoxesMixin
from napari_al.core.store.rows import BoxRow, StoreError, _check_xyxy

#: The answers a region question takes.
REGION_ANSWERS = ("yes", "no")


class RegionsMixin(BoxesMixin):
    """The answers to region questions."""

    def answer_region(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        answer: str,
        *,
        expected: float | None = None,
        review_state: str | None = None,
    ) -> tuple[int, int | None]:
        """A person answered "any more <class ``class_id``> in ``xyxy`` (image pixels)?".

        ``answer`` ``"no"``: the region is stored as a ``rejected`` box of the class with
        source ``region`` (known empty of the class); ``"yes"``: nothing but the log.
        ``expected``: the missed objects the estimate expected there (kept in the payload).
        ``review_state`` (only with a "no", which changes data): also set the image to it, in
        the same action. Returns ``(action id, box id or None)``. StoreError for an unknown
        image or class, a box outside the image, or another answer.
        """
        if answer not in REGION_ANSWERS:
            raise StoreError(f"a region question is answered yes or no, not {answer!r}")
        with self._write() as conn:
            image = self._image(conn, image_id)
            region = _check_xyxy(xyxy, image.width, image.height)
            self._require_class(conn, class_id)
            extra = {
                "answer": answer,
                "region": list(region),
                "class_id": int(class_id),
                "expected": None if expected is None else float(expected),
            }
            if answer == "yes":
                if review_state is not None:
                    raise StoreError("a yes to a region question changes no review state")
                return self._log(conn, "region", image.id, None, extra), None
            row = self._insert_box(
                conn, image, region, class_id, "rejected", None, REGION_SOURCE, None
            )
            action = self._log_box(
                conn, "region", None, row, review_state=review_state, extra=extra
            )
            return action, row.id

    def empty_regions(self, image_id: int) -> list[BoxRow]:
        """The regions of the image answered "no" (boxes with status ``rejected`` and source
        ``region``), in id order."""
        return [b for b in self.boxes(image_id, statuses="rejected") if b.source == REGION_SOURCE]
