"""Image reading: dtypes and layouts kept for display, conversion for the detector, bad files."""

from __future__ import annotations

import hashlib
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_al.core.images import (
    IMAGE_EXTENSIONS,
    MAX_SIDE,
    ImageReadError,
    ImageReadWarning,
    check_pixels,
    file_sha256,
    image_size,
    is_image_file,
    read_image,
    to_rgb_uint8,
)

RNG = np.random.default_rng(0)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` with a tiny (bogus) IDAT."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
    path.write_bytes(body + chunk(b"IEND", b""))
    return path


# ---- reading what is stored --------------------------------------------------------------------


def test_extensions() -> None:
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    assert is_image_file("a/B.JPG") and not is_image_file("a/b.gif")


def test_rgb_png_and_jpeg_and_bmp(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    for ext in (".png", ".bmp"):
        Image.fromarray(arr).save(tmp_path / f"a{ext}")
        out = read_image(tmp_path / f"a{ext}")
        np.testing.assert_array_equal(out, arr)
        assert image_size(tmp_path / f"a{ext}") == (5, 7)
    Image.fromarray(arr).save(tmp_path / "a.jpeg", quality=95)
    out = read_image(tmp_path / "a.jpeg")
    assert out.shape == (7, 5, 3) and out.dtype == np.uint8
    assert out.flags.writeable and out.flags.c_contiguous


def test_grayscale_png(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (6, 9), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 9) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_16bit_png_keeps_dtype(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, (8, 4), dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and out.shape == (8, 4)
    np.testing.assert_array_equal(out, arr)
    assert image_size(tmp_path / "g16.png") == (4, 8)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(out, arr[..., :3])


def test_palette_and_bilevel_png(tmp_path: Path) -> None:
    Image.new("P", (3, 2), 5).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (2, 3, 3)
    Image.new("1", (3, 2), 1).save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3) and (out == 255).all()


def test_one_pixel_image(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    out = read_image(tmp_path / "one.png")
    assert out.shape == (1, 1, 3) and out.tolist() == [[[1, 2, 3]]]
    assert image_size(tmp_path / "one.png") == (1, 1)
    assert to_rgb_uint8(out).shape == (1, 1, 3)


def test_16bit_and_float_tiff(tmp_path: Path) -> None:
    a16 = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a16)
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, a16)
    assert image_size(tmp_path / "a.tif") == (6, 5)

    af = RNG.normal(size=(5, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", af)
    out = read_image(tmp_path / "f.tiff")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, af)

    big_endian = a16.astype(">u2")
    tifffile.imwrite(tmp_path / "be.tif", big_endian, byteorder=">")
    out = read_image(tmp_path / "be.tif")
    assert out.dtype == np.dtype("uint16") and out.dtype.isnative
    np.testing.assert_array_equal(out, a16)


def test_rgb_tiff_contig_and_planar(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif"), rgb)
    tifffile.imwrite(
        tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
    )
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), rgb)
    assert image_size(tmp_path / "p.tif") == (7, 5)


def test_multipage_tiff_reads_first_page_with_warning(tmp_path: Path) -> None:
    stack = RNG.integers(0, 4096, (3, 4, 5), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.warns(ImageReadWarning, match=r"stack\.tif: multi-page TIFF \(3 pages\)"):
        out = read_image(tmp_path / "stack.tif")
    np.testing.assert_array_equal(out, stack[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(tmp_path / "stack.tif") == (5, 4)


def test_unsupported_channel_count(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "two.tif",
        np.zeros((4, 4, 2), np.uint8),
        photometric="minisblack",
        planarconfig="contig",
    )
    with pytest.raises(ImageReadError, match=r"two\.tif: unsupported image layout"):
        read_image(tmp_path / "two.tif")


# ---- refusing bad files -----------------------------------------------------------------------


def _zero_byte(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _text_as_png(p: Path) -> Path:
    p.write_text("this is not an image\n")
    return p


def _truncated_header_jpeg(p: Path) -> Path:
    Image.new("RGB", (32, 32), (9, 9, 9)).save(p)
    p.write_bytes(p.read_bytes()[:20])
    return p


def _text_as_tif(p: Path) -> Path:
    p.write_text("II* not really")
    return p


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("empty.png", _zero_byte, "empty file (0 bytes)"),
        ("empty.tif", _zero_byte, "empty file (0 bytes)"),
        ("text.png", _text_as_png, "not a recognised image file"),
        ("cut.jpg", _truncated_header_jpeg, "not a recognised image file"),
        ("text.tif", _text_as_tif, "not a readable TIFF"),
        ("x.gif", _text_as_png, "unsupported file type '.gif'"),
    ],
)
def test_bad_files_raise_image_read_error(tmp_path: Path, name: str, make, problem: str) -> None:
    path = make(tmp_path / name)
    for func in (read_image, image_size):
        with pytest.raises(ImageReadError) as info:
            func(path)
        msg = str(info.value)
        assert msg.startswith(str(path)) and problem in msg, msg


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match="not a file"):
        image_size(tmp_path / "dir.png")


def test_truncated_jpeg_data(tmp_path: Path) -> None:
    """A JPEG cut inside its pixel data: the header still reads, decoding is refused."""
    p = tmp_path / "t.jpg"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p, quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert image_size(p) == (64, 64)
    with pytest.raises(ImageReadError) as info:
        read_image(p)
    assert str(info.value).startswith(f"{p}: image data is truncated or corrupt")


def test_truncated_png_data(tmp_path: Path) -> None:
    p = tmp_path / "t.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"t\.png: image data is truncated or corrupt"):
        read_image(p)


def test_too_large_side_refused(tmp_path: Path) -> None:
    p = png_header_only(tmp_path / "wide.png", MAX_SIDE + 1, 1)
    for func in (image_size, read_image):
        with pytest.raises(ImageReadError, match=rf"wide\.png: image is {MAX_SIDE + 1}x1 px"):
            func(p)
    tifffile.imwrite(tmp_path / "tall.tif", np.zeros((MAX_SIDE + 1, 1), np.uint8))
    with pytest.raises(ImageReadError, match=r"tall\.tif: image is 1x20001 px"):
        read_image(tmp_path / "tall.tif")


def test_a_forged_header_within_the_side_limit_is_caught_by_the_pixel_check(tmp_path: Path) -> None:
    """19,000 px square is within the documented limit (its size is read, though Pillow's own
    guard stops at 179 Mpx); the 8 bytes of pixel data behind the header are not, and the
    import's pixel check says so without allocating the image."""
    import tracemalloc

    p = png_header_only(tmp_path / "bomb.png", 19_000, 19_000)
    assert image_size(p) == (19_000, 19_000)
    tracemalloc.start()
    with pytest.raises(
        ImageReadError, match=r"bomb\.png: image data is truncated or corrupt.*ends after 8 of"
    ):
        check_pixels(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6


def _png(width: int, height: int, depth: int, colour: int, interlace: int, data_len: int) -> bytes:
    """A PNG whose IDAT inflates to ``data_len`` zero bytes (every filter byte 'None')."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    plte = chunk(b"PLTE", b"\0\0\0" * 256) if colour == 3 else b""
    idat = chunk(b"IDAT", zlib.compress(b"\0" * data_len))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("width", "height", "depth", "colour", "interlace"),
    [(13, 7, 8, 2, 0), (13, 7, 8, 2, 1), (5, 3, 1, 0, 1), (9, 11, 16, 6, 1), (3, 1, 4, 3, 0),
     (1, 1, 8, 4, 1), (10, 2, 16, 0, 0), (7, 9, 2, 3, 1)],
)  # fmt: skip
def test_the_expected_pixel_data_length_is_what_pillow_needs(
    tmp_path: Path, width: int, height: int, depth: int, colour: int, interlace: int
) -> None:
    """Pillow, the oracle: it decodes a PNG holding exactly the computed number of bytes, and
    refuses one a byte short; check_pixels agrees both ways (interlaced Adam7 included)."""
    from PIL import Image

    from napari_al.core.png_data import expected_png_bytes

    need = expected_png_bytes(width, height, depth, colour, bool(interlace))
    for n, whole in ((need, True), (need - 1, False)):
        p = tmp_path / f"{n}.png"
        p.write_bytes(_png(width, height, depth, colour, interlace, n))
        try:
            with Image.open(p) as im:
                im.load()
            pillow_ok = True
        except OSError:
            pillow_ok = False
        assert pillow_ok is whole
        if whole:
            check_pixels(p)
        else:
            with pytest.raises(ImageReadError, match=f"ends after {n:,} of {need:,} bytes"):
                check_pixels(p)


# ---- conversion for the detector --------------------------------------------------------------


def test_to_rgb_uint8_passthrough_and_channels() -> None:
    rgb = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgb), rgb)
    gray = rgb[..., 0]
    out = to_rgb_uint8(gray)
    assert out.shape == (3, 4, 3) and (out == gray[..., None]).all()
    rgba = np.concatenate([rgb, np.zeros((3, 4, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(gray[..., None]), out)
    assert to_rgb_uint8(np.array([[True, False]])).tolist() == [[[255] * 3, [0] * 3]]
    with pytest.raises(ValueError):
        to_rgb_uint8(np.zeros((2, 2, 5)))


def test_to_rgb_uint8_rescales_16bit_and_float() -> None:
    a = np.linspace(1000, 5000, 1001).astype(np.uint16).reshape(1, -1)
    out = to_rgb_uint8(a, percentiles=(0, 100))
    assert out.dtype == np.uint8 and out.shape == (1, 1001, 3)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()
    # percentiles ignore a few hot pixels
    b = np.full((100, 100), 100.0, np.float32)
    b[:50] = 200.0
    b[0, 0] = 1e9
    out = to_rgb_uint8(b)
    assert out[99, 99, 0] == 0 and out[49, 50, 0] == 255


def test_to_rgb_uint8_nan_and_constant() -> None:
    f = np.array([[np.nan, 0.0], [0.5, 1.0]], np.float32)
    out = to_rgb_uint8(f, percentiles=(0, 100))
    assert out[..., 0].tolist() == [[0, 0], [128, 255]]
    assert (to_rgb_uint8(np.full((3, 3), 7, np.uint16)) == 0).all()
    assert (to_rgb_uint8(np.full((2, 2), np.nan)) == 0).all()


def test_read_then_convert_16bit_tiff(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    tifffile.imwrite(tmp_path / "a.tif", a)
    out = to_rgb_uint8(read_image(tmp_path / "a.tif"), percentiles=(0, 100))
    assert out.shape == (3, 4, 3) and out.min() == 0 and out.max() == 255


def test_file_sha256_streams(tmp_path: Path) -> None:
    data = RNG.bytes(10_000)
    (tmp_path / "f.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "f.bin") == want
    assert file_sha256(tmp_path / "f.bin", chunk_size=7) == want


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_applied_like_pillow(tmp_path: Path, ext: str) -> None:
    """Pixels and size are those of the upright view, exactly as ``ImageOps.exif_transpose``."""
    from PIL import ImageOps

    arr = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}{ext}"
        Image.fromarray(arr).save(path, exif=exif, **({"quality": 95} if ext == ".jpg" else {}))
        with Image.open(path) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        out = read_image(path)
        np.testing.assert_array_equal(out, expected)
        assert image_size(path) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("compression", ["zlib", "lzw", "zstd", "jpeg"])
def test_compressed_tiff_reads(tmp_path: Path, compression: str) -> None:
    """LZW/Deflate (GDAL's and orthophotos' usual output) and others decode: imagecodecs is a
    dependency."""
    arr = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    if compression != "jpeg":
        arr = arr.astype(np.uint16) * 200
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, arr, compression=compression)
    assert image_size(path) == (64, 48)
    out = read_image(path)
    assert out.shape == (48, 64) and out.dtype == arr.dtype
    if compression != "jpeg":
        np.testing.assert_array_equal(out, arr)


def test_undecodable_tiff_is_refused_when_its_header_is_read(tmp_path: Path, monkeypatch) -> None:
    """A TIFF whose compression cannot be decoded here is an ImageReadError at import (where
    the size is read), not a crash at training."""
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, np.ones((48, 64), np.uint16), compression="lzw")

    def no_codec(self):
        def decode(*_a, **_k):
            raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

        return decode

    monkeypatch.setattr(tifffile.TiffPage, "decode", property(no_codec))
    with pytest.raises(ImageReadError, match=r"lzw\.tif: cannot decode .*LZW.*imagecodecs"):
        image_size(path)


def test_engine_loader_sees_the_upright_pixels_the_viewer_shows(tmp_path: Path) -> None:
    """Training, inference, evaluation and the simulator load images through the engine's
    default loader: an EXIF-rotated JPEG (and a 16-bit TIFF) give the same array as
    ``read_image`` + ``to_rgb_uint8`` (issue 16 item 1)."""
    from napari_al.core.engine import load_image

    arr = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        Image.fromarray(arr).save(path, exif=exif, quality=95)
        out = load_image(path)
        np.testing.assert_array_equal(out, read_image(path))
        assert out.dtype == np.uint8 and out.shape[:2] == ((10, 6) if orientation > 4 else (6, 10))
    tif = tmp_path / "d.tif"
    tifffile.imwrite(tif, (RNG.integers(0, 4096, (6, 10))).astype(np.uint16))
    np.testing.assert_array_equal(load_image(tif), to_rgb_uint8(read_image(tif)))


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((64, 64, 2), {"photometric": "minisblack", "planarconfig": "contig"}),
        ((2, 64, 64), {"photometric": "minisblack", "planarconfig": "separate"}),
        ((64, 64, 5), {"photometric": "minisblack", "planarconfig": "contig"}),
        (
            (640, 640, 2),
            {"photometric": "minisblack", "planarconfig": "contig", "tile": (128, 128)},
        ),
    ],
)
def test_a_tiff_of_unreadable_channels_is_refused_at_import(
    tmp_path: Path, shape: tuple[int, ...], kwargs: dict
) -> None:
    """Every reader refuses 2 or 5 samples a pixel, so the header check (import, ``info``)
    refuses them too, naming the file and the fix, instead of importing an image no command can
    read."""
    import tifffile

    from napari_al.core.images import check_pixels, image_size, read_image

    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), **kwargs)
    for check in (image_size, check_pixels, read_image):
        with pytest.raises(ImageReadError, match=r"two\.tif: .*(samples a pixel|layout)"):
            check(path)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    assert image_size(rgb) == (64, 64)
