"""What the store's labels teach: ``loop.training_examples`` and the knobs of ``train_project``.

A partly reviewed image (box-level querying) keeps its unverified predictions as damped noisy
labels (Desai et al. eq. 3); ``noisy_min_score`` drops the weak ones and
``partial_background_weight`` reaches the loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_al.core import loop
from napari_al.core.store import ProjectStore

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "bccd_sample" / "JPEGImages"


@pytest.fixture
def store(tmp_path: Path) -> ProjectStore:
    s = ProjectStore.create(tmp_path / "proj")
    rbc, wbc = s.add_class("RBC"), s.add_class("WBC")
    path = sorted(SAMPLE.glob("*.jpg"))[0]
    image = s.add_image(path, "a" * 64, 640, 480, split="pool")
    s.replace_predictions(
        image,
        [
            ((10, 10, 60, 60), rbc, 0.95),  # will be accepted by the person
            ((100, 100, 150, 150), rbc, 0.80),
            ((200, 200, 250, 250), wbc, 0.40),
            ((300, 300, 350, 350), rbc, 0.10),
        ],
        model_version=None,
    )
    first = s.boxes(image_id=image)[0]
    s.accept_box(first.id)
    s.set_review_state(image, "partial")
    yield s
    s.close()


def _noisy_scores(store: ProjectStore, **kwargs: float) -> list[float]:
    (ex,) = loop.training_examples(store, store.training_snapshot(), **kwargs)
    scores = {tuple(np.round(b.xyxy, 1)): b.score for b in store.boxes()}
    return sorted(scores[tuple(np.round(xy, 1))] for xy in ex.boxes[ex.noisy].tolist())


def test_every_prediction_on_a_partial_image_is_a_noisy_label_by_default(store) -> None:
    (ex,) = loop.training_examples(store, store.training_snapshot())
    assert ex.noisy.tolist().count(False) == 1  # the accepted box is a full target
    assert _noisy_scores(store) == pytest.approx([0.10, 0.40, 0.80])
    assert not ex.complete


def test_noisy_min_score_drops_weak_predictions(store) -> None:
    assert _noisy_scores(store, noisy_min_score=0.5) == pytest.approx([0.80])
    assert _noisy_scores(store, noisy_min_score=0.99) == []


def test_train_project_passes_the_knobs_to_training(store, monkeypatch) -> None:
    from napari_al.core import engine

    seen: dict = {}

    def fake_train(detector, examples, **kwargs):
        seen.update(kwargs, examples=examples)
        return engine.TrainResult(0, 0, [], "no_data")

    class FakeDetector:
        model = torch.nn.Linear(1, 1)

    monkeypatch.setattr(engine, "train", fake_train)
    outcome = loop.train_project(
        store, FakeDetector(), steps=1, noisy_min_score=0.5, partial_background_weight=0.1
    )
    assert seen["partial_background_weight"] == 0.1
    (ex,) = seen["examples"]
    assert int(ex.noisy.sum()) == 1
    assert outcome.model_version is None
