"""Image-level "undetectability": how many objects did the detector probably miss?

Nakamura et al. (2024), as presented in the survey ("Undetectability"): most scores are
computed on detections and are blind to false negatives, so they train a small module on
backbone features to predict the number of missed objects on labelled images. We pair that
with a model-free signal from Desai et al.'s low-threshold candidate boxes: candidates that
overlap no base detection are "possibly missed" objects, shown to the annotator as
suggestions and counted (score-weighted) per image.

Scores here are *counts* (expected numbers of missed objects) and therefore lie in
``[0, inf)``; that unbounded range is deliberate, because the natural unit makes the two
sources commensurable and the pool-level combination (:func:`combine_scores`) rank- or
min-max-normalises before mixing with bounded scorers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.scoring.base import ImageScorer, box_iou, match_boxes, top_probability

#: Number of summary statistics :func:`missed_features` appends to the image embedding.
N_STATS = 4


def unmatched_candidates(
    views: ScoringViews, iou_thresh: float = 0.3, min_score: float = 0.0
) -> np.ndarray:
    """Indices into ``views.candidates`` of candidates overlapping no base box.

    A candidate counts when its IoU with every base box is ``< iou_thresh`` and its score is
    ``>= min_score``. Sorted by decreasing score (stable). Empty when there are no candidates.
    """
    cand = views.candidates
    if cand is None or len(cand) == 0:
        return np.zeros(0, np.int64)
    keep = top_probability(cand) >= min_score
    if len(views.base):
        keep &= box_iou(cand.boxes, views.base.boxes).max(axis=1) < iou_thresh
    idx = np.flatnonzero(keep)
    return idx[np.argsort(-top_probability(cand)[idx], kind="stable")].astype(np.int64)


def possibly_missed(
    views: ScoringViews, iou_thresh: float = 0.3, min_score: float = 0.0
) -> Predictions:
    """The candidate boxes that may be missed objects, best first, for a GUI suggestion layer."""
    cand = views.candidates
    if cand is None:
        n_classes = views.base.probs.shape[1] - 1
        return Predictions.empty(n_classes, views.base.features.shape[1])
    return cand.subset(unmatched_candidates(views, iou_thresh, min_score))


def candidate_density(
    views: ScoringViews, iou_thresh: float = 0.3, weighted: bool = True, min_score: float = 0.0
) -> float:
    """Number of unmatched candidates in the image, or the sum of their scores if ``weighted``.

    With calibrated scores the weighted value is the expected number of real objects among the
    possibly missed boxes. 0 when there are no candidates.
    """
    idx = unmatched_candidates(views, iou_thresh, min_score)
    if not weighted:
        return float(idx.size)
    assert views.candidates is not None or idx.size == 0
    if idx.size == 0:
        return 0.0
    return float(np.clip(top_probability(views.candidates)[idx], 0.0, 1.0).sum())


def count_missed(
    gt_boxes: np.ndarray,
    pred_boxes: np.ndarray,
    iou_thresh: float = 0.5,
    gt_labels: np.ndarray | None = None,
    pred_labels: np.ndarray | None = None,
) -> int:
    """Ground-truth boxes no prediction detects: the regressor's training target.

    One-to-one greedy IoU matching at ``>= iou_thresh`` (class-aware when both label arrays
    are given, class-agnostic otherwise); returns the number of unmatched ground-truth boxes.
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pr = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0] == 0:
        return 0
    if pr.shape[0] == 0:
        return int(gt.shape[0])
    iou = box_iou(gt, pr)
    if gt_labels is not None and pred_labels is not None:
        same = np.asarray(gt_labels).reshape(-1, 1) == np.asarray(pred_labels).reshape(1, -1)
        iou = np.where(same, iou, 0.0)
    rows, _ = match_boxes(iou, max(iou_thresh, 1e-12), "greedy")
    return int(gt.shape[0] - rows.size)


def missed_features(views: ScoringViews, iou_thresh: float = 0.3) -> np.ndarray:
    """Regressor input for one image: ``base.embedding`` followed by :data:`N_STATS` stats.

    Stats: ``log1p`` of the number of base detections, of the number of unmatched candidates
    and of their summed scores, and the mean base score (0 without detections).
    """
    base = views.base
    n_unmatched = unmatched_candidates(views, iou_thresh).size
    stats = np.array(
        [
            np.log1p(len(base)),
            np.log1p(n_unmatched),
            np.log1p(candidate_density(views, iou_thresh, weighted=True)),
            float(top_probability(base).mean()) if len(base) else 0.0,
        ]
    )
    emb = np.asarray(base.embedding, dtype=np.float64).reshape(-1)
    return np.concatenate([emb, stats])


