"""OME-Zarr (OME-NGFF) images: one image in a ``*.zarr`` directory, read with the ``zarr``
package (version 3), lazily when large, as :class:`~napari_al.core.lazy_images.LazyImage` reads a
tiled TIFF.

What is read (OME-NGFF 0.4 and 0.5, https://ngff.openmicroscopy.org/):

- **Where the image is.** ``DIR/.zattrs`` ``{"multiscales": [...]}`` (NGFF 0.4, zarr v2), or
  ``DIR/zarr.json`` whose ``attributes`` hold ``{"ome": {"multiscales": [...]}}`` (NGFF 0.5,
  zarr v3; a plain ``attributes.multiscales`` is accepted too). A ``bioformats2raw`` layout
  (``"bioformats2raw.layout"`` at the top, no multiscales) gives its first series, ``DIR/0``.
  Only the JSON files are read to find it (:func:`is_ome_zarr`), so a folder scan is cheap.
- **Levels.** ``multiscales[0].datasets[*].path`` in order, the full resolution first (the
  spec's order); every level has the same axes, and no level is larger than the one before.
  ``coordinateTransformations`` are not read: a level's scale is its size against level 0's.
- **Axes.** ``multiscales[0].axes`` (names; NGFF 0.3's list of strings too; without axes, a
  5-D array is ``t, c, z, y, x`` as NGFF 0.1-0.2 have it). Supported: the last two are ``y``
  then ``x``; at most one ``c`` of 1, 3 or 4 channels (4: RGBA, the alpha dropped as for any
  image); ``t`` and ``z`` of size 1 (read at index 0). Anything else (a z-stack, a time series,
  2 or 5 channels, unnamed axes) is refused with a one-line
  :class:`~napari_al.core.images.ImageReadError` naming the path and the axes found.
- **Pixels.** Those of level 0 as ``(H, W)`` (no ``c``, or one channel) or ``(H, W, 3)``
  (channels last), the stored dtype in native byte order; a chunk never written reads as the
  array's fill value (zarr's rule).

Sizes follow the TIFF rules of :mod:`napari_al.core.images`: a side up to
:data:`~napari_al.core.images.MAX_SIDE` reads whole (:func:`read_ome_zarr`); a larger one, up to
:data:`~napari_al.core.images.MAX_LAZY_SIDE`, only window by window and only when a chunk
holds at most :data:`~napari_al.core.images.MAX_CHUNK_PIXELS` pixels (rows x columns); an image
of more than :data:`~napari_al.core.lazy_images.LAZY_PIXELS` pixels in such chunks is read
window by window (:class:`OmeZarrImage`, a :class:`~napari_al.core.lazy_images.LazyImage`: the
same windows, pyramid, sampled display levels and intensity limits).

A store's file identity (:func:`ome_zarr_sha256`) hashes the metadata and the coarsest level's
chunks, never the full-resolution data (see there).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_al.core import lazy_images
from napari_al.core.images import (
    MAX_CHUNK_PIXELS,
    MAX_SIDE,
    ImageReadError,
    _check_side,
    is_zarr_path,
)
from napari_al.core.lazy_images import LazyImage

#: The metadata files of a zarr v2 or v3 group or array (hashed whole by :func:`ome_zarr_sha256`).
METADATA_FILES = ("zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata")

#: :func:`ome_zarr_sha256` reads at most this many bytes of the coarsest level's chunks.
HASH_CHUNK_BYTES = 16 << 20


def _json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is absent, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _attributes(group: Path) -> dict[str, Any]:
    """A zarr group's attributes: ``zarr.json``'s ``attributes`` (v3), else ``.zattrs`` (v2)."""
    meta = _json(group / "zarr.json")
    if meta is not None:
        attrs = meta.get("attributes")
        return attrs if isinstance(attrs, dict) else {}
    return _json(group / ".zattrs") or {}


def _multiscales(attrs: dict[str, Any]) -> list[Any] | None:
    ome = attrs.get("ome")
    found = ome.get("multiscales") if isinstance(ome, dict) else None
    if found is None:
        found = attrs.get("multiscales")
    return found if isinstance(found, list) and found else None


def image_group(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The group of an OME-Zarr directory that holds the image, and its first multiscales entry
    (NGFF JSON); None when ``path`` holds none (see the module). Reads JSON files only."""
    root = Path(path)
    attrs = _attributes(root)
    found = _multiscales(attrs)
    if found is None and "bioformats2raw.layout" in attrs:
        root = root / "0"
        found = _multiscales(_attributes(root))
    if found is None or not isinstance(found[0], dict):
        return None
    return root, found[0]


