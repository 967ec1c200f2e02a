"""Single-pass classification scorers: uniform, score bands, least confidence, margin, entropy.

All read only ``views.base`` (one forward pass) and lie in ``[0, 1]``. The probability
distribution used is the full ``(C + 1)``-way one *including background* (column 0): a box the
head is torn between "object" and "background" about is exactly as ambiguous as one torn
between two classes, and keeping background in makes least confidence, margin and entropy
measure the same decision. ``C + 1 >= 2`` always, so every normaliser below is positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import BoxScorer, as_probs, entropy, top_probability


class RandomScorer(BoxScorer):
    """Uniform random scores in ``[0, 1)``: "accept one's ignorance" (Benenson's slides).

    The baseline every strategy must beat (Desai et al. §3.3 "Random selection"). Reproducible
    only when an ``rng`` is passed; with ``rng=None`` fresh OS entropy is used.
    """

    name = "random"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        gen = rng if rng is not None else np.random.default_rng()
        return gen.random(len(views.base))


class ScoreBandScorer(BoxScorer):
    """Score bands (Benenson's slides): focus on boxes whose confidence lies in ``[a, b]``.

    With ``s`` the detection score (``base.scores``, probability of the predicted class) and
    ``d`` its distance to the band (0 inside), the score is ``1 - d / d_max`` where
    ``d_max = max(a, 1 - b)`` is the largest distance any score in ``[0, 1]`` can have: 1 inside
    the band, decaying linearly to 0 at the farthest possible confidence. Range ``[0, 1]``.
    Defaults ``a=0.4, b=0.6`` are the slides' example of an ambiguous band.
    """

    name = "score_band"
    range = (0.0, 1.0)

    def __init__(self, a: float = 0.4, b: float = 0.6) -> None:
        if not 0.0 <= a <= b <= 1.0:
            raise ValueError(f"score_band needs 0 <= a <= b <= 1, got a={a}, b={b}")
        self.a, self.b = float(a), float(b)

    def params(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        s = np.clip(top_probability(views.base), 0.0, 1.0)
        d = np.maximum(np.maximum(self.a - s, s - self.b), 0.0)
        d_max = max(self.a, 1.0 - self.b)
        if d_max <= 0:  # a=0, b=1: every score is in the band
            return np.ones_like(s)
        return 1.0 - d / d_max


class LeastConfidenceScorer(BoxScorer):
    """Least confidence ``1 - p_max`` (Desai et al. §3.3 "classification uncertainty", Roy et al.).

    ``p_max`` is the maximum of the full distribution *including background*; the value is
    rescaled by its maximum ``C / (C + 1)`` (reached at the uniform distribution) so that the
    range is exactly ``[0, 1]`` whatever the number of classes (ranking is unchanged).
    """

    name = "least_confidence"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        p = as_probs(views.base.probs)
        k = p.shape[1]
        return (1.0 - p.max(axis=1)) * k / (k - 1)


class MarginScorer(BoxScorer):
    """Margin (1-vs-2) sampling ``1 - (p1 - p2)`` (survey, Brust et al.), range ``[0, 1]``.

    ``p1, p2`` are the two largest probabilities of the full distribution incl. background.
    """

    name = "margin"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        p = np.sort(as_probs(views.base.probs), axis=1)
        return 1.0 - (p[:, -1] - p[:, -2])


class EntropyScorer(BoxScorer):
    """High entropy (Benenson's slides: "empirically hard to beat"; survey, Roy et al.).

    ``H(p) / log(C + 1)`` over the full distribution incl. background, range ``[0, 1]``.
    """

    name = "entropy"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        p = as_probs(views.base.probs)
        return entropy(p, axis=1) / np.log(p.shape[1])
