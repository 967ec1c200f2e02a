"""Predictions in an area marked complete are not "to review" (found by a newcomer).

Prediction stores no box centred in a region marked complete (``in_reviewed_area``), and the
box and question queues ask about none there; but a prediction stored *before* the region (or
the whole image) was marked complete stayed ``predicted``, and ``napari-al info``, the widget's
count and the viewer's "next unreviewed box" still offered it as to review until the next
predict. They now all read ``store.predictions_to_review``, whose rule is the crop targets'
one (the box's centre in the area, edges included: ``core.boxes.centred_in``). Every image
is generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from napari_al.cli import main
from napari_al.core.annotator import Annotator
from napari_al.core.store import ProjectStore
from napari_al.core.workflow.crops import in_reviewed_area

IN_REGION = (5.0, 5.0, 25.0, 25.0)  # centre (15, 15): inside the region [0, 0, 40, 40]
ON_EDGE = (30.0, 30.0, 50.0, 50.0)  # centre (40, 40): on the region's corner, inside it
OUTSIDE = (50.0, 30.0, 70.0, 50.0)  # centre (60, 40)


def _project(tmp_path: Path) -> Path:
    """Three 80 x 60 images in the pool, class ``cell``; a.png holds three predictions, b.png
    one; nothing marked yet."""
    folder = tmp_path / "proj"
    folder.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        Image.new("RGB", (80, 60), (10 + 60 * i, 20, 30)).save(folder / name)
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    with ProjectStore.open(folder) as store:
        a, b, _ = store.images()
        cell = store.class_id("cell")
        preds = [(IN_REGION, cell, 0.9), (ON_EDGE, cell, 0.8), (OUTSIDE, cell, 0.7)]
        store.replace_predictions(a.id, preds, model_version=None)
        store.replace_predictions(b.id, [(IN_REGION, cell, 0.9)], model_version=None)
    return folder


def _info(capsys, folder: Path, *extra: str) -> str:
    capsys.readouterr()
    assert main(["info", str(folder), *extra]) == 0
    return capsys.readouterr().out


def test_info_does_not_count_predictions_in_a_region_or_image_marked_complete(
    tmp_path: Path, capsys
) -> None:
    folder = _project(tmp_path)
    assert "4 predictions still to review, 0 rejected" in _info(capsys, folder)
    region = ["mark-region-complete", str(folder), "a.png", "--xyxy", "0", "0", "40", "40"]
    assert main(region) == 0
    out = _info(capsys, folder)
    assert "2 predictions still to review (2 more in areas marked complete, not to review)" in out
    info = json.loads(_info(capsys, folder, "--images", "--json"))
    assert (info["predicted_boxes"], info["predictions_to_review"]) == (4, 2)
    per_image = {im["path"]: im["predictions_to_review"] for im in info["image_list"]}
    assert per_image == {"a.png": 1, "b.png": 1, "c.png": 0}
    table = _info(capsys, folder, "--images").splitlines()
    head = next(line for line in table if line.startswith("id "))
    assert "to review" in head
    with ProjectStore.open(folder) as store:
        Annotator(store).complete_image(store.images()[1].id)  # b.png: the whole image
    out = _info(capsys, folder)
    assert "1 prediction still to review (3 more in areas marked complete" in out


def test_the_store_the_annotator_and_prediction_share_one_rule(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    with ProjectStore.open(folder) as store:
        a, b, _ = store.images()
        annotator = Annotator(store)
        assert len(annotator.unreviewed_boxes(a.id)) == 3
        annotator.complete_region(a.id, (0, 0, 40, 40))
        left = store.predictions_to_review(a.id)
        assert [x.xyxy for x in left] == [OUTSIDE]
        assert [x.id for x in annotator.unreviewed_boxes(a.id)] == [left[0].id]
        assert annotator.next_unreviewed_box(a.id) == left[0].id
        # the same rule as prediction's (in_reviewed_area), on many random boxes
        rng = np.random.default_rng(0)
        xy = rng.uniform(0, 60, (200, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 20, (200, 2))], axis=1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 80)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 60)
        cell = store.class_id("cell")
        rows = [(tuple(map(float, x)), cell, 0.5) for x in boxes]
        ids = store.replace_predictions(a.id, rows, model_version=None)
        kept = {x.id for x in store.predictions_to_review(a.id)}
        stored = np.asarray([store.box(i).xyxy for i in ids])
        done = in_reviewed_area(store, a.id, stored)
        assert 0 < done.sum() < len(ids)
        assert [i not in kept for i in ids] == done.tolist()
        annotator.undo()  # the region is gone: every prediction is to review again
        assert len(store.predictions_to_review(a.id)) == len(ids)
        assert store.info()["predictions_to_review"] == len(ids) + 1  # and b.png's
        assert store.predictions_to_review(b.id)[0].xyxy == IN_REGION
