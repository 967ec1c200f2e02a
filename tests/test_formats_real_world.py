"""Real-world inputs that used to lose data silently or crash (issue 16): each input is built here.

Every test generates its files in ``tmp_path``; no data is copied from elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tagged_image
from PIL import Image

from napari_al.core.formats import read_coco, read_voc, read_yolo
from napari_al.core.images import image_size, read_image

# ---- helpers ----------------------------------------------------------------------------------


def voc_xml(filename: str, w: int, h: int, objects: list[tuple], extra: str = "") -> str:
    """A VOC annotation; ``objects`` are ``(name, xmin, ymin, xmax, ymax)`` (1-based inclusive)."""
    objs = "".join(
        f"<object><name>{n}</name>{extra}<bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>"
    )


# ---- item 1: EXIF orientation -----------------------------------------------------------------

#: Pillow's transpose that undoes each EXIF orientation (what ``ImageOps.exif_transpose`` does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: ... and the transpose that makes the stored pixels from the upright picture.
_STORED = {**_UPRIGHT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}

UW, UH = 40, 60  # the upright picture
OBJ = (5, 40, 15, 55)  # x1, y1, x2, y2 in the upright picture (pixel edges)


def oriented_jpeg(path: Path, orientation: int) -> Path:
    """A JPEG whose upright view is UW x UH, white at OBJ, stored with ``orientation``."""
    upright = np.zeros((UH, UW, 3), np.uint8)
    x1, y1, x2, y2 = OBJ
    upright[y1:y2, x1:x2] = 255
    im = Image.fromarray(upright)
    if orientation != 1:
        im = im.transpose(_STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=95, exif=exif)
    with Image.open(path) as check:  # the generator itself is right: Pillow shows it upright
        from PIL import ImageOps

        assert ImageOps.exif_transpose(check).size == (UW, UH)
    return path


def assert_upright(path: Path) -> None:
    assert image_size(path) == (UW, UH)
    pixels = read_image(path)
    assert pixels.shape[:2] == (UH, UW)
    x1, y1, x2, y2 = OBJ
    inside = pixels[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean()
    mask = np.ones((UH, UW), bool)
    mask[max(y1 - 1, 0) : y2 + 1, max(x1 - 1, 0) : x2 + 1] = False
    assert inside > 200 and pixels[mask].mean() < 30


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_voc_coco_yolo(tmp_path: Path, orientation: int) -> None:
    """Labels written for the upright picture land on the object in every EXIF orientation."""
    x1, y1, x2, y2 = OBJ
    # VOC
    voc = tmp_path / "voc"
    img = oriented_jpeg(voc / "JPEGImages" / "a.jpg", orientation)
    assert_upright(img)
    (voc / "Annotations").mkdir()
    xml = voc_xml("a.jpg", UW, UH, [("cell", x1 + 1, y1 + 1, x2, y2)])
    (voc / "Annotations" / "a.xml").write_text(xml)
    ds = read_voc(voc)
    (rec,) = ds.images
    assert (rec.width, rec.height) == (UW, UH)
    assert [b.xyxy() for b in rec.boxes] == [OBJ]
    # COCO
    coco = tmp_path / "coco"
    oriented_jpeg(coco / "a.jpg", orientation)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": UW, "height": UH}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (coco / "ann.json").write_text(json.dumps(data))
    (rec,) = read_coco(coco / "ann.json").images
    assert (rec.width, rec.height) == (UW, UH)
    assert [b.xyxy() for b in rec.boxes] == [OBJ]
    # YOLO
    yolo = tmp_path / "yolo"
    oriented_jpeg(yolo / "images" / "train" / "a.jpg", orientation)
    (yolo / "labels" / "train").mkdir(parents=True)
    cx, cy, w, h = (x1 + x2) / 2 / UW, (y1 + y2) / 2 / UH, (x2 - x1) / UW, (y2 - y1) / UH
    (yolo / "labels" / "train" / "a.txt").write_text(f"0 {cx} {cy} {w} {h}\n")
    (yolo / "classes.txt").write_text("cell\n")
    (rec,) = read_yolo(yolo).images
    assert (rec.width, rec.height) == (UW, UH)
    assert [b.xyxy() for b in rec.boxes] == [pytest.approx(OBJ)]


# ---- item 2: stale VOC <filename> -------------------------------------------------------------


def plain_jpeg(path: Path, w: int = 64, h: int = 48) -> Path:
    return tagged_image(path, (w, h), quality=95)  # its content depends on the path


def test_voc_stale_filename_pairs_by_stem_and_warns(tmp_path: Path) -> None:
    """``b.xml`` copied from ``a.xml`` still says ``<filename>a.jpg``: it annotates ``b.jpg``."""
    plain_jpeg(tmp_path / "JPEGImages" / "a.jpg")
    plain_jpeg(tmp_path / "JPEGImages" / "b.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 64, 48, [("x", 1, 1, 10, 10)]))
    (tmp_path / "Annotations" / "b.xml").write_text(
        voc_xml("a.jpg", 64, 48, [("y", 21, 21, 30, 30)])
    )
    ds = read_voc(tmp_path)
    got = {im.path.name: [(b.label, b.xyxy()) for b in im.boxes] for im in ds.images}
    assert got == {"a.jpg": [("x", (0, 0, 10, 10))], "b.jpg": [("y", (20, 20, 30, 30))]}
    assert any("b.xml" in w and "a.jpg" in w and "b.jpg" in w for w in ds.warnings)
    # <filename> without an extension, or naming the same picture, is no disagreement
    (tmp_path / "Annotations" / "b.xml").write_text(voc_xml("b", 64, 48, []))
    assert not read_voc(tmp_path).warnings


def test_voc_stale_filename_without_own_image_is_reported(tmp_path: Path) -> None:
    """No ``b.jpg``: ``b.xml``'s ``<filename>a.jpg`` would annotate ``a.jpg`` twice; say so."""
    from napari_al.core.formats import FormatError

    plain_jpeg(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 64, 48, [("x", 1, 1, 10, 10)]))
    (tmp_path / "Annotations" / "b.xml").write_text(
        voc_xml("a.jpg", 64, 48, [("y", 21, 21, 30, 30)])
    )
    with pytest.raises(FormatError, match=r"b\.xml.*a\.jpg.*a\.xml"):
        read_voc(tmp_path)
    ds = read_voc(tmp_path, strict=False)
    assert [(im.path.name, len(im.boxes)) for im in ds.images] == [("a.jpg", 1)]
    assert any("b.xml" in w and "skipped" in w for w in ds.warnings)


