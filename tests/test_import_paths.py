"""Every way into a project imports, or says exactly what it left out and why (issue 16 item 7).

The paths: ``napari-al open DIR`` / the widget (``open_or_init``), ``napari-al init DIR``,
``napari-al import`` (``import_into``) and the store's importer. Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.project import import_into, open_or_init
from napari_al.core.store import ProjectStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def image(path: Path, size: tuple[int, int] = (64, 48), colour: int = 90) -> Path:
    """An image whose content depends on its path (and ``colour``): no two are the same."""
    return tagged_image(path, size, (colour, 200 - colour, 50))


def voc_xml(filename: str, objects: list[tuple], size: tuple[int, int] = (64, 48)) -> str:
    """A VOC annotation; an object is ``(name, xmin, ymin, xmax, ymax[, difficult])``, its
    coordinates written as given (strings pass through, e.g. ``"50,0"``)."""
    parts = []
    for name, x1, y1, x2, y2, *rest in objects:
        difficult = rest[0] if rest else 0
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>"
        )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{''.join(parts)}</annotation>"
    )


def voc_folder(root: Path) -> Path:
    """A labelled VOC folder: a.jpg (2 boxes), b.jpg (1 box), c.jpg without an annotation."""
    for i, stem in enumerate("abc"):
        image(root / "JPEGImages" / f"{stem}.jpg", colour=40 * i)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "a.xml").write_text(
        voc_xml("a.jpg", [("cell", 2, 2, 20, 20), ("cell", 30, 10, 50, 40)])
    )
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", [("rbc", 5, 5, 25, 25)]))
    return root


def states(store: ProjectStore) -> dict[str, tuple[str, str, int]]:
    """``{file name: (split, review state, human boxes)}``."""
    return {
        Path(r.path).name: (
            r.split,
            r.review_state,
            len(store.boxes(image_id=r.id, statuses=("accepted", "corrected", "drawn"))),
        )
        for r in store.images()
    }


def test_open_on_a_labelled_voc_folder_imports_its_labels(tmp_path: Path) -> None:
    """The widget's and ``napari-al open``'s first open of a VOC folder keeps its labels, and
    every other image of the folder joins the pool."""
    folder = voc_folder(tmp_path / "voc")
    image(folder / "extra" / "d.png")  # outside the VOC layout: still the project's image
    reports: list[dict] = []
    with open_or_init(folder, report=reports.append) as store:
        got = states(store)
        assert [c.name for c in store.classes()] == ["cell", "rbc"]
    assert got == {
        "a.jpg": ("train", "complete", 2),
        "b.jpg": ("train", "complete", 1),
        "c.jpg": ("pool", "unseen", 0),
        "d.png": ("pool", "unseen", 0),
    }
    assert reports and reports[0]["images_added"] == 4 and reports[0]["boxes_added"] == 3


def test_cli_open_reports_the_first_import(tmp_path: Path, capsys, monkeypatch) -> None:
    """``napari-al open`` on a new folder says what it imported before napari starts."""
    from napari_al.cli import viewer

    folder = voc_folder(tmp_path / "voc")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(viewer, "_run_napari", lambda *a: 0)
    code, out, _err = run(capsys, "open", str(folder))
    assert code == 0
    assert f"imported 3 images and 3 boxes from {folder}" in out
    with ProjectStore.open(folder) as store:
        assert len(store.boxes()) == 3


def test_init_on_a_folder_of_images_adds_them(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    for i in range(3):
        image(folder / f"im{i}.png", colour=30 * i)
    image(folder / "sub" / "deep.tif")
    code, out, _err = run(capsys, "init", str(folder))
    assert code == 0 and "imported 4 images and 0 boxes" in out
    with ProjectStore.open(folder) as store:
        assert sorted(states(store).values()) == [("pool", "unseen", 0)] * 4
    # an empty folder is still an empty project, and says nothing about an import
    code, out, _err = run(capsys, "init", str(tmp_path / "new"))
    assert code == 0 and "imported" not in out


def test_voc_import_labels_images_first_opened_as_plain_images(tmp_path: Path, capsys) -> None:
    """A VOC folder first opened as plain images (or by an older version): a later VOC import
    of the same folder gives the unreviewed images their labels instead of "imported 0
    images and 0 boxes"; a reviewed image keeps its review and the report says so."""
    folder = voc_folder(tmp_path / "voc")
    project = tmp_path / "project"
    with ProjectStore.create(project) as store:
        import_into(store, folder / "JPEGImages", "images")
        rows = {Path(r.path).name: r for r in store.images()}
        cls = store.add_class("cell")
        store.replace_predictions(rows["a.jpg"].id, [((1, 1, 9, 9), cls, 0.7)], None)
        store.draw_box(rows["b.jpg"].id, (10, 10, 30, 30), cls)  # b has a person's work
        assert store.boxes(image_id=rows["a.jpg"].id)[0].status == "predicted"
    code, out, err = run(capsys, "import", str(project), str(folder), "--format", "voc")
    assert code == 0
    assert "imported 0 images and 2 boxes" in out
    # one image: singular verbs (it said "1 of the images were ... now have their labels")
    assert "1 of the images was already in the project, unreviewed, and now has its labels" in out
    assert "left out 1 image already in the project with review work" in err
    assert "b.jpg" in err and "its 1 box in the dataset was not imported" in err
    assert "left out 1 image already in the project (e.g." in err  # c.jpg: nothing to add
    with ProjectStore.open(project) as store:
        got = states(store)
        a = next(r for r in store.images() if r.path.endswith("a.jpg"))
        assert [b.status for b in store.boxes(image_id=a.id)] == ["accepted", "accepted"]
        (action,) = store.actions(kind="import")[-1:]
        assert action.payload["predictions_removed"]  # the model's guesses it replaced
    assert got["a.jpg"] == ("train", "complete", 2)
    assert got["b.jpg"] == ("pool", "unseen", 1)  # untouched: the drawn box is human work
    assert got["c.jpg"] == ("pool", "unseen", 0)


