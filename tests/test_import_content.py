"""What an import checks in each file: a copy of an image already there (or earlier in the
same import) is left out, and so is a file whose pixels cannot be decoded; each is named with
its reason, at every way in (the store's importer, ``napari-al init/import/open``, the
notebook ``Session``). Every input is generated here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.project import import_into, left_out_lines, open_or_init
from napari_al.core.store import ProjectStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cut(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (a download that stopped half-way)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def noisy(path: Path, seed: int, size: tuple[int, int] = (96, 64), **save) -> Path:
    """A noisy image (it compresses badly, so a cut lands in the pixel data, not the header)."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(arr).save(path, **save)
    return path


def names(store: ProjectStore) -> set[str]:
    return {Path(r.path).name for r in store.images()}


# ---- duplicates ---------------------------------------------------------------------------


def test_store_import_leaves_out_copies_and_names_the_original(tmp_path: Path) -> None:
    a = tagged_image(tmp_path / "p" / "a.png")
    with ProjectStore.create(tmp_path / "p") as store:
        store.import_dataset(Dataset([], [ImageRecord(a, 64, 48)]))
        b = shutil.copyfile(a, tmp_path / "p" / "b.png")  # a copy under another name
        c = tagged_image(tmp_path / "p" / "c.png")
        d = shutil.copyfile(c, tmp_path / "p" / "d.png")  # a copy of an image of this import
        box = BoxRecord(1, 1, 9, 9, "cell")
        records = [ImageRecord(p, 64, 48) for p in (b, c)]
        records.append(ImageRecord(d, 64, 48, [box], annotated=True))
        summary = store.import_dataset(Dataset(["cell"], records))
        assert summary["images_added"] == 1 and names(store) == {"a.png", "c.png"}
        assert summary["left_out"] == [
            {
                "path": "b.png",
                "reason": "with the same content as another image",
                "boxes": 0,
                "detail": "same content as a.png, already in the project",
            },
            {
                "path": "d.png",
                "reason": "with the same content as another image",
                "boxes": 1,
                "detail": "same content as c.png, earlier in this import",
            },
        ]
        assert left_out_lines(summary) == [
            "left out b.png: same content as a.png, already in the project",
            "left out d.png: same content as c.png, earlier in this import "
            "(1 box in the dataset not imported)",
        ]
        again = store.import_dataset(Dataset(["cell"], records), allow_duplicates=True)
        assert again["images_added"] == 2 and names(store) == {"a.png", "b.png", "c.png", "d.png"}


def test_cli_import_names_each_copy_and_imports_them_on_request(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    tagged_image(src / "a.png")
    shutil.copyfile(src / "a.png", src / "copy of a.png")
    proj = tmp_path / "proj"
    run(capsys, "init", str(proj))
    code, out, err = run(capsys, "import", str(proj), str(src), "--format", "images")
    assert code == 0 and "imported 1 image" in out
    lines = [ln for ln in err.splitlines() if "left out" in ln]
    assert lines == [f"warning: left out {src / 'copy of a.png'}: same content as {src / 'a.png'}"
                     ", earlier in this import"]  # fmt: skip
    code, out, _ = run(
        capsys, "import", str(proj), str(src), "--format", "images", "--allow-duplicates"
    )
    assert code == 0 and "imported 1 image" in out
    with ProjectStore.open(proj) as store:
        assert names(store) == {"a.png", "copy of a.png"}


def test_first_open_and_session_leave_out_copies(tmp_path: Path, capsys) -> None:
    """``napari-al init`` / ``open`` (and the widget's Open, and ``Session.open``) import the
    folder through :func:`open_or_init`: a copy there is left out and reported."""
    folder = tmp_path / "imgs"
    tagged_image(folder / "x.png")
    shutil.copyfile(folder / "x.png", folder / "y.png")
    code, out, err = run(capsys, "init", str(folder))
    assert code == 0 and "imported 1 image" in out
    assert "warning: left out y.png: same content as x.png, earlier in this import" in err
    other = tmp_path / "other"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("napari_al*"))
    reports: list[dict] = []
    with open_or_init(other, report=reports.append) as store:
        assert names(store) == {"x.png"}
    assert [i["path"] for i in reports[0]["left_out"]] == ["y.png"]
    from napari_al.gui.session import Session

    third = shutil.copytree(other, tmp_path / "third", ignore=shutil.ignore_patterns("napari*"))
    with Session.open(third) as session:
        assert session.info()["images"] == 1


