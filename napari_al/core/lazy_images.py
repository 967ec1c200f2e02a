"""Large images read lazily, window by window: tiled (or finely stripped) TIFF, pyramidal TIFF
and OME-TIFF, through tifffile's zarr store; OME-Zarr directories through
:class:`~napari_al.core.ome_zarr.OmeZarrImage`, a :class:`LazyImage` over the zarr arrays of its
multiscales levels (:func:`open_lazy` picks the reader; the rules below hold for both, chunks in
the part of tiles).

A TIFF with more than :data:`LAZY_PIXELS` pixels whose strips or tiles are small
(:func:`~napari_al.core.images.tiff_chunk_pixels` at most
:data:`~napari_al.core.images.MAX_CHUNK_PIXELS`) is never read whole: :class:`LazyImage` opens
its first page with ``tifffile.TiffPage.aszarr`` (a zarr store over the file's strips or tiles;
it needs the ``zarr`` package, version 3) and reading a window decodes only the strips or tiles
under it. Every other image is read whole, as :func:`~napari_al.core.images.read_image` does.

Windows are sliced from the zarr array directly: on a 25,000 x 25,000 px tiled TIFF, 325 windows
of 1024 x 2048 px took 1.7 s this way, 5.0 s through a dask array with dask's synchronous
scheduler and 20 s with its default threads (2 busy cores). :meth:`LazyImage.dask_levels` gives
the pyramid as dask arrays (level 0 first); :meth:`LazyImage.display_levels` adds coarser levels
sampled from it down to :data:`DISPLAY_SMALLEST_SIDE`, a viewer's multiscale layer, and
:func:`open_display` is what a viewer reads an image with (lazily when it is large).

What is read is what :func:`~napari_al.core.images.read_image` would give for the same file:
the first page (a pyramid's reduced levels are extra levels, not extra images), samples last
(a planar RGB page is transposed window by window), alpha dropped, native byte order; the TIFF
Orientation tag is not applied. :meth:`LazyImage.rgb` is the detector's uint8 RGB view, as
:func:`~napari_al.core.images.to_rgb_uint8` converts it, with the intensity limits of a
non-uint8 image estimated once for the whole image: on the smallest pyramid level of at least
:data:`~napari_al.core.images.LIMIT_SAMPLE_PIXELS` pixels, else on a strided sample of the full
image read band by band, so the limits (and the pixels) can differ slightly from those of the
same image read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_al.core.images import (
    LIMIT_SAMPLE_PIXELS,
    MAX_CHUNK_PIXELS,
    ImageReadError,
    _check_file,
    _check_side,
    _native,
    check_tiff_samples,
    intensity_limits,
    is_zarr_path,
    large_chunks_message,
    read_image,
    sample_step,
    scale_to_uint8,
    tiff_chunk_pixels,
    to_rgb_uint8,
)

#: A TIFF of small strips or tiles with more pixels than this (height x width; 50 MB as 8-bit
#: RGB) is read window by window, never whole; smaller images and other formats are read whole.
LAZY_PIXELS = 4096 * 4096

#: A viewer's multiscale levels go down to one whose longer side is at most this many pixels
#: (:meth:`LazyImage.display_levels`): a whole-image view then reads at most that many.
DISPLAY_SMALLEST_SIDE = 2048

_TIFF_EXTENSIONS = (".tif", ".tiff")


def open_lazy(path: str | Path) -> LazyImage:
    """The :class:`LazyImage` of ``path``: an :class:`~napari_al.core.ome_zarr.OmeZarrImage`
    for a ``*.zarr`` directory, else a TIFF's. Raises
    :class:`~napari_al.core.images.ImageReadError`."""
    if is_zarr_path(path):
        from napari_al.core.ome_zarr import OmeZarrImage

        return OmeZarrImage(path)
    return LazyImage(path)


def reads_lazily(path: str | Path) -> bool:
    """Whether ``path`` is read window by window (:func:`open_lazy`): a TIFF whose first page,
    or an OME-Zarr image (:mod:`napari_al.core.ome_zarr`) whose level 0, has more than
    :data:`LAZY_PIXELS` pixels in strips, tiles or chunks of at most
    :data:`~napari_al.core.images.MAX_CHUNK_PIXELS`. Reads only the header or metadata; False
    for anything else, or what cannot be opened (reading it whole then reports the problem)."""
    path = Path(path)
    if is_zarr_path(path):
        from napari_al.core import ome_zarr

        return ome_zarr.reads_lazily(path)
    if path.suffix.lower() not in _TIFF_EXTENSIONS:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            pixels = int(page.imagewidth) * int(page.imagelength)
            return pixels > LAZY_PIXELS and tiff_chunk_pixels(page) <= MAX_CHUNK_PIXELS
    except Exception:
        return False


def zarr_module(path: Path, reading: str) -> Any:
    """The ``zarr`` package, or an :class:`~napari_al.core.images.ImageReadError` naming
    ``path`` and what ``reading`` it needs the package for, with the command that installs it."""
    try:
        import zarr
    except ImportError:  # zarr 3 needs Python 3.11
        raise ImageReadError(
            f"{path}: {reading} needs the zarr package (version 3, Python 3.11 or newer): "
            "pip install 'zarr>=3.1'"
        ) from None
    return zarr


def _open_zarr(path: Path, store: Any) -> Any:
    return zarr_module(path, "reading a large TIFF tile by tile").open(store, mode="r")


class LazyImage:
    """The first page of a large TIFF, read window by window (see the module).

    ``shape`` is ``(H, W)`` (greyscale) or ``(H, W, 3)`` (RGB; RGBA loses its alpha), ``dtype``
    the stored one in native byte order; ``image[y0:y1, x0:x1]`` reads that window (pixels,
    rows then columns; steps are not supported) as a numpy array of that shape and dtype.
    ``levels`` are the pyramid's ``(H, W)`` sizes, the full image first (one entry when the file
    has no reduced levels). Raises :class:`~napari_al.core.images.ImageReadError` for a file that
    cannot be read so (not a TIFF of small strips or tiles, an unsupported layout). Close it
    (or use it as a context manager): it holds the file open.
    """

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = Path(path)
        _check_file(self.path)
        try:
            self._tf = tifffile.TiffFile(self.path)
        except Exception as e:
            raise ImageReadError(
                f"{self.path}: not a readable TIFF ({type(e).__name__}: {e})"
            ) from None
        try:
            self._open()
        except BaseException:
            self._tf.close()
            raise

    def _open(self) -> None:
        page = self._tf.pages.first
        width, height = int(page.imagewidth), int(page.imagelength)
        chunk = tiff_chunk_pixels(page)
        _check_side(self.path, width, height, chunk_pixels=chunk)
        if chunk > MAX_CHUNK_PIXELS:
            raise ImageReadError(large_chunks_message(self.path, width, height, chunk))
        self._planar = page.axes.startswith("S")
        if page.axes not in ("YX", "YXS", "SYX"):
            raise ImageReadError(
                f"{self.path}: unsupported TIFF layout {page.axes} {page.shape} (expected "
                "greyscale or RGB)"
            )
        samples = self._samples = check_tiff_samples(self.path, page)
        try:
            self._levels = [_open_zarr(self.path, page.aszarr())]
            self._levels += self._reduced_levels(page)
        except ImageReadError:
            raise
        except Exception as e:
            raise ImageReadError(
                f"{self.path}: not a readable TIFF ({type(e).__name__}: {e})"
            ) from None
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        self.shape: tuple[int, ...] = (height, width) if samples == 1 else (height, width, 3)

    def _reduced_levels(self, page: Any) -> list[Any]:
        """The reduced levels of the pyramid whose full level is ``page`` (SubIFDs or reduced
        pages, as tifffile's series finds them), each a zarr array of the page's layout."""
        series = self._tf.series[0] if self._tf.series else None
        if series is None or series.keyframe is not page or len(series.levels) < 2:
            return []
        if series.levels[0].shape != page.shape:
            return []
        return [_open_zarr(self.path, series.aszarr(level=i)) for i in range(1, len(series.levels))]

    # --- array-like -----------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def levels(self) -> list[tuple[int, int]]:
        return [self._hw(z) for z in self._levels]

    def _hw(self, z: Any) -> tuple[int, int]:
        return (int(z.shape[-2]), int(z.shape[-1])) if self._planar else tuple(z.shape[:2])

    def read(self, ys: slice, xs: slice, level: int = 0) -> np.ndarray:
        """The window ``[ys, xs]`` of pyramid ``level`` (pixels of that level)."""
        z = self._levels[level]
        try:
            arr = np.asarray(z[:, ys, xs] if self._planar else z[ys, xs])
        except Exception as e:
            raise ImageReadError(
                f"{self.path}: cannot decode the window rows {ys.start}-{ys.stop}, columns "
                f"{xs.start}-{xs.stop} ({type(e).__name__}: {e})"
            ) from None
        if self._planar:
            arr = np.moveaxis(arr, 0, -1)
        if arr.ndim == 3 and self._samples == 1:
            arr = arr[..., 0]
        elif arr.ndim == 3 and self._samples == 4:
            arr = arr[..., :3]
        return _native(arr)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        if not (
            isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)
        ):
            raise TypeError("a LazyImage is read by windows: image[y0:y1, x0:x1]")
        ys, xs = (slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape[:2], strict=True))
        if key[0].step not in (None, 1) or key[1].step not in (None, 1):
            raise TypeError("a LazyImage window has no step")
        return self.read(ys, xs)

    def rgb(self, percentiles: tuple[float, float] = (0.1, 99.9)) -> RGBWindows:
        """The detector's view: windows as ``(h, w, 3)`` uint8 (see the module)."""
        if self.dtype in (np.uint8, np.bool_):
            return RGBWindows(self, None)
        return RGBWindows(self, intensity_limits(self.limit_sample(), percentiles))

    def limit_sample(self) -> np.ndarray:
        """About :data:`~napari_al.core.images.LIMIT_SAMPLE_PIXELS` pixels of the whole image:
        the smallest pyramid level that has that many, else a strided sample of the full image
        read in bands of rows (memory: one band)."""
        for level in range(len(self._levels) - 1, 0, -1):
            h, w = self.levels[level]
            if h * w >= LIMIT_SAMPLE_PIXELS:
                return self.read(slice(0, h), slice(0, w), level)
        h, w = self.shape[:2]
        step = sample_step(h, w)
        band = step * max(1, 4096 // step)
        z = self._levels[0]
        parts = []
        for y0 in range(0, h, band):
            ys = slice(y0, min(h, y0 + band), step)
            parts.append(np.asarray(z[:, ys, ::step] if self._planar else z[ys, ::step]))
        return np.concatenate(parts, axis=-2 if self._planar else 0)

    def dask_levels(self) -> list[Any]:
        """The pyramid as dask arrays, full image first, each ``(H, W[, C])`` in the file's
        layout (samples last, alpha kept): a viewer's multiscale layer. Needs dask."""
        import dask.array as da

        out = []
        for z in self._levels:
            d = da.from_array(z, chunks=z.chunks)
            out.append(da.moveaxis(d, 0, -1) if self._planar else d)
        return out

    def display_levels(self, smallest_side: int = DISPLAY_SMALLEST_SIDE) -> list[Any]:
        """The levels of a viewer's multiscale layer: :meth:`dask_levels` (the stored pyramid,
        full image first), followed, while the last level's longer side is over
        ``smallest_side`` pixels, by levels sampled from the last stored one with steps 2, 4,
        8, ... (each of ``ceil(H / step) x ceil(W / step)`` px for a last stored level of
        ``H x W``; pixel ``(i, j)`` is its pixel ``(i * step, j * step)``: nearest neighbour, as
        ``data[::step, ::step]``).

        Nothing is read here: a level's window is read when it is computed, decoding only the
        tiles under it (a sampled window reads the stored level's tiles under its rows and
        columns, keeps every ``step``-th pixel and drops the rest, so memory is that of the
        window and of the tiles being decoded). Without a stored pyramid, a view of the whole
        image at the coarsest level therefore decodes every tile of the image once; a stored
        pyramid (tifffile ``subifds``) avoids that. Needs dask. Shapes and layout as
        :meth:`dask_levels`."""
        import dask.array as da

        levels = self.dask_levels()
        base, planar = self._levels[-1], self._planar
        h, w = self.levels[-1]
        step = 2
        while max(-(-h // (step // 2)), -(-w // (step // 2))) > smallest_side:
            sampled = SampledLevel(base, step, planar)
            rows, cols = _hw_chunks(base, planar)
            chunks = (min(rows, sampled.shape[0]), min(cols, sampled.shape[1]), *sampled.shape[2:])
            meta = np.empty((0,) * sampled.ndim, sampled.dtype)
            levels.append(da.from_array(sampled, chunks=chunks, meta=meta, name=False))
            step *= 2
        return levels

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self._tf.close()

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hw_chunks(z: Any, planar: bool) -> tuple[int, int]:
    """A zarr level's chunk size, rows x columns (pixels)."""
    c = tuple(int(v) for v in z.chunks)
    return (c[1], c[2]) if planar else (c[0], c[1])


class SampledLevel:
    """A coarser level sampled from a stored one (a zarr array of a :class:`LazyImage`): every
    ``step``-th row and column, starting at 0 (nearest neighbour). ``shape`` is
    ``(ceil(H / step), ceil(W / step)[, S])``, samples last whatever the file's layout;
    ``level[rows, cols(, samples)]`` (slices of this level, step 1) reads that window, decoding
    only the stored tiles under its sampled rows and columns. An array-like for
    ``dask.array.from_array``."""

    def __init__(self, z: Any, step: int, planar: bool) -> None:
        self.z, self.step, self.planar = z, int(step), planar
        shape = tuple(int(v) for v in z.shape)
        if planar:  # (S, H, W) -> samples last
            shape = (*shape[1:], shape[0])
        h, w = shape[:2]
        self.shape: tuple[int, ...] = (-(-h // self.step), -(-w // self.step), *shape[2:])
        self.dtype = np.dtype(z.dtype)
        self.ndim = len(self.shape)

    def _source(self, key: slice, n: int) -> tuple[slice, int]:
        """The stored rows (or columns) under the window ``key`` of this level's ``n``, and the
        window's length."""
        start, stop, step = key.indices(n)
        if step != 1:
            raise IndexError("a sampled level is read by windows without a step")
        length = max(0, stop - start)
        return slice(start * self.step, (start + length - 1) * self.step + 1, self.step), length

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            raise IndexError(f"a sampled level is read by {self.ndim} slices, not {key}")
        (ys, h), (xs, w) = self._source(key[0], self.shape[0]), self._source(key[1], self.shape[1])
        if h == 0 or w == 0:
            return np.zeros((h, w, *self.shape[2:]), self.dtype)[(slice(None),) * 2 + key[2:]]
        if self.planar:
            arr = np.moveaxis(np.asarray(self.z[:, ys, xs]), 0, -1)
        else:
            arr = np.asarray(self.z[ys, xs])
        return arr[(slice(None), slice(None), *key[2:])]


class RGBWindows:
    """Windows of a :class:`LazyImage` as the detector's ``(h, w, 3)`` uint8 RGB:
    ``view[y0:y1, x0:x1]``; ``shape`` ``(H, W, 3)``. uint8 data is used as is (greyscale
    repeated), bool becomes 0/255, anything else is scaled by the image's ``limits``
    (:func:`~napari_al.core.images.scale_to_uint8`)."""

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, image: LazyImage, limits: tuple[float, float] | None) -> None:
        self.image = image
        self.limits = limits
        self.shape = (*image.shape[:2], 3)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        a = self.image[key]
        if a.dtype == np.bool_:
            a = a.astype(np.uint8) * np.uint8(255)
        elif a.dtype != np.uint8:
            a = scale_to_uint8(a, self.limits)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        return np.ascontiguousarray(a)


@contextmanager
def open_rgb(path: str | Path) -> Iterator[np.ndarray | RGBWindows]:
    """An image as the detector's ``(H, W, 3)`` uint8 RGB, for reading by windows: a
    :class:`RGBWindows` view of a :class:`LazyImage` when :func:`reads_lazily`, else the whole
    image (:func:`~napari_al.core.images.read_image` and
    :func:`~napari_al.core.images.to_rgb_uint8`, as every other reader). The file is closed on
    leaving. Raises :class:`~napari_al.core.images.ImageReadError` (a ValueError)."""
    if reads_lazily(path):
        with open_lazy(path) as image:
            yield image.rgb()
    else:
        yield to_rgb_uint8(read_image(path))


class WindowReader:
    """Windows of one image file as the detector's ``(h, w, 3)`` uint8 RGB, for training crops
    of a large image (:mod:`napari_al.core.workflow.crops`).

    :meth:`read` takes a window in image pixels; the part of it outside the image is black
    (as a tile of :func:`napari_al.core.engine.tiling.predict_tiled` is padded). A file that
    :func:`reads_lazily` is opened for each read and only the strips or tiles under the window
    are decoded; the intensity limits of non-8-bit data are estimated on the first read
    (:meth:`LazyImage.rgb`) and kept, so every window of the image is scaled alike. Any other
    image (at most :data:`LAZY_PIXELS`, or not a tiled TIFF) is read whole for each read and
    cut. Raises :class:`~napari_al.core.images.ImageReadError` (a ValueError) or OSError.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lazy: bool | None = None
        self._limits: tuple[tuple[float, float] | None] | None = None

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The window ``[y0, y1) x [x0, x1)`` (pixels; ends exclusive), ``(y1 - y0, x1 - x0,
        3)`` uint8, black where it lies outside the image."""
        if self._lazy is None:
            self._lazy = reads_lazily(self.path)
        if self._lazy:
            with open_lazy(self.path) as image:
                if self._limits is None:
                    view = image.rgb()
                    self._limits = (view.limits,)
                else:
                    view = RGBWindows(image, self._limits[0])
                return padded_window(view, x0, y0, x1, y1)
        return padded_window(to_rgb_uint8(read_image(self.path)), x0, y0, x1, y1)


def padded_window(view: Any, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``view[y0:y1, x0:x1]`` of an ``(H, W, 3)`` uint8 view (an array or
    :class:`RGBWindows`), ``(y1 - y0, x1 - x0, 3)`` uint8, black where the window lies outside
    the image; only the part inside is read (one window of a lazy view)."""
    h, w = int(view.shape[0]), int(view.shape[1])
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y1), min(w, x1)
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = view[ys:ye, xs:xe]
    return out


def open_display(path: str | Path) -> np.ndarray | LazyImage:
    """An image for a viewer, as stored (not converted to uint8 RGB): an open
    :class:`LazyImage` when :func:`reads_lazily` (its :meth:`~LazyImage.display_levels` are a
    multiscale layer's data; nothing is read yet, and the caller closes it when the image is
    no longer shown), else the whole image (:func:`~napari_al.core.images.read_image`). Raises
    :class:`~napari_al.core.images.ImageReadError` (a ValueError)."""
    if reads_lazily(path):
        return open_lazy(path)
    return read_image(path)
