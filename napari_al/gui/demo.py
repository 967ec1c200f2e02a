"""``napari-al demo``: napari on a project in the middle of the loop.

The project (:func:`napari_al.core.project.create_demo_project`: a few labelled images, an
unlabelled pool, the val images for mAP) opens at once in a viewer with the widget docked, and
the round it still needs (:func:`napari_al.core.workflow.first_round`: train a first model,
or rank the pool with the model it has) starts in the background through the widget's own
job (:meth:`~napari_al.gui.widget.ActiveLearningWidget.start_first_round`), so the person can
look around, and annotate, while the first model trains; the query list fills when it ends.

With ``screenshot`` the window is saved once that round has finished (a picture of the loop
with predictions and a query list), then napari quits; ``quit_after`` quits right after
opening without starting the round (a smoke test).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_al.core.workflow import ModelSettings

if TYPE_CHECKING:
    from napari_al.gui.widget import ActiveLearningWidget

log = logging.getLogger(__name__)

#: Window size of a demo screenshot (screen pixels, width x height).
SCREENSHOT_SIZE = (1400, 900)


def apply_settings(
    widget: ActiveLearningWidget, steps: int | None = None, model: ModelSettings | None = None
) -> None:
    """Put the command line's training steps, input size and device into the widget's fields
    (the round reads its settings from there, as when a person clicks Retrain)."""
    if steps:
        widget.train_section.steps_spin.setValue(int(steps))
    if model is not None:
        if model.min_size:
            widget.model_section.min_size_spin.setValue(int(model.min_size))
        if model.device:
            widget.model_section.device_combo.setCurrentText(model.device)


def show_query_list(widget: ActiveLearningWidget) -> None:
    """Scroll the widget so that the query list is on screen."""
    from qtpy.QtWidgets import QScrollArea

    scroll = widget.findChild(QScrollArea)
    if scroll is not None:
        scroll.ensureWidgetVisible(widget.query_section.query_list, 0, 10)


def run_demo(
    project: str | Path,
    *,
    screenshot: str | Path | None = None,
    quit_after: bool = False,
    steps: int | None = None,
    model: ModelSettings | None = None,
) -> int:
    """Open ``project`` in napari and start its first round in the background; returns the
    exit status (1 when the round of a ``screenshot`` run failed)."""
    from napari_al.runtime import block_triton

    block_triton()  # a GUI process: see napari_al.runtime (before torch or napari load)
    import napari
    from qtpy.QtCore import QTimer

    from napari_al.gui.session import open_project

    session = open_project(project)
    viewer, widget = session.viewer, session.widget
    assert viewer is not None and widget is not None
    apply_settings(widget, steps, model)
    status = {"rc": 0}

    def finish() -> None:
        if screenshot:
            viewer.window.resize(*SCREENSHOT_SIZE)
            show_query_list(widget)
            QTimer.singleShot(1500, shoot)
        else:
            viewer.close()

    def shoot() -> None:
        viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
        print(f"screenshot saved to {screenshot}")
        viewer.close()

    def on_done(result: Any) -> None:
        if result.error:
            print(f"napari-al demo: {result.kind} failed: {result.error}", file=sys.stderr)
            status["rc"] = 1
        QTimer.singleShot(500, finish)

    def start() -> None:
        worker = widget.start_first_round()
        if not screenshot:
            return
        if worker is None:
            QTimer.singleShot(1000, finish)
        else:
            widget.runner.done.connect(on_done)

    if quit_after and not screenshot:
        QTimer.singleShot(1000, finish)
    else:
        QTimer.singleShot(0, start)  # once the event loop runs: the viewer is on screen first
    napari.run()
    return status["rc"]