# ---- undecodable files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "save", "words"),
    [
        ("cut.jpg", {"quality": 95}, "image data is truncated or corrupt"),
        ("cut.png", {}, "image data is truncated or corrupt"),
        ("cut.bmp", {}, "image data is truncated or corrupt"),
    ],
)
def test_a_truncated_image_is_left_out_with_its_reason(
    tmp_path: Path, capsys, name: str, save: dict, words: str
) -> None:
    folder = tmp_path / "imgs"
    tagged_image(folder / "good.png")
    cut(noisy(folder / name, 1, **save), 0.6)
    proj = tmp_path / "proj"
    run(capsys, "init", str(proj))
    code, out, err = run(capsys, "import", str(proj), str(folder), "--format", "images")
    assert code == 0 and "imported 1 image" in out
    bad = [ln for ln in err.splitlines() if name in ln]
    assert len(bad) == 1 and bad[0].startswith(f"warning: left out {folder / name}: {words}")
    with ProjectStore.open(proj) as store:
        assert names(store) == {"good.png"}


def test_a_truncated_tiff_and_a_vanished_file_are_left_out(tmp_path: Path) -> None:
    tif = tmp_path / "p" / "cut.tif"
    tif.parent.mkdir(parents=True)
    pixels = np.random.default_rng(2).integers(0, 60000, (80, 60), dtype=np.uint16)
    tifffile.imwrite(tif, pixels, rowsperstrip=8)
    cut(tif, 0.5)
    gone = tagged_image(tmp_path / "p" / "gone.png")
    good = tagged_image(tmp_path / "p" / "good.png")
    records = [ImageRecord(tif, 60, 80), ImageRecord(gone, 64, 48), ImageRecord(good, 64, 48)]
    gone.unlink()  # listed by the reader, removed before the import read it
    with ProjectStore.create(tmp_path / "p") as store:
        summary = store.import_dataset(Dataset([], records))
        assert names(store) == {"good.png"}
    reasons = {i["path"]: (i["reason"], i["detail"]) for i in summary["left_out"]}
    assert reasons["cut.tif"][0] == "whose file cannot be decoded"
    assert reasons["cut.tif"][1].startswith("image data is truncated (the TIFF's pixel data")
    assert reasons["gone.png"] == ("whose file cannot be decoded", "file not found")


def test_init_of_a_labelled_folder_leaves_out_a_truncated_image(tmp_path: Path, capsys) -> None:
    """A VOC folder opened as a project: the cut image is left out, its boxes counted."""
    folder = tmp_path / "voc"
    (folder / "Annotations").mkdir(parents=True)
    for i, stem in enumerate(("a", "b")):
        noisy(folder / "JPEGImages" / f"{stem}.jpg", i, quality=90)
        (folder / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>96</width><height>64"
            "</height></size><object><name>cell</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
        )
    cut(folder / "JPEGImages" / "b.jpg", 0.5)
    code, out, err = run(capsys, "init", str(folder))
    assert code == 0 and "imported 1 image and 1 box" in out
    assert "warning: left out JPEGImages/b.jpg: image data is truncated or corrupt" in err
    assert "(1 box in the dataset not imported)" in err


# ---- the wrong format ---------------------------------------------------------------------


def _voc_folder(root: Path, with_classes_txt: bool) -> Path:
    (root / "Annotations").mkdir(parents=True)
    tagged_image(root / "JPEGImages" / "a.png")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>64</width><height>48</height>"
        "</size><object><name>cell</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>"
    )
    if with_classes_txt:
        (root / "classes.txt").write_text("cell\n")
    return root


@pytest.mark.parametrize("with_classes_txt", [False, True])
def test_yolo_import_of_a_voc_folder_says_it_looks_like_voc(
    tmp_path: Path, capsys, with_classes_txt: bool
) -> None:
    voc = _voc_folder(tmp_path / "voc", with_classes_txt)
    proj = tmp_path / "proj"
    run(capsys, "init", str(proj))
    code, out, err = run(capsys, "import", str(proj), str(voc), "--format", "yolo")
    assert code == 1 and out == "" and len(err.splitlines()) == 1, err
    assert "looks like a VOC dataset, not YOLO (it has an Annotations/ folder)" in err
    assert "import it with --format voc" in err and "holds no image" not in err
    with ProjectStore.open(proj) as store:
        assert store.images() == []


def test_voc_import_of_a_yolo_folder_says_it_looks_like_yolo(tmp_path: Path, capsys) -> None:
    yolo = tmp_path / "yolo"
    tagged_image(yolo / "images" / "a.png")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "data.yaml").write_text("names: [cell]\n")
    proj = tmp_path / "proj"
    run(capsys, "init", str(proj))
    code, _out, err = run(capsys, "import", str(proj), str(yolo), "--format", "voc")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert (
        "looks like a YOLO dataset, not VOC (it has data.yaml): import it with --format yolo" in err
    )


def test_an_unlabelled_yolo_folder_still_imports(tmp_path: Path) -> None:
    """No hint when the folder looks like what was asked for (a YOLO set not labelled yet)."""
    yolo = tmp_path / "yolo"
    tagged_image(yolo / "images" / "a.png")
    (yolo / "data.yaml").write_text("names: [cell]\n")
    with ProjectStore.create(tmp_path / "proj") as store:
        _ds, summary = import_into(store, yolo, "yolo")
        assert summary["images_added"] == 1
