"""An export the file system refuses (no permission, a read-only disk, a full disk) says so in
one line naming OUT and the fix, never a temporary file.

Found by a newcomer: an export onto a read-only folder failed with Python's text naming the
export's temporary file (``[Errno 13] Permission denied: '/out/.classes.txt.tmp123'``) in the
viewer and from Python, and the command line gave the same fix (``choose an output folder you
can write to, with free space``) whatever the cause. The refusal is emulated at the file-system
calls (the tests may run as root, whom permissions do not stop): each write inside OUT fails
as the operating system fails it, naming the file it was given.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.project import export_dataset
from napari_al.core.store import ProjectStore

CASES = {
    "voc": ("voc", False),
    "voc-copy": ("voc", True),
    "yolo": ("yolo", False),
    "yolo-copy": ("yolo", True),
    "coco": ("coco", False),
}

#: errno, then words the message must hold (the cause, and the fix).
CAUSES = {
    errno.EACCES: ("permission denied", "write permission"),
    errno.EROFS: ("read-only file system", "writable disk"),
    errno.ENOSPC: ("disk is full", "free space"),
}


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    (project / "imgs").mkdir(parents=True)
    path = project / "imgs" / "a.png"
    Image.new("RGB", (64, 48), (60, 100, 50)).save(path)
    rec = ImageRecord(path, 64, 48, [BoxRecord(2, 2, 20, 20, "cell")], "train", True)
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], [rec]))
    return project


def _inside(path: object, out: Path) -> bool:
    p = Path(os.path.abspath(os.fspath(path)))  # type: ignore[arg-type]
    return p == out or out in p.parents


@pytest.fixture
def refuse_writes(monkeypatch: pytest.MonkeyPatch):
    """``refuse_writes(out, code)``: from now on every file or folder made inside ``out`` fails
    with ``code`` (an errno), as the operating system fails it: naming the path it was given
    (the temporary file of an atomic write, say)."""

    def install(out: Path, code: int) -> None:
        out = Path(os.path.abspath(out))

        def fail(path: object) -> None:
            raise OSError(code, os.strerror(code), os.fspath(path))  # type: ignore[arg-type]

        write_text, mkdir = pathlib.Path.write_text, pathlib.Path.mkdir
        copy2, copytree = shutil.copy2, shutil.copytree

        def guarded_write_text(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if _inside(self, out):
                fail(self)
            return write_text(self, *args, **kwargs)

        def guarded_mkdir(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if _inside(self, out) and not self.is_dir():
                fail(self)
            return mkdir(self, *args, **kwargs)

        def guarded_copy2(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            if _inside(dst, out):
                fail(dst)
            return copy2(src, dst, *args, **kwargs)

        def guarded_copytree(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            if _inside(dst, out):
                fail(dst)
            return copytree(src, dst, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "write_text", guarded_write_text)
        monkeypatch.setattr(pathlib.Path, "mkdir", guarded_mkdir)
        monkeypatch.setattr(shutil, "copy2", guarded_copy2)
        monkeypatch.setattr(shutil, "copytree", guarded_copytree)

    return install


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_error_names_out_and_the_fix_not_a_temporary_file(
    tmp_path: Path, refuse_writes, case: str
) -> None:
    """From Python (and so the viewer, which shows the error's text): an OSError whose text
    names OUT, the cause and the fix; nothing is left in OUT."""
    fmt, copy = CASES[case]
    project = _project(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    refuse_writes(out, errno.EACCES)
    with ProjectStore.open(project) as store, pytest.raises(OSError) as caught:
        export_dataset(store, out, fmt, copy_images=copy or None)
    text = str(caught.value)
    assert caught.value.errno == errno.EACCES
    assert ".tmp" not in text and "Errno" not in text, text
    assert f"cannot write the export to {out}" in text, text
    assert "permission denied" in text and "write permission" in text, text
    assert "nothing of it was left" in text, text
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("code", sorted(CAUSES))
def test_the_command_line_names_the_cause_and_its_fix(
    tmp_path: Path, capsys, refuse_writes, code: int
) -> None:
    project = _project(tmp_path)
    out = tmp_path / "out"
    refuse_writes(out, code)
    capsys.readouterr()
    assert main(["export", str(project), str(out), "--format", "voc"]) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-al: error: "), lines
    cause, fix = CAUSES[code]
    assert str(out) in lines[0] and cause in lines[0] and fix in lines[0], lines[0]
    assert ".tmp" not in lines[0]
    assert not out.exists()


def test_with_force_it_says_what_was_replaced(tmp_path: Path, capsys, refuse_writes) -> None:
    """Into an earlier export with --force, files already replaced keep their new contents:
    the message does not claim that nothing was left."""
    project = _project(tmp_path)
    out = tmp_path / "out"
    assert main(["export", str(project), str(out), "--format", "yolo"]) == 0
    refuse_writes(out / "labels", errno.EACCES)
    capsys.readouterr()
    assert main(["export", str(project), str(out), "--format", "yolo", "--force"]) == 1
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert f"cannot write the export to {out}" in line and "labels/a.txt" in line, line
    assert "already replaced keep their new contents" in line, line
    assert "nothing of it" not in line, line


def test_a_missing_source_image_is_named_as_the_source(tmp_path: Path, capsys) -> None:
    """--copy-images of an image gone from disk: the image is what is missing, not OUT's
    fault (the line used to say it could not write the export)."""
    project = _project(tmp_path)
    (project / "imgs" / "a.png").unlink()
    out = tmp_path / "out"
    capsys.readouterr()
    argv = ["export", str(project), str(out), "--format", "voc", "--copy-images"]
    assert main(argv) == 1
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert f"cannot read {project / 'imgs' / 'a.png'} for the export" in line, line
    assert "napari-al info" in line and not out.exists(), line
