"""Classes, images (split and review state) and ignore regions of a project store."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from napari_al.core.data import REVIEW_STATES, SPLITS
from napari_al.core.names import control_problem
from napari_al.core.store.actions import ActionLogMixin
from napari_al.core.store.rows import (
    _IGNORE_COLS,
    _IMAGE_COLS,
    ClassRow,
    IgnoreRegionRow,
    ImageRow,
    StoreError,
    _as_id,
    _check_choice,
    _check_xyxy,
    _opt_id,
)
from napari_al.core.store.schema import UNDO_KINDS


def check_class_name(name: object) -> None:
    """:class:`StoreError` (one line) unless ``name`` is a non-empty string without a control
    character (a line break would split ``classes.txt`` and every message naming the class;
    :mod:`napari_al.core.names`)."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError(f"class name must be a non-empty string, got {name!r}")
    problem = control_problem(name)
    if problem:
        raise StoreError(
            f"class name {name!r} holds {problem}, which classes.txt, VOC's XML and one-line "
            "messages cannot hold; name the class without it"
        )


class ImagesMixin(ActionLogMixin):
    """Classes, images and ignore regions."""

    # -- classes -------------------------------------------------------------------------

    def classes(self) -> list[ClassRow]:
        """All classes in their order (``position``); index i is the detector's label i."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, name, position FROM classes ORDER BY position, id")
            return [ClassRow(*r) for r in rows]

    def add_class(self, name: str) -> int:
        """Append a class at the end of the list; :class:`StoreError` if the name exists, is
        empty or holds a control character (:func:`check_class_name`)."""
        with self._write() as conn:
            return self._add_class(conn, name)

    def _add_class(self, conn: sqlite3.Connection, name: str) -> int:
        check_class_name(name)
        if conn.execute("SELECT 1 FROM classes WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"class {name!r} already exists")
        position = conn.execute("SELECT coalesce(max(position) + 1, 0) FROM classes").fetchone()
        cur = conn.execute(
            "INSERT INTO classes (name, position) VALUES (?, ?)", (name, position[0])
        )
        return int(cur.lastrowid)

    def class_id(self, name: str) -> int:
        """The id of the class called ``name``; StoreError if unknown."""
        with self._read() as conn:
            row = conn.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"unknown class {name!r}")
        return int(row[0])

    def _require_class(self, conn: sqlite3.Connection, class_id: int) -> None:
        class_id = _as_id(class_id, "class")
        if conn.execute("SELECT 1 FROM classes WHERE id = ?", (class_id,)).fetchone() is None:
            raise StoreError(f"class {class_id} does not exist")

    # -- images --------------------------------------------------------------------------

    def add_image(
        self,
        path: str | os.PathLike[str],
        sha256: str,
        width: int,
        height: int,
        split: str = "pool",
        review_state: str = "unseen",
    ) -> int:
        """Register one image (not logged); fail if its path is already in the project."""
        with self._write() as conn:
            return self._add_image(
                conn, self.rel_path(path), sha256, width, height, split, review_state
            )

    def _add_image(
        self,
        conn: sqlite3.Connection,
        rel: str,
        sha256: str,
        width: int,
        height: int,
        split: str,
        review_state: str,
    ) -> int:
        _check_choice(split, SPLITS, "split")
        _check_choice(review_state, REVIEW_STATES, "review state")
        if not (isinstance(sha256, str) and len(sha256) == 64):
            raise StoreError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if int(width) <= 0 or int(height) <= 0:
            raise StoreError(f"image size must be positive, got {width}x{height}")
        if conn.execute("SELECT 1 FROM images WHERE path = ?", (rel,)).fetchone():
            raise StoreError(f"image {rel!r} is already in the project")
        cur = conn.execute(
            "INSERT INTO images (path, sha256, width, height, split, review_state, added)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel, sha256.lower(), int(width), int(height), split, review_state, self._now()),
        )
        return int(cur.lastrowid)

    def image(self, image_id: int) -> ImageRow:
        """The image with this id; StoreError if missing."""
        with self._read() as conn:
            return self._image(conn, image_id)

    def _image(self, conn: sqlite3.Connection, image_id: int) -> ImageRow:
        image_id = _as_id(image_id, "image")
        row = conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise StoreError(f"image {image_id} does not exist")
        return ImageRow(*row)

    def images(self, split: str | None = None, review_state: str | None = None) -> list[ImageRow]:
        """Images in id order, optionally only one split and/or review state."""
        where, args = [], []
        if split is not None:
            where.append("split = ?")
            args.append(_check_choice(split, SPLITS, "split"))
        if review_state is not None:
            where.append("review_state = ?")
            args.append(_check_choice(review_state, REVIEW_STATES, "review state"))
        sql = f"SELECT {_IMAGE_COLS} FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [ImageRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    def image_by_path(self, path: str | os.PathLike[str]) -> ImageRow | None:
        """The image stored under ``path`` (absolute, or relative to the project), or None."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_IMAGE_COLS} FROM images WHERE path = ?", (self.rel_path(path),)
            ).fetchone()
        return None if row is None else ImageRow(*row)

    def set_split(self, image_id: int, split: str, log: bool = True) -> None:
        """Move an image to another split; logged as ``set_split`` (not undoable here)."""
        _check_choice(split, SPLITS, "split")
        with self._write() as conn:
            before = self._image(conn, image_id)
            conn.execute("UPDATE images SET split = ? WHERE id = ?", (split, before.id))
            if log:
                self._log(
                    conn, "set_split", image_id, None, {"before": before.split, "after": split}
                )

    def set_review_state(
        self,
        image_id: int,
        state: str,
        *,
        kind: str | None = None,
        ref_id: int | None = None,
    ) -> int | None:
        """Set how far a person reviewed an image; returns the logged action id.

        Logged as ``complete`` when the state becomes complete, else ``review_state``, payload
        ``{"before": state, "after": state}``. The undo system
        (:class:`~napari_al.core.annotator.Annotator`) passes ``kind`` ``undo`` or ``redo`` and
        ``ref_id``, the action undone or redone. Setting the current state again changes and
        logs nothing (returns None).
        """
        _check_choice(state, REVIEW_STATES, "review state")
        if kind is not None:
            _check_choice(kind, UNDO_KINDS, "review action kind")
        with self._write() as conn:
            change = self._set_review(conn, image_id, state)
            if change is None:
                return None
            if kind is None:
                kind = "complete" if state == "complete" else "review_state"
            return self._log(conn, kind, image_id, None, change, ref_id=_opt_id(ref_id, "action"))

    def _set_review(
        self, conn: sqlite3.Connection, image_id: int, state: str
    ) -> dict[str, str] | None:
        """Set the review state inside the caller's transaction, unlogged; returns
        ``{"before": old, "after": state}``, or None when it already was ``state``."""
        _check_choice(state, REVIEW_STATES, "review state")
        image = self._image(conn, image_id)
        if image.review_state == state:
            return None
        conn.execute("UPDATE images SET review_state = ? WHERE id = ?", (state, image.id))
        return {"before": image.review_state, "after": state}

    def _log_states(
        self,
        conn: sqlite3.Connection,
        kind: str,
        before: Any,
        after: Any,
        *,
        box_id: int | None,
        review_state: str | None = None,
        ref_id: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Log an action on one stored thing (a box, a reviewed region), whose ``before`` /
        ``after`` rows (None: absent; each with ``image_id`` and ``to_dict()``) go in the
        payload with ``extra``; with ``review_state``, first set the image to it and record the
        change in the same row (payload ``review``). Returns the action id."""
        ref = after if after is not None else before
        assert ref is not None
        payload: dict[str, Any] = {
            "before": None if before is None else before.to_dict(),
            "after": None if after is None else after.to_dict(),
            **(extra or {}),
        }
        if review_state is not None:
            review = self._set_review(conn, ref.image_id, review_state)
            if review is not None:
                payload["review"] = review
        return self._log(conn, kind, ref.image_id, box_id, payload, ref_id=ref_id)

    # -- ignore regions ------------------------------------------------------------------

    def add_ignore_region(self, image_id: int, xyxy: Iterable[float]) -> int:
        """Mark a region of an image to be ignored in training/evaluation; logged ``ignore``."""
        with self._write() as conn:
            image = self._image(conn, image_id)
            region_id, xyxy = self._insert_ignore_region(conn, image, xyxy)
            self._log(conn, "ignore", image.id, None, {"region": region_id, "xyxy": list(xyxy)})
            return region_id

    def _insert_ignore_region(
        self, conn: sqlite3.Connection, image: ImageRow, xyxy: Iterable[float]
    ) -> tuple[int, tuple[float, float, float, float]]:
        """Insert one region inside the caller's transaction, unlogged; returns its id and
        its validated ``(x1, y1, x2, y2)``. Raises StoreError for a box outside the image."""
        x1, y1, x2, y2 = _check_xyxy(xyxy, image.width, image.height, "ignore region")
        cur = conn.execute(
            "INSERT INTO ignore_regions (image_id, x1, y1, x2, y2, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (image.id, x1, y1, x2, y2, self._now()),
        )
        return int(cur.lastrowid), (x1, y1, x2, y2)

    def delete_ignore_region(self, region_id: int) -> None:
        """Remove an ignore region; logged ``delete_ignore``."""
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_IGNORE_COLS} FROM ignore_regions WHERE id = ?", (region_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"ignore region {region_id} does not exist")
            region = IgnoreRegionRow(*row)
            conn.execute("DELETE FROM ignore_regions WHERE id = ?", (region_id,))
            self._log(
                conn,
                "delete_ignore",
                region.image_id,
                None,
                {"region": region_id, "xyxy": list(region.xyxy)},
            )

    def ignore_regions(self, image_id: int | None = None) -> list[IgnoreRegionRow]:
        """Ignore regions in id order, optionally of one image."""
        sql = f"SELECT {_IGNORE_COLS} FROM ignore_regions"
        args: tuple[Any, ...] = ()
        if image_id is not None:
            sql += " WHERE image_id = ?"
            args = (_as_id(image_id, "image"),)
        with self._read() as conn:
            return [IgnoreRegionRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]
