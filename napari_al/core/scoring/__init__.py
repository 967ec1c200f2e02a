"""Informativeness scorers for active learning of object detectors (model-free part).

Scorers read a :class:`~napari_al.core.data.ScoringViews` and never run a model:

- per-box (:class:`BoxScorer`, ``(N,)`` scores, registered in :data:`SCORERS`): ``random``,
  ``score_band``, ``least_confidence``, ``margin``, ``entropy``, ``vote_entropy``,
  ``mutual_information``, ``consistency``, ``localization_stability``,
  ``localization_tightness``; ``name1+name2`` combines them;
- per-image (:class:`ImageScorer`, registered in :data:`IMAGE_SCORERS`): ``candidate_density``
  and ``missed`` (expected number of objects the detector missed);
- :class:`Strategy` mixes both over a pool and tells the detector which views it ``needs``.
"""

from __future__ import annotations

from napari_al.core.scoring.base import (
    VIEW_NAMES,
    BoxScorer,
    ImageScorer,
    MissingViewError,
    box_iou,
    match_boxes,
)
from napari_al.core.scoring.combine import (
    COMBINE_METHODS,
    CombinedScorer,
    combine_scores,
    minmax_normalize,
    rank_normalize,
)
from napari_al.core.scoring.missed import (
    MissedObjectRegressor,
    candidate_density,
    count_missed,
    missed_features,
    possibly_missed,
    unmatched_candidates,
)
from napari_al.core.scoring.registry import (
    IMAGE_SCORERS,
    SCORERS,
    StrategyError,
    check_strategy,
    describe,
    get_image_scorer,
    get_scorer,
    is_image_scorer,
    split_spec,
)
from napari_al.core.scoring.strategy import PoolScores, Strategy

__all__ = [
    "COMBINE_METHODS",
    "IMAGE_SCORERS",
    "SCORERS",
    "VIEW_NAMES",
    "BoxScorer",
    "CombinedScorer",
    "ImageScorer",
    "MissedObjectRegressor",
    "MissingViewError",
    "PoolScores",
    "Strategy",
    "StrategyError",
    "box_iou",
    "candidate_density",
    "check_strategy",
    "combine_scores",
    "count_missed",
    "describe",
    "get_image_scorer",
    "get_scorer",
    "is_image_scorer",
    "match_boxes",
    "minmax_normalize",
    "missed_features",
    "possibly_missed",
    "rank_normalize",
    "split_spec",
    "unmatched_candidates",
]
