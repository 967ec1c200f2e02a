"""A path that is not a project gets the fix that applies to it, never a loop or a harmful one.

Found by a newcomer: ``napari-al info /`` suggested ``napari-al init /`` (which would import
every image of the disk); ``info`` on the image folder inside a project suggested making a
project there instead of naming the project; and a ``napari_al.sqlite`` that is a folder sent
``info`` ("make it one: napari-al init") and ``init`` ("already exists") round in a loop.
Every input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.store import STORE_FILENAME, ProjectStore, StoreError


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit status and the one error line (checked to be the only line, no traceback)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-al: error: "), err
    return code, lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose images are in its ``images/`` folder (and a sub-folder of it)."""
    proj = tmp_path / "proj"
    (proj / "images" / "site1").mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(proj / "images" / "a.png")
    Image.new("RGB", (32, 24)).save(proj / "images" / "site1" / "b.png")
    assert main(["init", str(proj)]) == 0
    return proj


def test_the_root_folder_is_not_offered_to_init(capsys) -> None:
    code, line = _run(capsys, "info", "/")
    assert code == 1 and "not a napari-al project" in line
    assert "init /" not in line and "napari-al init DIR" in line, line
    assert STORE_FILENAME in line


def test_a_folder_without_images_is_not_offered_to_init(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("x")
    code, line = _run(capsys, "info", str(folder))
    assert code == 1 and f"init {folder}" not in line and "napari-al init DIR" in line, line


def test_a_folder_of_images_is_offered_to_init(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    code, line = _run(capsys, "info", str(folder))
    assert code == 1 and f"napari-al init {folder}" in line, line


@pytest.mark.parametrize("inside", ["images", "images/site1"])
@pytest.mark.parametrize("command", [["info"], ["export", "{out}", "--format", "coco"]])
def test_a_folder_inside_a_project_names_the_project(
    project: Path, tmp_path: Path, capsys, inside: str, command: list[str]
) -> None:
    capsys.readouterr()
    argv = [command[0], str(project / inside), *(a.format(out=tmp_path / "o") for a in command[1:])]
    code, line = _run(capsys, *argv)
    assert code == 1 and "init" not in line, line
    assert f"inside the project {project}" in line and f"give {project}" in line, line


def test_a_folder_holding_projects_names_them(project: Path, tmp_path: Path, capsys) -> None:
    code, line = _run(capsys, "info", str(tmp_path))
    assert code == 1 and "init" not in line and str(project) in line, line


def test_six_projects_are_counted_as_six(tmp_path: Path, capsys, monkeypatch) -> None:
    """The count is of every project there, not of the three named (said '2 more' for 5)."""
    for i in range(6):
        ProjectStore.create(tmp_path / f"p{i}").close()
    code, line = _run(capsys, "info", str(tmp_path))
    assert code == 1 and "holds 6 projects" in line and "(and 3 more)" in line, line
    _no_napari(monkeypatch)
    code, line = _run(capsys, "init", str(tmp_path))
    assert code == 1 and f"holds the project {tmp_path / 'p0'} (and 5 more)" in line, line


@pytest.mark.parametrize(
    "argv",
    [["info", "{p}"], ["init", "{p}"], ["export", "{p}", "{out}", "--format", "coco"]],
)
def test_a_store_path_that_is_a_folder_is_one_line_without_a_loop(
    tmp_path: Path, capsys, argv: list[str]
) -> None:
    folder = tmp_path / "d"
    (folder / STORE_FILENAME).mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    code, line = _run(capsys, *(a.format(p=folder, out=tmp_path / "o") for a in argv))
    assert code == 1, line
    assert f"{folder / STORE_FILENAME} is a folder" in line, line
    assert "already" not in line and "napari-al init" not in line, line
    assert "rename or remove" in line, line


def test_the_store_refuses_a_folder_as_its_file(tmp_path: Path) -> None:
    """The same one line for every front end (the viewer's Open, a notebook)."""
    (tmp_path / STORE_FILENAME).mkdir()
    for call in (ProjectStore.create, ProjectStore.open, lambda p: ProjectStore.open(p, True)):
        with pytest.raises(StoreError, match="is a folder, not napari-al's store file"):
            call(tmp_path)


# -- a store left empty by an interrupted init ------------------------------------------------
#
# Found by a newcomer: ``napari-al info DIR`` on a 0-byte napari_al.sqlite (what an init killed
# right after creating the file leaves) silently wrote an empty schema into it and reported an
# empty project; ``init`` said "already a napari-al project". The viewer's open rebuilds such a
# store and imports the folder (tests/test_reliability_crash.py), and ``init`` now does too.

#: The commands that only read the project or write into an existing one: refused in one line.
ON_AN_EMPTY_STORE = [
    ["info", "{p}"],
    ["info", "{p}", "--images", "--json"],
    ["export", "{p}", "{out}", "--format", "coco"],
    ["import", "{p}", "{p}", "--format", "images"],
    ["add-class", "{p}", "cell"],
    ["mark-region-complete", "{p}", "a.png", "--xyxy", "0", "0", "8", "8"],
    ["train", "{p}", "--steps", "1"],
    ["predict", "{p}"],
    ["evaluate", "{p}"],
    ["rank", "{p}"],
]


def _interrupted_init(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    (folder / STORE_FILENAME).write_bytes(b"")
    return folder


@pytest.mark.parametrize("argv", ON_AN_EMPTY_STORE, ids=lambda a: " ".join(a[:3]))
def test_an_empty_store_is_named_and_left_as_it_is(tmp_path: Path, capsys, argv: list[str]) -> None:
    folder = _interrupted_init(tmp_path)
    code, line = _run(capsys, *(a.format(p=folder, out=tmp_path / "o") for a in argv))
    assert code == 1, line
    assert f"{folder / STORE_FILENAME} is empty (0 bytes)" in line, line
    assert "interrupted" in line and f"napari-al init {folder}" in line, line
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", STORE_FILENAME]  # no write
    assert (folder / STORE_FILENAME).stat().st_size == 0
    assert not (tmp_path / "o").exists()


def test_the_store_refuses_an_empty_file_unless_it_may_create(tmp_path: Path) -> None:
    """From Python too (a notebook, the workflow); ``open(create=True)`` rebuilds it."""
    folder = _interrupted_init(tmp_path)
    with pytest.raises(StoreError, match=r"is empty \(0 bytes\).*napari-al init"):
        ProjectStore.open(folder)
    assert (folder / STORE_FILENAME).stat().st_size == 0
    with ProjectStore.open(folder, create=True) as store:
        assert store.images() == []


@pytest.mark.parametrize("left", ["empty file", "empty project"])
def test_init_again_finishes_an_interrupted_init(tmp_path: Path, capsys, left: str) -> None:
    """A 0-byte store, or a store with nothing at all in it (an init interrupted while it
    read the images): init imports the folder, as the viewer's open does."""
    folder = _interrupted_init(tmp_path)
    if left == "empty project":
        (folder / STORE_FILENAME).unlink()
        ProjectStore.create(folder).close()
    capsys.readouterr()
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "imported 1 image" in out, out
    with ProjectStore.open(folder) as store:
        assert [Path(r.path).name for r in store.images()] == ["a.png"]
    code, line = _run(capsys, "init", str(folder))  # done: a project, as before
    assert code == 1 and "already a napari-al project" in line, line


def test_info_on_a_project_with_nothing_in_it_says_how_to_fill_it(tmp_path: Path, capsys):
    folder = _interrupted_init(tmp_path)
    (folder / STORE_FILENAME).unlink()
    ProjectStore.create(folder).close()
    capsys.readouterr()
    assert main(["info", str(folder)]) == 0
    err = capsys.readouterr().err
    assert f"napari-al init {folder}" in err and "napari-al import" in err, err


# -- no project inside another ---------------------------------------------------------------
#
# Found by a newcomer: ``napari-al init proj/images`` (or ``open``) silently made a second
# project inside the first, holding images the first one holds too. It is refused, naming the
# enclosing project; so is a project around one. An existing nested project still opens.


def _no_napari(monkeypatch: pytest.MonkeyPatch) -> None:
    """``napari-al open`` reaching napari is a failure here, not a window to wait on."""
    from napari_al.cli import viewer

    def refuse(*args: object) -> int:
        raise AssertionError("napari was opened")

    monkeypatch.setattr(viewer, "_run_napari", refuse)


@pytest.mark.parametrize("inside", ["images", "images/site1", "new"])
@pytest.mark.parametrize("command", ["init", "open"])
def test_a_project_inside_a_project_is_refused(
    project: Path, capsys, monkeypatch, inside: str, command: str
) -> None:
    _no_napari(monkeypatch)
    folder = project / inside
    existed = folder.exists()
    code, line = _run(capsys, command, str(folder))
    assert code == 1, line
    assert f"inside the project {project}" in line and "nested" in line, line
    assert f"napari-al import NEW {folder}" in line, line  # the way to do it
    assert not (folder / STORE_FILENAME).exists() and folder.exists() == existed


@pytest.mark.parametrize("command", ["init", "open"])
def test_a_project_around_a_project_is_refused(
    project: Path, tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    _no_napari(monkeypatch)
    code, line = _run(capsys, command, str(tmp_path))
    assert code == 1 and f"holds the project {project}" in line, line
    assert not (tmp_path / STORE_FILENAME).exists()


def test_the_viewer_and_notebooks_refuse_it_too(project: Path) -> None:
    from napari_al.core.project import open_or_init

    with pytest.raises(StoreError, match=f"inside the project {project}"):
        open_or_init(project / "images")
    assert not (project / "images" / STORE_FILENAME).exists()


def test_an_existing_nested_project_still_opens(project: Path, capsys) -> None:
    """Made before this rule (or from Python): it is a project, and is used as one."""
    from napari_al.core.project import open_or_init

    nested = project / "images" / "site1"
    ProjectStore.create(nested).close()
    capsys.readouterr()
    assert main(["info", str(nested)]) == 0
    with open_or_init(nested) as store:
        assert [Path(r.path).name for r in store.images()] == ["b.png"]


def test_init_of_the_root_or_home_folder_is_refused(capsys, monkeypatch, tmp_path: Path) -> None:
    """'napari-al init /' made the root a project of every image on the machine (and every
    later init a nested project)."""
    _no_napari(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    for folder in ("/", str(tmp_path)):
        code, line = _run(capsys, "init", folder)
        assert code == 1 and "root or a home folder is not made a project" in line, line
    assert not Path("/", STORE_FILENAME).exists() and not (tmp_path / STORE_FILENAME).exists()
