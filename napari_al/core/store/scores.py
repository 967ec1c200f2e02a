"""The score cache: a scorer's output per (image content, model version, scorer)."""

from __future__ import annotations

from collections.abc import Iterable

from napari_al.core.store.base import StoreBase
from napari_al.core.store.rows import (
    StoreError,
)


class ScoresMixin(StoreBase):
    """Cached acquisition scores."""

    # -- score cache ---------------------------------------------------------------------

    def put_scores(self, image_sha: str, model_version: int, scorer: str, payload: bytes) -> None:
        """Cache a scorer's output for (image content, model version, scorer); overwrites.

        Keyed by content hash so a renamed or re-imported image keeps its scores. Use model
        version 0 for a detector not registered as a version (e.g. pretrained weights).
        """
        self.put_scores_many([(image_sha, model_version, scorer, payload)])

    def put_scores_many(
        self, items: Iterable[tuple[str, int, str, bytes]], *, replace: bool = True
    ) -> int:
        """:meth:`put_scores` for many entries in one transaction (one fsync); returns how many
        rows were written. ``replace=False`` keeps an entry already cached (writes nothing for
        it): a result computed twice, e.g. by a Dask worker that was lost and its chunk
        recomputed, is written once."""
        now = self._now()
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        written = 0
        with self._write() as conn:
            for image_sha, model_version, scorer, payload in items:
                if model_version is None:
                    raise StoreError("model_version must be an int (0: unregistered model)")
                written += conn.execute(
                    f"{verb} INTO score_cache"
                    " (image_sha256, model_version, scorer, payload, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (image_sha, int(model_version), str(scorer), bytes(payload), now),
                ).rowcount
        return written

    def get_scores(self, image_sha: str, model_version: int, scorer: str) -> bytes | None:
        """The cached payload, or None when missing."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT payload FROM score_cache"
                " WHERE image_sha256 = ? AND model_version = ? AND scorer = ?",
                (image_sha, int(model_version), str(scorer)),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def clear_scores(self, model_version: int | None = None) -> int:
        """Drop cached scores (of one model version, or all); returns how many."""
        with self._write() as conn:
            if model_version is None:
                return conn.execute("DELETE FROM score_cache").rowcount
            return conn.execute(
                "DELETE FROM score_cache WHERE model_version = ?", (int(model_version),)
            ).rowcount
