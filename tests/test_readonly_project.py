"""A project folder napari-al cannot write: one line naming it and the fix, never the advice for
a damaged store; the commands that only read work on it.

Found by a newcomer: on a read-only bind mount of a healthy project, ``info``, ``evaluate``,
``add-class`` and ``export`` said "not a usable napari-al store (unable to open database file);
restore it from a backup or re-import..." (steering to a restore over a healthy store), and
``train``, ``predict`` and ``rank`` printed ``[Errno 30] Read-only file system:
'.../napari_al.lock'``. SQLite cannot open a WAL store the usual way in a folder it cannot
write (it makes the log's ``-wal`` and ``-shm`` files there); the store now opens it read-only
for the commands that only read, and refuses the others with one line.

The real condition (a read-only bind mount, in a mount namespace of its own) needs root and
``unshare``; where they are missing those tests are skipped, and the rest emulate the folder
(``os.access`` denying writes, which is how napari-al asks) or make SQLite refuse a writable
folder for real (its ``-shm`` file a folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import (
    STORE_FILENAME,
    ProjectStore,
    ReadOnlyProjectError,
    StoreError,
    project_lock,
)
from napari_al.core.store import access as access_module

REPO = Path(__file__).resolve().parents[1]
RESTORE_ADVICE = "restore it from a backup"


def _make_project(folder: Path) -> Path:
    """A project of two images: one complete with a box, one unseen in the pool."""
    images = folder.parent / f"{folder.name}-images"
    images.mkdir(parents=True)
    records = []
    for name, annotated, red in (("a.png", True, 90), ("b.png", False, 200)):
        Image.new("RGB", (40, 30), (red, 20, 20)).save(images / name)
        boxes = [BoxRecord(2, 3, 20, 25, "cell")] if annotated else []
        records.append(
            ImageRecord(images / name, 40, 30, boxes=boxes, annotated=annotated, split="train")
        )
    with ProjectStore.create(folder) as store:
        store.import_dataset(Dataset(classes=["cell"], images=records))
    return folder


def _one_error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI; it must fail with exactly one error line, no traceback."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-al: error: "), err
    return lines[0]


# -- the real condition: a read-only bind mount -----------------------------------------


def _can_mount_read_only(tmp: Path) -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = tmp / "probe"
    probe.mkdir()
    script = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe}"
    script += f" && ! touch {probe}/x"
    try:
        command = ["unshare", "-m", "sh", "-c", script]
        done = subprocess.run(command, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture
def read_only_mount(tmp_path: Path):
    """``run(folder, python code) -> (rc, stdout, stderr)``: the code run by a fresh Python
    with ``folder`` mounted read-only (for that process only); skipped where not possible."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs root, Linux and unshare (a read-only bind mount of its own)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(folder: Path, code: str) -> tuple[int, str, str]:
        script = (
            f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
            f'exec "{sys.executable}" -c "$0"'
        )
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, code],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(folder.parent),
            timeout=300,
        )
        return done.returncode, done.stdout, done.stderr

    return run


#: Runs CLI commands in one process, each one's status and stderr as JSON on stdout.
CLI_RUNS = r"""
import contextlib, io, json, sys
from napari_al.cli import main
out = {}
for argv in json.loads(sys.argv[1] if len(sys.argv) > 1 else ARGV):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    out[argv[0]] = [code, std.getvalue(), err.getvalue()]
print(json.dumps(out))
"""


