"""Project operations shared by the CLI, the GUI and notebooks: create, open, import, export."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.names import shown
from napari_al.core.project_paths import nesting_error
from napari_al.core.store import STORE_FILENAME, ProjectStore, StoreError

Progress = Callable[[int, int], None]

#: How many training images of a demo project keep their labels (the rest of the training
#: images join the unlabelled pool; the validation images stay labelled, for mAP).
DEMO_LABELLED = 4


def is_project(project_dir: Path) -> bool:
    """Whether ``project_dir`` holds a napari-al store."""
    return (Path(project_dir) / STORE_FILENAME).is_file()


def open_or_init(
    project_dir: Path,
    progress: Progress | None = None,
    report: Callable[[dict], None] | None = None,
) -> ProjectStore:
    """Open the project in ``project_dir``; a plain folder becomes a new project.

    Opening a folder is the common first step: the store is created inside it and the folder's
    content is imported by :func:`import_folder` (a labelled VOC or YOLO folder with its labels,
    every other image into the unlabeled pool). A store with no image and no action at all (a
    first open that was killed before its import committed, or an ``init`` of an empty
    folder) gets the folder's content the same way. ``report(summary)`` receives that first
    import's summary (see :meth:`ProjectStore.import_dataset`); it is also in the store's
    ``import`` action. Raises FileNotFoundError when ``project_dir`` is not a folder, and
    :class:`StoreError` (one line naming the other project) when a new project there would
    be inside another project, or around one
    (:func:`~napari_al.core.project_paths.nesting_error`); an existing nested project opens.
    """
    project_dir = Path(project_dir)
    if is_project(project_dir):
        # create: a first open killed before the schema was written leaves an empty file
        store = ProjectStore.open(project_dir, create=True)
        # A first open killed before its import committed leaves a store with nothing in it
        # (no image, no action at all): finish that first open now.
        if store.last_action_id() is not None or store.images():
            return store
    elif not project_dir.is_dir():
        raise FileNotFoundError(f"{project_dir}: no such folder")
    else:
        nested = nesting_error(project_dir)
        if nested is not None:
            raise StoreError(nested)
        store = ProjectStore.create(project_dir)
    try:
        summary = import_folder(store, project_dir, progress=progress)
    except Exception:
        store.close()
        raise
    if summary is not None and report is not None:
        report(summary)
    return store


def import_folder(
    store: ProjectStore, folder: Path, progress: Progress | None = None
) -> dict | None:
    """Import everything a project folder holds, in one transaction; returns the summary
    (None when the folder holds no image at all, and nothing is written then).

    The folder's format is detected (:func:`~napari_al.core.formats.detect_format`): a
    labelled VOC or YOLO folder is imported with its labels (``strict=False``: a malformed file
    or box is skipped and reported in the summary's ``warnings``; a folder that cannot be read
    in its format at all is imported as plain images, with a warning saying why). Every other
    image under the folder (recursive, hidden files and folders skipped, named in one line:
    :func:`hidden_lines`) joins the unlabeled pool, so no image of the project's folder is left
    out unsaid.
    """
    from napari_al.core.formats import FormatError, detect_format, read_dataset

    folder = Path(folder)
    fmt = detect_format(folder)
    warnings: list[str] = []
    if fmt in ("voc", "yolo"):
        try:
            dataset = read_dataset(folder, fmt, strict=False)
        except FormatError as exc:
            warnings.append(
                f"{folder} looks like {fmt.upper()} but was read as plain images: {exc}"
            )
            fmt = "images"
    if fmt not in ("voc", "yolo"):
        dataset = read_dataset(folder, "images", strict=False)
    else:
        _add_other_images(dataset, folder)
    dataset.warnings[:0] = warnings
    dataset.warnings.extend(hidden_lines(folder, dataset))
    if not dataset.images and not dataset.warnings:
        return None
    return store.import_dataset(dataset, progress=progress)


def left_out_lines(summary: dict[str, Any], limit: int = 10) -> list[str]:
    """What an import left out, as lines for a person (the CLI prints them as warnings, the
    widget shows them as notifications).

    One line per reason for images left out for a shared reason (``left out 3 images already
    in the project (e.g. a.png); their 12 boxes in the dataset were not imported``); one line
    per image, up to ``limit`` per reason, when each has its own ``detail`` (a copy of
    another image, an undecodable file: ``left out b.png: same content as a.png, earlier in
    this import``).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in summary.get("left_out", []):
        groups.setdefault(item["reason"], []).append(item)
    lines = []
    for reason, items in groups.items():
        more = ""
        if any("detail" in i for i in items):
            for i in items[:limit]:
                n_lost = i["boxes"]
                lost = f" ({n_lost} {plural(n_lost, 'box')} in the dataset not imported)"
                lost = lost if n_lost else ""
                lines.append(f"left out {i['path']}: {i.get('detail', reason)}{lost}")
            items, more = items[limit:], "more "
            if not items:
                continue
        n, lost = len(items), sum(i["boxes"] for i in items)
        boxes_note = ""
        if lost:
            boxes_note = (
                f"; {'its' if n == 1 else 'their'} {lost} {plural(lost, 'box')} in the dataset "
                f"{'was' if lost == 1 else 'were'} not imported"
            )
        lines.append(
            f"left out {n} {more}{plural(n, 'image')} {reason} (e.g. {items[0]['path']})"
            f"{boxes_note}"
        )
    return lines


