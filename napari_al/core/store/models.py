"""Model versions: the trained checkpoints of a project, with their metrics."""

from __future__ import annotations

import os
from typing import Any

from napari_al.core.store.base import StoreBase
from napari_al.core.store.rows import (
    _MODEL_COLS,
    ModelVersionRow,
    StoreError,
    _as_id,
    _dumps,
    _model_row,
)


class ModelsMixin(StoreBase):
    """Registered model versions."""

    # -- model versions ------------------------------------------------------------------

    def add_model_version(
        self,
        path: str | os.PathLike[str],
        arch: str,
        metrics: dict[str, Any] | None = None,
        note: str = "",
    ) -> int:
        """Register a trained checkpoint; returns its version id (1, 2, ...)."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO model_versions (path, arch, metrics, created, note)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.rel_path(path), str(arch), _dumps(metrics or {}), self._now(), note),
            )
            return int(cur.lastrowid)

    def set_model_metrics(self, version_id: int, metrics: dict[str, Any]) -> None:
        """Replace a model version's metrics (e.g. after evaluating it)."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE model_versions SET metrics = ? WHERE id = ?",
                (_dumps(metrics), _as_id(version_id, "model version")),
            )
            if cur.rowcount == 0:
                raise StoreError(f"model version {version_id} does not exist")

    def model_versions(self) -> list[ModelVersionRow]:
        """All model versions, oldest first."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_MODEL_COLS} FROM model_versions ORDER BY id")
            return [_model_row(r) for r in rows]

    def latest_model_version(self) -> ModelVersionRow | None:
        """The newest model version, or None before the first training."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_MODEL_COLS} FROM model_versions ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _model_row(row)