def is_ome_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a ``*.zarr`` directory holding an OME-Zarr multiscales image (JSON
    read only; its arrays are checked when it is opened)."""
    try:
        return is_zarr_path(path) and Path(path).is_dir() and image_group(path) is not None
    except OSError:
        return False


def _axis_names(path: Path, entry: dict[str, Any], ndim: int) -> list[str]:
    axes = entry.get("axes")
    if axes is None:
        if ndim == 5:
            return ["t", "c", "z", "y", "x"]
        raise ImageReadError(f"{path}: OME-Zarr multiscales without axes for a {ndim}-D array")
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    return [str(n).lower() for n in names]


class _Plane:
    """A zarr array of an OME-Zarr level seen as ``(C, H, W)`` or ``(H, W)``: singleton ``t``,
    ``z`` (and a single ``c``) read at index 0. ``shape``, ``chunks``, ``dtype``, ``ndim``
    and basic slicing ``plane[c, ys, xs]`` (slices with positive steps), as
    :class:`~napari_al.core.lazy_images.LazyImage` and dask use a TIFF level's zarr array."""

    def __init__(self, z: Any, kept: list[int], where: Path) -> None:
        self.z = z
        self.kept = kept
        self.where = where
        self.shape: tuple[int, ...] = tuple(int(z.shape[i]) for i in kept)
        self.chunks: tuple[int, ...] = tuple(int(z.chunks[i]) for i in kept)
        self.dtype = np.dtype(z.dtype)
        self.ndim = len(kept)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        full: list[Any] = [0] * len(self.z.shape)
        for axis, k in zip(self.kept, key, strict=True):
            full[axis] = k
        return np.asarray(self.z[tuple(full)])

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("napari-al-ome-zarr", str(self.where), tuple(self.kept), self.shape)


def _open_array(path: Path, where: Path) -> Any:
    zarr = lazy_images.zarr_module(path, "reading OME-Zarr")
    try:
        return zarr.open_array(str(where), mode="r")
    except Exception as e:
        raise ImageReadError(
            f"{path}: cannot open the OME-Zarr level {where.name} ({type(e).__name__}: {e})"
        ) from None


