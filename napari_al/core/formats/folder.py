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
from napari_al.core.images import IMAGE_EXTENSIONS, find_images, is_image_file


@_one_error_type
def read_image_folder(root: str | Path, *, strict: bool = True) -> Dataset:
    """All images under ``root`` (recursive, sorted, hidden files/folders skipped), unannotated:
    image files and OME-Zarr directories (:func:`~napari_al.core.images.find_images`; a
    ``*.zarr`` directory is never entered); ``root`` may also be one image file.

    Sizes come from the image headers; an unreadable image is an error (skipped with a warning
    when ``strict=False``). Raises :class:`FormatError` when ``root`` is neither.
    """
    root = _abspath(root)
    unread: list[Path] = []  # files of an image type not read, named in a warning
    if root.is_file() and is_image_file(root.name):
        found = [root]
    elif root.is_dir():
        found = find_images(root, unread)
    else:
        what = "a file of no image type" if root.is_file() else "not found"
        raise FormatError(
            f"{root}: {what}; give a folder of images or one image file "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    rd = _Reader(root if root.is_dir() else root.parent, strict)
    images = []
    for p in found:
        p = _abspath(p)
        try:
            w, h = rd.size_of(p, "")
        except FormatError as e:
            rd.skip(e, "image")
            continue
        images.append(ImageRecord(path=p, width=w, height=h, annotated=False))
    if unread:
        n = len(unread)
        rd.warn(
            f"left out {n} file{'s' if n != 1 else ''} of an image type napari-al does not "
            f"read (e.g. {rd.rel(min(unread))}); convert {'it' if n == 1 else 'them'} to TIFF or "
            f"PNG ({', '.join(IMAGE_EXTENSIONS)}) to import {'it' if n == 1 else 'them'}"
        )
    return rd.dataset([], images, f"images:{root}")