def test_read_only_mount_reads_and_refuses_in_one_line(read_only_mount, tmp_path: Path) -> None:
    proj = _make_project(tmp_path / "proj")
    out = tmp_path / "export.json"
    argvs = [
        ["info", str(proj)],
        ["export", str(proj), str(out), "--format", "coco", "--all"],
        ["add-class", str(proj), "nucleus"],
        ["rank", str(proj)],
        ["predict", str(proj)],
        ["import", str(proj), "--format", "images", str(tmp_path / "proj-images")],
    ]
    code = CLI_RUNS.replace("ARGV", repr(json.dumps(argvs)))
    rc, stdout, stderr = read_only_mount(proj, code)
    assert rc == 0, stderr
    results = json.loads(stdout)
    info_code, info_out, info_err = results["info"]
    assert info_code == 0 and "images: 2" in info_out, info_err
    export_code, export_out, export_err = results["export"]
    assert export_code == 0 and "exported 2 images and 1 box" in export_out, export_err
    assert json.loads(out.read_text())["images"]
    for command in ("add-class", "rank", "predict", "import"):
        status, _, err = results[command]
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert status == 1 and len(lines) == 1, (command, err)
        line = lines[0]
        assert "Traceback" not in err and RESTORE_ADVICE not in line and "Errno" not in line
        assert f"{proj}: the project folder is not writable (a read-only file system)" in line
        assert "make the folder writable" in line and f"cp -r {proj}" in line, line
    assert "ranking needs to write" in results["rank"][2]
    assert "predicting needs to write" in results["predict"][2]
    assert sorted(p.name for p in proj.iterdir()) == [STORE_FILENAME], "nothing written"


