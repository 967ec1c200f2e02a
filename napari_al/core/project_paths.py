"""Where a path stands relative to projects: the project around it, the projects in it, whether
it holds images to make one of. Used to say which fix applies when a path is not a project, and
to refuse a project nested in another (:func:`nesting_error`)."""

from __future__ import annotations

import itertools
import os
import shlex
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


def projects_in(folder: str | os.PathLike[str], limit: int = MAX_ENTRIES) -> list[Path]:
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


def nesting_error(path: str | os.PathLike[str]) -> str | None:
    """The one line refusing to make a project of the folder ``path`` (it need not exist)
    when that would nest projects: ``path`` is inside a project (:func:`enclosing_project`),
    or holds one directly (:func:`projects_in`). None when neither. A nested project holds
    images the other one holds too, and a folder would no longer say which project it is
    in; no use needs one (a project elsewhere imports the folder in place), so there is no
    flag to allow it. A nested project made earlier, or by ``ProjectStore.create``, still
    opens."""
    whole = Path(os.path.abspath(path))
    if whole.parent == whole or whole == Path.home():
        return (
            f"{path}: a file system's root or a home folder is not made a project (it would "
            "take in every image below it, and every project below it would be nested): give "
            "the folder of your images"
        )
    around = enclosing_project(path)
    q = shlex.quote(str(path))
    if around is not None:
        return (
            f"{path}: is inside the project {around}, and a project nested in another is "
            f"refused (the images of its folder would be in both): use {around}, or make the "
            "new project outside it and import this folder in place: 'napari-al init NEW', "
            f"then 'napari-al import NEW {q} --format images'"
        )
    inside = projects_in(path)
    if inside:
        more = f" (and {len(inside) - 1} more)" if len(inside) > 1 else ""
        return (
            f"{path}: holds the project {inside[0]}{more}, and a project around another is "
            f"refused (the images of its folder would be in both): use {inside[0]}, or make "
            "the new project elsewhere and import the folders you want into it ('napari-al "
            "import NEW FOLDER --format images')"
        )
    return None
