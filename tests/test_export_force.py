"""``napari-al export --force`` into an earlier export's folder leaves no stale file of it.

Found by a newcomer: the earlier export's ``ImageSets/Main/pool.txt`` (a split no longer
exported), its XML and YOLO label files of images no longer exported stayed in the folder, and
a re-import then read them back (or failed on a label file without its image). Every input is
generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats import detect_format, read_dataset
from napari_al.core.store import ProjectStore


def _project(tmp_path: Path) -> Path:
    """Three complete images with a box each: ``a`` in train, ``b`` in pool, ``c`` in val."""
    project = tmp_path / "proj"
    (project / "imgs").mkdir(parents=True)
    records = []
    for i, (name, split) in enumerate((("a", "train"), ("b", "pool"), ("c", "val"))):
        path = project / "imgs" / f"{name}.png"
        Image.new("RGB", (64, 48), (i * 60, 100, 50)).save(path)
        records.append(ImageRecord(path, 64, 48, [BoxRecord(2, 2, 20, 20, "cell")], split, True))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
        for row in store.images():
            store.set_split(row.id, {"a": "train", "b": "pool", "c": "val"}[Path(row.path).stem])
            store.set_review_state(row.id, "complete")
    return project


def _second_round(project: Path) -> None:
    """``b`` is no longer complete (not exported), ``c`` moves to train: no pool, no val."""
    with ProjectStore.open(project) as store:
        for row in store.images():
            name = Path(row.path).stem
            if name == "b":
                store.set_review_state(row.id, "partial")
            if name == "c":
                store.set_split(row.id, "train")


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def _export(capsys, project: Path, out: Path, fmt: str, *flags: str) -> str:
    capsys.readouterr()
    assert main(["export", str(project), str(out), "--format", fmt, *flags]) == 0
    return capsys.readouterr().err


CASES = {
    "voc": (
        [],
        {"Annotations/a.xml", "Annotations/c.xml", "ImageSets/Main/train.txt", "classes.txt"},
    ),
    "voc-copy": (
        ["--copy-images"],
        {
            "Annotations/a.xml",
            "Annotations/c.xml",
            "JPEGImages/a.png",
            "JPEGImages/c.png",
            "ImageSets/Main/train.txt",
            "classes.txt",
        },
    ),
    "yolo": (
        [],
        {"labels/a.txt", "labels/c.txt", "train.txt", "data.yaml", "classes.txt"},
    ),
    "yolo-copy": (
        ["--copy-images"],
        {
            "images/train/a.png",
            "images/train/c.png",
            "labels/train/a.txt",
            "labels/train/c.txt",
            "data.yaml",
            "classes.txt",
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_force_removes_the_earlier_exports_stale_files_and_keeps_the_users(
    tmp_path: Path, capsys, case: str
) -> None:
    flags, want = CASES[case]
    fmt = case.split("-")[0]
    project = _project(tmp_path)
    out = tmp_path / "out"
    _export(capsys, project, out, fmt, *flags)
    (out / "my notes.txt").write_text("mine\n")  # a user's file beside the export
    (out / "ImageSets").mkdir(exist_ok=True)
    (out / "ImageSets" / "README").write_text("mine too\n")
    _second_round(project)
    err = _export(capsys, project, out, fmt, *flags, "--force")
    assert _files(out) == want | {"my notes.txt", "ImageSets/README"}, err
    assert "removed" in err and "earlier" in err, err
    back = read_dataset(out, fmt)
    shared = [w for w in back.warnings if "names the train images too" in w]  # no val split
    assert back.warnings == shared and bool(shared) == (case == "yolo-copy"), back.warnings
    assert sorted((im.path.name, im.split) for im in back.images) == [
        ("a.png", "train"),
        ("c.png", "train"),
    ]


#: Every kind of export: the format and its flags.
KINDS = {
    "voc": ("voc", []),
    "voc-copy": ("voc", ["--copy-images"]),
    "yolo": ("yolo", []),
    "yolo-copy": ("yolo", ["--copy-images"]),
    "coco": ("coco", []),
}


@pytest.fixture(scope="module")
def one_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = _project(tmp_path_factory.mktemp("pairs"))
    _second_round(project)
    return project


def _as_written(out: Path, fmt: str) -> Path:
    return out / "annotations.json" if fmt == "coco" else out


@pytest.mark.parametrize("second", sorted(KINDS))
@pytest.mark.parametrize("first", sorted(KINDS))
def test_force_replaces_an_earlier_export_of_any_format_whole(
    tmp_path: Path, capsys, one_project: Path, first: str, second: str
) -> None:
    """Found by a user: ``--format yolo --force`` over an earlier VOC export left its
    Annotations/, ImageSets/ and JPEGImages/ behind (and format detection then read the folder
    as VOC). A forced export of any kind over any other leaves the folder as a first export
    into an empty folder would, the user's files beside it kept."""
    fmt1, flags1 = KINDS[first]
    fmt2, flags2 = KINDS[second]
    fresh = tmp_path / "fresh"
    _export(capsys, one_project, _as_written(fresh, fmt2), fmt2, *flags2)
    out = tmp_path / "out"
    _export(capsys, one_project, _as_written(out, fmt1), fmt1, *flags1)
    (out / "my notes.txt").write_text("mine\n")  # a user's files beside the export
    (out / "ImageSets").mkdir(exist_ok=True)
    (out / "ImageSets" / "README").write_text("mine too\n")
    (out / "mine.json").write_text("{}\n")  # not recorded: kept, even by a COCO export
    err = _export(capsys, one_project, _as_written(out, fmt2), fmt2, *flags2, "--force")
    mine = {"my notes.txt", "ImageSets/README", "mine.json"}
    assert _files(out) == _files(fresh) | mine, err
    if fmt1 != fmt2:
        line = next(ln for ln in err.splitlines() if f"earlier {fmt1.upper()} export" in ln)
        assert line.startswith("note: removed "), err
    record = json.loads((out / ".napari-al-export.json").read_text())
    assert list(record["exports"]) == [fmt2], record
    back = read_dataset(_as_written(out, fmt2), fmt2)
    assert sorted((im.path.name, im.split) for im in back.images) == [
        ("a.png", "train"),
        ("c.png", "train"),
    ]
    if fmt2 != "coco":
        assert detect_format(out) == fmt2


