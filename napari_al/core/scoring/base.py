"""Scorer contracts and the small numeric helpers every scorer family shares.

Two contracts (seed: the active-learning-for-detection survey, "Aggregation of Object-Level
Scores"): most informativeness measures live on *boxes* (:class:`BoxScorer`, one score per
base box) and are lifted to images by :mod:`napari_al.core.aggregation`; a few only make sense
for a whole image, e.g. how many objects the detector missed (:class:`ImageScorer`).

Scorers only read a :class:`~napari_al.core.data.ScoringViews`; they never run a model. The
detector computes exactly the views listed in a scorer's ``needs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.data import Predictions, ScoringViews

__all__ = [
    "VIEW_NAMES",
    "BoxScorer",
    "ImageScorer",
    "MissingViewError",
    "as_probs",
    "box_iou",
    "check_views",
    "entropy",
    "js_divergence",
    "match_boxes",
    "pairwise_iou",
    "top_probability",
]

#: The optional fields of :class:`ScoringViews` a scorer may ask the detector for.
VIEW_NAMES = ("mc_probs", "ensemble_probs", "flipped", "noisy", "candidates")


class MissingViewError(ValueError):
    """A scorer needs a view (or ``base.proposals``) the detector did not provide."""


class BoxScorer(ABC):
    """Scores every base box of one image; higher = more informative to annotate.

    Subclasses set ``name`` (the CLI strategy name), ``needs`` (views among
    :data:`VIEW_NAMES`), ``range`` (the documented ``(lo, hi)`` every score lies in) and
    implement :meth:`_score`. :meth:`score` checks the views, short-circuits images without
    boxes (always shape ``(0,)``), and validates the output: shape ``(N,)``, finite, inside
    ``range`` (clipped for float round-off).
    """

    name: str = ""
    needs: frozenset[str] = frozenset()
    range: tuple[float, float] = (0.0, 1.0)
    #: ``True`` when the scorer also needs ``views.base.proposals`` (two-stage detectors).
    requires_proposals: bool = False

    def score(self, views: ScoringViews, rng: np.random.Generator | None = None) -> np.ndarray:
        """One finite score per base box, shape ``(N,)``, float64, within :attr:`range`."""
        check_views(self, views)
        n = len(views.base)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        out = np.asarray(self._score(views, rng), dtype=np.float64)
        if out.shape != (n,):
            raise RuntimeError(f"scorer {self.name!r} returned shape {out.shape}, expected ({n},)")
        if not np.all(np.isfinite(out)):
            raise RuntimeError(f"scorer {self.name!r} returned non-finite scores")
        return np.clip(out, self.range[0], self.range[1])

    @abstractmethod
    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        """Scores for an image with at least one base box (views already checked)."""

    def params(self) -> dict[str, Any]:
        """The constructor parameters (for logs and provenance)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ImageScorer(ABC):
    """Scores one whole image with a single finite float; higher = more informative.

    Used for signals with no base box to attach to, such as objects the detector missed
    (Nakamura et al., "undetectability", via the survey). Unlike :class:`BoxScorer` an image
    without base detections is *not* short-circuited: it may be the most interesting one.
    """

    name: str = ""
    needs: frozenset[str] = frozenset()
    range: tuple[float, float] = (0.0, 1.0)
    requires_proposals: bool = False

    def score(self, views: ScoringViews, rng: np.random.Generator | None = None) -> float:
        """The image's score, a finite float within :attr:`range`."""
        check_views(self, views)
        value = float(self._score(views, rng))
        if not np.isfinite(value):
            raise RuntimeError(f"image scorer {self.name!r} returned a non-finite score")
        return float(np.clip(value, self.range[0], self.range[1]))

    @abstractmethod
    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> float:
        """The image score (views already checked)."""

    def params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def check_views(scorer: BoxScorer | ImageScorer, views: ScoringViews) -> None:
    """Raise :class:`MissingViewError` naming every view ``scorer`` needs that is absent."""
    if not isinstance(views, ScoringViews):
        raise TypeError(f"expected ScoringViews, got {type(views).__name__}")
    missing = [v for v in sorted(scorer.needs) if getattr(views, v) is None]
    if "noisy" in scorer.needs and views.noisy is not None and len(views.noisy) == 0:
        missing.append("noisy (empty list)")
    if missing:
        raise MissingViewError(
            f"scorer {scorer.name!r} needs the view(s) {', '.join(missing)}, which the detector "
            f"did not provide; compute the views listed in the strategy's `needs` "
            f"({', '.join(sorted(scorer.needs))})"
        )
    n, k = len(views.base), views.base.probs.shape[1]
    for field in ("mc_probs", "ensemble_probs"):
        arr = getattr(views, field)
        if field in scorer.needs and arr is not None:
            shape = np.shape(arr)
            if len(shape) != 3 or shape[1] != n or shape[2] != k:
                raise ValueError(f"views.{field} has shape {shape}, expected (T, {n}, {k})")


