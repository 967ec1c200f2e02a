"""Boxes: reading them, the logged actions of a person on them, restoring a recorded state, and
replacing a model's predictions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from napari_al.core.data import BOX_STATUSES, CLICK_SOURCE, REFINED_SOURCE, RICH_ANSWERS
from napari_al.core.store.images import ImagesMixin
from napari_al.core.store.rows import (
    _BOX_COLS,
    BoxRow,
    ImageRow,
    StoreError,
    _as_id,
    _check_choice,
    _check_score,
    _check_xyxy,
    _opt_id,
)
from napari_al.core.store.schema import RESTORE_KINDS


class BoxesMixin(ImagesMixin):
    """Boxes and the actions on them."""

    # -- boxes: reading ------------------------------------------------------------------

    def box(self, box_id: int) -> BoxRow:
        """The box with this id; StoreError if missing."""
        with self._read() as conn:
            return self._box(conn, box_id)

    def _box(self, conn: sqlite3.Connection, box_id: int) -> BoxRow:
        row = self._box_or_none(conn, box_id)
        if row is None:
            raise StoreError(f"box {box_id} does not exist")
        return row

    @staticmethod
    def _box_or_none(conn: sqlite3.Connection, box_id: int) -> BoxRow | None:
        box_id = _as_id(box_id, "box")
        row = conn.execute(f"SELECT {_BOX_COLS} FROM boxes WHERE id = ?", (box_id,)).fetchone()
        return None if row is None else BoxRow(*row)

    def boxes(
        self, image_id: int | None = None, statuses: str | Iterable[str] | None = None
    ) -> list[BoxRow]:
        """Boxes in id order, optionally of one image and/or with the given statuses."""
        where, args = [], []
        if image_id is not None:
            where.append("image_id = ?")
            args.append(_as_id(image_id, "image"))
        if statuses is not None:
            wanted = [statuses] if isinstance(statuses, str) else list(statuses)
            for s in wanted:
                _check_choice(s, BOX_STATUSES, "box status")
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        sql = f"SELECT {_BOX_COLS} FROM boxes"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [BoxRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    def existing_box_ids(self, box_ids: Iterable[int]) -> set[int]:
        """The ids among ``box_ids`` of boxes that exist now (one query per 500 ids)."""
        wanted = sorted({_as_id(b, "box") for b in box_ids})
        found: set[int] = set()
        with self._read() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                sql = f"SELECT id FROM boxes WHERE id IN ({', '.join('?' * len(chunk))})"
                found.update(int(r[0]) for r in conn.execute(sql, chunk))
        return found

    # -- boxes: writing ------------------------------------------------------------------

    def _insert_box(
        self,
        conn: sqlite3.Connection,
        image: ImageRow,
        xyxy: Iterable[float],
        class_id: int,
        status: str,
        score: float | None,
        source: str,
        model_version: int | None,
        box_id: int | None = None,
        created: float | None = None,
    ) -> BoxRow:
        _check_choice(status, BOX_STATUSES, "box status")
        x1, y1, x2, y2 = _check_xyxy(xyxy, image.width, image.height)
        self._require_class(conn, class_id)
        now = self._now()
        cur = conn.execute(
            "INSERT INTO boxes (id, image_id, x1, y1, x2, y2, class_id, score, status, source,"
            " model_version, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                box_id,
                image.id,
                x1,
                y1,
                x2,
                y2,
                int(class_id),
                _check_score(score),
                status,
                str(source),
                None if model_version is None else int(model_version),
                now if created is None else created,
                now,
            ),
        )
        return self._box(conn, int(cur.lastrowid))

    def _update_box(self, conn: sqlite3.Connection, box: BoxRow, **fields: Any) -> BoxRow:
        """Change some columns of a box (validated) and return the new row."""
        if "xyxy" in fields:
            image = self._image(conn, box.image_id)
            fields.update(
                zip(
                    ("x1", "y1", "x2", "y2"),
                    _check_xyxy(fields.pop("xyxy"), image.width, image.height),
                    strict=True,
                )
            )
        if "class_id" in fields:
            self._require_class(conn, fields["class_id"])
        if "status" in fields:
            _check_choice(fields["status"], BOX_STATUSES, "box status")
        fields["updated"] = self._now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE boxes SET {sets} WHERE id = ?", (*fields.values(), box.id))
        return self._box(conn, box.id)

    def _log_box(
        self,
        conn: sqlite3.Connection,
        kind: str,
        before: BoxRow | None,
        after: BoxRow | None,
        ref_id: int | None = None,
        review_state: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Log a box action (payload ``before``/``after``, plus ``extra``); with
        ``review_state``, first set the box's image to it and record the change in the same row
        (payload ``review``)."""
        ref = after if after is not None else before
        assert ref is not None
        return self._log_states(
            conn,
            kind,
            before,
            after,
            box_id=ref.id,
            review_state=review_state,
            ref_id=ref_id,
            extra=extra,
        )

    def add_box(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        status: str,
        score: float | None = None,
        source: str = "human",
        model_version: int | None = None,
        log: bool = True,
    ) -> int:
        """Add a box with any status (a programmatic add, e.g. pseudo labels); returns its id.

        Logged as the machine action ``add`` (not undoable); people's boxes use :meth:`draw_box`.
        """
        with self._write() as conn:
            image = self._image(conn, image_id)
            row = self._insert_box(
                conn, image, xyxy, class_id, status, score, source, model_version
            )
            if log:
                self._log_box(conn, "add", None, row)
            return row.id

    # The person's box actions below take ``review_state``: also set the box's image to this
    # review state, in the same transaction and the same logged action (payload ``review``:
    # ``{"before": old, "after": new}``, present only when the state changed). The Annotator
    # marks an ``unseen`` image ``partial`` this way: one key press, one action row.

    def draw_box(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        *,
        review_state: str | None = None,
    ) -> int:
        """A person drew a box: status ``drawn``, source ``human``; returns the box id."""
        with self._write() as conn:
            image = self._image(conn, image_id)
            row = self._insert_box(conn, image, xyxy, class_id, "drawn", None, "human", None)
            self._log_box(conn, "draw", None, row, review_state=review_state)
            return row.id

    def click_box(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        *,
        point: Iterable[float],
        method: str,
        score: float | None = None,
        model_version: int | None = None,
        review_state: str | None = None,
    ) -> int:
        """A person clicked an object's centre and ``xyxy`` is the box proposed for it
        (:mod:`napari_al.core.clicks`): status ``pseudo``, source ``click`` (awaiting a yes/no;
        until then it trains as a damped noisy label); returns the box id.

        ``point``: the click ``(x, y)``, image pixels; ``method``: ``model`` (the detector's
        candidate, ``score`` its class probability, ``model_version`` its model) or ``image``.
        Logged as ONE action of kind ``click`` (payload ``click``: ``[x, y]``, ``method``).
        """
        x, y = (float(v) for v in point)
        with self._write() as conn:
            image = self._image(conn, image_id)
            if not (0 <= x <= image.width and 0 <= y <= image.height):
                raise StoreError(
                    f"the click ({x:.1f}, {y:.1f}) is outside the {image.width}x{image.height} "
                    "image"
                )
            row = self._insert_box(
                conn, image, xyxy, class_id, "pseudo", score, CLICK_SOURCE, model_version
            )
            extra = {"click": [x, y], "method": str(method)}
            self._log_box(conn, "click", None, row, review_state=review_state, extra=extra)
            return row.id

    def accept_box(self, box_id: int, *, review_state: str | None = None) -> int:
        """A person confirmed a box: status ``accepted``; returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(conn, before, status="accepted")
            return self._log_box(conn, "accept", before, after, review_state=review_state)

    def reject_box(self, box_id: int, *, review_state: str | None = None) -> int:
        """A person rejected a box (background): status ``rejected``; returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(conn, before, status="rejected")
            return self._log_box(conn, "reject", before, after, review_state=review_state)

    def answer_box(
        self,
        box_id: int,
        answer: str,
        *,
        refined: Iterable[float] | None = None,
        refined_score: float | None = None,
        refined_model_version: int | None = None,
        review_state: str | None = None,
    ) -> tuple[int, int | None]:
        """A person gave a rich verification answer about a box (:mod:`napari_al.core.answers`):
        ``part``, ``container`` or ``several``: an object is there, the box is not its box.

        The box becomes status ``rejected`` with source ``answer`` (kept out of training as a
        positive and as background: an ignore region, :mod:`napari_al.core.workflow.examples`;
        its source before stays in the log). With ``refined`` (``part``/``container`` only;
        xyxy image pixels) the proposed refinement is added in the same transaction: the judged
        box's class, status ``pseudo``, source ``refined``, score ``refined_score``, model
        ``refined_model_version``, awaiting a yes/no. ONE logged action, its kind the answer
        (payload ``before``/``after`` of the judged box, ``refined``: the new box's row or
        None). Returns ``(action id, refined box id or None)``.
        """
        _check_choice(answer, RICH_ANSWERS, "rich answer")
        if refined is not None and answer == "several":
            raise StoreError("a 'several' answer has no refined box (the objects are clicked)")
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(conn, before, status="rejected", source=answer)
            new = None
            if refined is not None:
                image = self._image(conn, before.image_id)
                new = self._insert_box(
                    conn,
                    image,
                    refined,
                    before.class_id,
                    "pseudo",
                    refined_score,
                    REFINED_SOURCE,
                    _opt_id(refined_model_version, "model version"),
                )
            extra = {"refined": None if new is None else new.to_dict()}
            action_id = self._log_box(
                conn, answer, before, after, review_state=review_state, extra=extra
            )
            return action_id, None if new is None else new.id

    @staticmethod
    def _edited_status(status: str) -> str:
        """A person edited a box: their own drawing stays ``drawn``, anything else ``corrected``."""
        return "drawn" if status == "drawn" else "corrected"

    def correct_box(
        self,
        box_id: int,
        xyxy: Iterable[float] | None = None,
        class_id: int | None = None,
        *,
        review_state: str | None = None,
    ) -> int:
        """A person moved/resized a box and/or changed its class; returns the action id.

        The status becomes ``corrected`` (a ``drawn`` box stays ``drawn``).
        """
        if xyxy is None and class_id is None:
            raise StoreError("correct_box needs a new box, a new class or both")
        with self._write() as conn:
            before = self._box(conn, box_id)
            fields: dict[str, Any] = {"status": self._edited_status(before.status)}
            if xyxy is not None:
                fields["xyxy"] = xyxy
            if class_id is not None:
                fields["class_id"] = int(class_id)
            after = self._update_box(conn, before, **fields)
            return self._log_box(conn, "correct", before, after, review_state=review_state)

    def set_box_class(self, box_id: int, class_id: int, *, review_state: str | None = None) -> int:
        """A person changed a box's class (status as in :meth:`correct_box`); returns action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(
                conn, before, class_id=int(class_id), status=self._edited_status(before.status)
            )
            return self._log_box(conn, "set_class", before, after, review_state=review_state)

    def delete_box(self, box_id: int, *, review_state: str | None = None) -> int:
        """A person deleted a box (the log keeps its last state); returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            conn.execute("DELETE FROM boxes WHERE id = ?", (before.id,))
            return self._log_box(conn, "delete", before, None, review_state=review_state)

    def restore_box(
        self,
        box_id: int,
        state: BoxRow | dict[str, Any] | None,
        *,
        kind: str = "restore",
        ref_id: int | None = None,
        review_state: str | None = None,
    ) -> int:
        """Put a box back into a recorded state (None: the box does not exist); returns the
        action id.

        The inverse of every box action: the undo system
        (:class:`~napari_al.core.annotator.Annotator`) keeps the :class:`BoxRow` from before a
        command and restores it to undo, logged as ``kind`` ``undo`` or ``redo`` with
        ``ref_id`` the action undone or redone (default: ``restore``, no reference), and puts
        the image's review state back with ``review_state`` (same action, payload ``review``).
        ``updated`` is set to now.
        """
        _check_choice(kind, RESTORE_KINDS, "restore kind")
        with self._write() as conn:
            before, after = self._put_box_state(conn, box_id, state)
            if before is None and after is None:
                raise StoreError(f"box {box_id} does not exist (nothing to restore)")
            return self._log_box(
                conn,
                kind,
                before,
                after,
                ref_id=_opt_id(ref_id, "action"),
                review_state=review_state,
            )

    def _put_box_state(
        self, conn: sqlite3.Connection, box_id: int, state: BoxRow | dict[str, Any] | None
    ) -> tuple[BoxRow | None, BoxRow | None]:
        """Make box ``box_id`` equal ``state`` (insert/update/delete); return (before, after)."""
        box_id = _as_id(box_id, "box")
        before = self._box_or_none(conn, box_id)
        if state is None:
            if before is not None:
                conn.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
            return before, None
        s = state.to_dict() if isinstance(state, BoxRow) else dict(state)
        if int(s.get("id", box_id)) != box_id:
            raise StoreError(f"state of box {s.get('id')} cannot restore box {box_id}")
        xyxy = (s["x1"], s["y1"], s["x2"], s["y2"])
        current = before
        if current is not None and current.image_id != s["image_id"]:  # moved: re-create
            conn.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
            current = None
        if current is None:
            image = self._image(conn, s["image_id"])
            after = self._insert_box(
                conn,
                image,
                xyxy,
                s["class_id"],
                s["status"],
                s.get("score"),
                s.get("source", "human"),
                s.get("model_version"),
                box_id=box_id,
                created=s.get("created"),
            )
        else:
            after = self._update_box(
                conn,
                current,
                xyxy=xyxy,
                class_id=int(s["class_id"]),
                score=_check_score(s.get("score")),
                status=s["status"],
                source=str(s.get("source", before.source)),
                model_version=_opt_id(s.get("model_version"), "model version"),
            )
        return before, after

    def replace_predictions(
        self,
        image_id: int,
        predictions: Iterable[tuple[Iterable[float], int, float | None]],
        model_version: int | None,
    ) -> list[int]:
        """Replace the image's ``predicted`` boxes by new ones ``(xyxy, class_id, score)``.

        One transaction; boxes with any other status (human labels, rejections, pseudo labels)
        are never touched. Logged as one machine action ``predict``. Returns the new box ids.
        """
        with self._write() as conn:
            image = self._image(conn, image_id)
            image_id = image.id
            model_version = _opt_id(model_version, "model version")
            removed = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM boxes WHERE image_id = ? AND status = 'predicted'", (image_id,)
                )
            ]
            conn.execute(
                "DELETE FROM boxes WHERE image_id = ? AND status = 'predicted'", (image_id,)
            )
            added = []
            for xyxy, class_id, score in predictions:
                row = self._insert_box(
                    conn, image, xyxy, class_id, "predicted", score, "model", model_version
                )
                added.append(row.id)
            self._log(
                conn,
                "predict",
                image_id,
                None,
                {"model_version": model_version, "removed": removed, "added": added},
            )
            return added
