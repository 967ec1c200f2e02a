"""Run the detector on the project's images and store its boxes as ``predicted``.

Which images: those a person may still review (not ``complete``), pool first, then the other
splits, in id order; the image on screen can be moved to the front. Human boxes are never
touched (``store.replace_predictions`` replaces only an image's ``predicted`` boxes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from napari_al.core.store.lock import holds_project_lock
from napari_al.core.workflow.examples import OnSkip, read_rows

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

#: Called with (images done, images in total).
Progress = Callable[[int, int], None]
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
) -> list[int]:
    """Predict ``image_ids`` (default: :func:`images_to_predict`) and store the boxes.

    Each image's predictions are written in one transaction, tagged with the detector's model
    version. Returns the ids predicted, in order: fewer than asked when ``should_stop`` fired,
    or when an image could not be read (reported to ``on_skip`` and skipped). Runs holding
    the project lock (:class:`~napari_al.core.store.ProjectBusyError` when another run has it).
    """
    ids = images_to_predict(store) if image_ids is None else list(image_ids)
    rows = [store.image(i) for i in ids]
    classes = store.classes()
    version = detector.model_version or None
    done: list[int] = []
    for start in range(0, len(rows), batch_size):
        if should_stop is not None and should_stop():
            break
        batch, pixels = read_rows(store, rows[start : start + batch_size], on_skip)
        preds = detector.predict(pixels) if pixels else []
        for row, p in zip(batch, preds, strict=True):
            store.replace_predictions(
                row.id,
                [
                    (
                        tuple(map(float, p.boxes[i])),
                        classes[int(p.labels[i])].id,
                        float(p.scores[i]),
                    )
                    for i in range(len(p))
                ],
                version,
            )
            done.append(row.id)
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    return done
