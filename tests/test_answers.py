"""Rich verification answers: the refined-box geometry, the store action and its cost, undo,
the workflow's follow-ups, what the answered boxes train as, and calibration samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_clicks import FakeClock, write_transactions

from napari_al.core.annotator import Annotator
from napari_al.core.answers import ANSWERS, nested_candidates, refine_box
from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.store import ProjectStore, StoreError
from napari_al.core.workflow import (
    AnswerSettings,
    ClickCandidates,
    answer_box,
    judged_samples,
    stored_candidates,
    training_examples,
)

# -- the refined box ------------------------------------------------------------------------

#: The judged box: 20 x 20 at (40, 40).
JUDGED = (40.0, 40.0, 60.0, 60.0)
CANDIDATES = np.array(
    [
        [30, 30, 70, 70],  # 0: holds the judged box, 4x its area
        [38, 38, 62, 62],  # 1: holds it, only 1.44x: a different box still
        [41, 41, 60, 60],  # 2: nearly the judged box itself (0.9x): never proposed
        [45, 45, 55, 55],  # 3: inside it, 1/4 of its area
        [42, 42, 58, 58],  # 4: inside it, 0.64x
        [35, 35, 65, 55],  # 5: holds 75% of it only (y 55-60 outside)
        [100, 100, 150, 150],  # 6: elsewhere
    ],
    np.float32,
)


def test_part_and_container_pick_the_nested_candidates_only() -> None:
    part = nested_candidates(JUDGED, "part", CANDIDATES)
    assert part.tolist() == [True, True, False, False, False, False, False]
    container = nested_candidates(JUDGED, "container", CANDIDATES)
    assert container.tolist() == [False, False, False, True, True, False, False]
    # 1.44x is larger than 1.25x; a 1.5x minimum leaves only the 4x box
    assert nested_candidates(JUDGED, "part", CANDIDATES, min_area_ratio=1.5).tolist()[:2] == [
        True,
        False,
    ]
    # 75% inside is enough with contain=0.75
    assert nested_candidates(JUDGED, "part", CANDIDATES, contain=0.75)[5]
    with pytest.raises(ValueError, match="refined box"):
        nested_candidates(JUDGED, "several", CANDIDATES)


def test_the_class_probability_picks_among_them() -> None:
    # classes: 0 = cell, 1 = debris
    probs = np.array(
        [[0.3, 0.6], [0.5, 0.1], [0.99, 0.0], [0.2, 0.0], [0.4, 0.0], [0.9, 0.0], [0.95, 0.0]],
        np.float32,
    )
    assert refine_box(JUDGED, "part", CANDIDATES, probs, 0) == 1  # 0.5 beats 0.3
    assert refine_box(JUDGED, "part", CANDIDATES, probs, 1) == 0  # the class decides
    assert refine_box(JUDGED, "container", CANDIDATES, probs, 0) == 4
    assert refine_box(JUDGED, "container", CANDIDATES, probs, 1) is None  # probability 0
    assert refine_box(JUDGED, "part", CANDIDATES, probs, 0, min_probability=0.6) is None
    tie = np.array([[0.5, 0], [0.5, 0], *probs[2:].tolist()], np.float32)
    assert refine_box(JUDGED, "part", CANDIDATES, tie, 0) == 0  # ties: the first
    assert refine_box(JUDGED, "part", np.zeros((0, 4)), np.zeros((0, 2)), 0) is None
    with pytest.raises(ValueError, match="probs must be"):
        refine_box(JUDGED, "part", CANDIDATES, probs[:3], 0)
    with pytest.raises(ValueError, match="class index"):
        refine_box(JUDGED, "part", CANDIDATES, probs, 2)
    assert ANSWERS == ("yes", "part", "container", "several", "wrong_class", "no")


# -- the store, the annotator, the costs ----------------------------------------------------


@pytest.fixture
def project(tmp_path: Path):
    """Classes cell and debris; one 200 x 200 image (no file needed: the candidates are the
    stored predictions); predictions: the judged cell box, a larger cell box holding it, a
    smaller one inside it, a debris box elsewhere; a settable clock."""
    clock = FakeClock()
    d = tmp_path / "proj"
    d.mkdir()
    with ProjectStore.create(d, clock=clock, idle_cutoff_s=1e15) as s:
        cell, debris = s.add_class("cell"), s.add_class("debris")
        s.add_image(d / "a.png", "ab" * 32, 200, 200)
        s.replace_predictions(
            1,
            [
                (JUDGED, cell, 0.5),
                ((30, 30, 70, 70), cell, 0.4),
                ((45, 45, 55, 55), cell, 0.3),
                ((120, 120, 150, 150), debris, 0.9),
            ],
            model_version=None,
        )
        s.log_action("start")  # the first answer gets a dt
        yield s, clock, cell, debris


def _ids(store: ProjectStore) -> list[int]:
    return [b.id for b in store.boxes(1, statuses="predicted")]


def test_a_part_answer_is_one_commit_one_action_charged_verify_s(project) -> None:
    store, clock, cell, _ = project
    judged, holder, inner, _ = _ids(store)
    ann = Annotator(store)
    clock.t += CostModel().verify_s
    with write_transactions(store) as writes:
        got = answer_box(ann, judged, "part")
    assert len(writes) == 1
    assert (got.followup, got.box_id, got.region) == ("verify", judged, JUDGED)
    box = store.box(judged)
    assert (box.status, box.source, box.xyxy, box.class_id) == ("rejected", "part", JUDGED, cell)
    refined = store.box(got.refined_box_id)
    assert (refined.xyxy, refined.status, refined.source, refined.class_id) == (
        (30, 30, 70, 70),
        "pseudo",
        "refined",
        cell,
    )
    assert refined.score == pytest.approx(0.4) and got.probability == pytest.approx(0.4)
    assert store.box(holder).status == "predicted"  # the candidate itself is untouched
    last = store.actions()[-1]
    assert (last.kind, last.box_id, last.dt) == ("part", judged, pytest.approx(1.6))
    assert last.payload["before"]["source"] == "model"
    assert last.payload["after"]["source"] == "part"
    assert last.payload["refined"]["id"] == refined.id
    assert last.payload["review"] == {"before": "unseen", "after": "partial"}
    assert CostModel().of_kind("part") == CostModel().verify_s
    assert count_answers(store.actions()) == Counts(verifications=1, images=1)
    # the follow-up: yes on the refined box
    clock.t += CostModel().verify_s
    ann.accept(got.refined_box_id)
    assert store.box(got.refined_box_id).status == "accepted"
    assert store.annotation_seconds() == pytest.approx(3.2)
    assert count_answers(store.actions()) == Counts(verifications=2, images=1)
    assert inner  # (the smaller box is for the container test)


def test_undo_and_redo_take_the_whole_answer_back(project) -> None:
    store, _, _, _ = project
    judged = _ids(store)[0]
    ann = Annotator(store)
    before = store.box(judged)
    got = answer_box(ann, judged, "container")
    assert got.followup == "verify" and store.box(got.refined_box_id).xyxy == (45, 45, 55, 55)
    with write_transactions(store) as writes:
        ann.undo()
    assert len(writes) == 1
    assert store.box(judged).status == "predicted" and store.box(judged).source == "model"
    assert store.box(judged).xyxy == before.xyxy
    with pytest.raises(StoreError):
        store.box(got.refined_box_id)
    assert store.image(1).review_state == "unseen"
    ann.redo()
    assert store.box(judged).source == "container"
    assert store.box(got.refined_box_id).status == "pseudo"
    assert [a.kind for a in store.actions()][-5:] == ["container", "undo", "undo", "redo", "redo"]


@pytest.mark.parametrize("again", ["accept", "reject", "set_class", "container"])
def test_judging_an_answered_box_again_withdraws_its_pending_refinement(project, again) -> None:
    store, _, _, debris = project
    judged = _ids(store)[0]
    ann = Annotator(store)
    part = answer_box(ann, judged, "part")
    with write_transactions(store) as writes:
        if again == "accept":
            ann.accept(judged)
        elif again == "reject":
            ann.reject(judged)
        elif again == "set_class":
            ann.set_class(judged, debris)
        else:
            kept = answer_box(ann, judged, "container").refined_box_id
    assert len(writes) == 1  # the new judgement and the withdrawal: one transaction
    with pytest.raises(StoreError):
        store.box(part.refined_box_id)  # the part answer's proposal is gone
    pending = [b.id for b in store.boxes(1, statuses="pseudo")]
    assert pending == ([kept] if again == "container" else [])
    ann.undo()  # one undo brings the answer and its proposal back
    assert store.box(judged).source == "part" and store.box(judged).status == "rejected"
    assert store.box(part.refined_box_id).status == "pseudo"
    ann.redo()
    with pytest.raises(StoreError):
        store.box(part.refined_box_id)


def test_an_answered_refinement_is_not_withdrawn(project) -> None:
    store, _, _, _ = project
    judged = _ids(store)[0]
    ann = Annotator(store)
    part = answer_box(ann, judged, "part")
    ann.accept(part.refined_box_id)  # yes on the proposal: it is the person's box now
    ann.accept(judged)
    assert store.box(part.refined_box_id).status == "accepted"


def test_several_asks_for_clicks_no_refined_box(project) -> None:
    store, _, _, _ = project
    judged = _ids(store)[0]
    ann = Annotator(store)
    n = len(store.boxes())
    got = answer_box(ann, judged, "several")
    assert (got.followup, got.refined_box_id, got.region) == ("click", None, JUDGED)
    assert len(store.boxes()) == n and store.box(judged).source == "several"
    assert store.actions()[-1].payload["refined"] is None
    with pytest.raises(StoreError, match="several"):
        store.answer_box(judged, "several", refined=(0, 0, 10, 10))
    with pytest.raises(StoreError, match="rich answer"):
        store.answer_box(judged, "maybe")


def test_the_older_answers_are_the_stores_accept_reject_set_class(project) -> None:
    store, _, cell, debris = project
    judged, holder, inner, other = _ids(store)
    ann = Annotator(store)
    assert answer_box(ann, judged, "yes").followup is None
    assert store.box(judged).status == "accepted"
    answer_box(ann, holder, "no")
    assert store.box(holder).status == "rejected" and store.box(holder).source == "model"
    answer_box(ann, inner, "wrong_class", class_id=debris)
    assert store.box(inner).class_id == debris
    assert [a.kind for a in store.actions()][-3:] == ["accept", "reject", "set_class"]
    with pytest.raises(ValueError, match="class_id"):
        answer_box(ann, other, "wrong_class")
    with pytest.raises(ValueError, match="unknown answer"):
        answer_box(ann, other, "maybe")
    assert cell != debris


def test_no_fitting_candidate_means_draw_and_labelled_boxes_are_never_proposed(project) -> None:
    store, _, cell, _ = project
    judged, holder, _, _ = _ids(store)
    ann = Annotator(store)
    ann.accept(holder)  # the larger box is another object a person already labelled
    got = answer_box(ann, judged, "part")
    assert (got.followup, got.refined_box_id) == ("draw", None)
    assert store.box(judged).source == "part"
    # explicit candidates (e.g. the detector's): probabilities per class
    ann.undo()
    ann.undo()
    cands = ClickCandidates(
        np.array([[35, 35, 66, 66]], np.float32), np.array([[0.2, 0.7]], np.float32), 3
    )
    got = answer_box(ann, judged, "part", candidates=cands)
    refined = store.box(got.refined_box_id)
    assert refined.xyxy == (35, 35, 66, 66) and refined.model_version == 3
    assert refined.score == pytest.approx(0.2)
    ann.undo()
    got = answer_box(
        ann, judged, "part", candidates=cands, settings=AnswerSettings(min_probability=0.3)
    )
    assert got.followup == "draw"
    assert cell


def test_stored_candidates_hold_each_score_in_its_class_column(project) -> None:
    store, _, _, _ = project
    c = stored_candidates(store, 1)
    assert c.boxes.shape == (4, 4) and c.probs.shape == (4, 2)
    assert np.allclose(c.probs, [[0.5, 0], [0.4, 0], [0.3, 0], [0, 0.9]])
    assert c.model_version is None


# -- what the answered boxes train as -------------------------------------------------------


def _example(store: ProjectStore):  # type: ignore[no-untyped-def]
    (ex,) = training_examples(store, store.training_snapshot())
    return ex


def _rows(a: np.ndarray) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in r) for r in a.tolist()]


def test_an_answered_box_is_no_positive_and_no_background(project) -> None:
    store, _, _, _ = project
    judged, holder, inner, other = _ids(store)
    ann = Annotator(store)
    for b in (holder, inner, other):
        ann.reject(b)
    got = answer_box(ann, judged, "several")
    ex = _example(store)
    assert len(ex.boxes) == 0 and _rows(ex.ignore_regions) == [JUDGED]
    assert JUDGED not in _rows(ex.background_boxes)
    # a click inside it labels an object there: the region no longer hides it
    ann.draw(1, (41, 41, 50, 50), store.box(judged).class_id)
    ex = _example(store)
    assert _rows(ex.boxes) == [(41, 41, 50, 50)] and len(ex.ignore_regions) == 0
    assert got.followup == "click"


def test_the_refined_box_trains_as_a_noisy_label_then_a_target(project) -> None:
    store, _, _, _ = project
    judged, holder, inner, other = _ids(store)
    ann = Annotator(store)
    for b in (holder, inner, other):
        ann.reject(b)
    # the refined box (IoU 0.69 with the judged one) is not "judged" by it
    cands = ClickCandidates(np.array([[38, 38, 62, 62]], np.float32), np.array([[0.6, 0]]))
    got = answer_box(ann, judged, "part", candidates=cands)
    ex = _example(store)
    assert _rows(ex.boxes) == [(38, 38, 62, 62)] and ex.noisy.tolist() == [True]
    # it holds the judged box: no ignore region hides it (the engine drops boxes centred in one)
    assert len(ex.ignore_regions) == 0 and JUDGED not in _rows(ex.background_boxes)
    ann.accept(got.refined_box_id)
    ex = _example(store)
    assert _rows(ex.boxes) == [(38, 38, 62, 62)] and ex.noisy.tolist() == [False]


def test_a_box_drawn_over_a_rejected_click_box_is_not_hidden_by_it(tmp_path: Path) -> None:
    """Before: a rejected click box became an ignore region even when the person then drew
    the object's box, whose centre lay inside it, so training dropped the drawn box."""
    with ProjectStore.create(tmp_path / "p") as store:
        cell = store.add_class("cell")
        store.add_image(tmp_path / "p" / "a.png", "cd" * 32, 100, 100)
        store.replace_predictions(1, [((0, 0, 10, 10), cell, 0.3)], model_version=None)
        ann = Annotator(store)
        ann.reject(store.boxes(statuses="predicted")[0].id)  # some background: an example
        click = ann.click(1, (50, 50), (40, 40, 60, 60), cell, method="image")
        ann.reject(click.box_id)
        assert _rows(_example(store).ignore_regions) == [(40, 40, 60, 60)]
        ann.draw(1, (35, 38, 62, 64), cell)
        ex = _example(store)
        assert _rows(ex.boxes) == [(35, 38, 62, 64)] and len(ex.ignore_regions) == 0


