"""Ranking a large image window by window (issue 14; docs/large-images.md).

An image with a side over ``TileSettings.tile_above`` is not scored on its shrunken whole view
(cells shrink to a pixel or two there): it is cut into the windows tiled prediction uses
(:func:`~napari_al.core.engine.tiling.tile_windows` at
:func:`~napari_al.core.engine.tiling.native_tile`, overlapping by ``TileSettings.overlap``),
each window is read alone (:func:`~napari_al.core.lazy_images.open_rgb`: a large tiled TIFF
decodes only the tiles under it; the image is never read whole) and padded with black to the
tile's size, and the windows are scored as images of the detector's native size, in batches
of :data:`~napari_al.core.workflow.ranking.BATCH_SIZE`, by the same
:func:`~napari_al.core.workflow.ranking.score_batch` as whole images: every scorer (entropy,
consistency, MC dropout, ensembles, missed objects, ...) works unchanged.

What a window's score becomes, per unit (:func:`image_scores`, :func:`box_pool`,
:func:`window_regions`):

- ``image``: the windows join the pool-wide combination as images, and a large image's score
  is the **maximum** of its windows' scores (its breakdown is that window's): an image ranks
  by its most informative part. A sum or mean would rank a large image by its size or drown
  one informative window in thousands of empty ones.
- ``region``: each window is one region query, ``box`` = the window's ``(x0, y0, x1, y1)``
  in image pixels (a region query of a large image is a tile), scored as
  :func:`~napari_al.core.selection.rank_regions` scores one block: the summed scores of the
  boxes centred in it plus its expected number of possibly missed objects (the candidates'
  probabilities summed, as the ``missed`` scorer's weighted density).
- ``box``: the windows' boxes in image pixels; of the copies of one object found by
  overlapping windows only the one from the window owning its centre is kept
  (:func:`~napari_al.core.engine.tiling.owns_centre`).

The score cache keeps one entry per window, keyed by the pass's strategy key plus the tile
size and the window's place (:func:`window_key`), for every unit (a window's entry holds its
boxes and possibly missed objects, all that selection needs), per (image hash, model version)
like a whole image's; a second rank with nothing changed scores no window.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.images import ImageReadError
from napari_al.core.selection import QueryItem
from napari_al.core.workflow.examples import OnSkip, _warn_skip, skip_message

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.engine.tiling import Window
    from napari_al.core.scoring.strategy import ImageRaw, PoolScores
    from napari_al.core.store import ImageRow, ProjectStore
    from napari_al.core.workflow.ranking import _Plan, _Scored
    from napari_al.core.workflow.settings import QuerySettings, TileSettings


@dataclass
class TiledScore:
    """One large image scored window by window. Per window ``windows[k]`` (image pixels):
    ``raws[k]`` its raw scores, ``embeddings[k]`` its float32 embedding, ``boxes[k]`` the
    ``(N_k, 4)`` float64 xyxy boxes it found (aligned with ``raws[k]``'s boxes) and
    ``missed[k]`` its ``(M_k, 4)`` possibly missed objects, both in image pixels clipped to
    the window (empty for the ``image`` unit), with ``missed_scores[k]`` their ``(M_k,)``
    probabilities; ``computed``: windows scored by this pass."""

    windows: list[Window]
    raws: list[ImageRaw] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    missed: list[np.ndarray] = field(default_factory=list)
    missed_scores: list[np.ndarray] = field(default_factory=list)
    computed: int = 0

    def embedding(self) -> np.ndarray:
        """The image's embedding: the windows' weighted by their areas, as tiled prediction
        forms it (float32 ``(E,)``)."""
        w = np.asarray([win.height * win.width for win in self.windows], np.float64)
        e = np.stack(self.embeddings).astype(np.float64).T @ w / w.sum()
        return e.astype(np.float32)


def image_windows(
    detector: Detector, row: ImageRow, tiles: TileSettings
) -> tuple[tuple[int, int], list[Window]]:
    """The tile ``(rows, columns)`` and windows a large image is scored in (those of tiled
    prediction at window scale 1: origins at multiples of the model's stride,
    :func:`~napari_al.core.engine.tiling.stride_alignment`). Raises ValueError when
    ``tiles.overlap`` is not smaller than the tile."""
    from napari_al.core.engine.tiling import native_tile, stride_alignment, tile_windows

    h, w = int(row.height), int(row.width)
    tile = native_tile(detector.model, h, w)
    return tile, tile_windows(h, w, tile, tiles.overlap, stride_alignment(detector.model))


def window_key(plan_key: str, tile: tuple[int, int], window: Window) -> str:
    """The score-cache key of one window: the strategy key, the tile size and the window's
    ``x0,y0,x1,y1`` (image pixels): distinct for every window of an image and from a whole
    image's key (which is ``plan_key`` itself)."""
    w = window
    return f"{plan_key}|window:{tile[0]}x{tile[1]}:{w.x0},{w.y0},{w.x1},{w.y1}"


def _pack(
    raw: ImageRaw, emb: np.ndarray, boxes: np.ndarray, missed: np.ndarray, missed_scores: Any
) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        raw=np.frombuffer(raw.to_bytes(), np.uint8),
        embedding=np.asarray(emb, np.float32),
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        missed=np.asarray(missed, np.float64).reshape(-1, 4),
        missed_scores=np.asarray(missed_scores, np.float64).reshape(-1),
    )
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[Any, ...] | None:
    """A cached window's ``(raw, embedding, boxes, missed, missed_scores)``; None for an
    entry written before the missed objects' probabilities were kept, or damaged (scored
    again)."""
    from napari_al.core.scoring.strategy import ImageRaw
    from napari_al.core.workflow.ranking import DAMAGED_ENTRY

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "missed_scores" not in z.files:
                return None
            raw = ImageRaw.from_bytes(z["raw"].tobytes())
            return raw, z["embedding"], z["boxes"], z["missed"], z["missed_scores"]
    except DAMAGED_ENTRY:
        return None


