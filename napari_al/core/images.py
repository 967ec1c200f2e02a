"""Reading images from disk for display and for the detector.

:func:`read_image` keeps the data as stored (16-bit and float microscopy data stay as they are,
for napari to display with its own contrast limits); :func:`to_rgb_uint8` turns any of it into
the ``(H, W, 3)`` uint8 the detector expects. :func:`image_size` reads only the header;
:func:`check_pixels` checks cheaply that the pixel data decodes (an import runs it on every
image, so a truncated file is left out there rather than failing a training run later).

Every problem with a file (missing, empty, truncated, not an image, too large) raises
:class:`ImageReadError` whose message starts with the path, never a raw Pillow/tifffile trace.

Sizes: :func:`read_image` reads an image whole, up to :data:`MAX_SIDE` px per side. A tiled (or
finely stripped) TIFF may be larger, up to :data:`MAX_LAZY_SIDE`: :func:`image_size` and
:func:`check_pixels` accept it, and :mod:`napari_al.core.lazy_images` reads it window by window
(prediction tiles it; docs/large-images.md). Whether a TIFF can be read that way is
:func:`tiff_chunk_pixels` (each strip or tile is decoded whole, so it must be small).

EXIF orientation is applied everywhere (pixels by :func:`read_image`, sizes by
:func:`image_size`): a JPEG stored as 60x40 px with EXIF Orientation 6 is a 40x60 image, as
browsers, phones, Pillow's ``ImageOps.exif_transpose`` and the annotation tools that write
VOC/COCO/YOLO labels show it, so labels from other tools land where they were drawn. A PNG's
orientation is read from an ``eXIf`` chunk before the pixel data (where the PNG specification
puts it). The TIFF ``Orientation`` tag is not applied (GDAL, tifffile and Fiji ignore it too).

An OME-Zarr directory (``name.zarr``, ``name.ome.zarr``: NGFF 0.4 or 0.5) is one image
everywhere a file is (:func:`find_images`, :func:`image_size`, :func:`check_pixels`,
:func:`read_image`, :func:`file_sha256`), read by :mod:`napari_al.core.ome_zarr` with the same
size rules (chunks play the part of a TIFF's tiles).

Compressed TIFFs (LZW, Deflate, JPEG, Zstd ... as GDAL and orthophoto tools write them) are
decoded by tifffile with the ``imagecodecs`` package; :func:`image_size` decodes their first
strip or tile, so a TIFF that cannot be decoded is refused when it enters a project.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_al.core.png_data import png_data_shortfall

#: File extensions read as images (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Extensions of image files that are not read (web, camera and microscopy vendors' formats):
#: :func:`find_images` can list them, so that an import names them instead of leaving them
#: out silently.
UNREAD_IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".webp", ".gif", ".heic", ".heif", ".avif", ".jp2", ".czi", ".nd2", ".lif", ".lsm",
    ".oib", ".oif", ".ims", ".vsi", ".svs", ".ndpi", ".scn", ".mrxs", ".dcm",
)  # fmt: skip

_TIFF_EXTENSIONS = (".tif", ".tiff")

#: Images with a side longer than this are never read whole (a detector cannot use them whole,
#: and a forged header must not make us allocate gigabytes): such an image is refused unless it
#: is a TIFF stored in small strips or tiles, read window by window
#: (:mod:`napari_al.core.lazy_images`).
MAX_SIDE = 20_000
#: Largest side, pixels, of a TIFF read window by window (whole-slide scans reach ~150,000 px).
MAX_LAZY_SIDE = 500_000
#: Largest strip or tile, pixels (height x width), of a TIFF read window by window: each one is
#: decoded whole, so a larger one would be read in one piece (64 MB as 16-bit RGB at this size).
MAX_CHUNK_PIXELS = 4096 * 4096 // 2

#: How to make an image readable window by window (the advice of a too-large image's error).
TILED_TIFF_ADVICE = (
    "save it as a tiled TIFF (e.g. tifffile.imwrite(path, data, tile=(512, 512), "
    "compression='zlib')) to have it read tile by tile"
)


class ImageReadError(ValueError):
    """An image file cannot be read; the message starts with the file's path."""


class ImageReadWarning(UserWarning):
    """An image was read with a caveat (e.g. only the first page of a multi-page TIFF)."""


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_zarr_path(path: str | Path) -> bool:
    """Whether ``path``'s name ends in ``.zarr`` (any case): a path read by
    :mod:`napari_al.core.ome_zarr`, whatever it holds."""
    return Path(path).name.lower().endswith(".zarr")


