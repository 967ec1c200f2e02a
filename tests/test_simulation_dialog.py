"""The simulator's ``dialog`` strategy: the simulated person's answer to each kind of planner
question (verify, region, draw) and its charge on a small generated image, then whole rounds of
questions under a seconds budget, planned from a model pass (a torch-free stand-in detector)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from napari_al.core.costs import CostModel, count_answers
from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.dialog import draw_question, region_question, verify_question
from napari_al.core.store import ProjectStore
from napari_al.core.store.rows import file_sha256
from napari_al.simulation import GroundTruth, Oracle, SimClock, SimConfig
from napari_al.simulation.config import RESULT_KEYS, STRATEGIES, SimStrategy, resolve_strategies
from napari_al.simulation.dialog import answer_dialog, dialog_budget, seconds_since

COSTS = CostModel()
V, D, C = COSTS.verify_s, COSTS.draw_s, COSTS.click_s
W, H = 200, 120
#: The truth (class 0 = a, 1 = b): A, B and E are bright blobs (a click finds them in the
#: pixels); C's blob is smaller than its box; D has no blob.
TRUTH = {
    "A": ((10, 10, 30, 26), 0),
    "B": ((60, 10, 80, 26), 0),
    "C": ((100, 4, 150, 40), 0),
    "D": ((20, 80, 40, 100), 0),
    "E": ((150, 70, 170, 86), 1),
}
BLOBS = [(10, 10, 30, 26), (60, 10, 80, 26), (110, 10, 130, 26), (150, 70, 170, 86)]


@pytest.fixture
def sim(tmp_path: Path):
    d = tmp_path / "p"
    d.mkdir()
    img = (np.random.default_rng(0).random((H, W)) * 20).astype(np.uint8)
    for x1, y1, x2, y2 in BLOBS:
        img[y1:y2, x1:x2] = 220
    path = d / "cells.png"
    Image.fromarray(img).save(path)
    clock = SimClock()
    store = ProjectStore.create(d, clock=clock, idle_cutoff_s=1e15)
    store.add_class("a")
    store.add_class("b")
    image = store.add_image(path, file_sha256(path), W, H)
    store.log_action("sim_start")
    gt = GroundTruth(
        np.asarray([b for b, _ in TRUTH.values()], np.float64),
        np.asarray([c for _, c in TRUTH.values()], np.int64),
    )
    oracle = Oracle(store, clock, {image: gt}, COSTS)
    yield store, oracle, image
    store.close()


def check_log(store: ProjectStore, seconds: float) -> None:
    assert store.annotation_seconds() == pytest.approx(seconds, abs=1e-9)
    assert COSTS.seconds(count_answers(store.actions())) == pytest.approx(seconds, abs=1e-9)


def boxes_by_xyxy(store: ProjectStore, image: int) -> dict[tuple, tuple[str, str]]:
    return {b.xyxy: (b.status, b.source) for b in store.boxes(image_id=image)}


def test_each_question_kind_is_answered_from_the_truth_and_charged(sim) -> None:  # type: ignore[no-untyped-def]
    store, oracle, image = sim
    a, b = store.class_id("a"), store.class_id("b")
    (shown,) = store.replace_predictions(image, [((11, 10, 30, 26), a, 0.9)], None)

    # verify: the shown box lies on A: yes (one verification); the image turns partial
    got = oracle.answer_question(
        verify_question(image, shown, (11, 10, 30, 26), a, "a", 0.9, 0.5, COSTS)
    )
    assert got == {"accept": 1} and store.box(shown).status == "accepted"
    assert store.image(image).review_state == "partial"
    check_log(store, V)

    # "any more a here?" around B, clicks: yes, B clicked, its box (from the pixels) verified
    q = region_question(image, (55, 5, 85, 30), a, "a", 0.8, 1.0, None, COSTS, supervision="click")
    got = oracle.answer_question(q)
    assert got == {"region_yes": 1, "click": 1, "accept": 1}
    assert boxes_by_xyxy(store, image)[TRUTH["B"][0]] == ("accepted", "click")
    check_log(store, V + V + C + V)

    # "any more a here?" where nothing is: no, the region is known empty of a
    q = region_question(image, (160, 90, 195, 115), a, "a", 0.5, 0.5, None, COSTS)
    assert oracle.answer_question(q) == {"region_no": 1}
    (empty,) = store.empty_regions(image)
    assert (empty.xyxy, empty.class_id) == ((160, 90, 195, 115), a)
    check_log(store, 4 * V + C)

    # "any more b here?" around E, boxes: yes, E drawn
    q = region_question(image, (145, 65, 175, 90), b, "b", 0.8, 1.0, None, COSTS, supervision="box")
    assert oracle.answer_question(q) == {"region_yes": 1, "draw": 1}
    assert boxes_by_xyxy(store, image)[TRUTH["E"][0]] == ("drawn", "human")
    check_log(store, 5 * V + C + D)

    # draw, clicks: C and D are still unlabelled; C's click box (its blob) is no, then drawn
    # (a correct); D's click finds nothing, D is drawn; the image is complete
    got = oracle.answer_question(draw_question(image, 2.0, None, COSTS, supervision="click"))
    assert got == {"click": 2, "correct": 1, "draw": 1}
    assert store.image(image).review_state == "complete"
    human = {
        b.xyxy for b in store.boxes(image_id=image, statuses=("accepted", "corrected", "drawn"))
    }
    assert human == {b for b, _ in TRUTH.values()} - {TRUTH["A"][0]} | {(11, 10, 30, 26)}
    check_log(store, 5 * V + C + D + (C + V + D) + (C + D))


class ScoringDetector:
    """A model trained in the project (version 1), torch-free: its base prediction is a box on
    A (score 0.9), its candidates add one on B (0.6) and one where nothing is (0.5)."""

    model_version = 1
    two_stage = True  # MC dropout and proposals are views it could give

    def scoring_views(self, images, **kwargs):  # type: ignore[no-untyped-def]
        def preds(boxes, scores):  # type: ignore[no-untyped-def]
            n = len(boxes)
            probs = np.zeros((n, 3), np.float32)
            probs[:, 1] = scores
            probs[:, 0] = 1 - probs[:, 1]
            return Predictions(
                boxes=np.asarray(boxes, np.float32),
                labels=np.zeros(n, np.int64),
                scores=np.asarray(scores, np.float32),
                probs=probs,
                features=np.zeros((n, 0), np.float32),
                embedding=np.zeros(4, np.float32),
            )

        base = preds([(11, 10, 30, 26)], [0.9])
        cands = preds([(11, 10, 30, 26), (61, 10, 80, 27), (170, 90, 190, 110)], [0.9, 0.6, 0.5])
        return [ScoringViews(base=base, candidates=cands) for _ in images]


def _round(store: ProjectStore, oracle: Oracle, image: int, budget: float, config: SimConfig):  # type: ignore[no-untyped-def]
    marker = store.actions()[-1]
    proj = SimpleNamespace(store=store, oracle=oracle)
    query = {"images": [image], "budget_s": budget, "seed": 1}
    return answer_dialog(proj, STRATEGIES["dialog"], ScoringDetector(), query, marker, config)  # type: ignore[arg-type]


def test_a_dialog_round_answers_the_queue_until_its_seconds_are_spent(sim) -> None:  # type: ignore[no-untyped-def]
    store, oracle, image = sim
    config = SimConfig(dialog_supervision="click")
    # another image, labelled in full with 5 boxes: the prior count of a draw question
    other = store.add_image(store.project_dir / "other.png", "ef" * 32, W, H)
    for b, k in TRUTH.values():
        store.draw_box(other, b, store.classes()[k].id)
    store.set_review_state(other, "complete")
    store.log_action("sim_start")  # (drawn off the clock: they cost nothing here)
    # a budget of one question: the model pass stored its prediction, one verify is answered
    asked = _round(store, oracle, image, V / 2, config)
    (pred,) = store.boxes(image_id=image)
    assert asked == {"verify": 1} and pred.status == "accepted" and pred.model_version == 1
    assert store.annotation_seconds() == pytest.approx(V)
    # a large budget: the region question (B found: clicked), the empty region (no), then the
    # draw question (5 objects expected, 2 labelled) labels the rest and completes the image;
    # nothing is left to ask
    asked = _round(store, oracle, image, 1000.0, config)
    assert asked == {"region": 2, "draw": 1}
    assert store.image(image).review_state == "complete"
    regions = [a.payload["answer"] for a in store.actions(kind="region")]
    assert sorted(regions) == ["no", "yes"]
    human = store.boxes(image_id=image, statuses=("accepted", "corrected", "drawn"))
    assert len(human) == len(TRUTH)
    assert _round(store, oracle, image, 1000.0, config) == {}
    # a round whose seconds are spent asks nothing (a resumed round asks nothing twice)
    marker = store.actions()[0]
    assert seconds_since(store, marker.id) > 0
    proj = SimpleNamespace(store=store, oracle=oracle)
    query = {"images": [image], "budget_s": 1.0, "seed": 1}
    assert answer_dialog(proj, STRATEGIES["dialog"], None, query, marker, config) == {}  # type: ignore[arg-type]


def test_the_round_budget_defaults_to_drawing_the_initial_set(sim) -> None:  # type: ignore[no-untyped-def]
    store, oracle, image = sim
    config = SimConfig(init_images=2, budget_images=3)
    store.log_action("sim_round", payload={"round": 0, "phase": "query"})
    oracle.draw_image(image)  # 5 boxes: 35 s for the initial set's images
    store.log_action("sim_round", payload={"round": 0, "phase": "labelled"})
    assert dialog_budget(store, config) == pytest.approx(5 * D / 2 * 3)
    assert dialog_budget(store, SimConfig(dialog_seconds=12.5)) == 12.5


def test_the_dialog_strategy_and_its_settings() -> None:
    s = STRATEGIES["dialog"]
    assert (s.unit, s.oracle, s.scorer) == ("question", "dialog", "entropy")
    assert [x.name for x in resolve_strategies(["dialog"])][-1] == "dialog"
    with pytest.raises(ValueError, match="dialog oracle"):
        SimStrategy("x", "entropy", unit="question", oracle="verify")
    with pytest.raises(ValueError, match="dialog_supervision"):
        SimConfig(dialog_supervision="weak")
    with pytest.raises(ValueError, match="dialog_seconds"):
        SimConfig(dialog_seconds=0)
    assert {"dialog_seconds", "dialog_supervision", "dialog_scatter_images"} <= set(RESULT_KEYS)
    import argparse

    from napari_al.simulation.cli import add_arguments, config_from_args
    from napari_al.simulation.dialog import _settings

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = ["--preset", "ci", "--out", "x"]
    off = config_from_args(p.parse_args(base))
    on = config_from_args(p.parse_args([*base, "--dialog-scatter-images"]))
    assert (_settings(off).scatter_images, _settings(on).scatter_images) == (False, True)