def plural(n: int, word: str) -> str:
    """``word`` as it follows the number ``n``: ``image``/``images``, ``box``/``boxes``."""
    if n == 1:
        return word
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _add_other_images(dataset: Dataset, folder: Path) -> None:
    """Add the images under ``folder`` that ``dataset`` does not hold, unannotated, in the pool
    (their size read from the header; an unreadable one is reported in the warnings)."""
    from napari_al.core.formats import read_image_folder

    known = {Path(r.path) for r in dataset.images} | {Path(p) for p in dataset.skipped_images}
    missing = [p for p in _image_files(folder) if p not in known]
    if not missing:
        return
    others = read_image_folder(folder, strict=False)
    dataset.images.extend(r for r in others.images if Path(r.path) not in known)
    # a file the dataset's reader skipped already is skipped again: said once
    dataset.warnings.extend(w for w in others.warnings if w not in dataset.warnings)


def _image_files(folder: Path) -> list[Path]:
    """Absolute paths of the image files under ``folder`` (recursive, hidden entries skipped),
    in the readers' convention (normalised, symlinks not resolved)."""
    from napari_al.core.images import find_images

    return [Path(os.path.abspath(p)) for p in find_images(folder)]


def import_into(
    store: ProjectStore,
    path: Path,
    fmt: str,
    strict: bool = True,
    progress: Progress | None = None,
    allow_duplicates: bool = False,
    **reader_options: Any,
) -> tuple[Dataset, dict]:
    """Read a dataset in ``fmt`` (voc, coco, yolo, images) and import it in one transaction.

    ``reader_options`` go to the reader: ``image_dir`` (VOC images elsewhere), ``image_root``
    (COCO ``file_name`` base), ``classes`` (VOC class list).
    A folder given for ``coco`` is a :class:`~napari_al.core.formats.FormatError` naming the
    JSON files it holds. Nothing is left out without a word: images under a VOC or YOLO
    folder (or beside a COCO file's images) that the dataset does not include are named, by
    folder, in the returned dataset's and the summary's ``warnings``; importing the project's
    own folder adds them to the pool instead, as its first open does (:func:`import_folder`).
    Hidden images under a folder (names starting with ``.``), which no folder scan reads, are
    counted in one line (:func:`hidden_lines`).
    Images already in the project, copies of its images (same content, another path; unless
    ``allow_duplicates``) and files that cannot be decoded are listed in
    ``summary["left_out"]`` with the reason (:meth:`ProjectStore.import_dataset`).
    A VOC or YOLO read that finds no labelled image in a folder that looks like another
    labelled format (:func:`~napari_al.core.formats.detect_format`) is a
    :class:`~napari_al.core.formats.FormatError` naming the format to use; nothing is
    imported then.
    """
    path = Path(path)
    if fmt == "coco" and path.is_dir():
        raise _coco_folder_error(path)
    dataset = _read_as(path, fmt, strict, reader_options)
    if fmt != "images":
        if fmt != "coco" and _same_folder(path, store.project_dir):
            _add_other_images(dataset, path)
        else:
            dataset.warnings.extend(_left_out_lines(dataset, path, fmt))
    dataset.warnings.extend(hidden_lines(path, dataset))
    summary = store.import_dataset(dataset, progress=progress, allow_duplicates=allow_duplicates)
    return dataset, summary


