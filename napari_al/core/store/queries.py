"""Stored queries: a ranking kept in the store, so it can be walked after a restart.

A ranking (``napari-al rank``, the widget's rank job) is a list of
:class:`~napari_al.core.selection.QueryItem`. :meth:`QueriesMixin.save_queries` keeps it as one
``query_sets`` row (when, which model, which settings) and one ``query_items`` row per item, in
ONE transaction; :meth:`QueriesMixin.latest_queries` and :meth:`QueriesMixin.query_set` read it
back as a :class:`~napari_al.core.store.rows.StoredQuerySet`. Items are read duck-typed
(attributes ``image``, ``score``, ``unit``, ``box``, ``index``, ``breakdown``), so the store
does not import the selection code.

An item goes with its image: deleting an image deletes its query items (``ON DELETE
CASCADE``); the other items keep their ranks (a gap is left).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from napari_al.core.store.base import StoreBase
from napari_al.core.store.rows import (
    StoredQuery,
    StoredQuerySet,
    StoreError,
    _as_id,
    _dumps,
    _opt_id,
)

_SET_COLS = "id, created, model_version, strategy, unit, settings"
_ITEM_COLS = "rank, image_id, unit, score, x1, y1, x2, y2, box_index, breakdown"

#: One ``query_items`` row without its set id: (rank, image id, unit, score, x1, y1, x2, y2,
#: box index, breakdown JSON).
_ItemRow = tuple[int, int, str, float, Any, Any, Any, Any, Any, str]


def _item_row(rank: int, item: Any) -> _ItemRow:
    """Validate one query item (duck-typed ``QueryItem``) into a row; raise StoreError."""
    where = f"query item {rank}"
    image_id = _as_id(getattr(item, "image", None), f"{where}: image")
    unit = getattr(item, "unit", "image")
    if not isinstance(unit, str) or not unit:
        raise StoreError(f"{where}: unit must be a non-empty string, got {unit!r}")
    try:
        score = float(item.score)
    except (TypeError, ValueError, AttributeError):
        raise StoreError(f"{where}: score must be a number") from None
    if math.isnan(score):
        raise StoreError(f"{where}: score is NaN")
    box = getattr(item, "box", None)
    xyxy: tuple[Any, ...] = (None, None, None, None)
    if box is not None:
        try:
            xyxy = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            raise StoreError(f"{where}: box must be 4 numbers x1, y1, x2, y2") from None
        if len(xyxy) != 4 or not all(math.isfinite(v) for v in xyxy):
            raise StoreError(f"{where}: box must be 4 finite numbers, got {box!r}")
    index = getattr(item, "index", None)
    if index is not None:
        index = _as_id(index, f"{where}: box index")
    breakdown = getattr(item, "breakdown", None) or {}
    if not isinstance(breakdown, Mapping):
        raise StoreError(f"{where}: breakdown must be a mapping, got {type(breakdown).__name__}")
    try:
        breakdown_json = _dumps(dict(breakdown))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: breakdown is not JSON-ready ({exc})") from None
    return (rank, image_id, unit, score, *xyxy, index, breakdown_json)


def _set_unit(rows: Sequence[_ItemRow], settings: Mapping[str, Any]) -> str:
    units = {r[2] for r in rows}
    if len(units) == 1:
        return units.pop()
    return "mixed" if units else str(settings.get("unit", "") or "")


class QueriesMixin(StoreBase):
    """Stored rankings (``query_sets``, ``query_items``)."""

    def save_queries(
        self,
        items: Iterable[Any],
        *,
        model_version: int | None,
        settings: Mapping[str, Any],
    ) -> int:
        """Store a ranking in ONE transaction; returns the new query set's id.

        ``items``: objects with the attributes of a :class:`~napari_al.core.selection.QueryItem`
        (``image``: an image id of this store; ``score``; ``unit``; ``box``: ``(x1, y1, x2,
        y2)`` image pixels or None; ``index``: int or None; ``breakdown``: a dict), in rank
        order (the first is rank 0). ``model_version``: the model that scored them (None: not a
        registered version). ``settings``: the query settings, a JSON-ready mapping.

        Raises :class:`StoreError` for an image id not in the store, a NaN score, a malformed
        box, or settings/breakdowns that are not JSON-ready; nothing is stored then.
        """
        rows = [_item_row(rank, item) for rank, item in enumerate(items)]
        if not isinstance(settings, Mapping):
            raise StoreError(f"settings must be a mapping, got {type(settings).__name__}")
        try:
            settings_json = _dumps(dict(settings))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"query settings are not JSON-ready ({exc})") from None
        strategy = settings.get("strategy")
        strategy = strategy if isinstance(strategy, str) else ""
        version = _opt_id(model_version, "model version")
        with self._write() as conn:
            self._require_images(conn, {r[1] for r in rows})
            cur = conn.execute(
                "INSERT INTO query_sets (created, model_version, strategy, unit, settings)"
                " VALUES (?, ?, ?, ?, ?)",
                (self._now(), version, strategy, _set_unit(rows, settings), settings_json),
            )
            set_id = int(cur.lastrowid)
            conn.executemany(
                f"INSERT INTO query_items (set_id, {_ITEM_COLS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(set_id, *r) for r in rows],
            )
            return set_id

    @staticmethod
    def _require_images(conn: sqlite3.Connection, image_ids: set[int]) -> None:
        """Raise :class:`StoreError` naming the ids among ``image_ids`` not in the store."""
        missing = sorted(
            i
            for i in image_ids
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (i,)).fetchone() is None
        )
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise StoreError(f"query items name images not in the project: {shown}")

    def latest_queries(
        self, unit: str | None = None, *, exclude_unit: str | None = None
    ) -> StoredQuerySet | None:
        """The newest stored ranking (only of set unit ``unit``, or of any other than
        ``exclude_unit``, when given), or None when none was stored."""
        where, args = [], []
        if unit is not None:
            where.append("unit = ?")
            args.append(unit)
        if exclude_unit is not None:
            where.append("unit != ?")
            args.append(exclude_unit)
        sql = "SELECT max(id) FROM query_sets" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as conn:
            row = conn.execute(sql, args).fetchone()
            if row[0] is None:
                return None
            return self._query_set(conn, int(row[0]))

    def query_set(self, set_id: int) -> StoredQuerySet:
        """The stored ranking with this id; :class:`StoreError` if there is none."""
        with self._read() as conn:
            return self._query_set(conn, _as_id(set_id, "query set"))

    def _query_set(self, conn: sqlite3.Connection, set_id: int) -> StoredQuerySet:
        head = conn.execute(f"SELECT {_SET_COLS} FROM query_sets WHERE id = ?", (set_id,))
        row = head.fetchone()
        if row is None:
            raise StoreError(f"query set {set_id} does not exist")
        items = tuple(
            StoredQuery(
                rank=r[0],
                image_id=r[1],
                unit=r[2],
                score=r[3],
                box=None if r[4] is None else (r[4], r[5], r[6], r[7]),
                box_index=r[8],
                breakdown=json.loads(r[9]),
            )
            for r in conn.execute(
                f"SELECT {_ITEM_COLS} FROM query_items WHERE set_id = ? ORDER BY rank", (set_id,)
            )
        )
        return StoredQuerySet(
            id=row[0],
            created=row[1],
            model_version=row[2],
            settings=json.loads(row[5]),
            items=items,
            strategy=row[3],
            unit=row[4],
        )
