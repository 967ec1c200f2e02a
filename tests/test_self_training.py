"""Self-training (``TrainSettings.self_training``): confident predictions on unreviewed images
that are stable under a horizontal flip train as damped pseudo labels; off, the examples are
exactly the old ones.

The detector is a stand-in whose ``scoring_views`` returns hand-made base and flipped
predictions per image (told apart by the generated images' widths), so each test states which
box qualifies and why; the engine's ``train`` is replaced by a recorder of its examples.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from napari_al.core import workflow
from napari_al.core.calibration import ScoreCalibration, ScoreMap
from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.store import ProjectStore
from napari_al.core.workflow.calibration import CALIBRATION_KEY

RBC, WBC = 0, 1  # class indices


def _preds(rows: list[tuple[tuple[float, float, float, float], int, float]]) -> Predictions:
    n = len(rows)
    labels = np.asarray([r[1] for r in rows], np.int64)
    scores = np.asarray([r[2] for r in rows], np.float32)
    probs = np.zeros((n, 3), np.float32)
    probs[np.arange(n), labels + 1] = scores
    probs[:, 0] = 1 - scores
    return Predictions(
        boxes=np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
        labels=labels,
        scores=scores,
        probs=probs,
        features=np.zeros((n, 2), np.float32),
        embedding=np.zeros(2, np.float32),
    )


#: Image A (width 64): what the model predicts, and on the mirrored image (mapped back).
A_BASE = [
    ((2, 2, 20, 20), RBC, 0.90),  # confident, flip agrees: a pseudo label
    ((30, 2, 50, 20), RBC, 0.95),  # confident, flip says WBC: unstable
    ((2, 25, 20, 45), WBC, 0.50),  # stable, not confident
    ((40, 25, 60, 45), WBC, 0.85),  # confident, flip box moved (IoU < 0.5): unstable
]
A_FLIP = [
    ((3, 2, 21, 20), RBC, 0.88),
    ((30, 2, 50, 20), WBC, 0.60),
    ((2, 25, 20, 45), WBC, 0.55),
    ((50, 25, 63, 45), WBC, 0.80),
]
#: Image B (width 72): only a stable prediction that is not confident.
B_BASE = [((5, 5, 25, 25), RBC, 0.30)]
B_FLIP = [((5, 5, 25, 25), RBC, 0.35)]


class FakeDetector:
    """What ``train_model`` and self-training read of a detector."""

    def __init__(self, version: int) -> None:
        self.model = torch.nn.Linear(1, 1)
        self.model_version = version
        self.classes = ["RBC", "WBC"]
        self.calls: list[int] = []  # widths of the images predicted

    def scoring_views(self, images, flip=False, **kwargs):  # type: ignore[no-untyped-def]
        assert flip
        views = {64: (A_BASE, A_FLIP), 72: (B_BASE, B_FLIP)}
        out = []
        for im in images:
            self.calls.append(im.shape[1])
            base, flipped = views[im.shape[1]]
            out.append(ScoringViews(base=_preds(base), flipped=_preds(flipped)))
        return out


def _png(folder: Path, name: str, width: int) -> Path:
    path = folder / name
    Image.fromarray(np.full((48, width, 3), 128, np.uint8)).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path):
    """Two complete training images with a drawn box, unreviewed pool images A and B, an
    unreviewed val image (never pseudo-labelled), and a model version (no calibration)."""
    s = ProjectStore.create(tmp_path / "proj")
    rbc = s.add_class("RBC")
    s.add_class("WBC")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, name in enumerate(("done.png", "done2.png")):
        done = s.add_image(_png(imgs, name, 80 + 8 * i), f"{i}" * 64, 80 + 8 * i, 48)
        s.draw_box(done, (4, 4, 30, 30), rbc)
        s.set_review_state(done, "complete")
    ids = {
        "A": s.add_image(_png(imgs, "a.png", 64), "a" * 64, 64, 48, split="pool"),
        "B": s.add_image(_png(imgs, "b.png", 72), "b" * 64, 72, 48, split="pool"),
        "val": s.add_image(_png(imgs, "v.png", 64), "e" * 64, 64, 48, split="val"),
    }
    checkpoint = tmp_path / "proj" / "m.pt"
    checkpoint.write_bytes(b"")
    version = s.add_model_version(checkpoint, "fake", metrics={})
    yield s, ids, version
    s.close()


def _examples(store: ProjectStore, detector, monkeypatch, **settings):  # type: ignore[no-untyped-def]
    from napari_al.core import engine

    seen: dict = {}

    def fake_train(det, examples, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs, examples=examples)
        return engine.TrainResult(0, 0, [], "no_data")

    monkeypatch.setattr(engine, "train", fake_train)
    workflow.train_model(store, detector, workflow.TrainSettings(steps=1, **settings))
    return seen


def _by_path(examples) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {Path(e.path).name: e for e in examples}


def test_off_gives_exactly_the_old_examples_and_runs_no_model(project, monkeypatch) -> None:
    store, _, version = project
    det = FakeDetector(version)
    seen = _examples(store, det, monkeypatch)
    old = workflow.training_examples(store, store.training_snapshot())
    assert len(seen["examples"]) == len(old) == 2
    for new, ref in zip(seen["examples"], old, strict=True):
        for f in dataclasses.fields(ref):
            a, b = getattr(new, f.name), getattr(ref, f.name)
            if isinstance(b, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            else:
                assert a == b
    assert det.calls == []


def test_confident_flip_stable_predictions_become_damped_pseudo_labels(
    project, monkeypatch
) -> None:
    store, _, version = project
    det = FakeDetector(version)
    seen = _examples(store, det, monkeypatch, self_training=0.8, lambda_d=0.5)
    by = _by_path(seen["examples"])
    assert set(by) == {"done.png", "done2.png", "a.png"}  # B: no confident box; val: held out
    assert sorted(det.calls) == [64, 72]  # A and B sampled, val never
    ex = by["a.png"]
    assert ex.boxes.tolist() == [[2, 2, 20, 20]] and ex.labels.tolist() == [RBC]
    assert ex.noisy.tolist() == [True] and not ex.complete
    assert seen["lambda_d"] == 0.5
    assert ex.box_weights(seen["lambda_d"]).tolist() == [0.5]
    # the other predictions are no background: ignore regions (no loss)
    assert sorted(ex.ignore_regions.tolist()) == sorted(
        [[30, 2, 50, 20], [2, 25, 20, 45], [40, 25, 60, 45]]
    )
    assert ex.background_boxes.shape == (0, 4)
    done = by["done.png"]
    assert done.noisy.tolist() == [False] and done.complete


def test_the_threshold_is_on_the_calibrated_probability(project, monkeypatch) -> None:
    store, _, version = project
    # P(yes) = score / 2: 0.90 -> 0.45 and 0.95 -> 0.475, 0.85 -> 0.425
    halve = ScoreCalibration("isotonic", ScoreMap("isotonic", x=(0.0, 1.0), y=(0.0, 0.5)))
    store.set_model_metrics(version, {CALIBRATION_KEY: halve.to_dict()})
    by = _by_path(
        _examples(store, FakeDetector(version), monkeypatch, self_training=0.8)["examples"]
    )
    assert "a.png" not in by  # raw 0.90 >= 0.8, calibrated 0.45 is not
    by = _by_path(
        _examples(store, FakeDetector(version), monkeypatch, self_training=0.44)["examples"]
    )
    assert by["a.png"].boxes.tolist() == [[2, 2, 20, 20]]


def test_the_sample_is_capped_by_the_setting_and_the_reviewed_images(project, monkeypatch) -> None:
    store, _, version = project
    det = FakeDetector(version)
    _examples(store, det, monkeypatch, self_training=0.8, self_training_images=20)
    assert len(det.calls) == 2  # two unreviewed training images
    det = FakeDetector(version)
    _examples(store, det, monkeypatch, self_training=0.8, self_training_images=1)
    assert len(det.calls) == 1
    # one reviewed example: never more than one pseudo-labelled image, whatever the setting
    done, done2 = (r.id for r in store.images(review_state="complete"))
    store.set_review_state(done2, "unseen")
    det = FakeDetector(version)
    _examples(store, det, monkeypatch, self_training=0.8, self_training_images=20)
    assert len(det.calls) == 1
    store.set_review_state(done, "unseen")  # nothing reviewed: nothing sampled
    det = FakeDetector(version)
    seen = _examples(store, det, monkeypatch, self_training=0.8)
    assert det.calls == [] and seen["examples"] == []


def test_a_new_detector_makes_no_pseudo_labels(project, monkeypatch) -> None:
    store, _, _ = project
    det = FakeDetector(0)  # pretrained weights, not a version of this project
    seen = _examples(store, det, monkeypatch, self_training=0.1)
    assert det.calls == [] and len(seen["examples"]) == 2


def test_flip_stable_matches_one_to_one_within_a_class() -> None:
    base = _preds([((0, 0, 10, 10), RBC, 0.9), ((1, 0, 11, 10), RBC, 0.8)])
    flipped = _preds([((0, 0, 10, 10), RBC, 0.9), ((0, 0, 10, 10), WBC, 0.9)])
    # one flipped RBC box confirms only one of two overlapping RBC boxes; WBC confirms none
    assert workflow.flip_stable(base, flipped).tolist() == [True, False]
    assert workflow.flip_stable(base, _preds([])).tolist() == [False, False]
    moved = _preds([((4, 0, 14, 10), RBC, 0.9)])  # IoU 6/14 < 0.5
    assert workflow.flip_stable(_preds([((0, 0, 10, 10), RBC, 0.9)]), moved).tolist() == [False]


def test_judged_boxes_and_reviewed_images_get_no_pseudo_labels(project) -> None:
    store, ids, _ = project
    rbc = store.classes()[0].id
    store.draw_box(ids["B"], (40, 40, 60, 47), rbc)  # B is partly reviewed now
    store.set_review_state(ids["B"], "partial")
    (rejected,) = store.replace_predictions(ids["A"], [((2, 2, 20, 20), rbc, 0.9)], None)
    store.reject_box(rejected)
    store.set_review_state(ids["A"], "unseen")
    labels = workflow.PseudoLabels(
        boxes=np.asarray([[2, 2, 20, 20], [30, 2, 50, 20]], np.float32),
        labels=np.asarray([RBC, WBC]),
        uncertain=np.zeros((0, 4), np.float32),
    )
    snap = store.training_snapshot()
    out = workflow.pseudo_label_examples(store, snap, {ids["A"]: labels, ids["B"]: labels})
    (ex,) = out  # B is not unreviewed
    assert ex.boxes.tolist() == [[30, 2, 50, 20]]  # the rejected box is judged background
    assert ex.labels.tolist() == [WBC]


def test_simulate_self_training_flag_reaches_the_training_settings(monkeypatch) -> None:
    from napari_al.simulation import SimProject, add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = ["--preset", "ci", "--self-training", "0.8", "--self-training-images", "5"]
    cfg = config_from_args(p.parse_args([*args, "--out", "x"]))
    assert (cfg.self_training, cfg.self_training_images) == (0.8, 5)
    assert config_from_args(p.parse_args(["--preset", "ci", "--out", "x"])).self_training is None
    seen = {}

    def fake_train_model(store, detector, settings):  # type: ignore[no-untyped-def]
        seen["settings"] = settings
        return SimpleNamespace(model_version=1)

    monkeypatch.setattr(workflow, "train_model", fake_train_model)
    proj = SimpleNamespace(config=cfg, store=None, folder="f", prune_checkpoints=lambda: None)
    SimProject.train(proj, None, steps=3, seed=0)  # type: ignore[arg-type]
    assert seen["settings"].self_training == 0.8
    assert seen["settings"].self_training_images == 5
    with pytest.raises(ValueError, match="self_training"):
        dataclasses.replace(cfg, self_training=1.5)


def test_a_real_round_records_its_pseudo_labels(trained_project: Path) -> None:
    """The real detector and engine: a training with self-training on the tiny trained model
    (threshold 0: every flip-stable prediction) runs, and the version records what it used."""
    with ProjectStore.open(trained_project) as store:
        det = workflow.load_model(store, workflow.ModelSettings(device="cpu"))
        s = workflow.TrainSettings(steps=1, self_training=0.0, self_training_images=2)
        snap = store.training_snapshot()
        labels = workflow.pseudo_labels(store, snap, det, s, reviewed=2)
        assert 0 < len(labels) <= 2
        for image_id, p in labels.items():
            assert store.image(image_id).review_state == "unseen"
            assert p.boxes.dtype == np.float32 and p.labels.dtype == np.int64
            assert len(p.boxes) == len(p.labels)
        outcome = workflow.train_model(store, det, s)
        metrics = store.latest_model_version().metrics
        assert outcome.model_version == 2
        expected = sum(bool(len(p.boxes)) for p in labels.values())
        assert expected > 0
        assert 0 < metrics["pseudo_boxes"] <= sum(len(p.boxes) for p in labels.values())
        assert metrics["pseudo_images"] == expected and metrics["self_training"] == 0.0
