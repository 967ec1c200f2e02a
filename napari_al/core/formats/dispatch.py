"""Format detection and dispatch to the readers and writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_al.core.data import Dataset
from napari_al.core.formats.coco import read_coco, write_coco
from napari_al.core.formats.common import FormatError, _pool_note
from napari_al.core.formats.darknet import names_files
from napari_al.core.formats.folder import read_image_folder
from napari_al.core.formats.voc import read_voc, write_voc
from napari_al.core.formats.yolo import _YOLO_YAML_NAMES, read_yolo, write_yolo

#: Formats :func:`read_dataset` understands (``images``: a plain folder of images).
READ_FORMATS = ("voc", "coco", "yolo", "images")
#: Formats :func:`write_dataset` writes.
WRITE_FORMATS = ("voc", "coco", "yolo")


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path``: coco (a .json file), voc (an ``Annotations/`` or
    ``annotations/`` folder, or .xml files beside the images), yolo (data.yaml, classes.txt,
    obj.names, obj.data, a ``*.names`` file or a ``labels/`` folder) or images (any other
    folder)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if not p.is_dir():
        raise FormatError(f"{p}: not a folder or a COCO .json file")
    if (p / "Annotations").is_dir() or (p / "annotations").is_dir():
        return "voc"
    if (
        any((p / n).is_file() for n in (*_YOLO_YAML_NAMES, "classes.txt", "obj.names", "obj.data"))
        or (p / "labels").is_dir()
        or names_files(p)
    ):
        return "yolo"
    if any(q.suffix.lower() == ".xml" and q.is_file() for q in p.iterdir()):
        return "voc"  # LabelImg: XML files beside the images
    return "images"


def read_dataset(
    path: str | Path, fmt: str | None = None, *, strict: bool = True, **kwargs: Any
) -> Dataset:
    """Read a dataset in ``fmt`` (voc, coco, yolo, images; ``None``: :func:`detect_format`).

    Extra keyword arguments go to the reader (``classes`` and ``image_dir`` for VOC,
    ``image_root`` for COCO, ``allow_empty`` for YOLO).
    """
    fmt = detect_format(path) if fmt is None else fmt
    readers = {"voc": read_voc, "coco": read_coco, "yolo": read_yolo, "images": read_image_folder}
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {list(READ_FORMATS)}")
    dataset = readers[fmt](path, strict=strict, **kwargs)
    if fmt == "yolo":  # VOC's lists: read_voc; COCO's own split and annotated keys are kept
        unlabelled_training_to_pool(dataset, fmt)
    return dataset


def unlabelled_training_to_pool(dataset: Dataset, fmt: str) -> int:
    """Move the images a dataset puts in ``train`` without any annotation to the ``pool``,
    with one warning; returns how many. A training image nobody labelled yet is what the pool
    holds: there rank asks about it and review makes it a training image; in ``train`` it was
    predicted but never asked about nor trained on. An image without annotation and without a
    split (a YOLO folder without splits) joins the pool too, named in the same warning, which
    names only the images the import adds (:func:`~napari_al.core.formats.common._pool_note`:
    not an undecodable one, which the import names as such). :func:`read_dataset` applies it
    to YOLO (a training image without a label file; an empty one marks an image without
    objects); VOC's ``ImageSets`` lists are handled, naming the list, by
    :func:`~napari_al.core.formats.voc.read_voc`; a COCO file's own ``split`` and
    ``annotated`` keys (napari-al's export) are kept as they are."""
    moved = [
        im
        for im in dataset.images
        if im.split in ("train", None) and not im.annotated and not im.reviewed_regions
    ]
    what = "training image" if all(im.split == "train" for im in moved) else "image"
    for im in moved:
        im.split = "pool"
    hint = " (an empty label file marks an image without objects)" if fmt == "yolo" else ""
    note = _pool_note(moved, what, f"no annotation{hint}")
    if note is not None:
        dataset.warnings.append(note)
    return len(moved)


def write_dataset(
    dataset: Dataset, path: str | Path, fmt: str, *, overwrite: bool = False, **kwargs: Any
) -> list[Path]:
    """Write ``dataset`` in ``fmt`` (voc, coco, yolo) to ``path``; returns the files written.

    For COCO, ``path`` is the JSON file when it ends in ``.json``, else a folder that receives
    ``annotations.json``. Extra keyword arguments go to the writer (``copy_images``,
    ``image_root``).
    """
    if fmt == "voc":
        return write_voc(dataset, path, overwrite=overwrite, **kwargs)
    if fmt == "coco":
        p = Path(path)
        if p.suffix.lower() != ".json":
            p = p / "annotations.json"
        return write_coco(dataset, p, overwrite=overwrite, **kwargs)
    if fmt == "yolo":
        return write_yolo(dataset, path, overwrite=overwrite, **kwargs)
    raise ValueError(f"unknown format {fmt!r}; expected one of {list(WRITE_FORMATS)}")
