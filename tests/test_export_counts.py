"""``napari-al export`` counts what it wrote, and names what the format could not carry.

Found by a newcomer: ``export P OUT --format voc --all`` printed "exported 22 images and 82
boxes" having written 12 annotation files: the 10 unseen pool images, which a VOC export
without ``--copy-images`` cannot carry (only an annotation file names an image), were counted,
and nothing said they were left out. YOLO (image lists) and COCO (one JSON) carry them; their
counts were right and stay so. Every input is generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats.voc import write_voc
from napari_al.core.store import ProjectStore

N_LABELLED, N_UNSEEN = 2, 3


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Two complete images with 2 boxes each, three unseen pool images."""
    images = tmp_path / "images"
    images.mkdir()
    records = []
    for i in range(N_LABELLED + N_UNSEEN):
        path = images / f"img{i}.png"
        Image.new("RGB", (40, 30), (10 * i, 50, 90)).save(path)
        labelled = i < N_LABELLED
        boxes = [BoxRecord(1, 1, 10, 10, "cell"), BoxRecord(12, 5, 30, 20, "cell")]
        records.append(
            ImageRecord(
                path,
                40,
                30,
                boxes=boxes if labelled else [],
                annotated=labelled,
                split="train" if labelled else "pool",
            )
        )
    proj = tmp_path / "proj"
    with ProjectStore.create(proj) as store:
        summary = store.import_dataset(Dataset(classes=["cell"], images=records))
    assert summary["images_added"] == N_LABELLED + N_UNSEEN
    return proj


def _export(capsys, *argv: str) -> tuple[str, list[str]]:
    assert main(["export", *argv]) == 0
    out, err = capsys.readouterr()
    return out.strip(), [ln for ln in err.splitlines() if ln.strip()]


def test_voc_all_counts_what_it_wrote_and_names_the_rest(project: Path, tmp_path, capsys) -> None:
    out_dir = tmp_path / "voc"
    line, notes = _export(capsys, str(project), str(out_dir), "--format", "voc", "--all")
    written = sorted((out_dir / "Annotations").glob("*.xml"))
    assert len(written) == N_LABELLED
    assert line == f"exported {N_LABELLED} images and 4 boxes to {out_dir}", line
    left = [n for n in notes if "left out" in n]
    assert len(left) == 1 and f"left out {N_UNSEEN} unannotated images" in left[0], notes
    assert "--copy-images" in left[0] and "COCO" in left[0]


def test_voc_all_with_copied_images_carries_them(project: Path, tmp_path, capsys) -> None:
    out_dir = tmp_path / "voc"
    argv = [str(project), str(out_dir), "--format", "voc", "--all", "--copy-images"]
    line, notes = _export(capsys, *argv)
    assert len(list((out_dir / "JPEGImages").iterdir())) == N_LABELLED + N_UNSEEN
    assert line.startswith(f"exported {N_LABELLED + N_UNSEEN} images and 4 boxes"), line
    assert not any("left out" in n for n in notes), notes


def test_yolo_and_coco_all_carry_every_image(project: Path, tmp_path, capsys) -> None:
    coco = tmp_path / "labels.json"
    line, notes = _export(capsys, str(project), str(coco), "--format", "coco", "--all")
    assert len(json.loads(coco.read_text())["images"]) == N_LABELLED + N_UNSEEN
    assert line.startswith(f"exported {N_LABELLED + N_UNSEEN} images and 4 boxes"), line
    yolo = tmp_path / "yolo"
    line, notes = _export(capsys, str(project), str(yolo), "--format", "yolo", "--all")
    lists = [f for f in yolo.glob("*.txt") if f.name != "classes.txt"]
    listed = [p for f in lists for p in f.read_text().split()]
    assert len(listed) == N_LABELLED + N_UNSEEN
    assert line.startswith(f"exported {N_LABELLED + N_UNSEEN} images and 4 boxes"), line
    assert not any("left out" in n for n in notes), notes


def test_write_voc_says_what_it_left_out(tmp_path: Path) -> None:
    """The writer called directly (not through the export) says it too."""
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    dataset = Dataset(classes=["cell"], images=[ImageRecord(path, 8, 8, annotated=False)])
    write_voc(dataset, tmp_path / "voc")
    assert any("left out 1 unannotated image (" in w for w in dataset.warnings), dataset.warnings
