"""Turning scores into queries: images (with diversity), boxes, and image regions.

- Images: plain top-k by score, or a diverse subset on image embeddings, greedy core-set
  k-center (Sener & Savarese; Desai et al. §3.3 "Coreset Greedy selection") or k-means++
  seeding (Arthur & Vassilvitskii; both cited by the survey, "Diversity"), optionally as a
  two-stage selection: a candidate pool of the ``r x budget`` most uncertain images, then a
  diverse ``budget`` of it (survey, "Combining Multiple Criteria", Wu et al. / Yang et al.'s
  PPAL).
- Boxes: Desai et al.'s fine-grained sampling, ranking single boxes across all images.
- Regions: Benenson's slides ("Which image areas should be annotated?", "Most regions are
  understood, but this region is unclear"): grid blocks ranked by the uncertainty of the boxes
  centred in them plus the density of possibly missed objects.

All functions are deterministic under a seed, and ties are broken stably (input order).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

UNITS = ("image", "box", "region")
DIVERSITY = (None, "coreset", "kmeans++")


@dataclass
class QueryItem:
    """One thing to ask the annotator about.

    ``image``: the image id; ``score``: its informativeness (higher first); ``unit``:
    ``image``, ``box`` or ``region``; ``box``: the box or region ``(x1, y1, x2, y2)`` in image
    pixels (``None`` for a whole image); ``index``: the box's index in the image's base
    predictions (``box`` unit only); ``breakdown``: per-scorer scores behind ``score``.
    """

    image: Hashable
    score: float
    unit: str = "image"
    box: tuple[float, float, float, float] | None = None
    index: int | None = None
    breakdown: dict[str, float] = field(default_factory=dict)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _min_sq_dists(
    x: np.ndarray, centers: np.ndarray, xx: np.ndarray | None = None, chunk: int = 1024
) -> np.ndarray:
    """For each row of ``x``, the squared Euclidean distance to its nearest row of ``centers``.

    ``xx`` are the precomputed squared norms of the rows of ``x`` (saves a pass per call).
    """
    out = np.full(x.shape[0], np.inf)
    if xx is None:
        xx = np.einsum("ij,ij->i", x, x)
    for start in range(0, centers.shape[0], chunk):
        c = centers[start : start + chunk]
        d = xx[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (x @ c.T)
        out = np.minimum(out, np.clip(d, 0.0, None).min(axis=1))
    return out


def _as_embeddings(embeddings: np.ndarray, n: int | None = None) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or (n is not None and x.shape[0] != n):
        raise ValueError(
            f"embeddings must have shape ({n if n is not None else 'n'}, E), got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings must be finite")
    return x


def kcenter_greedy(
    embeddings: np.ndarray,
    k: int,
    labeled: np.ndarray | None = None,
    priority: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy k-center core-set (Sener & Savarese): indices of ``k`` rows, in pick order.

    Each step picks the point farthest from every center so far; centers start as the
    ``labeled`` embeddings when given. Without them the first pick is the first in
    ``priority`` (an index order, e.g. by decreasing uncertainty; default input order), which
    also breaks distance ties.
    """
    x = _as_embeddings(embeddings)
    n = x.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    order = np.arange(n) if priority is None else np.asarray(priority, dtype=np.int64)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError("priority must be a permutation of range(n)")
    xo = x[order]  # work in priority order so argmax ties go to the higher priority
    xx = np.einsum("ij,ij->i", xo, xo)
    if labeled is not None and np.asarray(labeled).size:
        lab = _as_embeddings(labeled)
        if lab.shape[1] != x.shape[1]:
            raise ValueError("labeled embeddings have a different dimension")
        min_d = _min_sq_dists(xo, lab, xx)
        picks: list[int] = []
    else:
        picks = [0]
        min_d = _min_sq_dists(xo, xo[:1], xx)
        min_d[0] = -1.0
    while len(picks) < k:
        j = int(np.argmax(min_d))
        picks.append(j)
        min_d = np.minimum(min_d, _min_sq_dists(xo, xo[j : j + 1], xx))
        min_d[picks] = -1.0
    return order[np.asarray(picks, dtype=np.int64)]


