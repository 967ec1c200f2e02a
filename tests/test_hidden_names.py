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
from conftest import tagged_image
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


# ---- init and import say how many hidden images they left out ----------------------------------


def _hidden_tree(root: Path) -> Path:
    """``a.png`` (read); ``.b.png``, ``sub/.c.jpg`` and ``.thumbs/d.png`` (hidden images);
    a ``.git`` folder, ``.DS_Store`` and ``.notes.txt`` (hidden, not images)."""
    for rel in ("a.png", ".b.png", "sub/.c.jpg", ".thumbs/d.png"):
        tagged_image(root / rel)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".notes.txt").write_text("mine\n")
    return root


def _hidden_warnings(err: str) -> list[str]:
    return [ln for ln in err.replace("\r", "\n").splitlines() if "hidden" in ln]


def test_init_names_the_hidden_images_it_left_out(tmp_path: Path, capsys) -> None:
    """Found by a user: init skipped ``.b.png`` without a word. It still skips it (every folder
    scan does, Ultralytics' too), and says so in one line."""
    root = _hidden_tree(tmp_path / "imgs")
    assert main(["init", str(root)]) == 0
    assert _hidden_warnings(capsys.readouterr().err) == [
        "warning: left out 3 hidden files (names or folders starting with '.', e.g. .b.png); "
        "rename them (or the folder) to import them"
    ]
    with ProjectStore.open(root) as store:
        assert [Path(r.path).name for r in store.images()] == ["a.png"]


def test_import_names_them_too_and_nothing_is_said_without_hidden_images(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "imgs"
    tagged_image(root / "a.png")
    tagged_image(root / ".b.png")
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    assert main(["import", str(project), str(root), "--format", "images"]) == 0
    assert _hidden_warnings(capsys.readouterr().err) == [
        "warning: left out 1 hidden file (names starting with '.', e.g. .b.png); rename it to "
        "import it"
    ]
    (root / ".b.png").unlink()  # .git, .DS_Store and a hidden text file are no images
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".notes.txt").write_text("mine\n")
    other = tmp_path / "other"
    assert main(["init", str(other)]) == 0
    assert main(["import", str(other), str(root), "--format", "images"]) == 0
    assert main(["init", str(root)]) == 0
    assert _hidden_warnings(capsys.readouterr().err) == []


def test_a_hidden_image_the_dataset_names_is_not_called_left_out(tmp_path: Path, capsys) -> None:
    """A YOLO list naming ``images/.h.png`` imports it; only the one no list names is counted."""
    root = tmp_path / "y"
    tagged_image(root / "images" / ".h.png")
    tagged_image(root / "images" / ".stray.png")
    (root / "labels").mkdir()
    (root / "labels" / ".h.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "train.txt").write_text("images/.h.png\n")
    (root / "data.yaml").write_text("names: [cell]\ntrain: train.txt\n")
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    assert main(["import", str(project), str(root), "--format", "yolo"]) == 0
    assert _hidden_warnings(capsys.readouterr().err) == [
        "warning: left out 1 hidden file (names starting with '.', e.g. images/.stray.png); "
        "rename it to import it"
    ]
    with ProjectStore.open(project) as store:
        assert [Path(r.path).name for r in store.images()] == [".h.png"]
        assert len(store.boxes()) == 1


@pytest.mark.parametrize("fmt", ["voc", "yolo"])
def test_a_copy_keeps_the_persons_own_name_and_renames_the_hidden_one(
    tmp_path: Path, capsys, fmt: str
) -> None:
    """``.a.png`` copied as ``_a.png`` collided with the person's own ``_a.png``, and the
    person's image (listed first) was the one renamed ``_a_2.png``. Now the names kept as they
    are claim their stems first, whatever the order."""
    project = tmp_path / "proj"
    (project / "imgs").mkdir(parents=True)
    records = []
    for i, name in enumerate(("_a", ".a")):
        path = project / "imgs" / f"{name}.png"
        Image.new("RGB", (64, 48), (i * 90, 100, 50)).save(path)
        boxes = [BoxRecord(2 + 10 * i, 2, 20 + 10 * i, 20, "cell")]
        records.append(ImageRecord(path, 64, 48, boxes, "train", True))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
    out = tmp_path / "out"
    assert main(["export", str(project), str(out), "--format", fmt, "--copy-images"]) == 0
    err = capsys.readouterr().err
    names = {p.name for p in out.rglob("*.png")}
    assert names == {"_a.png", "_a_2.png"}, names
    assert any(".a.png as _a_2.png" in ln for ln in _lines(err)), err
    again = tmp_path / "again"
    assert main(["init", str(again)]) == 0
    assert main(["import", str(again), str(out), "--format", fmt]) == 0
    with ProjectStore.open(again) as store:
        by_name = {Path(r.path).name: r.id for r in store.images()}
        x1 = {name: [b.xyxy[0] for b in store.boxes(i)] for name, i in by_name.items()}
    assert x1 == {"_a.png": [2.0], "_a_2.png": [12.0]}, x1  # the person's boxes on their image
