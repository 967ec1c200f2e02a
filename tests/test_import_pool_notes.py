"""The note naming the images an import puts in the pool names only images the import adds.

Found by a newcomer: importing a VOC dataset whose images were already in the project (the
same folder twice, or through a symlink to it) printed "imported 0 images" together with
"warning: JPEGImages/: 10 images ... imported into the pool". A reader cannot know what the
project holds; its note (:class:`~napari_al.core.data.ImageNote`) is now restated by the
import for the images it adds, and dropped when it adds none. Every reader that writes one is
covered: VOC (images without an XML; a train list naming images without one), YOLO (training
images without a label file); COCO and plain image folders write none. Every input is
generated here.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.data import ImageNote
from napari_al.core.formats import read_dataset
from napari_al.core.store import ProjectStore

POOL = "imported into the pool"


def _voc(root: Path, annotated: list[str], bare: list[str], train: list[str] | None) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for stem in annotated + bare:
        tagged_image(root / "JPEGImages" / f"{stem}.jpg", (64, 48), quality=95)
    for stem in annotated:
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>48"
            "</height><depth>3</depth></size><object><name>cell</name><bndbox><xmin>2</xmin>"
            "<ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
        )
    if train is not None:
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{s}\n" for s in train))
    return root


def _yolo(root: Path, labelled: list[str], bare: list[str]) -> Path:
    for stem in labelled + bare:
        tagged_image(root / "images" / "train" / f"{stem}.jpg", (64, 48), quality=95)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for stem in labelled:
        (root / "labels" / "train" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cell]\n")
    return root


def _import(capsys, project: Path, fmt: str, source: Path) -> tuple[str, list[str]]:
    """The ``imported ...`` line and the lines saying images join the pool."""
    assert main(["import", str(project), "--format", fmt, str(source)]) == 0
    out, err = capsys.readouterr()
    return out.strip(), [ln for ln in err.splitlines() if POOL in ln]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    with ProjectStore.create(proj):
        pass
    return proj


def test_voc_images_without_xml_twice(project: Path, tmp_path: Path, capsys) -> None:
    root = _voc(tmp_path / "voc", ["a", "b"], ["c", "d", "e"], train=None)
    line, notes = _import(capsys, project, "voc", root)
    assert line.startswith("imported 5 images") and len(notes) == 1, notes
    assert "JPEGImages/: 3 images (c.jpg, d.jpg, e.jpg)" in notes[0]
    line, notes = _import(capsys, project, "voc", root)
    assert line.startswith("imported 0 images") and notes == [], notes
    (tmp_path / "link").symlink_to(root, target_is_directory=True)  # the same images again
    line, notes = _import(capsys, project, "voc", tmp_path / "link")
    assert line.startswith("imported 0 images") and notes == [], notes


def test_voc_note_names_only_the_new_images(project: Path, tmp_path: Path, capsys) -> None:
    root = _voc(tmp_path / "voc", ["a"], ["c", "d"], train=None)
    _import(capsys, project, "voc", root)
    tagged_image(root / "JPEGImages" / "new.jpg", (64, 48), quality=95)
    line, notes = _import(capsys, project, "voc", root)
    assert line.startswith("imported 1 image ") and len(notes) == 1, (line, notes)
    assert "JPEGImages/: 1 image (new.jpg) has no annotation" in notes[0], notes
    with ProjectStore.open(project) as store:
        logged = store.actions(kind="import")[-1].payload["warnings"]
    assert [w for w in logged if POOL in w] == [notes[0].removeprefix("warning: ")]


def test_voc_train_list_note_twice(project: Path, tmp_path: Path, capsys) -> None:
    root = _voc(tmp_path / "voc", ["a", "b"], ["c", "d"], train=["a", "b", "c", "d"])
    line, notes = _import(capsys, project, "voc", root)
    assert len(notes) == 1 and "train.txt: 2 listed images ('c', 'd')" in notes[0], notes
    line, notes = _import(capsys, project, "voc", root)
    assert line.startswith("imported 0 images") and notes == [], notes


def test_yolo_training_images_without_labels_twice(project: Path, tmp_path: Path, capsys) -> None:
    root = _yolo(tmp_path / "yolo", ["a"], ["c", "d"])
    line, notes = _import(capsys, project, "yolo", root)
    assert len(notes) == 1 and "2 training images (c.jpg, d.jpg)" in notes[0], notes
    line, notes = _import(capsys, project, "yolo", root)
    assert line.startswith("imported 0 images") and notes == [], notes


def test_coco_and_image_folders_write_no_pool_note(project: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "plain"
    for stem in ("p", "q"):
        tagged_image(folder / f"{stem}.png")
    coco = tmp_path / "labels.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "plain/p.png", "width": 64, "height": 48}],
                "annotations": [],
                "categories": [{"id": 1, "name": "cell"}],
            }
        )
    )
    for fmt, source in (("images", folder), ("coco", coco), ("images", folder)):
        _, notes = _import(capsys, project, fmt, source)
        assert notes == [], (fmt, notes)


def test_the_note_is_text_that_pickles_as_text(tmp_path: Path) -> None:
    root = _voc(tmp_path / "voc", ["a"], ["c"], train=None)
    note = next(w for w in read_dataset(root, "voc").warnings if POOL in w)
    assert isinstance(note, ImageNote) and note.startswith("JPEGImages/: 1 image (c.jpg)")
    back = pickle.loads(pickle.dumps(note))
    assert type(back) is str and back == note
    assert json.loads(json.dumps([note])) == [str(note)]
    assert note.restated(lambda rec: False) is None