# ---- item 3: VOC ImageSets ids with spaces ----------------------------------------------------


def test_voc_imagesets_ids_with_spaces(tmp_path: Path) -> None:
    """LabelImg names like ``cell (1)``: the whole line is the id; the export re-imports."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord
    from napari_al.core.formats import write_voc

    src = tmp_path / "src"
    (src / "Annotations").mkdir(parents=True)
    for i in (1, 2, 3):
        plain_jpeg(src / "JPEGImages" / f"cell ({i}).jpg")
        xml = voc_xml(f"cell ({i}).jpg", 64, 48, [("cell", i, i, 10 + i, 10 + i)])
        (src / "Annotations" / f"cell ({i}).xml").write_text(xml)
    main = src / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("cell (1)\ncell (2)\n")
    (main / "test.txt").write_text("cell (3)\n")
    want = {"cell (1).jpg": "train", "cell (2).jpg": "train", "cell (3).jpg": "test"}
    for strict in (True, False):
        ds = read_voc(src, strict=strict)
        assert {im.path.name: im.split for im in ds.images} == want
        assert not ds.warnings
    # the devkit's per-class lists ("id  1") still read by their first token
    (main / "train.txt").write_text("cell (1)\ncell (2)\n")
    plain_jpeg(src / "JPEGImages" / "plain.jpg")
    (src / "Annotations" / "plain.xml").write_text(voc_xml("plain.jpg", 64, 48, []))
    (main / "val.txt").write_text("plain  1\n")
    assert {im.path.name: im.split for im in read_voc(src).images}["plain.jpg"] == "val"

    # our own export of such a project re-imports, copied or in place
    recs = [
        ImageRecord(
            path=src / "JPEGImages" / f"cell ({i}).jpg",
            width=64,
            height=48,
            boxes=[BoxRecord(i, i, 10 + i, 10 + i, "cell")],
            split=s,
            annotated=True,
        )
        for i, s in ((1, "train"), (2, "val"), (3, "test"))
    ]
    ds = Dataset(classes=["cell"], images=recs)
    for copy in (False, True):
        out = tmp_path / f"out{copy}"
        write_voc(ds, out, copy_images=copy)
        back = read_voc(out)
        got = {im.path.stem: (im.split, [b.xyxy() for b in im.boxes]) for im in back.images}
        assert got == {
            f"cell ({i})": (s, [(i, i, 10 + i, 10 + i)])
            for i, s in ((1, "train"), (2, "val"), (3, "test"))
        }


# ---- item 4: YOLO export, edit, re-import -----------------------------------------------------


def test_yolo_export_of_edited_ultralytics_set_reimports_the_edits(tmp_path: Path) -> None:
    """Labels resolve relative to the folder being imported, not beside the original images."""
    from napari_al.core.data import BoxRecord
    from napari_al.core.formats import write_yolo

    src = tmp_path / "src"
    for split, name in (("train", "a"), ("val", "b")):
        plain_jpeg(src / "images" / split / f"{name}.jpg")
        (src / "labels" / split).mkdir(parents=True)
        (src / "labels" / split / f"{name}.txt").write_text("0 0.25 0.25 0.125 0.125\n")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cell, rbc]\n")
    ds = read_yolo(src)
    a, b = sorted(ds.images, key=lambda im: im.path.name)
    a.boxes[0] = BoxRecord(30, 20, 50, 40, "rbc")  # corrected
    b.boxes.append(BoxRecord(40, 30, 60, 44, "cell"))  # drawn
    want = {
        "a.jpg": ("train", [("rbc", (30, 20, 50, 40))]),
        "b.jpg": ("val", [("cell", (12, 9, 20, 15)), ("cell", (40, 30, 60, 44))]),
    }
    for copy in (False, True):
        out = tmp_path / f"out{copy}"
        write_yolo(ds, out, copy_images=copy)
        for strict in (True, False):
            back = read_yolo(out, strict=strict)
            got = {
                im.path.name: (im.split, [(x.label, pytest.approx(x.xyxy())) for x in im.boxes])
                for im in back.images
            }
            assert got == want
            assert not back.warnings


# ---- item 5: objects without a usable box -----------------------------------------------------


def test_coco_segmentation_without_bbox_gives_its_box(tmp_path: Path) -> None:
    """No ``bbox``: the box is the extent of the polygon or of the RLE mask (pycocotools)."""
    import pycocotools.mask as mask_util

    plain_jpeg(tmp_path / "a.jpg")
    mask = np.zeros((48, 64), np.uint8)
    mask[6:20, 33:50] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    runs, current, n = [], 0, 0  # uncompressed RLE: column-major run lengths, zeros first
    for v in mask.flatten(order="F"):
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    assert sum(runs) == 64 * 48
    segs = [
        [[10, 5, 30, 5, 30, 25.5, 10, 25.5]],  # polygon
        {"size": [48, 64], "counts": rle["counts"].decode()},  # compressed RLE
        {"size": [48, 64], "counts": runs},  # uncompressed RLE
    ]
    anns = [
        {"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": s, "area": 1, "iscrowd": 0}
        for k, s in enumerate(segs)
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = read_coco(tmp_path / "ann.json")
    (rec,) = ds.images
    assert [b.xyxy() for b in rec.boxes] == [(10, 5, 30, 25.5), (33, 6, 50, 20), (33, 6, 50, 20)]
    assert rec.skipped_objects == 0
    # neither bbox nor segmentation: an error naming the annotation
    del anns[0]["segmentation"]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    from napari_al.core.formats import FormatError

    with pytest.raises(FormatError, match=r"annotations\[0\].*bbox"):
        read_coco(tmp_path / "ann.json")


def test_skipped_object_is_counted_on_its_image(tmp_path: Path) -> None:
    """``--skip-bad`` drops a bad object but says so on its image, so the importer can leave
    the image partly reviewed instead of training the object as background."""
    from napari_al.core.formats import FormatError

    # VOC: a coordinate with a decimal comma
    voc = tmp_path / "voc"
    plain_jpeg(voc / "JPEGImages" / "a.jpg")
    (voc / "Annotations").mkdir()
    objs = [("cell", 1, 1, 10, 10), ("cell", "50,0", 1, 60, 10)]
    (voc / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 64, 48, objs))
    with pytest.raises(FormatError, match=r"object 2: bndbox/xmin is '50,0', not a number"):
        read_voc(voc)
    (rec,) = read_voc(voc, strict=False).images
    assert (len(rec.boxes), rec.skipped_objects, rec.annotated) == (1, 1, True)
    # COCO: an annotation with a broken bbox
    coco = tmp_path / "coco"
    plain_jpeg(coco / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, "x", 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (coco / "ann.json").write_text(json.dumps(data))
    (rec,) = read_coco(coco / "ann.json", strict=False).images
    assert (len(rec.boxes), rec.skipped_objects) == (1, 2)
    # YOLO: a line with a bad number
    yolo = tmp_path / "yolo"
    plain_jpeg(yolo / "images" / "a.jpg")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0,5 0.5 0.1 0.1\n")
    (yolo / "classes.txt").write_text("cell\n")
    (rec,) = read_yolo(yolo, strict=False).images
    assert (len(rec.boxes), rec.skipped_objects) == (1, 1)


# ---- item 6: iscrowd / difficult are ignore regions -------------------------------------------


def test_voc_difficult_and_coco_iscrowd_are_ignore_regions_both_ways(tmp_path: Path) -> None:
    """Neither positives nor background: kept as ignore regions, flags written back."""
    import xml.etree.ElementTree as ET

    from napari_al.core.data import BoxRecord, Dataset
    from napari_al.core.formats import write_coco, write_voc, write_yolo

    voc = tmp_path / "voc"
    plain_jpeg(voc / "JPEGImages" / "a.jpg")
    (voc / "Annotations").mkdir()
    xml = voc_xml("a.jpg", 64, 48, [("cell", 1, 1, 10, 10)]).replace(
        "</annotation>",
        "<object><name>rbc</name><difficult>1</difficult><bndbox><xmin>21</xmin><ymin>21</ymin>"
        "<xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>",
    )
    (voc / "Annotations" / "a.xml").write_text(xml)
    ds = read_voc(voc)
    (rec,) = ds.images
    assert [(b.label, b.xyxy()) for b in rec.boxes] == [("cell", (0, 0, 10, 10))]
    assert [(b.label, b.xyxy()) for b in rec.ignore_regions] == [("rbc", (20, 20, 30, 30))]
    assert ds.classes == ["cell", "rbc"]

    coco = tmp_path / "coco"
    plain_jpeg(coco / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "rbc"}],
    }
    (coco / "ann.json").write_text(json.dumps(data))
    (rec2,) = read_coco(coco / "ann.json").images
    assert [(b.label, b.xyxy()) for b in rec2.boxes] == [("cell", (0, 0, 10, 10))]
    assert [(b.label, b.xyxy()) for b in rec2.ignore_regions] == [("rbc", (20, 20, 30, 30))]

    # written back with the flags, and a classless region (drawn in the GUI) once per class
    rec.ignore_regions.append(BoxRecord(40, 30, 50, 40, ""))
    ds = Dataset(classes=["cell", "rbc"], images=[rec])
    write_voc(ds, tmp_path / "v")
    objs = ET.parse(tmp_path / "v" / "Annotations" / "a.xml").getroot().findall("object")
    assert [(o.findtext("name"), o.findtext("difficult")) for o in objs] == [
        ("cell", "0"),
        ("rbc", "1"),
        ("cell", "1"),
        ("rbc", "1"),
    ]
    write_coco(ds, tmp_path / "c.json")
    anns = json.loads((tmp_path / "c.json").read_text())["annotations"]
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(1, 0), (2, 1), (1, 1), (2, 1)]
    want_regions = [
        ("rbc", (20, 20, 30, 30)),
        ("cell", (40, 30, 50, 40)),
        ("rbc", (40, 30, 50, 40)),
    ]
    for back in (read_voc(tmp_path / "v"), read_coco(tmp_path / "c.json")):
        (r,) = back.images
        assert [(b.label, b.xyxy()) for b in r.boxes] == [("cell", (0, 0, 10, 10))]
        assert [(b.label, b.xyxy()) for b in r.ignore_regions] == want_regions
    # YOLO cannot carry them: they are left out, never written as ordinary boxes
    write_yolo(ds, tmp_path / "y")
    assert (tmp_path / "y" / "labels" / "a.txt").read_text().count("\n") == 1


def test_project_export_writes_ignore_regions(tmp_path: Path) -> None:
    """The project's ignore regions reach the VOC/COCO export as difficult/crowd objects."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord
    from napari_al.core.project import export_dataset
    from napari_al.core.store import ProjectStore

    img = plain_jpeg(tmp_path / "proj" / "a.jpg")
    rec = ImageRecord(img, 64, 48, [BoxRecord(0, 0, 10, 10, "cell")], "train", True)
    with ProjectStore.create(tmp_path / "proj") as store:
        store.import_dataset(Dataset(classes=["cell"], images=[rec]))
        (row,) = store.images()
        store.add_ignore_region(row.id, (20, 20, 30, 30))
        export_dataset(store, tmp_path / "out.json", "coco")
    anns = json.loads((tmp_path / "out.json").read_text())["annotations"]
    assert [(a["bbox"], a["iscrowd"]) for a in anns] == [([0, 0, 10, 10], 0), ([20, 20, 10, 10], 1)]


