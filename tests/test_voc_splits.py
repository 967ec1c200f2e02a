"""Training images without an annotation go to the pool (found by newcomers): VOC ``ImageSets``
lists naming images without an XML, YOLO training images without a label file.

An image that ``train.txt`` lists but no XML annotates used to be imported ``unseen`` in
``train``: predicted, never ranked (rank asks about the pool), never trained (nobody labelled
it). It now goes to the pool, with a warning naming the list. Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tagged_image

from napari_al.cli import main as cli_main
from napari_al.core.formats import FormatError, read_dataset
from napari_al.core.store import ProjectStore


def _voc(root: Path, annotated: list[str], images_only: list[str], lists: dict[str, str]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem in annotated + images_only:
        tagged_image(root / "JPEGImages" / f"{stem}.jpg", (64, 48), quality=95)
    for stem in annotated:
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>48"
            "</height><depth>3</depth></size><object><name>cell</name><bndbox><xmin>2</xmin>"
            "<ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
        )
    for split, text in lists.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
    return root


def _splits(ds) -> dict[str, str | None]:
    return {Path(im.path).stem: im.split for im in ds.images}


def test_a_listed_training_image_without_annotation_goes_to_the_pool(tmp_path: Path) -> None:
    root = _voc(
        tmp_path / "voc",
        ["a", "b", "v"],
        ["c", "d", "u"],
        {"train": "a\nc\nb\nd\nc\n", "val": "v\nu\n"},
    )
    ds = read_dataset(root, "voc")
    assert _splits(ds) == {"a": "train", "b": "train", "c": "pool", "d": "pool", "v": "val",
                           "u": "val"}  # fmt: skip
    said = [w for w in ds.warnings if "no annotation" in w]
    assert said == [
        "ImageSets/Main/train.txt: 2 listed images ('c', 'd') have no annotation: imported "
        "into the pool of images to label, where rank asks about them"
    ]


def test_a_listed_image_in_two_splits_is_named_by_the_list_that_placed_it(tmp_path: Path) -> None:
    root = _voc(tmp_path / "voc", ["a"], ["c"], {"train": "a\nc\n", "val": "c\n"})
    with pytest.raises(FormatError, match=r"val\.txt: line 1: image id 'c' is already in split "
                                          r"'train'"):  # fmt: skip
        read_dataset(root, "voc")
    ds = read_dataset(root, "voc", strict=False)
    assert _splits(ds) == {"a": "train", "c": "pool"}
    assert any("(imported into the pool: it has no annotation)" in w for w in ds.warnings)


def test_cli_init_puts_them_in_the_pool_and_says_so(tmp_path: Path, capsys) -> None:
    root = _voc(tmp_path / "voc", ["a", "b"], ["c"], {"train": "a\nb\nc\n"})
    assert cli_main(["init", str(root)]) == 0
    out = capsys.readouterr()
    assert "1 listed image ('c') has no annotation" in out.out + out.err
    with ProjectStore.open(root) as store:
        pool = {Path(r.path).stem: r.review_state for r in store.images(split="pool")}
        train = {Path(r.path).stem for r in store.images(split="train")}
    assert pool == {"c": "unseen"} and train == {"a", "b"}


def test_a_yolo_training_image_without_a_label_file_goes_to_the_pool(tmp_path: Path) -> None:
    """An empty label file is an image without objects (complete, stays in train); no label
    file at all is an image nobody labelled (pool, with a warning), in every reader."""
    root = tmp_path / "yolo"
    for stem in ("a", "b", "c", "d"):
        tagged_image(root / "images" / "train" / f"{stem}.jpg", (64, 48), quality=95)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "b.txt").write_text("")  # no objects
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cell]\n")
    ds = read_dataset(root, "yolo")
    assert _splits(ds) == {"a": "train", "b": "train", "c": "pool", "d": "pool"}
    assert [w for w in ds.warnings if "no annotation" in w] == [
        "2 training images (c.jpg, d.jpg) have no annotation (an empty label file marks an "
        "image without objects): imported into the pool of images to label, where rank asks "
        "about them"
    ]
    assert cli_main(["init", str(root)]) == 0
    with ProjectStore.open(root) as store:
        states = {Path(r.path).stem: (r.split, r.review_state) for r in store.images()}
    assert states == {
        "a": ("train", "complete"),
        "b": ("train", "complete"),
        "c": ("pool", "unseen"),
        "d": ("pool", "unseen"),
    }
