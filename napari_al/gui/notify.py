"""napari notifications for the widget and the controller (napari imported on first use)."""

from __future__ import annotations


def notify_user(level: str, message: str) -> None:
    """Show ``message`` as a napari notification: ``level`` ``info``, ``warning`` or (any
    other value) an error."""
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning}.get(
        level, notifications.show_error
    )(message)