# --------------------------------------------------------------------------------------------
# numeric helpers
# --------------------------------------------------------------------------------------------


def as_probs(p: np.ndarray) -> np.ndarray:
    """``p`` as float64 distributions over the last axis: negatives clipped, rows renormalised.

    A row summing to zero becomes uniform. Guards the scorers against float32 round-off.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    s = p.sum(axis=-1, keepdims=True)
    k = p.shape[-1]
    return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / max(k, 1))


def entropy(p: np.ndarray, axis: int = -1, base: float | None = None) -> np.ndarray:
    """Shannon entropy along ``axis`` with ``0 log 0 = 0`` (natural log unless ``base``)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -(p * logp).sum(axis=axis)
    if base is not None:
        h = h / np.log(base)
    return np.maximum(h, 0.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Base-2 Jensen-Shannon divergence of rows of ``p`` and ``q``, in ``[0, 1]``."""
    m = 0.5 * (p + q)
    js = entropy(m, base=2) - 0.5 * (entropy(p, base=2) + entropy(q, base=2))
    return np.clip(js, 0.0, 1.0)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``a[i]`` with ``b[i]``, shape ``(N,)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.clip(iou, 0.0, 1.0)


def match_boxes(
    iou: np.ndarray, min_iou: float = 0.5, method: str = "greedy"
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of rows to columns of an IoU matrix; pairs with IoU >= ``min_iou``.

    ``greedy`` (default, numpy only, as in COCO evaluation): repeatedly take the highest-IoU
    free pair, ties broken by row then column index. ``hungarian``: maximise the total IoU
    with :func:`scipy.optimize.linear_sum_assignment`, then drop pairs below ``min_iou``.
    Returns ``(rows, cols)`` int arrays sorted by row.
    """
    iou = np.asarray(iou, dtype=np.float64)
    n, m = iou.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if method == "hungarian":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] >= min_iou
        rows, cols = rows[keep], cols[keep]
    elif method == "greedy":
        flat = iou.ravel()
        cand = np.flatnonzero(flat >= min_iou)
        order = cand[np.argsort(-flat[cand], kind="stable")]
        row_free = np.ones(n, bool)
        col_free = np.ones(m, bool)
        rows_l: list[int] = []
        cols_l: list[int] = []
        for idx in order:
            r, c = divmod(int(idx), m)
            if row_free[r] and col_free[c]:
                row_free[r] = col_free[c] = False
                rows_l.append(r)
                cols_l.append(c)
                if len(rows_l) == min(n, m):
                    break
        rows, cols = np.asarray(rows_l, np.int64), np.asarray(cols_l, np.int64)
    else:
        raise ValueError(f"unknown matching method {method!r}; use 'greedy' or 'hungarian'")
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def top_probability(pred: Predictions) -> np.ndarray:
    """The probability of each box's predicted class (``pred.scores``) as float64."""
    return np.asarray(pred.scores, dtype=np.float64).reshape(-1)
