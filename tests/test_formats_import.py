"""What the store makes of a reader's skipped objects and ignore regions (issue 16 items 5, 6).

A skipped object leaves its image partly reviewed (never trained as background); VOC
``difficult`` and COCO ``iscrowd`` objects become the store's ignore regions, which training
and evaluation leave out. Every input is generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tagged_image

from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.project import export_dataset, import_into
from napari_al.core.store import ProjectStore


def _jpeg(path: Path, w: int = 64, h: int = 48) -> Path:
    return tagged_image(path, (w, h), quality=95)  # its content depends on the path


def _voc_object(name: str, box: tuple, difficult: int = 0) -> str:
    a, b, c, d = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{a}</xmin>"
        f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
    )


def _voc(root: Path, objects: dict[str, list[str]]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    for stem, objs in objects.items():
        _jpeg(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{''.join(objs)}</annotation>"
        )
    return root


def _states(store: ProjectStore) -> dict[str, str]:
    return {Path(r.path).stem: r.review_state for r in store.images()}


# ---- item 5: a skipped object leaves its image partly reviewed --------------------------------


def test_skipped_object_imports_its_image_partly_reviewed(tmp_path: Path) -> None:
    """VOC ``50,0`` and a COCO annotation with a broken bbox, with ``--skip-bad``: the image is
    ``partial`` with its good boxes accepted, and the summary counts it."""
    voc = _voc(
        tmp_path / "voc",
        {
            "a": [_voc_object("cell", (1, 1, 10, 10)), _voc_object("cell", ("50,0", 1, 60, 10))],
            "b": [_voc_object("cell", (1, 1, 10, 10))],
        },
    )
    with ProjectStore.create(tmp_path / "p1") as store:
        _, summary = import_into(store, voc, "voc", strict=False)
        assert _states(store) == {"a": "partial", "b": "complete"}
        assert (summary["partial"], summary["annotated"], summary["boxes_added"]) == (1, 2, 2)
        assert {b.status for b in store.boxes()} == {"accepted"}
        assert store.images(split="train")  # still a training image (its boxes are labels)

    coco = tmp_path / "coco"
    _jpeg(coco / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, "x", 5, 5]},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (coco / "ann.json").write_text(json.dumps(data))
    with ProjectStore.create(tmp_path / "p2") as store:
        _, summary = import_into(store, coco / "ann.json", "coco", strict=False)
        assert _states(store) == {"a": "partial"}
        assert summary["partial"] == 1


def test_partial_import_trains_no_background_on_the_skipped_object(tmp_path: Path) -> None:
    """The training example of such an image is not ``complete``: unlabelled area is not
    background (Desai et al. partial labels)."""
    from napari_al.core.workflow import training_examples

    voc = _voc(
        tmp_path / "voc",
        {"a": [_voc_object("cell", (1, 1, 10, 10)), _voc_object("cell", (1, "x", 60, 10))]},
    )
    with ProjectStore.create(tmp_path / "p") as store:
        import_into(store, voc, "voc", strict=False)
        (ex,) = training_examples(store, store.training_snapshot())
        assert ex.complete is False
        assert ex.boxes.tolist() == [[0, 0, 10, 10]]


# ---- item 6: difficult / iscrowd become the store's ignore regions ----------------------------


def test_difficult_and_crowd_objects_become_store_ignore_regions(tmp_path: Path) -> None:
    voc = _voc(
        tmp_path / "voc",
        {"a": [_voc_object("cell", (1, 1, 10, 10)), _voc_object("rbc", (21, 21, 30, 30), 1)]},
    )
    with ProjectStore.create(tmp_path / "p1") as store:
        _, summary = import_into(store, voc, "voc")
        (row,) = store.images()
        assert row.review_state == "complete"
        assert [r.xyxy for r in store.ignore_regions(row.id)] == [(20, 20, 30, 30)]
        assert [b.xyxy for b in store.boxes(row.id)] == [(0, 0, 10, 10)]
        assert [c.name for c in store.classes()] == ["cell", "rbc"]
        assert summary["ignore_regions_added"] == 1

    coco = tmp_path / "coco"
    _jpeg(coco / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (coco / "ann.json").write_text(json.dumps(data))
    with ProjectStore.create(tmp_path / "p2") as store:
        import_into(store, coco / "ann.json", "coco")
        (row,) = store.images()
        assert [r.xyxy for r in store.ignore_regions(row.id)] == [(20, 20, 30, 30)]
        assert len(store.boxes(row.id)) == 1


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_classless_region_exported_per_class_comes_back_once(tmp_path: Path, fmt: str) -> None:
    """A region of no class is written once per class; re-imported, it is one region again."""
    img = _jpeg(tmp_path / "proj" / "a.jpg")
    rec = ImageRecord(img, 64, 48, [BoxRecord(0, 0, 10, 10, "cell")], "val", True)
    with ProjectStore.create(tmp_path / "proj") as store:
        store.import_dataset(Dataset(classes=["cell", "rbc", "wbc"], images=[rec]))
        (row,) = store.images()
        store.add_ignore_region(row.id, (20, 20, 30, 30))
        export_dataset(store, tmp_path / "out", fmt)
    src = tmp_path / "out" / "annotations.json" if fmt == "coco" else tmp_path / "out"
    with ProjectStore.create(tmp_path / "back") as store:
        _, summary = import_into(store, src, fmt)
        (row,) = store.images()
        assert [r.xyxy for r in store.ignore_regions(row.id)] == [(20, 20, 30, 30)]
        assert summary["ignore_regions_added"] == 1
        assert (row.split, row.review_state) == ("val", "complete")


def test_ignore_region_outside_the_image_refuses_the_import(tmp_path: Path) -> None:
    from napari_al.core.store import StoreError

    img = _jpeg(tmp_path / "a.jpg")
    rec = ImageRecord(img, 64, 48, annotated=True)
    rec.ignore_regions.append(BoxRecord(50, 40, 90, 47, ""))
    with ProjectStore.create(tmp_path / "p") as store:
        with pytest.raises(StoreError, match="ignore region 0"):
            store.import_dataset(Dataset(classes=["cell"], images=[rec]))
        assert store.images() == []


def test_imported_ignore_regions_reach_the_training_example(tmp_path: Path) -> None:
    """Neither positives nor background in training: the example carries the region."""
    from napari_al.core.workflow import training_examples

    voc = _voc(
        tmp_path / "voc",
        {"a": [_voc_object("cell", (1, 1, 10, 10)), _voc_object("cell", (21, 21, 30, 30), 1)]},
    )
    with ProjectStore.create(tmp_path / "p") as store:
        import_into(store, voc, "voc")
        (ex,) = training_examples(store, store.training_snapshot())
        assert ex.boxes.tolist() == [[0, 0, 10, 10]]
        np.testing.assert_array_equal(ex.ignore_regions, [[20, 20, 30, 30]])
        assert ex.background_boxes.shape == (0, 4)


# ---- item 14 / 12: the CLI's --image-root (COCO) and --images (VOC) ---------------------------


def test_cli_import_image_root_and_images_flags(tmp_path: Path, capsys) -> None:
    from napari_al.cli import main

    imgs = tmp_path / "pictures"
    _jpeg(imgs / "sub" / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "sub/a.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "coco.json").write_text(json.dumps(data))
    proj = tmp_path / "p"
    main(["init", str(proj)])
    args = ["import", str(proj), str(tmp_path / "ann" / "coco.json"), "--format", "coco"]
    assert main(args) == 1  # sub/a.jpg is not beside the JSON
    assert "sub/a.jpg" in capsys.readouterr().err
    assert main([*args, "--image-root", str(imgs)]) == 0
    assert "1 image and 1 box" in capsys.readouterr().out

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "b.xml").write_text(
        "<annotation><filename>b.jpg</filename><size><width>64</width><height>48</height>"
        f"</size>{_voc_object('cell', (1, 1, 10, 10))}</annotation>"
    )
    _jpeg(tmp_path / "elsewhere" / "b.jpg")
    args = ["import", str(proj), str(voc), "--format", "voc"]
    assert main([*args, "--images", str(tmp_path / "elsewhere")]) == 0
    assert "1 image and 1 box" in capsys.readouterr().out
    # a flag of the other format is a one-line error, not a traceback
    assert main([*args, "--image-root", str(imgs)]) == 1
    assert "--image-root applies to --format coco only" in capsys.readouterr().err


# ---- round-trip details (docs/formats.md "Round trips") ---------------------------------------


def test_partly_reviewed_marks_and_sub_pixel_edges(tmp_path: Path) -> None:
    """VOC ``<partial>1`` and COCO ``"partial": true`` carry a partly reviewed image; a VOC
    box narrower than a pixel at the far edge stays one pixel inside the image."""
    from napari_al.core.formats import FormatError, read_coco, read_voc, write_coco, write_voc

    img = _jpeg(tmp_path / "a.jpg")
    rec = ImageRecord(img, 64, 48, [BoxRecord(63.75, 47.8, 64, 48, "cell")], "train", True)
    rec.partial = True
    ds = Dataset(classes=["cell"], images=[rec])
    write_voc(ds, tmp_path / "v")
    write_coco(ds, tmp_path / "c.json")
    (v,) = read_voc(tmp_path / "v").images
    (c,) = read_coco(tmp_path / "c.json").images
    assert v.partial and c.partial
    assert [b.xyxy() for b in v.boxes] == [(63, 47, 64, 48)]
    data = json.loads((tmp_path / "c.json").read_text())
    data["images"][0]["partial"] = "yes"
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"images\[0\]: partial is 'yes', not true/false"):
        read_coco(tmp_path / "c.json")
    xml = tmp_path / "v" / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<partial>1<", "<partial>maybe<"))
    with pytest.raises(FormatError, match=r"a\.xml: <partial> is 'maybe', not 0 or 1"):
        read_voc(tmp_path / "v")


def test_export_names_the_partly_reviewed_images_it_leaves_out(tmp_path: Path, capsys) -> None:
    """An import that skips a bad object leaves its image partly reviewed, and an export
    without --all leaves that image and its good boxes out: it now says so (found by a
    newcomer: 36 of 51 human boxes went unsaid)."""
    from napari_al.cli import main

    voc = _voc(
        tmp_path / "voc",
        {
            "a": [_voc_object("cell", (1, 1, 10, 10)), _voc_object("cell", ("50,0", 1, 60, 10))],
            "b": [_voc_object("cell", (1, 1, 10, 10))],
        },
    )
    assert main(["init", str(voc)]) == 0
    capsys.readouterr()
    assert main(["export", str(voc), str(tmp_path / "out.json"), "--format", "coco"]) == 0
    out, err = capsys.readouterr()
    assert "exported 1 image and 1 box" in out
    assert (
        "note: left out 1 partly reviewed image (1 human box, e.g. a.jpg): mark them complete"
    ) in err
    assert main(["export", str(voc), str(tmp_path / "all.json"), "--format", "coco", "--all"]) == 0
    assert "partly reviewed" not in capsys.readouterr().err
