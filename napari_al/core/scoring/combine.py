"""Combining several criteria into one score (``name1+name2`` strategies).

Benenson's slides ("If in doubt: ensemble model + entropy + self-consistency"; self-consistency
"can (should) be combined with the previous heuristics") and the survey ("Combining Multiple
Criteria": scores are often added together). Scores of different scorers live on different
scales, so each is normalised before an (optionally weighted) mean:

- ``rank`` (default for a pool): each score becomes its average rank divided by ``n - 1``
  (ties share the mean rank), in ``[0, 1]``; robust to outliers and to unbounded scores;
- ``minmax``: ``(s - min) / (max - min)`` over the pool, in ``[0, 1]``; keeps the gaps;
- ``range`` (only inside :class:`CombinedScorer`, i.e. within one image): each score is mapped
  by its scorer's documented ``range``, which needs no pool and gives the same value for a
  box whatever else is in the image.

A constant component (no information) normalises to 0.5 under ``rank`` and ``minmax``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import BoxScorer

COMBINE_METHODS = ("rank", "minmax")


def rank_normalize(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to ``[0, 1]`` (ties share their mean rank; n <= 1 gives 0.5)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n = x.size
    if n <= 1:
        return np.full(n, 0.5)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    _, inv = np.unique(x, return_inverse=True)
    inv = inv.reshape(-1)
    mean_rank = np.bincount(inv, weights=ranks) / np.bincount(inv)
    return mean_rank[inv] / (n - 1)


def minmax_normalize(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)``; a constant (or single) input gives 0.5."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return x.copy()
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0 or not np.isfinite(hi - lo):
        return np.full(x.size, 0.5)
    return (x - lo) / (hi - lo)


def combine_scores(
    components: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    method: str = "rank",
    weights: Mapping[str, float] | Sequence[float] | None = None,
) -> np.ndarray:
    """Weighted mean of normalised score arrays (all of one length ``n``), in ``[0, 1]``.

    ``components`` maps scorer names (or positions) to scores of the same items, e.g. images
    of the pool or all boxes of the pool. ``method`` is ``rank`` or ``minmax`` (module doc).
    A single component is normalised too, so the result is always in ``[0, 1]``.
    """
    if method not in COMBINE_METHODS:
        raise ValueError(f"unknown combine method {method!r}; use one of {COMBINE_METHODS}")
    if isinstance(components, Mapping):
        names = list(components)
        arrays = [np.asarray(components[k], dtype=np.float64).reshape(-1) for k in names]
        if isinstance(weights, Mapping):
            w = np.array([float(weights.get(k, 1.0)) for k in names])
        elif weights is None:
            w = np.ones(len(names))
        else:
            w = np.asarray(weights, dtype=np.float64)
    else:
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in components]
        if isinstance(weights, Mapping):
            raise TypeError("weights by name need components by name")
        w = np.ones(len(arrays)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not arrays:
        raise ValueError("combine_scores needs at least one component")
    if w.shape != (len(arrays),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per component, not all zero")
    n = arrays[0].size
    if any(a.size != n for a in arrays):
        raise ValueError("all components must score the same number of items")
    norm = rank_normalize if method == "rank" else minmax_normalize
    stacked = np.stack([norm(a) for a in arrays]) if n else np.zeros((len(arrays), 0))
    return (w[:, None] * stacked).sum(axis=0) / w.sum()


class CombinedScorer(BoxScorer):
    """A ``name1+name2`` box scorer: the mean of its components' range-normalised scores.

    Within one image there is no pool to rank against, so each component's scores are mapped
    to ``[0, 1]`` by its documented ``range`` (all registered box scorers are ``[0, 1]``
    already) and averaged with ``weights`` (default equal). ``needs`` is the union of the
    components'. Pool-wide, prefer :class:`~napari_al.core.scoring.strategy.Strategy`, which
    combines per-component pool scores with :func:`combine_scores`. Range ``[0, 1]``.
    """

    range = (0.0, 1.0)

    def __init__(self, scorers: Sequence[BoxScorer], weights: Sequence[float] | None = None):
        if len(scorers) < 1:
            raise ValueError("CombinedScorer needs at least one scorer")
        for s in scorers:
            lo, hi = s.range
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(f"scorer {s.name!r} has an unbounded range; combine pool-wide")
        self.scorers = list(scorers)
        self.weights = np.ones(len(scorers)) if weights is None else np.asarray(weights, float)
        if self.weights.shape != (len(scorers),) or np.any(self.weights < 0):
            raise ValueError("weights must be non-negative, one per scorer")
        if self.weights.sum() <= 0:
            raise ValueError("weights must not all be zero")
        self.name = "+".join(s.name for s in scorers)
        self.needs = frozenset().union(*(s.needs for s in scorers))
        self.requires_proposals = any(s.requires_proposals for s in scorers)

    def params(self) -> dict[str, Any]:
        return {"scorers": self.scorers, "weights": self.weights.tolist()}

    def component_scores(
        self, views: ScoringViews, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Each component's raw scores, keyed by name (for a breakdown)."""
        return {s.name: s.score(views, rng) for s in self.scorers}

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        total = np.zeros(len(views.base))
        for w, s in zip(self.weights, self.scorers, strict=True):
            lo, hi = s.range
            total += w * (s.score(views, rng) - lo) / (hi - lo)
        return total / self.weights.sum()
