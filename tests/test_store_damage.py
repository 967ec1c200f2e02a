"""A store damaged in the middle of its file is refused at open, by every command.

Found by a newcomer: ``info``, ``train``, ``predict`` and ``evaluate`` said in one line that
the store was damaged, but ``export`` and ``rank`` exited 0 on it, because their queries never
read the damaged page. Every input is generated here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.store import STORE_FILENAME, ProjectStore, StoreError

TINY = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]
PAGE = 4096


def _project(tmp_path: Path, n_actions: int = 3000) -> Path:
    """Two complete train images with a box each, two pool images, one class, and a long
    action log (``n_actions`` logged events), so the file has pages the commands never read."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord

    project = tmp_path / "proj"
    project.mkdir()
    records = []
    for i in range(4):
        path = project / f"im{i}.png"
        Image.new("RGB", (64, 48), (i * 60, 100, 50)).save(path)
        boxes = [BoxRecord(2, 2, 20, 20, "cell")] if i < 2 else []
        records.append(ImageRecord(path, 64, 48, boxes, "train" if i < 2 else "pool", i < 2))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
        with store.transaction():
            for k in range(n_actions):
                store.log_action("open", image_id=1 + k % 4, payload={"note": "x" * 40, "k": k})
    _checkpoint(project)
    return project


def _checkpoint(project: Path) -> None:
    """Move the WAL into the main file, so that damaging the file damages the store."""
    conn = sqlite3.connect(project / STORE_FILENAME)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _damage_middle_page(project: Path, fill: bytes = b"\xff") -> int:
    """Overwrite the page in the middle of the store file with ``fill``; its page number."""
    store_file = project / STORE_FILENAME
    data = store_file.read_bytes()
    n_pages = len(data) // PAGE
    page = n_pages // 2  # 0-based
    store_file.write_bytes(data[: page * PAGE] + fill * PAGE + data[(page + 1) * PAGE :])
    return page + 1


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("fill", [b"\xff", b"\x00"], ids=["ones", "zeros"])
def test_every_command_refuses_a_store_damaged_in_the_middle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fill: bytes
) -> None:
    project = _project(tmp_path)
    assert main(["export", str(project), str(tmp_path / "before"), "--format", "coco"]) == 0
    _damage_middle_page(project, fill)
    capsys.readouterr()
    commands = [
        ["export", str(project), str(tmp_path / "out"), "--format", "coco"],
        ["export", str(project), str(tmp_path / "out-voc"), "--format", "voc"],
        ["rank", str(project), "--strategy", "random", "--budget", "1", *TINY],
        ["info", str(project)],
        ["add-class", str(project), "dog"],
    ]
    for argv in commands:
        code, _out, err = _run(capsys, *argv)
        line = _one_line(err)
        assert code == 1, (argv, err)
        assert "not a usable napari-al store" in line and STORE_FILENAME in line, line
        assert "restore it from a backup" in line and "docs/store.md" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-voc").exists()


def test_the_open_check_reads_every_table_and_index(tmp_path: Path) -> None:
    """Whichever b-tree page is damaged (every page but the first, one at a time), opening
    the store raises StoreError exactly when SQLite's own PRAGMA quick_check finds it."""
    project = _project(tmp_path, n_actions=300)
    store_file = project / STORE_FILENAME
    good = store_file.read_bytes()
    n_pages = len(good) // PAGE
    assert n_pages > 10
    missed = []
    for page in range(1, n_pages):  # 0-based; page 0 holds the schema
        store_file.write_bytes(good[: page * PAGE] + b"\xff" * PAGE + good[(page + 1) * PAGE :])
        conn = sqlite3.connect(store_file)
        try:
            quick = conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]
        except sqlite3.DatabaseError:
            quick = True
        finally:
            conn.close()
        try:
            ProjectStore.open(project).close()
            found = False
        except StoreError:
            found = True
        if quick and not found:
            missed.append(page + 1)
    assert not missed, f"damaged pages the open check did not find: {missed}"
