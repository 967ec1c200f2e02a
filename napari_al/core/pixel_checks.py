"""Check an image's pixels once per import: the check's outcome travels with the file's state.

A reader whose note names only the images an import adds (those whose pixels decode: a pool
note) checks them (:func:`record_pixel_check`, which keeps the outcome on the record as
``ImageRecord.pixel_check``); the store's import then uses that outcome (:func:`pixel_check`
with the record's) instead of decoding the image again, as long as the file is the one checked
(:func:`file_signature`), so a 1080p JPEG costs one decode (about 18 ms), not two. A file
changed since, or one no reader checked, is checked by the import.

Neither the readers nor the store import each other for this: both use this module and
:class:`~napari_al.core.data.PixelCheck`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from napari_al.core.data import ImageRecord, PixelCheck
from napari_al.core.images import ImageReadError, check_pixels


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def file_signature(path: str | Path) -> str | None:
    """The state of an image's file, cheaply (its metadata, no data read): device, inode,
    size, modification and change times; for a directory (an OME-Zarr image) those of every
    file and folder under it, hashed. A file rewritten, truncated, replaced or touched gets
    another signature. None when it cannot be read (a missing file: never equal)."""
    try:
        st = os.stat(path)
        if not os.path.isdir(path):
            return _stat_key(st)
        digest = hashlib.blake2b(_stat_key(st).encode(), digest_size=16)
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames) + dirnames:
                full = os.path.join(dirpath, name)
                key = _stat_key(os.stat(full))
                digest.update(f"\0{os.path.relpath(full, path)}\0{key}".encode())
        return "dir:" + digest.hexdigest()
    except (OSError, ValueError):
        return None


def pixel_check(path: str | Path, prior: PixelCheck | None = None) -> PixelCheck:
    """Whether the pixels of the image at ``path`` decode
    (:func:`~napari_al.core.images.check_pixels`): ``prior`` when it was made of this file as
    it still is (same :func:`file_signature`), else a new check. The error is the message
    without the path."""
    path = Path(path)
    signature = file_signature(path)  # before the check: a change during it is seen later
    if prior is not None and signature is not None and prior.signature == signature:
        return prior
    try:
        check_pixels(path)
    except ImageReadError as exc:
        return PixelCheck(signature, str(exc).removeprefix(f"{path}: "))
    return PixelCheck(signature, None)


def record_pixel_check(rec: ImageRecord) -> PixelCheck:
    """:func:`pixel_check` of the record's file (reusing its own while the file is unchanged),
    kept on the record (``rec.pixel_check``) for the import."""
    rec.pixel_check = pixel_check(Path(rec.path), rec.pixel_check)
    return rec.pixel_check
