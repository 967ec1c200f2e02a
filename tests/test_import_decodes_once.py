"""An import decodes each image's pixels once. Every input is generated here.

The readers' pool notes (a training image without annotation, a VOC image no list names) name
only the images the import adds, so they check that the pixels decode
(:func:`~napari_al.core.images.check_pixels`); the store's import checked them again, about
18 ms per 1080p JPEG. The readers now pass their result along on the record
(``ImageRecord.pixel_check``) and the import uses it while the file is unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import tagged_image
from PIL import ImageFile

from napari_al.core.formats import read_dataset
from napari_al.core.project import import_folder, import_into
from napari_al.core.store import ProjectStore

POOL = "imported into the pool of images to label"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Pixel decodes by file name (Pillow's ``ImageFile.load``: what decodes a JPEG)."""
    counts: Counter[str] = Counter()
    load = ImageFile.ImageFile.load

    def counted(self: ImageFile.ImageFile) -> object:
        counts[Path(str(self.filename)).name] += 1
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return counts


def _truncated_jpeg(path: Path) -> None:
    """A JPEG whose header reads but whose pixel data is cut short."""
    tagged_image(path, (200, 200), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _yolo(root: Path) -> Path:
    """a.jpg labelled; b.jpg, c.jpg training images without a label file; d.jpg corrupt."""
    for name in ("a", "b", "c"):
        tagged_image(root / "images" / "train" / f"{name}.jpg")
    _truncated_jpeg(root / "images" / "train" / "d.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [cell]\ntrain: images/train\n")
    return root


def _voc(root: Path) -> Path:
    """a.jpg annotated; c.jpg and d.jpg (corrupt) in train.txt without annotation; e.jpg in
    no list."""
    for name in ("a", "c", "e"):
        tagged_image(root / "JPEGImages" / f"{name}.jpg")
    _truncated_jpeg(root / "JPEGImages" / "d.jpg")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height>"
        "<depth>3</depth></size><object><name>cell</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
        "<xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nc\nd\n")
    return root


def _coco(root: Path) -> Path:
    """a.jpg with a box, b.jpg without; d.jpg corrupt."""
    for name in ("a", "b"):
        tagged_image(root / f"{name}.jpg")
    _truncated_jpeg(root / "d.jpg")
    images = [
        {"id": i, "file_name": f"{n}.jpg", "width": w, "height": h}
        for i, (n, w, h) in enumerate([("a", 64, 48), ("b", 64, 48), ("d", 200, 200)], 1)
    ]
    data = {
        "images": images,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (root / "coco.json").write_text(json.dumps(data))
    return root / "coco.json"


def _images(root: Path) -> Path:
    for name in ("a", "b"):
        tagged_image(root / f"{name}.jpg")
    _truncated_jpeg(root / "d.jpg")
    return root


LAYOUTS = {"yolo": _yolo, "voc": _voc, "coco": _coco, "images": _images}


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_an_import_decodes_each_image_once(tmp_path: Path, fmt: str, decodes: Counter[str]) -> None:
    source = LAYOUTS[fmt](tmp_path / "data")
    with ProjectStore.create(tmp_path / "p") as store:
        dataset, summary = import_into(store, source, fmt, strict=False)
        added = sorted(Path(r.path).name for r in store.images())
    names = sorted(p.name for p in (tmp_path / "data").rglob("*.jpg"))
    assert dict(decodes) == dict.fromkeys(names, 1), dict(decodes)
    assert "d.jpg" not in added and "a.jpg" in added
    assert [Path(i["path"]).name for i in summary["left_out"]] == ["d.jpg"]
    notes = [w for w in dataset.warnings if POOL in w]
    assert not any("d.jpg" in w or "'d'" in w for w in notes)
    assert bool(notes) == (fmt in ("yolo", "voc"))


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_opening_a_labelled_folder_decodes_each_image_once(
    tmp_path: Path, fmt: str, decodes: Counter[str]
) -> None:
    folder = LAYOUTS[fmt](tmp_path / "data")
    with ProjectStore.create(folder) as store:
        summary = import_folder(store, folder)
    assert summary is not None
    assert dict(decodes) == {p.name: 1 for p in folder.rglob("*.jpg")}, dict(decodes)
    assert [Path(i["path"]).name for i in summary["left_out"]] == ["d.jpg"]


def test_a_file_changed_after_reading_is_checked_again(
    tmp_path: Path, decodes: Counter[str]
) -> None:
    """The reader's result is used only for the file it checked: one rewritten since (here
    truncated) is decoded again, and left out as corrupt."""
    root = _yolo(tmp_path / "data")
    dataset = read_dataset(root, "yolo")
    assert decodes["b.jpg"] == 1
    _truncated_jpeg(root / "images" / "train" / "b.jpg")
    with ProjectStore.create(tmp_path / "p") as store:
        summary = store.import_dataset(dataset)
    assert decodes["b.jpg"] == 2
    left = {Path(i["path"]).name: i["reason"] for i in summary["left_out"]}
    assert set(left) == {"b.jpg", "d.jpg"}
    assert "truncated or corrupt" in next(
        i["detail"] for i in summary["left_out"] if i["path"].endswith("b.jpg")
    )