# -- calibration samples ---------------------------------------------------------------------


def test_a_rich_answer_about_a_model_box_is_a_no_for_calibration(project) -> None:
    store, _, _, _ = project
    judged, holder, _, _ = _ids(store)
    ann = Annotator(store)
    ann.accept(holder)
    answer_box(ann, judged, "container")
    s = judged_samples(store)
    assert sorted(zip(s.scores.tolist(), s.outcomes.tolist(), strict=True)) == [
        (pytest.approx(0.4), True),
        (pytest.approx(0.5), False),
    ]
    ann.undo()  # taken back: the box is unjudged again
    s = judged_samples(store)
    assert s.scores.tolist() == [pytest.approx(0.4)]


def test_a_notebook_session_answers_through_the_workflow(project) -> None:
    from napari_al import open_project

    store, _, _, debris = project
    judged, _, inner, _ = _ids(store)
    with open_project(store.project_dir, viewer=False) as session:
        got = session.answer(judged, "part")
        assert got.followup == "verify"
        session.annotator.accept(got.refined_box_id)
        session.answer(inner, "wrong_class", "debris")
        assert session.store.box(inner).class_id == debris
    kinds = [a.kind for a in store.actions()]
    assert kinds[-3:] == ["part", "accept", "set_class"]


def test_a_session_wrong_class_needs_another_class(project) -> None:
    """Found by a new user: ``session.answer(box, "wrong_class")`` without the class silently
    gave the box the project's first class, and naming the box's own class stored a
    'correction' that changed nothing."""
    from napari_al import open_project

    store, _, cell, _ = project
    judged, *_ = _ids(store)
    before = [a.kind for a in store.actions()]
    with open_project(store.project_dir, viewer=False) as session:
        with pytest.raises(ValueError, match="needs the right class"):
            session.answer(judged, "wrong_class")
        with pytest.raises(ValueError, match="already cell"):
            session.answer(judged, "wrong_class", "cell")
    with pytest.raises(ValueError, match="already cell"):  # the workflow, every caller
        answer_box(Annotator(store), judged, "wrong_class", class_id=cell)
    box = store.box(judged)
    assert (box.status, box.class_id) == ("predicted", cell)
    assert [a.kind for a in store.actions()] == before  # nothing recorded