def test_the_import_report_agrees_in_number_with_two_images(tmp_path: Path, capsys) -> None:
    """Two unreviewed images labelled by an import: plural verbs (the one-image case above)."""
    folder = voc_folder(tmp_path / "voc")
    project = tmp_path / "project"
    with ProjectStore.create(project) as store:
        import_into(store, folder / "JPEGImages", "images")
    code, out, _err = run(capsys, "import", str(project), str(folder), "--format", "voc")
    assert code == 0 and "imported 0 images and 3 boxes" in out
    assert "2 of the images were already in the project, unreviewed, and now have their" in out


def test_reimport_of_the_same_voc_folder_is_not_silent(tmp_path: Path, capsys) -> None:
    folder = voc_folder(tmp_path / "voc")
    project = tmp_path / "project"
    run(capsys, "init", str(project))
    run(capsys, "import", str(project), str(folder), "--format", "voc")
    code, out, err = run(capsys, "import", str(project), str(folder), "--format", "voc")
    assert code == 0 and "imported 0 images and 0 boxes" in out
    assert "left out 2 images already in the project with review work, which is kept" in err
    assert "their 3 boxes in the dataset were not imported" in err
    assert "left out 1 image already in the project (e.g." in err


def test_import_names_the_images_a_dataset_leaves_out(tmp_path: Path, capsys) -> None:
    """Images under a VOC folder that the VOC dataset does not include are named by folder."""
    folder = voc_folder(tmp_path / "voc")
    image(folder / "SegmentationClass" / "a.png")
    image(folder / "SegmentationClass" / "b.png")
    project = tmp_path / "project"
    run(capsys, "init", str(project))
    code, out, err = run(capsys, "import", str(project), str(folder), "--format", "voc")
    assert code == 0 and "imported 3 images and 3 boxes" in out
    assert "left out 2 images in SegmentationClass/ that the VOC dataset does not include" in err
    assert "--format images" in err


