"""Export and import of a large image reviewed region by region (issue 14, "Formats").

A large image (a sparse tiled TIFF over ``LAZY_PIXELS``, generated here) reviewed region by
region is ``partial``: the default export (``only_reviewed``) writes it as partly reviewed with
its human boxes and reviewed regions (COCO ``"reviewed_regions"``, VOC ``<reviewed_region>``),
and importing that export into a fresh project gives back the boxes (image pixels, exact), the
regions and the review state. YOLO cannot say which part of an image is reviewed: such images
are left out of a YOLO export, with a warning. Boxes and regions are ``x1, y1, x2, y2`` image
pixels, pixel edges on integers.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from large_image_helpers import sparse_tiff
from PIL import Image

from napari_al.core.annotator import Annotator
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats import FormatError, read_coco, read_voc
from napari_al.core.lazy_images import LAZY_PIXELS
from napari_al.core.project import export_dataset, import_into, open_or_init
from napari_al.core.store import ProjectStore
from napari_al.core.store.importer import LEFT_OUT_REVIEWED
from napari_al.core.store.rows import file_sha256

SIDE = 5000  # SIDE * SIDE > LAZY_PIXELS: read window by window
#: Human boxes of the large image (image pixels, xyxy): two in region A, one in region B, one
#: outside both (a human label too: exported, though its area is not reviewed).
BOXES = [
    (1100.0, 1100.0, 1130.0, 1140.0),
    (1500.0, 1300.0, 1540.0, 1350.0),
    (3100.0, 3200.0, 3180.0, 3230.0),
    (4500.0, 200.0, 4560.0, 260.0),
]
REGION_A = (1000.0, 1000.0, 2000.0, 1600.0)
REGION_B = (3000.0, 3000.0, 3600.0, 3500.0)
SMALL_BOX = (4.0, 5.0, 30.0, 40.0)


def make_project(tmp_path: Path) -> Path:
    """A project folder holding ``big.tif`` (SIDE x SIDE, two reviewed regions, ``partial``)
    and ``small.png`` (64 x 48, one box, ``complete``), labelled through the public API."""
    folder = tmp_path / "project"
    folder.mkdir()
    sparse_tiff(folder / "big.tif", SIDE, [(int(b[0]), int(b[1]), 20, 20) for b in BOXES])
    Image.new("RGB", (64, 48), (10, 120, 30)).save(folder / "small.png")
    assert SIDE * SIDE > LAZY_PIXELS
    with open_or_init(folder) as store:
        cell = store.add_class("cell")
        ann = Annotator(store)
        big = store.image_by_path(folder / "big.tif")
        small = store.image_by_path(folder / "small.png")
        assert big is not None and small is not None
        for box in BOXES:
            ann.draw(big.id, box, cell)
        ann.complete_region(big.id, REGION_A)
        ann.complete_region(big.id, REGION_B)
        ann.draw(small.id, SMALL_BOX, cell)
        ann.complete_image(small.id)
        assert store.image(big.id).review_state == "partial"
    return folder


def state(project: Path, image: Path) -> tuple[str, list[tuple], list[tuple]]:
    """Review state, human boxes (sorted) and reviewed regions of ``image`` in ``project``."""
    with ProjectStore.open(project) as store:
        row = store.image_by_path(image)
        assert row is not None, f"{image} is not in {project}"
        boxes = sorted(b.xyxy for b in store.boxes(image_id=row.id))
        regions = [r.xyxy for r in store.reviewed_regions(row.id)]
        return row.review_state, boxes, regions


def import_fresh(tmp_path: Path, name: str, source: Path, fmt: str) -> Path:
    """A new, empty project ``name`` into which ``source`` (``fmt``) is imported."""
    project = tmp_path / name
    project.mkdir()
    with open_or_init(project) as store:
        _, summary = import_into(store, source, fmt)
    assert summary["reviewed_regions_added"] == 2
    assert summary["images_added"] == 2 and summary["partial"] == 1
    return project


def check_round_trip(project: Path, imported: Path) -> None:
    """``imported`` holds the large image as ``project`` does (boxes exact, both regions,
    ``partial``) and the small image as before (complete, its box)."""
    assert state(imported, project / "big.tif") == (
        "partial",
        sorted(BOXES),
        [REGION_A, REGION_B],
    )
    assert state(imported, project / "small.png") == ("complete", [SMALL_BOX], [])


def test_coco_export_keeps_a_region_reviewed_image_and_imports_it_back(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    out = tmp_path / "coco"
    with ProjectStore.open(project) as store:
        dataset = export_dataset(store, out, "coco")  # default: only reviewed
    assert dataset.warnings == []
    data = json.loads((out / "annotations.json").read_text())
    by_name = {Path(im["file_name"]).name: im for im in data["images"]}
    big, small = by_name["big.tif"], by_name["small.png"]
    assert big["partial"] is True
    assert big["reviewed_regions"] == [list(REGION_A), list(REGION_B)]
    assert all(isinstance(v, int) for r in big["reviewed_regions"] for v in r)
    # a complete image without regions is written as before: no new key
    assert set(small) == {"id", "file_name", "width", "height", "split"}
    boxes = sorted(
        (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
        for a in data["annotations"]
        if a["image_id"] == big["id"]
    )
    assert boxes == sorted(BOXES)
    imported = import_fresh(tmp_path, "from-coco", out / "annotations.json", "coco")
    check_round_trip(project, imported)


def test_voc_export_keeps_a_region_reviewed_image_and_imports_it_back(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    out = tmp_path / "voc"
    with ProjectStore.open(project) as store:
        dataset = export_dataset(store, out, "voc")
    assert dataset.warnings == []
    root = ET.parse(out / "Annotations" / "big.xml").getroot()
    assert root.findtext("partial") == "1"
    regions = [
        tuple(int(el.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        for el in root.findall("reviewed_region")
    ]
    # VOC's 1-based inclusive pixels, as its boxes: xmin = x1 + 1, xmax = x2
    assert regions == [(1001, 1001, 2000, 1600), (3001, 3001, 3600, 3500)]
    first = root.find("object/bndbox")
    assert first is not None and first.findtext("xmin") == "1101"
    imported = import_fresh(tmp_path, "from-voc", out, "voc")
    check_round_trip(project, imported)


def test_yolo_export_leaves_a_partly_reviewed_image_out_with_a_warning(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with ProjectStore.open(project) as store:
        dataset = export_dataset(store, tmp_path / "yolo", "yolo")
    assert [im.path.name for im in dataset.images] == ["small.png"]
    (line,) = dataset.warnings
    assert line.startswith("left out 1 partly reviewed image with regions marked complete")
    assert "big.tif" in line and "export COCO or VOC to keep them" in line


def test_a_complete_large_image_keeps_its_regions_and_its_state(tmp_path: Path) -> None:
    """A large image marked complete after its regions exports as complete (``"partial":
    false`` said aloud, so the reader does not note regions without it), with its regions, and
    comes back complete with them."""
    project = make_project(tmp_path)
    with ProjectStore.open(project) as store:
        big = store.image_by_path(project / "big.tif")
        assert big is not None
        Annotator(store).complete_image(big.id)
        export_dataset(store, tmp_path / "coco", "coco")
    data = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    (big_entry,) = [im for im in data["images"] if im["file_name"].endswith("big.tif")]
    assert big_entry["partial"] is False
    assert big_entry["reviewed_regions"] == [list(REGION_A), list(REGION_B)]
    imported = tmp_path / "fresh"
    imported.mkdir()
    with open_or_init(imported) as store:
        _, summary = import_into(store, tmp_path / "coco" / "annotations.json", "coco")
    assert summary["partial"] == 0 and summary["reviewed_regions_added"] == 2
    assert state(imported, project / "big.tif") == (
        "complete",
        sorted(BOXES),
        [REGION_A, REGION_B],
    )


def test_import_clips_regions_stores_each_once_and_keeps_existing_work(tmp_path: Path) -> None:
    """Records' reviewed regions are clipped to the image and stored once; an image that
    already has reviewed regions in the project is review work: the import leaves it (and
    its regions) as they are."""
    big = sparse_tiff(tmp_path / "big.tif", SIDE, [(10, 10, 5, 5)])
    other = sparse_tiff(tmp_path / "other.tif", SIDE, [(20, 10, 5, 5)])
    rec = ImageRecord(big, SIDE, SIDE, [BoxRecord(*BOXES[0], "cell")], annotated=False)
    rec.reviewed_regions = [REGION_A, REGION_A, (-50.0, 4000.0, 600.0, 5200.0)]
    with ProjectStore.create(tmp_path / "p") as store:
        summary = store.import_dataset(Dataset(["cell"], [rec]))
        (row,) = store.images()
        assert summary["reviewed_regions_added"] == 2 and row.review_state == "partial"
        assert [r.xyxy for r in store.reviewed_regions(row.id)] == [
            REGION_A,
            (0.0, 4000.0, 600.0, 5000.0),
        ]
        # an image nobody labelled but with a region marked complete (no box at all)
        other_id = store.add_image(other, file_sha256(other), SIDE, SIDE, "pool", "unseen")
        store.complete_region(other_id, REGION_B)
        labels = ImageRecord(other, SIDE, SIDE, [BoxRecord(*BOXES[2], "cell")], annotated=True)
        labels.reviewed_regions = [REGION_A]
        summary = store.import_dataset(Dataset(["cell"], [labels]))
        assert summary["images_labelled"] == 0
        assert summary["left_out"] == [
            {"path": str(other), "reason": LEFT_OUT_REVIEWED, "boxes": 1}
        ]
        assert [r.xyxy for r in store.reviewed_regions(other_id)] == [REGION_B]
        assert store.image(other_id).review_state == "unseen"
        assert store.boxes(image_id=other_id) == []


def test_readers_check_and_clip_reviewed_regions(tmp_path: Path) -> None:
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48, "partial": True},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "cell"}],
    }
    path = tmp_path / "a.json"
    coco["images"][0]["reviewed_regions"] = [[2, 3, 70, 20.5]]
    path.write_text(json.dumps(coco))
    ds = read_coco(path)
    assert ds.images[0].reviewed_regions == [(2.0, 3.0, 64.0, 20.5)]
    assert ds.images[0].partial and "clipped to the 64x48 image" in ds.warnings[0]
    coco["images"][0]["reviewed_regions"] = [[2, 3, 1, 20], [0, 0, 5, 5]]
    path.write_text(json.dumps(coco))
    with pytest.raises(FormatError, match=r"reviewed_regions\[0\]: .* empty or inverted"):
        read_coco(path)
    ds = read_coco(path, strict=False)
    assert ds.images[0].reviewed_regions == [(0.0, 0.0, 5.0, 5.0)]
    coco["images"][0]["reviewed_regions"] = "everything"
    path.write_text(json.dumps(coco))
    with pytest.raises(FormatError, match="reviewed_regions is 'everything', not a list"):
        read_coco(path)

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    Image.new("RGB", (64, 48)).save(voc / "JPEGImages" / "a.png")
    xml = (
        "<annotation><filename>a.png</filename><size><width>64</width><height>48</height>"
        "</size><partial>1</partial>"
        "<reviewed_region><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>12</ymax>"
        "</reviewed_region>"
        "<reviewed_region><xmin>x</xmin><ymin>1</ymin><xmax>10</xmax><ymax>12</ymax>"
        "</reviewed_region></annotation>"
    )
    (voc / "Annotations" / "a.xml").write_text(xml)
    with pytest.raises(FormatError, match="reviewed_region 2: xmin is 'x', not a number"):
        read_voc(voc)
    ds = read_voc(voc, strict=False)
    assert ds.images[0].reviewed_regions == [(0.0, 0.0, 10.0, 12.0)]
    assert "(reviewed region skipped)" in ds.warnings[0]


def test_cli_export_then_import_keeps_boxes_and_regions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``napari-al mark-region-complete``, ``export`` (coco, voc, yolo), then ``init`` and
    ``import`` of each export into a new project, as the README shows."""
    from napari_al.cli import main

    folder = tmp_path / "project"
    folder.mkdir()
    sparse_tiff(folder / "big.tif", SIDE, [(1100, 1100, 20, 20)])
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    with ProjectStore.open(folder) as store:
        (row,) = store.images()
        for box in BOXES:
            Annotator(store).draw(row.id, box, store.classes()[0].id)
    for region in (REGION_A, REGION_B):
        xyxy = [str(int(v)) for v in region]
        assert main(["mark-region-complete", str(folder), "big.tif", "--xyxy", *xyxy]) == 0
    capsys.readouterr()
    for fmt, source in (("coco", "coco/annotations.json"), ("voc", "voc")):
        assert main(["export", str(folder), str(tmp_path / fmt), "--format", fmt]) == 0
        out, err = capsys.readouterr()
        assert f"exported 1 image and 4 boxes to {tmp_path / fmt}" in out and err == ""
        fresh = tmp_path / f"from-{fmt}"
        fresh.mkdir()
        assert main(["init", str(fresh)]) == 0
        assert main(["import", str(fresh), str(tmp_path / source), "--format", fmt]) == 0
        out, err = capsys.readouterr()
        assert "imported 1 image and 4 boxes" in out and "; 2 reviewed regions" in out
        assert "1 image partly reviewed, as the dataset marks them" in out
        assert "lost objects" not in err
        got = state(fresh, folder / "big.tif")
        assert got == ("partial", sorted(BOXES), [REGION_A, REGION_B])
    assert main(["export", str(folder), str(tmp_path / "yolo"), "--format", "yolo"]) == 0
    out, err = capsys.readouterr()
    assert "exported 0 images and 0 boxes" in out
    assert "note: left out 1 partly reviewed image with regions marked complete" in err
    assert "export COCO or VOC to keep them" in err
    # one note with one piece of advice: not also "mark their reviewed regions complete"
    assert err.count("note:") == 1 and "mark them complete" not in err
    yolo_all = tmp_path / "yolo-all"
    assert main(["export", str(folder), str(yolo_all), "--format", "yolo", "--all"]) == 0
    out, err = capsys.readouterr()
    assert "exported 1 image and 4 boxes" in out
    assert "note: wrote 1 partly reviewed image (e.g. big.tif) as if every object" in err
    assert "read back they are complete" in err


def test_widget_export_shows_the_yolo_warning(
    make_napari_viewer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The widget's Export says what a YOLO export left out, as the CLI does."""
    from gui_helpers import blob_project, open_widget

    import napari_al.gui.sections.project as project_section

    project = blob_project(tmp_path / "p")
    with ProjectStore.open(project) as store:
        (row,) = store.images()
        Annotator(store).complete_region(row.id, (0, 0, 50, 50))
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(project_section, "notify_user", lambda *a: shown.append(a))
    _, widget = open_widget(make_napari_viewer, project)
    dataset = widget.project_section.export_dataset(tmp_path / "yolo", "yolo")
    assert dataset.images == []
    assert shown[0][0] == "warning" and "export COCO or VOC to keep them" in shown[0][1]
