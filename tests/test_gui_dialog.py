"""The dialog planner in a real viewer: the stored question queue (as ``napari-al rank --unit
question`` leaves it) asked one question at a time with J through napari's key dispatch, each
answered with the keys the Questions panel names (a rich answer, a yes on the refined box, a
region question with a click); the store and the panel are checked after each step. Run under
``xvfb-run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_helpers import BLOB, blob_project, open_widget, press
from test_gui_clicks import canvas_click

from napari_al.core.dialog import ANSWER_KEYS
from napari_al.core.store import ProjectStore
from napari_al.core.workflow import ClickCandidates, plan_questions, stored_questions
from napari_al.gui.region_mode import QUESTION_LAYER

pytestmark = pytest.mark.gui

SMALL = (25.0, 25.0, 40.0, 40.0)  # the model's box on part of the object (P(yes) 0.5)
BIG = (20.0, 20.0, 50.0, 50.0)  # its box holding the whole object (0.9)
NEAR_BLOB = (108.0, 18.0, 132.0, 36.0)  # its weak candidate there


@pytest.fixture
def project(tmp_path: Path) -> Path:
    d = blob_project(tmp_path / "dialog")
    with ProjectStore.open(d) as s:
        cell = s.classes()[0].id
        s.replace_predictions(1, [(SMALL, cell, 0.5), (BIG, cell, 0.9)], None)
        cands = ClickCandidates(
            np.asarray([NEAR_BLOB], np.float32),
            np.asarray([[0.7, 0.0]], np.float32),
            labels=np.asarray([0]),
        )
        plan_questions(s, candidates={1: cands}, save=True)  # what rank --unit question stores
    return d


@pytest.fixture
def widget(make_napari_viewer, project: Path, qtbot):  # type: ignore[no-untyped-def]
    _, w = open_widget(make_napari_viewer, project)
    yield w
    w.close_project()


def kinds(store: ProjectStore) -> list[str]:
    return [a.kind for a in store.actions() if a.kind != "predict"]


def panel(w) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    s = w.questions_section
    return s.question_label.text(), s.keys_label.text(), s.seconds_label.text()


def check_seconds(w) -> None:  # type: ignore[no-untyped-def]
    seconds = w.store.annotation_seconds()
    assert panel(w)[2] == f"seconds spent so far: {seconds:.0f} s"


def test_the_planners_questions_answered_with_their_keys(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c, viewer = w.store, w.controller, w.viewer
    by_xyxy = {b.xyxy: b.id for b in store.boxes()}
    small, big = by_xyxy[SMALL], by_xyxy[BIG]
    stored = stored_questions(store)
    assert [(q.kind, q.box_id) for q in stored] == [
        ("verify", small),  # unsure: teaches most
        ("verify", big),  # likely yes: saves most
        ("region", None),
    ]
    assert c.question is None and "3 questions planned; J asks the first" in panel(w)[0]

    # J: the first stored question, its box selected; Shift+E (part): the model's box holding
    # it is proposed (pseudo, refined), selected, the judged box set aside
    assert press(viewer, "J")
    assert c.question == stored[0] and w.view.selected_box_ids() == [small]
    text, keys, _ = panel(w)
    assert text == "is this cell box right? (cells.png)" and "W yes" in keys and "Shift+E" in keys
    assert press(viewer, "Shift-E")
    assert (store.box(small).status, store.box(small).source) == ("rejected", "part")
    (refined,) = store.boxes(statuses="pseudo")
    assert (refined.xyxy, refined.source) == (BIG, "refined")
    assert kinds(store) == ["part"] and panel(w)[0].startswith("answered; J: next question.")
    check_seconds(w)

    # J: the image is planned again: the refined box awaits its yes/no (the model's own box
    # under it is not asked as well); W: yes
    assert press(viewer, "J")
    assert (c.question.kind, c.question.box_id) == ("verify", refined.id)
    assert w.view.selected_box_ids() == [refined.id]
    assert press(viewer, "W")
    assert store.box(refined.id).status == "accepted" and store.box(big).status == "predicted"
    assert kinds(store) == ["part", "accept"]
    check_seconds(w)

    # J: the stored region question, drawn dashed; Shift+M: yes, click mode in the region; one
    # click on the missed blob: its box, answered W; K: done
    assert press(viewer, "J")
    assert c.question.kind == "region" and c.question.xyxy == NEAR_BLOB
    assert c.question_xyxy() == NEAR_BLOB and QUESTION_LAYER in viewer.layers
    text, keys, _ = panel(w)
    assert text == "any more cell here? (cells.png)" and "Shift+M" in keys
    assert press(viewer, "Shift-M")
    yes = store.actions()[-1]
    assert (yes.kind, yes.payload["answer"], tuple(yes.payload["region"])) == (
        "region",
        "yes",
        NEAR_BLOB,
    )
    assert c.click_mode and c.question_status() == "answered"
    canvas_click(viewer, (120.5, 27.5))
    (click,) = store.boxes(statuses="pseudo")
    assert (click.xyxy, click.source) == (BLOB, "click")
    assert press(viewer, "W")
    assert store.box(click.id).status == "accepted"
    assert press(viewer, "K")
    assert not c.click_mode
    assert kinds(store) == ["part", "accept", "region", "click", "accept"]
    check_seconds(w)

    # J: nothing left worth asking (the model's box under the refined one is covered; the
    # image holds as many objects as the prior expects)
    assert press(viewer, "J")
    assert c.question is None and panel(w)[0].startswith("no question left worth its seconds")


def test_the_answer_keys_are_the_viewers_keys() -> None:
    from napari_al.gui.keys import key_table

    listed = {k for k, _ in key_table()}
    for kind, keys in ANSWER_KEYS.items():
        for key, _ in keys:
            assert key in listed, f"{kind}: {key} is not in the key table"
    assert "J" in listed
