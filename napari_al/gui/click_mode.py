"""Click mode: one left click on an object's centre becomes a box of the current class (part of
the annotation controller; issue 13, item 2).

K turns it on and off (:data:`~napari_al.gui.keys.KEYS`). In click mode the ``boxes`` layer is
in napari's pan/zoom mode, so a drag still pans; a press and release closer than
:data:`CLICK_SLOP_PX` screen pixels is a click. The click's napari ``(row, col)`` becomes image
``(x, y)`` through :func:`napari_al.core.boxes.napari_to_xy` only; the box comes from the
workflow (:mod:`napari_al.core.workflow.clicks`: the model's best candidate of the class
containing the click, else a box found in the image) and is stored as one action, then shown
selected, awaiting W (yes) or Q (no), or a drag fix in select mode (S). Ctrl+Z undoes it.
After a yes to a region question (:mod:`napari_al.gui.region_mode`) clicks count only inside
the region until click mode ends.

Where a model trained in the project is in use, its candidates for the image are computed in
a worker thread (:func:`napari_al.gui.tasks.click_candidates_job`, a runner of its own, so a
click works while a retrain runs) and kept for that image and model; clicks made meanwhile
wait for them, in order. Without such a model the box comes from the pixels at once, on the
main thread (a few tens of milliseconds). Layers change only on the main thread.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow
from napari_al.core.boxes import napari_to_xy
from napari_al.core.workflow import ClickCandidates, ClickSettings
from napari_al.gui.notify import NO_CLASS_HINT, notify_user

if TYPE_CHECKING:
    import napari

    from napari_al.core.annotator import Annotator
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView

log = logging.getLogger(__name__)

#: A press and release farther apart than this (screen pixels) is a pan, not a click.
CLICK_SLOP_PX = 4.0
#: How many images' candidates are kept (the image on screen and the last few).
CACHE_IMAGES = 4

#: A click waiting for the model's candidates: (image id, (x, y) image pixels, class id).
PendingClick = tuple[int, tuple[float, float], int]


class ClickMode:
    """Click mode of :class:`~napari_al.gui.controller.AnnotationController` (a mixin)."""

    viewer: napari.viewer.Viewer
    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    detector: Any
    current_class_id: int | None
    click_mode: bool
    click_settings: ClickSettings
    _click_cache: dict[tuple[int, int, int], ClickCandidates]
    _click_pending: list[PendingClick]
    _click_runner: Any

    def _init_click_mode(self) -> None:
        self.click_mode = False
        #: How clicks become boxes (the workflow's defaults).
        self.click_settings = ClickSettings()
        self._click_cache = {}
        self._click_pending = []
        self._click_runner = None

    # -- turning it on and off ------------------------------------------------------------

    def toggle_click_mode(self) -> None:
        """K: click mode on or off."""
        self._run("click mode", lambda: self.set_click_mode(not self.click_mode))  # type: ignore[attr-defined]

    def set_click_mode(self, on: bool) -> None:
        """Turn click mode on (the boxes layer goes to pan/zoom; a left click makes a box) or
        off (back to select mode)."""
        callbacks = self.viewer.mouse_drag_callbacks
        if on:
            if self.store is None or self.view.image_id is None:
                notify_user("info", "click mode needs an open project and an image")
                return
            if self._on_canvas_click not in callbacks:
                callbacks.append(self._on_canvas_click)
            self.view.boxes_layer.mode = "pan_zoom"
            self.view.activate_boxes()
            name = self.view.current_class or "the current class"
            notify_user(
                "info",
                f"click mode: click an object's centre to box it as {name}; W/Q answer, K leaves",
            )
        else:
            if self._on_canvas_click in callbacks:
                callbacks.remove(self._on_canvas_click)
            if (
                self.view._alive(self.view._boxes_layer)
                and self.view.boxes_layer.mode == "pan_zoom"
            ):
                self.view.boxes_layer.mode = "select"
        self.click_mode = bool(on)
        self._emit("mode")  # type: ignore[attr-defined]
        if not on:
            self._end_region_clicks()  # type: ignore[attr-defined]

    def _reset_clicks(self) -> None:
        """Forget cached candidates and waiting clicks (another project or model)."""
        self._click_cache.clear()
        self._click_pending.clear()

    # -- the mouse ------------------------------------------------------------------------

    def _on_canvas_click(self, viewer: Any, event: Any) -> Generator[None, None, None]:
        """A viewer mouse-drag callback: a left press and release without moving is a click."""
        if not self.click_mode or getattr(event, "button", None) != 1 or tuple(event.modifiers):
            return
        if not self.view._alive(self.view._boxes_layer):
            return
        layer = self.view.boxes_layer
        if viewer.layers.selection.active is layer and layer.mode != "pan_zoom":
            return  # the person picked another tool (R, S...): the click is that tool's
        start = np.asarray(event.pos, float)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = (
                moved or float(np.hypot(*(np.asarray(event.pos, float) - start))) > CLICK_SLOP_PX
            )
            yield
        if not moved:
            self.click_at(layer.world_to_data(event.position)[-2:])

    # -- a click --------------------------------------------------------------------------

    def click_at(self, point: Sequence[float]) -> None:
        """A click at napari ``point`` ``(row, col)`` (the boxes layer's data coordinates) on
        the image on screen: a box of the current class, via the workflow."""
        self._run("click", lambda: self._click(point))  # type: ignore[attr-defined]

    def _click(self, point: Sequence[float]) -> None:
        image_id, row = self.view.image_id, self.view.image_row
        if self.store is None or image_id is None or row is None:
            return
        if self.current_class_id is None:
            notify_user("warning", NO_CLASS_HINT)
            return
        x, y = (float(v) for v in napari_to_xy(point)[0])
        if not (0 <= x < row.width and 0 <= y < row.height):
            notify_user("info", "the click is outside the image")
            return
        if not self._region_allows(int(image_id), (x, y)):  # type: ignore[attr-defined]
            return  # clicking the missed objects of a yes-region: only inside it
        self._click_xy((int(image_id), (x, y), int(self.current_class_id)))

    def _click_xy(self, click: PendingClick) -> None:
        image_id = click[0]
        det = self.detector
        if not workflow.has_model(det):
            self._propose(click, None)
            return
        key = (image_id, int(det.model_version), id(det))
        if key in self._click_cache:
            self._propose(click, self._click_cache[key])
            return
        self._click_pending.append(click)
        self._start_candidates(image_id, det, key)

    def _pixels(self, image_id: int) -> np.ndarray | None:
        """The pixels of ``image_id`` when it is on screen (None: the workflow reads them; a
        large image shown as a multiscale layer is never gathered from the layer)."""
        layer = self.view.image_layer
        if layer is None or self.view.image_id != image_id or self.view.multiscale:
            return None
        return np.asarray(layer.data)

    def _propose(self, click: PendingClick, candidates: ClickCandidates | None) -> None:
        store, annotator = self._require()  # type: ignore[attr-defined]
        image_id, (x, y), class_id = click
        proposal = workflow.propose_click_box(
            store,
            image_id,
            (x, y),
            class_id,
            candidates=candidates,
            pixels=self._pixels(image_id),
            settings=self.click_settings,
        )
        if proposal is None:
            notify_user(
                "info",
                f"no object found at x {x:.0f}, y {y:.0f}: click nearer its centre, or draw "
                "its box (R)",
            )
            return
        command = workflow.record_click(annotator, proposal)
        if command.image_id == self.view.image_id:
            self._focus(command.box_id)  # type: ignore[attr-defined]

    # -- the model's candidates, in a worker ----------------------------------------------

    def _start_candidates(self, image_id: int, detector: Any, key: tuple[int, int, int]) -> None:
        from napari_al.gui.tasks import click_candidates_job
        from napari_al.gui.workers import JobRunner

        if self._click_runner is None:
            self._click_runner = JobRunner()
        if self._click_runner.busy:
            return  # the clicks wait; the next job starts when this one is done
        pixels = self._pixels(image_id)
        if pixels is None:
            from napari_al.core.images import read_image

            assert self.store is not None
            pixels = read_image(self.store.abs_path(self.store.image(image_id)))

        def done(result: Any) -> None:
            self._on_candidates(key, result)

        self._click_runner.start(
            "click",
            lambda stop, report: click_candidates_job(detector, pixels, stop, report),
            on_done=done,
        )

    def _on_candidates(self, key: tuple[int, int, int], result: Any) -> None:
        """Main thread: keep the candidates, then make the waiting clicks' boxes in order."""
        if result.error or result.cancelled or result.candidates is None:
            dropped = [c for c in self._click_pending if c[0] == key[0]]
            self._click_pending = [c for c in self._click_pending if c[0] != key[0]]
            if result.error:
                notify_user("error", f"click: the model failed ({result.error}); no box made")
            elif dropped:
                notify_user("info", f"{len(dropped)} click(s) dropped (cancelled)")
        else:
            if len(self._click_cache) >= CACHE_IMAGES:
                self._click_cache.pop(next(iter(self._click_cache)))
            self._click_cache[key] = result.candidates
        pending, self._click_pending = self._click_pending, []
        for click in pending:
            self._run("click", lambda click=click: self._click_xy(click))  # type: ignore[attr-defined]