def missed_probabilities(missed: Any) -> np.ndarray:
    """The ``(M,)`` float64 probabilities, clipped to [0, 1], of possibly missed objects (a
    :class:`~napari_al.core.engine.Predictions`; for bare ``(M, 4)`` boxes, ones): what a
    region adds to its score for them, their expected number (the ``missed`` scorer's
    weighted :func:`~napari_al.core.scoring.missed.candidate_density`)."""
    from napari_al.core.scoring.base import top_probability

    if getattr(missed, "scores", None) is None:
        return np.ones(np.asarray(missed, np.float64).reshape(-1, 4).shape[0])
    return np.clip(top_probability(missed), 0.0, 1.0)


def _in_image(b: Any, window: Window) -> np.ndarray:
    """Window-pixel boxes (or a Predictions' boxes) in image pixels, clipped to the window's
    part of the image (its padding is black)."""
    b = np.asarray(getattr(b, "boxes", b), np.float64).reshape(-1, 4)
    size = np.array([window.width, window.height] * 2, np.float64)
    return np.minimum(b, size) + np.array([window.x0, window.y0] * 2, np.float64)


def score_tiled(
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    row: ImageRow,
    tiles: TileSettings,
    *,
    cacheable: bool,
    advance: Callable[[int], None],
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
) -> TiledScore | None:
    """Score one large image window by window (module docstring). Cached windows are taken
    from the score cache; the others are read one batch at a time and scored with
    :func:`~napari_al.core.workflow.ranking.score_batch` (random draws from a generator seeded
    by ``(q.seed, image id)``), each batch's entries cached in one transaction.
    ``advance(n)`` after each batch of ``n`` windows (and once for the cached ones);
    ``should_stop`` is checked before each batch: None when it fired. An unreadable image is
    reported to ``on_skip`` (default: a logged warning): None."""
    from napari_al.core.lazy_images import open_rgb, padded_window
    from napari_al.core.workflow.ranking import BATCH_SIZE, score_batch

    tile, windows = image_windows(detector, row, tiles)
    version = detector.model_version
    keys = [window_key(plan.key, tile, w) for w in windows]
    parts: list[tuple[Any, ...] | None] = [None] * len(windows)
    if cacheable:
        for k, key in enumerate(keys):
            data = store.get_scores(row.sha256, version, key)
            if data is not None:
                parts[k] = _unpack(data)
    todo = [k for k, p in enumerate(parts) if p is None]
    if len(todo) < len(windows):
        advance(len(windows) - len(todo))
    path = store.abs_path(row)
    rng = np.random.default_rng([int(q.seed), int(row.id)])
    empty = np.zeros((0, 4), np.float64)
    try:
        with open_rgb(path) if todo else nullcontext() as view:
            for start in range(0, len(todo), BATCH_SIZE):
                if should_stop is not None and should_stop():
                    return None
                chunk = todo[start : start + BATCH_SIZE]
                pixels = [
                    padded_window(view, w.x0, w.y0, w.x0 + tile[1], w.y0 + tile[0])
                    for w in (windows[k] for k in chunk)
                ]
                entries = []
                for k, (raw, emb, extra) in zip(
                    chunk, score_batch(detector, q, plan, pixels, rng), strict=True
                ):
                    w = windows[k]
                    boxes = empty if extra is None else _in_image(extra[0].base, w)
                    missed = empty if extra is None else _in_image(extra[1], w)
                    p_missed = np.zeros(0) if extra is None else missed_probabilities(extra[1])
                    parts[k] = (raw, emb, boxes, missed, p_missed)
                    if cacheable:
                        entries.append((row.sha256, version, keys[k], _pack(*parts[k])))
                if entries:
                    store.put_scores_many(entries)
                advance(len(chunk))
    except (OSError, ImageReadError) as exc:
        (on_skip or _warn_skip)(int(row.id), skip_message(path, exc))
        return None
    out = TiledScore(windows, computed=len(todo))
    for raw, emb, boxes, missed, p_missed in parts:  # type: ignore[misc]
        out.raws.append(raw)
        out.embeddings.append(np.asarray(emb, np.float32))
        out.boxes.append(np.asarray(boxes, np.float64).reshape(-1, 4))
        out.missed.append(np.asarray(missed, np.float64).reshape(-1, 4))
        out.missed_scores.append(np.asarray(p_missed, np.float64).reshape(-1))
    return out