# ---- item 9: declared encodings; only FormatError escapes a reader ----------------------------


def test_voc_declared_xml_encoding_is_honoured(tmp_path: Path) -> None:
    """``encoding="gb2312"`` with a Chinese class name reads; an unknown encoding is one
    FormatError naming the file, which ``strict=False`` skips."""
    from napari_al.core.formats import FormatError

    plain_jpeg(tmp_path / "JPEGImages" / "a.jpg")
    plain_jpeg(tmp_path / "JPEGImages" / "b.jpg")
    (tmp_path / "Annotations").mkdir()
    body = voc_xml("a.jpg", 64, 48, [("细胞", 1, 1, 10, 10)])
    decl = '<?xml version="1.0" encoding="{}"?>\n'
    (tmp_path / "Annotations" / "a.xml").write_bytes(
        (decl.format("gb2312") + body).encode("gb2312")
    )
    (tmp_path / "Annotations" / "b.xml").write_bytes(
        (decl.format("windows-1252") + voc_xml("b.jpg", 64, 48, [("café", 1, 1, 9, 9)])).encode(
            "cp1252"
        )
    )
    ds = read_voc(tmp_path)
    assert ds.classes == ["café", "细胞"]
    (tmp_path / "Annotations" / "b.xml").write_bytes(
        (decl.format("no-such-codec") + voc_xml("b.jpg", 64, 48, [])).encode()
    )
    with pytest.raises(FormatError, match=r"Annotations/b\.xml: .*no-such-codec"):
        read_voc(tmp_path)
    ds = read_voc(tmp_path, strict=False)
    assert [im.path.name for im in ds.images if im.annotated] == ["a.jpg"]
    # a declaration that lies about the bytes is a FormatError too
    (tmp_path / "Annotations" / "b.xml").write_bytes(
        (decl.format("gb2312") + voc_xml("b.jpg", 64, 48, [])).encode() + b"\xff\xfe\xff"
    )
    with pytest.raises(FormatError, match=r"Annotations/b\.xml"):
        read_voc(tmp_path)


