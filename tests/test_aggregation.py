"""Box -> image aggregation and class-balanced weighting."""

from __future__ import annotations

import numpy as np
import pytest

from napari_al.core.aggregation import (
    AGGREGATIONS,
    aggregate,
    aggregate_images,
    box_weights,
    class_balance_weights,
)
from napari_al.core.data import Predictions

S = np.array([0.2, 0.8, 0.5, 0.1])


def preds(labels: list[int], scores: list[float], n_classes: int = 3) -> Predictions:
    n = len(labels)
    probs = np.full((n, n_classes + 1), 0.0, np.float32)
    probs[np.arange(n), np.asarray(labels, np.int64) + 1] = scores
    probs[:, 0] = 1 - np.asarray(scores, np.float32)
    return Predictions(
        boxes=np.tile(np.array([[0, 0, 10, 10]], np.float32), (n, 1)),
        labels=np.asarray(labels, np.int64),
        scores=np.asarray(scores, np.float32),
        probs=probs,
        features=np.zeros((n, 2), np.float32),
        embedding=np.zeros(3, np.float32),
    )


def test_plain_aggregations() -> None:
    assert aggregate(S, "sum") == pytest.approx(1.6)
    assert aggregate(S, "mean") == pytest.approx(0.4)
    assert aggregate(S, "max") == pytest.approx(0.8)
    assert aggregate(S, "topk_mean", k=2) == pytest.approx(0.65)
    assert aggregate(S, "topk_mean", k=10) == pytest.approx(0.4)


@pytest.mark.parametrize("method", AGGREGATIONS)
def test_empty_image_is_zero(method: str) -> None:
    assert aggregate(np.zeros(0), method) == 0.0
    assert aggregate(np.zeros(0), method, weights=np.zeros(0)) == 0.0


def test_weighted_aggregations() -> None:
    w = np.array([1.0, 0.0, 1.0, 2.0])
    assert aggregate(S, "sum", weights=w) == pytest.approx(0.9)
    assert aggregate(S, "mean", weights=w) == pytest.approx(0.9 / 4)
    assert aggregate(S, "max", weights=w) == pytest.approx(0.5)
    assert aggregate(S, "mean", weights=np.zeros(4)) == 0.0
    with pytest.raises(ValueError):
        aggregate(S, "mean", weights=-w)
    with pytest.raises(ValueError):
        aggregate(S, "median")


def test_class_balance_upweights_rare_class() -> None:
    labelled = [0] * 50 + [1] * 5  # class 2 never labelled
    w = class_balance_weights(labelled, 3)
    assert w[2] > w[1] > w[0]
    assert w.mean() == pytest.approx(1.0)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(class_balance_weights(labelled, 3, power=0), 1.0)
    np.testing.assert_allclose(class_balance_weights([], 4), 1.0)
    # the same uncertainty on a rare-class box now outweighs a common-class box
    p = preds([0, 1], [0.5, 0.5])
    bw = box_weights(p, class_weights=w)
    assert bw is not None and bw[1] > bw[0]
    img_common = aggregate(
        np.array([0.6]), "sum", weights=box_weights(preds([0], [0.5]), class_weights=w)
    )
    img_rare = aggregate(
        np.array([0.4]), "sum", weights=box_weights(preds([1], [0.5]), class_weights=w)
    )
    assert img_rare > img_common
    with pytest.raises(ValueError):
        class_balance_weights([5], 3)


def test_box_weights_and_many_images() -> None:
    p = preds([0, 2], [0.9, 0.3])
    assert box_weights(p) is None
    np.testing.assert_allclose(box_weights(p, confidence=True), [0.9, 0.3], rtol=1e-6)
    cw = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose(
        box_weights(p, confidence=True, class_weights=cw), [0.9, 0.6], rtol=1e-6
    )
    assert box_weights(preds([], []), class_weights=cw).shape == (0,)
    out = aggregate_images([S, np.zeros(0), np.array([1.0])], "max")
    np.testing.assert_allclose(out, [0.8, 0.0, 1.0])
