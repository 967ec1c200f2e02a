"""How the simulated person labels missed objects (``--missed-by draw|click|region``): the
oracle's decisions and charges on a small generated image, and the option itself; the
notebook ``Session`` asks the same region questions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_al.core.costs import CostModel, count_answers
from napari_al.core.data import Predictions
from napari_al.core.store import ProjectStore
from napari_al.core.store.rows import file_sha256
from napari_al.simulation import (
    GroundTruth,
    Oracle,
    SimClock,
    SimConfig,
    add_arguments,
    config_from_args,
)
from napari_al.simulation.config import RESULT_KEYS

COSTS = CostModel()
V, D, C = COSTS.verify_s, COSTS.draw_s, COSTS.click_s
W, H = 200, 120

#: Bright blobs on a dark background, where the pixels show an object.
BLOBS = {"A": (10, 10, 30, 26), "B": (60, 10, 80, 26), "C": (110, 10, 130, 26)}
#: The truth: A (class a, the model shows it), B (class a, a blob), C (class a: a box much
#: larger than its blob, so the box found in the pixels is wrong), D (class a, no blob: the
#: pixels show nothing), E (class b, a blob, in the middle).
TRUTH = {
    "A": ((10, 10, 30, 26), 0),
    "B": ((60, 10, 80, 26), 0),
    "C": ((100, 4, 150, 40), 0),
    "D": ((20, 80, 40, 100), 0),
    "E": ((150, 70, 170, 86), 1),
}


@pytest.fixture
def sim(tmp_path: Path):
    """A store on a simulated clock with one generated 200x120 image whose truth is TRUTH."""
    d = tmp_path / "p"
    d.mkdir()
    rng = np.random.default_rng(0)
    img = (rng.random((H, W)) * 20).astype(np.uint8)
    for x1, y1, x2, y2 in [*BLOBS.values(), (150, 70, 170, 86)]:
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
    a = store.class_id("a")
    store.replace_predictions(image, [((10, 10, 30, 26), a, 0.9)], None)  # A, shown
    yield store, clock, gt, image
    store.close()


def oracle(sim, missed_by: str) -> Oracle:  # type: ignore[no-untyped-def]
    store, clock, gt, image = sim
    return Oracle(store, clock, {image: gt}, COSTS, missed_by=missed_by)


def check_log(store: ProjectStore, seconds: float) -> None:
    """The store's logged seconds are ``seconds`` and agree with the answer counts' price."""
    assert store.annotation_seconds() == pytest.approx(seconds, abs=1e-9)
    assert COSTS.seconds(count_answers(store.actions())) == pytest.approx(seconds, abs=1e-9)


def by_xyxy(store: ProjectStore, image: int) -> dict[tuple, tuple[str, str]]:
    return {b.xyxy: (b.status, b.source) for b in store.boxes(image_id=image)}


def test_draw_stays_the_default(sim) -> None:  # type: ignore[no-untyped-def]
    store, _, _, image = sim
    tally = oracle(sim, "draw").verify_image(image)
    assert tally["accept"] == 1 and tally["draw"] == 4
    check_log(store, V + 4 * D)


def test_click_each_missed_object_then_verify_the_proposed_box(sim) -> None:  # type: ignore[no-untyped-def]
    store, _, _, image = sim
    o = oracle(sim, "click")
    tally = o.verify_image(image)  # no model: the click boxes come from the pixels
    assert tally["click"] == 4
    assert tally["accept"] == 1 + 2  # A shown; B and E clicked: the blob is the object
    assert tally["correct"] == 1  # C: the blob is not the true box: no, then drawn
    assert tally["draw"] == 1  # D: nothing in the pixels: the click finds no box
    boxes = by_xyxy(store, image)
    assert boxes[TRUTH["B"][0]] == ("accepted", "click")
    assert boxes[TRUTH["E"][0]] == ("accepted", "click")
    assert boxes[TRUTH["C"][0]] == ("corrected", "click")
    assert boxes[TRUTH["D"][0]] == ("drawn", "human")
    kinds = [a.kind for a in store.actions()][1:]
    assert kinds.count("click") == 3 and kinds.count("click_none") == 1
    # A: V; B, E: C + V each; C: C + V + D; D: C + D
    check_log(store, V + 2 * (C + V) + (C + V + D) + (C + D))
    assert store.image(image).review_state == "complete"


class FakeDetector:
    """A model trained in the project (version 1) with four candidate boxes."""

    model_version = 1

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, images, candidate=False):  # type: ignore[no-untyped-def]
        self.calls += 1
        assert candidate
        boxes = [
            (10, 10, 30, 26),  # on A (shown, accepted): covered
            (61, 10, 80, 27),  # on B: "any more a here?" yes, the click takes it
            (170, 90, 190, 110),  # class a, nothing there: no
            (20, 80, 40, 100),  # on D, but class b: "any more b here?" no
        ]
        labels = [0, 0, 0, 1]
        scores = [0.9, 0.6, 0.5, 0.4]
        probs = np.zeros((4, 3), np.float32)
        probs[np.arange(4), np.asarray(labels) + 1] = scores
        probs[:, 0] = 1 - probs.sum(axis=1)
        return [
            Predictions(
                boxes=np.asarray(boxes, np.float32),
                labels=np.asarray(labels),
                scores=np.asarray(scores, np.float32),
                probs=probs,
                features=np.zeros((4, 0), np.float32),
                embedding=np.zeros(0, np.float32),
            )
        ]


def test_region_questions_first_then_clicks_in_the_yes_regions(sim) -> None:  # type: ignore[no-untyped-def]
    store, _, _, image = sim
    det = FakeDetector()
    o = oracle(sim, "region")
    tally = o.verify_image(image, detector=det)
    assert det.calls == 1  # one candidate pass for the questions and the clicks
    assert tally["region_yes"] == 1 and tally["region_no"] == 2
    assert tally["click"] == 1 and tally["accept"] == 1 + 1  # A shown, B clicked
    assert tally["draw"] == 3  # C, D and E: no region asked about them
    answers = [(a.payload["answer"], tuple(a.payload["region"])) for a in store.actions("region")]
    assert answers == [
        ("yes", (61, 10, 80, 27)),
        ("no", (170, 90, 190, 110)),
        ("no", (20, 80, 40, 100)),
    ]
    (click_box,) = [b for b in store.boxes(image_id=image) if b.source == "click"]
    assert click_box.xyxy == (61, 10, 80, 27) and click_box.status == "accepted"
    assert click_box.model_version == 1
    empty = store.empty_regions(image)
    assert [(b.xyxy, b.class_id) for b in empty] == [
        ((170, 90, 190, 110), store.class_id("a")),
        ((20, 80, 40, 100), store.class_id("b")),
    ]
    # A: V; 3 questions; B: C + V; C, D, E drawn
    check_log(store, V + 3 * V + (C + V) + 3 * D)
    # answering again asks nothing more
    before = store.annotation_seconds()
    o.verify_image(image, detector=det)
    assert store.annotation_seconds() == before


def test_the_notebook_session_asks_the_same_region_questions(sim) -> None:  # type: ignore[no-untyped-def]
    from napari_al.gui.session import Session

    store, _, _, image = sim
    session = Session(store)
    assert session.region_questions(image) == []  # no model trained in the project
    session._detector = FakeDetector()
    qs = session.region_questions(image)
    # the shown prediction on A covers its candidate; the other three are asked, best first
    assert [(q.xyxy, q.class_name) for q in qs] == [
        ((61, 10, 80, 27), "a"),
        ((170, 90, 190, 110), "a"),
        ((20, 80, 40, 100), "b"),
    ]
    box_id = session.answer_region(qs[1], yes=False)
    assert box_id is not None and store.box(box_id).source == "region"
    assert session.answer_region(qs[0], yes=True) is None
    assert [q.xyxy for q in session.region_questions(image)] == [
        (61, 10, 80, 27),
        (20, 80, 40, 100),
    ]
    session.annotator.undo()
    assert store.empty_regions(image) == []


def test_region_without_a_model_asks_nothing_and_draws(sim) -> None:  # type: ignore[no-untyped-def]
    store, _, _, image = sim
    tally = oracle(sim, "region").verify_image(image)
    assert tally["draw"] == 4 and store.actions(kind="region") == []
    check_log(store, V + 4 * D)


def test_the_missed_by_option(tmp_path: Path) -> None:
    assert SimConfig().missed_by == "draw" and "missed_by" in RESULT_KEYS
    with pytest.raises(ValueError, match="missed_by must be one of"):
        SimConfig(missed_by="guess")
    with pytest.raises(ValueError, match="missed_by must be one of"):
        Oracle(None, SimClock(), {}, missed_by="guess")  # type: ignore[arg-type]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "ci", "--missed-by", "region", "--out", "x"])
    assert config_from_args(args).missed_by == "region"
    args = parser.parse_args(["--preset", "ci", "--out", "x"])
    assert config_from_args(args).missed_by == "draw"
    with pytest.raises(SystemExit):
        parser.parse_args(["--missed-by", "guess", "--out", "x"])


def test_a_results_folder_from_before_the_option_resumes_with_the_default(tmp_path: Path) -> None:
    from napari_al.simulation.parallel import _check_config
    from napari_al.simulation.results import CONFIG_JSON

    config = SimConfig()
    old = config.to_dict()
    del old["missed_by"]  # written before the option existed
    (tmp_path / CONFIG_JSON).write_text(json.dumps(old, default=str))
    _check_config(tmp_path, config)  # same numbers: accepted
    (tmp_path / CONFIG_JSON).write_text(json.dumps(old, default=str))
    with pytest.raises(ValueError, match="missed_by"):
        _check_config(tmp_path, SimConfig(missed_by="click"))
