"""Self-consistency under a horizontal flip.

Benenson's slides ("Self-consistency: focus where equivariance is not respected") and the
survey (inconsistency under augmentation, Elezi et al. and Yu et al.: Jensen-Shannon
divergence of the class distributions, plus IoU as localisation disagreement).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import BoxScorer, as_probs, box_iou, js_divergence, match_boxes


class ConsistencyScorer(BoxScorer):
    """Disagreement between the base predictions and those on the flipped image.

    Base boxes are matched one-to-one, class-agnostically, to the ``flipped`` view's boxes
    (already mapped back to original coordinates by the detector) by IoU (``matching``:
    ``greedy`` or ``hungarian``), keeping pairs with IoU >= ``min_iou``. A matched box scores
    ``(JS(p_base, p_flipped) + (1 - IoU)) / 2`` with the base-2 Jensen-Shannon divergence of
    the full class distributions (in ``[0, 1]``); an unmatched box (the flipped pass did not
    find it) scores 1, the maximum. Range ``[0, 1]``. The low default ``min_iou=0.1`` keeps a
    box that merely moved matched (its ``1 - IoU`` term already penalises it), so the score
    stays close to continuous as the overlap shrinks.
    """

    name = "consistency"
    needs = frozenset({"flipped"})
    range = (0.0, 1.0)

    def __init__(self, min_iou: float = 0.1, matching: str = "greedy") -> None:
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f"min_iou must lie in [0, 1], got {min_iou}")
        if matching not in ("greedy", "hungarian"):
            raise ValueError(f"matching must be 'greedy' or 'hungarian', got {matching!r}")
        self.min_iou = float(min_iou)
        self.matching = matching

    def params(self) -> dict[str, Any]:
        return {"min_iou": self.min_iou, "matching": self.matching}

    def _score(self, views: ScoringViews, rng: np.random.Generator | None) -> np.ndarray:
        base, flipped = views.base, views.flipped
        assert flipped is not None
        out = np.ones(len(base))
        if len(flipped) == 0:
            return out
        if flipped.probs.shape[1] != base.probs.shape[1]:
            raise ValueError(
                f"flipped view has {flipped.probs.shape[1]} class columns, "
                f"base has {base.probs.shape[1]}"
            )
        iou = box_iou(base.boxes, flipped.boxes)
        # a tiny epsilon keeps min_iou=0 from matching boxes that do not overlap at all
        rows, cols = match_boxes(iou, max(self.min_iou, 1e-12), self.matching)
        if rows.size:
            js = js_divergence(as_probs(base.probs[rows]), as_probs(flipped.probs[cols]))
            out[rows] = 0.5 * (js + (1.0 - iou[rows, cols]))
        return out
