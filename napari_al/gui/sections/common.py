"""Small helpers shared by the widget's sections."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QWidget

from napari_al.core.store import StoreError
from napari_al.gui.notify import notify_user

log = logging.getLogger(__name__)


def row(*widgets: QWidget) -> QWidget:
    """The widgets side by side, in one borderless row."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


def guard(what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a store refusal, a file error or a bad value becomes a warning, anything
    else an error notification (and a log entry). Returns ``fn()``'s value, or None."""
    try:
        return fn()
    except (StoreError, OSError, ValueError) as exc:
        notify_user("warning", f"{what}: {exc}")
    except Exception as exc:
        log.exception("%s failed", what)
        notify_user("error", f"{what} failed: {type(exc).__name__}: {exc}")
    return None
