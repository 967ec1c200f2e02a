"""Project operations shared by the CLI, the GUI and notebooks: create, open, import, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import STORE_FILENAME, ProjectStore

Progress = Callable[[int, int], None]

#: How many training images of a demo project keep their labels (the rest of the training
#: images join the unlabelled pool; the validation images stay labelled, for mAP).
DEMO_LABELLED = 4


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


def create_demo_project(
    project_dir: Path, source: Path, labelled: int = DEMO_LABELLED, fmt: str = "voc"
) -> Path:
    """Make a project in the middle of the active-learning loop from a labelled dataset.

    ``labelled`` images of the ``train`` split (evenly spread over its file names) keep their
    labels and are complete, the ``val`` and ``test`` images keep theirs (so a model can be
    evaluated), and every other image joins the unlabelled pool without its labels: there is
    something to train on, something to evaluate on, and a pool to query. Everything is
    imported in one transaction.

    ``source``: a dataset folder in ``fmt`` (``napari-al demo`` uses the BCCD sample,
    :func:`napari_al.sample.sample_dir`). Raises FileExistsError when ``project_dir`` already
    holds a project, ValueError when the dataset has no labelled training image, and the
    readers' errors.
    """
    from napari_al.core.formats import read_dataset

    project_dir = Path(project_dir)
    if is_project(project_dir):
        raise FileExistsError(f"{project_dir} already holds a napari-al project")
    dataset = read_dataset(Path(source), fmt)
    train = sorted(
        (r for r in dataset.images if r.annotated and r.split in (None, "train", "pool")),
        key=lambda r: str(r.path),
    )
    if not train:
        raise ValueError(f"{source}: no labelled training image to start a demo from")
    n = max(1, min(int(labelled), len(train)))
    keep = {id(train[round(i * (len(train) - 1) / max(n - 1, 1))]) for i in range(n)}
    for rec in train:
        if id(rec) in keep:
            rec.split = "train"
        else:
            rec.boxes, rec.ignore_regions, rec.annotated, rec.split = [], [], False, None
    with ProjectStore.create(project_dir) as store:
        store.import_dataset(dataset)
    return project_dir


def export_dataset(
    store: ProjectStore,
    out: Path,
    fmt: str,
    overwrite: bool = False,
    only_reviewed: bool = True,
    copy_images: bool | None = None,
) -> Dataset:
    """Write the project's human labels in ``fmt`` (voc, coco, yolo) to ``out``.

    Only human labels (accepted, corrected, drawn) are exported; with ``only_reviewed`` only
    images marked complete are written, so an export never passes model guesses off as truth.
    Without it, a ``partial`` image is written as partly reviewed where the format can say so
    (VOC ``<partial>1</partial>``, COCO ``"partial": true``; YOLO cannot) and an ``unseen``
    one without human labels as unannotated (never as a negative). Ignore regions (which have
    no class in the store) are written as VOC ``difficult`` / COCO ``iscrowd`` objects, one
    per class; YOLO has no way to carry them.

    ``copy_images`` (VOC, YOLO): ``True`` copies the images into the export (YOLO: the
    Ultralytics ``images/<split>/`` + ``labels/<split>/`` layout); ``False`` references them
    in place; ``None`` (default) references them in place, except a YOLO export of images
    that share a file name stem (``site1/f1.png``, ``site2/f1.png``), whose label files would
    collide: it is copied (names made unique), with a line in ``Dataset.warnings``.
    """
    from napari_al.core.formats import write_dataset

    images = _export_records(store, only_reviewed)
    dataset = Dataset(
        classes=[c.name for c in store.classes()], images=images, source=str(store.project_dir)
    )
    options: dict[str, Any] = {}
    if fmt in ("voc", "yolo"):
        copy = bool(copy_images)
        if copy_images is None and fmt == "yolo" and _stems_collide(images):
            copy = True
            dataset.warnings.append(
                "images share file names across folders: copied into the Ultralytics "
                "images/<split>/ + labels/<split>/ layout (names made unique)"
            )
        options["copy_images"] = copy
    elif copy_images:
        raise ValueError(f"copy_images applies to voc and yolo exports, not {fmt}")
    write_dataset(dataset, Path(out), fmt, overwrite=overwrite, **options)
    return dataset


def _export_records(store: ProjectStore, only_reviewed: bool) -> list[ImageRecord]:
    """One record per exported image: human boxes, ignore regions (label ``""``), and
    ``annotated``/``partial`` from the review state (an ``unseen`` image with human labels or
    ignore regions is written as partly reviewed, so none of them is lost)."""
    from napari_al.core.data import HUMAN_STATUSES

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
        annotated = row.review_state != "unseen" or bool(boxes or regions)
        images.append(
            ImageRecord(
                path=store.abs_path(row),
                width=row.width,
                height=row.height,
                boxes=boxes,
                split=row.split,
                annotated=annotated,
                ignore_regions=regions,
                partial=annotated and row.review_state != "complete",
            )
        )
    return images


def _stems_collide(images: list[ImageRecord]) -> bool:
    """Whether two different images share a file name stem."""
    owner: dict[str, Path] = {}
    return any(owner.setdefault(im.path.stem, im.path) != im.path for im in images)
