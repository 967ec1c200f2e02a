"""The dialog planner: the value rule of its questions (core, numpy only), the switch from
clicks to boxes, and the queue the workflow plans from a store (stored, read back, replanned)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_al.core.annotator import Annotator
from napari_al.core.costs import CostModel
from napari_al.core.dialog import (
    ANSWER_KEYS,
    Question,
    binary_entropy,
    draw_question,
    localisation,
    normalise,
    order,
    question_value,
    region_question,
    supervision_mode,
    verify_question,
)
from napari_al.core.store import ProjectStore
from napari_al.core.workflow import (
    ClickCandidates,
    DialogSettings,
    Planner,
    QuerySettings,
    QuestionGains,
    is_open,
    plan_questions,
    rank_pool,
    replan,
    stored_queries,
    stored_questions,
)

C = CostModel()  # draw 7 s, verify 1.6 s, click 1.9 s
SHA1, SHA2 = "ab" * 32, "cd" * 32

# -- the value rule (core) -------------------------------------------------------------------


def test_binary_entropy_and_normalise() -> None:
    h = binary_entropy([0.0, 0.5, 1.0, np.nan, 0.11])
    assert h[:4].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert h[4] == pytest.approx(0.4999, abs=1e-3)
    assert normalise({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert normalise({7: 5.0}) == {7: 0.5}  # one value: no scale
    assert normalise({1: float("nan"), 2: 1.0}) == {2: 0.5}


def test_a_verify_question_gains_what_it_teaches_and_what_it_saves() -> None:
    q = verify_question(1, 5, (0, 0, 10, 10), 2, "RBC", 0.9, 0.4, C)
    assert (q.kind, q.box_id, q.class_name, q.seconds) == ("verify", 5, "RBC", C.verify_s)
    assert q.p_change == pytest.approx(0.1)  # only a no changes what training assumes
    assert q.saved_s == pytest.approx(0.9 * 7.0 - 1.6)  # P(yes) x draw_s - verify_s
    assert q.value == pytest.approx((0.4 * 0.1 + (0.9 * 7 - 1.6) / 7) / 1.6)
    assert q.text == "is this RBC box right?"
    assert ("W", "yes") in q.keys and ("Shift+K", "several objects") in q.keys
    # without the saving term a likely-yes box would come after an unlikely one ...
    likely = verify_question(1, 6, (0, 0, 9, 9), 2, "RBC", 0.95, 0.2, C, saving_weight=0.0)
    unsure = verify_question(1, 7, (0, 0, 9, 9), 2, "RBC", 0.4, 0.9, C, saving_weight=0.0)
    assert likely.value < unsure.value
    # ... with it (the default), it saves 5 s of drawing and comes first
    likely = verify_question(1, 6, (0, 0, 9, 9), 2, "RBC", 0.95, 0.2, C)
    unsure = verify_question(1, 7, (0, 0, 9, 9), 2, "RBC", 0.4, 0.9, C)
    assert likely.value > unsure.value
    # no scorer value: the answer's entropy
    assert verify_question(1, 8, (0, 0, 1, 1), 2, "x", 0.5, None, C).gain == pytest.approx(1.0)


def test_region_and_draw_questions_price_the_labels_that_follow() -> None:
    r = region_question(1, (0, 0, 50, 50), 3, "WBC", 0.8, 1.5, 0.6, C, supervision="click")
    label = C.click_s + C.verify_s  # a click and the yes on its box
    assert r.p_change == 0.8 and r.seconds == pytest.approx(C.verify_s + 1.5 * label)
    assert r.saved_s == pytest.approx(1.5 * (C.draw_s - label) - C.verify_s)
    assert r.text == "any more WBC here?"
    boxed = region_question(1, (0, 0, 50, 50), 3, "WBC", 0.8, 1.5, 0.6, C, supervision="box")
    assert boxed.seconds == pytest.approx(C.verify_s + 1.5 * C.draw_s)
    assert boxed.saved_s == pytest.approx(-C.verify_s) and boxed.value < r.value
    d = draw_question(2, 3.0, None, C, supervision="box")
    assert d.p_change == pytest.approx(1 - math.exp(-3)) and d.gain == 1.0
    assert d.seconds == pytest.approx(3 * C.draw_s) and d.saved_s == 0.0
    assert d.keys == (ANSWER_KEYS["draw"][1], ANSWER_KEYS["draw"][2])  # R, then Shift+W
    nothing = draw_question(2, 0.0, None, C)
    assert nothing.p_change == 0 and nothing.value == 0 and order([nothing]) == []
    assert question_value(1, 1, 0, 0, C) == -math.inf


def test_order_keeps_positive_values_best_first_and_questions_round_trip() -> None:
    a = verify_question(1, 5, (0, 0, 10, 10), 2, "RBC", 0.9, 0.4, C)
    b = region_question(2, (0, 0, 50, 50), 3, "WBC", 0.3, 0.35, 0.1, C, supervision="box")
    c = draw_question(3, 2.0, 0.5, C)
    assert b.value < 0 and order([c, b, a]) == [a, c]
    assert Question.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="kind"):
        Question("ask", 1)


def test_questions_of_equal_value_go_by_the_strategys_gain() -> None:
    """Boxes calibrated alike (one isotonic block) have equal value once P(change) is 0; the
    strategy's gain then decides, not the image id (found by a newcomer: every strategy gave
    the same queue, in id order)."""
    qs = [verify_question(i, i, (0, 0, 10, 10), 1, "RBC", 1.0, g, C) for i, g in
          enumerate([0.2, 0.9, 0.5], start=1)]  # fmt: skip
    assert len({q.value for q in qs}) == 1
    assert [q.image_id for q in order(qs)] == [2, 3, 1]


def test_clicks_while_localisation_improves_then_boxes_for_good() -> None:
    m = lambda ap, ap50: {"map": ap, "map50": ap50}  # noqa: E731
    assert localisation(m(0.3, 0.6)) == pytest.approx(0.5)
    assert localisation({"map50": 0.5}) is None and localisation(m(0.1, 0.0)) is None
    assert supervision_mode([])[0] == "click"  # nothing measured yet
    assert supervision_mode([m(0.2, 0.6)])[0] == "click"
    assert supervision_mode([m(0.2, 0.6), {}, m(0.3, 0.6)])[0] == "click"  # 0.33 -> 0.5
    mode, why = supervision_mode([m(0.2, 0.6), m(0.3, 0.6), m(0.303, 0.6)])
    assert mode == "box" and "rose +0.005" in why
    # the switch is one way: a later rise does not bring the clicks back
    assert supervision_mode([m(0.2, 0.6), m(0.2, 0.6), m(0.4, 0.6)])[0] == "box"
    assert supervision_mode([], "box")[0] == "box"
    assert supervision_mode([m(0.2, 0.6), m(0.2, 0.6)], "click")[0] == "click"
    with pytest.raises(ValueError):
        supervision_mode([], "weak")


# -- the queue from a store (workflow) -----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    s = ProjectStore.create(tmp_path / "p")
    s.add_class("cell")
    s.add_class("debris")
    for name in ("a.png", "b.png"):  # the planner asks nothing about a file that is gone
        Image.new("RGB", (200, 100)).save(tmp_path / "p" / name)
    s.add_image(tmp_path / "p" / "a.png", SHA1, 200, 100, split="pool")
    s.add_image(tmp_path / "p" / "b.png", SHA2, 200, 100, split="pool")
    yield s
    s.close()


def _predict(store: ProjectStore) -> list[int]:
    cell, debris = store.class_id("cell"), store.class_id("debris")
    return store.replace_predictions(
        1,
        [
            ((10, 10, 30, 30), cell, 0.95),  # likely yes
            ((60, 10, 80, 30), cell, 0.5),  # unsure
            ((100, 10, 120, 30), debris, 0.1),  # not shown: 0.1 x 7 < 1.6
        ],
        model_version=None,
    )


def test_the_queue_asks_shown_boxes_then_regions_then_drawing(store: ProjectStore) -> None:
    likely, unsure, hidden = _predict(store)
    # a candidate no box covers, on image 1; image 2 has nothing: a draw question
    cands = {
        1: ClickCandidates(
            np.asarray([[150, 50, 180, 90]], np.float32),
            np.asarray([[0.7, 0.0]], np.float32),
            labels=np.asarray([0]),
        )
    }
    queue = plan_questions(store, candidates=cands)
    kinds = [(q.kind, q.image_id, q.box_id) for q in queue]
    assert ("verify", 1, hidden) not in kinds  # the calibrated rule does not show it
    # the unsure box teaches most (1 bit, P(change) 0.5), the likely one saves most (5 s)
    assert kinds[:2] == [("verify", 1, unsure), ("verify", 1, likely)]
    region = next(q for q in queue if q.kind == "region")
    assert region.xyxy == (150, 50, 180, 90) and region.class_name == "cell"
    assert region.p_yes == pytest.approx(0.7)
    # image 1 has questions: no draw question there; image 2 has nothing else
    assert [q.image_id for q in queue if q.kind == "draw"] == [2]
    assert all(q.value > 0 for q in queue)
    assert [q.value for q in queue] == sorted((q.value for q in queue), reverse=True)
    assert all(q.supervision == "click" for q in queue)  # no model measured yet


def test_answers_close_questions_and_replanning_follows_them(store: ProjectStore) -> None:
    likely, unsure, _ = _predict(store)
    ann = Annotator(store)
    planner = Planner.build(store)
    queue = plan_questions(store)
    first = queue[0]
    assert first.box_id == unsure and is_open(store, first)
    ann.accept(unsure)
    assert not is_open(store, first)
    queue = replan(queue, planner, 1)
    assert [q.box_id for q in queue if q.kind == "verify"] == [likely]
    # a prediction on a box a person labelled is not asked about
    ann.draw(1, (9, 10, 30, 31), store.class_id("cell"))
    queue = replan(queue, planner, 1)
    assert not [q for q in queue if q.kind == "verify"]
    # nothing left to ask on image 1 and, by the prior (1 object per image without complete
    # images), nothing missing there: only image 2 gets a draw question
    assert [q.image_id for q in queue if q.kind == "draw"] == [2]
    draw2 = next(q for q in queue if q.kind == "draw")
    # image 2 labelled in full, 4 cells: the prior is 4, image 1 misses 2 of them
    for k in range(4):
        ann.draw(2, (10 + 30 * k, 10, 30 + 30 * k, 30), store.class_id("cell"))
    ann.complete_image(2)
    assert not is_open(store, draw2)
    planner = Planner.build(store)
    queue = replan(replan(queue, planner, 2), planner, 1)
    (draw1,) = queue
    assert (draw1.kind, draw1.image_id, draw1.expected) == ("draw", 1, 2.0)
    assert draw1.p_change == pytest.approx(1 - math.exp(-2))


def test_region_questions_close_on_either_answer(store: ProjectStore) -> None:
    cell = store.class_id("cell")
    q = region_question(1, (10, 10, 60, 50), cell, "cell", 0.8, 1.0, None, C)
    ann = Annotator(store)
    assert is_open(store, q)
    ann.answer_region(1, q.xyxy, cell, False)
    assert not is_open(store, q)
    ann.undo()  # the no taken back: open again
    assert is_open(store, q)
    ann.answer_region(1, q.xyxy, store.class_id("debris"), True)  # another class: still open
    assert is_open(store, q)
    ann.answer_region(1, q.xyxy, cell, True)
    assert not is_open(store, q)


def test_gains_from_a_planning_pass_order_the_boxes(store: ProjectStore) -> None:
    likely, unsure, _ = _predict(store)
    # a scorer found the likely box very informative and the unsure one not at all
    gains = QuestionGains(box={likely: 1.0, unsure: 0.0}, image={2: 0.25})
    queue = plan_questions(store, gains=gains)
    by_box = {q.box_id: q for q in queue if q.kind == "verify"}
    assert by_box[likely].gain == 1.0 and by_box[unsure].gain == 0.0
    draw = next(q for q in queue if q.kind == "draw")
    assert draw.gain == 0.25
    assert QuestionGains.from_questions(queue).box == {likely: 1.0, unsure: 0.0}


def test_a_saved_queue_is_read_back_and_kept_apart_from_rankings(store: ProjectStore) -> None:
    _predict(store)
    queue = plan_questions(store, save=True, query=QuerySettings(budget=2))
    assert stored_questions(store) == queue[:2]
    latest = store.latest_queries()
    assert latest is not None and latest.unit == "question"
    assert latest.settings["dialog"]["supervision"] == "auto"
    assert latest.settings["supervision_in_force"] == "click"
    # an image ranking saved later does not hide the questions, nor they the ranking
    store.save_queries([], model_version=None, settings={"unit": "image"})
    assert stored_questions(store) == queue[:2] and stored_queries(store) == []
    # rank_pool's unit "question" is the planner's queue (no model: no planning pass)
    items = rank_pool(store, None, QuerySettings(unit="question", budget=3))  # type: ignore[arg-type]
    assert [it.unit for it in items] == ["question"] * 3
    assert [it.breakdown["kind"] for it in items] == [q.kind for q in queue[:3]]
    assert stored_questions(store) == queue[:3]


def test_dialog_settings_are_checked() -> None:
    from napari_al.core.workflow import SettingsError

    with pytest.raises(SettingsError, match="supervision"):
        DialogSettings(supervision="weak")
    with pytest.raises(SettingsError, match="saving_weight"):
        DialogSettings(saving_weight=-1)


def test_a_stored_region_question_is_asked_again_while_open(store: ProjectStore) -> None:
    cell = store.class_id("cell")
    region = region_question(1, (150, 50, 180, 90), cell, "cell", 0.7, 0.7, None, C)
    # no candidates for image 1 here (a viewer without the model's pass): the stored one
    planner = Planner.build(store, questions=[region])
    assert [q.kind for q in planner.image(1)] == ["region"]
    Annotator(store).answer_region(1, region.xyxy, cell, False)
    assert [q.kind for q in planner.image(1)] == ["draw"]  # nothing else left there
    # with candidates for the image, the planner finds its regions itself
    empty = ClickCandidates(np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32))
    assert (
        Planner.build(store, questions=[region], candidates={2: empty}).image(2)[0].kind == "draw"
    )


def test_an_image_the_person_skipped_is_not_asked_about(store: ProjectStore) -> None:
    _predict(store)
    assert {q.image_id for q in plan_questions(store)} == {1, 2}
    Annotator(store).skip_image(2)
    assert {q.image_id for q in plan_questions(store)} == {1}
    assert {q.image_id for q in Planner.build(store).queue([1, 2])} == {1}


@pytest.mark.parametrize("scatter", [False, True])
def test_a_begun_image_keeps_the_front_until_complete(store: ProjectStore, scatter: bool) -> None:
    likely, unsure, _ = _predict(store)
    cell = store.class_id("cell")
    (other,) = store.replace_predictions(2, [((10, 10, 30, 30), cell, 0.5)], model_version=None)
    ann = Annotator(store)
    planner = Planner.build(store, DialogSettings(scatter_images=scatter))
    queue = plan_questions(store)
    # by value alone the other image's unsure box comes before image 1's likely one
    by_value = [q.box_id for q in queue if q.kind == "verify"]
    assert by_value.index(other) < by_value.index(likely)
    first = next(q for q in queue if q.box_id == unsure)
    ann.accept(unsure)  # image 1 begun (partial)
    assert store.image(1).review_state == "partial"
    queue = replan(queue, planner, first.image_id)
    images = [q.image_id for q in queue]
    if scatter:  # the pool's best question each time
        assert [q.value for q in queue] == sorted((q.value for q in queue), reverse=True)
        assert images.index(2) < max(i for i, im in enumerate(images) if im == 1)
    else:  # image 1's questions (its likely box, then its draw question) before image 2's
        assert images == sorted(images) and images[0] == 1
        assert queue[0].box_id == likely
    # a complete image gives the front back
    ann.complete_image(1)
    queue = replan(queue, planner, 1)
    assert all(q.image_id == 2 for q in queue)


@pytest.mark.parametrize("scatter", [False, True])
def test_a_plan_puts_begun_images_first_unless_scattered(
    store: ProjectStore, scatter: bool
) -> None:
    """The first plan (``rank --unit question``, the viewer after a restart) ignored begun
    images, so ``--scatter-images`` changed nothing there (found by a newcomer)."""
    _, unsure, _ = _predict(store)
    cell = store.class_id("cell")
    store.replace_predictions(2, [((10, 10, 30, 30), cell, 0.5)], model_version=None)
    Annotator(store).accept(unsure)  # image 1 begun; its likely box is worth less than image 2's
    queue = plan_questions(store, settings=DialogSettings(scatter_images=scatter))
    images = [q.image_id for q in queue]
    if scatter:
        assert [q.value for q in queue] == sorted((q.value for q in queue), reverse=True)
        assert images[0] == 2  # its unsure box is worth most
    else:
        assert images == sorted(images) and images[0] == 1


def test_no_question_about_a_region_marked_complete(store: ProjectStore) -> None:
    """Every object in a region marked complete is labelled: no verify question about a
    prediction centred there, no region question about a candidate there."""
    from napari_al.core.workflow import mark_region_complete

    likely, unsure, _ = _predict(store)
    cands = {
        1: ClickCandidates(
            np.asarray([[150, 50, 180, 90]], np.float32),
            np.asarray([[0.7, 0.0]], np.float32),
            labels=np.asarray([0]),
        )
    }
    before = plan_questions(store, candidates=cands, image_ids=[1])
    assert {(q.kind, q.box_id) for q in before} == {
        ("verify", likely),
        ("verify", unsure),
        ("region", None),
    }
    mark_region_complete(Annotator(store), 1, (50, 0, 200, 100))  # holds `unsure`, the region
    after = plan_questions(store, candidates=cands, image_ids=[1])
    assert [(q.kind, q.box_id) for q in after] == [("verify", likely)]


def test_no_question_about_a_file_deleted_since_import(store: ProjectStore, caplog) -> None:
    """Without a model no pass reads the images: the planner itself leaves out (and reports)
    an image whose file is gone, instead of asking a person to draw on it."""
    store.abs_path(store.image(2)).unlink()
    skipped: list[tuple[int, str]] = []
    queue = plan_questions(store, on_skip=lambda i, m: skipped.append((i, m)))
    assert {q.image_id for q in queue} == {1}
    assert skipped == [(2, f"{store.abs_path(store.image(2))}: file not found (moved or "
                        "deleted since import)")]  # fmt: skip
