"""Reviewed regions: the rectangles of an image a person marked complete (issue 14).

A large image (a mosaic, a slide scan) is reviewed region by region: "mark region complete"
says every object in the rectangle is labelled, as "mark image complete" says it of a whole
image. Training samples a large image's crops from its reviewed regions and treats the rest of
it as neither positive nor background (:mod:`napari_al.core.workflow.crops`).

Marking a region is ONE logged action of kind ``complete_region`` (payload ``region``: its id,
``before`` None, ``after`` the region's row, and ``review`` when the image's review state
changed in the same action), one transaction. The undo system
(:class:`~napari_al.core.annotator.Annotator`) takes it back with
:meth:`ReviewedRegionsMixin.restore_reviewed_region` (kind ``undo``/``redo``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from napari_al.core.store.images import ImagesMixin
from napari_al.core.store.rows import (
    _REVIEWED_COLS,
    ReviewedRegionRow,
    StoreError,
    _as_id,
    _check_choice,
    _check_xyxy,
    _opt_id,
)
from napari_al.core.store.schema import UNDO_KINDS


class ReviewedRegionsMixin(ImagesMixin):
    """Regions of images marked complete."""

    def complete_region(
        self, image_id: int, xyxy: Iterable[float], *, review_state: str | None = None
    ) -> tuple[int, int]:
        """A person marked ``xyxy`` (``x1, y1, x2, y2`` image pixels, clamped to the image
        within :data:`~napari_al.core.store.rows.BOX_TOLERANCE_PX`) of the image complete:
        every object in it is labelled. With ``review_state``, also set the image to it in the
        same action (payload ``review``). Returns ``(action id, region id)``. StoreError for an
        unknown image or a rectangle outside the image or empty."""
        with self._write() as conn:
            image = self._image(conn, image_id)
            xyxy = _check_xyxy(xyxy, image.width, image.height, "region")
            cur = conn.execute(
                "INSERT INTO reviewed_regions (image_id, x1, y1, x2, y2, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (image.id, *xyxy, self._now()),
            )
            row = self._reviewed(conn, int(cur.lastrowid))
            assert row is not None
            action = self._log_region(conn, "complete_region", None, row, review_state)
            return action, row.id

    def reviewed_region(self, region_id: int) -> ReviewedRegionRow:
        """The reviewed region with this id; StoreError when there is none."""
        with self._read() as conn:
            row = self._reviewed(conn, region_id)
        if row is None:
            raise StoreError(f"reviewed region {region_id} does not exist")
        return row

    def reviewed_region_or_none(self, region_id: int) -> ReviewedRegionRow | None:
        """The reviewed region with this id, or None (e.g. after its undo)."""
        with self._read() as conn:
            return self._reviewed(conn, region_id)

    def reviewed_regions(self, image_id: int | None = None) -> list[ReviewedRegionRow]:
        """Reviewed regions in id order, optionally of one image (StoreError for an image
        that does not exist)."""
        sql = f"SELECT {_REVIEWED_COLS} FROM reviewed_regions"
        args: tuple[Any, ...] = ()
        with self._read() as conn:
            if image_id is not None:
                sql += " WHERE image_id = ?"
                args = (self._image(conn, image_id).id,)
            return [ReviewedRegionRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    def restore_reviewed_region(
        self,
        region_id: int,
        state: ReviewedRegionRow | None,
        *,
        kind: str,
        ref_id: int | None = None,
        review_state: str | None = None,
    ) -> int:
        """Put reviewed region ``region_id`` back into a recorded state (None: it does not
        exist): the undo system's inverse of :meth:`complete_region`, logged as ``kind``
        (``undo`` or ``redo``) with ``ref_id`` the action undone or redone, and the image's
        review state put back with ``review_state`` (same action). Returns the action id.
        StoreError when there is nothing to change or ``state`` belongs to another region."""
        _check_choice(kind, UNDO_KINDS, "reviewed region action kind")
        region_id = _as_id(region_id, "reviewed region")
        with self._write() as conn:
            before = self._reviewed(conn, region_id)
            if state is not None and state.id != region_id:
                raise StoreError(f"state of region {state.id} cannot restore region {region_id}")
            if before == state:
                raise StoreError(f"reviewed region {region_id} is already in that state")
            conn.execute("DELETE FROM reviewed_regions WHERE id = ?", (region_id,))
            if state is not None:
                image = self._image(conn, state.image_id)
                xyxy = _check_xyxy(state.xyxy, image.width, image.height, "region")
                conn.execute(
                    "INSERT INTO reviewed_regions (id, image_id, x1, y1, x2, y2, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (region_id, image.id, *xyxy, state.created),
                )
            after = self._reviewed(conn, region_id)
            return self._log_region(
                conn, kind, before, after, review_state, ref_id=_opt_id(ref_id, "action")
            )

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _reviewed(conn: sqlite3.Connection, region_id: int) -> ReviewedRegionRow | None:
        row = conn.execute(
            f"SELECT {_REVIEWED_COLS} FROM reviewed_regions WHERE id = ?",
            (_as_id(region_id, "reviewed region"),),
        ).fetchone()
        return None if row is None else ReviewedRegionRow(*row)

    def _log_region(
        self,
        conn: sqlite3.Connection,
        kind: str,
        before: ReviewedRegionRow | None,
        after: ReviewedRegionRow | None,
        review_state: str | None,
        ref_id: int | None = None,
    ) -> int:
        """Log a reviewed-region action (payload ``region``, ``before``/``after``); with
        ``review_state``, first set the image to it and record the change (``review``)."""
        ref = after if after is not None else before
        assert ref is not None
        return self._log_states(
            conn,
            kind,
            before,
            after,
            box_id=None,
            review_state=review_state,
            ref_id=ref_id,
            extra={"region": ref.id},
        )
