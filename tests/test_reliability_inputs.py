"""Bad input corpus and file safety: every bad input gets a clear error, nothing stored changes.

The corpus (over 100 cases, all generated here; no binaries are checked in) covers broken and
unusual images (zero-byte, non-image, truncated, corrupt, 1x1, 16-bit, float, greyscale, RGBA,
palette, multi-page, forged headers claiming more than 20,000 px a side) and malformed VOC,
COCO and YOLO annotations. Each case goes through the real import path,
:func:`napari_al.core.project.import_into`, into a project that already holds human work:

- ``strict=True``: the import is refused with a message naming the file and the problem, or a
  documented repair is applied and reported (``Dataset.warnings``);
- ``strict=False``: the bad file/record is skipped with that message as a warning and the rest of
  the dataset is imported;
- either way NOTHING already stored changes (every row of every table is compared), and the
  dataset folder is not written to.

``expect`` of a case:

- ``error``: refused when strict; skipped (with a warning) when not, the good files imported;
- ``fatal``: a structural problem (the file list itself is unusable): refused in both modes;
- ``repair``: imported in both modes with the documented repair reported;
- ``ok``: a valid but unusual image: imported, and it reads as (H, W, 3) uint8 for the model;
- ``left-out``: the header is fine, the pixel data is cut or corrupt. The import's cheap pixel
  check (:func:`~napari_al.core.images.check_pixels`) finds it: the import goes on without it
  and names it in ``summary["left_out"]`` with the problem; opening it raises
  :class:`~napari_al.core.images.ImageReadError` naming the file and the problem;
- ``deferred``: the pixel data decodes, but not into a usable image (a deflate stream
  shorter than its header claims: the import's check does not inflate a PNG), so the image is
  imported; opening it (napari, training, scoring) raises
  :class:`~napari_al.core.images.ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import tagged_image
from PIL import Image

from napari_al import cli
from napari_al.core.formats import FormatError
from napari_al.core.images import ImageReadError, read_image, to_rgb_uint8
from napari_al.core.project import export_dataset, import_into
from napari_al.core.store import STORE_FILENAME, ProjectStore, StoreError

REPO = Path(__file__).resolve().parent.parent
SAMPLE_JPG = REPO / "sample_data" / "bccd_sample" / "JPEGImages" / "BloodImage_00007.jpg"
W, H = 64, 48
USER_ERRORS = (FormatError, ImageReadError, StoreError)

# ---- image makers: each writes one file and returns its path ---------------------------------


def _encode(fmt: str, arr: np.ndarray | None = None, mode: str | None = None, **kw) -> bytes:
    if arr is None:
        arr = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_header(w: int, h: int) -> bytes:
    """A PNG that only CLAIMS w x h (a few bytes of pixel data): refused from the header."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 8)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def tiff_header(w: int, h: int) -> bytes:
    """A TIFF with one IFD claiming w x h 8-bit grey and no pixel data."""
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    tags += [(273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, w * h % 2**32)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def jpeg_header(w: int, h: int) -> bytes:
    """A JPEG start-of-frame claiming w x h, no scan data."""
    sof = (
        b"\xff\xc0"
        + struct.pack(">HBHHB", 17, 8, h, w, 3)
        + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    return b"\xff\xd8" + sof + b"\xff\xd9"


def bmp_header(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(info), 0, 0, 54) + info


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _valid_png() -> bytes:
    return _encode("PNG")


def _bccd_cut() -> bytes:
    data = SAMPLE_JPG.read_bytes()
    return data[: len(data) * 6 // 10]


def _png_cut() -> bytes:
    data = _encode("PNG")
    return data[: len(data) // 2]


def _bad_crc_png() -> bytes:
    data = bytearray(_valid_png())
    data[29:33] = b"\0\0\0\0"  # the IHDR checksum
    return bytes(data)


def _tiff_data_cut() -> bytes:
    data = _tiff(np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8))
    return data[: len(data) // 3]  # tifffile writes the IFD first: the header survives


#: name -> (file extension, bytes or None for "make something else", expect, problem words)
IMAGE_KINDS: dict[str, tuple[str, Callable[[], bytes], str, tuple[str, ...]]] = {
    # non-images and empty files with image extensions
    "zero-png": (".png", lambda: b"", "error", ("empty file (0 bytes)",)),
    "zero-jpg": (".jpg", lambda: b"", "error", ("empty file (0 bytes)",)),
    "zero-tif": (".tif", lambda: b"", "error", ("empty file (0 bytes)",)),
    "zero-bmp": (".bmp", lambda: b"", "error", ("empty file (0 bytes)",)),
    "text-png": (".png", lambda: b"just some notes\n", "error", ("not a recognised image",)),
    "text-jpeg": (".jpeg", lambda: b"just some notes\n", "error", ("not a recognised image",)),
    "text-tif": (".tif", lambda: b"just some notes\n", "error", ("not a readable TIFF",)),
    "text-bmp": (".bmp", lambda: b"BM but not really", "error", ("not a recognised image",)),
    "html-jpg": (".jpg", lambda: b"<html>404 Not Found</html>", "error", ("not a recognised",)),
    "gzip-png": (".png", lambda: zlib.compress(b"x" * 100), "error", ("not a recognised image",)),
    "pdf-png": (".png", lambda: b"%PDF-1.4\n%\xe2\xe3\n1 0 obj", "error", ("not a recognised",)),
    "png-named-tif": (".tif", _valid_png, "error", ("not a readable TIFF",)),
    # truncated or corrupt headers
    "trunc-header-jpg": (".jpg", lambda: _encode("JPEG")[:20], "error", ("not a recognised",)),
    "trunc-header-jpg-300": (".jpg", lambda: _encode("JPEG")[:300], "error", ("image header",)),
    "trunc-header-png": (".png", lambda: _valid_png()[:16], "error", ("cannot read image",)),
    "trunc-header-tif": (
        ".tif",
        lambda: _tiff(np.zeros((4, 4), np.uint8))[:8],
        "error",
        ("no image in it",),
    ),
    "trunc-header-bmp": (".bmp", lambda: _encode("BMP")[:40], "error", ("cannot read image",)),
    "bad-crc-png": (".png", _bad_crc_png, "error", ("not a recognised image",)),
    "garbage-png": (".png", lambda: b"\x89PNG\r\n\x1a\n" + b"\x13" * 64, "error", ("recognised",)),
    "bad-ifd-tif": (
        ".tif",
        lambda: b"II*\0" + struct.pack("<I", 10**6),
        "error",
        ("no image in it",),
    ),
    "big-endian-junk-tif": (".tif", lambda: b"MM\0*" + b"\xff" * 40, "error", ("TIFF",)),
    # forged headers claiming a huge image: refused from the header, nothing decoded
    "huge-png": (".png", lambda: png_header(30_000, 10), "error", ("30000x10 px", "20000 px")),
    "huge-png-tall": (".png", lambda: png_header(5, 20_001), "error", ("5x20001 px",)),
    "huge-tif": (".tif", lambda: tiff_header(25_000, 25_000), "error", ("25000x25000 px",)),
    "huge-jpg": (".jpg", lambda: jpeg_header(30_000, 100), "error", ("30000x100 px",)),
    "huge-bmp": (".bmp", lambda: bmp_header(40_000, 2), "error", ("40000x2 px",)),
    # within the side limit, but its pixel data inflates to 8 of the 1 GB its header promises
    "short-data-png": (
        ".png",
        lambda: png_header(19_000, 19_000),
        "left-out",
        ("truncated or corrupt",),
    ),
    "zero-size-tif": (".tif", lambda: tiff_header(0, 10), "error", ("invalid image size 0x10",)),
    # headers fine, pixel data cut: found by the import's pixel check, left out
    "trunc-data-jpg": (".jpg", _bccd_cut, "left-out", ("truncated or corrupt",)),
    "trunc-data-png": (".png", _png_cut, "left-out", ("truncated or corrupt",)),
    "trunc-data-tif": (".tif", _tiff_data_cut, "left-out", ("image data is truncated",)),
    # a channel layout no reader takes: refused by the header check (it was imported, then
    # unreadable everywhere while `info` called it readable)
    "two-channel-tif": (
        ".tif",
        lambda: _tiff(
            np.zeros((H, W, 2), np.uint8), photometric="minisblack", planarconfig="contig"
        ),
        "error",
        ("unsupported image layout", "2 samples a pixel"),
    ),
    "five-channel-tif": (
        ".tif",
        lambda: _tiff(
            np.zeros((H, W, 5), np.uint16), photometric="minisblack", planarconfig="contig"
        ),
        "error",
        ("unsupported image layout", "5 samples a pixel"),
    ),
    # pixel data decodes but is not a usable image: found when the image is opened
    "limit-side-png": (
        ".png",
        lambda: png_header(20_000, 1),
        "deferred",
        ("truncated or corrupt",),
    ),
    # valid but unusual
    "one-px-png": (".png", lambda: _encode("PNG", np.zeros((1, 1, 3), np.uint8)), "ok", ()),
    "one-px-jpg": (".jpg", lambda: _encode("JPEG", np.zeros((1, 1, 3), np.uint8)), "ok", ()),
    "one-px-tif": (".tif", lambda: _tiff(np.zeros((1, 1), np.uint8)), "ok", ()),
    "one-px-bmp": (".bmp", lambda: _encode("BMP", np.zeros((1, 1, 3), np.uint8)), "ok", ()),
    "gray-png": (".png", lambda: _encode("PNG", mode="L"), "ok", ()),
    "gray-jpg": (".jpg", lambda: _encode("JPEG", mode="L"), "ok", ()),
    "gray-tif": (".tif", lambda: _tiff(np.arange(H * W, dtype=np.uint8).reshape(H, W)), "ok", ()),
    "rgba-png": (".png", lambda: _encode("PNG", mode="RGBA"), "ok", ()),
    "rgba-tif": (".tif", lambda: _tiff(np.zeros((H, W, 4), np.uint8), photometric="rgb"), "ok", ()),
    "la-png": (".png", lambda: _encode("PNG", mode="LA"), "ok", ()),
    "palette-png": (".png", lambda: _encode("PNG", mode="P"), "ok", ()),
    "bilevel-png": (".png", lambda: _encode("PNG", mode="1"), "ok", ()),
    "cmyk-jpg": (".jpg", lambda: _encode("JPEG", mode="CMYK"), "ok", ()),
    "u16-png": (
        ".png",
        lambda: _encode("PNG", np.arange(H * W, dtype=np.uint16).reshape(H, W) * 20),
        "ok",
        (),
    ),
    "u16-tif": (".tif", lambda: _tiff(np.full((H, W), 4000, np.uint16)), "ok", ()),
    "u16-rgb-tif": (".tif", lambda: _tiff(np.full((H, W, 3), 900, np.uint16)), "ok", ()),
    "i32-tif": (".tif", lambda: _tiff(np.arange(H * W, dtype=np.int32).reshape(H, W)), "ok", ()),
    "f32-tif": (
        ".tif",
        lambda: _tiff(np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)),
        "ok",
        (),
    ),
    "f64-tif": (".tif", lambda: _tiff(np.full((H, W), -3.5, np.float64)), "ok", ()),
    "f32-nan-tif": (
        ".tif",
        lambda: _tiff(np.where(np.eye(H, W) > 0, np.nan, 1.0).astype(np.float32)),
        "ok",
        (),
    ),
    "multipage-tif": (
        ".tif",
        lambda: _tiff(np.zeros((3, H, W), np.uint8), photometric="minisblack"),
        "ok",
        (),
    ),
    "planar-rgb-tif": (
        ".tif",
        lambda: _tiff(np.zeros((3, H, W), np.uint8), photometric="rgb", planarconfig="separate"),
        "ok",
        (),
    ),
    "jpg-named-png": (".png", lambda: _encode("JPEG"), "ok", ()),
    "upper-ext-JPG": (".JPG", lambda: _encode("JPEG"), "ok", ()),
}


def write_image(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(IMAGE_KINDS[kind][1]())
    return path


def good_png(path: Path, w: int = W, h: int = H) -> Path:
    """A valid PNG whose content depends on its path (an import leaves out a copy)."""
    return tagged_image(path, (w, h))


# ---- dataset builders ----------------------------------------------------------------------


def voc_obj(name: str | None = "cell", box=(11, 21, 30, 40), drop: str = "") -> str:
    name_xml = "" if name is None else f"<name>{name}</name>"
    fields = "".join(
        f"<{k}>{v}</{k}>"
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        if k != drop
    )
    bnd = "" if drop == "bndbox" else f"<bndbox>{fields}</bndbox>"
    return f"<object>{name_xml}{bnd}</object>"


def voc_xml(*objects: str, filename: str = "a.png", size=(W, H)) -> str:
    size_xml = (
        "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    )
    return f"<annotation><filename>{filename}</filename>{size_xml}{''.join(objects)}</annotation>"


OK_OBJ = voc_obj()


def voc(
    xml: str | bytes | None,
    image: str | None = None,
    files: dict | None = None,
    ann=True,
    no_image: bool = False,
):
    """A VOC folder with a good annotated image (good.png) plus a.xml/a.png as given.

    ``image``: an IMAGE_KINDS key for a.png's content (default: a good PNG, extension kept).
    """

    def build(root: Path) -> Path:
        good_png(root / "JPEGImages" / "good.png")
        if ann:
            (root / "Annotations").mkdir(parents=True)
            (root / "Annotations" / "good.xml").write_text(voc_xml(OK_OBJ, filename="good.png"))
        name = "a.png"
        if image is not None:
            name = "a" + IMAGE_KINDS[image][0]
            write_image(root / "JPEGImages" / name, image)
        elif not no_image:
            good_png(root / "JPEGImages" / name)
        if xml is not None:
            text = xml if isinstance(xml, bytes) else xml.replace("a.png", name).encode()
            (root / "Annotations" / "a.xml").write_bytes(text)
        for rel, content in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            data = content if isinstance(content, bytes) else content.encode()
            (root / rel).write_bytes(data)
        return root

    return build


def coco_base() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "good.png", "width": W, "height": H},
            {"id": 2, "file_name": "a.png", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 19, 20]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }


def coco(mutate: Callable[[dict], object] | None = None, raw: bytes | None = None, image=None):
    """A COCO JSON with good.png (id 1) and a.png (id 2, or an IMAGE_KINDS file) + mutation."""

    def build(root: Path) -> Path:
        good_png(root / "good.png")
        data = coco_base()
        if image is not None:
            name = "a" + IMAGE_KINDS[image][0]
            write_image(root / name, image)
            data["images"][1]["file_name"] = name
        else:
            good_png(root / "a.png")
        if mutate is not None:
            mutate(data)
        path = root / "ann.json"
        path.write_bytes(raw if raw is not None else json.dumps(data).encode())
        return path

    return build


def setv(*path_and_value) -> Callable[[dict], None]:
    *path, value = path_and_value

    def mutate(d) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return mutate


def delv(*path) -> Callable[[dict], None]:
    def mutate(d) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return mutate


def add_ann(**ann) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        d["annotations"].append({"id": 9, "image_id": 2, "category_id": 1, **ann})

    return mutate


def yolo(label: str | bytes = "0 0.5 0.5 0.25 0.25\n", image=None, classes="cell\n", files=None):
    """A YOLO folder: images/good.png (labelled) and images/a.* with labels/a.txt = ``label``."""

    def build(root: Path) -> Path:
        good_png(root / "images" / "good.png")
        (root / "labels").mkdir(parents=True)
        (root / "labels" / "good.txt").write_text("0 0.5 0.5 0.5 0.5\n")
        if image is not None:
            write_image(root / "images" / ("a" + IMAGE_KINDS[image][0]), image)
        else:
            good_png(root / "images" / "a.png")
        if label is not None:
            data = label if isinstance(label, bytes) else label.encode()
            (root / "labels" / "a.txt").write_bytes(data)
        if classes is not None:
            (root / "classes.txt").write_text(classes)
        for rel, content in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
        return root

    return build


def images_dir(kind: str):
    """A plain image folder: a.png (good) and sub/bad<ext> of the given kind."""

    def build(root: Path) -> Path:
        good_png(root / "a.png")
        write_image(root / "sub" / ("bad" + IMAGE_KINDS[kind][0]), kind)
        return root

    return build


# ---- the corpus ------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    fmt: str
    build: Callable[[Path], Path]
    expect: str  # error | fatal | repair | ok | left-out | deferred
    parts: tuple[str, ...]  # words the message must contain (the file first)
    good: tuple[str, ...] = ()  # files (relative to the dataset root) always imported
    bad: str | None = None  # file that must NOT be imported when skipped
    boxes: dict[str, list[tuple[float, ...]]] | None = None  # expected stored boxes per file
    target: str | None = None  # the unusual image to open (expect ok / left-out / deferred)


CASES: list[Case] = []


def case(id_: str, fmt: str, build, expect: str, *parts: str, **kw) -> None:
    CASES.append(Case(id_, fmt, build, expect, parts, **kw))


# images: every kind in a plain folder, the bad file skipped with strict=False
for kind, (ext, _make, expect, words) in IMAGE_KINDS.items():
    name = f"sub/bad{ext}"
    bad = name if expect in ("error", "left-out") else None
    target = None if expect == "error" else name
    case(
        f"images/{kind}",
        "images",
        images_dir(kind),
        expect,
        name,
        *words,
        good=("a.png",),
        bad=bad,
        target=target,
    )

# the same kinds inside annotated datasets (the image an annotation file points at)
for kind in ("zero-png", "text-jpeg", "trunc-header-jpg", "huge-png", "huge-tif"):
    ext, _m, _e, words = IMAGE_KINDS[kind]
    a = f"JPEGImages/a{ext}"
    case(
        f"voc/image-{kind}",
        "voc",
        voc(voc_xml(OK_OBJ), image=kind),
        "error",
        "Annotations/a.xml",
        a,
        *words,
        good=("JPEGImages/good.png",),
        bad=a,
    )
    case(
        f"coco/image-{kind}",
        "coco",
        coco(image=kind),
        "error",
        "ann.json: images[1]",
        f"a{ext}",
        *words,
        good=("good.png",),
        bad=f"a{ext}",
    )
    case(
        f"yolo/image-{kind}",
        "yolo",
        yolo(image=kind),
        "error",
        f"images/a{ext}",
        *words,
        good=("images/good.png",),
        bad=f"images/a{ext}",
    )
case(
    "voc/unannotated-bad-image",
    "voc",
    voc(None, image="text-png"),
    "error",
    "JPEGImages/a.png",
    "not a recognised image",
    good=("JPEGImages/good.png",),
    bad="JPEGImages/a.png",
)
case(
    "voc/one-px-image-1px-box",
    "voc",
    voc(voc_xml(voc_obj(box=(1, 1, 1, 1)), size=(1, 1)), image="one-px-png"),
    "ok",
    boxes={"JPEGImages/a.png": [(0, 0, 1, 1)]},
    target="JPEGImages/a.png",
)
case(
    "voc/u16-image",
    "voc",
    voc(voc_xml(OK_OBJ), image="u16-png"),
    "ok",
    boxes={"JPEGImages/a.png": [(10, 20, 30, 40)]},
    target="JPEGImages/a.png",
)
case(
    "coco/one-px-image",
    "coco",
    coco(setv("images", 1, "width", 1), image="one-px-png"),
    "error",
    "ann.json: images[1]",
    "width x height is 1x48 but image 'a.png' is 1x1",
)
case(
    "coco/f32-image",
    "coco",
    coco(image="f32-tif"),
    "ok",
    boxes={"a.tif": [(5, 5, 15, 15)]},
    target="a.tif",
)
case(
    "yolo/rgba-image",
    "yolo",
    yolo(image="rgba-png"),
    "ok",
    boxes={"images/a.png": [(24, 18, 40, 30)]},
    target="images/a.png",
)
case(
    "yolo/multipage-image",
    "yolo",
    yolo(image="multipage-tif"),
    "ok",
    boxes={"images/a.tif": [(24, 18, 40, 30)]},
    target="images/a.tif",
)

# ---- VOC annotations
A = "Annotations/a.xml"
GV = ("JPEGImages/good.png",)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lololololol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">' for i in range(1, 10)
    )
    + "]><annotation><filename>&lol9;</filename></annotation>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<annotation><filename>&x;</filename></annotation>"
)
VOC_CASES = [
    ("malformed", voc("<annotation><object>"), "error", (A, "malformed XML")),
    ("empty-xml-file", voc(b""), "error", (A, "malformed XML")),
    (
        "not-utf8",
        voc(b"<annotation><filename>\xff\xfe</filename></annotation>"),
        "error",
        (A, "malformed XML"),
    ),
    ("root-element", voc("<notvoc/>"), "error", (A, "root element is <notvoc>")),
    ("billion-laughs", voc(LAUGHS), "error", (A, "malformed XML", "amplification")),
    ("external-entity", voc(XXE), "error", (A, "malformed XML", "undefined entity")),
    (
        "missing-name",
        voc(voc_xml(OK_OBJ, voc_obj(None))),
        "error",
        (A, "object 2: <name> is missing"),
    ),
    ("blank-name", voc(voc_xml(voc_obj("  "))), "error", (A, "object 1: <name> is empty")),
    ("missing-bndbox", voc(voc_xml(voc_obj(drop="bndbox"))), "error", (A, "<bndbox> is missing")),
    ("missing-xmin", voc(voc_xml(voc_obj(drop="xmin"))), "error", (A, "bndbox/xmin is missing")),
    (
        "missing-ymax",
        voc(voc_xml(OK_OBJ, voc_obj(drop="ymax"))),
        "error",
        (A, "object 2: bndbox/ymax is missing"),
    ),
    (
        "non-numeric",
        voc(voc_xml(voc_obj(box=("abc", 1, 5, 5)))),
        "error",
        (A, "bndbox/xmin is 'abc', not a number"),
    ),
    (
        "nan",
        voc(voc_xml(voc_obj(box=(1, "nan", 5, 5)))),
        "error",
        (A, "bndbox/ymin is 'nan', not a finite"),
    ),
    (
        "inf",
        voc(voc_xml(voc_obj(box=(1, 1, "inf", 5)))),
        "error",
        (A, "bndbox/xmax is 'inf', not a finite"),
    ),
    (
        "empty-coordinate",
        voc(voc_xml(voc_obj(box=(1, 1, "", 5)))),
        "error",
        (A, "bndbox/xmax is empty"),
    ),
    (
        "inverted-x",
        voc(voc_xml(voc_obj(box=(30, 5, 11, 9)))),
        "error",
        (A, "inverted (xmin 30 > xmax 11)"),
    ),
    (
        "inverted-y",
        voc(voc_xml(voc_obj(box=(3, 30, 11, 9)))),
        "error",
        (A, "inverted (ymin 30 > ymax 9)"),
    ),
    (
        "negative-outside",
        voc(voc_xml(voc_obj(box=(-20, -20, -5, -5)))),
        "error",
        (A, "entirely outside the 64x48"),
    ),
    (
        "right-outside",
        voc(voc_xml(voc_obj(box=(70, 10, 90, 20)))),
        "error",
        (A, "entirely outside the 64x48"),
    ),
    (
        "size-mismatch",
        voc(voc_xml(OK_OBJ, size=(100, 100))),
        "error",
        (A, "size is 100x100 but image"),
    ),
    (
        "size-zero",
        voc(voc_xml(OK_OBJ, size=(0, 48))),
        "error",
        (A, "size/width is 0, not a positive integer"),
    ),
    ("size-negative", voc(voc_xml(OK_OBJ, size=(64, -48))), "error", (A, "size/height is -48")),
    (
        "size-text",
        voc(voc_xml(OK_OBJ, size=("wide", 48))),
        "error",
        (A, "size/width is 'wide', not a number"),
    ),
    (
        "image-missing",
        voc(voc_xml(OK_OBJ, filename="nope.png"), no_image=True),
        "error",
        (A, "image not found (looked for", "JPEGImages/nope.png"),
    ),
    (
        "filename-traversal",
        voc(voc_xml(OK_OBJ, filename="../" * 40 + "etc/passwd"), no_image=True),
        "error",
        (A, "/etc/passwd: unsupported file type"),
    ),  # read-only, and refused: not an image
    (
        "filename-stale",
        voc(voc_xml(OK_OBJ, filename="../" * 40 + "etc/passwd")),
        "repair",
        (A, "<filename> says", "paired with JPEGImages/a.png by its file stem"),
    ),  # a.png pairs by stem (VOC devkit); the stale <filename> is never opened, only reported
    (
        "split-unknown-id",
        voc(voc_xml(OK_OBJ), files={"ImageSets/Main/train.txt": "a\nzzz\n"}),
        "error",
        ("ImageSets/Main/train.txt: line 2", "image id 'zzz' has no annotation or image"),
    ),
    (
        "split-twice",
        voc(
            voc_xml(OK_OBJ),
            files={"ImageSets/Main/train.txt": "a\n", "ImageSets/Main/val.txt": "a\n"},
        ),
        "error",
        ("ImageSets/Main/val.txt: line 1", "already in split 'train'"),
    ),
    (
        "no-annotations-folder",
        voc(None, ann=False),
        "fatal",
        ("not a VOC folder (no Annotations/ folder)",),
    ),
    (
        "split-file-not-utf8",
        voc(voc_xml(OK_OBJ), files={"ImageSets/Main/train.txt": b"\xff\xfe\x00"}),
        "fatal",
        ("ImageSets/Main/train.txt: cannot read",),
    ),
    (
        "classes-not-utf8",
        voc(voc_xml(OK_OBJ), files={"classes.txt": b"\xff\xfe\x00"}),
        "fatal",
        ("classes.txt: cannot read",),
    ),
    # repairs
    (
        "partly-left",
        voc(voc_xml(voc_obj(box=(-5, 1, 10, 10)))),
        "repair",
        (A, "clipped to the 64x48 image"),
    ),
    (
        "partly-right",
        voc(voc_xml(voc_obj(box=(50, 40, 80, 60)))),
        "repair",
        (A, "clipped to the 64x48 image"),
    ),
    (
        "size-missing",
        voc(voc_xml(OK_OBJ, size=None)),
        "repair",
        (A, "size/width or size/height missing"),
    ),
    (
        "unknown-class",
        voc(voc_xml(voc_obj("Zebra")), files={"classes.txt": "cell\n"}),
        "repair",
        ("classes.txt: class 'Zebra' is used but not listed; appended",),
    ),
    # valid edge cases
    (
        "degenerate-1px",
        voc(voc_xml(voc_obj(box=(5, 5, 5, 5)))),
        "ok",
        (),
    ),
    ("float-coordinates", voc(voc_xml(voc_obj(box=(10.5, 20.25, 30, 40)))), "ok", ()),
    ("new-class", voc(voc_xml(voc_obj("Platelets"))), "ok", ()),
    ("negative-image-empty", voc(voc_xml()), "ok", ()),
]
VOC_FILE_LEVEL = {  # problems that leave the whole file (and its image) out when skipped
    "malformed", "empty-xml-file", "not-utf8", "root-element", "billion-laughs", "external-entity",
    "size-mismatch", "size-zero", "size-negative", "size-text", "filename-traversal",
}  # fmt: skip
for id_, build, expect, parts in VOC_CASES:
    bad = "JPEGImages/a.png" if id_ in VOC_FILE_LEVEL else None
    boxes = {
        "partly-left": {"JPEGImages/a.png": [(0, 0, 10, 10)]},
        "partly-right": {"JPEGImages/a.png": [(49, 39, 64, 48)]},
        "degenerate-1px": {"JPEGImages/a.png": [(4, 4, 5, 5)]},
        "float-coordinates": {"JPEGImages/a.png": [(9.5, 19.25, 30, 40)]},
        "negative-image-empty": {"JPEGImages/a.png": []},
    }.get(id_)
    if (
        expect == "error"
        and bad is None
        and id_ not in ("image-missing", "split-unknown-id", "split-twice")
    ):
        boxes = {"JPEGImages/a.png": []}  # box-level: the object is dropped, the image stays
    if id_ in ("missing-name", "missing-ymax"):  # ... with its good object
        boxes = {"JPEGImages/a.png": [(10, 20, 30, 40)]}
    case(f"voc/{id_}", "voc", build, expect, *parts, good=GV, bad=bad, boxes=boxes)

# ---- COCO
J = "ann.json"
GC = ("good.png",)
COCO_CASES = [
    ("not-json", coco(raw=b"{images: ["), "fatal", (J, "not valid JSON")),
    ("empty-file", coco(raw=b""), "fatal", (J, "not valid JSON")),
    ("not-utf8", coco(raw=b'{"images": ["\xff"]}'), "fatal", (J, "not valid JSON")),
    ("top-level-list", coco(raw=b"[]"), "fatal", (J, "top level is a list")),
    ("images-missing", coco(delv("images")), "fatal", (J, "'images' is missing or not a list")),
    ("images-dict", coco(setv("images", {})), "fatal", (J, "'images' is missing or not a list")),
    (
        "annotations-dict",
        coco(setv("annotations", {})),
        "fatal",
        (J, "'annotations' is not a list"),
    ),
    ("categories-missing", coco(delv("categories")), "fatal", (J, "'categories' is missing")),
    (
        "categories-str",
        coco(setv("categories", "cell")),
        "fatal",
        (J, "'categories' is not a list"),
    ),
    # categories
    (
        "category-no-id",
        coco(lambda d: d["categories"].append({"name": "x"})),
        "error",
        (J, "categories[1]: key 'id' is missing"),
    ),
    (
        "category-no-name",
        coco(lambda d: d["categories"].append({"id": 2})),
        "error",
        (J, "categories[1]: key 'name' is missing"),
    ),
    (
        "category-name-int",
        coco(lambda d: d["categories"].append({"id": 2, "name": 5})),
        "error",
        (J, "categories[1]: name is 5, not a non-empty string"),
    ),
    (
        "category-duplicate-id",
        coco(lambda d: d["categories"].append({"id": 1, "name": "y"})),
        "error",
        (J, "categories[1]: duplicate category id 1"),
    ),
    (
        "category-duplicate-name",
        coco(lambda d: d["categories"].append({"id": 2, "name": "cell"})),
        "error",
        (J, "categories[1]: duplicate category name 'cell'"),
    ),
    (
        "category-float-id",
        coco(lambda d: d["categories"].append({"id": 1.5, "name": "y"})),
        "error",
        (J, "categories[1]: id is 1.5, not an integer or string id"),
    ),
    (
        "category-not-object",
        coco(lambda d: d["categories"].append(["x"])),
        "error",
        (J, "categories[1]: is a list, not an object"),
    ),
    # images
    ("image-no-id", coco(delv("images", 1, "id")), "error", (J, "images[1]: key 'id' is missing")),
    (
        "image-no-file-name",
        coco(delv("images", 1, "file_name")),
        "error",
        (J, "images[1]: key 'file_name'"),
    ),
    (
        "file-name-int",
        coco(setv("images", 1, "file_name", 7)),
        "error",
        (J, "images[1]: file_name is 7"),
    ),
    (
        "file-missing",
        coco(setv("images", 1, "file_name", "zzz.png")),
        "error",
        (J, "images[1]: image file 'zzz.png' not found"),
    ),
    (
        "file-name-traversal",
        coco(setv("images", 1, "file_name", "../../../../../../etc/passwd")),
        "error",
        (J, "images[1]", "unsupported file type"),
    ),
    (
        "file-name-folder",
        coco(setv("images", 1, "file_name", ".")),
        "error",
        (J, "images[1]", "not found"),
    ),
    (
        "duplicate-image-id",
        coco(setv("images", 1, "id", 1)),
        "error",
        (J, "duplicate image id 1 (2 images share it)"),
    ),
    ("image-id-bool", coco(setv("images", 1, "id", True)), "error", (J, "images[1]: id is True")),
    ("image-id-null", coco(setv("images", 1, "id", None)), "error", (J, "images[1]: id is None")),
    (
        "width-string",
        coco(setv("images", 1, "width", "64")),
        "error",
        (J, "images[1]: width is '64', not a number"),
    ),
    (
        "width-zero",
        coco(setv("images", 1, "width", 0)),
        "error",
        (J, "images[1]: width is 0, not a positive"),
    ),
    (
        "size-mismatch",
        coco(setv("images", 1, "height", 100)),
        "error",
        (J, "width x height is 64x100 but image"),
    ),
    (
        "split-unknown",
        coco(setv("images", 1, "split", "holdout")),
        "error",
        (J, "split is 'holdout'"),
    ),
    (
        "annotated-string",
        coco(setv("images", 1, "annotated", "yes")),
        "error",
        (J, "annotated is 'yes'"),
    ),
    (
        "image-not-object",
        coco(lambda d: d["images"].append("c.png")),
        "error",
        (J, "images[2]: is a str"),
    ),
    # annotations
    (
        "ann-no-bbox",
        coco(delv("annotations", 1, "bbox")),
        "error",
        (J, "annotations[1] (id 2): key 'bbox'"),
    ),
    (
        "ann-no-image-id",
        coco(delv("annotations", 1, "image_id")),
        "error",
        (J, "key 'image_id' is missing"),
    ),
    (
        "ann-no-category",
        coco(delv("annotations", 1, "category_id")),
        "error",
        (J, "key 'category_id' is missing"),
    ),
    (
        "ann-no-id",
        coco(delv("annotations", 1, "id")),
        "error",
        (J, "annotations[1]: key 'id' is missing"),
    ),
    (
        "bbox-3-values",
        coco(setv("annotations", 1, "bbox", [1, 2, 3])),
        "error",
        (J, "bbox has 3 values"),
    ),
    (
        "bbox-dict",
        coco(setv("annotations", 1, "bbox", {"x": 1})),
        "error",
        (J, "bbox has dict values"),
    ),
    (
        "bbox-strings",
        coco(setv("annotations", 1, "bbox", ["10", 2, 3, 4])),
        "error",
        (J, "bbox[0] is '10'"),
    ),
    (
        "bbox-bool",
        coco(setv("annotations", 1, "bbox", [1, 2, True, 4])),
        "error",
        (J, "bbox[2] is True"),
    ),
    (
        "bbox-nan",
        coco(raw=None, mutate=setv("annotations", 1, "bbox", [1, float("nan"), 3, 4])),
        "error",
        (J, "bbox[1] is nan, not a finite number"),
    ),
    (
        "bbox-negative-width",
        coco(setv("annotations", 1, "bbox", [10, 10, -5, 5])),
        "error",
        (J, "negative width or height"),
    ),
    (
        "bbox-outside",
        coco(setv("annotations", 1, "bbox", [100, 100, 5, 5])),
        "error",
        (J, "entirely outside the 64x48 image"),
    ),
    (
        "bbox-huge",
        coco(setv("annotations", 1, "bbox", [1e308, 0, 1e308, 5])),
        "error",
        (J, "entirely outside"),
    ),
    (
        "dangling-image-id",
        coco(setv("annotations", 1, "image_id", 99)),
        "error",
        (J, "image_id 99 matches no image"),
    ),
    (
        "dangling-category",
        coco(setv("annotations", 1, "category_id", 7)),
        "error",
        (J, "category_id 7 matches no category"),
    ),
    (
        "duplicate-ann-id",
        coco(setv("annotations", 1, "id", 1)),
        "error",
        (J, "duplicate annotation id 1"),
    ),
    (
        "ann-not-object",
        coco(lambda d: d["annotations"].append([1, 2])),
        "error",
        (J, "annotations[2]: is a list"),
    ),
    (
        "score-string",
        coco(add_ann(bbox=[1, 1, 5, 5], score="high")),
        "error",
        (J, "score is 'high'"),
    ),
    # repairs and valid edge cases
    (
        "bbox-zero-width",
        coco(add_ann(bbox=[5, 6, 0, 10])),
        "repair",
        (J, "zero width widened to 1 px"),
    ),
    (
        "bbox-partly-outside",
        coco(add_ann(bbox=[-3, 40, 10, 20])),
        "repair",
        (J, "clipped to the 64x48 image"),
    ),
    (
        "size-missing",
        coco(delv("images", 1, "width")),
        "repair",
        (J, "images[1]: width/height missing"),
    ),
    (
        "string-ids",
        coco(
            lambda d: [
                d["images"][1].update(id="img-2"),
                d["annotations"][1].update(image_id="img-2"),
            ]
        ),
        "ok",
        (),
    ),
    ("no-annotations-key", coco(delv("annotations")), "ok", ()),
]
COCO_IMAGE_LEVEL = {  # problems that leave image a.png out when skipped
    "image-no-id", "image-no-file-name", "file-name-int", "file-missing", "file-name-traversal",
    "file-name-folder", "duplicate-image-id", "image-id-bool", "image-id-null", "width-string",
    "width-zero", "size-mismatch", "split-unknown", "annotated-string",
}  # fmt: skip
for id_, build, expect, parts in COCO_CASES:
    bad = "a.png" if id_ in COCO_IMAGE_LEVEL else None
    good = () if id_ == "duplicate-image-id" else GC  # a shared id leaves both images out
    boxes = {
        "bbox-zero-width": {"a.png": [(5, 5, 15, 15), (5, 6, 6, 16)]},
        "bbox-partly-outside": {"a.png": [(5, 5, 15, 15), (0, 40, 7, 48)]},
        "string-ids": {"a.png": [(5, 5, 15, 15)]},
        "no-annotations-key": {"a.png": []},
    }.get(id_)
    if (
        expect == "error"
        and bad is None
        and id_.startswith(("ann", "bbox", "dangling", "duplicate-ann"))
    ):
        boxes = {"a.png": []}  # the bad annotation is dropped; its image stays
    case(f"coco/{id_}", "coco", build, expect, *parts, good=good, bad=bad, boxes=boxes)

# ---- YOLO
L = "labels/a.txt"
GY = ("images/good.png",)
YOLO_CASES = [
    (
        "class-out-of-range",
        yolo("5 0.5 0.5 0.1 0.1\n"),
        "error",
        (L, "line 1: class index 5 is out of range"),
    ),
    (
        "class-negative",
        yolo("0 0.5 0.5 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n"),
        "error",
        (L, "line 2: class index -1"),
    ),
    (
        "class-fraction",
        yolo("0.5 0.5 0.5 0.1 0.1\n"),
        "error",
        (L, "class index '0.5' is not an integer"),
    ),
    (
        "class-name",
        yolo("cell 0.5 0.5 0.1 0.1\n"),
        "error",
        (L, "class index is 'cell', not a number"),
    ),
    ("too-few-fields", yolo("0 0.5 0.5\n"), "error", (L, "has 3 fields, expected 5")),
    ("eight-fields", yolo("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4\n"), "error", (L, "has 8 fields")),
    ("non-numeric", yolo("0 0.5 abc 0.1 0.1\n"), "error", (L, "cy is 'abc', not a number")),
    ("nan", yolo("0 nan 0.5 0.1 0.1\n"), "error", (L, "cx is 'nan', not a finite number")),
    ("negative-size", yolo("0 0.5 0.5 -0.1 0.1\n"), "error", (L, "is negative")),
    ("entirely-outside", yolo("0 2.0 0.5 0.1 0.1\n"), "error", (L, "entirely outside the 64x48")),
    ("pixels-not-normalised", yolo("0 32 24 10 10\n"), "error", (L, "entirely outside the 64x48")),
    ("score-text", yolo("0 0.5 0.5 0.1 0.1 high\n"), "error", (L, "score is 'high', not a number")),
    ("label-not-utf8", yolo(b"0 0.5 0.5 0.1 0.1\xff\n"), "error", (L, "cannot read")),
    (
        "orphan-label",
        yolo(files={"labels/orphan.txt": "0 0.5 0.5 0.1 0.1\n"}),
        "error",
        ("labels/orphan.txt: no image found for this label file",),
    ),
    ("no-class-names", yolo(classes=None), "fatal", ("no class names found",)),
    (
        "yaml-invalid",
        yolo(files={"data.yaml": "names: [a, b\n"}),
        "fatal",
        ("data.yaml: not valid YAML",),
    ),
    (
        "yaml-names-str",
        yolo(files={"data.yaml": "names: cell\n"}),
        "fatal",
        ("data.yaml: names is a str",),
    ),
    (
        "yaml-nc-mismatch",
        yolo(files={"data.yaml": "nc: 3\nnames: [cell]\n"}),
        "fatal",
        ("data.yaml: nc is 3 but 1 name is given",),
    ),
    (
        "yaml-duplicate-names",
        yolo(files={"data.yaml": "names: [cell, cell]\n"}),
        "fatal",
        ("data.yaml: duplicate class names",),
    ),
    (
        "yaml-names-keys",
        yolo(files={"data.yaml": "names: {a: cell}\n"}),
        "fatal",
        ("data.yaml: names keys",),
    ),
    (
        "yaml-top-list",
        yolo(files={"data.yaml": "- cell\n"}),
        "fatal",
        ("data.yaml: top level is a list",),
    ),
    (
        "yaml-missing-val",
        yolo(files={"data.yaml": "train: images\nval: nowhere\nnames: [cell]\n"}),
        "error",
        ("data.yaml: val: 'nowhere' not found", "remove the entry"),
    ),
    (
        "list-missing-image",
        yolo(
            files={
                "data.yaml": "train: train.txt\nnames: [cell]\n",
                "train.txt": "images/good.png\nimages/a.png\nimages/gone.png\n",
            }
        ),
        "error",
        ("images/gone.png: image not found",),
    ),
    (
        "classes-duplicate",
        yolo(classes="cell\ncell\n"),
        "fatal",
        ("classes.txt: duplicate class names",),
    ),
    # repairs and valid edge cases
    (
        "partly-outside",
        yolo("0 0.9375 0.5 0.25 0.5\n"),
        "repair",
        (L, "clipped to the 64x48 image"),
    ),
    ("zero-width", yolo("0 0.5 0.5 0 0.25\n"), "repair", (L, "zero width widened to 1 px")),
    ("empty-label-file", yolo(""), "ok", ()),
    ("polygon", yolo("0 0.25 0.25 0.5 0.25 0.25 0.5\n"), "ok", ()),
]
for id_, build, expect, parts in YOLO_CASES:
    bad = "images/a.png" if id_ == "label-not-utf8" else None
    boxes = {
        "partly-outside": {"images/a.png": [(52, 12, 64, 36)]},
        "zero-width": {"images/a.png": [(32, 18, 33, 30)]},
        "empty-label-file": {"images/a.png": []},
        "polygon": {"images/a.png": [(16, 12, 32, 24)]},
    }.get(id_)
    if expect == "error" and bad is None and parts[0] == L:
        boxes = {"images/a.png": []}  # the bad line is dropped, the image kept (a negative)
        if id_ == "class-negative":
            boxes = {"images/a.png": [(28.8, 21.6, 35.2, 26.4)]}
    case(f"yolo/{id_}", "yolo", build, expect, *parts, good=GY, bad=bad, boxes=boxes)


# ---- the store before and after ---------------------------------------------------------------


def db_rows(project: Path) -> dict[str, dict[int, tuple]]:
    """Every row of every table, by rowid (read-only connection)."""
    conn = sqlite3.connect(f"file:{project / STORE_FILENAME}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        out = {t: {r[0]: r[1:] for r in conn.execute(f"SELECT rowid, * FROM {t}")} for t in tables}
        out["user_version"] = {0: conn.execute("PRAGMA user_version").fetchone()}
        return out
    finally:
        conn.close()


def changed_rows(before: dict, after: dict) -> list[str]:
    """Rows that existed before and are now different or gone (new rows are fine)."""
    problems = []
    for table, rows in before.items():
        for rowid, row in rows.items():
            if after.get(table, {}).get(rowid) != row:
                problems.append(f"{table} row {rowid}: {row} -> {after.get(table, {}).get(rowid)}")
    return problems


def tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).stat()
            out[str(Path(dirpath) / f)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with human work in it: classes, images, drawn/accepted boxes, review states."""
    base = tmp_path_factory.mktemp("base")
    project = base / "project"
    with ProjectStore.create(project) as store:
        good_png(base / "imgs" / "x.png")
        shutil.copyfile(SAMPLE_JPG.with_name("BloodImage_00011.jpg"), base / "imgs" / "y.jpg")
        src = base / "src"
        (src / "Annotations").mkdir(parents=True)
        (src / "JPEGImages").mkdir()
        shutil.copyfile(SAMPLE_JPG, src / "JPEGImages" / "s.jpg")
        (src / "Annotations" / "s.xml").write_text(
            voc_xml(voc_obj("RBC", (10, 10, 60, 60)), filename="s.jpg", size=(640, 480))
        )
        import_into(store, src, "voc")
        import_into(store, base / "imgs", "images")
        cell = store.add_class("cell")
        x = store.image_by_path(base / "imgs" / "x.png")
        box = store.draw_box(x.id, (1, 1, 20, 20), cell)
        store.replace_predictions(x.id, [((5, 5, 30, 30), cell, 0.8)], model_version=None)
        store.accept_box(store.boxes(image_id=x.id, statuses="predicted")[0].id)
        store.correct_box(box, xyxy=(2, 2, 22, 22))
        store.set_review_state(x.id, "complete")
    assert not (project / f"{STORE_FILENAME}-wal").exists()  # checkpointed on close
    return project


def fresh_project(template: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    shutil.copyfile(template / STORE_FILENAME, where / STORE_FILENAME)
    return where


def stored_boxes(store: ProjectStore, path: Path) -> list[tuple[float, ...]] | None:
    row = store.image_by_path(path)
    if row is None:
        return None
    return sorted(b.xyxy for b in store.boxes(image_id=row.id))


def run_case(c: Case, tmp: Path, template: Path, counts: dict[str, int]) -> list[str]:
    """Run one case in both modes; return the problems found (empty: the case passed)."""
    problems: list[str] = []
    data = tmp / "data"
    data.mkdir(parents=True)
    path = c.build(data)
    files_before = tree(data)
    counts["tried"] += 1
    for strict in (True, False):
        project = fresh_project(template, tmp / f"project-{strict}")
        before = db_rows(project)
        error: Exception | None = None
        dataset = None
        with ProjectStore.open(project) as store, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tifffile/pillow chatter
            try:
                dataset, summary = import_into(store, path, c.fmt, strict=strict)
            except USER_ERRORS as e:
                error = e
            except Exception as e:  # a crash, not a message for the person
                problems.append(f"strict={strict}: raised {type(e).__name__}: {e}")
                continue
            after_boxes = {
                rel: stored_boxes(store, data / rel) for rel in (*c.good, *(c.boxes or {}))
            }
            bad_row = None if c.bad is None else store.image_by_path(data / c.bad)
            assert store.integrity_check() == "ok"
        after = db_rows(project)
        changed = changed_rows(before, after)
        if changed:
            counts["data_changed"] += 1
            problems.append(f"strict={strict}: stored data changed: {changed[:3]}")
        where = f"strict={strict}"
        must_raise = c.expect == "fatal" or (c.expect == "error" and strict)
        if must_raise:
            if error is None:
                problems.append(
                    f"{where}: no error (warnings: {dataset.warnings if dataset else None})"
                )
                continue
            counts["errors"] += 1
            msg = str(error)
            missing = [p for p in c.parts if p not in msg]
            if missing:
                problems.append(f"{where}: message {msg!r} lacks {missing}")
            if after != before:
                problems.append(f"{where}: a refused import wrote to the store")
            continue
        if error is not None:
            problems.append(f"{where}: unexpected {type(error).__name__}: {error}")
            continue
        text = "\n".join(dataset.warnings)
        if c.expect == "error":
            hit = [w for w in dataset.warnings if all(p in w for p in c.parts) and "skipped)" in w]
            if not hit:
                problems.append(f"{where}: no skip warning with {c.parts}: {dataset.warnings}")
            # an image refused for its own fault (named in the skip warning) was read, not
            # overlooked: no "left out ... does not include" line besides
            bad_name = c.bad.rsplit("/", 1)[-1] if c.bad else None
            at_fault = bad_name and any(c.bad in w for w in hit)
            stray = [w for w in dataset.warnings if at_fault and "does not include" in w]
            stray = [w for w in stray if f"(e.g. {bad_name})" in w]
            if stray:
                problems.append(f"{where}: the skipped image is also called left out: {stray}")
            counts["skipped"] += 1
        elif c.expect == "left-out":
            hit = [
                i
                for i in summary["left_out"]
                if i["path"].endswith(c.parts[0]) and all(p in i["detail"] for p in c.parts[1:])
            ]
            if not hit:
                problems.append(f"{where}: not left out with {c.parts}: {summary['left_out']}")
            counts["left_out"] += 1
        elif c.expect == "repair":
            hit = [w for w in dataset.warnings if all(p in w for p in c.parts)]
            if not hit:
                problems.append(f"{where}: repair not reported ({c.parts}): {dataset.warnings}")
            counts["repairs"] += strict
        elif "skipped)" in text:
            problems.append(f"{where}: a valid input was skipped: {dataset.warnings}")
        for rel in c.good:
            if after_boxes.get(rel) is None:
                problems.append(f"{where}: good file {rel} was not imported")
        if c.bad is not None and bad_row is not None:
            problems.append(f"{where}: bad file {c.bad} was imported")
        for rel, expected in (c.boxes or {}).items():
            got = after_boxes.get(rel)
            want = sorted(tuple(float(v) for v in b) for b in expected)
            if got is None or not np.allclose(
                np.array(got).reshape(-1, 4), np.array(want).reshape(-1, 4)
            ):
                problems.append(f"{where}: boxes of {rel} are {got}, expected {want}")
    if c.expect in ("ok", "left-out", "deferred"):
        problems += check_reading(c, data, counts)
    if tree(data) != files_before:
        problems.append("the import wrote into the dataset folder")
    return problems


def check_reading(c: Case, data: Path, counts: dict[str, int]) -> list[str]:
    """ok: the image reads as the model's input; left-out, deferred: opening it gives a clear
    error."""
    problems: list[str] = []
    rel = c.target
    if rel is None:
        return problems
    path = data / rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = to_rgb_uint8(read_image(path))
        except ImageReadError as e:
            if c.expect == "ok":
                problems.append(f"reading {rel}: {e}")
            elif not (str(e).startswith(str(path)) and all(p in str(e) for p in c.parts[1:])):
                problems.append(f"reading {rel}: unclear message {e}")
            else:
                counts["errors"] += 1
                counts["deferred"] += 1
            return problems
    if c.expect in ("left-out", "deferred"):
        problems.append(f"reading {rel} did not fail")
    elif arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        problems.append(f"reading {rel} gave {arr.dtype} {arr.shape}")
    return problems


def test_bad_input_corpus(tmp_path: Path, template: Path) -> None:
    counts = dict.fromkeys(
        ("tried", "errors", "skipped", "left_out", "repairs", "deferred", "data_changed"), 0
    )
    failures: dict[str, list[str]] = {}
    for i, c in enumerate(CASES):
        problems = run_case(c, tmp_path / f"c{i:03d}", template, counts)
        if problems:
            failures[c.id] = problems
    by_expect: dict[str, int] = {}
    for c in CASES:
        by_expect[c.expect] = by_expect.get(c.expect, 0) + 1
    print(
        f"\nbad input corpus: inputs tried {counts['tried']} {by_expect}, errors raised "
        f"{counts['errors']} (of which found on opening the image {counts['deferred']}), "
        f"skipped with a warning (strict=False) {counts['skipped']}, left out by the import's "
        f"pixel check {counts['left_out']}, repairs {counts['repairs']}, "
        f"data changed {counts['data_changed']}"
    )
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    assert counts["tried"] >= 100
    assert counts["data_changed"] == 0
    assert len({c.id for c in CASES}) == len(CASES)


def test_corpus_covers_the_issue_list() -> None:
    ids = " ".join(c.id for c in CASES)
    for word in (
        "trunc-header-jpg", "trunc-data-png", "trunc-header-tif", "bad-crc-png", "zero-jpg",
        "text-png", "one-px", "u16", "f32", "gray", "rgba", "multipage", "huge-png", "huge-tif",
        "voc/malformed", "voc/missing-xmin", "voc/negative-outside", "voc/inverted-x",
        "voc/degenerate", "voc/partly-right", "voc/unknown-class", "coco/image-no-id",
        "coco/width-string", "coco/duplicate-image-id", "coco/dangling-image-id",
        "coco/dangling-category", "yolo/class-out-of-range", "yolo/entirely-outside",
    ):  # fmt: skip
        assert word in ids, word


def test_huge_image_is_refused_without_decoding(tmp_path: Path) -> None:
    """A forged 30000 x 30000 header: refused in milliseconds, nothing allocated."""
    import time
    import tracemalloc

    p = tmp_path / "huge.png"
    p.write_bytes(png_header(30_000, 30_000))
    t = time.perf_counter()
    tracemalloc.start()
    with pytest.raises(
        ImageReadError, match=r"huge\.png: image has too many pixels to read safely"
    ):
        read_image(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t < 1.0
    assert peak < 50e6  # a decode would need 2.7 GB


# ---- the CLI on a sample of the corpus -------------------------------------------------------


CLI_SAMPLE = [
    "images/zero-png", "images/huge-tif", "voc/malformed", "voc/missing-xmin",
    "voc/image-text-jpeg", "coco/dangling-category", "coco/duplicate-image-id", "coco/not-json",
    "yolo/class-out-of-range", "yolo/yaml-invalid", "voc/partly-right",
]  # fmt: skip


@pytest.mark.parametrize("case_id", CLI_SAMPLE)
def test_cli_import_reports_bad_input(
    case_id: str, tmp_path: Path, template: Path, capsys: pytest.CaptureFixture
) -> None:
    c = next(c for c in CASES if c.id == case_id)
    path = c.build(tmp_path / "data")
    for skip_bad in (False, True):
        project = fresh_project(template, tmp_path / f"p{skip_bad}")
        before = db_rows(project)
        argv = ["import", str(project), str(path), "--format", c.fmt]
        rc = cli.main([*argv, "--skip-bad"] if skip_bad else argv)
        err = capsys.readouterr().err
        assert not changed_rows(before, db_rows(project))
        if c.expect == "fatal" or (c.expect == "error" and not skip_bad):
            assert rc == 1
            assert err.startswith("napari-al: error: "), err
            assert "Traceback" not in err
            assert all(p in err for p in c.parts), err
            assert db_rows(project) == before
        else:
            assert rc == 0, err
            assert all(p in err for p in c.parts), err
            assert "warning: " in err


# ---- safety of files ------------------------------------------------------------------------


def test_import_writes_only_the_store(tmp_path: Path) -> None:
    """Dataset paths pointing anywhere (../, absolute) are only STORED; nothing is written."""
    outside = good_png(tmp_path / "elsewhere" / "outside.png")
    root = tmp_path / "data"
    good_png(root / "good.png")
    data = {
        "images": [
            {"id": 1, "file_name": "good.png"},
            {"id": 2, "file_name": "../elsewhere/outside.png"},
            {"id": 3, "file_name": str(outside)},  # the same file, absolute: skipped once stored
        ],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "../../evil"}],
    }
    (root / "ann.json").write_text(json.dumps(data))
    project = tmp_path / "project"
    ProjectStore.create(project).close()
    everything = tree(tmp_path)
    with ProjectStore.open(project) as store:
        _ds, summary = import_into(store, root / "ann.json", "coco", strict=False)
        assert summary["images_added"] == 2 and summary["images_skipped"] == 1
        assert store.image_by_path(outside) is not None
        assert store.abs_path(store.image_by_path(outside)) == outside
    changed = {p for p, v in tree(tmp_path).items() if everything.get(p) != v}
    assert changed <= {str(project / n) for n in (STORE_FILENAME, f"{STORE_FILENAME}-wal",
                                                  f"{STORE_FILENAME}-shm")}  # fmt: skip


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_export_writes_only_under_out(tmp_path: Path, fmt: str) -> None:
    """Odd image names and class names cannot steer an export out of its folder."""
    project = tmp_path / "project"
    imgs = tmp_path / "imgs"
    names = ["a..png", "-rf.png", "x y.png", "$(touch pwned).png", "back\\slash.png", "ünï.png"]
    for n in names:
        good_png(imgs / n)
    with ProjectStore.create(project) as store:
        import_into(store, imgs, "images")
        cls = store.add_class("../../evil")
        other = store.add_class("/etc/passwd")
        for i, im in enumerate(store.images()):
            store.draw_box(im.id, (1, 1, 10, 10), cls if i % 2 else other)
            store.set_review_state(im.id, "complete")
    everything = tree(tmp_path)
    out = tmp_path / "out" / "export"
    with ProjectStore.open(project) as store:
        dataset = export_dataset(store, out, fmt)
    assert len(dataset.images) == len(names)
    changed = {p for p, v in tree(tmp_path).items() if everything.get(p) != v}
    store_files = {str(project / n) for n in (STORE_FILENAME, f"{STORE_FILENAME}-wal",
                                              f"{STORE_FILENAME}-shm")}  # fmt: skip
    assert changed - store_files, "nothing exported"
    for p in changed - store_files:
        assert Path(p).is_relative_to(out), f"{fmt} export wrote {p} outside {out}"


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_cli_export_never_overwrites_without_force(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture
) -> None:
    project = tmp_path / "project"
    good_png(tmp_path / "imgs" / "a.png")
    with ProjectStore.create(project) as store:
        import_into(store, tmp_path / "imgs", "images")
        cls = store.add_class("cell")
        (im,) = store.images()
        store.draw_box(im.id, (1, 1, 10, 10), cls)
        store.set_review_state(im.id, "complete")
    out = tmp_path / "out"
    assert cli.main(["export", str(project), str(out), "--format", fmt]) == 0
    first = {p: Path(p).read_bytes() for p in tree(out)}
    stamps = tree(out)
    with ProjectStore.open(project) as store:  # the labels change...
        store.draw_box(im.id, (20, 20, 30, 30), cls)
    capsys.readouterr()
    rc = cli.main(["export", str(project), str(out), "--format", fmt])  # ...no --force: refused
    err = capsys.readouterr().err
    assert rc == 1 and "already exists" in err and "napari-al: error:" in err, err
    assert tree(out) == stamps and {p: Path(p).read_bytes() for p in tree(out)} == first
    assert cli.main(["export", str(project), str(out), "--format", fmt, "--force"]) == 0
    assert {p: Path(p).read_bytes() for p in tree(out)} != first  # now replaced


class _Evil:
    """Unpickling this runs ``os.mkdir(marker)``: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    """A .pt file carrying a pickled object that runs code on load is refused, code not run."""
    checkpoints = pytest.importorskip("napari_al.core.engine.checkpoints")
    torch = pytest.importorskip("torch")
    loaders = [
        getattr(checkpoints, name)
        for name in ("load_checkpoint", "load", "read_metadata")
        if callable(getattr(checkpoints, name, None))
    ]
    assert loaders, "no checkpoint loader found in napari_al.core.engine.checkpoints"
    marker = tmp_path / "pwned"
    path = tmp_path / "model-v0001.pt"
    payload = {"format": "napari-al-checkpoint", "version": 1, "metadata": _Evil(marker)}
    torch.save({**payload, "state_dict": {}}, path)
    for load in loaders:
        with pytest.raises(Exception) as info:
            load(path)
        assert not marker.exists(), f"{load.__name__} ran code pickled in a checkpoint"
        assert "weights_only" in str(info.value) or "Unsupported global" in str(info.value), (
            f"{load.__name__}: {type(info.value).__name__}: {info.value}"
        )
    # the same object through plain torch.load would have run it: the test is real
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_the_store_comparison_has_teeth(tmp_path: Path, template: Path) -> None:
    """changed_rows sees an edited or deleted row; new rows alone are not a change."""
    project = fresh_project(template, tmp_path / "p")
    before = db_rows(project)
    with ProjectStore.open(project) as store:
        store.draw_box(store.images()[0].id, (1, 1, 5, 5), store.classes()[0].id)
        assert not changed_rows(before, db_rows(project))
        box = store.boxes(statuses="drawn")[0]
        store.correct_box(box.id, xyxy=(1, 1, 6, 6))
        assert any(r.startswith("boxes row") for r in changed_rows(before, db_rows(project)))
