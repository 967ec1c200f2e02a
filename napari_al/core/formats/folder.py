"""Plain image folders (no annotations)."""

from __future__ import annotations

from pathlib import Path

from napari_al.core.data import Dataset, ImageRecord
from napari_al.core.formats.common import (
    FormatError,
    _abspath,
    _one_error_type,
    _Reader,
)
from napari_al.core.images import find_images


@_one_error_type
def read_image_folder(root: str | Path, *, strict: bool = True) -> Dataset:
    """All images under ``root`` (recursive, sorted, hidden files/folders skipped), unannotated:
    image files and OME-Zarr directories (:func:`~napari_al.core.images.find_images`; a
    ``*.zarr`` directory is never entered).

    Sizes come from the image headers; an unreadable image is an error (skipped with a warning
    when ``strict=False``).
    """
    root = _abspath(root)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    rd = _Reader(root, strict)
    images = []
    for p in find_images(root):
        p = _abspath(p)
        try:
            w, h = rd.size_of(p, "")
        except FormatError as e:
            rd.skip(e, "image")
            continue
        images.append(ImageRecord(path=p, width=w, height=h, annotated=False))
    return Dataset(classes=[], images=images, source=f"images:{root}", warnings=rd.warnings)
