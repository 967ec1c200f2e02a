"""Projects for tests, benchmarks and screenshots of the annotation loop (no model needed).

:func:`make_loop_project` builds a project from the BCCD sample where every other image is an
unlabelled pool image carrying *simulated* predictions (the ground truth jittered, with scores,
plus a few false positives), so the loop can be driven without training a detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_al.core.store import ProjectStore


def make_loop_project(
    project_dir: str | Path,
    sample: str | Path | None = None,
    pool_every: int = 2,
    seed: int = 0,
    false_positives: int = 2,
) -> Path:
    """Create a project in ``project_dir`` from a VOC folder (default: the BCCD sample).

    Images ``0, pool_every, 2 * pool_every, ...`` become unlabelled pool images with simulated
    predictions; the others keep their ground truth (``complete``, in their split).
    """
    from napari_al.core.formats import read_voc
    from napari_al.sample import sample_dir

    project_dir = Path(project_dir)
    dataset = read_voc(Path(sample) if sample is not None else sample_dir())
    rng = np.random.default_rng(seed)
    simulated: dict[str, list[Any]] = {}
    for i, rec in enumerate(dataset.images):
        if i % pool_every == 0:
            simulated[str(rec.path)] = list(rec.boxes)
            rec.boxes, rec.annotated, rec.split = [], False, None
    with ProjectStore.create(project_dir) as store:
        store.import_dataset(dataset)
        class_ids = {c.name: c.id for c in store.classes()}
        for row in store.images():
            gt = simulated.get(str(store.abs_path(row)))
            if gt is None:
                continue
            preds = []
            for b in gt:
                w, h = b.x2 - b.x1, b.y2 - b.y1
                jitter = rng.normal(0, 0.05, 4) * [w, h, w, h]
                x1, y1, x2, y2 = np.array([b.x1, b.y1, b.x2, b.y2]) + jitter
                x1, y1 = max(0.0, x1), max(0.0, y1)
                x2, y2 = min(float(row.width), x2), min(float(row.height), y2)
                if x2 - x1 > 2 and y2 - y1 > 2:
                    preds.append(((x1, y1, x2, y2), class_ids[b.label], float(rng.uniform(0.3, 1))))
            for _ in range(false_positives):
                x1 = float(rng.uniform(0, row.width - 40))
                y1 = float(rng.uniform(0, row.height - 40))
                cid = int(rng.choice(list(class_ids.values())))
                preds.append(((x1, y1, x1 + 40, y1 + 40), cid, float(rng.uniform(0.05, 0.4))))
            store.replace_predictions(row.id, preds, model_version=None)
    return project_dir


def add_many_boxes(store: ProjectStore, image_id: int, n: int = 200, seed: int = 0) -> None:
    """Give an image ``n`` predicted boxes (for image-switch timings)."""
    row = store.image(image_id)
    rng = np.random.default_rng(seed)
    cid = store.classes()[0].id
    preds = []
    for _ in range(n):
        w, h = rng.uniform(10, 60, 2)
        x1 = float(rng.uniform(0, row.width - w))
        y1 = float(rng.uniform(0, row.height - h))
        preds.append(((x1, y1, x1 + w, y1 + h), cid, float(rng.uniform(0.05, 1))))
    store.replace_predictions(image_id, preds, model_version=None)
