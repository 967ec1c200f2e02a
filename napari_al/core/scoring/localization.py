"""Localisation uncertainty after Kao et al. (ACCV 2018), as summarised in the survey
("Localization Uncertainty") and cited in Benenson's slides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import (
    BoxScorer,
    MissingViewError,
    box_iou,
    pairwise_iou,
    top_probability,
)


class LocalizationStabilityScorer(BoxScorer):
    """Localisation *instability* under Gaussian image noise (Kao et al.'s stability).

    For every noisy view, each base box takes its best IoU with any box of that view (0 if the
    view has no box); stability is the mean over views. The score is ``w * (1 - stability)``
    where ``w`` is the base box's top class probability (``base.scores``) when ``weighted``
    (default, as Kao et al. weight instances to prefer boxes that are both likely objects and
    unstable), else 1. Range ``[0, 1]``.
    """

    name = "localization_stability"
    needs = frozenset({"noisy"})
    range = (0.0, 1.0)

    def __init__(self, weighted: bool = True) -> None:
        self.weighted = bool(weighted)

    def params(self) -> dict[str, Any]:
        return {"weighted": self.weighted}

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        base = views.base
        assert views.noisy is not None
        best = np.zeros((len(views.noisy), len(base)))
        for v, view in enumerate(views.noisy):
            if len(view):
                best[v] = box_iou(base.boxes, view.boxes).max(axis=1)
        instability = 1.0 - best.mean(axis=0)
        if self.weighted:
            instability = instability * np.clip(top_probability(base), 0.0, 1.0)
        return instability


class LocalizationTightnessScorer(BoxScorer):
    """Localisation tightness proxy (Kao et al.): ``1 - IoU(proposal, refined box)``.

    A box the second stage had to move far from its RPN proposal is likely poorly localised.
    Needs ``base.proposals`` (two-stage detectors only); a detector that gives none (one-stage)
    raises :class:`~napari_al.core.scoring.base.MissingViewError`, except on an image with no
    boxes, which always scores ``(0,)``. Range ``[0, 1]``.
    """

    name = "localization_tightness"
    range = (0.0, 1.0)
    requires_proposals = True

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        base = views.base
        if base.proposals is None:
            raise MissingViewError(
                "scorer 'localization_tightness' needs base.proposals (the RPN proposal of each "
                "box), which only two-stage detectors such as Faster R-CNN provide; pick another "
                "strategy for a one-stage detector"
            )
        proposals = np.asarray(base.proposals).reshape(-1, 4)
        if proposals.shape[0] != len(base):
            raise ValueError(f"base.proposals has {proposals.shape[0]} rows, expected {len(base)}")
        return 1.0 - pairwise_iou(proposals, base.boxes)