def kmeanspp_seeding(
    embeddings: np.ndarray,
    k: int,
    weights: np.ndarray | None = None,
    labeled: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii): indices of ``k`` rows, in pick order.

    Each next point is drawn with probability ``∝ weight * D²``, ``D`` its distance to the
    nearest center so far (``labeled`` embeddings count as centers); the first, without
    ``labeled``, is drawn ``∝ weight``. ``weights`` (e.g. uncertainty) default to 1. When every
    remaining point coincides with a center, draws fall back to ``∝ weight``.
    """
    x = _as_embeddings(embeddings)
    n = x.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    gen = _rng(rng)
    w = np.ones(n) if weights is None else np.clip(np.asarray(weights, float).reshape(-1), 0, None)
    if w.shape != (n,) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite, one per row")
    if w.sum() <= 0:
        w = np.ones(n)
    xx = np.einsum("ij,ij->i", x, x)
    if labeled is not None and np.asarray(labeled).size:
        lab = _as_embeddings(labeled)
        if lab.shape[1] != x.shape[1]:
            raise ValueError("labeled embeddings have a different dimension")
        min_d = _min_sq_dists(x, lab, xx)
    else:
        min_d = None
    picked = np.zeros(n, bool)
    picks: list[int] = []
    while len(picks) < k:
        p = w * min_d if min_d is not None else w.copy()
        p[picked] = 0.0
        if p.sum() <= 0:
            p = np.where(picked, 0.0, w)
            if p.sum() <= 0:
                p = (~picked).astype(float)
        j = int(gen.choice(n, p=p / p.sum()))
        picks.append(j)
        picked[j] = True
        d_new = _min_sq_dists(x, x[j : j + 1], xx)
        min_d = d_new if min_d is None else np.minimum(min_d, d_new)
    return np.asarray(picks, dtype=np.int64)


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices by decreasing score, ties in input order."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.argsort(-s, kind="stable")


def select_images(
    scores: np.ndarray,
    budget: int,
    embeddings: np.ndarray | None = None,
    diversity: str | None = None,
    candidate_factor: float | None = 3.0,
    labeled_embeddings: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    ids: Sequence[Hashable] | None = None,
    breakdown: Mapping[str, np.ndarray] | None = None,
    weighted: bool = False,
) -> list[QueryItem]:
    """Pick ``budget`` images to annotate; returns them by decreasing score.

    ``diversity=None``: the top ``budget`` scores. ``"coreset"`` / ``"kmeans++"`` need
    ``embeddings (n, E)``: first a candidate pool of the ``ceil(candidate_factor * budget)``
    highest scores (two-stage selection; ``None`` = the whole pool), then :func:`kcenter_greedy`
    (first pick = most uncertain candidate, or from ``labeled_embeddings``) or
    :func:`kmeanspp_seeding` (weighted by the scores when ``weighted``; ``labeled_embeddings``
    as initial centers) picks ``budget`` of them. ``ids`` name the images (default: indices);
    ``breakdown`` maps scorer names to ``(n,)`` per-image scores copied into each item.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = s.size
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if diversity not in DIVERSITY:
        raise ValueError(f"unknown diversity {diversity!r}; use one of {DIVERSITY}")
    ids = list(range(n)) if ids is None else list(ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} scores")
    budget = min(int(budget), n)
    if budget <= 0:
        return []
    order = rank_order(s)
    if diversity is None:
        chosen = order[:budget]
    else:
        if embeddings is None:
            raise ValueError(f"diversity={diversity!r} needs image embeddings")
        x = _as_embeddings(embeddings, n)
        if candidate_factor is None or not np.isfinite(candidate_factor):
            pool = order
        else:
            if candidate_factor < 1:
                raise ValueError("candidate_factor must be >= 1")
            pool = order[: min(n, int(np.ceil(candidate_factor * budget)))]
        if diversity == "coreset":
            local = kcenter_greedy(x[pool], budget, labeled_embeddings)
        else:
            w = s[pool] if weighted else None
            local = kmeanspp_seeding(x[pool], budget, w, labeled_embeddings, rng)
        chosen = pool[local]
        chosen = chosen[rank_order(s[chosen])]
    items = []
    for i in chosen:
        bd = {} if breakdown is None else {k: float(np.asarray(v)[i]) for k, v in breakdown.items()}
        items.append(QueryItem(image=ids[i], score=float(s[i]), unit="image", breakdown=bd))
    return items


