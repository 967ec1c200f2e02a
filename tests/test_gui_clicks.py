"""Click mode in a real viewer: K through napari's key dispatch, a left click on the canvas
through vispy's mouse events, the proposed box answered with W, undone with Ctrl+Z; the store
is checked after each step. Run under ``xvfb-run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_helpers import BLOB, blob_project, open_widget, press

from napari_al.core.data import Predictions
from napari_al.core.store import ProjectStore

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return blob_project(tmp_path / "clicks")


@pytest.fixture
def widget(make_napari_viewer, project: Path, qtbot):  # type: ignore[no-untyped-def]
    _, w = open_widget(make_napari_viewer, project)
    yield w
    w.close_project()


def canvas_pos(viewer, xy: tuple[float, float]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The canvas position (screen pixels) napari maps to image pixel ``xy`` (x, y): the
    inverse of its own canvas -> world transform (``VispyCanvas._map_canvas2world``)."""
    from napari_al.core.boxes import xy_to_napari

    canvas = viewer.window._qt_viewer.canvas
    row, col = xy_to_napari(xy)[0]
    transform = canvas.view.transform * canvas.view.scene.transform
    mapped = transform.map([col, row])
    pos = (float(mapped[0] / mapped[3]), float(mapped[1] / mapped[3]))
    w, h = canvas._scene_canvas.size
    assert 0 <= pos[0] < w and 0 <= pos[1] < h, (pos, (w, h))
    return pos


def canvas_click(viewer, xy: tuple[float, float], drag: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """A left click on image pixel ``xy`` (x, y) through vispy's mouse press and release on
    the canvas; with ``drag``, the mouse moves that many screen pixels away and back before
    the release (a pan: press and release at the same place, but not a click)."""
    canvas = viewer.window._qt_viewer.canvas
    pos = canvas_pos(viewer, xy)
    events = canvas._scene_canvas.events
    events.mouse_press(pos=pos, modifiers=(), button=1)
    if drag:
        from vispy.app.canvas import MouseEvent

        press_event = MouseEvent(pos=pos, button=1, modifiers=(), type="mouse_press")
        for to in ((pos[0] + drag, pos[1]), pos):
            events.mouse_move(pos=to, modifiers=(), button=1, press_event=press_event)
    events.mouse_release(pos=pos, modifiers=(), button=1)


def clicks(store: ProjectStore) -> list:  # type: ignore[type-arg]
    return store.actions(kind="click")


def test_click_mode_makes_a_box_answered_with_w_and_undone(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    image = c.image_id
    assert image is not None and c.detector is None  # no model: the box comes from the image
    cell = store.class_id("cell")

    # K: click mode on; nothing stored
    assert press(viewer, "K")
    assert c.click_mode and w.view.boxes_layer.mode == "pan_zoom"
    assert store.actions() == []

    # a drag pans, it is not a click
    canvas_click(viewer, (120.5, 27.5), drag=40)
    assert clicks(store) == [] and store.boxes() == []

    # a click on the blob's centre: one click action, one box awaiting a yes/no, selected
    canvas_click(viewer, (120.5, 27.5))
    (action,) = clicks(store)
    (box,) = store.boxes(image_id=image)
    assert (box.xyxy, box.class_id, box.status, box.source) == (BLOB, cell, "pseudo", "click")
    assert action.box_id == box.id and action.payload["method"] == "image"
    assert np.allclose(action.payload["click"], (120.5, 27.5), atol=0.5)
    assert w.view.selected_box_ids() == [box.id] and c.focus_box == box.id
    assert store.image(image).review_state == "partial"

    # a click on the background: no box, nothing stored
    n = len(store.actions())
    canvas_click(viewer, (30.5, 70.5))
    assert len(store.actions()) == n and len(store.boxes()) == 1

    # W: yes
    assert press(viewer, "W")
    assert store.box(box.id).status == "accepted"
    assert [a.kind for a in store.actions()] == ["click", "accept"]

    # Ctrl+Z twice: the yes, then the click
    press(viewer, "Control-Z")
    assert store.box(box.id).status == "pseudo"
    press(viewer, "Control-Z")
    assert store.boxes() == [] and store.image(image).review_state == "unseen"
    assert w.view.box_ids().tolist() == []

    # K again: click mode off, clicks do nothing
    press(viewer, "K")
    assert not c.click_mode and w.view.boxes_layer.mode == "select"
    n = len(store.actions())
    canvas_click(viewer, (120.5, 27.5))
    assert len(store.actions()) == n


class FakeDetector:
    """A model trained in the project (version 1) whose one candidate is a debris box
    around the blob: the click's box comes from it, computed in a worker thread."""

    model_version = 1
    classes = ("cell", "debris")

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, images, candidate=False):  # type: ignore[no-untyped-def]
        self.calls += 1
        probs = np.array([[0.1, 0.2, 0.7]], np.float32)
        return [
            Predictions(
                boxes=np.array([[105, 15, 135, 40]], np.float32),
                labels=np.array([1]),
                scores=np.array([0.7], np.float32),
                probs=probs,
                features=np.zeros((1, 0), np.float32),
                embedding=np.zeros(0, np.float32),
            )
        ]


def test_with_a_model_the_click_takes_its_box_from_a_worker(widget, qtbot) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    det = FakeDetector()
    c.detector = det  # the model in use, as a finished load or retrain job would set it
    press(viewer, "2")  # class 2: debris
    press(viewer, "K")
    canvas_click(viewer, (120.5, 27.5))
    qtbot.waitUntil(lambda: len(store.boxes()) == 1, timeout=TIMEOUT_MS)
    (box,) = store.boxes()
    assert (box.xyxy, box.status, box.source) == ((105, 15, 135, 40), "pseudo", "click")
    assert box.score == pytest.approx(0.7) and box.model_version == 1
    assert store.actions()[-1].payload["method"] == "model"
    # a second click on the same image uses the kept candidates: no second model run
    press(viewer, "Control-Z")
    canvas_click(viewer, (118.5, 25.5))
    assert len(store.boxes()) == 1 and det.calls == 1
    assert press(viewer, "Q")
    assert store.boxes()[0].status == "rejected"
