"""Edge cases of the importers' notes and errors. Every input is generated here.

- A pool note (a training image without annotation goes to the pool) named an image whose
  pixels cannot be decoded (a truncated JPEG whose header reads), which the import then left
  out as corrupt: it was named twice, once wrongly. Each note now names only the images the
  import adds (YOLO's note, VOC's train-list note, VOC's unlisted-image note).
- ``napari-al import --format yolo --skip-bad`` of a set whose every ``data.yaml`` (or
  ``obj.data``) split entry names nothing said "imported 0 images" and succeeded; it is now
  an error naming each entry and the fix, and nothing (not even the classes) is imported.
- A VOC image that no XML annotates and no ``ImageSets`` list names joined the pool without a
  word; one note now names such images (count and first names), as YOLO's does; so does a
  YOLO image without a label file in a set without splits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.formats import FormatError, read_dataset, read_yolo
from napari_al.core.store import ProjectStore

POOL = "imported into the pool of images to label"


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG whose header reads (its size is known) but whose pixel data is cut short."""
    tagged_image(path, (200, 200), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _voc_xml(folder: Path, stem: str) -> None:
    """``folder/<stem>.xml``: one box on the 64 x 48 image ``<stem>.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.xml").write_text(
        f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>48"
        "</height><depth>3</depth></size><object><name>cell</name><bndbox><xmin>2</xmin>"
        "<ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )


def _lines(text: str) -> list[str]:
    return [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith(("napari", "warn"))]


# ---- 1. a pool note names only the images that reach the pool ------------------------------


def test_yolo_pool_note_leaves_out_an_undecodable_image(tmp_path: Path, capsys) -> None:
    root = tmp_path / "y"
    tagged_image(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    tagged_image(root / "images" / "train" / "b.jpg")
    _truncated_jpeg(root / "images" / "train" / "d.jpg")
    (root / "data.yaml").write_text("names: [cell]\ntrain: images/train\n")

    ds = read_dataset(root, "yolo")
    assert [w for w in ds.warnings if POOL in w] == [
        "1 training image (b.jpg) has no annotation (an empty label file marks an image "
        "without objects): imported into the pool of images to label, where rank asks about them"
    ]
    project = tmp_path / "p"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    assert main(["import", str(project), str(root), "--format", "yolo"]) == 0
    err = _lines(capsys.readouterr().err)
    assert [ln for ln in err if "d.jpg" in ln] == [
        next(ln for ln in err if ln.startswith("warning: left out") and "d.jpg" in ln)
    ], err  # named once, as corrupt
    assert "truncated or corrupt" in next(ln for ln in err if "d.jpg" in ln)
    with ProjectStore.open(project) as store:
        assert {Path(r.path).name: r.split for r in store.images()} == {
            "a.jpg": "train",
            "b.jpg": "pool",
        }


def test_voc_train_list_note_leaves_out_an_undecodable_image(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    for stem in ("a", "c"):
        tagged_image(root / "JPEGImages" / f"{stem}.jpg")
    _truncated_jpeg(root / "JPEGImages" / "d.jpg")
    _voc_xml(root / "Annotations", "a")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nc\nd\n")
    ds = read_dataset(root, "voc")
    assert [w for w in ds.warnings if POOL in w] == [
        "ImageSets/Main/train.txt: 1 listed image ('c') has no annotation: imported into the "
        "pool of images to label, where rank asks about them"
    ]
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nd\n")  # only the corrupt one
    (root / "ImageSets" / "Main" / "val.txt").write_text("c\n")
    assert not [w for w in read_dataset(root, "voc").warnings if POOL in w]


# ---- 2. --skip-bad that skips every split entry is an error --------------------------------


def _yolo_nowhere(root: Path, config: str, text: str) -> Path:
    """Two labelled images under images/train, and a config whose entries name nothing."""
    for name in ("a", "b"):
        tagged_image(root / "images" / "train" / f"{name}.png")
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"{name}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / config).write_text(text)
    return root


CONFIGS = {
    "data.yaml": ("data.yaml", "names: [cell]\ntrain: gone/train\nval: gone/val\n"),
    "obj.data": ("obj.data", "classes = 1\ntrain = gone/train.txt\nnames = obj.names\n"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_skip_bad_of_every_split_entry_is_an_error(tmp_path: Path, capsys, case: str) -> None:
    config, text = CONFIGS[case]
    root = _yolo_nowhere(tmp_path / "y", config, text)
    (root / "obj.names").write_text("cell\n")
    project = tmp_path / "p"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    assert main(["import", str(project), str(root), "--format", "yolo", "--skip-bad"]) == 1
    out = capsys.readouterr()
    (line,) = _lines(out.err)
    assert line.startswith(f"napari-al: error: {config}: train: '"), line
    assert "gone/train" in line, line
    assert "not found" in line and line.endswith("; nothing imported"), line
    if case == "data.yaml":
        assert "val: 'gone/val' not found" in line
        assert "correct the paths, or remove the entries from data.yaml" in line
    else:
        assert "correct the path, or remove the entry from obj.data" in line
    assert "imported 0" not in out.out
    with ProjectStore.open(project) as store:
        assert store.images() == [] and store.classes() == []
    # the reader without allow_empty=False, and init, still read the rest (the images)
    assert read_yolo(root, strict=False).images == []
    with pytest.raises(FormatError, match="nothing imported"):
        read_yolo(root, strict=False, allow_empty=False)


def test_skip_bad_with_another_entry_still_imports_it(tmp_path: Path, capsys) -> None:
    """One entry skipped, another naming images: the rest is imported, as before."""
    root = _yolo_nowhere(
        tmp_path / "y", "data.yaml", "names: [cell]\ntrain: images/train\nval: gone/val\n"
    )
    project = tmp_path / "p"
    assert main(["init", str(project)]) == 0
    assert main(["import", str(project), str(root), "--format", "yolo", "--skip-bad"]) == 0
    assert "imported 2 images and 2 boxes" in capsys.readouterr().out


# ---- 3. unlisted images without annotation are named ---------------------------------------


@pytest.mark.parametrize("lists", [True, False], ids=["imagesets", "no-imagesets"])
def test_voc_image_no_xml_and_no_list_names_is_named(tmp_path: Path, capsys, lists: bool) -> None:
    root = tmp_path / "voc"
    for stem in ("a", "b", "c", "d", "e", "f"):
        tagged_image(root / "JPEGImages" / f"{stem}.jpg")
    _voc_xml(root / "Annotations", "a")
    _voc_xml(root / "Annotations", "b")
    _truncated_jpeg(root / "JPEGImages" / "g.jpg")  # left out by the import: not named
    if lists:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
        (root / "ImageSets" / "Main" / "pool.txt").write_text("f\n")  # named by a list
    ds = read_dataset(root, "voc")
    n, names = (3, "c.jpg, d.jpg, e.jpg") if lists else (4, "c.jpg, d.jpg, e.jpg, ...")
    note = (
        f"JPEGImages/: {n} images ({names}) have no annotation (no .xml file) and no "
        "ImageSets list: imported into the pool of images to label, where rank asks about them"
    )
    assert [w for w in ds.warnings if POOL in w] == [note]
    assert main(["init", str(root)]) == 0
    err = _lines(capsys.readouterr().err)
    assert f"warning: {note}" in err
    with ProjectStore.open(root) as store:
        pool = sorted(Path(r.path).stem for r in store.images(split="pool"))
    assert pool == ["c", "d", "e", "f"]


def test_labelimg_voc_image_without_xml_is_named(tmp_path: Path) -> None:
    """LabelImg's layout, each XML beside its image: the note names no folder."""
    root = tmp_path / "labelimg"
    for stem in ("a", "c"):
        tagged_image(root / f"{stem}.jpg")
    _voc_xml(root, "a")
    ds = read_dataset(root, "voc")
    assert [w for w in ds.warnings if POOL in w] == [
        "1 image (c.jpg) has no annotation (no .xml file) and no ImageSets list: imported "
        "into the pool of images to label, where rank asks about them"
    ]


def test_yolo_image_without_split_or_label_file_is_named(tmp_path: Path) -> None:
    """A YOLO set without splits (classes.txt, labels beside the images, as LabelImg
    writes them): an image without a label file joins the pool, named."""
    root = tmp_path / "y"
    for stem in ("a", "c"):
        tagged_image(root / f"{stem}.jpg")
    (root / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("cell\n")
    ds = read_dataset(root, "yolo")
    assert {Path(im.path).stem: im.split for im in ds.images} == {"a": None, "c": "pool"}
    assert [w for w in ds.warnings if POOL in w] == [
        "1 image (c.jpg) has no annotation (an empty label file marks an image without "
        "objects): imported into the pool of images to label, where rank asks about them"
    ]