def test_coco_import_names_images_beside_its_images(tmp_path: Path, capsys) -> None:
    import json

    image(tmp_path / "coco" / "a.png")
    image(tmp_path / "coco" / "b.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "coco" / "ann.json").write_text(json.dumps(data))
    project = tmp_path / "project"
    run(capsys, "init", str(project))
    ann = str(tmp_path / "coco" / "ann.json")
    code, out, err = run(capsys, "import", str(project), ann, "--format", "coco")
    assert code == 0 and "imported 1 image and 1 box" in out
    assert "left out 1 image in the top folder that the COCO dataset does not include" in err
    assert "b.png" in err


def test_voc_import_of_the_project_folder_adds_its_other_images(tmp_path: Path, capsys) -> None:
    """A project made empty (``init`` before its images arrived) then given its own folder as
    a VOC import: the folder's other images join the pool, as on a first open."""
    folder = tmp_path / "proj"
    ProjectStore.create(folder).close()
    voc_folder(folder)
    image(folder / "more" / "e.png")
    code, out, _err = run(capsys, "import", str(folder), str(folder), "--format", "voc")
    assert code == 0 and "imported 4 images and 3 boxes" in out
    with ProjectStore.open(folder) as store:
        assert states(store)["e.png"] == ("pool", "unseen", 0)


def test_import_keeps_ignore_regions_and_leaves_skipped_objects_partly_reviewed(
    tmp_path: Path, capsys
) -> None:
    """VOC ``difficult`` objects become the project's ignore regions; an image whose object
    was skipped (``--skip-bad``) is partly reviewed, so the object is not trained as
    background."""
    root = tmp_path / "voc"
    image(root / "JPEGImages" / "a.jpg")
    image(root / "JPEGImages" / "b.jpg")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        voc_xml("a.jpg", [("cell", 2, 2, 20, 20), ("cell", 30, 10, 50, 40, 1)])
    )
    (root / "Annotations" / "b.xml").write_text(
        voc_xml("b.jpg", [("cell", 2, 2, 20, 20), ("cell", "50,0", 10, 60, 40)])
    )
    project = tmp_path / "project"
    run(capsys, "init", str(project))
    code, out, err = run(capsys, "import", str(project), str(root), "--format", "voc", "--skip-bad")
    assert code == 0 and "imported 2 images and 2 boxes" in out and "1 ignore region" in out
    assert "1 image lost objects that could not be read; they are partly reviewed" in err
    with ProjectStore.open(project) as store:
        got = states(store)
        a = store.image_by_path(root / "JPEGImages" / "a.jpg")
        assert [r.xyxy for r in store.ignore_regions(image_id=a.id)] == [(29, 9, 50, 40)]
    assert got == {"a.jpg": ("train", "complete", 1), "b.jpg": ("train", "partial", 1)}


def test_store_import_summary_lists_every_image_left_out(tmp_path: Path) -> None:
    """The store's importer: repeated paths and images already reviewed are listed with why."""
    a = image(tmp_path / "p" / "a.png")
    rec = ImageRecord(a, 64, 48, [BoxRecord(1, 1, 9, 9, "cell")], annotated=True)
    with ProjectStore.create(tmp_path / "p") as store:
        first = store.import_dataset(Dataset(["cell"], [rec, rec]))
        again = store.import_dataset(Dataset(["cell"], [rec]))
    assert first["images_added"] == 1 and first["images_skipped"] == 1
    assert first["left_out"] == [
        {"path": "a.png", "reason": "listed twice in the dataset", "boxes": 1}
    ]
    assert again["images_added"] == 0 and again["boxes_added"] == 0
    assert [i["reason"] for i in again["left_out"]] == [
        "already in the project with review work, which is kept"
    ]


def test_import_images_takes_one_image_file_and_names_the_fix_for_anything_else(
    tmp_path: Path, capsys
) -> None:
    """`import --format images FILE` said "FILE: not a folder" with no fix: one image file
    is now imported as it is; a missing path or a file of no image type names what to give."""
    proj = tmp_path / "proj"
    assert main(["init", str(proj)]) == 0
    one = image(tmp_path / "elsewhere" / "one.png")
    code, out, err = run(capsys, "import", str(proj), str(one), "--format", "images")
    assert code == 0 and "imported 1 image" in out + err
    with ProjectStore.open(proj) as store:
        assert [Path(r.path).name for r in store.images()] == ["one.png"]
        assert store.abs_path(store.images()[0]) == one.resolve()
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    for bad, what in ((notes, "a file of no image type"), (tmp_path / "gone.png", "not found")):
        code, _, err = run(capsys, "import", str(proj), str(bad), "--format", "images")
        assert code != 0 and f"{bad.name}: {what}; give a folder of images or one image" in err


