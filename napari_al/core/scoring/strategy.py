"""A full acquisition strategy: box and image scorers, aggregation, pool-wide combination.

The survey ("Combining Multiple Criteria"; "Aggregation of Object-Level Scores") and
Benenson's slides ("ensemble model + entropy + self-consistency"). ``Strategy("entropy+missed")``
scores a pool image by image (views are consumed one at a time and only scores are kept),
lifts each box scorer to an image score with :func:`~napari_al.core.aggregation.aggregate`,
and, when there are several components, combines them across the pool with
:func:`~napari_al.core.scoring.combine.combine_scores` (rank-normalised mean by default).
A single component keeps its raw (documented-range) values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_al.core.aggregation import AGGREGATIONS, aggregate
from napari_al.core.data import ScoringViews
from napari_al.core.scoring.base import BoxScorer, ImageScorer
from napari_al.core.scoring.combine import COMBINE_METHODS, combine_scores
from napari_al.core.scoring.registry import (
    get_image_scorer,
    get_scorer,
    is_image_scorer,
    split_spec,
)


@dataclass
class PoolScores:
    """Scores of a pool of ``n`` images.

    - ``image_scores``: ``(n,)`` combined image scores (higher = query first);
    - ``breakdown``: component name -> ``(n,)`` image-level score of that component
      (aggregated for box scorers, raw for image scorers);
    - ``box_scores``: per image, ``(N_i,)`` combined box scores (box components only,
      combined pool-wide over all boxes; zeros when the strategy has no box scorer);
    - ``box_breakdown``: per image, component name -> ``(N_i,)`` raw box scores.
    """

    image_scores: np.ndarray
    breakdown: dict[str, np.ndarray] = field(default_factory=dict)
    box_scores: list[np.ndarray] = field(default_factory=list)
    box_breakdown: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass
class ImageRaw:
    """One image's raw component scores, with the labels and confidences aggregation needs.

    Small and model-free, so it is what the score cache keeps per (image, model, strategy).
    """

    labels: np.ndarray
    scores: np.ndarray
    box: dict[str, np.ndarray]
    image: dict[str, float]

    def to_bytes(self) -> bytes:
        """Serialise for the score cache (npz, no pickle)."""
        import io

        arrays: dict[str, np.ndarray] = {"labels": self.labels, "scores": self.scores}
        for name, v in self.box.items():
            arrays[f"box:{name}"] = np.asarray(v, dtype=np.float64)
        for name, v in self.image.items():
            arrays[f"image:{name}"] = np.asarray([v], dtype=np.float64)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageRaw:
        import io

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            box = {k[4:]: z[k] for k in z.files if k.startswith("box:")}
            image = {k[6:]: float(z[k][0]) for k in z.files if k.startswith("image:")}
            return cls(labels=z["labels"], scores=z["scores"], box=box, image=image)


def raw_box_weights(
    raw: ImageRaw, confidence: bool, class_weights: np.ndarray | None
) -> np.ndarray | None:
    """:func:`~napari_al.core.aggregation.box_weights` from cached labels and confidences."""
    if not confidence and class_weights is None:
        return None
    w = np.ones(raw.labels.shape[0])
    if confidence:
        w = w * np.clip(raw.scores, 0, 1)
    if class_weights is not None and raw.labels.size:
        w = w * np.asarray(class_weights, dtype=np.float64)[raw.labels]
    return w


class Strategy:
    """A parsed ``name1+name2+...`` strategy over registered box and image scorers.

    ``params`` maps a component name to its constructor parameters; ``weights`` (by name,
    default 1) weight the combination. ``aggregation``/``k`` lift box scores to images,
    weighted by confidence when ``confidence_weighted`` and by per-class weights given to
    :meth:`score_pool`. ``combine`` is ``rank`` or ``minmax``.
    """

    def __init__(
        self,
        spec: str,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        aggregation: str = "mean",
        k: int = 3,
        confidence_weighted: bool = False,
        combine: str = "rank",
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
        if combine not in COMBINE_METHODS:
            raise ValueError(f"unknown combine method {combine!r}; use one of {COMBINE_METHODS}")
        params = dict(params or {})
        self.names = split_spec(spec)
        extra = set(params) - set(self.names)
        if extra:
            raise ValueError(f"parameters for {sorted(extra)}, which are not in {spec!r}")
        self.spec = "+".join(self.names)
        self.box_scorers: list[BoxScorer] = []
        self.image_scorers: list[ImageScorer] = []
        for n in self.names:
            if is_image_scorer(n):
                self.image_scorers.append(get_image_scorer(n, **params.get(n, {})))
            else:
                self.box_scorers.append(get_scorer(n, **params.get(n, {})))
        self.aggregation, self.k = aggregation, int(k)
        self.confidence_weighted = bool(confidence_weighted)
        self.combine = combine
        self.weights = dict(weights or {})

    @property
    def needs(self) -> frozenset[str]:
        """Union of the views all components need: what the detector must compute."""
        scorers: list[BoxScorer | ImageScorer] = [*self.box_scorers, *self.image_scorers]
        return frozenset().union(*(s.needs for s in scorers))

    @property
    def requires_proposals(self) -> bool:
        return any(s.requires_proposals for s in [*self.box_scorers, *self.image_scorers])

    def score_views(
        self, views: ScoringViews, rng: np.random.Generator | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Raw scores of one image: (box component -> ``(N,)``, image component -> float)."""
        boxes = {s.name: s.score(views, rng) for s in self.box_scorers}
        images = {s.name: s.score(views, rng) for s in self.image_scorers}
        return boxes, images

    def raw_scores(self, views: ScoringViews, rng: np.random.Generator | None = None) -> ImageRaw:
        """The per-image part of scoring: what can be cached per (image, model, strategy)."""
        boxes, images = self.score_views(views, rng)
        return ImageRaw(
            labels=np.asarray(views.base.labels, dtype=np.int64).reshape(-1),
            scores=np.asarray(views.base.scores, dtype=np.float64).reshape(-1),
            box=boxes,
            image=images,
        )

    def score_pool(
        self,
        views: Iterable[ScoringViews],
        rng: np.random.Generator | None = None,
        class_weights: np.ndarray | None = None,
    ) -> PoolScores:
        """Score every image of ``views`` (an iterable, consumed once) and combine."""
        return self.combine_raw((self.raw_scores(v, rng) for v in views), class_weights)

    def combine_raw(
        self, raws: Iterable[ImageRaw], class_weights: np.ndarray | None = None
    ) -> PoolScores:
        """Lift box scores to images and combine components pool-wide."""
        image_comp: dict[str, list[float]] = {n: [] for n in self.names}
        box_breakdown: list[dict[str, np.ndarray]] = []
        sizes: list[int] = []
        for raw in raws:
            sizes.append(int(raw.labels.shape[0]))
            w = raw_box_weights(raw, self.confidence_weighted, class_weights)
            for name, s in raw.box.items():
                image_comp[name].append(aggregate(s, self.aggregation, k=self.k, weights=w))
            for name, val in raw.image.items():
                image_comp[name].append(val)
            box_breakdown.append(raw.box)
        breakdown = {n: np.asarray(vals, dtype=np.float64) for n, vals in image_comp.items()}
        n_images = len(box_breakdown)
        if len(self.names) == 1:
            image_scores = breakdown[self.names[0]].copy()
        else:
            image_scores = combine_scores(
                breakdown, self.combine, {n: self.weights.get(n, 1.0) for n in self.names}
            )
        box_scores = self._combine_boxes(box_breakdown, sizes)
        assert image_scores.shape == (n_images,)
        return PoolScores(image_scores, breakdown, box_scores, box_breakdown)

    def _combine_boxes(
        self, per_image: list[dict[str, np.ndarray]], sizes: list[int]
    ) -> list[np.ndarray]:
        """Combine box components over all boxes of the pool, then split back per image."""
        box_names = [s.name for s in self.box_scorers]
        if not box_names:
            return [np.zeros(n) for n in sizes]
        flat = {
            n: np.concatenate([d[n] for d in per_image]) if per_image else np.zeros(0)
            for n in box_names
        }
        if len(box_names) == 1:
            combined = flat[box_names[0]]
        else:
            combined = combine_scores(
                flat, self.combine, {n: self.weights.get(n, 1.0) for n in box_names}
            )
        return list(np.split(combined, np.cumsum(sizes)[:-1])) if per_image else []

    def __repr__(self) -> str:
        return (
            f"Strategy({self.spec!r}, aggregation={self.aggregation!r}, k={self.k}, "
            f"confidence_weighted={self.confidence_weighted}, combine={self.combine!r})"
        )