#: Opens stores on the read-only mount: a clean one, one with its log (-wal, -shm), one whose
#: -shm is missing (changes in the log that only a writable folder can read).
API_RUNS = r"""
import json, sys
from napari_al.core.store import ProjectStore, StoreError
root = sys.argv[1]
out = {}
for name in ("clean", "logged", "no_shm", "new"):
    try:
        if name == "new":
            ProjectStore.create(root + "/" + name)
            out[name] = "made"
            continue
        with ProjectStore.open(root + "/" + name, read_only=None) as store:
            out[name] = [c.name for c in store.classes()]
            try:
                store.add_class("x")
            except StoreError as exc:
                out[name + "_write"] = f"{type(exc).__name__}: {exc}"
    except StoreError as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_read_only_mount_store_with_its_write_ahead_log(read_only_mount, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with ProjectStore.create(root / "clean") as store:
        store.add_class("a")
    live = ProjectStore.create(root / "live")
    live._require_open().execute("PRAGMA wal_autocheckpoint = 0")  # changes stay in the log
    live.add_class("a")
    live.add_class("b")
    for name, skip in (("logged", None), ("no_shm", "-shm")):
        (root / name).mkdir()
        for f in (root / "live").iterdir():
            if skip is None or not f.name.endswith(skip):
                shutil.copy(f, root / name / f.name)
    assert (root / "no_shm" / f"{STORE_FILENAME}-wal").stat().st_size > 0
    live.close()
    shutil.rmtree(root / "live")
    rc, stdout, stderr = read_only_mount(root, API_RUNS.replace("sys.argv[1]", repr(str(root))))
    assert rc == 0, stderr
    out = json.loads(stdout)
    assert out["clean"] == ["a"]
    assert out["logged"] == ["a", "b"], "the log's changes are read"
    for name in ("clean", "logged"):
        assert out[name + "_write"].startswith("ReadOnlyProjectError: "), out
        assert "not writable (a read-only file system)" in out[name + "_write"]
    assert out["no_shm"].startswith("ReadOnlyProjectError: ") and "-wal" in out["no_shm"], out
    assert RESTORE_ADVICE not in out["no_shm"]
    assert out["new"].startswith("ReadOnlyProjectError: cannot make a project in "), out
    assert "napari-al import NEW --format images" in out["new"]


# -- emulated: a folder os.access says is not writable ----------------------------------


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch):
    """``deny(folder)``: napari-al's check (``os.access``, W_OK) says ``folder`` and what is
    in it cannot be written; SQLite itself can (the tests may run as root)."""
    denied: list[Path] = []
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        p = Path(os.path.abspath(path))
        if mode & os.W_OK and any(p == d or d in p.parents for d in denied):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(access_module.os, "access", access)
    return denied.append


def test_unwritable_folder_read_commands_work(tmp_path: Path, unwritable, capsys) -> None:
    proj = _make_project(tmp_path / "proj")
    before = sorted(p.name for p in proj.iterdir())
    unwritable(proj)
    assert main(["info", str(proj)]) == 0
    assert "images: 2" in capsys.readouterr().out
    assert main(["export", str(proj), str(tmp_path / "out.json"), "--format", "coco"]) == 0
    assert "exported 1 image and 1 box" in capsys.readouterr().out
    with ProjectStore.open(proj, read_only=None) as store:
        assert store.read_only and [c.name for c in store.classes()] == ["cell"]
        with pytest.raises(ReadOnlyProjectError, match="no write permission"):
            store.add_class("nucleus")
        assert [c.name for c in store.classes()] == ["cell"]
    after = [p.name for p in proj.iterdir() if not p.name.endswith(("-wal", "-shm"))]
    assert sorted(after) == before  # (a read-only SQLite reader may leave its empty log)


@pytest.mark.parametrize(
    "argv",
    [
        ["add-class", "{p}", "nucleus"],
        ["import", "{p}", "--format", "images", "{p}-images"],
        ["train", "{p}", "--steps", "1"],
        ["predict", "{p}"],
        ["rank", "{p}"],
        ["mark-region-complete", "{p}", "a.png", "--xyxy", "0", "0", "5", "5"],
    ],
    ids=lambda a: a[0],
)
def test_unwritable_folder_write_commands_say_so(
    tmp_path: Path, unwritable, capsys, argv: list[str]
) -> None:
    proj = _make_project(tmp_path / "proj")
    unwritable(proj)
    line = _one_error_line(capsys, *(a.format(p=proj) for a in argv))
    assert f"{proj}: the project folder is not writable (no write permission)" in line, line
    assert RESTORE_ADVICE not in line and f"cp -r {proj}" in line
    with ProjectStore.open(proj, read_only=True) as store:  # nothing changed
        assert [c.name for c in store.classes()] == ["cell"]


def test_unwritable_folder_api(tmp_path: Path, unwritable) -> None:
    proj = _make_project(tmp_path / "proj")
    unwritable(proj)
    with pytest.raises(ReadOnlyProjectError, match="not writable"):
        ProjectStore.open(proj)  # the default: a store to write
    with (
        pytest.raises(ReadOnlyProjectError, match="training needs to write"),
        project_lock(proj, "training"),
    ):
        pass
    assert not (proj / "napari_al.lock").exists()
    unwritable(tmp_path / "images")
    (tmp_path / "images").mkdir()
    with pytest.raises(ReadOnlyProjectError, match="cannot make a project in"):
        ProjectStore.open(tmp_path / "images", create=True)
    assert not (tmp_path / "images" / STORE_FILENAME).exists()


# -- a store SQLite cannot open in a writable folder: no restore advice ------------------


def test_store_sqlite_cannot_open_is_not_called_damaged(tmp_path: Path, capsys) -> None:
    proj = _make_project(tmp_path / "proj")
    (proj / f"{STORE_FILENAME}-shm").mkdir()  # SQLite cannot make its shared-memory file
    with pytest.raises(StoreError) as caught:
        ProjectStore.open(proj)
    message = str(caught.value)
    assert RESTORE_ADVICE not in message and "not a usable" not in message, message
    assert "SQLite cannot open the store" in message and "-shm" in message
    line = _one_error_line(capsys, "info", str(proj))
    assert RESTORE_ADVICE not in line and "SQLite cannot open the store" in line


def test_store_made_read_only_after_it_opened_is_not_called_damaged() -> None:
    """SQLite's error when the folder turns read-only under a running command (a remount)."""
    import sqlite3

    from napari_al.cli.common import user_message

    message = user_message(sqlite3.OperationalError("attempt to write a readonly database"))
    assert message is not None and RESTORE_ADVICE not in message
    assert "became read-only" in message and "make them writable" in message