# ---- item 10: VOC <size> 0x0 ------------------------------------------------------------------


def test_voc_size_0x0_is_read_from_the_image(tmp_path: Path) -> None:
    """``0x0`` means "not filled in" (as a missing size): the image header gives it."""
    plain_jpeg(tmp_path / "JPEGImages" / "a.jpg", 64, 48)
    (tmp_path / "Annotations").mkdir()
    for zero in ("0", "0.0", " 0 "):
        xml = voc_xml("a.jpg", zero, zero, [("cell", 1, 1, 10, 10)])
        (tmp_path / "Annotations" / "a.xml").write_text(xml)
        ds = read_voc(tmp_path)
        (rec,) = ds.images
        assert (rec.width, rec.height, len(rec.boxes)) == (64, 48, 1)
        assert any("size is 0x0" in w and "64x48" in w for w in ds.warnings)


# ---- item 11: Roboflow data.yaml --------------------------------------------------------------


def test_roboflow_yaml_with_dotdot_paths(tmp_path: Path) -> None:
    """``train: ../train/images`` resolves as Ultralytics does: ``path/../train/images``, else
    (when that does not exist) ``path/train/images``."""
    root = tmp_path / "My Dataset.v2i.yolov8"
    for folder, name in (("train", "a"), ("valid", "b"), ("test", "c")):
        plain_jpeg(root / folder / "images" / f"{name}.jpg")
        (root / folder / "labels").mkdir(parents=True)
        (root / folder / "labels" / f"{name}.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\n"
        "names: ['cell', 'rbc']\n\nroboflow:\n  workspace: w\n  project: p\n  version: 2\n"
    )
    ds = read_yolo(root)
    got = {im.path.name: (im.split, [(b.label, b.xyxy()) for b in im.boxes]) for im in ds.images}
    box = [("rbc", (24, 18, 40, 30))]
    assert got == {"a.jpg": ("train", box), "b.jpg": ("val", box), "c.jpg": ("test", box)}
    assert not ds.warnings


