"""What the GUI tests share: opening the widget on a project, pressing keys through napari."""

from __future__ import annotations

from pathlib import Path


def open_widget(make_napari_viewer, project: Path, show: bool = False):  # type: ignore[no-untyped-def]
    """A viewer with the Active learning widget docked on the right, ``project`` open;
    returns (viewer, widget)."""
    from napari_al.gui.widget import ActiveLearningWidget

    viewer = make_napari_viewer(show=show)
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w, name="Active learning", area="right")
    w.open_project(project)
    return viewer, w


def press(viewer, key: str) -> bool:  # type: ignore[no-untyped-def]
    """Press and release a key through napari's own key dispatch; whether a binding took it."""
    handler = viewer.window._qt_viewer._key_map_handler
    hit = handler.press_key(key)
    handler.release_key(key)
    return hit
