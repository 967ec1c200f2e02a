"""Pieces of objects larger than the tile overlap, joined across window edges.

Tiled prediction (:mod:`napari_al.core.engine.tiling`) finds an object whole when one window
holds it: always when the object is at most the overlap across. A larger object lying over
the overlap strip of two windows is held by neither: each sees a *piece*, a box cut by its
window's edge inside the image. Keeping both pieces counts one object twice, each piece poorly
placed (in BCCD, red cells of about 100 px at the default 64 px overlap).

A piece is joined with a piece of the neighbouring window when they are two views of the
same object: the same class, one cut by a window's right (bottom) edge and the other by the
next window's left (top) edge, together spanning the strip between those edges, and agreeing
across the cut (their extents along the edge overlap with an interval IoU of at least
:data:`MIN_AGREEMENT`). The joined box is their union, with the class, scores, probabilities
and features of the higher-scoring piece and the union of their proposals. Joining repeats
until nothing joins, so an object over several windows (a corner, a long object) is joined
from all its pieces. This is SAHI's idea of merging slice predictions of one object
(greedy non-maximum merging, Akyon et al. 2022, "Slicing Aided Hyper Inference"), restricted
to pieces cut at facing edges, so that two touching objects are never merged.

A piece that joins with nothing is kept when its centre lies in its window's core (the rule
for cut boxes without this step), else dropped: the neighbour that owns its centre sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_al.core.data import Predictions

#: Least interval IoU, along the cut, of two pieces of one object (module docstring).
MIN_AGREEMENT = 0.5
#: Most joining passes (each pass joins across every vertical, then every horizontal cut).
MAX_PASSES = 16


@dataclass(frozen=True)
class Pieces:
    """Boxes cut by window edges inside the image, in image pixels.

    ``pred``: their predictions (``N`` boxes, xyxy float32); ``cuts``: ``(N, 4)`` float64, per
    side (left, top, right, bottom) the image coordinate of the window edge the box is cut by
    there, NaN where it is not cut; ``owned``: ``(N,)`` bool, whether its centre lies in the
    core of its window (of one of its windows, for a joined box still cut somewhere)."""

    pred: Predictions
    cuts: np.ndarray
    owned: np.ndarray

    def __len__(self) -> int:
        return len(self.pred)

    def subset(self, index: np.ndarray) -> Pieces:
        return Pieces(self.pred.subset(index), self.cuts[index], self.owned[index])


def concat(parts: list[Pieces], like: Predictions) -> Pieces:
    """One :class:`Pieces` of ``parts`` (``like`` gives the array shapes when all are empty)."""
    preds = [p.pred for p in parts] or [like.subset(np.zeros(len(like), bool))]
    pred = Predictions.concat(preds, preds[0].embedding)
    cuts = np.concatenate([p.cuts for p in parts]) if parts else np.zeros((0, 4))
    owned = np.concatenate([p.owned for p in parts]) if parts else np.zeros(0, bool)
    return Pieces(pred, cuts.reshape(-1, 4), owned)


def _interval_iou(a0: np.ndarray, a1: np.ndarray, b0: float, b1: float) -> np.ndarray:
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
    union = np.maximum(a1, b1) - np.minimum(a0, b0)
    return inter / np.maximum(union, 1e-9)


def _pairs(
    p: Pieces, axis: int, following: dict[float, float], margin: float, longest: float
) -> list:
    """Pairs ``(i, j)`` of pieces to join across a cut along ``axis`` (0: a vertical cut,
    pieces side by side; 1: a horizontal one): ``i`` cut at the end side by a window edge,
    ``j`` cut at the start side by the next window's start edge; best agreement first, each
    piece in one pair at most."""
    lo, hi = axis, axis + 2  # box columns (x1, x2) or (y1, y2), and the cuts' sides
    across_lo, across_hi = 1 - axis, 3 - axis
    b = p.pred.boxes.astype(np.float64)
    ends = np.flatnonzero(~np.isnan(p.cuts[:, hi]))
    starts = np.flatnonzero(~np.isnan(p.cuts[:, lo]))
    if not len(ends) or not len(starts):
        return []
    candidates = []
    for i in ends:
        nxt = following.get(float(p.cuts[i, hi]))
        if nxt is None:
            continue
        j = starts[
            (p.cuts[starts, lo] == nxt)
            & (p.pred.labels[starts] == p.pred.labels[i])
            & (b[starts, lo] >= b[i, lo] - margin)  # j starts at or after i's start
            & (b[starts, hi] >= b[i, hi] - margin)  # and ends at or after i's end
            & (b[starts, hi] - b[i, lo] <= longest)  # the union no longer than ``longest``
        ]
        if not len(j):
            continue
        agree = _interval_iou(b[j, across_lo], b[j, across_hi], b[i, across_lo], b[i, across_hi])
        for jj, a in zip(j[agree >= MIN_AGREEMENT], agree[agree >= MIN_AGREEMENT], strict=True):
            candidates.append((-float(a), int(i), int(jj)))
    used: set[int] = set()
    out = []
    for _, i, j in sorted(candidates):
        if i not in used and j not in used and i != j:
            used.update((i, j))
            out.append((i, j))
    return out


def _join_pairs(p: Pieces, pairs: list, axis: int) -> Pieces:
    """``p`` with each pair replaced by its union (module docstring)."""
    first = np.array([i for i, _ in pairs], np.int64)
    second = np.array([j for _, j in pairs], np.int64)
    better = np.where(p.pred.scores[first] >= p.pred.scores[second], first, second)
    joined = p.subset(better)
    bi, bj = p.pred.boxes[first], p.pred.boxes[second]
    union = np.concatenate([np.minimum(bi[:, :2], bj[:, :2]), np.maximum(bi[:, 2:], bj[:, 2:])], 1)
    proposals = joined.pred.proposals
    if proposals is not None:
        pi, pj = p.pred.proposals[first], p.pred.proposals[second]  # type: ignore[index]
        proposals = np.concatenate(
            [np.minimum(pi[:, :2], pj[:, :2]), np.maximum(pi[:, 2:], pj[:, 2:])], 1
        )
    ci, cj = p.cuts[first], p.cuts[second]
    cuts = np.where(np.isnan(ci), cj, ci)  # cut along the other axis where either is
    cuts[:, axis + 2] = cj[:, axis + 2]  # the start piece's start, the end piece's end
    cuts[:, axis] = ci[:, axis]
    pred = Predictions(
        boxes=union.astype(np.float32),
        labels=joined.pred.labels,
        scores=joined.pred.scores,
        probs=joined.pred.probs,
        features=joined.pred.features,
        embedding=joined.pred.embedding,
        proposals=None if proposals is None else proposals.astype(np.float32),
    )
    rest = np.ones(len(p), bool)
    rest[first] = rest[second] = False
    return concat([p.subset(rest), Pieces(pred, cuts, p.owned[first] | p.owned[second])], p.pred)


def join_pieces(
    pieces: Pieces,
    next_x: dict[float, float],
    next_y: dict[float, float],
    margin: float,
    longest: tuple[float, float] = (np.inf, np.inf),
) -> Pieces:
    """``pieces`` with the pieces of each object joined (module docstring), repeatedly.

    ``next_x`` maps a window's right edge (image x, px) to the left edge of the next window
    in its row; ``next_y`` a bottom edge to the next row's top edge. ``margin``: pixels of
    slack in the span test. ``longest`` ``(width, height)`` px: no join makes a box longer
    (a weak model's overlapping boxes could otherwise chain across many windows into one).
    Joined boxes no longer cut anywhere have all-NaN ``cuts``."""
    for _ in range(MAX_PASSES):
        joined = False
        for axis, following in ((0, next_x), (1, next_y)):
            pairs = _pairs(pieces, axis, following, margin, longest[axis])
            if pairs:
                pieces = _join_pairs(pieces, pairs, axis)
                joined = True
        if not joined:
            break
    return pieces
