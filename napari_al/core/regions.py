"""Region questions for missed objects: where to ask "any more <class> here?" (torch-free).

Benenson's annotation dialogs ("Human-in-the-loop annotations" slides, ``../shared/seeds``)
let the machine choose, region by region, the question worth a person's seconds, among them
"this region is unclear: label the objects in it". The survey seed asks active learning to
target false negatives, the objects the detector misses, which scores computed on detections
cannot see (Nakamura et al. 2024, "undetectability"). Here the two meet: the missed-object
estimate picks the regions, and the question about a region is a yes/no ("any more <class>
here?") that costs one verification (:attr:`napari_al.core.costs.CostModel.verify_s`); a yes
is followed by "click every missed object here" (centre clicks, :mod:`napari_al.core.clicks`).

**The estimate.** As the ``missed`` scorer's candidate density
(:func:`napari_al.core.scoring.missed.candidate_density`): the detector's low-threshold
candidates (Desai et al.) that no known box covers, each weighted by its probability of being
an object of its class (the workflow passes the calibrated P(yes) where the model has a
calibration), sum to the expected number of missed objects. Per image and class:

1. a candidate is **covered**, and left out, when its IoU with a known box (a shown
   prediction, a person's box, a rejected box, a click's box) is at least ``cover_iou`` (0.3:
   the viewer's "possibly missed" rule, :class:`~napari_al.core.workflow.SuggestSettings`), or
   when its centre lies in a region already answered "no" for its class (:func:`inside`);
   candidates below ``min_probability`` are left out too;
2. the rest are **merged** into regions (:func:`merge_boxes`): taken by decreasing probability,
   a candidate joins the first region of its class its box overlaps (or comes within ``gap``
   pixels of) while the union stays within ``max_fraction`` of the image's area, else it starts
   a region; regions that then overlap are merged under the same cap. (Connected components of
   the overlap graph, e.g. ``scipy.sparse.csgraph``, would chain a dense image's candidates
   into one region the size of the image: a question nobody answers at a glance.)
3. a region's **expected** number of missed objects is the sum of its members' probabilities;
   its **chance** of holding at least one is ``1 - prod(1 - p)`` (members taken as
   independent);
4. a region is worth asking where ``chance >= min_chance``; the workflow's default is the
   rule for showing a box, ``chance x draw_s > verify_s`` (0.23 with the default costs).
   Best first by expected count, at most ``limit``.

Boxes are ``(N, 4)`` xyxy image pixels, pixel edges on integers (:mod:`napari_al.core.boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_al.core.boxes import as_xyxy, box_iou

#: A candidate overlapping a known box at this IoU or more is not missed (the viewer's rule).
COVER_IOU = 0.3
#: Lowest probability of a candidate that joins a region.
MIN_PROBABILITY = 0.05
#: Largest region, as a fraction of the image's area.
MAX_FRACTION = 0.25

XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class Region:
    """A region worth asking about: ``xyxy`` (image pixels), ``class_index`` (into the
    project's classes), ``expected`` missed objects (sum of member probabilities), ``chance``
    that at least one is there, ``members`` the candidate indices merged into it, best first."""

    xyxy: XYXY
    class_index: int
    expected: float
    chance: float
    members: tuple[int, ...]


def centres(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``(N, 2)`` float64 box centres ``(x, y)``."""
    b = as_xyxy(boxes).astype(np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1).reshape(-1, 2)


def inside(
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    regions: np.ndarray | Sequence[Sequence[float]],
    region_labels: np.ndarray | Sequence[int],
) -> np.ndarray:
    """``(N,)`` bool: whether each box's centre lies in a region (edges included) of the same
    label. ``boxes`` ``(N, 4)`` with ``labels`` ``(N,)``; ``regions`` ``(R, 4)`` with
    ``region_labels`` ``(R,)``. ValueError on mismatched lengths."""
    c = centres(boxes)
    lab = np.asarray(labels, np.int64).reshape(-1)
    r = as_xyxy(regions).astype(np.float64)
    rl = np.asarray(region_labels, np.int64).reshape(-1)
    if len(lab) != len(c) or len(rl) != len(r):
        raise ValueError(
            f"{len(c)} boxes with {len(lab)} labels, {len(r)} regions with {len(rl)} labels"
        )
    if not len(c) or not len(r):
        return np.zeros(len(c), bool)
    x, y = c[:, :1], c[:, 1:]
    hit = (r[None, :, 0] <= x) & (x <= r[None, :, 2]) & (r[None, :, 1] <= y) & (y <= r[None, :, 3])
    return (hit & (lab[:, None] == rl[None, :])).any(axis=1)


def _touch(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Whether boxes ``a`` and ``b`` overlap with positive area once ``a`` grows by ``gap``."""
    return bool(a[0] - gap < b[2] and b[0] < a[2] + gap and a[1] - gap < b[3] and b[1] < a[3] + gap)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])


def _area(a: np.ndarray) -> float:
    return float((a[2] - a[0]) * (a[3] - a[1]))


def merge_boxes(
    boxes: np.ndarray | Sequence[Sequence[float]],
    order: Sequence[int] | None = None,
    *,
    gap: float = 0.0,
    max_area: float = float("inf"),
) -> list[list[int]]:
    """Group overlapping boxes (module docstring, step 2): the groups of box indices, each in
    joining order, groups in the order they started. ``order``: the order boxes are taken
    (default: as given); ``gap``: boxes this many pixels apart still touch; ``max_area``:
    the largest union of a group, pixels squared (a box larger than that alone is its own
    group)."""
    b = as_xyxy(boxes).astype(np.float64)
    idx = list(range(len(b))) if order is None else [int(i) for i in order]
    groups: list[list[int]] = []
    extents: list[np.ndarray] = []
    for i in idx:
        for g, ext in enumerate(extents):
            u = _union(ext, b[i])
            if _touch(ext, b[i], gap) and _area(u) <= max_area:
                groups[g].append(i)
                extents[g] = u
                break
        else:
            groups.append([i])
            extents.append(b[i].copy())
    merged = True
    while merged:
        merged = False
        for g in range(len(groups)):
            for h in range(g + 1, len(groups)):
                u = _union(extents[g], extents[h])
                if _touch(extents[g], extents[h], gap) and _area(u) <= max_area:
                    groups[g].extend(groups.pop(h))
                    extents[g] = u
                    extents.pop(h)
                    merged = True
                    break
            if merged:
                break
    return groups


def find_regions(
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    probabilities: np.ndarray | Sequence[float],
    *,
    known: np.ndarray | Sequence[Sequence[float]] | None = None,
    empty: np.ndarray | Sequence[Sequence[float]] | None = None,
    empty_labels: np.ndarray | Sequence[int] | None = None,
    image_size: tuple[int, int] | None = None,
    cover_iou: float = COVER_IOU,
    min_probability: float = MIN_PROBABILITY,
    gap: float = 0.0,
    max_fraction: float = MAX_FRACTION,
    min_chance: float = 0.0,
    limit: int | None = None,
) -> list[Region]:
    """The regions of one image worth asking "any more <class> here?" (module docstring).

    ``boxes`` ``(N, 4)`` candidate boxes with ``labels`` ``(N,)`` class indices and
    ``probabilities`` ``(N,)`` in [0, 1] (clipped); ``known`` ``(M, 4)``: boxes that cover a
    candidate at IoU >= ``cover_iou``; ``empty`` ``(R, 4)`` with ``empty_labels``: regions
    answered "no" for that class; ``image_size`` ``(width, height)`` caps a region at
    ``max_fraction`` of its area (None: no cap). Returns regions with ``chance >= min_chance``
    and ``expected > 0``, by decreasing expected count (ties: the best member first), at most
    ``limit``. ValueError on mismatched lengths.
    """
    b = as_xyxy(boxes).astype(np.float64)
    lab = np.asarray(labels, np.int64).reshape(-1)
    p = np.clip(np.nan_to_num(np.asarray(probabilities, np.float64).reshape(-1)), 0.0, 1.0)
    if not len(lab) == len(p) == len(b):
        raise ValueError(f"{len(b)} boxes, {len(lab)} labels and {len(p)} probabilities")
    keep = (p >= min_probability) & (p > 0)
    k = as_xyxy(known if known is not None else np.zeros((0, 4))).astype(np.float64)
    if len(k) and len(b):
        keep &= box_iou(b, k).max(axis=1) < cover_iou
    if empty is not None and len(b):
        e_lab = np.zeros(0, np.int64) if empty_labels is None else empty_labels
        keep &= ~inside(b, lab, empty, e_lab)
    max_area = float("inf")
    if image_size is not None:
        max_area = max_fraction * float(image_size[0]) * float(image_size[1])
    regions: list[Region] = []
    for cls in sorted(set(lab[keep].tolist())):
        idx = np.flatnonzero(keep & (lab == cls))
        order = idx[np.argsort(-p[idx], kind="stable")]
        for group in merge_boxes(b, order, gap=gap, max_area=max_area):
            members = sorted(group, key=lambda i: (-p[i], i))
            g = np.asarray(members)
            ext = np.concatenate([b[g, :2].min(axis=0), b[g, 2:].max(axis=0)])
            expected = float(p[g].sum())
            chance = float(1.0 - np.prod(1.0 - p[g]))
            if expected > 0 and chance >= min_chance:
                xyxy = (float(ext[0]), float(ext[1]), float(ext[2]), float(ext[3]))
                regions.append(Region(xyxy, int(cls), expected, chance, tuple(members)))
    regions.sort(key=lambda r: (-r.expected, -p[r.members[0]], r.members[0]))
    return regions if limit is None else regions[: max(int(limit), 0)]