def find_images(
    folder: str | Path, unread: list[Path] | None = None, hidden: list[Path] | None = None
) -> list[Path]:
    """The images under ``folder``, recursively: files with one of :data:`IMAGE_EXTENSIONS`
    and ``*.zarr`` directories (OME-Zarr images, :mod:`napari_al.core.ome_zarr`; one that holds
    none is listed too, so that reading it names the file and what is missing, as for a broken
    PNG), as ``folder / relative path``, sorted by path components; hidden files and folders
    are skipped, and no ``*.zarr`` directory is entered (its chunk files are not images, and
    there may be millions of them). ``unread``, when given, receives the files of an image type
    that is not read (:data:`UNREAD_IMAGE_EXTENSIONS`), from the same walk; ``hidden`` the
    images skipped as hidden: image files and ``*.zarr`` folders whose name starts with '.',
    and those directly inside a hidden folder (not deeper: a ``.git`` is not walked)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        kept = []
        for d in dirnames:
            if d.startswith("."):
                if hidden is not None:
                    hidden += _hidden_folder_images(Path(dirpath) / d)
                continue
            if is_zarr_path(Path(d)):
                found.append(Path(dirpath) / d)
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in filenames:
            if name.startswith("."):
                if hidden is not None and is_image_file(name):
                    hidden.append(Path(dirpath) / name)
                continue
            if is_image_file(name):
                found.append(Path(dirpath) / name)
            elif unread is not None and Path(name).suffix.lower() in UNREAD_IMAGE_EXTENSIONS:
                unread.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.parts)


def _hidden_folder_images(path: Path) -> list[Path]:
    """A hidden folder as :func:`find_images` skips it: itself when it is an OME-Zarr image,
    else the images directly inside it (not deeper)."""
    if is_zarr_path(path):
        return [path]
    try:
        with os.scandir(path) as entries:
            return [
                Path(e.path)
                for e in entries
                if (is_zarr_path(e.name) if e.is_dir() else is_image_file(e.name))
            ]
    except OSError:
        return []


def _check_file(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ImageReadError(
            f"{path}: unsupported file type '{path.suffix}' (supported: "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    try:
        if not path.exists():
            raise ImageReadError(f"{path}: file not found")
        if not path.is_file():
            raise ImageReadError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
    except (OSError, ValueError) as e:  # a name the OS refuses (too long, NUL byte ...)
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError(f"{path}: cannot open ({e})") from None


def _check_side(path: Path, width: int, height: int, *, chunk_pixels: int | None = None) -> None:
    """Refuse an invalid size, or a side over :data:`MAX_SIDE` unless ``chunk_pixels`` (a TIFF's
    strip or tile size, :func:`tiff_chunk_pixels`) lets it be read window by window, up to
    :data:`MAX_LAZY_SIDE`."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: invalid image size {width}x{height}")
    side = max(width, height)
    if side <= MAX_SIDE:
        return
    if chunk_pixels is not None and chunk_pixels <= MAX_CHUNK_PIXELS:
        if side <= MAX_LAZY_SIDE:
            return
        raise ImageReadError(
            f"{path}: image is {width}x{height} px, larger than the {MAX_LAZY_SIDE} px per side "
            "this tool reads; crop or downscale it first"
        )
    if chunk_pixels is not None:  # a TIFF already in strips or tiles, too large ones
        raise ImageReadError(large_chunks_message(path, width, height, chunk_pixels))
    raise ImageReadError(
        f"{path}: image is {width}x{height} px, larger than the {MAX_SIDE} px per side this "
        f"tool reads whole; {TILED_TIFF_ADVICE}"
    )


def large_chunks_message(path: Path, width: int, height: int, chunk_pixels: int) -> str:
    """Why a ``width x height`` px TIFF whose strips or tiles hold ``chunk_pixels`` (over
    :data:`MAX_CHUNK_PIXELS`) cannot be read window by window, and the fix (smaller tiles:
    already tiled or not)."""
    return (
        f"{path}: image is {width}x{height} px in strips or tiles of {chunk_pixels:,} px each, "
        f"more than the "
        f"{MAX_CHUNK_PIXELS:,} this tool decodes one at a time; save it with smaller tiles "
        "(e.g. tifffile.imwrite(path, data, tile=(512, 512), compression='zlib'))"
    )


