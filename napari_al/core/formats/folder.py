"""Plain image folders (no annotations)."""

from __future__ import annotations

import os
from pathlib import Path

from napari_al.core.data import Dataset, ImageRecord
from napari_al.core.formats.common import (
    FormatError,
    _abspath,
    _one_error_type,
    _Reader,
)
from napari_al.core.images import IMAGE_EXTENSIONS, find_images, is_image_file, is_zarr_path

#: Extensions of image files that napari-al does not read (web, camera and microscopy vendors'
#: formats), named when a folder holds some, so that none is left out silently.
OTHER_IMAGE_EXTENSIONS = (
    ".webp", ".gif", ".heic", ".heif", ".avif", ".jp2", ".czi", ".nd2", ".lif", ".lsm",
    ".oib", ".oif", ".ims", ".vsi", ".svs", ".ndpi", ".scn", ".mrxs", ".dcm",
)  # fmt: skip


@_one_error_type
def read_image_folder(root: str | Path, *, strict: bool = True) -> Dataset:
    """All images under ``root`` (recursive, sorted, hidden files/folders skipped), unannotated:
    image files and OME-Zarr directories (:func:`~napari_al.core.images.find_images`; a
    ``*.zarr`` directory is never entered); ``root`` may also be one image file.

    Sizes come from the image headers; an unreadable image is an error (skipped with a warning
    when ``strict=False``). Raises :class:`FormatError` when ``root`` is neither.
    """
    root = _abspath(root)
    if root.is_file() and is_image_file(root.name):
        found = [root]
    elif root.is_dir():
        found = find_images(root)
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
            rd.skip(e, "image", p)
            continue
        images.append(ImageRecord(path=p, width=w, height=h, annotated=False))
    if root.is_dir():
        _note_other_image_types(root, rd)
    return Dataset(
        classes=[],
        images=images,
        source=f"images:{root}",
        warnings=rd.warnings,
        skipped_images=rd.skipped_images,
    )


def _note_other_image_types(root: Path, rd: _Reader) -> None:
    """Warn, once, about files under ``root`` of an image type that is not read
    (:data:`OTHER_IMAGE_EXTENSIONS`): how many, one example, and the fix."""
    others = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_zarr_path(Path(d))]
        others += [
            Path(dirpath) / n
            for n in filenames
            if not n.startswith(".") and Path(n).suffix.lower() in OTHER_IMAGE_EXTENSIONS
        ]
    if others:
        n = len(others)
        rd.warn(
            f"left out {n} file{'s' if n != 1 else ''} of an image type napari-al does not "
            f"read (e.g. {rd.rel(min(others))}); convert them to TIFF or PNG "
            f"({', '.join(IMAGE_EXTENSIONS)}) to import them"
        )
