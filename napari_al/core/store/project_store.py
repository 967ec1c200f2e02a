""":class:`ProjectStore`, composed of the store's parts, and the one-call :func:`import_dataset`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from napari_al.core.data import Dataset
from napari_al.core.store.importer import ImportMixin
from napari_al.core.store.models import ModelsMixin
from napari_al.core.store.queries import QueriesMixin
from napari_al.core.store.regions import RegionsMixin
from napari_al.core.store.reviewed import ReviewedRegionsMixin
from napari_al.core.store.scores import ScoresMixin
from napari_al.core.store.summary import SummaryMixin


class ProjectStore(
    ImportMixin,
    ModelsMixin,
    ScoresMixin,
    QueriesMixin,
    SummaryMixin,
    RegionsMixin,
    ReviewedRegionsMixin,
):
    """The SQLite store of one project. Open with :meth:`create` or :meth:`open`.

    Its methods come from the parts of :mod:`napari_al.core.store`: connection, transactions
    and paths (:mod:`~napari_al.core.store.base`), the action log
    (:mod:`~napari_al.core.store.actions`), classes, images and ignore regions
    (:mod:`~napari_al.core.store.images`), boxes (:mod:`~napari_al.core.store.boxes`), dataset
    import (:mod:`~napari_al.core.store.importer`), model versions
    (:mod:`~napari_al.core.store.models`), the score cache (:mod:`~napari_al.core.store.scores`),
    stored queries (:mod:`~napari_al.core.store.queries`), summaries
    (:mod:`~napari_al.core.store.summary`), the answers to region questions
    (:mod:`~napari_al.core.store.regions`) and the regions of images marked complete
    (:mod:`~napari_al.core.store.reviewed`).
    """


def import_dataset(
    dataset: Dataset,
    project_dir: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    split_default: str = "pool",
) -> dict[str, Any]:
    """Import ``dataset`` into the project at ``project_dir`` (created if missing)."""
    with ProjectStore.open(project_dir, create=True) as store:
        return store.import_dataset(dataset, progress=progress, split_default=split_default)
