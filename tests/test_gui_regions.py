"""Region questions in a real viewer: "any more <class> here?" shown dashed, answered no
(Shift+X) and yes (Shift+M) through napari's key dispatch, then one click in the region through
vispy's mouse events; the store is checked after each step. Run under ``xvfb-run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_helpers import BLOB, blob_project, open_widget, press
from test_gui_clicks import canvas_click

from napari_al.gui.region_mode import QUESTION_LAYER, dashed_rectangle

pytestmark = pytest.mark.gui

EMPTY = (20, 60, 50, 90)  # a possibly missed cell where there is none
NEAR_BLOB = (108, 18, 132, 36)  # a possibly missed cell on the blob


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return blob_project(tmp_path / "regions")


@pytest.fixture
def widget(make_napari_viewer, project: Path, qtbot):  # type: ignore[no-untyped-def]
    _, w = open_widget(make_napari_viewer, project)
    yield w
    w.close_project()


def test_dashes_trace_the_region() -> None:
    from napari_al.core.boxes import napari_to_xy

    dashes = dashed_rectangle((10, 20, 50, 40), dashes=3)
    assert len(dashes) == 4 * 3 and all(d.shape == (2, 2) for d in dashes)
    xy = napari_to_xy(np.concatenate(dashes))
    assert xy[:, 0].min() == 10 and xy[:, 0].max() == 50
    assert xy[:, 1].min() == 20 and xy[:, 1].max() == 40
    # the first dash: the first fifth of the top side
    assert np.allclose(napari_to_xy(dashes[0]), [[10, 20], [18, 20]])


def test_a_region_question_answered_no_then_yes_and_one_click(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    image = c.image_id
    cell = store.class_id("cell")
    assert c.region_question is None and QUESTION_LAYER not in viewer.layers

    # the round's possibly missed suggestions: two cells, the more likely one where none is
    c.missed[image] = [(EMPTY, 0.6, 0), (NEAR_BLOB, 0.5, 0)]
    c._render_highlights()
    assert c.region_question is not None and c.region_question.xyxy == EMPTY
    assert c.question_xyxy() == EMPTY
    layer = viewer.layers[QUESTION_LAYER]
    assert "any more cell here?" in layer.features["text"].iloc[0]
    assert viewer.layers.selection.active is w.view.boxes_layer  # the digits still work

    # Shift+X: no. One region action; the region is stored known empty of cells, not shown
    # as a box, its suggestion mark is gone, and the next question is asked
    assert press(viewer, "Shift-X")
    (no,) = store.actions()
    assert (no.kind, no.payload["answer"], tuple(no.payload["region"])) == ("region", "no", EMPTY)
    (empty,) = store.empty_regions(image)
    assert (empty.xyxy, empty.class_id, empty.status) == (EMPTY, cell, "rejected")
    assert w.view.box_ids().tolist() == []
    assert [h[0] for h in w.view.highlights if h[1] == "missed"] == [NEAR_BLOB]
    assert c.region_question.xyxy == NEAR_BLOB and c.question_xyxy() == NEAR_BLOB

    # Shift+M: yes. One region action, no data; click mode on, inside the region only
    assert press(viewer, "Shift-M")
    yes = store.actions()[-1]
    assert (yes.kind, yes.payload["answer"], yes.box_id) == ("region", "yes", None)
    assert len(store.boxes()) == 1 and c.click_mode and c.region_clicking is not None
    assert "click every missed cell" in layer.features["text"].iloc[0]

    # a click outside the region makes nothing
    n = len(store.actions())
    canvas_click(viewer, (60.5, 50.5))
    assert len(store.actions()) == n

    # one click on the missed cell: its box, awaiting a yes/no, answered with W
    canvas_click(viewer, (120.5, 27.5))
    assert len(store.actions(kind="click")) == 1
    (box,) = store.boxes(statuses="pseudo")
    assert (box.xyxy, box.class_id, box.source) == (BLOB, cell, "click")
    assert press(viewer, "W")
    assert store.box(box.id).status == "accepted"

    # K: done with the region; its candidate is covered now, nothing is left to ask
    assert press(viewer, "K")
    assert not c.click_mode and c.region_clicking is None and c.region_question is None
    assert c.question_xyxy() is None
    assert [a.kind for a in store.actions()] == ["region", "region", "click", "accept"]

    # Ctrl+Z three times: the yes to the box, the click, then the no: the first question again
    for _ in range(3):
        press(viewer, "Control-Z")
    assert store.empty_regions(image) == [] and store.boxes() == []
    assert c.region_question is not None and c.region_question.xyxy == EMPTY


def test_shift_c_marks_the_part_on_screen_complete_and_undo_takes_it_back(
    widget, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from napari_al.core import workflow
    from napari_al.gui import key_actions
    from napari_al.gui.viewer_state import camera, visible_rect

    said: list[str] = []
    monkeypatch.setattr(key_actions, "notify_user", lambda kind, text: said.append(text))
    # the note concerns images trained in crops (large ones): count this small image as one
    from napari_al.core.workflow import crops

    monkeypatch.setattr(crops, "trains_in_crops", lambda row, tiles: True)

    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    image = c.image_id
    row = store.image(image)
    cam = camera(viewer)
    cam.center = (row.height / 2, row.width / 4)  # (y, x)
    cam.zoom = cam.zoom * 4  # a quarter of the image across, a bit off to the left
    x1, y1, x2, y2 = visible_rect(viewer)
    want = (max(0.0, x1), max(0.0, y1), min(row.width, x2), min(row.height, y2))
    assert want != (0, 0, row.width, row.height)
    # a prediction left unreviewed in the region: the note says it trains as background
    cx, cy = (want[0] + want[2]) / 2, (want[1] + want[3]) / 2
    cell = store.classes()[0].id
    store.replace_predictions(image, [((cx - 5, cy - 5, cx + 5, cy + 5), cell, 0.9)], None)
    left = workflow.unreviewed_in_region(c.annotator, image, want)
    assert left >= 1
    assert press(viewer, "Shift-C")
    words = "prediction in it trains" if left == 1 else "predictions in it train"
    assert f"; {left} unreviewed {words} as background" in said[-1]  # in number, not "(s)"
    (region,) = store.reviewed_regions(image)
    assert np.allclose(region.xyxy, want, atol=1e-6)
    assert store.image(image).review_state == "partial"
    assert store.actions()[-1].kind == "complete_region"
    marks = [h for h in w.view.highlights if h[1] == "reviewed"]
    assert len(marks) == 1 and np.allclose(marks[0][0], want)
    assert press(viewer, "Control-Z")
    assert store.reviewed_regions(image) == []
    assert not [h for h in w.view.highlights if h[1] == "reviewed"]