# ---- item 12: common VOC layouts --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["lower-case", "labelimg", "image-dir"])
def test_common_voc_layouts(tmp_path: Path, layout: str) -> None:
    """``annotations/`` + ``images/``, LabelImg's XML beside the image, or ``image_dir=``."""
    from napari_al.core.formats import detect_format, read_dataset

    ann, img = {
        "lower-case": ("annotations", "images"),
        "labelimg": (".", "."),
        "image-dir": ("Annotations", "pictures"),
    }[layout]
    plain_jpeg(tmp_path / img / "cell (1).jpg")
    plain_jpeg(tmp_path / img / "b.jpg")  # no XML: unannotated
    (tmp_path / ann).mkdir(exist_ok=True)
    xml = voc_xml("cell (1).jpg", 64, 48, [("cell", 1, 1, 10, 10)])
    (tmp_path / ann / "cell (1).xml").write_text(xml)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("cell (1)\n")
    kwargs = {"image_dir": tmp_path / img} if layout == "image-dir" else {}
    if layout != "image-dir":
        assert detect_format(tmp_path) == "voc"
    ds = read_dataset(tmp_path, "voc", **kwargs)
    got = {im.path.name: (im.annotated, im.split, len(im.boxes)) for im in ds.images}
    assert got == {"cell (1).jpg": (True, "val", 1), "b.jpg": (False, None, 0)}
    assert all(im.path.parent == (tmp_path / img).resolve() for im in ds.images)


