"""An export never writes over the files a project reads, and says when it replaces a user's.

Found by a user: ``cp -r voc_dataset vself; napari-al init vself`` then ``napari-al export
vself vself --format voc --force`` overwrote the dataset's own ``Annotations/*.xml`` and
``ImageSets/Main/*.txt``, recorded them as the export's, and a forced COCO export then removed
them for good. An export into the project's own folder (or one whose copied images would land
where the project reads its images) is now refused before anything is written; a forced export
that replaces files no napari-al export recorded names them. Every input is generated here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats import ExportIntoProjectError
from napari_al.core.project import export_dataset
from napari_al.core.store import ProjectStore

FIX = "export to another folder; the project reads its images and labels from here"


def _voc_dataset(folder: Path) -> Path:
    """A small VOC dataset of the user's own: two images, their XML files, a train list."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    for i, name in enumerate(("a", "b")):
        Image.new("RGB", (64, 48), (i * 90, 100, 50)).save(folder / "JPEGImages" / f"{name}.jpg")
        (folder / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>64</width>"
            "<height>48</height><depth>3</depth></size><object><name>cell</name><bndbox>"
            "<xmin>3</xmin><ymin>3</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>"
            "<!-- the user's own --></annotation>\n"
        )
    (folder / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("napari_al.sqlite")
    }


def _complete_all(project: Path) -> None:
    with ProjectStore.open(project) as store:
        for row in store.images():
            store.set_review_state(row.id, "complete")


def _project_reading(tmp_path: Path, images: list[Path]) -> Path:
    """A project in its own folder whose (complete) images are read in place from ``images``."""
    project = tmp_path / "proj"
    records = [
        ImageRecord(p, 64, 48, [BoxRecord(2, 2, 20, 20, "cell")], "train", True) for p in images
    ]
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
    _complete_all(project)
    return project


def _run(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


@pytest.fixture
def vself(tmp_path: Path) -> Path:
    """The user's case: a copy of a VOC dataset made a project in place, labels complete."""
    project = _voc_dataset(tmp_path / "vself")
    assert main(["init", str(project)]) == 0
    _complete_all(project)
    return project


@pytest.mark.parametrize("flags", [[], ["--force"]])
@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_export_into_the_projects_own_folder_is_refused(
    vself: Path, capsys, fmt: str, flags: list[str]
) -> None:
    before = _snapshot(vself)
    for out in (str(vself), f"{vself}/"):
        rc, err = _run(capsys, "export", str(vself), out, "--format", fmt, *flags)
        assert rc != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert str(vself) in lines[0] and FIX in lines[0], err
    assert _snapshot(vself) == before  # nothing written, nothing recorded
    assert not (vself / ".napari-al-export.json").exists()


def test_the_users_voc_coco_sequence_keeps_the_original_annotations(vself: Path, capsys) -> None:
    before = _snapshot(vself)
    for fmt in ("voc", "coco"):
        rc, _ = _run(capsys, "export", str(vself), str(vself), "--format", fmt, "--force")
        assert rc != 0
    assert _snapshot(vself) == before
    # a new COCO file beside the store overwrites nothing: written; an existing one is refused
    rc, err = _run(capsys, "export", str(vself), str(vself / "x.json"), "--format", "coco")
    assert rc == 0, err
    assert (vself / "x.json").is_file()
    for flags in ([], ["--force"]):
        rc, err = _run(
            capsys, "export", str(vself), str(vself / "x.json"), "--format", "coco", *flags
        )
        assert rc != 0 and FIX in err and "x.json" in err


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_export_into_a_folder_inside_the_project_still_works(vself: Path, capsys, fmt: str) -> None:
    before = _snapshot(vself)
    out = vself / "export"
    rc, err = _run(capsys, "export", str(vself), str(out), "--format", fmt)
    assert rc == 0, err
    assert "replaced" not in err
    rc, err = _run(capsys, "export", str(vself), str(out), "--format", fmt, "--force")
    assert rc == 0, err
    assert "had not written" not in err  # its own files, recorded
    after = {k: v for k, v in _snapshot(vself).items() if not k.startswith("export/")}
    assert after == before


@pytest.mark.parametrize(("fmt", "where"), [("voc", "JPEGImages"), ("yolo", "images/train")])
def test_copy_images_onto_the_projects_images_is_refused(
    tmp_path: Path, capsys, fmt: str, where: str
) -> None:
    data = tmp_path / "data"
    (data / where).mkdir(parents=True)
    images = []
    for name in ("a", "b"):
        Image.new("RGB", (64, 48), (10, 100, 50)).save(data / where / f"{name}.png")
        images.append(data / where / f"{name}.png")
    project = _project_reading(tmp_path, images)
    before = _snapshot(data)
    rc, err = _run(
        capsys, "export", str(project), str(data), "--format", fmt, "--copy-images", "--force"
    )
    assert rc != 0
    assert len(err.strip().splitlines()) == 1 and FIX in err and str(data) in err, err
    assert _snapshot(data) == before
    with ProjectStore.open(project) as store, pytest.raises(ExportIntoProjectError):
        export_dataset(store, data, fmt, overwrite=True, copy_images=True)
    # without --copy-images nothing is written where the images are: allowed
    rc, err = _run(capsys, "export", str(project), str(data), "--format", fmt)
    assert rc == 0, err
    assert all(p.read_bytes() == before[p.relative_to(data).as_posix()] for p in images)


def test_force_names_the_users_files_it_replaces(tmp_path: Path, capsys) -> None:
    """The project lives elsewhere and reads its images from the user's VOC dataset; a forced
    VOC export into that dataset replaces the user's XML files and train list: one note names
    them. A second forced VOC export replaces only its own files (no note); a forced COCO
    export then removes them, as the record says (the user was told)."""
    data = _voc_dataset(tmp_path / "data")
    project = _project_reading(tmp_path, [data / "JPEGImages" / n for n in ("a.jpg", "b.jpg")])
    (data / "Annotations" / "other.xml").write_text("<annotation/>")  # not a name it writes
    rc, err = _run(capsys, "export", str(project), str(data), "--format", "voc")
    assert rc != 0 and "--force" in err  # without --force: refused, nothing replaced
    rc, err = _run(capsys, "export", str(project), str(data), "--format", "voc", "--force")
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if "had not written" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("note: replaced 3 files") and str(data) in lines[0]
    for name in ("Annotations/a.xml", "Annotations/b.xml", "ImageSets/Main/train.txt"):
        assert name in lines[0]
    assert "other.xml" not in lines[0] and "classes.txt" not in lines[0]
    assert "the user's own" not in (data / "Annotations" / "a.xml").read_text()
    rc, err = _run(capsys, "export", str(project), str(data), "--format", "voc", "--force")
    assert rc == 0 and "had not written" not in err, err
    rc, err = _run(capsys, "export", str(project), str(data), "--format", "coco", "--force")
    assert rc == 0 and "had not written" not in err, err
    assert not (data / "Annotations" / "a.xml").exists()
    assert (data / "Annotations" / "other.xml").read_text() == "<annotation/>"
    assert (data / "JPEGImages" / "a.jpg").is_file()


def test_a_first_export_into_an_empty_folder_names_nothing(tmp_path: Path, capsys) -> None:
    data = _voc_dataset(tmp_path / "data")
    project = _project_reading(tmp_path, [data / "JPEGImages" / "a.jpg"])
    out = tmp_path / "out"
    for fmt in ("voc", "yolo", "coco"):
        rc, err = _run(capsys, "export", str(project), str(out / fmt), "--format", fmt)
        assert rc == 0 and "replaced" not in err, err
    shutil.rmtree(out)