def _read_as(path: Path, fmt: str, strict: bool, options: dict[str, Any]) -> Dataset:
    """Read ``path`` as ``fmt``; a VOC or YOLO read that fails, or finds no labelled image,
    in a folder that looks like the other labelled format (or COCO) says which to use."""
    from napari_al.core.formats import FormatError, detect_format, read_dataset

    try:
        looks = detect_format(path) if fmt in ("voc", "yolo") else fmt
    except FormatError:
        looks = fmt
    hint = None
    if looks not in (fmt, "images"):
        hint = f"{path} looks like a {looks.upper()} dataset, not {fmt.upper()}"
        if looks == "coco":
            hint += ": import it with --format coco"
        else:
            hint += f" ({_format_evidence(path, looks)}): import it with --format {looks}"
    try:
        dataset = read_dataset(path, fmt, strict=strict, **options)
    except FormatError as exc:
        if hint is None:
            raise
        raise FormatError(f"{hint} ({fmt.upper()} reader: {exc})") from exc
    if hint is not None and not any(r.annotated for r in dataset.images):
        raise FormatError(f"{hint}; read as {fmt.upper()} it has no labelled image")
    return dataset


def _format_evidence(folder: Path, fmt: str) -> str:
    """What in ``folder`` made :func:`detect_format` say ``fmt`` (voc or yolo), in words."""
    if fmt == "voc":
        for name in ("Annotations", "annotations"):
            if (folder / name).is_dir():
                return f"it has an {name}/ folder"
        return "it has .xml files beside the images"
    for name in ("data.yaml", "data.yml", "classes.txt", "obj.names", "obj.data"):
        if (folder / name).is_file():
            return f"it has {name}"
    return "it has a labels/ folder" if (folder / "labels").is_dir() else "it has a .names file"


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


