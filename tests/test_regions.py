"""Region questions for missed objects ("any more <class> here?"): finding the regions, the
store action and its cost, undo, what a "no" trains as, and the workflow's questions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_al.core.annotator import Annotator
from napari_al.core.calibration import ScoreCalibration, ScoreMap
from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.regions import find_regions, inside, merge_boxes
from napari_al.core.store import ProjectStore, StoreError
from napari_al.core.workflow import (
    CALIBRATION_KEY,
    ClickCandidates,
    RegionSettings,
    answer_region,
    known_empty,
    region_questions,
    suggestion_candidates,
    training_examples,
)

SHA = "cd" * 32

# -- finding the regions (core, numpy only) ------------------------------------------------


def test_overlapping_candidates_of_a_class_merge_into_one_region() -> None:
    boxes = [
        [10, 10, 30, 30],  # 0: class 0
        [25, 12, 45, 32],  # 1: class 0, overlaps 0
        [12, 12, 28, 28],  # 2: class 1, same place as 0: a region of its own class
        [100, 100, 120, 120],  # 3: class 0, far away
        [29.5, 40, 40, 50],  # 4: class 0, 8 px below 1: touches only with a gap
    ]
    labels = [0, 0, 1, 0, 0]
    p = [0.5, 0.4, 0.3, 0.2, 0.1]
    regions = find_regions(boxes, labels, p, min_probability=0.0)
    got = [(r.xyxy, r.class_index, r.members) for r in regions]
    assert got == [
        ((10, 10, 45, 32), 0, (0, 1)),  # expected 0.9
        ((12, 12, 28, 28), 1, (2,)),  # 0.3
        ((100, 100, 120, 120), 0, (3,)),  # 0.2
        ((29.5, 40, 40, 50), 0, (4,)),  # 0.1
    ]
    assert regions[0].expected == pytest.approx(0.9)
    assert regions[0].chance == pytest.approx(1 - 0.5 * 0.6)
    # with a gap of 10 px, candidate 4 joins the first region
    merged = find_regions(boxes, labels, p, gap=10, min_probability=0.0)
    assert merged[0].members == (0, 1, 4) and merged[0].xyxy == (10, 10, 45, 50)
    # min_chance and limit
    assert [r.members for r in find_regions(boxes, labels, p, min_chance=0.25)] == [(0, 1), (2,)]
    assert len(find_regions(boxes, labels, p, min_probability=0.0, limit=1)) == 1
    # below min_probability: left out
    assert [r.members for r in find_regions(boxes, labels, p, min_probability=0.25)] == [
        (0, 1),
        (2,),
    ]


def test_covered_candidates_and_regions_answered_no_are_not_asked() -> None:
    boxes = [[10, 10, 30, 30], [60, 60, 80, 80], [100, 10, 120, 30]]
    labels, p = [0, 0, 1], [0.9, 0.8, 0.7]
    # a known box at IoU 0.36 with the first: covered; the third lies in a region answered
    # "no" for class 1; a "no" for class 0 there would not cover it
    known = [[14, 14, 34, 34]]
    regions = find_regions(
        boxes, labels, p, known=known, empty=[[90, 0, 130, 40]], empty_labels=[1]
    )
    assert [r.members for r in regions] == [(1,)]
    regions = find_regions(
        boxes, labels, p, known=known, empty=[[90, 0, 130, 40]], empty_labels=[0]
    )
    assert [r.members for r in regions] == [(1,), (2,)]
    # IoU 0.3 exactly covers; just below does not
    assert find_regions([[0, 0, 10, 10]], [0], [0.9], known=[[0, 0, 10, 3]]) == []
    assert len(find_regions([[0, 0, 10, 10]], [0], [0.9], known=[[0, 0, 10, 2.9]])) == 1


def test_a_dense_chain_of_candidates_is_cut_at_the_largest_region() -> None:
    # ten overlapping boxes in a row across a 200x40 image: one region without a cap,
    # regions of at most a quarter of the image with it
    boxes = [[18 * i, 10, 18 * i + 20, 30] for i in range(10)]
    one = merge_boxes(boxes)
    assert one == [list(range(10))]
    capped = find_regions(boxes, [0] * 10, [0.5] * 10, image_size=(200, 40))
    assert len(capped) > 1
    for r in capped:
        x1, y1, x2, y2 = r.xyxy
        assert (x2 - x1) * (y2 - y1) <= 0.25 * 200 * 40
    assert sorted(m for r in capped for m in r.members) == list(range(10))
    # regions overlapping after the first pass merge: a bridge candidate comes last
    assert merge_boxes([[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 25, 10]]) == [[0, 2, 1]]


def test_inside_needs_the_centre_in_a_region_of_the_same_label() -> None:
    boxes = [[0, 0, 10, 10], [0, 0, 30, 30], [20, 20, 40, 40]]
    got = inside(boxes, [1, 1, 2], [[0, 0, 20, 20]], [1])
    assert got.tolist() == [True, True, False]  # centres (5, 5), (15, 15) in; (30, 30) not
    assert inside(boxes, [2, 2, 2], [[0, 0, 20, 20]], [1]).tolist() == [False] * 3
    with pytest.raises(ValueError):
        inside(boxes, [1], [[0, 0, 1, 1]], [1])


# -- the store action, its cost and undo ----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    s = ProjectStore.create(tmp_path / "p")
    s.add_class("cell")
    s.add_class("debris")
    s.add_image(tmp_path / "p" / "a.png", SHA, 200, 100)
    yield s
    s.close()


def test_a_no_stores_the_region_known_empty_a_yes_only_logs(store: ProjectStore) -> None:
    ann = Annotator(store)
    cell = store.class_id("cell")
    cmd = ann.answer_region(1, (10, 10, 60, 50), cell, False, expected=1.25)
    (box,) = store.boxes()
    assert (box.xyxy, box.class_id, box.status, box.source) == (
        (10, 10, 60, 50),
        cell,
        "rejected",
        "region",
    )
    assert store.empty_regions(1) == [box]
    (action,) = store.actions()
    assert (action.kind, action.box_id, action.id) == ("region", box.id, cmd.action_id)
    assert action.payload["answer"] == "no" and action.payload["expected"] == 1.25
    assert action.payload["region"] == [10, 10, 60, 50] and action.payload["class_id"] == cell
    assert store.image(1).review_state == "partial"
    # undo takes the answer back (box gone, image unseen again); redo puts it back
    ann.undo()
    assert store.boxes() == [] and store.image(1).review_state == "unseen"
    ann.redo()
    assert store.box(box.id).source == "region"
    # a yes: one logged action, no data change, nothing to undo
    n_undo = len(ann.undo_stack)
    action_id = ann.answer_region(1, (100, 10, 150, 60), cell, True, expected=0.5)
    assert isinstance(action_id, int) and len(ann.undo_stack) == n_undo
    last = store.actions()[-1]
    assert (last.kind, last.box_id, last.payload["answer"]) == ("region", None, "yes")
    assert len(store.boxes()) == 1
    # one action each, priced as a verification
    counts = count_answers(store.actions())
    assert counts.region_questions == 2  # the no, the yes (undo/redo are not answers)
    assert CostModel().of_kind("region") == CostModel().verify_s


def test_region_answers_are_checked_and_reserved(store: ProjectStore) -> None:
    cell = store.class_id("cell")
    with pytest.raises(StoreError, match="yes or no"):
        store.answer_region(1, (0, 0, 10, 10), cell, "maybe")
    with pytest.raises(StoreError):
        store.answer_region(1, (0, 0, 300, 10), cell, "no")  # outside the 200x100 image
    with pytest.raises(StoreError):
        store.answer_region(1, (0, 0, 10, 10), 99, "no")
    with pytest.raises(StoreError, match="written by the store"):
        store.log_action("region", image_id=1)
    assert store.boxes() == [] and store.actions() == []
    empty = ClickCandidates(np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32))
    with pytest.raises(StoreError, match="image 999 does not exist"):  # not "nothing to ask"
        region_questions(store, 999, empty)


def test_counts_and_seconds_of_regions_and_clicks_without_a_box_agree() -> None:
    class A:
        def __init__(self, kind: str) -> None:
            self.kind, self.image_id = kind, 1

    kinds = ["region", "region", "click", "click_none", "accept", "draw"]
    counts = count_answers([A(k) for k in kinds])
    assert counts == Counts(boxes_drawn=1, verifications=1, images=1, clicks=2, region_questions=2)
    c = CostModel()
    assert c.seconds(counts) == pytest.approx(sum(c.of_kind(k) for k in kinds))
    assert c.seconds(counts) == pytest.approx(2 * 1.6 + 2 * 1.9 + 1.6 + 7.0)


# -- what a "no" trains as -------------------------------------------------------------------


def test_a_region_answered_no_is_background_and_silences_its_class(store: ProjectStore) -> None:
    ann = Annotator(store)
    cell, debris = store.class_id("cell"), store.class_id("debris")
    store.replace_predictions(
        1,
        [
            ((12, 12, 22, 22), cell, 0.3),  # centred in the region, its class: not noisy
            ((30, 20, 40, 30), debris, 0.3),  # centred in it, another class: still noisy
            ((120, 20, 140, 40), cell, 0.3),  # outside: still noisy
        ],
        model_version=None,
    )
    ann.answer_region(1, (10, 10, 60, 50), cell, False)

    (ex,) = training_examples(store, store.training_snapshot())
    assert [tuple(b) for b in ex.boxes.tolist()] == [(30, 20, 40, 30), (120, 20, 140, 40)]
    assert ex.noisy.tolist() == [True, True]
    assert [tuple(b) for b in ex.background_boxes.tolist()] == [(10, 10, 60, 50)]
    assert len(ex.ignore_regions) == 0
    assert known_empty(store, 1, [[12, 12, 22, 22], [12, 12, 22, 22]], [cell, debris]).tolist() == [
        True,
        False,
    ]


# -- the workflow's questions ----------------------------------------------------------------


def candidates(boxes, labels, scores, n_classes: int = 2, version: int | None = None):  # type: ignore[no-untyped-def]
    probs = np.zeros((len(boxes), n_classes), np.float32)
    probs[np.arange(len(boxes)), labels] = scores
    return ClickCandidates(
        np.asarray(boxes, np.float32),
        probs,
        model_version=version,
        labels=np.asarray(labels, np.int64),
    )


def test_questions_come_from_uncovered_candidates_and_no_is_never_asked_again(
    store: ProjectStore,
) -> None:
    ann = Annotator(store)
    cell, debris = store.class_id("cell"), store.class_id("debris")
    shown, hidden = store.replace_predictions(
        1, [((10, 10, 30, 30), cell, 0.9), ((100, 10, 120, 30), cell, 0.1)], model_version=None
    )
    store.draw_box(1, (150, 60, 170, 80), debris)
    cands = candidates(
        [
            [11, 11, 30, 30],  # on the shown prediction: covered
            [100, 10, 120, 30],  # the hidden prediction: a missed object?
            [112, 15, 132, 35],  # overlaps it: the same region
            [151, 61, 170, 80],  # on the drawn box: covered
            [40, 60, 60, 80],  # debris, uncovered
            [170, 5, 190, 20],  # cell, too unlikely to ask about alone (0.1 < 0.23)
        ],
        [0, 0, 0, 1, 1, 0],
        [0.9, 0.3, 0.2, 0.9, 0.6, 0.1],
    )
    qs = region_questions(store, 1, cands)
    assert [(q.xyxy, q.class_id, q.candidates) for q in qs] == [
        ((40, 60, 60, 80), debris, 1),  # expected 0.6
        ((100, 10, 132, 35), cell, 2),  # expected 0.5, chance 1 - 0.7 x 0.8 = 0.44
    ]
    assert qs[1].expected == pytest.approx(0.5) and qs[1].chance == pytest.approx(0.44)
    assert qs[1].text == "any more cell here?" and qs[1].contains((110, 20))
    assert not qs[1].contains((99, 20))
    # a rule that shows every prediction covers the hidden one's candidate too: the one
    # beside it (0.2) alone is not worth a question
    qs2 = region_questions(store, 1, cands, shown=lambda row: True)
    assert [q.xyxy for q in qs2] == [(40, 60, 60, 80)]
    # no: known empty, not asked again; yes: asked again until the clicks cover it
    answer_region(ann, qs[0], yes=False)
    answer_region(ann, qs[1], yes=True)
    assert [q.class_id for q in region_questions(store, 1, cands)] == [cell]
    assert [a.payload["answer"] for a in store.actions(kind="region")] == ["no", "yes"]
    # settings: a lower chance asks about the unlikely one too
    low = region_questions(store, 1, cands, settings=RegionSettings(min_chance=0.05))
    assert [q.xyxy for q in low] == [(100, 10, 132, 35), (170, 5, 190, 20)]
    assert hidden and shown


def test_calibration_and_suggestions_feed_the_same_questions(store: ProjectStore) -> None:
    cell = store.class_id("cell")
    sugg = [((100, 10, 120, 30), 0.3, 0), ((20, 20, 40, 40), 0.6, 1)]
    cands = suggestion_candidates(sugg, 2, model_version=1)
    assert cands.class_indices().tolist() == [0, 1]
    assert [q.xyxy for q in region_questions(store, 1, cands)] == [
        (20, 20, 40, 40),
        (100, 10, 120, 30),
    ]
    # model version 1's calibration says a cell candidate at 0.3 is never an object
    cal = ScoreCalibration(
        method="isotonic",
        per_class={"cell": ScoreMap("isotonic", x=(0.0, 0.5, 1.0), y=(0.0, 0.0, 1.0))},
    )
    store.add_model_version("m1.pt", "fake", {CALIBRATION_KEY: cal.to_dict()})
    assert [q.xyxy for q in region_questions(store, 1, cands)] == [(20, 20, 40, 40)]
    raw = region_questions(store, 1, cands, settings=RegionSettings(calibrated=False))
    assert [q.class_id for q in raw][1] == cell
    assert region_questions(store, 1, suggestion_candidates([], 2)) == []
