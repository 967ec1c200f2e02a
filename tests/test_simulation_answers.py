"""The simulated oracle's rich verification answers: the geometry of part / container /
several, the follow-ups and their charges, and the setting that turns them on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.store import ProjectStore
from napari_al.core.store.rows import file_sha256
from napari_al.simulation import (
    GroundTruth,
    Oracle,
    SimClock,
    SimConfig,
    add_arguments,
    config_from_args,
    plan_verification,
)
from napari_al.simulation.oracle import rich_answer

COSTS = CostModel()

#: Four objects: A, B (class 0), C (class 1), D (class 0), 40 x 40 each.
GT = GroundTruth(
    boxes=np.asarray(
        [[10, 10, 50, 50], [60, 10, 100, 50], [10, 60, 50, 100], [60, 60, 100, 100]], np.float64
    ),
    labels=np.asarray([0, 0, 1, 0], np.int64),
)
#: Shown model boxes (scores above 1.6 / 7 = 0.23), each badly placed on its object:
PART_OF_A = [10, 10, 28, 46]  # inside A, IoU 0.405
CONTAINS_B = [50, 0, 115, 60]  # holds B, IoU 0.41
OVER_C_AND_D = [5, 55, 105, 105]  # holds C and D, IoU 0.16 with each
SHIFTED_A = [20, 20, 60, 60]  # A moved: IoU 0.39, neither nested nor holding two


def test_the_geometry_of_each_answer() -> None:
    assert rich_answer(PART_OF_A, GT.boxes, 0) == "part"
    assert rich_answer(CONTAINS_B, GT.boxes, 1) == "container"
    assert rich_answer(OVER_C_AND_D, GT.boxes, 2) == "several"
    assert rich_answer(SHIFTED_A, GT.boxes, 0) == "correct"
    # 75% of the box inside A: part only with contain <= 0.75
    three_quarters = [10, 10, 30, 56]  # 20 x 46, y 50-56 outside A: 40/46 = 0.87 inside
    assert rich_answer(three_quarters, GT.boxes, 0) == "part"
    assert rich_answer(three_quarters, GT.boxes, 0, contain=0.9) == "correct"
    # one object and a sliver of another (less than half of it inside): not several
    over_b_and_a_sliver = [40, 5, 105, 55]  # all of B, a quarter of A
    assert rich_answer(over_b_and_a_sliver, GT.boxes, 1) == "container"
    assert rich_answer(over_b_and_a_sliver, GT.boxes, 1, several_inside=0.25) == "several"


def test_the_plan_answers_rich_only_where_it_would_redraw() -> None:
    boxes = np.asarray([[11, 11, 50, 50], PART_OF_A, CONTAINS_B, OVER_C_AND_D], np.float64)
    labels = np.asarray([0, 0, 0, 1])
    plan, missing = plan_verification(boxes, labels, GT, rich=True)
    # the first box takes A, so the part of A finds no free object left: rejected
    assert plan == [("accept", 0), ("reject", None), ("container", 1), ("several", 2)]
    assert missing == [3]
    plain, _ = plan_verification(boxes, labels, GT)
    assert [d for d, _ in plain] == ["accept", "reject", "correct", "correct"]


@pytest.fixture
def sim(tmp_path: Path):
    """A store on a simulated clock, one 200 x 200 plain grey PNG (a click finds no object in
    its pixels) whose truth is :data:`GT`, an oracle giving rich answers."""
    clock = SimClock()
    d = tmp_path / "p"
    d.mkdir()
    path = d / "x.png"
    Image.fromarray(np.full((200, 200), 90, np.uint8)).save(path)
    store = ProjectStore.create(d, clock=clock, idle_cutoff_s=1e15)
    store.add_class("a")
    store.add_class("b")
    image = store.add_image(path, file_sha256(path), 200, 200)
    store.log_action("sim_start")
    oracle = Oracle(store, clock, {image: GT}, COSTS, rich_answers=True)
    yield store, oracle, image
    store.close()


def _predict(store: ProjectStore, image: int, boxes: list[tuple[list[float], int, float]]):
    ids = [c.id for c in store.classes()]
    return store.replace_predictions(image, [(b, ids[c], s) for b, c, s in boxes], None)


def test_rich_answers_their_follow_ups_and_charges(sim) -> None:
    store, oracle, image = sim
    part, contains, several, around_a, on_c = _predict(
        store,
        image,
        [
            (PART_OF_A, 0, 0.9),
            (CONTAINS_B, 0, 0.8),
            (OVER_C_AND_D, 1, 0.7),
            ([9, 9, 50, 51], 0, 0.1),  # hidden: the refined box for the part of A (IoU 0.93)
            ([11, 61, 50, 100], 1, 0.15),  # hidden: the click on C picks it (IoU 0.95)
        ],
    )
    tally = oracle.verify_image(image)
    assert tally == {
        "accept": 2,  # the refined box of A, the clicked box of C
        "set_class": 0,
        "correct": 0,
        "reject": 0,
        "draw": 2,  # B (no smaller model box inside the container), D (the click found none)
        "part": 1,
        "container": 1,
        "several": 1,
        "click": 2,
    }
    # part 1.6 + yes 1.6 | container 1.6 + draw 7 | several 1.6 + 2 x click 1.9 + yes 1.6 + draw 7
    assert store.annotation_seconds() == pytest.approx(25.8, abs=1e-9)
    counts = count_answers(store.actions())
    assert counts == Counts(boxes_drawn=2, verifications=5, images=1, images_completed=1, clicks=2)
    assert COSTS.seconds(counts) == pytest.approx(25.8, abs=1e-9)
    for box_id, answer in ((part, "part"), (contains, "container"), (several, "several")):
        assert (store.box(box_id).status, store.box(box_id).source) == ("rejected", answer)
    (refined,) = store.boxes(image, statuses="accepted")[:1]
    assert (refined.xyxy, refined.source) == ((9, 9, 50, 51), "refined")
    clicked = [b for b in store.boxes(image) if b.source == "click"]
    assert [(b.xyxy, b.status) for b in clicked] == [((11, 61, 50, 100), "accepted")]
    drawn = sorted(b.xyxy for b in store.boxes(image, statuses="drawn"))
    assert drawn == [(60, 10, 100, 50), (60, 60, 100, 100)]
    assert store.box(around_a).status == store.box(on_c).status == "predicted"
    assert store.image(image).review_state == "complete"
    # answering again asks nothing and costs nothing (resumable)
    assert sum(oracle.verify_image(image).values()) == 0
    assert store.annotation_seconds() == pytest.approx(25.8, abs=1e-9)


def test_without_rich_answers_the_same_boxes_are_redrawn(sim) -> None:
    store, oracle, image = sim
    oracle.rich_answers = False
    _predict(store, image, [(PART_OF_A, 0, 0.9), (CONTAINS_B, 0, 0.8), (OVER_C_AND_D, 1, 0.7)])
    tally = oracle.verify_image(image)
    assert tally == {"accept": 0, "set_class": 0, "correct": 3, "reject": 0, "draw": 1}
    assert store.annotation_seconds() == pytest.approx(3 * 8.6 + 7, abs=1e-9)  # 32.8


def test_a_wrong_refined_box_is_redrawn_and_a_class_fixed(sim) -> None:
    store, oracle, image = sim
    part_of_c, _ = _predict(
        store,
        image,
        [
            ([10, 60, 28, 96], 0, 0.9),  # part of C, but class a (C is b)
            ([5, 55, 52, 102], 0, 0.1),  # its refined box: IoU 0.72 with C, class a
        ],
    )
    tally = oracle.verify_image(image)
    assert (tally["part"], tally["set_class"]) == (1, 1)  # yes to the place, a class change
    refined = next(b for b in store.boxes(image) if b.source == "refined")
    assert (refined.status, refined.class_id) == ("corrected", store.class_id("b"))
    assert store.box(part_of_c).source == "part"
    # A, B and D were missed: drawn. part 1.6 + (yes 1.6 + class 1.5) + 3 x 7
    assert store.annotation_seconds() == pytest.approx(25.7, abs=1e-9)


def test_a_refined_box_far_from_the_object_is_redrawn(sim) -> None:
    store, oracle, image = sim
    _predict(
        store,
        image,
        [
            (PART_OF_A, 0, 0.9),
            ([5, 5, 80, 60], 0, 0.1),  # holds the part, IoU 0.39 with A: wrong
        ],
    )
    tally = oracle.verify_image(image)
    assert (tally["part"], tally["correct"], tally["draw"]) == (1, 1, 3)
    refined = next(b for b in store.boxes(image) if b.source == "refined")
    assert (refined.status, refined.xyxy) == ("corrected", (10, 10, 50, 50))
    # part 1.6 + redraw (1.6 + 7) + 3 x 7
    assert store.annotation_seconds() == pytest.approx(31.2, abs=1e-9)


def test_the_setting_and_its_flag(tmp_path: Path) -> None:
    from napari_al.simulation.parallel import _check_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert not config_from_args(p.parse_args(["--preset", "ci", "--out", "x"])).rich_answers
    args = p.parse_args(["--preset", "ci", "--rich-answers", "--out", "x"])
    assert config_from_args(args).rich_answers
    assert SimConfig().rich_answers is False
    # a results folder from before the setting existed ran without rich answers
    old = SimConfig().to_dict()
    del old["rich_answers"]
    (tmp_path / "config.json").write_text(json.dumps(old, default=str))
    _check_config(tmp_path, SimConfig())
    with pytest.raises(ValueError, match="rich_answers: false there, true now"):
        _check_config(tmp_path, SimConfig(rich_answers=True))