class UnitCounter:
    """Progress of a pass in units: a small image counts 1, a large image its windows (so a
    pool of small images reports ``(images done, images)`` as always)."""

    def __init__(
        self,
        progress: Callable[[int, int], None] | None,
        n_small: int,
        large: list[int],
        detector: Detector,
        rows: list[ImageRow],
        tiles: TileSettings | None,
    ) -> None:
        self.progress = progress
        n_windows = 0
        if tiles is not None:
            n_windows = sum(len(image_windows(detector, rows[i], tiles)[1]) for i in large)
        self.total = n_small + n_windows
        self.done = 0
        self._small_base = 0

    def add(self, n: int, report: bool = True) -> None:
        self.done += n
        if report and self.progress is not None:
            self.progress(self.done, self.total)

    def set_small(self, done_small: int) -> None:
        """The Dask pass's count of small images done (it reports absolute numbers)."""
        self.add(done_small - self._small_base)
        self._small_base = done_small


def score_large_images(
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    scored: _Scored,
    large: list[int],
    tiles: TileSettings,
    cacheable: bool,
    counter: UnitCounter,
    should_stop: Callable[[], bool] | None,
    on_skip: OnSkip | None,
) -> None:
    """Score the large images (positions ``large``) window by window, in this process
    (:func:`~napari_al.core.workflow.tiled_ranking.score_tiled`), also when small images were
    scored on Dask."""
    for i in large:
        if should_stop is not None and should_stop():
            return
        t = score_tiled(
            store,
            detector,
            q,
            plan,
            scored.rows[i],
            tiles,
            cacheable=cacheable,
            advance=counter.add,
            should_stop=should_stop,
            on_skip=on_skip,
        )
        if t is not None:
            scored.tiled[i] = t
            scored.embeddings[i] = t.embedding()
            scored.computed += t.computed


