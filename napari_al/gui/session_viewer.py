"""One viewer, one project: ``open_project(path, viewer=v)`` on a viewer that has an Active
learning dock already.

Two docks on one viewer drew two ``image``/``boxes`` layer pairs over each other (``boxes`` and
``boxes [1]``), and the keys acted on whichever boxes layer was selected: a person could
annotate the wrong project. So :func:`napari_al.gui.session.open_project` opens the project in
the viewer's open dock instead (as the dock's own Open does), closes the session it returned
for that dock before (each of its later calls says why) and says so with a
:class:`ViewerReusedWarning`; a dock left by a closed session (its widget no longer acts) is
removed with the layers it drew, and a new one docked.
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

    from napari_al.gui.session import Session
    from napari_al.gui.widget import ActiveLearningWidget

#: The name of the dock :func:`~napari_al.gui.session.open_project` adds.
DOCK_NAME = "Active learning"

#: id(widget) -> the session ``open_project`` returned for that widget last. Weak: a session
#: dropped by its caller is forgotten; a live session holds its widget, so no id is reused
#: while its entry lives.
_OWNERS: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()


class ViewerReusedWarning(UserWarning):
    """``open_project(path, viewer=v)`` opened ``path`` in the Active learning dock that ``v``
    showed another project (or the same one) in; the session returned for it before is
    closed."""


def register(widget: ActiveLearningWidget, session: Session) -> None:
    """``session`` is the one that drives ``widget`` from now on."""
    _OWNERS[id(widget)] = session


def docked_widgets(viewer: napari.viewer.Viewer) -> list[ActiveLearningWidget]:
    """The Active learning widgets docked in ``viewer`` (whoever docked them: ``open_project``,
    the Plugins menu, ``napari-al open``), in docking order."""
    from napari_al.gui.widget import ActiveLearningWidget

    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is None:
        return []
    return list(qt_window.findChildren(ActiveLearningWidget))


def reusable_widget(viewer: napari.viewer.Viewer) -> ActiveLearningWidget | None:
    """The open Active learning widget of ``viewer`` to open the next project in (None: dock a
    new one). Docks of closed sessions are removed here, with the layers they drew."""
    found = None
    for widget in docked_widgets(viewer):
        if getattr(widget, "_closed", False):
            remove_dead_dock(viewer, widget)
        elif found is None:
            found = widget
    return found


def hand_over(widget: ActiveLearningWidget, old_dir: Path | None, path: str | Path) -> None:
    """After ``widget`` opened ``path`` (it showed ``old_dir`` before; None: no project):
    close the session that drove it, and say so."""
    owner = _OWNERS.pop(id(widget), None)
    if old_dir is None and owner is None:
        return  # an empty dock (docked from the Plugins menu, say): nothing was replaced
    new_dir = Path(path).resolve()
    was = "" if old_dir is None else f" ({old_dir})"
    if owner is not None:
        owner._detach(
            f"this session is closed: open_project({str(path)!r}, viewer=...) opened "
            f"{new_dir} in its viewer's Active learning dock{was}; use the session that "
            "call returned"
        )
    shown = "no project" if old_dir is None else old_dir
    again = " again" if old_dir == new_dir else ""
    closed = "; the session returned for it before is closed" if owner is not None else ""
    warnings.warn(
        f"this viewer's Active learning dock showed {shown}; it now shows {new_dir}{again} "
        f"(one project per viewer){closed}",
        ViewerReusedWarning,
        stacklevel=3,
    )


def remove_dead_dock(viewer: napari.viewer.Viewer, widget: ActiveLearningWidget) -> None:
    """Remove the dock of a closed session's widget and the layers it drew (its image,
    boxes, highlights and question layers), which no longer act."""
    owner = _OWNERS.pop(id(widget), None)
    if owner is not None:
        owner._detach(
            "this session is closed, and open_project(...) on its viewer replaced its dock"
        )
    for layer in drawn_layers(widget):
        viewer.layers.remove(layer)
    try:
        viewer.window.remove_dock_widget(widget)
    except LookupError:  # not in a dock after all
        widget.setParent(None)


def drawn_layers(widget: ActiveLearningWidget) -> list[Any]:
    """The layers of ``viewer`` that ``widget`` drew and still holds."""
    view, controller = widget.view, widget.controller
    held = [getattr(view, name, None) for name in ("_image_layer", "_boxes_layer")]
    held.append(getattr(view, "_highlight_layer", None))
    held.append(getattr(controller, "_question_layer", None))
    layers = widget.viewer.layers
    return [layer for layer in held if layer is not None and layer in layers]