def _coco_folder_error(folder: Path) -> Exception:
    """The error for a folder given where a COCO JSON file is needed, naming what it holds."""
    from napari_al.core.formats import FormatError

    jsons = sorted(p for p in folder.rglob("*.json") if not _hidden(p, folder))[:5]
    if jsons:
        found = ", ".join(str(p.relative_to(folder)) for p in jsons)
        return FormatError(
            f"{folder} is a folder; COCO is one JSON file: give one of its JSON files "
            f"({found}), e.g. {jsons[0]}"
        )
    n = len(_image_files(folder))
    what = f"{n} {plural(n, 'image')} and no JSON file" if n else "no JSON file"
    hint = ": import the images with --format images" if n else ""
    return FormatError(f"{folder} is a folder with {what}; COCO is one JSON file{hint}")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def hidden_lines(folder: Path, dataset: Dataset) -> list[str]:
    """One line naming the hidden images under ``folder`` that ``dataset`` does not hold
    (every folder scan skips them: :func:`~napari_al.core.images.find_images`), e.g. ``left out
    3 hidden files (names starting with '.', e.g. .a.jpg); rename them to import them``; none
    when there are none (a ``.git`` folder, a ``.DS_Store`` file: only images count)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    taken = {Path(os.path.abspath(r.path)) for r in dataset.images}
    hidden = [p for p in _hidden_images(folder) if Path(os.path.abspath(p)) not in taken]
    if not hidden:
        return []
    n, first = len(hidden), hidden[0].relative_to(folder).as_posix()
    them = "it" if n == 1 else "them"
    whose, fix = "names", f"rename {them} to import {them}"
    if any(_hidden(p.parent, folder) for p in hidden):
        whose, fix = "names or folders", f"rename {them} (or the folder) to import {them}"
    return [
        f"left out {n} hidden {plural(n, 'file')} ({whose} starting with '.', e.g. "
        f"{shown(first)}); {fix}"
    ]


def _hidden_images(folder: Path) -> list[Path]:
    """The images under ``folder`` that its scans skip as hidden (:func:`~napari_al.core.
    images.find_images`' ``hidden``)."""
    from napari_al.core.images import find_images

    hidden: list[Path] = []
    find_images(folder, hidden=hidden)
    return sorted(hidden, key=lambda p: p.parts)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _left_out_lines(dataset: Dataset, path: Path, fmt: str) -> list[str]:
    """One line per folder holding images that the dataset read from ``path`` leaves out.

    Looked at: every image under a VOC or YOLO folder; for COCO, the folders of the images
    the JSON file lists (not their sub-folders). Images the reader skipped as unreadable
    (``dataset.skipped_images``) are reported by their own warning, not here.
    """
    known = {Path(r.path) for r in dataset.images} | set(dataset.skipped_images)
    if fmt == "coco":
        folders = sorted({Path(r.path).parent for r in dataset.images})
        files = [p for d in folders if d.is_dir() for p in _image_files(d) if p.parent == d]
        root = path.parent
    else:
        files = _image_files(path)
        root = path
    by_folder: dict[Path, list[Path]] = {}
    for p in files:
        if p not in known:
            by_folder.setdefault(p.parent, []).append(p)
    skipped = any(w.endswith("skipped)") for w in dataset.warnings)
    fix_skipped = ", or, if their labels are in a record skipped above, fix it and import again"
    lines = []
    for folder, paths in sorted(by_folder.items()):
        where = os.path.relpath(folder, os.path.abspath(root))
        where = "the top folder" if where == "." else f"{where}/"
        n = len(paths)
        lines.append(
            f"left out {n} image{'s' if n != 1 else ''} in {where} that the {fmt.upper()} "
            f"dataset does not include (e.g. {paths[0].name}); import them with "
            "--format images if they belong in the project" + (fix_skipped if skipped else "")
        )
    return lines


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
    images marked complete, and images with regions marked complete (a large image reviewed
    region by region), are written, so an export never passes model guesses off as truth.
    Without it, every image is written: a ``partial`` one as partly reviewed where the format
    can say so (VOC ``<partial>1</partial>``, COCO ``"partial": true``; YOLO cannot) and an
    ``unseen`` one without human labels as unannotated (never as a negative). An image's
    reviewed regions (image pixels, xyxy) are written with it: COCO ``"reviewed_regions":
    [[x1, y1, x2, y2], ...]``, VOC ``<reviewed_region>`` elements (1-based inclusive whole
    pixels, as boxes). YOLO can say neither: with ``only_reviewed`` its export leaves out the
    images that are not complete but have reviewed regions, with a line in
    ``Dataset.warnings`` saying how many and to export COCO or VOC to keep them. Ignore regions
    (which have no class in the store) are written as VOC ``difficult`` / COCO ``iscrowd``
    objects, one per class; YOLO has no way to carry them.

    ``copy_images`` (VOC, YOLO): ``True`` copies the images into the export (YOLO: the
    Ultralytics ``images/<split>/`` + ``labels/<split>/`` layout); ``False`` references them
    in place; ``None`` (default) references them in place, except a YOLO export of images
    that share a file name stem (``site1/f1.png``, ``site2/f1.png``), whose label files would
    collide: it is copied (names made unique), with a line in ``Dataset.warnings``. A VOC
    export in place leaves out the unannotated images: :func:`_leave_out_unannotated`.

    ``overwrite`` replaces existing files and removes the files the earlier napari-al exports
    in ``out``, of any format, wrote and this one does not (a split or an image no longer
    exported, a VOC export's files under a new YOLO export), never another file nor one of
    the project's images (:mod:`napari_al.core.formats.manifest`; a line in
    ``Dataset.warnings`` says what went, and one names the files it wrote over that no
    earlier export recorded).

    Refused before anything is written (:class:`~napari_al.core.formats.ExportIntoProjectError`):
    ``out`` is the project's own folder, or its copied images would be written where the
    project reads one of its images from.
    """
    from napari_al.core.formats import write_dataset
    from napari_al.core.formats.refusals import check_not_into_project

    images = _export_records(store, only_reviewed)
    dataset = Dataset(
        classes=[c.name for c in store.classes()], images=images, source=str(store.project_dir)
    )
    if fmt == "yolo" and only_reviewed:
        partly = [im for im in images if im.partial and im.reviewed_regions]
        if partly:
            images[:] = [im for im in images if not (im.partial and im.reviewed_regions)]
            n = len(partly)
            dataset.warnings.append(
                f"left out {n} partly reviewed {plural(n, 'image')} with regions marked "
                f"complete (e.g. {partly[0].path.name}): YOLO cannot say which part of an "
                "image is reviewed; export COCO or VOC to keep them"
            )
    elif fmt == "yolo":
        partly = [im for im in images if im.partial]
        if partly:
            n = len(partly)
            dataset.warnings.append(
                f"wrote {n} partly reviewed {plural(n, 'image')} (e.g. {partly[0].path.name}) "
                "as if every object were labelled: YOLO has no partly reviewed state, so read "
                "back they are complete and their unlabelled objects train as background; "
                "export COCO or VOC to keep the state"
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
        if fmt == "voc" and not copy:  # nothing would name them: counted as not exported
            _leave_out_unannotated(dataset)
    elif copy_images:
        raise ValueError(f"copy_images applies to voc and yolo exports, not {fmt}")
    # --force never removes the project's own images (imported in place from an export)
    options["keep"] = [store.abs_path(row) for row in store.images()]
    check_not_into_project(
        Path(out),
        store.project_dir,
        options["keep"],
        fmt,
        bool(options.get("copy_images")),
    )
    write_dataset(dataset, Path(out), fmt, overwrite=overwrite, **options)
    return dataset


def _leave_out_unannotated(dataset: Dataset) -> None:
    """Drop the unannotated images of a VOC export that references images in place (only
    an annotation file names an image, so nothing would carry them) from ``dataset.images``,
    which then hold what is written, with a line in ``dataset.warnings`` saying how many and
    how to keep them."""
    from napari_al.core.formats.common import unannotated_left_out

    unannotated = [im for im in dataset.images if not im.annotated]
    if unannotated:
        dataset.images[:] = [im for im in dataset.images if im.annotated]
        dataset.warnings.append(unannotated_left_out(unannotated))


def _export_records(store: ProjectStore, only_reviewed: bool) -> list[ImageRecord]:
    """One record per exported image: human boxes, ignore regions (label ``""``), reviewed
    regions (image pixels, xyxy), and ``annotated``/``partial`` from the review state (an
    ``unseen`` image with human labels, ignore regions or reviewed regions is written as
    partly reviewed, so none of them is lost). ``only_reviewed``: the complete images and
    those with reviewed regions only."""
    from napari_al.core.data import HUMAN_STATUSES

    names = {c.id: c.name for c in store.classes()}
    reviewed: dict[int, list[tuple[float, float, float, float]]] = {}
    for r in store.reviewed_regions():
        reviewed.setdefault(r.image_id, []).append(r.xyxy)
    images: list[ImageRecord] = []
    for row in store.images():
        if only_reviewed and row.review_state != "complete" and row.id not in reviewed:
            continue
        boxes = [
            BoxRecord(b.x1, b.y1, b.x2, b.y2, names[b.class_id])
            for b in store.boxes(image_id=row.id, statuses=HUMAN_STATUSES)
        ]
        regions = [
            BoxRecord(r.x1, r.y1, r.x2, r.y2, "") for r in store.ignore_regions(image_id=row.id)
        ]
        done = reviewed.get(row.id, [])
        annotated = row.review_state != "unseen" or bool(boxes or regions or done)
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
                reviewed_regions=list(done),
            )
        )
    return images


def _stems_collide(images: list[ImageRecord]) -> bool:
    """Whether two different images share a file name stem."""
    owner: dict[str, Path] = {}
    return any(owner.setdefault(im.path.stem, im.path) != im.path for im in images)
