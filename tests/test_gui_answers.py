"""Rich verification answers in a real viewer, through napari's key dispatch: Shift+E (part) on
a predicted box, W on the refined box it proposes, Ctrl+Z back, Shift+S (container), Shift+K
(several) into click mode; the store is checked after each step. Run under ``xvfb-run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_helpers import open_widget, press
from PIL import Image
from test_gui import layer_matches_store

from napari_al.core.store import ProjectStore
from napari_al.core.store.rows import file_sha256

pytestmark = pytest.mark.gui

WIDTH, HEIGHT = 160, 100
#: The model's boxes: the one shown (judged), a larger one holding it and a smaller one inside
#: it, both scoring below the shown threshold (0.23 = 1.6 s / 7 s): hidden, but candidates.
JUDGED = (60.0, 30.0, 90.0, 60.0)
LARGER = (50.0, 20.0, 100.0, 70.0)
SMALLER = (65.0, 35.0, 80.0, 50.0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    d = tmp_path / "answers"
    d.mkdir()
    img = (np.random.default_rng(0).random((HEIGHT, WIDTH)) * 50).astype(np.uint8)
    path = d / "cells.png"
    Image.fromarray(img).save(path)
    with ProjectStore.create(d) as s:
        cell = s.add_class("cell")
        s.add_class("debris")
        s.add_image(path, file_sha256(path), WIDTH, HEIGHT)
        s.replace_predictions(
            1, [(JUDGED, cell, 0.8), (LARGER, cell, 0.2), (SMALLER, cell, 0.1)], None
        )
    return d


def kinds(store: ProjectStore) -> list[str]:
    """The person's actions so far (the predictions' import left out)."""
    return [a.kind for a in store.actions() if a.kind != "predict"]


@pytest.fixture
def widget(make_napari_viewer, project: Path, qtbot):  # type: ignore[no-untyped-def]
    _, w = open_widget(make_napari_viewer, project)
    yield w
    w.close_project()


def test_part_then_yes_on_the_refined_box_then_undo(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    judged = next(b.id for b in store.boxes() if b.xyxy == JUDGED)
    assert c.focus_box == judged and w.view.selected_box_ids() == [judged]
    n_boxes = len(store.boxes())

    # Shift+E: part. The box is set aside, the larger model box is proposed and selected
    assert press(viewer, "Shift-E")
    box = store.box(judged)
    assert (box.status, box.source) == ("rejected", "part")
    (refined,) = store.boxes(statuses="pseudo")
    assert (refined.xyxy, refined.source, refined.score) == (LARGER, "refined", 0.2)
    assert len(store.boxes()) == n_boxes + 1
    assert kinds(store) == ["part"]
    assert w.view.selected_box_ids() == [refined.id] and c.focus_box == refined.id
    layer_matches_store(w)

    # W: yes, the refined box is the object's box
    assert press(viewer, "W")
    assert store.box(refined.id).status == "accepted"
    assert kinds(store) == ["part", "accept"]
    layer_matches_store(w)

    # Ctrl+Z twice: the yes, then the answer (the refined box goes, the judged box is back)
    press(viewer, "Control-Z")
    assert store.box(refined.id).status == "pseudo"
    press(viewer, "Control-Z")
    assert store.boxes(statuses="pseudo") == [] and len(store.boxes()) == n_boxes
    assert store.box(judged).status == "predicted" and store.box(judged).source == "model"
    assert store.image(1).review_state == "unseen"
    layer_matches_store(w)

    # Shift+S: container. The smaller model box is proposed; Q says no to it
    w.view.select_boxes([judged])
    assert press(viewer, "Shift-S")
    assert store.box(judged).source == "container"
    (refined,) = store.boxes(statuses="pseudo")
    assert refined.xyxy == SMALLER and w.view.selected_box_ids() == [refined.id]
    assert press(viewer, "Q")
    assert store.box(refined.id).status == "rejected"
    assert kinds(store)[-2:] == ["container", "reject"]
    press(viewer, "Control-Z")
    press(viewer, "Control-Z")
    assert store.box(judged).status == "predicted"

    # Shift+K: several. The box is set aside, no box proposed, click mode starts
    w.view.select_boxes([judged])
    assert not c.click_mode
    assert press(viewer, "Shift-K")
    assert store.box(judged).source == "several" and store.boxes(statuses="pseudo") == []
    assert store.actions()[-1].kind == "several"
    assert c.click_mode and w.view.boxes_layer.mode == "pan_zoom"
    layer_matches_store(w)
    # the widget's key table lists the answer keys
    text = w.keys_section.keys_label.text()
    assert all(k in text for k in ("Shift+E", "Shift+S", "Shift+K"))