def test_a_session_asked_about_an_unknown_image_says_so(project) -> None:
    """Found by a new user: ``session.region_questions(999999)`` returned [] (nothing to ask)
    on a project without a model, where the same id given to ``click`` raised."""
    from napari_al import open_project
    from napari_al.core.store import StoreError

    store, *_ = project
    with (
        open_project(store.project_dir, viewer=False) as session,
        pytest.raises(StoreError, match="image 999999 does not exist"),
    ):
        session.region_questions(999999)


def test_a_headless_session_uses_the_projects_trained_model(project, monkeypatch) -> None:
    """Found by a new user: in a notebook session on a project with a trained model,
    ``region_questions`` returned [] (and clicks and refined boxes ignored the model) until
    ``load_detector()`` had been called by hand."""
    from PIL import Image

    from napari_al import open_project
    from napari_al.core import workflow

    store, _, _, debris = project
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(store.project_dir / "a.png")
    store.add_model_version(store.project_dir / "m.pt", "fake")

    class Trained:
        model_version = 1

    loaded: list[int] = []

    def load_model(s, settings=None):  # type: ignore[no-untyped-def]
        loaded.append(1)
        return Trained()

    seen: list[object] = []

    def click_candidates(detector, pixels):  # type: ignore[no-untyped-def]
        seen.append(detector)
        probs = np.array([[0.0, 0.9]], np.float32)  # debris where no box is
        return ClickCandidates(np.array([[160, 10, 190, 40]], np.float32), probs, 1)

    monkeypatch.setattr(workflow, "load_model", load_model)
    monkeypatch.setattr(workflow, "click_candidates", click_candidates)
    with open_project(store.project_dir, viewer=False) as session:
        qs = session.region_questions(1)
        assert [(q.xyxy, q.class_id) for q in qs] == [((160, 10, 190, 40), debris)]
        assert len(seen) == 1 and isinstance(seen[0], Trained)
        session.region_questions(1)
        assert loaded == [1]  # loaded once, then kept
