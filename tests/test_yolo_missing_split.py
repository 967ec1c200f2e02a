"""A YOLO ``data.yaml`` whose ``val:`` or ``test:`` names nothing is skipped with --skip-bad.

Found by a user: a data.yaml naming a ``val`` folder (or ``test`` list) that does not exist
stopped ``napari-al import --format yolo --skip-bad`` whatever the flag, and ``napari-al init``
of such a folder imported its images as plain images, labels lost. Such an entry is now a
skippable error, as the reader's other skippable problems are: with --skip-bad (and in init) a
warning names the key, the missing path and what was imported instead; without it, one line
names the file, the key and the fixes, --skip-bad among them. Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.formats import FormatError, read_yolo
from napari_al.core.store import ProjectStore


def _dataset(root: Path, yaml_text: str) -> Path:
    """``images/train/a.png`` and ``images/train/b.png``, one box each, and ``data.yaml``."""
    for name in ("a", "b"):
        tagged_image(root / "images" / "train" / f"{name}.png")
        label = root / "labels" / "train" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text(yaml_text)
    return root


YAMLS = {
    "val-folder": ("val: images/val\n", "val", "images/val", "not found"),
    "test-list": ("test: test.txt\n", "test", "test.txt", "not found"),
    "val-one-of-two": ("val: [images/train, gone/val.txt]\n", "val", "gone/val.txt", "not found"),
    "val-not-a-list": ("val: val.csv\n", "val", "val.csv", "is neither a folder nor a .txt list"),
}


@pytest.mark.parametrize("case", sorted(YAMLS))
def test_reader_skips_the_entry_only_without_strict(tmp_path: Path, case: str) -> None:
    extra, key, entry, what = YAMLS[case]
    root = _dataset(tmp_path / "y", "names: [cell]\ntrain: images/train\n" + extra)
    if entry == "val.csv":
        (root / "val.csv").write_text("images/train/a.png\n")
    with pytest.raises(FormatError) as info:
        read_yolo(root)
    msg = str(info.value)
    assert info.value.skippable, msg
    assert msg.startswith(f"data.yaml: {key}: {entry!r} {what} ({root / entry}"), msg
    assert "correct the path, or remove the entry from data.yaml" in msg and "\n" not in msg

    back = read_yolo(root, strict=False)
    assert sorted((im.path.name, im.split, len(im.boxes)) for im in back.images) == [
        ("a.png", "train", 1),
        ("b.png", "train", 1),
    ]
    (warning,) = [w for w in back.warnings if entry in w]
    assert warning.startswith(f"data.yaml: {key}: {entry!r} {what} ({root / entry}"), warning
    assert warning.endswith(f"imported the rest instead: train (2 images) ({key} entry skipped)")


def test_nothing_else_to_import_is_said(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "y", "names: [cell]\ntrain: nowhere\n")
    back = read_yolo(root, strict=False)
    assert back.images == []  # the label files left are named too (no image found)
    assert back.warnings[0] == (
        f"data.yaml: train: 'nowhere' not found ({root / 'nowhere'}: no such folder or .txt "
        "list); correct the path, or remove the entry from data.yaml; no other entry names an "
        "image (train entry skipped)"
    )


def _err_lines(text: str) -> list[str]:
    return [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith(("napari", "warn"))]


def test_cli_import_refuses_in_one_line_and_skip_bad_imports_the_rest(
    tmp_path: Path, capsys
) -> None:
    root = _dataset(tmp_path / "y", "names: [cell]\ntrain: images/train\nval: images/val\n")
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    assert main(["import", str(project), str(root), "--format", "yolo"]) == 1
    (line,) = _err_lines(capsys.readouterr().err)
    assert line.startswith("napari-al: error: data.yaml: val: 'images/val' not found"), line
    assert "remove the entry from data.yaml" in line and "--skip-bad" in line, line
    with ProjectStore.open(project) as store:
        assert store.images() == []

    assert main(["import", str(project), str(root), "--format", "yolo", "--skip-bad"]) == 0
    out = capsys.readouterr()
    (warning,) = [ln for ln in _err_lines(out.err) if "images/val" in ln]
    assert warning.startswith("warning: data.yaml: val: 'images/val' not found"), warning
    assert "imported the rest instead: train (2 images)" in warning, warning
    assert "imported 2 images and 2 boxes" in out.out
    with ProjectStore.open(project) as store:
        assert {r.split for r in store.images()} == {"train"}
        assert len(store.boxes()) == 2


def test_init_keeps_the_labels_and_names_the_missing_split(tmp_path: Path, capsys) -> None:
    """init used to fall back to plain images (labels lost) on such a data.yaml."""
    root = _dataset(tmp_path / "y", "names: [cell]\ntrain: images/train\ntest: test.txt\n")
    assert main(["init", str(root)]) == 0
    out = capsys.readouterr()
    assert "read as plain images" not in out.err, out.err
    (warning,) = [ln for ln in _err_lines(out.err) if "test.txt" in ln]
    assert warning.startswith("warning: data.yaml: test: 'test.txt' not found"), warning
    assert "(test entry skipped)" in warning
    with ProjectStore.open(root) as store:
        assert len(store.boxes()) == 2
        assert {r.review_state for r in store.images()} == {"complete"}