# ---- selection -----------------------------------------------------------------------------


def pool_units(scored: _Scored, keep: list[int]) -> tuple[list[ImageRaw], list[tuple[int, int]]]:
    """What the pool-wide combination runs over: each kept small image's raw scores, and each
    window's of a large image (a window counts as an image); ``owners[u]`` is ``(position in
    scored.rows, window index or -1)`` of unit ``u``. Without large images the units are the
    kept images in order, so the combination is the one of the whole-image path."""
    raws: list[ImageRaw] = []
    owners: list[tuple[int, int]] = []
    for i in keep:
        t = scored.tiled.get(i)
        if t is None:
            raws.append(scored.raws[i])  # type: ignore[arg-type]
            owners.append((i, -1))
        else:
            raws.extend(t.raws)
            owners.extend((i, k) for k in range(len(t.raws)))
    return raws, owners


def image_scores(
    pool: PoolScores, owners: list[tuple[int, int]], keep: list[int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per kept image ``(n,)`` its score and breakdown (name -> ``(n,)``): a small image's
    unit's, a large image's best window's (the maximum; module docstring)."""
    best: dict[int, int] = {}
    for u, (i, _) in enumerate(owners):
        if i not in best or pool.image_scores[u] > pool.image_scores[best[i]]:
            best[i] = u
    pick = np.asarray([best[i] for i in keep], np.int64)
    return pool.image_scores[pick], {n: v[pick] for n, v in pool.breakdown.items()}


def box_pool(
    pool: PoolScores, owners: list[tuple[int, int]], scored: _Scored
) -> dict[int, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Per kept image (by position): its boxes ``(N, 4)`` image pixels, their combined scores
    ``(N,)`` and breakdown (name -> ``(N,)``). A large image's are its windows' boxes whose
    centre the window owns, window after window (a box query's ``index`` counts in that
    order)."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]] = {}
    for u, (i, k) in enumerate(owners):
        if k < 0:
            boxes = np.asarray(scored.extra[i][0].base.boxes)
            parts[i] = [(boxes, pool.box_scores[u], pool.box_breakdown[u])]
            continue
        from napari_al.core.engine.tiling import owns_centre

        t = scored.tiled[i]
        m = owns_centre(t.boxes[k], t.windows[k])
        bd = {n: np.asarray(v)[m] for n, v in pool.box_breakdown[u].items()}
        parts.setdefault(i, []).append((t.boxes[k][m], pool.box_scores[u][m], bd))
    out = {}
    for i, p in parts.items():
        if len(p) == 1:
            out[i] = p[0]
            continue
        names = p[0][2].keys()
        out[i] = (
            np.concatenate([b for b, _, _ in p]).reshape(-1, 4),
            np.concatenate([s for _, s, _ in p]),
            {n: np.concatenate([d[n] for _, _, d in p]) for n in names},
        )
    return out


def window_regions(t: TiledScore, k: int, box_scores: np.ndarray, image_id: int) -> list[QueryItem]:
    """Window ``k`` of a large image as a region query (none when it scores 0): scored as one
    block of :func:`~napari_al.core.selection.rank_regions`, ``box`` the window's xyxy in
    image pixels."""
    from napari_al.core.selection import rank_regions

    w = t.windows[k]
    shift = np.array([w.x0, w.y0] * 2, np.float64)
    items = rank_regions(
        (w.height, w.width),
        t.boxes[k] - shift,
        box_scores,
        t.missed[k] - shift,
        missed_scores=t.missed_scores[k],
        block=(w.height, w.width),
        image=image_id,
    )
    box = (float(w.x0), float(w.y0), float(w.x1), float(w.y1))
    return [QueryItem(it.image, it.score, "region", box, it.index, it.breakdown) for it in items]
