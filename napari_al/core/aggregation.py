"""Box scores -> one image score (Brust et al.'s aggregations, as presented in the survey).

The survey ("Aggregation of Object-Level Scores") warns that the choice biases selection:
``sum`` favours crowded images (which also cost more to label), ``mean`` removes the count,
``max`` keeps only the worst box; ``topk_mean`` sits in between. Any of them can be weighted,
e.g. by detection confidence (Kao et al. weight by the top class probability) or by
:func:`class_balance_weights`, which up-weights boxes of rare classes (Benenson's slides:
uniform sampling "will under-represent some classes" when the class distribution is skewed).

An image without boxes (or whose weights are all zero) aggregates to 0.0: per-box scorers
have nothing to say about it, and missed objects are the business of image-level scorers
(:mod:`napari_al.core.scoring.missed`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_al.core.data import Predictions

AGGREGATIONS = ("sum", "mean", "max", "topk_mean")


def aggregate(
    box_scores: np.ndarray,
    method: str = "mean",
    *,
    k: int = 3,
    weights: np.ndarray | None = None,
) -> float:
    """Aggregate one image's box scores.

    With non-negative ``weights`` ``w``: ``sum`` = ``sum(w s)``; ``mean`` = ``sum(w s) / sum(w)``
    (a weighted mean); ``max`` = ``max(w s)``; ``topk_mean`` = mean of the ``k`` largest ``w s``
    (all of them when fewer than ``k``). Without weights ``w = 1``. Empty -> 0.0.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; use one of {AGGREGATIONS}")
    s = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    if weights is None:
        w = np.ones_like(s)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != s.shape:
            raise ValueError(f"weights shape {w.shape} != box scores shape {s.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and non-negative")
    if s.size == 0:
        return 0.0
    ws = w * s
    if method == "sum":
        return float(ws.sum())
    if method == "mean":
        total = w.sum()
        return float(ws.sum() / total) if total > 0 else 0.0
    if method == "max":
        return float(ws.max())
    if k < 1:
        raise ValueError(f"topk_mean needs k >= 1, got {k}")
    top = np.sort(ws)[::-1][:k]
    return float(top.mean())


def class_balance_weights(
    labelled_labels: np.ndarray | Sequence[int],
    n_classes: int,
    *,
    smoothing: float = 1.0,
    power: float = 1.0,
) -> np.ndarray:
    """Per-class weights ``(C,)`` that up-weight classes rare among the labelled boxes.

    ``w_c ∝ 1 / (count_c + smoothing) ** power`` (additive smoothing keeps never-labelled
    classes finite, and makes them the most wanted), normalised to mean 1 over classes so
    weighting keeps the overall scale. ``power=0`` disables balancing (all ones).
    """
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    if smoothing <= 0:
        raise ValueError("smoothing must be > 0")
    labels = np.asarray(labelled_labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = (counts + smoothing) ** (-float(power))
    return w * n_classes / w.sum()


def box_weights(
    predictions: Predictions,
    *,
    confidence: bool = False,
    class_weights: np.ndarray | None = None,
) -> np.ndarray | None:
    """Per-box weights ``(N,)`` for :func:`aggregate`, or ``None`` when unweighted.

    The product of the box confidence (``predictions.scores``) when ``confidence`` and the
    weight of its predicted class (``class_weights[labels]``) when ``class_weights`` is given.
    """
    if not confidence and class_weights is None:
        return None
    w = np.ones(len(predictions))
    if confidence:
        w = w * np.clip(np.asarray(predictions.scores, dtype=np.float64).reshape(-1), 0, 1)
    if class_weights is not None and len(predictions):
        cw = np.asarray(class_weights, dtype=np.float64)
        w = w * cw[np.asarray(predictions.labels, dtype=np.int64)]
    return w


def aggregate_images(
    box_scores: Sequence[np.ndarray],
    method: str = "mean",
    *,
    k: int = 3,
    weights: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """:func:`aggregate` over many images, shape ``(n_images,)``."""
    if weights is None:
        weights = [None] * len(box_scores)
    if len(weights) != len(box_scores):
        raise ValueError("one weights entry per image")
    return np.array(
        [aggregate(s, method, k=k, weights=w) for s, w in zip(box_scores, weights, strict=True)],
        dtype=np.float64,
    )
