"""Open a project in a napari viewer from a script or a notebook (``%gui qt``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

    from napari_al.core.store import ProjectStore
    from napari_al.gui.widget import ActiveLearningWidget


@dataclass
class Session:
    """A project open in a viewer: the viewer, the docked widget and the store."""

    viewer: napari.viewer.Viewer
    widget: ActiveLearningWidget

    @property
    def store(self) -> ProjectStore:
        assert self.widget.store is not None
        return self.widget.store


def open_project(path: str | Path, viewer: napari.viewer.Viewer | None = None) -> Session:
    """Dock the napari-al widget in ``viewer`` (a new one if None) and open ``path`` in it."""
    import napari

    from napari_al.gui.widget import ActiveLearningWidget

    if viewer is None:
        viewer = napari.Viewer(title=f"napari-al: {Path(path).name}")
    widget = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Active learning", area="right")
    widget.open_project(path)
    return Session(viewer=viewer, widget=widget)
