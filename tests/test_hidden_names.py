"""An image whose name starts with a dot (hidden) round-trips through every export format.

Found by a newcomer: ``.hidden.jpg`` exported as YOLO with ``--copy-images`` did not re-import:
the reader's folder scan of ``images/train/`` skips hidden files (as Ultralytics' does), so its
label file was refused as having no image. The files an export names itself never start with
a dot now (``_hidden.png``, with a note); the files it references where they are keep their
name, and the readers find them by the name the labels give. Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import ProjectStore

#: Export flags, and the images a re-import of that export holds (VOC without copies
#: references images by the XML only: an unannotated image has none).
CASES = {
    "voc": (["--format", "voc"], {".hidden.png"}),
    "voc-copy": (["--format", "voc", "--copy-images"], {"_hidden.png", "_unseen.png"}),
    "yolo": (["--format", "yolo"], {".hidden.png", ".unseen.png"}),
    "yolo-copy": (["--format", "yolo", "--copy-images"], {"_hidden.png", "_unseen.png"}),
    "coco": (["--format", "coco"], {".hidden.png", ".unseen.png"}),
}


def _project(tmp_path: Path) -> Path:
    """``.hidden.png`` complete with one box (train), ``.unseen.png`` unreviewed (pool)."""
    project = tmp_path / "proj"
    (project / "imgs").mkdir(parents=True)
    records = []
    for i, (name, boxes) in enumerate(
        ((".hidden", [BoxRecord(2, 2, 20, 20, "cell")]), (".unseen", []))
    ):
        path = project / "imgs" / f"{name}.png"
        Image.new("RGB", (64, 48), (i * 90, 100, 50)).save(path)
        records.append(ImageRecord(path, 64, 48, boxes, "train" if boxes else "pool", bool(boxes)))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
    return project


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and "img/s]" not in ln]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hidden_image_round_trips(tmp_path: Path, capsys, case: str) -> None:
    flags, expected = CASES[case]
    project = _project(tmp_path)
    out = tmp_path / "out"
    assert main(["export", str(project), str(out), "--all", *flags]) == 0
    err = capsys.readouterr().err
    written = [p for p in out.rglob("*") if p.name != ".napari-al-export.json"]
    if "--copy-images" in flags:
        assert not [p for p in written if p.name.startswith(".")], written
        assert any(".hidden.png as _hidden.png" in ln for ln in _lines(err)), err
    again = tmp_path / "again"
    assert main(["init", str(again)]) == 0
    source = out / "annotations.json" if case == "coco" else out
    code = main(["import", str(again), str(source), "--format", flags[1]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert not [ln for ln in _lines(err) if "left out" in ln or "no image" in ln], err
    with ProjectStore.open(again) as store:
        rows = store.images()
        assert {Path(r.path).name for r in rows} == expected
        assert len(store.boxes()) == 1
        hidden = next(r for r in rows if "hidden" in r.path)
        assert hidden.review_state == "complete" and hidden.split == "train"


def test_an_old_yolo_copy_with_a_hidden_image_names_it(tmp_path: Path) -> None:
    """A copied layout written before this rule (``images/train/.a.png``): the reader still
    skips the hidden image, as Ultralytics does, but its label file's error says why."""
    from napari_al.core.formats import FormatError, read_yolo

    root = tmp_path / "y"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(root / "images" / "train" / ".a.png")
    (root / "labels" / "train" / ".a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [cell]\ntrain: images/train\n")
    with pytest.raises(FormatError, match=r"\.a\.png.*hidden.*rename"):
        read_yolo(root)
