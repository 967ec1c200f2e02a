"""A YOLO label file without its image is reported once, whichever way the folder is read.

Found by a newcomer: ``labels/train/orphan.txt`` in an Ultralytics layout was warned about
twice (``napari-al import --skip-bad``, ``napari-al init``): the reader walked ``labels/`` and
then ``labels/train/`` inside it again. Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.formats import read_yolo

LINE = "0 0.5 0.5 0.2 0.2\n"


def _dataset(root: Path, layout: str) -> Path:
    """One image ``a.png`` with its labels and one orphan label file, in ``layout``:
    ``ultralytics`` (images/train + labels/train, data.yaml), ``folders`` (the same without
    data.yaml: splits from the folders), ``flat`` (images/ + labels/, classes.txt)."""
    sub = "train" if layout != "flat" else ""
    images, labels = root / "images" / sub, root / "labels" / sub
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(images / "a.png")
    (labels / "a.txt").write_text(LINE)
    (labels / "orphan.txt").write_text(LINE)
    if layout == "ultralytics":
        (root / "data.yaml").write_text("names: [cell]\ntrain: images/train\n")
    else:
        (root / "classes.txt").write_text("cell\n")
    return root


@pytest.mark.parametrize("layout", ["ultralytics", "folders", "flat"])
def test_the_reader_reports_an_orphan_label_file_once(tmp_path: Path, layout: str) -> None:
    root = _dataset(tmp_path / "y", layout)
    dataset = read_yolo(root, strict=False)
    orphan = [w for w in dataset.warnings if "orphan.txt" in w]
    assert len(orphan) == 1, dataset.warnings
    assert [Path(r.path).name for r in dataset.images] == ["a.png"]


@pytest.mark.parametrize("command", ["import", "init"])
def test_the_command_line_warns_once(tmp_path: Path, capsys, command: str) -> None:
    root = _dataset(tmp_path / "y", "ultralytics")
    if command == "import":
        project = tmp_path / "proj"
        assert main(["init", str(project)]) == 0
        argv = ["import", str(project), str(root), "--format", "yolo", "--skip-bad"]
    else:
        argv = ["init", str(root)]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("orphan.txt") == 1, err
