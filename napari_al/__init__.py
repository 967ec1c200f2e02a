"""napari-al: human-in-the-loop active learning of object detectors in napari."""

from __future__ import annotations

__version__ = "0.1.0"


def open_project(path, viewer=None):  # type: ignore[no-untyped-def]
    """Open ``path`` in a napari viewer with the widget docked (see ``napari_al.gui.session``)."""
    from napari_al.gui.session import open_project as _open

    return _open(path, viewer)