def open_levels(path: str | Path) -> tuple[list[_Plane], int]:
    """The levels of the OME-Zarr image at ``path`` (full resolution first) as :class:`_Plane`
    views, and its number of channels (1, 3 or 4). Reads the JSON metadata of the group and of
    each level, no pixels. Raises :class:`~napari_al.core.images.ImageReadError` for anything
    that is not a supported 2-D OME-Zarr image (see the module)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if not path.is_dir():
        raise ImageReadError(f"{path}: not an OME-Zarr directory")
    found = image_group(path)
    if found is None:
        raise ImageReadError(
            f"{path}: not an OME-Zarr image (no multiscales in its .zattrs or zarr.json)"
        )
    group, entry = found
    datasets = entry.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ImageReadError(f"{path}: OME-Zarr multiscales lists no datasets")
    arrays = []
    for ds in datasets:
        sub = ds.get("path") if isinstance(ds, dict) else None
        if not isinstance(sub, str) or not sub:
            raise ImageReadError(f"{path}: OME-Zarr dataset without a path: {ds!r}")
        arrays.append(_open_array(path, group / sub))
    shape = tuple(int(v) for v in arrays[0].shape)
    names = _axis_names(path, entry, len(shape))
    kept, samples = _layout(path, names, shape)
    dtype = np.dtype(arrays[0].dtype)
    if dtype.kind not in "buif":
        raise ImageReadError(f"{path}: unsupported OME-Zarr data type {dtype}")
    planes = []
    for ds, z in zip(datasets, arrays, strict=True):
        if len(z.shape) != len(shape) or any(
            int(z.shape[i]) != shape[i] for i, n in enumerate(names) if n not in ("y", "x")
        ):
            raise ImageReadError(
                f"{path}: OME-Zarr level shapes differ beyond y and x: {tuple(z.shape)} "
                f"against {shape}"
            )
        planes.append(_Plane(z, kept, group / ds["path"]))
    for before, after in itertools.pairwise(planes):
        if after.shape[-2] > before.shape[-2] or after.shape[-1] > before.shape[-1]:
            raise ImageReadError(
                f"{path}: OME-Zarr levels are not ordered from full resolution down "
                f"({before.shape[-2:]} then {after.shape[-2:]})"
            )
    return planes, samples


def _layout(path: Path, names: list[str], shape: tuple[int, ...]) -> tuple[list[int], int]:
    """The array axes kept (``c`` with 3-4 channels, ``y``, ``x``) and the number of channels,
    or the one-line error naming the axes found."""
    found = ", ".join(f"{n}={s}" for n, s in zip(names, shape, strict=False))
    bad = ImageReadError(
        f"{path}: unsupported OME-Zarr axes ({found}); expected (y, x) or (c, y, x) with 1, 3 "
        "or 4 channels, t and z of size 1"
    )
    if len(names) != len(shape) or len(set(names)) != len(names) or names[-2:] != ["y", "x"]:
        raise bad
    kept, samples = [], 1
    for i, (name, size) in enumerate(zip(names[:-2], shape[:-2], strict=True)):
        if name in ("t", "z") and size == 1:
            continue
        if name == "c" and size == 1:
            continue
        if name == "c" and size in (3, 4):
            kept.append(i)
            samples = size
            continue
        raise bad
    return [*kept, len(names) - 2, len(names) - 1], samples


def _chunk_pixels(plane: _Plane) -> int:
    return int(plane.chunks[-2]) * int(plane.chunks[-1])


def ome_zarr_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an OME-Zarr image from its metadata (no pixels), with the size
    rules of :func:`~napari_al.core.images.image_size` (a side over
    :data:`~napari_al.core.images.MAX_SIDE` only when its chunks are small)."""
    path = Path(path)
    planes, _ = open_levels(path)
    h, w = planes[0].shape[-2:]
    _check_side(path, w, h, chunk_pixels=_chunk_pixels(planes[0]))
    return int(w), int(h)


def reads_lazily(path: str | Path) -> bool:
    """Whether the OME-Zarr image at ``path`` has more than
    :data:`~napari_al.core.lazy_images.LAZY_PIXELS` pixels in chunks of at most
    :data:`~napari_al.core.images.MAX_CHUNK_PIXELS`; False when it cannot be opened."""
    try:
        planes, _ = open_levels(path)
    except Exception:
        return False
    h, w = planes[0].shape[-2:]
    return h * w > lazy_images.LAZY_PIXELS and _chunk_pixels(planes[0]) <= MAX_CHUNK_PIXELS


class OmeZarrImage(LazyImage):
    """An OME-Zarr image read window by window: a
    :class:`~napari_al.core.lazy_images.LazyImage` (``shape`` ``(H, W)`` or ``(H, W, 3)``,
    ``dtype``, ``levels``, ``image[y0:y1, x0:x1]``, ``rgb()``, ``dask_levels()``,
    ``display_levels()``) whose levels are the multiscales datasets. ``check_chunks=False``
    accepts chunks of any size (to read a small image whole). Holds no file open; ``close``
    does nothing."""

    def __init__(self, path: str | Path, *, check_chunks: bool = True) -> None:
        self.path = Path(path)
        planes, samples = open_levels(self.path)
        h, w = planes[0].shape[-2:]
        chunk = _chunk_pixels(planes[0])
        _check_side(self.path, w, h, chunk_pixels=chunk)
        if check_chunks and chunk > MAX_CHUNK_PIXELS:
            raise ImageReadError(
                f"{self.path}: stored in chunks of {chunk} px, too large to read it chunk by "
                "chunk; rechunk it (e.g. chunks of 1024 x 1024 px)"
            )
        self._levels: list[Any] = list(planes)
        self._planar = samples > 1
        self._samples = samples
        self.dtype = np.dtype(planes[0].dtype).newbyteorder("=")
        self.shape: tuple[int, ...] = (h, w) if samples == 1 else (h, w, 3)

    def close(self) -> None:
        pass

    def __enter__(self) -> OmeZarrImage:
        return self