def tiff_chunk_pixels(page: Any) -> int:
    """Pixels (height x width) of one strip or tile of a ``tifffile.TiffPage``: what reading
    any window of it decodes at least."""
    chunks = tuple(int(c) for c in page.chunks)
    return chunks[0] * chunks[1] if len(chunks) >= 2 else int(page.imagewidth)


def _open_pil(path: Path):
    """Open an image lazily with Pillow, turning every Pillow failure into ImageReadError."""
    from PIL import Image, UnidentifiedImageError

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_SIDE * MAX_SIDE:
        # Pillow's own guard (179 Mpx, about 13,400 px square) would refuse images this tool
        # reads whole by its documented limit, MAX_SIDE a side, which :func:`check_size`
        # enforces from the header before any pixel is decoded
        Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image has too many pixels to read safely ({e})") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a recognised image file (corrupt or wrong type)"
        ) from None
    except Exception as e:
        raise ImageReadError(
            f"{path}: cannot read image header ({type(e).__name__}: {e})"
        ) from None


#: EXIF orientations that swap width and height (rotations by 90 degrees, transpositions).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def _exif_orientation(im: Any) -> int:
    """The EXIF Orientation (1-8) of an opened, not yet decoded PIL image; 1 when absent or invalid.

    Never decodes pixels: a PNG's ``eXIf`` chunk counts only when it precedes the pixel data.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a corrupt EXIF block: the picture itself is still readable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The upright view of stored pixels ``arr`` ``(H, W[, C])`` with EXIF ``orientation``
    (same result as Pillow's ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, without decoding the pixels.

    The size is that of the upright view: EXIF orientations 5-8 swap width and height. For a
    compressed TIFF the first strip or tile is decoded too (LZW, Deflate, JPEG... need the
    ``imagecodecs`` package, a dependency), so an undecodable TIFF is refused here. Sides over
    :data:`MAX_SIDE` are refused, except in a TIFF of small strips or tiles (up to
    :data:`MAX_LAZY_SIDE`; see the module).
    """
    path = Path(path)
    if is_zarr_path(path):
        from napari_al.core.ome_zarr import ome_zarr_size

        return ome_zarr_size(path)
    _check_file(path)
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                page = tf.pages.first
                width, height = int(page.imagewidth), int(page.imagelength)
                _check_side(path, width, height, chunk_pixels=tiff_chunk_pixels(page))
                check_tiff_samples(path, page)
                _check_tiff_decodable(path, tf, page)
        except ImageReadError:
            raise
        except IndexError:  # tifffile found no page: the first IFD is missing or out of range
            raise ImageReadError(
                f"{path}: not a readable TIFF (no image in it; truncated?)"
            ) from None
        except Exception as e:
            raise ImageReadError(f"{path}: not a readable TIFF ({type(e).__name__}: {e})") from None
    else:
        with _open_pil(path) as im:
            width, height = im.size
            if _exif_orientation(im) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
        _check_side(path, width, height)
    return int(width), int(height)


def check_tiff_samples(path: str | Path, page: Any) -> int:
    """Samples per pixel of a TIFF page (tifffile's ``TiffPage``): 1 for axes ``YX``, else its
    ``S`` axis. Raises :class:`ImageReadError` for a sample count other than 1, 3 (RGB) or 4
    (RGBA): every reader refuses those, so an import refuses them too."""
    axes = str(page.axes)
    if "S" not in axes:
        return 1
    samples = int(page.shape[axes.index("S")])
    if samples not in (1, 3, 4):
        raise ImageReadError(
            f"{path}: unsupported image layout {page.shape} ({samples} samples a pixel; "
            "expected greyscale, RGB or RGBA): save it with 1, 3 or 4 channels"
        )
    return samples


def _check_tiff_decodable(path: Path, tf: Any, page: Any) -> None:
    """Decode the first strip or tile of a TIFF page, so that a compression this installation
    cannot decode (or corrupt compressed data) is refused when the image's size is read, i.e.
    when it enters a project, not when training reads its pixels. Costs one strip/tile."""
    if page.compression == 1 or not page.dataoffsets or not page.databytecounts[0]:
        return  # uncompressed, or no data: reading the pixels reports any problem
    try:
        fh = tf.filehandle
        fh.seek(page.dataoffsets[0])
        data = fh.read(page.databytecounts[0])
        page.decode(data, 0, jpegtables=page.jpegtables)
    except Exception as e:
        name = getattr(page.compression, "name", page.compression)
        raise ImageReadError(
            f"{path}: cannot decode the TIFF's {name} compression ({type(e).__name__}: {e})"
        ) from None