def select_boxes(
    box_scores: Mapping[Hashable, np.ndarray] | Sequence[np.ndarray],
    budget: int,
    *,
    boxes: Mapping[Hashable, np.ndarray] | Sequence[np.ndarray] | None = None,
    breakdown: Mapping[Hashable, Mapping[str, np.ndarray]]
    | Sequence[Mapping[str, np.ndarray]]
    | None = None,
    max_per_image: int | None = None,
    skip: Mapping[Hashable, np.ndarray] | Sequence[np.ndarray] | None = None,
) -> list[QueryItem]:
    """Desai et al.'s box-level queries: the ``budget`` most informative boxes of the pool.

    ``box_scores`` maps image ids to ``(N_i,)`` per-box scores (a sequence uses positions as
    ids). Boxes are ranked across images by decreasing score, ties by image order then box
    index; ``max_per_image`` caps the picks per image to spread the effort. ``boxes`` (same
    keys, ``(N_i, 4)``) fill :attr:`QueryItem.box`; ``breakdown`` (same keys, name ->
    ``(N_i,)``) fills :attr:`QueryItem.breakdown`. ``skip`` (same keys, ``(N_i,)`` bool)
    marks boxes never to pick, e.g. objects a person already judged.
    """

    def keyed(m: Mapping[Hashable, object] | Sequence[object]) -> dict[Hashable, object]:
        return dict(m) if isinstance(m, Mapping) else dict(enumerate(m))

    scores_by = keyed(box_scores)
    boxes_by = keyed(boxes) if boxes is not None else {}
    bd_by = keyed(breakdown) if breakdown is not None else {}
    skip_by = keyed(skip) if skip is not None else {}
    if budget <= 0 or not scores_by:
        return []
    keys = list(scores_by)
    flat_s, flat_img, flat_box = [], [], []
    for ki, key in enumerate(keys):
        s = np.asarray(scores_by[key], dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(s)):
            raise ValueError(f"non-finite box scores for image {key!r}")
        flat_s.append(s)
        flat_img.append(np.full(s.size, ki, np.int64))
        flat_box.append(np.arange(s.size, dtype=np.int64))
    fs, fi, fb = np.concatenate(flat_s), np.concatenate(flat_img), np.concatenate(flat_box)
    per_image: dict[int, int] = {}
    items: list[QueryItem] = []
    for j in rank_order(fs):
        ki, bi = int(fi[j]), int(fb[j])
        if max_per_image is not None and per_image.get(ki, 0) >= max_per_image:
            continue
        mask = skip_by.get(keys[ki])
        if mask is not None and bool(np.asarray(mask)[bi]):
            continue
        per_image[ki] = per_image.get(ki, 0) + 1
        key = keys[ki]
        box = None
        if key in boxes_by:
            b = np.asarray(boxes_by[key], dtype=np.float64)[bi]
            box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        bd_img: Mapping[str, np.ndarray] = bd_by.get(key, {})  # type: ignore[assignment]
        bd = {name: float(np.asarray(v)[bi]) for name, v in bd_img.items()}
        items.append(
            QueryItem(image=key, score=float(fs[j]), unit="box", box=box, index=bi, breakdown=bd)
        )
        if len(items) == budget:
            break
    return items


def rank_regions(
    image_shape: Sequence[int],
    boxes: np.ndarray,
    box_scores: np.ndarray,
    missed_boxes: np.ndarray | None = None,
    *,
    missed_scores: np.ndarray | None = None,
    block: int | tuple[int, int] = 256,
    missed_weight: float = 1.0,
    image: Hashable = None,
    keep_empty: bool = False,
) -> list[QueryItem]:
    """Grid blocks of one image ranked by where annotation effort should go.

    The image (``image_shape = (H, W, ...)``) is cut into blocks of ``block`` pixels
    (``(height, width)`` or one int; edge blocks are clipped). A block's score is the sum of
    the scores of the boxes whose centre lies in it plus ``missed_weight`` times its
    missed-object density: the number of ``missed_boxes`` centred in it, or the sum of their
    ``missed_scores`` when given. Returns ``region`` items (``box`` = block ``xyxy``),
    best first, ties in row-major order; blocks scoring 0 are dropped unless ``keep_empty``.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    if isinstance(block, (int, np.integer)):
        bh = bw = int(block)
    else:
        bh, bw = int(block[0]), int(block[1])
    if h <= 0 or w <= 0 or bh <= 0 or bw <= 0:
        raise ValueError("image_shape and block must be positive")
    rows, cols = -(-h // bh), -(-w // bw)

    def density(bx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        grid = np.zeros((rows, cols))
        bx = np.asarray(bx, dtype=np.float64).reshape(-1, 4)
        if bx.shape[0] != weights.shape[0]:
            raise ValueError(f"{bx.shape[0]} boxes for {weights.shape[0]} scores")
        if bx.shape[0]:
            cx, cy = (bx[:, 0] + bx[:, 2]) / 2, (bx[:, 1] + bx[:, 3]) / 2
            c = np.clip((cx // bw).astype(np.int64), 0, cols - 1)
            r = np.clip((cy // bh).astype(np.int64), 0, rows - 1)
            np.add.at(grid, (r, c), weights)
        return grid

    s = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    box_grid = density(boxes, s)
    if missed_boxes is None:
        missed_grid = np.zeros((rows, cols))
    else:
        mb = np.asarray(missed_boxes, dtype=np.float64).reshape(-1, 4)
        ms = np.ones(mb.shape[0]) if missed_scores is None else np.asarray(missed_scores, float)
        missed_grid = density(mb, ms.reshape(-1))
    total = (box_grid + missed_weight * missed_grid).ravel()
    items = []
    for flat in rank_order(total):
        if total[flat] <= 0 and not keep_empty:
            continue
        r, c = divmod(int(flat), cols)
        xyxy = (
            float(c * bw),
            float(r * bh),
            float(min((c + 1) * bw, w)),
            float(min((r + 1) * bh, h)),
        )
        bd = {"boxes": float(box_grid[r, c]), "missed": float(missed_grid[r, c])}
        items.append(
            QueryItem(image=image, score=float(total[flat]), unit="region", box=xyxy, breakdown=bd)
        )
    return items