def read_ome_zarr(path: str | Path) -> np.ndarray:
    """Level 0 of an OME-Zarr image, whole: ``(H, W)`` or ``(H, W, 3)``, the stored dtype in
    native byte order, alpha dropped. A side over :data:`~napari_al.core.images.MAX_SIDE` is
    refused as for a large TIFF (such an image is read window by window instead)."""
    path = Path(path)
    with OmeZarrImage(path, check_chunks=False) as image:
        h, w = image.shape[:2]
        if max(h, w) > MAX_SIDE:
            raise ImageReadError(
                f"{path}: image is {w}x{h} px, larger than the {MAX_SIDE} px per side read "
                "whole: prediction and the viewer read it tile by tile (docs/large-images.md); "
                "training, evaluation and click mode on it are not supported yet"
            )
        return image.read(slice(0, h), slice(0, w))


def check_ome_zarr_pixels(path: str | Path) -> None:
    """:func:`ome_zarr_size`, then decode the first chunk of the full and of the coarsest
    level, so that a codec this installation lacks (or a corrupt chunk) is refused on import;
    every other chunk file is checked by its headers (:func:`check_ome_zarr_chunks`)."""
    path = Path(path)
    ome_zarr_size(path)
    check_ome_zarr_chunks(path)
    with OmeZarrImage(path, check_chunks=False) as image:
        for level, plane in ((0, image._levels[0]), (-1, image._levels[-1])):
            image.read(slice(0, plane.chunks[-2]), slice(0, plane.chunks[-1]), level)


def check_ome_zarr_chunks(path: str | Path) -> None:
    """Refuse an OME-Zarr image a chunk file of whose levels is truncated or corrupt
    (:func:`~napari_al.core.zarr_chunks.chunk_problem`: by the codecs' headers, no pixels
    decoded, as :func:`~napari_al.core.images.check_tiff_extent` reads a TIFF's offsets; a
    few bytes per chunk); any other path passes. Also the errors of :func:`open_levels`."""
    from napari_al.core.zarr_chunks import chunk_problem

    path = Path(path)
    if not is_zarr_path(path):
        return
    planes, _ = open_levels(path)
    for plane in planes:
        problem = chunk_problem(plane.z, plane.where)
        if problem is not None:
            raise ImageReadError(f"{path}: {problem}")


def ome_zarr_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 identifying an OME-Zarr directory without reading its full-resolution data.

    It covers, in order: the metadata files (:data:`METADATA_FILES`) of the top group, of the
    image group (``0/`` of a bioformats2raw layout) and of every level's array (shape, chunk
    grid, dtype, codecs, NGFF attributes), each with its path; then the coarsest level's chunk
    files in sorted path order, each with its path and size, their bytes up to
    :data:`HASH_CHUNK_BYTES` in all. So a copy of a store hashes equal, and two stores differ
    unless their metadata and coarsest level (its first 16 MiB) are byte for byte the same.
    Memory: ``chunk_size`` bytes. Raises OSError for an unreadable file, ImageReadError for a
    directory that is not an OME-Zarr image."""
    root = Path(path)
    found = image_group(root)
    if found is None:
        raise ImageReadError(f"{root}: not an OME-Zarr image (no multiscales metadata)")
    group, entry = found
    datasets = [d.get("path") for d in entry.get("datasets", []) if isinstance(d, dict)]
    datasets = [d for d in datasets if isinstance(d, str) and d]
    digest = hashlib.sha256(b"napari-al ome-zarr v1\0")

    def add(file: Path) -> None:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(chunk_size):
                digest.update(block)

    folders = [root] + ([group] if group != root else []) + [group / d for d in datasets]
    for folder in folders:
        for name in METADATA_FILES:
            if (folder / name).is_file():
                add(folder / name)
    if datasets:
        coarsest = group / datasets[-1]
        files = []
        for dirpath, _, filenames in os.walk(coarsest):
            files += [Path(dirpath) / n for n in filenames if n not in METADATA_FILES]
        left = HASH_CHUNK_BYTES
        for file in sorted(files, key=lambda p: p.relative_to(root).parts):
            size = file.stat().st_size
            digest.update(f"{file.relative_to(root).as_posix()}\0{size}\0".encode())
            with open(file, "rb") as f:
                while left > 0 and (block := f.read(min(chunk_size, left))):
                    digest.update(block)
                    left -= len(block)
    return digest.hexdigest()