def test_a_file_name_that_is_not_utf8_is_left_out_by_name_and_the_rest_imports(
    tmp_path: Path, capsys
) -> None:
    """Found by a new user: one such name crashed init, import (even --skip-bad) and open
    with a UnicodeEncodeError, and nothing of the folder was imported."""
    import os

    folder = tmp_path / "imgs"
    image(folder / "a.png")
    bad = os.fsdecode(bytes(folder) + b"/lat\xe9.png")  # Latin-1 e-acute: not UTF-8
    image(Path(bad), colour=10)
    code, out, err = run(capsys, "init", str(folder))
    assert code == 0 and "imported 1 image" in out
    assert "not valid UTF-8 (rename the file, then import it again) (e.g. lat\\xe9.png)" in err
    with ProjectStore.open(folder) as store:
        assert [Path(r.path).name for r in store.images()] == ["a.png"]
    for argv in (["--skip-bad"], []):  # the import command, lenient and strict alike
        code, out, err = run(capsys, "import", str(folder), "--format", "images", bad, *argv)
        assert code == 0 and "lat\\xe9.png" in err
    # the store's importer itself, whatever reader made the record
    with ProjectStore.open(folder) as store:
        summary = store.import_dataset(Dataset([], [ImageRecord(Path(bad), 64, 48, [])]))
    assert summary["images_added"] == 0 and summary["left_out"][0]["path"].endswith("\\xe9.png")


def _header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG of the given size that holds no pixel data (its header says the size)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_the_documented_side_limit_governs_not_pillows_pixel_guard(tmp_path: Path, capsys) -> None:
    """Found by a new user: a 15,000 x 15,000 px PNG (under the documented 20,000 px a side)
    was refused by Pillow's decompression-bomb guard (179 Mpx) with no fix named."""
    from napari_al.core.images import MAX_SIDE, image_size

    side = 15_000
    assert side * side > 178_956_970 and side <= MAX_SIDE  # Pillow's default limit
    png = _header_only_png(tmp_path / "imgs" / "big.png", side, side)
    assert image_size(png) == (side, side)
    image(tmp_path / "imgs" / "a.png")
    code, out, err = run(capsys, "init", str(tmp_path / "imgs"))
    assert code == 0 and "imported 1 image" in out
    assert "left out" in err and "big.png: image data is truncated" in err  # named, why
    # over the documented limit: refused from the header, with the fix
    huge = _header_only_png(tmp_path / "huge" / "huge.png", 25_000, 15_000)
    code, out, err = run(capsys, "import", str(tmp_path / "imgs"), "--format", "images",
                         str(huge), "--skip-bad")  # fmt: skip
    assert code == 0 and "larger than the 20000 px per side" in err and "tiled TIFF" in err
    assert "no image in it could be read: see the warnings above" in out


def test_images_left_out_beside_a_skipped_annotation_point_at_the_annotation(
    tmp_path: Path,
) -> None:
    """A malformed a.xml is skipped, so a.jpg is left out; the note used to advise only
    ``--format images``, which imports the image without its labels."""
    folder = voc_folder(tmp_path / "voc")
    with ProjectStore.create(tmp_path / "p") as store:
        dataset, _summary = import_into(store, folder, "voc")
        assert not [w for w in dataset.warnings if "left out" in w]
    (folder / "Annotations" / "a.xml").write_text("<annotation><object>")
    with ProjectStore.create(tmp_path / "q") as store:
        dataset, _summary = import_into(store, folder, "voc", strict=False)
    left = [w for w in dataset.warnings if w.startswith("left out") and "a.jpg" in w]
    assert len(left) == 1 and "--format images" in left[0], dataset.warnings
    assert "in a record skipped above, fix it and import again" in left[0]
