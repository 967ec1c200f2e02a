"""napari notifications for the widget and the controller (napari imported on first use)."""

from __future__ import annotations

#: What to do in a project that has no classes yet (one made from a folder of plain images).
NO_CLASS_HINT = (
    "This project has no classes yet: type a class name (e.g. cell) in the 'new class' field "
    "of the widget's Project section and click Add; the keys 1-9 then pick the classes."
)


def notify_import(summary: dict, limit: int = 5) -> None:
    """Warn about what an import read with caveats or left out (the reader's warnings, then
    the images left out and why: :func:`napari_al.core.project.left_out_lines`), at most
    ``limit`` notifications, the last one saying how many more there were."""
    from napari_al.core.project import left_out_lines

    lines = [*summary.get("warnings", []), *left_out_lines(summary)]
    for line in lines[:limit]:
        notify_user("warning", line)
    if len(lines) > limit:
        notify_user("warning", f"... and {len(lines) - limit} more import warnings")


def notify_user(level: str, message: str) -> None:
    """Show ``message`` as a napari notification: ``level`` ``info``, ``warning`` or (any
    other value) an error."""
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning}.get(
        level, notifications.show_error
    )(message)