def test_exports_side_by_side_stay_until_one_is_forced(tmp_path: Path, capsys) -> None:
    """A VOC and a COCO export written into one folder without --force are both recorded and
    both stay; a forced COCO export then removes the VOC export's files, never the user's."""
    project = _project(tmp_path)
    out = tmp_path / "out"
    _export(capsys, project, out, "voc")
    _export(capsys, project, out, "coco")
    record = json.loads((out / ".napari-al-export.json").read_text())
    assert sorted(record["exports"]) == ["coco", "voc"]
    assert record["exports"]["coco"]["files"] == ["annotations.json"]
    (out / "my notes.txt").write_text("mine\n")
    _second_round(project)
    err = _export(capsys, project, out, "coco", "--force")
    assert "removed 7 files of the earlier VOC export" in err, err
    assert _files(out) == {"annotations.json", "my notes.txt"}
    back = read_dataset(out / "annotations.json", "coco")
    assert sorted((im.path.name, im.split) for im in back.images) == [
        ("a.png", "train"),
        ("c.png", "train"),
    ]


def test_label_files_no_napari_al_export_wrote_are_kept_and_named(tmp_path: Path, capsys) -> None:
    """A label file of the layout that this export does not write and that no napari-al
    export is known to have written (the user's, or an export by a version before this rule)
    is never removed; a note names it, since a re-import reads it too."""
    project = _project(tmp_path)
    out = tmp_path / "out"
    _export(capsys, project, out, "voc")
    (out / "Annotations" / "theirs.xml").write_text("<annotation/>")
    (out / ".napari-al-export.json").unlink()  # as if an older napari-al had exported
    _second_round(project)
    err = _export(capsys, project, out, "voc", "--force")
    assert (out / "Annotations" / "theirs.xml").read_text() == "<annotation/>"
    assert (out / "Annotations" / "b.xml").is_file()  # not provably napari-al's: kept
    line = next(ln for ln in err.splitlines() if "theirs.xml" in ln or "b.xml" in ln)
    assert line.startswith("note: ") and "not written by this export" in line, err


def test_images_a_project_uses_in_place_are_never_removed(tmp_path: Path, capsys) -> None:
    """A project imported in place from an earlier --copy-images export, exported back into
    that folder with --force: the copied images are its own images now, and stay."""
    project = _project(tmp_path)
    out = tmp_path / "out"
    _export(capsys, project, out, "voc", "--copy-images")
    second = tmp_path / "second"
    assert main(["init", str(second)]) == 0
    assert main(["import", str(second), str(out), "--format", "voc"]) == 0
    with ProjectStore.open(second) as store:  # b no longer complete there
        for row in store.images():
            if Path(row.path).stem == "b":
                store.set_review_state(row.id, "partial")
    _export(capsys, second, out, "voc", "--force")
    assert {p.name for p in (out / "JPEGImages").iterdir()} == {"a.png", "b.png", "c.png"}
    assert not (out / "Annotations" / "b.xml").exists()
