"""Rank the pool: what to ask a person next, stored in the project so it survives a restart.

Units (see :class:`~napari_al.core.workflow.settings.QuerySettings`):

- ``image``: whole images by aggregated box scores; with ``diversity`` a two-stage pick (top
  ``candidate_factor x budget`` by score, then core-set (Sener & Savarese 2018) or k-means++
  on image embeddings, starting from the labelled images' embeddings);
- ``box``: single boxes to verify, drawn from low-threshold candidates (Desai et al. 2019),
  never one already judged (:func:`~napari_al.core.workflow.examples.judged_mask`);
- ``region``: image blocks ranked by summed box scores plus missed-object density;
- ``question``: the dialog planner's queue (:mod:`napari_al.core.workflow.dialog`).

An image with a side over ``TileSettings.tile_above`` is scored window by window at the
detector's native input size (:mod:`napari_al.core.workflow.tiled_ranking`): it ranks by its
best window, its region queries are windows, its box queries come from the windows.

Per-image scores and embeddings are cached in the store per (image hash, model version,
strategy), so re-ranking with an unchanged model touches no image. The images not cached are
scored in this process, or as a Dask task graph over chunks of images
(:mod:`napari_al.core.workflow.distributed`, docs/scale.md).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.data import ScoringViews
from napari_al.core.selection import QueryItem
from napari_al.core.store.lock import holds_project_lock
from napari_al.core.workflow.examples import (
    HELD_OUT_SPLITS,
    OnSkip,
    judged_boxes,
    judged_mask,
    read_rows,
)
from napari_al.core.workflow.model import ensemble_members
from napari_al.core.workflow.prediction import is_tiled, pool_image_ids
from napari_al.core.workflow.query_checks import check_detector_views, check_query
from napari_al.core.workflow.settings import UNITS, QuerySettings, TileSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.scoring.strategy import ImageRaw, Strategy
    from napari_al.core.store import ImageRow, ProjectStore
    from napari_al.core.workflow.distributed import DaskCluster
    from napari_al.core.workflow.settings import DistributedSettings
    from napari_al.core.workflow.tiled_ranking import TiledScore

    #: Where a pass scores: None (this process), Dask settings, or a Dask cluster.
    Distributed = DistributedSettings | DaskCluster | None

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]

#: Extra-view settings used when a strategy needs them (see ``Detector.scoring_views``).
MC_PASSES = 8
NOISE_VIEWS = 2
#: Score-cache key of an image's embedding (``Predictions.embedding``, float32 bytes).
EMBEDDING_KEY = "embedding/v1"
#: Images scored per forward pass.
BATCH_SIZE = 2
#: The missed-object regressor needs this many complete images to be fitted.
MISSED_MIN_IMAGES = 5


def view_kwargs(needs: frozenset[str]) -> dict[str, Any]:
    """``Detector.scoring_views`` arguments for the views a strategy needs."""
    return {
        "mc_passes": MC_PASSES if "mc_probs" in needs else 0,
        "flip": "flipped" in needs,
        "noise_views": NOISE_VIEWS if "noisy" in needs else 0,
        "candidates": "candidates" in needs,
    }


def _read_whole(row: ImageRow, tiles: TileSettings | None) -> bool:
    """Whether labelled-set helpers that read images whole may read ``row``: not when it is
    tiled under ``tiles`` (None: every image is read whole, as the dialog planner does)."""
    return tiles is None or not is_tiled(row, tiles)


def fit_missed_regressor(
    store: ProjectStore,
    detector: Detector,
    max_images: int = 50,
    tiles: TileSettings | None = None,
) -> Any:
    """The missed-object regressor (Nakamura et al.) fitted on complete images outside val and
    test (held-out labels teach no model part, as in
    :func:`~napari_al.core.workflow.examples.training_examples`), or None when
    fewer than :data:`MISSED_MIN_IMAGES` exist. Target: how many human boxes of an image the
    detector fails to find at IoU 0.5. Images tiled under ``tiles`` are left out: read whole,
    their shrunken view finds almost nothing, so their target would be nearly every human box
    (and a 16,384 px image takes 11 GB)."""
    from napari_al.core.data import HUMAN_STATUSES
    from napari_al.core.scoring.missed import MissedObjectRegressor, count_missed, missed_features

    rows = [
        r
        for r in store.images()
        if r.review_state == "complete" and r.split not in HELD_OUT_SPLITS and _read_whole(r, tiles)
    ][:max_images]
    if len(rows) < MISSED_MIN_IMAGES:
        return None
    feats, targets = [], []
    for start in range(0, len(rows), 4):
        batch, pixels = read_rows(store, rows[start : start + 4])
        for row, v in zip(batch, detector.scoring_views(pixels, candidates=True), strict=True):
            gt = np.asarray(
                [b.xyxy for b in store.boxes(image_id=row.id, statuses=HUMAN_STATUSES)],
                np.float64,
            ).reshape(-1, 4)
            feats.append(missed_features(v))
            targets.append(count_missed(gt, v.base.boxes))
    return MissedObjectRegressor().fit(np.stack(feats), np.asarray(targets, np.float64))


@dataclass
class _Plan:
    """A strategy with its fitted parameters, the views it needs and its cache key."""

    strategy: Strategy
    views: dict[str, Any]
    ensemble: list[Any]
    key: str


def _plan(
    store: ProjectStore, detector: Detector, q: QuerySettings, tiles: TileSettings | None = None
) -> _Plan:
    from napari_al.core.scoring.strategy import Strategy

    strat = Strategy(q.strategy, aggregation=q.aggregation)
    check_detector_views(strat, detector)
    needs = set(strat.needs)
    if q.unit in ("box", "region"):
        needs.add("candidates")
    fitted = False
    if "missed" in strat.names:
        regressor = fit_missed_regressor(store, detector, tiles=tiles)
        if regressor is not None:
            strat = Strategy(
                q.strategy, params={"missed": {"regressor": regressor}}, aggregation=q.aggregation
            )
            fitted = True
        needs.add("candidates")
    views = view_kwargs(frozenset(needs))
    ensemble = ensemble_members(store, detector) if "ensemble_probs" in needs else []
    desc = {
        "spec": strat.spec,
        "views": views,
        "unit": q.unit,
        "seed": q.seed,
        "fitted": fitted,
        "ens": len(ensemble),
    }
    key = "strategy:" + json.dumps(desc, sort_keys=True, default=str)
    return _Plan(strat, views, ensemble, key)


@dataclass
class _Scored:
    """Per pool image: raw scores, embedding, and (box/region units) views and missed boxes;
    a large image scored window by window has no raw scores but its windows' in ``tiled``
    (:class:`~napari_al.core.workflow.tiled_ranking.TiledScore`) and the windows' mean
    embedding; ``computed``: how many images and windows this pass scored (the others came
    from the cache)."""

    rows: list[ImageRow]
    raws: list[ImageRaw | None]
    embeddings: list[np.ndarray | None]
    extra: dict[int, tuple[ScoringViews, Any]] = field(default_factory=dict)
    computed: int = 0
    tiled: dict[int, TiledScore] = field(default_factory=dict)

    def kept(self) -> list[int]:
        return [i for i, r in enumerate(self.raws) if r is not None or i in self.tiled]


#: One scored image: raw scores, float32 embedding, and (box/region units) views and missed.
BatchScore = tuple["ImageRaw", np.ndarray, "tuple[ScoringViews, Any] | None"]


def score_batch(
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    pixels: Sequence[np.ndarray],
    rng: np.random.Generator,
) -> list[BatchScore]:
    """One scoring batch (uint8 ``(H, W, 3)`` images; ``detector.scoring_views`` seeds its
    noise from ``q.seed`` per call, so a pass must cut the same batches to give the same
    scores): per image its raw scores, embedding and, for units other than ``image``, its
    views with the possibly missed objects. The one computation of a scoring pass, in this
    process or on a Dask worker (:mod:`napari_al.core.workflow.distributed`)."""
    from napari_al.core.scoring.missed import possibly_missed

    if not pixels:
        return []
    views = detector.scoring_views(pixels, seed=q.seed, ensemble=plan.ensemble, **plan.views)
    return [
        (
            plan.strategy.raw_scores(v, rng),
            np.asarray(v.base.embedding, np.float32),
            None if q.unit == "image" else (v, possibly_missed(v)),
        )
        for v in views
    ]


def _score_pool(
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    rows: list[ImageRow],
    *,
    use_cache: bool,
    progress: Progress | None,
    should_stop: ShouldStop | None,
    on_skip: OnSkip | None,
    distributed: Distributed = None,
    tiles: TileSettings | None = None,
) -> _Scored:
    version = detector.model_version
    scored = _Scored(rows, [None] * len(rows), [None] * len(rows))
    large = [] if tiles is None else [i for i, r in enumerate(rows) if is_tiled(r, tiles)]
    small = [i for i in range(len(rows)) if i not in set(large)]
    cacheable = use_cache and version > 0 and "random" not in plan.strategy.names
    if cacheable and q.unit == "image":
        for i in small:
            data = store.get_scores(rows[i].sha256, version, plan.key)
            unpacked = None if data is None else _unpack(data)
            if unpacked is not None:
                scored.raws[i], scored.embeddings[i] = unpacked
    todo = [i for i in small if scored.raws[i] is None]
    from napari_al.core.workflow.tiled_ranking import UnitCounter

    counter = UnitCounter(
        progress, len(small), [] if tiles is None else large, detector, rows, tiles
    )
    counter.add(len(small) - len(todo), report=False)
    if todo and distributed is not None:
        from napari_al.core.workflow.distributed import score_distributed

        base = len(rows) - len(todo)  # what the Dask pass counts as done before it starts
        score_distributed(
            distributed,
            store,
            detector,
            q,
            plan,
            scored,
            todo,
            cacheable=cacheable and q.unit == "image",
            progress=None if progress is None else lambda d, _n: counter.set_small(d - base),
            should_stop=should_stop,
            on_skip=on_skip,
        )
        todo = []
    rng = np.random.default_rng(q.seed)
    for start in range(0, len(todo), BATCH_SIZE):
        if should_stop is not None and should_stop():
            return scored
        chunk = todo[start : start + BATCH_SIZE]
        readable, pixels = read_rows(store, [rows[i] for i in chunk], on_skip)
        ok_ids = {r.id for r in readable}
        chunk = [i for i in chunk if rows[i].id in ok_ids]
        for i, (raw, emb, extra) in zip(
            chunk, score_batch(detector, q, plan, pixels, rng), strict=True
        ):
            scored.raws[i], scored.embeddings[i] = raw, emb
            scored.computed += 1
            if extra is not None:
                scored.extra[i] = extra
            if cacheable and q.unit == "image":
                store.put_scores(rows[i].sha256, version, plan.key, pack_scores(raw, emb))
        counter.add(len(todo[start : start + BATCH_SIZE]))
    if large:
        from napari_al.core.workflow.tiled_ranking import score_large_images

        score_large_images(
            store, detector, q, plan, scored, large, tiles, cacheable, counter, should_stop, on_skip
        )
    return scored


def _select(
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    scored: _Scored,
    *,
    use_cache: bool,
    on_skip: OnSkip | None,
    tiles: TileSettings | None = None,
) -> list[QueryItem]:
    from napari_al.core.selection import rank_regions, select_boxes, select_images
    from napari_al.core.workflow.crops import in_reviewed_area, outside_reviewed_area
    from napari_al.core.workflow.tiled_ranking import (
        box_pool,
        image_scores,
        missed_probabilities,
        pool_units,
        window_regions,
    )

    keep = scored.kept()
    rows = scored.rows
    raws, owners = pool_units(scored, keep)  # a large image's windows count as images
    pool = plan.strategy.combine_raw(raws)
    if q.unit == "image":
        emb = np.stack([scored.embeddings[i] for i in keep]) if keep else None  # type: ignore[misc]
        labelled = (
            labelled_embeddings(store, detector, use_cache=use_cache, on_skip=on_skip, tiles=tiles)
            if q.diversity is not None and emb is not None
            else None
        )
        scores, breakdown = image_scores(pool, owners, keep)
        return select_images(
            scores,
            q.budget,
            embeddings=emb,
            diversity=q.diversity,
            candidate_factor=q.candidate_factor,
            labeled_embeddings=labelled,
            rng=q.seed,
            ids=[rows[i].id for i in keep],
            breakdown=breakdown,
        )
    if q.unit == "box":
        per = box_pool(pool, owners, scored)
        boxes = {rows[i].id: per[i][0] for i in keep}
        return select_boxes(
            {rows[i].id: per[i][1] for i in keep},
            q.budget,
            boxes=boxes,
            breakdown={rows[i].id: per[i][2] for i in keep},
            skip={
                k: judged_mask(b, judged_boxes(store, k)) | in_reviewed_area(store, k, b)
                for k, b in boxes.items()
            },
        )
    items: list[QueryItem] = []
    for u, (i, k) in enumerate(owners):
        if k >= 0:  # a window of a large image: one region, the window itself
            items.extend(window_regions(scored.tiled[i], k, pool.box_scores[u], rows[i].id))
            continue
        v, missed = scored.extra[i]
        missed_boxes = np.asarray(getattr(missed, "boxes", missed), np.float64).reshape(-1, 4)
        items.extend(
            rank_regions(
                (rows[i].height, rows[i].width),
                v.base.boxes,
                pool.box_scores[u],
                missed_boxes,
                missed_scores=missed_probabilities(missed),
                block=q.region_block,
                image=rows[i].id,
            )
        )
    items = outside_reviewed_area(store, items)  # never a region already marked complete
    items.sort(key=lambda item: -item.score)
    return items[: q.budget]


@holds_project_lock("ranking")
def rank_pool(
    store: ProjectStore,
    detector: Detector,
    settings: QuerySettings | None = None,
    *,
    image_ids: Sequence[int] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_skip: OnSkip | None = None,
    use_cache: bool = True,
    save: bool = True,
    distributed: Distributed = None,
    tiles: TileSettings | None = None,
) -> list[QueryItem]:
    """Rank ``image_ids`` (default: the pool's incomplete images) and return the queries, best
    first. With ``save`` (and a run that was not stopped) they are stored as the project's
    latest query set (``store.latest_queries()``), with the settings and model version.

    ``distributed`` (a :class:`~napari_al.core.workflow.settings.DistributedSettings` that is
    active, or a :class:`~napari_al.core.workflow.distributed.DaskCluster`) scores the images
    not cached as a Dask task graph (:mod:`napari_al.core.workflow.distributed`), with the
    same scores; None or an inactive setting: in this process. The question unit is always
    planned in this process.

    An image with a side over ``tiles.tile_above`` (default :class:`TileSettings`) is scored
    window by window at the detector's native input size, read one window at a time, always
    in this process (:mod:`napari_al.core.workflow.tiled_ranking`: an image ranks by its best
    window, a region query of it is a window, its box queries come from the windows);
    ``progress`` then counts its windows, not the image.

    An unreadable image is reported to ``on_skip`` and left out. Raises ValueError for an
    unknown unit, the strategy parser's error for an unknown scorer name, SettingsError for
    box queries by image scorers alone (``missed``: every box would score 0), and
    :class:`~napari_al.core.store.ProjectBusyError` when another run holds the project lock.
    """
    q = settings or QuerySettings()
    if q.unit not in UNITS:
        raise ValueError(f"unknown unit {q.unit!r}; use one of {UNITS}")
    check_query(q)
    if q.unit == "question":  # the dialog planner's queue, with its default settings
        from napari_al.core.workflow.dialog import plan_questions, question_item

        questions = plan_questions(
            store,
            detector,
            query=q,
            image_ids=image_ids,
            progress=progress,
            should_stop=should_stop,
            on_skip=on_skip,
            save=save,
        )
        return [question_item(x) for x in questions[: q.budget]]
    tiles = tiles or TileSettings()
    plan, scored = score_images(
        store,
        detector,
        q,
        image_ids,
        use_cache=use_cache,
        progress=progress,
        should_stop=should_stop,
        on_skip=on_skip,
        distributed=distributed,
        tiles=tiles,
    )
    items = _select(
        store,
        detector,
        q,
        plan,
        scored,
        use_cache=use_cache,
        on_skip=on_skip,
        tiles=tiles,
    )
    stopped = should_stop is not None and should_stop()
    if save and not stopped:
        store.save_queries(items, model_version=detector.model_version or None, settings=asdict(q))
    return items


def score_images(
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    image_ids: Sequence[int] | None = None,
    *,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
    distributed: Distributed = None,
    tiles: TileSettings | None = None,
    tile_large: bool = True,
) -> tuple[Any, Any]:
    """The strategy plan of ``q`` and one scoring pass of ``detector`` over ``image_ids``
    (default: the pool's incomplete images): what :func:`rank_pool` ranks and the dialog
    planner takes its gains from. ``distributed`` and ``tiles``: as in :func:`rank_pool`;
    ``tile_large=False`` scores every image whole (its shrunken view), as the dialog planner
    still does."""
    from napari_al.core.workflow.settings import DistributedSettings

    if isinstance(distributed, DistributedSettings) and not distributed.active:
        distributed = None
    tiles = (tiles or TileSettings()) if tile_large else None
    plan = _plan(store, detector, q, tiles)
    ids = pool_image_ids(store) if image_ids is None else list(image_ids)
    rows = [store.image(i) for i in ids]
    scored = _score_pool(
        store,
        detector,
        q,
        plan,
        rows,
        use_cache=use_cache,
        progress=progress,
        should_stop=should_stop,
        on_skip=on_skip,
        distributed=distributed,
        tiles=tiles,
    )
    return plan, scored


def stored_queries(store: ProjectStore) -> list[QueryItem]:
    """The project's latest query set of images, boxes or regions (saved by
    :func:`rank_pool`, from any front end) as query items, best first; empty when none was
    saved. A question set (unit ``question``) is the dialog planner's:
    :func:`~napari_al.core.workflow.dialog.stored_questions` reads it."""
    latest = store.latest_queries(exclude_unit="question")
    if latest is None:
        return []
    return [
        QueryItem(
            image=q.image_id,
            score=q.score,
            unit=q.unit,
            box=None if q.box is None else tuple(float(v) for v in q.box),  # type: ignore[arg-type]
            index=q.box_index,
            breakdown=dict(q.breakdown),
        )
        for q in latest.items
    ]


def labelled_embeddings(
    store: ProjectStore,
    detector: Detector,
    *,
    use_cache: bool = True,
    on_skip: OnSkip | None = None,
    batch_size: int = BATCH_SIZE,
    tiles: TileSettings | None = None,
) -> np.ndarray | None:
    """Image embeddings ``(n, E)`` float32 of the images people have labelled (complete or
    partly reviewed, outside val/test), or None when there are none. Images tiled under
    ``tiles`` are left out: they would be read whole (11 GB for a 16,384 px image), and the
    shrunken view's embedding is not comparable with a large image's pool embedding (the mean
    over its windows), so a partly reviewed large image counts as not covered.

    They are the centres a core-set starts from (Sener & Savarese 2018: k-center greedy covers
    the pool given the labelled set), so diversity picks what the labels do not cover yet.
    Cached per (image hash, model version) like scores.
    """
    rows = [
        r
        for r in store.images()
        if r.review_state != "unseen" and r.split not in HELD_OUT_SPLITS and _read_whole(r, tiles)
    ]
    version = detector.model_version
    cacheable = use_cache and version > 0
    out: list[np.ndarray] = []
    todo = []
    for r in rows:
        data = store.get_scores(r.sha256, version, EMBEDDING_KEY) if cacheable else None
        if data is None:
            todo.append(r)
        else:
            out.append(np.frombuffer(data, np.float32))
    for start in range(0, len(todo), batch_size):
        ok, pixels = read_rows(store, todo[start : start + batch_size], on_skip)
        if not pixels:
            continue
        for r, p in zip(ok, detector.predict(pixels), strict=True):
            e = np.asarray(p.embedding, np.float32)
            out.append(e)
            if cacheable:
                store.put_scores(r.sha256, version, EMBEDDING_KEY, e.tobytes())
    return np.stack(out) if out else None


def pack_scores(raw: ImageRaw, embedding: np.ndarray) -> bytes:
    """One image's score-cache payload (npz, no pickle): raw scores and embedding."""
    buf = io.BytesIO()
    np.savez(
        buf,
        raw=np.frombuffer(raw.to_bytes(), np.uint8),
        embedding=np.asarray(embedding, np.float32),
    )
    return buf.getvalue()


#: What reading a damaged score-cache entry raises (npz: a zip's CRC, a missing member).
DAMAGED_ENTRY = (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError)


def _unpack(data: bytes) -> tuple[ImageRaw, np.ndarray] | None:
    """A cached image's raw scores and embedding; None for a damaged entry (scored again)."""
    from napari_al.core.scoring.strategy import ImageRaw

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return ImageRaw.from_bytes(z["raw"].tobytes()), z["embedding"]
    except DAMAGED_ENTRY:
        return None
