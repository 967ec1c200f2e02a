"""Centre clicks -> boxes: the box choice, the scikit-image fallback, the coordinates, the store
action and its cost, undo, and what an unconfirmed click box trains as."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_al.core.annotator import Annotator
from napari_al.core.boxes import napari_to_xy, xy_pixel, xy_to_napari
from napari_al.core.calibration import ScoreCalibration, ScoreMap
from napari_al.core.clicks import (
    best_candidate,
    box_from_image,
    centre_term,
    choose_click_box,
    click_scores,
)
from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.data import Predictions
from napari_al.core.store import ProjectStore, StoreError
from napari_al.core.store.rows import file_sha256
from napari_al.core.workflow import (
    CALIBRATION_KEY,
    ClickCandidates,
    ClickSettings,
    click,
    propose_click_box,
    training_examples,
)

# -- the box choice -----------------------------------------------------------------------


def test_best_box_of_the_class_containing_the_click() -> None:
    boxes = np.array(
        [
            [0, 0, 60, 60],  # class 0, contains the click, off-centre
            [10, 10, 30, 30],  # class 0, contains it at its centre
            [15, 15, 25, 25],  # class 1 only, centred on it
            [60, 60, 90, 90],  # class 0, very likely, but not on the click
        ],
        np.float32,
    )
    probs = np.array([[0.9, 0.1], [0.6, 0.1], [0.05, 0.95], [0.99, 0.0]], np.float32)
    assert best_candidate((20, 20), boxes, probs, 0) == 1  # 0.6 x 1.0 beats 0.9 x 0.64
    assert best_candidate((20, 20), boxes, probs, 1) == 2  # the class decides
    assert best_candidate((75, 75), boxes, probs, 0) == 3
    assert best_candidate((95, 5), boxes, probs, 0) is None  # nothing contains the click
    # the probability decides between boxes the click is equally central in; ties: the first
    centred = [[0, 0, 40, 40], [10, 10, 30, 30], [15, 15, 25, 25]]
    assert best_candidate((20, 20), centred, [[0.2], [0.3], [0.1]], 0) == 1
    assert best_candidate((20, 20), centred, [[0.3], [0.3], [0.1]], 0) == 0
    # min_probability: a box below it is never picked
    assert best_candidate((20, 20), boxes, probs, 1, min_probability=0.96) is None


def test_the_distance_term_follows_the_documented_formula() -> None:
    box = np.array([[10, 20, 50, 40]], np.float32)  # centre (30, 30), w 40, h 20
    assert centre_term((30, 30), box)[0] == pytest.approx(1.0)
    # dx = 10/40 = 0.25, dy = 5/20 = 0.25, sigma 0.25: exp(-(0.0625 + 0.0625) / 0.125)
    assert centre_term((40, 35), box)[0] == pytest.approx(np.exp(-1.0))
    assert centre_term((50, 30), box)[0] == pytest.approx(np.exp(-2.0))  # on a side's middle
    scores = click_scores((40, 35), box, [[0.5]], 0)
    assert scores[0] == pytest.approx(0.5 * np.exp(-1.0))
    assert click_scores((5, 5), box, [[0.5]], 0)[0] == 0.0  # outside: 0
    with pytest.raises(ValueError, match="class index"):
        click_scores((30, 30), box, [[0.5]], 1)
    with pytest.raises(ValueError, match="sigma"):
        centre_term((30, 30), box, sigma=0)


def blob_image(dtype=np.uint8, rgb: bool = False, shape=(60, 100)) -> np.ndarray:
    """A dark, noisy background with one bright 16x10 blob at x 70-86, y 20-30."""
    hi = np.iinfo(dtype).max
    rng = np.random.default_rng(1)
    img = (rng.random(shape) * 0.08 * hi).astype(dtype)
    img[20:30, 70:86] = int(0.8 * hi)
    if rgb:
        img = np.stack([img, (img * 0.5).astype(dtype), img], axis=-1)
    return img


def test_no_candidate_falls_back_to_the_image() -> None:
    img = blob_image()
    far = np.array([[0, 0, 10, 10]], np.float32)
    got = choose_click_box((77.5, 24.5), 0, far, [[0.9]], image=img)
    assert got is not None and got.method == "image" and got.xyxy == (70, 20, 86, 30)
    assert got.index is None and got.score is None
    # a candidate of the class on the click wins over the image
    near = np.array([[65, 15, 90, 35]], np.float32)
    got = choose_click_box((77.5, 24.5), 0, near, [[0.9]], image=img)
    assert got is not None and (got.method, got.index, got.xyxy) == ("model", 0, (65, 15, 90, 35))
    assert got.probability == pytest.approx(0.9)
    # no model and no image: nothing
    assert choose_click_box((77.5, 24.5), 0) is None


# -- the scikit-image fallback ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "rgb"), [(np.uint8, False), (np.uint16, False), (np.uint8, True), (np.uint16, True)]
)
def test_fallback_finds_a_bright_blob(dtype, rgb: bool) -> None:
    img = blob_image(dtype, rgb)
    for point in ((77.5, 24.5), (71.2, 21.0), (85.9, 29.9)):  # centre, near two corners
        assert box_from_image(img, point) == (70, 20, 86, 30)


def test_fallback_click_on_the_background_gives_none() -> None:
    img = blob_image(np.uint16)
    assert box_from_image(img, (20.5, 40.5)) is None  # far from the blob
    assert box_from_image(img, (66.5, 24.5)) is None  # just beside it
    assert box_from_image(np.zeros((30, 40), np.uint8), (5, 5)) is None  # no contrast


def test_fallback_dark_object_pale_centre_and_touching_objects() -> None:
    yy, xx = np.mgrid[:100, :160]
    # a dark ring with a pale centre (a red blood cell) on a bright background
    img = np.full((100, 160), 220, np.uint8)
    d = np.hypot(yy - 50, xx - 40)
    img[d < 20] = 80
    img[d < 10] = 200
    assert box_from_image(img, (40.5, 50.5)) == (21, 31, 60, 70)
    # two touching bright discs: each click gets its own disc
    two = np.zeros((100, 160), np.uint8)
    for cx in (50, 82):
        two[np.hypot(yy - 50, xx - cx) < 18] = 255
    left, right = box_from_image(two, (50, 50)), box_from_image(two, (85, 50))
    assert left is not None and right is not None
    assert left[2] <= 67 and right[0] >= 66 and left[0] == 33 and right[2] == 100


def test_fallback_size_limits_and_errors() -> None:
    img = np.zeros((50, 50), np.uint8)
    img[10:12, 10:12] = 255  # a 2x2 speck
    img[30:40, 30:40] = 255
    assert box_from_image(img, (11, 11), min_size=3) is None
    assert box_from_image(img, (11, 11), min_size=2) == (10, 10, 12, 12)
    big = np.zeros((50, 50), np.uint8)
    big[:, :40] = 255  # an object of 80% of the image
    assert box_from_image(big, (10, 10), max_fraction=0.5) is None
    with pytest.raises(ValueError, match="outside"):
        box_from_image(img, (50, 10))
    with pytest.raises(ValueError, match="image"):
        box_from_image(np.zeros((5, 5, 5, 5)), (1, 1))


# -- coordinates -----------------------------------------------------------------------------


def test_a_napari_click_lands_on_its_pixel() -> None:
    # napari puts pixel centres on integers: anywhere within +-0.5 of (row 7, col 41) is that
    # pixel; the image is 20 x 60 (rows x cols), so a swapped point would leave it
    for row, col in ((7.0, 41.0), (6.51, 40.51), (7.49, 41.49)):
        xy = napari_to_xy((row, col))
        assert xy.shape == (1, 2)
        assert tuple(xy_pixel(xy)[0]) == (7, 41)
    assert np.allclose(xy_to_napari(napari_to_xy([[7.2, 41.4], [0, 0]])), [[7.2, 41.4], [0, 0]])
    assert np.allclose(napari_to_xy([[1, 2, 3]]), [[3.5, 2.5]])  # nD layer: last two count
    img = np.zeros((20, 60), np.uint8)
    img[5:10, 30:45] = 255
    x, y = napari_to_xy((7.2, 41.4))[0]
    assert box_from_image(img, (x, y)) == (30, 5, 45, 10)
    with pytest.raises(ValueError, match="outside"):
        box_from_image(img, (y, x))  # the row/col swap is caught


# -- the store, the annotator, the costs ----------------------------------------------------


@contextmanager
def write_transactions(store: ProjectStore) -> Iterator[list[str]]:
    """The write transactions (``BEGIN IMMEDIATE``, each one commit) the store starts inside."""
    seen: list[str] = []
    store._conn.set_trace_callback(
        lambda sql: seen.append(sql) if sql.strip().upper().startswith("BEGIN IMMEDIATE") else None
    )
    try:
        yield seen
    finally:
        store._conn.set_trace_callback(None)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def write_png(path: Path, img: np.ndarray) -> Path:
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path):
    """Classes cat and dog; image 1: a 100 x 60 PNG with a bright blob at x 70-86, y 20-30,
    one predicted dog box elsewhere; a settable clock."""
    clock = FakeClock()
    d = tmp_path / "proj"
    d.mkdir()
    path = write_png(d / "a.png", blob_image())
    with ProjectStore.create(d, clock=clock) as s:
        s.add_class("cat")
        s.add_class("dog")
        s.add_image(path, file_sha256(path), 100, 60)
        s.replace_predictions(1, [((5, 5, 30, 30), s.class_id("dog"), 0.8)], model_version=None)
        yield s, clock


def test_a_click_is_one_commit_one_logged_action_charged_click_s(project) -> None:
    store, clock = project
    ann = Annotator(store)
    cat = store.class_id("cat")
    ann.accept(store.boxes(statuses="predicted")[0].id)
    clock.t += CostModel().click_s
    with write_transactions(store) as writes:
        command = click(ann, 1, (77.5, 24.5), cat)
    assert command is not None and len(writes) == 1
    box = store.box(command.box_id)
    assert (box.xyxy, box.class_id, box.status, box.source) == (
        (70, 20, 86, 30),
        cat,
        "pseudo",
        "click",
    )
    assert box.score is None and box.model_version is None
    last = store.actions()[-1]
    assert last.kind == "click" and last.box_id == box.id
    assert last.payload["click"] == [77.5, 24.5] and last.payload["method"] == "image"
    assert last.dt == pytest.approx(CostModel().click_s)
    assert store.annotation_seconds() == pytest.approx(CostModel().click_s)
    # the cost model charges it and counts it
    assert CostModel().of_kind("click") == CostModel().click_s == 1.9
    counts = count_answers(store.actions())
    assert counts == Counts(verifications=1, images=1, clicks=1)
    assert CostModel().seconds(counts) == pytest.approx(1.6 + 1.9)
    # the yes on the proposed box is a verification of its own
    clock.t += CostModel().verify_s
    ann.accept(box.id)
    assert store.box(box.id).status == "accepted"
    assert store.annotation_seconds() == pytest.approx(1.9 + 1.6)


def test_undo_and_redo_a_click(project) -> None:
    store, _ = project
    ann = Annotator(store)
    cat = store.class_id("cat")
    command = click(ann, 1, (77.5, 24.5), cat)
    assert command is not None and store.image(1).review_state == "partial"
    undone = ann.undo()
    assert undone is command
    with pytest.raises(StoreError):
        store.box(command.box_id)
    assert store.image(1).review_state == "unseen"
    assert store.actions()[-1].kind == "undo" and store.actions()[-1].ref_id == command.action_id
    ann.redo()
    assert store.box(command.box_id).status == "pseudo"


def test_a_click_on_the_background_stores_nothing(project) -> None:
    store, _ = project
    ann = Annotator(store)
    before = len(store.actions())
    assert click(ann, 1, (50.5, 45.5), store.class_id("cat")) is None
    assert len(store.actions()) == before and not ann.can_undo
    with pytest.raises(ValueError, match="outside"):
        click(ann, 1, (100.5, 10), store.class_id("cat"))
    with pytest.raises(StoreError, match="outside"):
        store.click_box(1, (1, 1, 5, 5), 1, point=(150, 10), method="image")


class FakeDetector:
    """Candidates: a cat box on the blob and a dog box around it (probabilities given)."""

    model_version = 1

    def __init__(self, cat_p: float = 0.6) -> None:
        self.cat_p = cat_p
        self.calls = 0

    def predict(self, images, candidate=False):  # type: ignore[no-untyped-def]
        assert candidate and images[0].dtype == np.uint8 and images[0].shape == (60, 100, 3)
        self.calls += 1
        boxes = np.array([[68, 18, 88, 32], [60, 10, 95, 40]], np.float32)
        probs = np.array([[0.1, self.cat_p, 0.3], [0.2, 0.1, 0.7]], np.float32)
        return [
            Predictions(
                boxes=boxes,
                labels=probs[:, 1:].argmax(1),
                scores=probs[:, 1:].max(1),
                probs=probs,
                features=np.zeros((2, 0), np.float32),
                embedding=np.zeros(0, np.float32),
            )
        ]


def test_a_trained_model_proposes_its_best_box_of_the_class(project) -> None:
    store, _ = project
    ann = Annotator(store)
    det = FakeDetector()
    cmd = click(ann, 1, (77.5, 24.5), store.class_id("cat"), det)
    box = store.box(cmd.box_id)
    assert (box.xyxy, box.score, box.model_version) == ((68, 18, 88, 32), pytest.approx(0.6), 1)
    assert store.actions()[-1].payload["method"] == "model"
    cmd = click(ann, 1, (77.5, 24.5), store.class_id("dog"), det)
    assert store.box(cmd.box_id).xyxy == (60, 10, 95, 40)
    # an untrained detector (model version 0) is not asked: the box comes from the image
    det0 = FakeDetector()
    det0.model_version = 0
    cmd = click(ann, 1, (77.5, 24.5), store.class_id("cat"), det0)
    assert det0.calls == 0 and store.box(cmd.box_id).xyxy == (70, 20, 86, 30)


def test_the_calibrated_p_yes_scores_the_candidates(project) -> None:
    store, _ = project
    cat = store.class_id("cat")
    cands = ClickCandidates(
        boxes=np.array([[68, 18, 88, 32]], np.float32),
        probs=np.array([[0.3, 0.0]], np.float32),
        model_version=1,
    )
    got = propose_click_box(store, 1, (77.5, 24.5), cat, candidates=cands)
    assert got is not None and got.method == "model" and got.probability == pytest.approx(0.3)
    # model version 1's calibration says a cat box at 0.3 is never accepted: P(yes) = 0
    cal = ScoreCalibration(
        method="isotonic",
        per_class={"cat": ScoreMap("isotonic", x=(0.0, 0.5, 1.0), y=(0.0, 0.0, 1.0))},
    )
    store.add_model_version("m1.pt", "fake", {CALIBRATION_KEY: cal.to_dict()})
    got = propose_click_box(store, 1, (77.5, 24.5), cat, candidates=cands)
    assert got is not None and got.method == "image" and got.xyxy == (70, 20, 86, 30)
    raw = propose_click_box(
        store, 1, (77.5, 24.5), cat, candidates=cands, settings=ClickSettings(calibrated=False)
    )
    assert raw is not None and raw.method == "model" and raw.score == pytest.approx(0.3)


# -- what a click box trains as -------------------------------------------------------------


def test_an_unconfirmed_click_box_trains_damped_a_confirmed_one_fully(project) -> None:
    store, _ = project
    ann = Annotator(store)
    cat, dog = store.class_id("cat"), store.class_id("dog")
    box_id = click(ann, 1, (77.5, 24.5), cat).box_id
    # a prediction on the click box is not a second noisy label
    store.replace_predictions(
        1, [((5, 5, 30, 30), dog, 0.8), ((69, 20, 86, 30), cat, 0.7)], model_version=None
    )

    def example():  # type: ignore[no-untyped-def]
        (ex,) = training_examples(store, store.training_snapshot())
        return ex

    ex = example()
    rows = [tuple(b) for b in ex.boxes.tolist()]
    assert rows == [(70, 20, 86, 30), (5, 5, 30, 30)]
    assert ex.noisy.tolist() == [True, True]
    assert ex.box_weights(lambda_d=0.5).tolist() == [0.5, 0.5]
    assert ex.box_weights(lambda_d=0.2)[0] == pytest.approx(0.2)
    ann.accept(box_id)
    ex = example()
    assert ex.box_weights(lambda_d=0.5)[0] == 1.0 and tuple(ex.boxes[0]) == (70, 20, 86, 30)
    # rejected: the object is there, the box is wrong: no loss there, not background
    ann.undo()
    ann.reject(box_id)
    ex = example()
    assert len(ex.background_boxes) == 0
    assert [tuple(b) for b in ex.ignore_regions.tolist()] == [(70, 20, 86, 30)]


def test_a_notebook_session_clicks_through_the_workflow(project) -> None:
    from napari_al import open_project

    store, _ = project
    with open_project(store.project_dir, viewer=False) as session:
        box_id = session.click(1, 77.5, 24.5, "cat")
        assert box_id is not None
        box = session.store.box(box_id)
        assert (box.xyxy, box.status, box.source) == ((70, 20, 86, 30), "pseudo", "click")
        assert session.click(1, 50.5, 45.5) is None  # the background: no box
        session.annotator.accept(box_id)
        assert session.store.box(box_id).status == "accepted"
        session.annotator.undo()
        session.annotator.undo()
        assert session.store.boxes(statuses="pseudo") == []
    assert [a.kind for a in store.actions()][-4:] == ["click", "accept", "undo", "undo"]


def test_the_real_detectors_candidates_feed_a_click(trained_project: Path) -> None:
    """The engine's low-threshold candidates (a tiny model trained 2 steps in the project)
    have the shapes the click needs, and a click on the likeliest one's centre takes it."""
    from conftest import TINY_MODEL

    from napari_al.core import workflow
    from napari_al.core.images import read_image

    with ProjectStore.open(trained_project) as store:
        det = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        assert det.model_version == 1 and workflow.has_model(det)
        image = store.images(split="pool")[0]
        pixels = read_image(store.abs_path(image))
        cands = workflow.click_candidates(det, pixels)
        n_classes = len(store.classes())
        assert cands.boxes.shape == (len(cands), 4) and cands.probs.shape == (len(cands), n_classes)
        assert cands.boxes.dtype == np.float32 and cands.model_version == 1
        assert len(cands) > 0
        i, k = np.unravel_index(np.argmax(cands.probs), cands.probs.shape)
        x1, y1, x2, y2 = (float(v) for v in cands.boxes[i])
        cls = store.classes()[k].id
        settings = ClickSettings(min_probability=0.0, calibrated=False)
        proposal = propose_click_box(
            store,
            image.id,
            ((x1 + x2) / 2, (y1 + y2) / 2),
            cls,
            candidates=cands,
            pixels=pixels,
            settings=settings,
        )
        assert proposal is not None and proposal.method == "model"
        assert proposal.score == pytest.approx(float(cands.probs[i, k]))
        assert proposal.model_version == 1


def test_a_rejected_click_box_does_not_swallow_the_box_drawn_for_its_object(project) -> None:
    # the engine drops boxes centred in an ignore region: the object drawn after a no to its
    # click box must not become one
    store, _ = project
    ann = Annotator(store)
    cat = store.class_id("cat")
    box_id = click(ann, 1, (77.5, 24.5), cat).box_id
    ann.reject(box_id)
    ann.draw(1, (68, 18, 88, 32), cat)  # centred in the rejected click box
    (ex,) = training_examples(store, store.training_snapshot())
    # the fixture's dog prediction (a noisy label) and the drawn cat
    assert [tuple(b) for b in ex.boxes.tolist()] == [(5, 5, 30, 30), (68, 18, 88, 32)]
    assert ex.noisy.tolist() == [True, False]
    assert len(ex.ignore_regions) == 0 and len(ex.background_boxes) == 0
    # a drawn box elsewhere leaves the ignore region in place
    ann.undo()
    ann.draw(1, (2, 2, 12, 12), cat)
    (ex,) = training_examples(store, store.training_snapshot())
    assert [tuple(b) for b in ex.ignore_regions.tolist()] == [(70, 20, 86, 30)]
