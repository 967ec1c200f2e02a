"""Run the detector on the project's images and store its boxes as ``predicted``.

Which images: those a person may still review (not ``complete``), pool first, then the other
splits, in id order; the image on screen can be moved to the front. Human boxes are never
touched (``store.replace_predictions`` replaces only an image's ``predicted`` boxes), and no
box centred in a region a person marked complete is stored (a partly reviewed image).

How: an image with a side longer than ``TileSettings.tile_above`` (its size in the store) is
predicted tile by tile at the model's native scale (``Detector.predict_tiled``,
:mod:`napari_al.core.engine.tiling`), its pixels read window by window when it is a large
tiled TIFF (:func:`napari_al.core.lazy_images.open_rgb`); every other image is read whole and
predicted in batches as before, bit for bit (docs/large-images.md). With ``distributed`` the
same batches run as a Dask task graph, on local worker processes or a cluster
(:mod:`napari_al.core.workflow.distributed`, docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_al.core.images import ImageReadError
from napari_al.core.store.lock import holds_project_lock
from napari_al.core.workflow.examples import OnSkip, _warn_skip, read_rows, skip_message
from napari_al.core.workflow.settings import TileSettings

if TYPE_CHECKING:
    from napari_al.core.data import Predictions
    from napari_al.core.engine import Detector
    from napari_al.core.store import ImageRow, ProjectStore
    from napari_al.core.workflow.distributed import DaskCluster
    from napari_al.core.workflow.settings import DistributedSettings

#: Called with (images done, images in total).
Progress = Callable[[int, int], None]
#: Called with (image id, tiles done, tiles in total) while a large image is predicted.
TileProgress = Callable[[int, int, int], None]
ShouldStop = Callable[[], bool]


def pool_image_ids(store: ProjectStore) -> list[int]:
    """The images active learning may query: the pool, unless already complete."""
    return [r.id for r in store.images(split="pool") if r.review_state != "complete"]


def images_to_predict(
    store: ProjectStore, split: str | None = None, first: int | None = None
) -> list[int]:
    """Images a person may still review (not complete): pool first, then the other splits
    (or only ``split``), by id; ``first`` (e.g. the image on screen) leads when included."""
    rows = [r for r in store.images(split=split) if r.review_state != "complete"]
    rows.sort(key=lambda r: (r.split != "pool", r.id))
    ids = [r.id for r in rows]
    if first is not None and first in ids:
        ids.remove(first)
        ids.insert(0, first)
    return ids


def is_tiled(row: ImageRow, tiles: TileSettings) -> bool:
    """Whether an image is predicted tile by tile: a side over ``tiles.tile_above`` px."""
    return max(int(row.width), int(row.height)) > tiles.tile_above


def predict_large(
    store: ProjectStore,
    detector: Detector,
    row: ImageRow,
    tiles: TileSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: ShouldStop | None = None,
) -> Predictions | None:
    """One image's predictions, tile by tile (``Detector.predict_tiled``), read window by window
    when it is a large tiled TIFF, without the boxes' RoI features (:func:`predict_large_file`).
    None when ``should_stop`` fired. Raises OSError or
    :class:`~napari_al.core.images.ImageReadError` when the image cannot be read, ValueError
    when ``tiles.overlap`` is not smaller than the model's tile."""
    return predict_large_file(
        detector, store.abs_path(row), tiles, progress=progress, should_stop=should_stop
    )


def predict_large_file(
    detector: Detector,
    path: str | Path,
    tiles: TileSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: ShouldStop | None = None,
) -> Predictions | None:
    """:func:`predict_large` of the image file at ``path`` (what a Dask worker runs, with no
    store: :mod:`napari_al.core.workflow.distributed`). The boxes' RoI features are left out
    (``features`` ``(N, 0)``): the store keeps boxes, classes and scores only, and a large
    image's 4 kB a box would otherwise be held, merged and sent back from a Dask worker."""
    from napari_al.core.lazy_images import open_rgb

    with open_rgb(path) as pixels:
        return detector.predict_tiled(
            pixels,
            overlap=tiles.overlap,
            window_scale=tiles.window_scale,
            features=False,
            progress=progress,
            should_stop=should_stop,
        )


def prediction_batches(
    rows: Sequence[ImageRow], tiles: TileSettings, batch_size: int
) -> list[list[int]]:
    """How :func:`predict_images` cuts ``rows`` (their positions): a large image alone (tile
    by tile), the others in runs of up to ``batch_size`` consecutive ones. Every pass cuts the
    same batches, in this process or on Dask, so the predictions are the same."""
    batches: list[list[int]] = []
    start = 0
    while start < len(rows):
        end = start + 1
        if not is_tiled(rows[start], tiles):
            while end < min(len(rows), start + batch_size) and not is_tiled(rows[end], tiles):
                end += 1
        batches.append(list(range(start, end)))
        start = end
    return batches


