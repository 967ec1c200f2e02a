"""A file name holding a line break (or another control character) never makes a corrupt
export nor breaks a one-line output.

Found by a newcomer: an image named ``a<newline>b.png`` split VOC's ``ImageSets/Main/*.txt``
ids and YOLO's image lists in two (the export did not re-import), broke ``napari-al info DIR
--images`` into two rows and one-line warnings into two lines. Now: an import leaves such an
image out, one line naming it escaped (``'a\\nb.png'``) and the fix (rename it); a project
holding one already (made before this rule) shows it escaped in every line-based output, and
its VOC or YOLO export either names the copies without the character (``--copy-images``) or
is refused in one line before anything is written (in place, where the list or the XML would
hold the name). Class names follow the same rule. Every input is generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import ProjectStore, StoreError, file_sha256

NAME = "a\nb.png"
#: How a line of output ends the name: quoted and escaped as repr writes the path.
SHOWN = r"a\nb.png'"


def _lines(text: str) -> list[str]:
    """The non-empty lines of ``text``, progress bars left out (tqdm's, which a message
    drawn over them may follow on the same captured line)."""
    out = []
    for ln in text.splitlines():
        if "img/s]" in ln or "img [" in ln:
            ln = ln[ln.index("warning: ") :] if "warning: " in ln else ""
        if ln.strip():
            out.append(ln)
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _image(path: Path, shade: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (shade, 100, 50)).save(path, format="PNG")
    return path


def _older_project(tmp_path: Path, name: str = NAME, missing: bool = False) -> Path:
    """A project holding the image ``name`` (complete, one box), as a project made before
    imports refused such names holds it (added below the importer)."""
    project = tmp_path / "proj"
    image = _image(project / "imgs" / name)
    with ProjectStore.create(project) as store:
        store.add_class("cell")
        image_id = store.add_image(image, file_sha256(image), 64, 48, split="train")
        store.draw_box(image_id, (2, 2, 20, 20), store.class_id("cell"))
        store.set_review_state(image_id, "complete")
    if missing:
        image.unlink()
    return project


def test_an_import_leaves_out_a_name_with_a_line_break_in_one_line(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "shots"
    _image(folder / NAME)
    _image(folder / "c.png", 90)
    code, _out, err = _run(capsys, "init", str(folder))
    assert code == 0, err
    lines = _lines(err)
    assert all(ln.startswith("warning: ") for ln in lines), err
    (line,) = [ln for ln in lines if SHOWN in ln]
    assert "line break" in line and "rename" in line, line
    with ProjectStore.open(folder) as store:
        assert [Path(r.path).name for r in store.images()] == ["c.png"]


def test_a_voc_dataset_naming_such_an_image_leaves_it_out(tmp_path: Path, capsys) -> None:
    """The same rule for a labelled dataset: the image is named, its box not imported."""
    voc = tmp_path / "voc"
    _image(voc / "JPEGImages" / NAME)
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "x.xml").write_text(
        "<annotation><filename>a\nb.png</filename><size><width>64</width>"
        "<height>48</height></size><object><name>cell</name><bndbox><xmin>3</xmin>"
        "<ymin>3</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    code, out, err = _run(capsys, "import", str(project), str(voc), "--format", "voc")
    assert code == 0, err
    assert all(ln.startswith("warning: ") for ln in _lines(err)), err
    (line,) = [ln for ln in _lines(err) if ln.startswith("warning: left out")]
    assert SHOWN in line and "1 box" in line and "rename" in line, err
    assert "imported 0 images" in out


def test_the_store_refuses_a_class_name_with_a_control_character(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p") as store:
        with pytest.raises(StoreError, match=r"'cell\\nA'.*control character"):
            store.add_class("cell\nA")
        with pytest.raises(StoreError, match="control character"):
            store.import_dataset(Dataset(["x\ty"], []))


def test_info_shows_such_a_name_escaped_on_one_row(tmp_path: Path, capsys) -> None:
    project = _older_project(tmp_path)
    code, out, err = _run(capsys, "info", str(project), "--images")
    assert code == 0, err
    rows = _lines(out)[_lines(out).index(next(r for r in _lines(out) if r.startswith("id "))) :]
    assert len(rows) == 2 and rows[1].endswith(f"'imgs/{SHOWN}"), out


def test_a_missing_file_of_such_a_name_is_one_warning_line(tmp_path: Path, capsys) -> None:
    project = _older_project(tmp_path, missing=True)
    code, _out, err = _run(capsys, "info", str(project))
    assert code == 0
    (line,) = _lines(err)
    assert line.startswith("warning: image files: 1 missing") and SHOWN in line, err


@pytest.mark.parametrize("fmt", ["voc", "yolo"])
def test_an_export_in_place_is_refused_before_writing_anything(
    tmp_path: Path, capsys, fmt: str
) -> None:
    project = _older_project(tmp_path)
    out = tmp_path / "out"
    code, _out, err = _run(capsys, "export", str(project), str(out), "--format", fmt)
    assert code == 1
    (line,) = _lines(err)
    assert line.startswith("napari-al: error: ") and SHOWN in line, err
    assert "--copy-images" in line and "coco" in line, line
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["voc", "yolo", "coco"])
def test_an_export_re_imports_whole(tmp_path: Path, capsys, fmt: str) -> None:
    """VOC and YOLO copy the image under a name without the character (and say so): every
    list line names a known image, and the copy re-imports. COCO's JSON holds any name, and
    references the image in place: its re-import leaves it out as any import does."""
    project = _older_project(tmp_path)
    out = tmp_path / "out"
    flags = [] if fmt == "coco" else ["--copy-images"]
    code, _out, err = _run(capsys, "export", str(project), str(out), "--format", fmt, *flags)
    assert code == 0, err
    assert all(ln.startswith("note: ") for ln in _lines(err)), err
    if fmt != "coco":
        assert any("a_b.png" in ln and SHOWN in ln for ln in _lines(err)), err
    if fmt == "voc":
        assert (out / "ImageSets" / "Main" / "train.txt").read_text() == "a_b\n"
    again = tmp_path / "again"
    assert main(["init", str(again)]) == 0
    source = out / "annotations.json" if fmt == "coco" else out
    code, stdout, err = _run(capsys, "import", str(again), str(source), "--format", fmt)
    assert code == 0, err
    if fmt == "coco":
        assert "imported 0 images" in stdout
        (line,) = [ln for ln in _lines(err) if ln.startswith("warning: left out")]
        assert SHOWN in line and "rename" in line, err
    else:
        assert "imported 1 image and 1 box" in stdout, err


def test_a_class_name_of_an_older_project_is_refused_by_voc_and_yolo(tmp_path: Path) -> None:
    from napari_al.core.formats import FormatError, write_dataset

    image = _image(tmp_path / "a.png")
    rec = ImageRecord(image, 64, 48, [BoxRecord(2, 2, 20, 20, "x\ny")], "train", True)
    for fmt in ("voc", "yolo"):
        with pytest.raises(FormatError, match=r"'x\\ny'.*control character.*coco"):
            write_dataset(Dataset(["x\ny"], [rec]), tmp_path / fmt, fmt)
    written = write_dataset(Dataset(["x\ny"], [rec]), tmp_path / "c.json", "coco")
    assert json.loads(written[0].read_text())["categories"][0]["name"] == "x\ny"


def test_one_line_messages_escape_control_characters(tmp_path: Path, capsys) -> None:
    from napari_al.cli.common import warn

    warn("left out a\nb.png")
    assert capsys.readouterr().err == "warning: left out a\\nb.png\n"
    code, _out, err = _run(capsys, "info", str(tmp_path / "x\ny"))
    assert code == 1
    (line,) = _lines(err)
    assert line.startswith("napari-al: error: ") and "x\\ny" in line, err


@pytest.mark.parametrize("name", ["cell .png", " cell.png"])
def test_a_voc_id_that_starts_or_ends_with_a_space_re_imports(
    tmp_path: Path, capsys, name: str
) -> None:
    """The ImageSets id is the file stem as written, spaces at its ends included: the reader
    took it stripped, and refused the export as naming an image it did not have."""
    project = _older_project(tmp_path, name)
    out = tmp_path / "out"
    code, _out, err = _run(capsys, "export", str(project), str(out), "--format", "voc")
    assert code == 0, err
    again = tmp_path / "again"
    assert main(["init", str(again)]) == 0
    code, stdout, err = _run(capsys, "import", str(again), str(out), "--format", "voc")
    assert code == 0 and "imported 1 image and 1 box" in stdout, err
    with ProjectStore.open(again) as store:
        assert [r.split for r in store.images()] == ["train"]


def test_a_project_folder_of_such_a_name_is_shown_escaped(tmp_path: Path, capsys) -> None:
    """The folder names the commands print back (init's, export's) are one line too."""
    folder = tmp_path / "x\ny"
    _image(folder / "a.png")
    code, out, err = _run(capsys, "init", str(folder))
    assert code == 0, err
    assert _lines(out)[0] == f"created project {str(folder)!r}", out
    target = str(tmp_path / "o\nut.json")
    argv = ["export", str(folder), target, "--all", "--format", "coco"]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert _lines(out) == [f"exported 1 image and 0 boxes to {target!r}"], out
