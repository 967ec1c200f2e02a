"""Where a path stands relative to projects: the project around it, the projects in it, whether
it holds images to make one of. Used to say which fix applies when a path is not a project."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from napari_al.core.images import IMAGE_EXTENSIONS, is_zarr_path
from napari_al.core.store import STORE_FILENAME

#: Top-level names that make a folder a dataset ``init`` imports with its labels (VOC, YOLO).
DATASET_MARKERS = (
    "Annotations",
    "annotations",
    "JPEGImages",
    "images",
    "labels",
    "data.yaml",
    "obj.data",
)

#: How many entries of a folder are looked at (``/`` or a home folder can hold many).
MAX_ENTRIES = 2000


def _has_store(folder: Path) -> bool:
    try:
        return (folder / STORE_FILENAME).is_file()
    except OSError:  # unreadable, a name too long
        return False


def enclosing_project(path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder above ``path`` (absolute, symbolic links kept) that holds a project
    store file; None when there is none. ``path`` itself is not looked at; it need not exist
    (a mistyped folder inside a project)."""
    for folder in Path(os.path.abspath(path)).parents:
        if _has_store(folder):
            return folder
    return None


def projects_in(folder: str | os.PathLike[str], limit: int = 3) -> list[Path]:
    """Up to ``limit`` projects directly inside ``folder`` (sub-folders holding a store file),
    by name; among its first :data:`MAX_ENTRIES` entries only."""
    try:
        with os.scandir(folder) as entries:
            found = [
                Path(e.path)
                for e in itertools.islice(entries, MAX_ENTRIES)
                if not e.name.startswith(".") and e.is_dir() and _has_store(Path(e.path))
            ]
    except OSError:
        return []
    return sorted(found)[:limit]


def holds_images(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder``'s top level (its first :data:`MAX_ENTRIES` entries, no recursion)
    holds an image file, an OME-Zarr image or a VOC or YOLO dataset's folder or file: what
    ``napari-al init`` would make a project of. ``/`` or a home folder usually does not."""
    try:
        with os.scandir(folder) as entries:
            for e in itertools.islice(entries, MAX_ENTRIES):
                name = e.name
                if name.startswith("."):
                    continue
                if name in DATASET_MARKERS or is_zarr_path(name):
                    return True
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    return True
    except OSError:
        return False
    return False