def _store(
    store: ProjectStore, row: ImageRow, p: Predictions, class_ids: list[int], version: int | None
) -> None:
    """Replace the image's ``predicted`` boxes with ``p``'s, except those centred in a region
    a person marked complete (every object there is labelled: a prediction there would only
    cover the human boxes on screen, and trains as background; ranking asks nothing there)."""
    from napari_al.core.workflow.crops import in_reviewed_area

    done = in_reviewed_area(store, row.id, p.boxes)
    store.replace_predictions(
        row.id,
        [
            (tuple(map(float, p.boxes[i])), class_ids[int(p.labels[i])], float(p.scores[i]))
            for i in range(len(p))
            if not done[i]
        ],
        version,
    )


@holds_project_lock("predicting")
def predict_images(
    store: ProjectStore,
    detector: Detector,
    image_ids: Sequence[int] | None = None,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    batch_size: int = 2,
    on_skip: OnSkip | None = None,
    tiles: TileSettings | None = None,
    tile_progress: TileProgress | None = None,
    distributed: DistributedSettings | DaskCluster | None = None,
) -> list[int]:
    """Predict ``image_ids`` (default: :func:`images_to_predict`) and store the boxes.

    Images with a side over ``tiles.tile_above`` (default :class:`TileSettings`) are predicted
    one at a time, tile by tile (:func:`predict_large`), reporting ``tile_progress(image id,
    tiles done, tiles in total)``; the others in batches of ``batch_size``, as they always were.
    Each image's predictions are written in one transaction, tagged with the detector's model
    version. Returns the ids predicted, in order: fewer than asked when ``should_stop`` fired
    (checked between batches and between tiles), or when an image could not be read (reported
    to ``on_skip`` and skipped). ``progress(images done, total)`` after each batch. Runs
    holding the project lock (:class:`~napari_al.core.store.ProjectBusyError` when another
    run has it).

    ``distributed`` (active :class:`~napari_al.core.workflow.settings.DistributedSettings`, or a
    :class:`~napari_al.core.workflow.distributed.DaskCluster`): the same batches predicted as
    a Dask task graph, a chunk of batches per task (docs/scale.md), stored here as chunks
    complete; the ids come back in order, ``tile_progress`` is not called and
    ``should_stop`` is checked between chunks.
    """
    tiles = tiles or TileSettings()
    ids = images_to_predict(store) if image_ids is None else list(image_ids)
    rows = [store.image(i) for i in ids]
    class_ids = [c.id for c in store.classes()]
    version = detector.model_version or None
    batches = prediction_batches(rows, tiles, batch_size)
    if rows and distributed is not None and _active(distributed):
        from napari_al.core.workflow.distributed import predict_distributed

        def write(position: int, p: Predictions) -> None:
            if is_tiled(rows[position], tiles):
                _warn_if_capped(store.abs_path(rows[position]), rows[position], len(p))
            _store(store, rows[position], p, class_ids, version)

        return predict_distributed(
            distributed,
            store,
            detector,
            rows,
            batches,
            tiles,
            write,
            progress=progress,
            should_stop=should_stop,
            on_skip=on_skip,
        )
    done: list[int] = []
    for batch in batches:
        if should_stop is not None and should_stop():
            break
        if is_tiled(rows[batch[0]], tiles):
            row = rows[batch[0]]
            report = None if tile_progress is None else partial(tile_progress, row.id)
            try:
                pred = predict_large(
                    store, detector, row, tiles, progress=report, should_stop=should_stop
                )
            except (OSError, ImageReadError) as exc:
                (on_skip or _warn_skip)(int(row.id), skip_message(store.abs_path(row), exc))
                pred = None
            if pred is not None:
                _warn_if_capped(store.abs_path(row), row, len(pred))
            results = [] if pred is None else [(row, pred)]
        else:
            ok, pixels = read_rows(store, [rows[i] for i in batch], on_skip)
            results = list(zip(ok, detector.predict(pixels) if pixels else [], strict=True))
        for row, p in results:
            _store(store, row, p, class_ids, version)
            done.append(row.id)
        if progress is not None:
            progress(batch[-1] + 1, len(rows))
    return done


def _warn_if_capped(path: Any, row: ImageRow, n_boxes: int) -> None:
    """A Python warning (one ``warning:`` line in the CLI, a notification in napari) when a
    tiled image kept only the most boxes its size allows: the rest were dropped unseen."""
    import warnings

    from napari_al.core.engine.tiling import max_detections

    cap = max_detections(int(row.height), int(row.width))
    if n_boxes >= cap:
        warnings.warn(
            f"{path}: kept the {cap:,} highest-scoring boxes, the most a {row.width}x"
            f"{row.height} px image keeps; a model that finds boxes everywhere needs more "
            "training before it predicts large images",
            stacklevel=3,
        )


def _active(distributed: Any) -> bool:
    """Whether ``distributed`` asks for Dask (a cluster, or settings that are active)."""
    return bool(getattr(distributed, "active", True))
