"""One viewer, one project: ``napari_al.open_project(path, viewer=v)`` twice on one viewer
opens the second project in the first call's dock (a warning says so; the first session is
closed) instead of a second dock whose ``image [1]``/``boxes [1]`` layers were drawn over the
first's, with the keys acting on whichever boxes layer was selected. Needs a display:
``xvfb-run -a python -m pytest tests/test_gui_session_viewer.py``. Every project is generated
here (one small image)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from gui_helpers import blob_project

import napari_al
from napari_al.core.workflow import WorkflowError
from napari_al.gui.session_viewer import ViewerReusedWarning, docked_widgets

pytestmark = pytest.mark.gui


def _open(path: Path, viewer: Any) -> tuple[Any, list[str]]:
    """The session, and what ViewerReusedWarnings said."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = napari_al.open_project(path, viewer=viewer)
    return session, [str(w.message) for w in caught if w.category is ViewerReusedWarning]


def _one_project_shown(viewer: Any) -> None:
    """One dock, one image layer, one boxes layer: nothing drawn twice."""
    assert len(docked_widgets(viewer)) == 1
    names = [layer.name for layer in viewer.layers]
    assert names.count("image") == 1 and names.count("boxes") == 1, names
    assert not [n for n in names if n.endswith("[1]")], names


def test_a_second_project_opens_in_the_viewers_dock(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    a, b = blob_project(tmp_path / "a"), blob_project(tmp_path / "b")
    viewer = make_napari_viewer()
    first, said = _open(a, viewer)
    assert said == []  # a new dock replaces nothing
    second, said = _open(b, viewer)
    _one_project_shown(viewer)
    assert len(said) == 1 and str(a.resolve()) in said[0] and str(b.resolve()) in said[0]
    assert "session returned for it before is closed" in said[0]
    assert second.widget is docked_widgets(viewer)[0]
    assert second.store.project_dir.resolve() == b.resolve()
    assert second.widget.controller.image_id == 1
    # the first session no longer drives the viewer: each call says why, nothing of b changes
    with pytest.raises(WorkflowError, match="this session is closed"):
        first.info()
    with pytest.raises(WorkflowError, match="this session is closed"):
        first.annotator.draw(1, (10, 10, 30, 30), 1)
    with pytest.raises(WorkflowError, match="this session is closed"):
        first.show(1)
    first.close()  # closes nothing of the second session's
    assert not second.store.closed and second.store.boxes(image_id=1) == []
    assert "closed" in repr(first)
    second.close()


def test_opening_the_same_project_again_keeps_one_dock(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """A notebook cell run twice."""
    a = blob_project(tmp_path / "a")
    viewer = make_napari_viewer()
    _open(a, viewer)
    again, said = _open(a, viewer)
    _one_project_shown(viewer)
    assert len(said) == 1 and "again" in said[0]
    assert again.info()["images"] == 1
    again.close()


def test_a_closed_sessions_dock_and_layers_make_way(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    a, b = blob_project(tmp_path / "a"), blob_project(tmp_path / "b")
    viewer = make_napari_viewer()
    first, _ = _open(a, viewer)
    first.close()  # the dock stays, its widget no longer acts
    second, said = _open(b, viewer)
    _one_project_shown(viewer)
    assert said == []
    assert second.widget is not first.widget or first.widget is None
    assert second.store.project_dir.resolve() == b.resolve()
    second.close()


def test_an_empty_dock_from_the_plugins_menu_is_used(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    from napari_al.gui.widget import ActiveLearningWidget

    viewer = make_napari_viewer()
    docked = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(docked, name="Active learning (napari-al)", area="right")
    session, said = _open(blob_project(tmp_path / "a"), viewer)
    assert said == [] and session.widget is docked
    _one_project_shown(viewer)
    session.close()


def test_a_project_that_cannot_open_leaves_the_first_session_working(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    a = blob_project(tmp_path / "a")
    viewer = make_napari_viewer()
    first, _ = _open(a, viewer)
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("not a project")
    with pytest.raises(Exception):  # noqa: B017 - whatever the store says of it
        napari_al.open_project(not_a_folder, viewer=viewer)
    assert first.info()["images"] == 1
    _one_project_shown(viewer)
    first.close()
