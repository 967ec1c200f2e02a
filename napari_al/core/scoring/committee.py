"""Committee disagreement scorers over MC-dropout passes or an ensemble of checkpoints.

Benenson's slides ("Ensemble disagreements ... can be approximated via dropout", vote
entropy, BALD) and the survey (mutual information after Haussmann et al.; MC dropout after
Gal et al.). The committee is ``views.mc_probs`` (``source="mc"``, default) or
``views.ensemble_probs`` (``source="ensemble"``), shape ``(T, N, C + 1)``, each member
re-classifying the *same* base boxes, so no box matching is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import BoxScorer, as_probs, entropy

_SOURCES = {"mc": "mc_probs", "ensemble": "ensemble_probs"}


class _CommitteeScorer(BoxScorer):
    """Shared plumbing: pick the committee view from ``source``."""

    needs = frozenset({"mc_probs"})

    def __init__(self, source: str = "mc") -> None:
        if source not in _SOURCES:
            raise ValueError(f"{self.name}: source must be 'mc' or 'ensemble', got {source!r}")
        self.source = source
        self.needs = frozenset({_SOURCES[source]})

    def params(self) -> dict[str, Any]:
        return {"source": self.source}

    def _committee(self, views: ScoringViews) -> np.ndarray:
        return as_probs(getattr(views, _SOURCES[self.source]))


class VoteEntropyScorer(_CommitteeScorer):
    """Vote entropy (query-by-committee; Benenson's slides, "Ensemble disagreements").

    Each of the T members votes for its argmax class (incl. background); the score is the
    entropy of the vote histogram divided by ``log(min(T, C + 1))``, the largest entropy T
    votes over C + 1 classes can have when ``T <= C + 1`` (an upper bound otherwise). Range
    ``[0, 1]``; 0 when all members agree (and always when T = 1).
    """

    name = "vote_entropy"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        probs = self._committee(views)
        t, n, k = probs.shape
        if min(t, k) < 2:
            return np.zeros(n)
        votes = probs.argmax(axis=2)  # (T, N)
        hist = np.zeros((n, k))
        np.add.at(hist, (np.broadcast_to(np.arange(n), (t, n)), votes), 1.0)
        return entropy(hist / t, axis=1) / np.log(min(t, k))


class MutualInformationScorer(_CommitteeScorer):
    """BALD mutual information ``H(mean_t p_t) - mean_t H(p_t)`` (survey, Haussmann et al.).

    High when members are individually confident but disagree (epistemic uncertainty), low
    when they agree, including when every member is equally unsure (aleatoric only).
    Normalised by ``log(min(T, C + 1))``, an upper bound of the mutual information between
    the class and a uniformly drawn member, so the range is ``[0, 1]``; 0 when T = 1.
    """

    name = "mutual_information"
    range = (0.0, 1.0)

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        probs = self._committee(views)
        t, n, k = probs.shape
        if min(t, k) < 2:
            return np.zeros(n)
        mi = entropy(probs.mean(axis=0), axis=1) - entropy(probs, axis=2).mean(axis=0)
        return np.clip(mi / np.log(min(t, k)), 0.0, 1.0)
