"""The append-only action log and the annotation cost it measures.

Each action row keeps its raw ``time`` (Unix seconds) and ``dt``, the seconds since the previous
*human* action, or NULL for the first action and after an idle gap longer than the store's
``idle_cutoff_s`` (the person was away; the time is not labelling cost). Machine actions
(:data:`~napari_al.core.store.schema.MACHINE_KINDS`: import, predict, add) get ``dt`` NULL and
are not counted as predecessors.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

from napari_al.core.store.base import StoreBase
from napari_al.core.store.rows import (
    _ACTION_COLS,
    ActionRow,
    StoreError,
    _action_row,
    _as_id,
    _dumps,
    _opt_id,
)
from napari_al.core.store.schema import (
    MACHINE_KINDS,
    RESERVED_KINDS,
)


class ActionLogMixin(StoreBase):
    """The action log: append a row, read rows, sum the annotation seconds."""

    # -- the action log ------------------------------------------------------------------

    def _log(
        self,
        conn: sqlite3.Connection,
        kind: str,
        image_id: int | None,
        box_id: int | None,
        payload: dict[str, Any] | None,
        ref_id: int | None = None,
    ) -> int:
        """Append one action row inside the caller's transaction; returns its id."""
        now = self._now()
        dt = None
        if kind not in MACHINE_KINDS:
            placeholders = ", ".join("?" * len(MACHINE_KINDS))
            prev = conn.execute(
                f"SELECT time FROM actions WHERE kind NOT IN ({placeholders})"
                " ORDER BY id DESC LIMIT 1",
                MACHINE_KINDS,
            ).fetchone()
            if prev is not None:
                gap = now - prev[0]
                dt = max(0.0, gap) if gap <= self.idle_cutoff_s else None
        cur = conn.execute(
            "INSERT INTO actions (time, kind, image_id, box_id, ref_id, payload, dt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                kind,
                _opt_id(image_id, "image"),
                _opt_id(box_id, "box"),
                ref_id,
                _dumps(payload or {}),
                dt,
            ),
        )
        return int(cur.lastrowid)

    def log_action(
        self,
        kind: str,
        image_id: int | None = None,
        box_id: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Log a GUI event that changes no data (e.g. ``skip``, ``open``); returns its id.

        Kinds the store writes itself (:data:`RESERVED_KINDS`) are refused so the log stays
        truthful and undo stays correct.
        """
        if not isinstance(kind, str) or not kind:
            raise StoreError(f"action kind must be a non-empty string, got {kind!r}")
        if kind in RESERVED_KINDS:
            raise StoreError(f"action kind {kind!r} is written by the store itself")
        with self._write() as conn:
            return self._log(conn, kind, image_id, box_id, payload)

    def actions(
        self,
        kind: str | None = None,
        image_id: int | None = None,
        since_id: int | None = None,
    ) -> list[ActionRow]:
        """Logged actions in order, optionally of one kind / image / after an action id."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if image_id is not None:
            where.append("image_id = ?")
            args.append(_as_id(image_id, "image"))
        if since_id is not None:
            where.append("id > ?")
            args.append(_as_id(since_id, "action"))
        sql = f"SELECT {_ACTION_COLS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [_action_row(r) for r in conn.execute(sql + " ORDER BY id", args)]

    def last_action_id(self) -> int | None:
        """The id of the newest action (None for an empty log): a cheap 'anything new?' test."""
        with self._read() as conn:
            return conn.execute("SELECT max(id) FROM actions").fetchone()[0]

    def annotation_seconds(self, idle_cutoff_s: float | None = None) -> float:
        """Seconds people spent labelling: the sum of ``dt``.

        With ``idle_cutoff_s`` the sum is recomputed from the raw action times with that cutoff
        instead of the one in force when the actions were logged.
        """
        with self._read() as conn:
            if idle_cutoff_s is None:
                return float(conn.execute("SELECT total(dt) FROM actions").fetchone()[0])
            placeholders = ", ".join("?" * len(MACHINE_KINDS))
            times = [
                r[0]
                for r in conn.execute(
                    f"SELECT time FROM actions WHERE kind NOT IN ({placeholders}) ORDER BY id",
                    MACHINE_KINDS,
                )
            ]
        total = 0.0
        for prev, cur in itertools.pairwise(times):
            gap = cur - prev
            if gap <= idle_cutoff_s:
                total += max(0.0, gap)
        return total