def check_pixels(path: str | Path) -> None:
    """Raise :class:`ImageReadError` when an image's pixel data cannot be decoded (a truncated
    download, a corrupt file), cheaply enough to run on every image of an import.

    What is read: a JPEG is decoded at 1/8 scale (Pillow's ``draft``: every entropy-coded
    byte is read, the inverse DCT is skipped for most coefficients); a PNG's chunks are
    read to the end and their CRCs checked (Pillow's ``verify``), then its pixel data is
    inflated, not unfiltered, to check it holds what the header promises
    (:func:`~napari_al.core.png_data.png_data_shortfall`); a TIFF's
    first page must have every strip or tile inside the file, and its first one must decode
    (:func:`image_size`); any other type (BMP) is decoded whole. Also the checks of
    :func:`image_size` (missing, empty, not an image, too large)."""
    path = Path(path)
    if is_zarr_path(path):  # metadata, size limits, the first chunk of two levels
        from napari_al.core.ome_zarr import check_ome_zarr_pixels

        check_ome_zarr_pixels(path)
        return
    image_size(path)  # header, size limits; a TIFF's first strip
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        check_tiff_extent(path)
        return
    with _open_pil(path) as im:
        try:
            if im.format == "PNG":
                im.verify()  # chunk CRCs; then the inflated length against the header
                short = png_data_shortfall(path)
                if short:
                    raise ValueError(short)
                return
            if im.format == "JPEG":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        except Exception as e:
            raise ImageReadError(
                f"{path}: image data is truncated or corrupt ({type(e).__name__}: {e})"
            ) from None


def check_tiff_extent(path: Path) -> None:
    """Refuse a TIFF whose first page's strips or tiles reach past the end of the file (its
    offsets are read, not its pixels: about a millisecond); any other file passes."""
    import tifffile

    if path.suffix.lower() not in _TIFF_EXTENSIONS:
        return
    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable TIFF ({type(e).__name__}: {e})") from None
    if ends and max(ends) > size:
        raise ImageReadError(
            f"{path}: image data is truncated (the TIFF's pixel data ends at byte {max(ends)}, "
            f"the file has {size} bytes)"
        )


def _native(arr: np.ndarray) -> np.ndarray:
    """A writable, C-contiguous copy of ``arr`` in native byte order."""
    dtype = arr.dtype.newbyteorder("=")
    return np.array(arr, dtype=dtype, order="C", copy=True)


def _normalise_channels(path: Path, arr: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W); RGBA -> RGB; refuse other layouts."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3):
        return np.ascontiguousarray(arr)
    raise ImageReadError(
        f"{path}: unsupported image layout {arr.shape} (expected greyscale (H, W), RGB (H, W, 3) "
        "or RGBA (H, W, 4))"
    )


