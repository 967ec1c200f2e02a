"""Project operations shared by the CLI, the GUI and notebooks: create, open, import, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
) -> tuple[Dataset, dict]:
    """Read a dataset in ``fmt`` (voc, coco, yolo, images) and import it in one transaction."""
    from napari_al.core.formats import read_dataset

    dataset = read_dataset(Path(path), fmt, strict=strict)
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