# ---- item 14: Darknet layout ------------------------------------------------------------------


def darknet_set(data: Path) -> None:
    """A Darknet ``data/`` folder: obj.data, coco.names, list files, images + labels beside."""
    for name in ("a", "b", "v"):
        plain_jpeg(data / "obj" / f"{name}.jpg")
        (data / "obj" / f"{name}.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (data / "obj" / "c.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image
    (data / "coco.names").write_text("cell\nrbc\n")
    (data / "obj.data").write_text(
        "classes = 2\ntrain  = data/train.txt\nvalid = data/valid.txt\n"
        "names = data/coco.names\nbackup = backup/\n"
    )
    (data / "train.txt").write_text("data/obj/a.jpg\ndata/obj/b.jpg\n")  # relative to darknet/
    (data / "valid.txt").write_text("data/obj/v.jpg\n")


def test_darknet_names_obj_data_and_lists(tmp_path: Path) -> None:
    data = tmp_path / "darknet" / "data"
    darknet_set(data)
    ds = read_yolo(data)
    assert ds.classes == ["cell", "rbc"]
    got = {im.path.name: (im.split, len(im.boxes)) for im in ds.images}
    assert got == {"a.jpg": ("train", 1), "b.jpg": ("train", 1), "v.jpg": ("val", 1)}
    # the label file without an image is reported, never dropped without a word
    assert any("obj/c.txt" in w and "no image" in w for w in ds.warnings)


def test_darknet_list_line_naming_a_missing_folder_is_reported(tmp_path: Path) -> None:
    from napari_al.core.formats import FormatError

    data = tmp_path / "darknet" / "data"
    darknet_set(data)
    (data / "valid.txt").write_text("data/obj/v.jpg\ndata/gone/x.jpg\n")
    with pytest.raises(FormatError, match=r"valid\.txt: line 2: 'data/gone/x\.jpg' not found"):
        read_yolo(data)
    ds = read_yolo(data, strict=False)
    assert sorted(im.path.name for im in ds.images) == ["a.jpg", "b.jpg", "v.jpg"]
    assert any("valid.txt: line 2" in w and "skipped" in w for w in ds.warnings)


def test_any_names_file_gives_the_classes(tmp_path: Path) -> None:
    """No data.yaml, classes.txt or obj.names: a single ``*.names`` file holds the classes."""
    from napari_al.core.formats import FormatError, detect_format

    plain_jpeg(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (tmp_path / "voc.names").write_text("cell\nrbc\n")
    assert read_yolo(tmp_path).classes == ["cell", "rbc"]
    assert detect_format(tmp_path) == "yolo"
    (tmp_path / "other.names").write_text("x\ny\n")
    with pytest.raises(FormatError, match=r"other\.names.*voc\.names"):
        read_yolo(tmp_path)


def test_import_into_passes_reader_options(tmp_path: Path) -> None:
    """``image_dir`` (VOC) and ``image_root`` (COCO) reach the readers from the project API."""
    from napari_al.core.project import import_into
    from napari_al.core.store import ProjectStore

    src = tmp_path / "src"
    plain_jpeg(src / "pictures" / "a.jpg")
    (src / "Annotations").mkdir(parents=True)
    (src / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 64, 48, [("cell", 1, 1, 9, 9)]))
    with ProjectStore.create(tmp_path / "proj") as store:
        _ds, summary = import_into(store, src, "voc", image_dir=src / "pictures")
        assert summary["images_added"] == 1 and summary["boxes_added"] == 1


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ("U?d0l0000kb1P", "end in the middle of a number"),  # 'P' - 48 = 0x20: more follows
        ("U?d0l0000k b1", "not a compressed RLE character"),  # ' ' - 48 has bit 0x20 set too
        ("U?d0l0000kb1~", "not a compressed RLE character"),
    ],
)
def test_coco_malformed_compressed_rle_never_reaches_pycocotools(
    tmp_path: Path, monkeypatch, counts: str, message: str
) -> None:
    """pycocotools' rleFrString reads past a string whose last character says "more follows"
    and writes past its buffer (heap corruption seen as a later glibc abort): such counts are a
    FormatError before pycocotools sees them."""
    import pycocotools.mask as mask_util

    from napari_al.core.formats import FormatError

    def refuse(*_a, **_k):
        raise AssertionError("malformed counts passed to pycocotools")

    monkeypatch.setattr(mask_util, "toBbox", refuse)
    plain_jpeg(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [48, 64], "counts": counts},
            }
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match=rf"annotations\[0\].*{message}"):
        read_coco(tmp_path / "ann.json")