def _read_pil(path: Path) -> np.ndarray:
    with _open_pil(path) as im:
        _check_side(path, *im.size)
        orientation = _exif_orientation(im)
        try:
            im.load()
            mode = im.mode
            if mode in ("1", "LA"):
                im = im.convert("L")
            elif mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode not in ("L", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
                im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, PA, RGBX, RGBa ...
            arr = np.array(im)
        except ImageReadError:
            raise
        except Exception as e:
            raise ImageReadError(
                f"{path}: image data is truncated or corrupt ({type(e).__name__}: {e})"
            ) from None
    return _normalise_channels(path, _native(_apply_orientation(arr, orientation)))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            _check_whole_read(path, page)
            n_pages = len(tf.pages)
            axes = page.axes
            arr = page.asarray()
    except ImageReadError:
        raise
    except IndexError:
        raise ImageReadError(f"{path}: not a readable TIFF (no image in it; truncated?)") from None
    except Exception as e:
        check_tiff_extent(path)  # a cut file says so
        raise ImageReadError(f"{path}: not a readable TIFF ({type(e).__name__}: {e})") from None
    if n_pages > 1:
        warnings.warn(
            f"{path}: multi-page TIFF ({n_pages} pages); only the first page is used",
            ImageReadWarning,
            stacklevel=3,
        )
    # planar-separate RGB comes as (S, Y, X); put samples last
    if arr.ndim == 3 and axes.startswith("S"):
        arr = np.moveaxis(arr, 0, -1)
    # drop leading singleton axes some writers add
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    return _normalise_channels(path, _native(arr))


def _check_whole_read(path: Path, page: Any) -> None:
    """Refuse to read a TIFF page whole when it has a side over :data:`MAX_SIDE`."""
    width, height = int(page.imagewidth), int(page.imagelength)
    _check_side(path, width, height, chunk_pixels=tiff_chunk_pixels(page))
    if max(width, height) > MAX_SIDE:  # readable window by window, not whole
        raise ImageReadError(
            f"{path}: image is {width}x{height} px, larger than the {MAX_SIDE} px per side "
            "read whole: prediction and the viewer read it tile by tile (docs/large-images.md); "
            "training, evaluation and click mode on it are not supported yet"
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as stored: ``(H, W)`` greyscale or ``(H, W, 3)`` RGB, any dtype.

    The pixels are those of the upright view (EXIF orientation applied, see the module).
    16-bit and float data keep their dtype (use :func:`to_rgb_uint8` for the detector); alpha is
    dropped; palette and bilevel images become uint8. A multi-page TIFF gives its first page
    with an :class:`ImageReadWarning`. Raises :class:`ImageReadError` for any unreadable file,
    and for an image with a side over :data:`MAX_SIDE` (a tiled TIFF that large is read window
    by window instead: :mod:`napari_al.core.lazy_images`).
    """
    path = Path(path)
    if is_zarr_path(path):
        from napari_al.core.ome_zarr import read_ome_zarr

        return read_ome_zarr(path)
    _check_file(path)
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        return _read_tiff(path)
    return _read_pil(path)


def to_rgb_uint8(arr: np.ndarray, percentiles: tuple[float, float] = (0.1, 99.9)) -> np.ndarray:
    """Any image array -> ``(H, W, 3)`` uint8 for the detector.

    uint8 data is used as is. Other dtypes (16-bit, int32, float) are rescaled linearly so
    that the ``percentiles`` of the finite values (jointly over channels, to keep colours)
    map to 0 and 255; ``(0, 100)`` is plain min-max. NaN/inf become 0, a constant image becomes
    black. Greyscale is repeated to 3 channels and alpha is dropped.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (1, 2):  # grey or grey + alpha
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"expected an (H, W) or (H, W, 1-4) image, got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype != np.uint8:
        a = _rescale_to_uint8(a, percentiles)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


#: Intensity limits are estimated on about this many pixels (a strided sample).
LIMIT_SAMPLE_PIXELS = 1e6


def sample_step(height: int, width: int) -> int:
    """Stride of the ~:data:`LIMIT_SAMPLE_PIXELS` sample the intensity limits come from."""
    return max(1, int(np.sqrt(height * width / LIMIT_SAMPLE_PIXELS)))


def intensity_limits(
    sample: np.ndarray, percentiles: tuple[float, float] = (0.1, 99.9)
) -> tuple[float, float] | None:
    """The ``percentiles`` of the finite values of ``sample`` (any shape), the intensities that
    :func:`to_rgb_uint8` maps to 0 and 255; ``None`` when there is no finite value or the
    limits are equal (the image becomes black)."""
    values = np.asarray(sample, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, percentiles)
    return (lo, hi) if hi > lo else None


def _rescale_to_uint8(a: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    # estimate the limits on at most ~1M pixels: exact enough and fast on huge images
    step = sample_step(a.shape[0], a.shape[1])
    return scale_to_uint8(a, intensity_limits(a[::step, ::step], percentiles))


def scale_to_uint8(a: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """``a`` (any shape, any real dtype) mapped linearly from ``limits`` (lo, hi) to 0-255 uint8,
    clipped, NaN to 0; ``None`` limits give zeros (:func:`intensity_limits`)."""
    if limits is None:
        return np.zeros(a.shape, np.uint8)
    lo, hi = limits
    out = a.astype(np.float32)
    out -= np.float32(lo)
    out *= np.float32(255.0 / (hi - lo))
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0.0, 255.0, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint8)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (constant memory for any file size); of an
    OME-Zarr directory, :func:`napari_al.core.ome_zarr.ome_zarr_sha256` (its metadata and
    coarsest level)."""
    if os.path.isdir(path):
        from napari_al.core.ome_zarr import ome_zarr_sha256

        return ome_zarr_sha256(path, chunk_size)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()