class MissedObjectRegressor:
    """Ridge regression predicting how many objects the detector missed in an image.

    A numpy stand-in for Nakamura et al.'s false-negative prediction module: trained on
    reviewed images with features from :func:`missed_features` (or plain embeddings) and
    targets from :func:`count_missed`. Features are standardised, the target centred, and the
    weights solved in closed form (primal or dual, whichever system is smaller). Predictions
    are clipped at 0. Serialisable with :meth:`to_dict` / :meth:`to_bytes` (JSON).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.n_samples_: int = 0

    @property
    def fitted(self) -> bool:
        return self.coef_ is not None

    @property
    def n_features(self) -> int | None:
        return None if self.coef_ is None else int(self.coef_.shape[0])

    def fit(self, features: np.ndarray, targets: np.ndarray) -> MissedObjectRegressor:
        """Fit on ``features (n, d)`` and ``targets (n,)`` (missed-object counts); ``n >= 1``."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"need features (n, d) and targets (n,), n >= 1; got {x.shape}, {y.shape}"
            )
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("features and targets must be finite")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        xs = (x - mean) / scale
        y_mean = float(y.mean())
        yc = y - y_mean
        n, d = xs.shape
        if n < d:  # dual: w = X^T (X X^T + a I)^-1 y
            coef = xs.T @ np.linalg.solve(xs @ xs.T + self.alpha * np.eye(n), yc)
        else:
            coef = np.linalg.solve(xs.T @ xs + self.alpha * np.eye(d), xs.T @ yc)
        self.mean_, self.scale_, self.coef_ = mean, scale, coef
        self.intercept_, self.n_samples_ = y_mean, int(n)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted missed-object counts (``>= 0``) for ``features (n, d)`` or one row ``(d,)``."""
        if self.coef_ is None or self.mean_ is None or self.scale_ is None:
            raise RuntimeError("MissedObjectRegressor is not fitted; call fit() first")
        x = np.asarray(features, dtype=np.float64)
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if x2.shape[1] != self.coef_.shape[0]:
            raise ValueError(
                f"regressor was fitted on {self.coef_.shape[0]} features, got {x2.shape[1]} "
                "(did the embedding size change? refit after changing the detector)"
            )
        pred = ((x2 - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return np.maximum(pred, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict of plain floats and lists."""
        return {
            "kind": "MissedObjectRegressor",
            "version": 1,
            "alpha": self.alpha,
            "n_samples": self.n_samples_,
            "mean": None if self.mean_ is None else self.mean_.tolist(),
            "scale": None if self.scale_ is None else self.scale_.tolist(),
            "coef": None if self.coef_ is None else self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MissedObjectRegressor:
        if d.get("kind") != "MissedObjectRegressor" or d.get("version") != 1:
            raise ValueError("not a serialised MissedObjectRegressor (version 1)")
        reg = cls(alpha=d["alpha"])
        if d["coef"] is not None:
            reg.mean_ = np.asarray(d["mean"], dtype=np.float64)
            reg.scale_ = np.asarray(d["scale"], dtype=np.float64)
            reg.coef_ = np.asarray(d["coef"], dtype=np.float64)
        reg.intercept_ = float(d["intercept"])
        reg.n_samples_ = int(d["n_samples"])
        return reg

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict()).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> MissedObjectRegressor:
        return cls.from_dict(json.loads(data.decode("utf-8")))


class CandidateDensityScorer(ImageScorer):
    """Model-free missed-object score: :func:`candidate_density` of the image.

    Range ``[0, inf)``: a (score-weighted) count of low-threshold candidates (Desai et al.)
    that overlap no base detection.
    """

    name = "candidate_density"
    needs = frozenset({"candidates"})
    range = (0.0, float("inf"))

    def __init__(self, iou_thresh: float = 0.3, weighted: bool = True, min_score: float = 0.0):
        self.iou_thresh, self.weighted, self.min_score = float(iou_thresh), weighted, min_score

    def params(self) -> dict[str, Any]:
        return {
            "iou_thresh": self.iou_thresh,
            "weighted": self.weighted,
            "min_score": self.min_score,
        }

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> float:
        return candidate_density(views, self.iou_thresh, self.weighted, self.min_score)


class MissedScorer(CandidateDensityScorer):
    """Expected number of missed objects (Nakamura et al.'s undetectability, via the survey).

    Without a fitted ``regressor`` this is the candidate density. With one (trained on
    reviewed images, see :class:`MissedObjectRegressor`), it is
    ``(1 - w) * density + w * regressor(missed_features(views))`` with
    ``w = regressor_weight``: both terms estimate the same count. Range ``[0, inf)``.
    """

    name = "missed"

    def __init__(
        self,
        regressor: MissedObjectRegressor | None = None,
        regressor_weight: float = 0.5,
        iou_thresh: float = 0.3,
        weighted: bool = True,
        min_score: float = 0.0,
    ) -> None:
        super().__init__(iou_thresh, weighted, min_score)
        if not 0.0 <= regressor_weight <= 1.0:
            raise ValueError(f"regressor_weight must lie in [0, 1], got {regressor_weight}")
        self.regressor = regressor
        self.regressor_weight = float(regressor_weight)

    def params(self) -> dict[str, Any]:
        fitted = self.regressor is not None and self.regressor.fitted
        return {**super().params(), "regressor_weight": self.regressor_weight, "fitted": fitted}

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> float:
        density = super()._score(views, rng)
        if self.regressor is None or not self.regressor.fitted:
            return density
        estimate = float(self.regressor.predict(missed_features(views, self.iou_thresh))[0])
        w = self.regressor_weight
        return (1.0 - w) * density + w * estimate
