"""Project operations shared by the CLI, the GUI and notebooks: create, open, import, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import STORE_FILENAME, ProjectStore

Progress = Callable[[int, int], None]


def is_project(project_dir: Path) -> bool:
    """Whether ``project_dir`` holds a napari-al store."""
    return (Path(project_dir) / STORE_FILENAME).is_file()


def open_or_init(project_dir: Path, progress: Progress | None = None) -> ProjectStore:
    """Open the project in ``project_dir``; a plain folder of images becomes a new project.

    Opening a folder of images is the common first step: the store is created inside it and
    every image joins the unlabeled pool. A store with no image and no action at all (a first
    open that was killed before its import committed, or an empty ``init``) gets the folder's
    images the same way.
    """
    project_dir = Path(project_dir)
    if is_project(project_dir):
        store = ProjectStore.open(project_dir)
        # A first open killed before its import committed leaves a store with nothing in it
        # (no image, no action at all): finish that first open now.
        if store.last_action_id() is not None or store.images():
            return store
    elif not project_dir.is_dir():
        raise FileNotFoundError(f"{project_dir}: no such folder")
    else:
        store = ProjectStore.create(project_dir)
    try:
        from napari_al.core.formats import read_image_folder

        dataset = read_image_folder(project_dir, strict=False)
        if dataset.images:
            store.import_dataset(dataset, progress=progress)
    except Exception:
        store.close()
        raise
    return store


def import_into(
    store: ProjectStore,
    path: Path,
    fmt: str,
    strict: bool = True,
    progress: Progress | None = None,
    **reader_options: Any,
) -> tuple[Dataset, dict]:
    """Read a dataset in ``fmt`` (voc, coco, yolo, images) and import it in one transaction.

    ``reader_options`` go to the reader: ``image_dir`` (VOC images elsewhere), ``image_root``
    (COCO ``file_name`` base), ``classes`` (VOC class list).
    """
    from napari_al.core.formats import read_dataset

    dataset = read_dataset(Path(path), fmt, strict=strict, **reader_options)
    summary = store.import_dataset(dataset, progress=progress)
    return dataset, summary


def export_dataset(
    store: ProjectStore,
    out: Path,
    fmt: str,
    overwrite: bool = False,
    only_reviewed: bool = True,
) -> Dataset:
    """Write the project's human labels in ``fmt`` (voc, coco, yolo) to ``out``.

    Only human labels (accepted, corrected, drawn) are exported; with ``only_reviewed`` only
    images marked complete are written, so an export never passes model guesses off as truth.
    Ignore regions (which have no class in the store) are written as VOC ``difficult`` /
    COCO ``iscrowd`` objects, one per class; YOLO has no way to carry them.
    """
    from napari_al.core.data import HUMAN_STATUSES
    from napari_al.core.formats import write_dataset

    classes = [c.name for c in store.classes()]
    names = {c.id: c.name for c in store.classes()}
    images: list[ImageRecord] = []
    for row in store.images():
        if only_reviewed and row.review_state != "complete":
            continue
        boxes = [
            BoxRecord(b.x1, b.y1, b.x2, b.y2, names[b.class_id])
            for b in store.boxes(image_id=row.id, statuses=HUMAN_STATUSES)
        ]
        regions = [
            BoxRecord(r.x1, r.y1, r.x2, r.y2, "") for r in store.ignore_regions(image_id=row.id)
        ]
        images.append(
            ImageRecord(
                path=store.abs_path(row),
                width=row.width,
                height=row.height,
                boxes=boxes,
                split=row.split,
                annotated=True,
                ignore_regions=regions,
            )
        )
    dataset = Dataset(classes=classes, images=images, source=str(store.project_dir))
    write_dataset(dataset, Path(out), fmt, overwrite=overwrite)
    return dataset
