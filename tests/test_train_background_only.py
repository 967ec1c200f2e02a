"""Training needs a box (found by a newcomer).

``napari-al train`` said "nothing to train on yet: no reviewed image has a box" when nothing
was reviewed, but trained (and saved a model version) when the reviewed images were all empty:
a detector trained on background alone learns to find nothing. Now that is refused alike, in
the CLI before a detector is built and in the workflow for every front end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import ProjectStore


def _project(root: Path, boxes_in_first: int) -> Path:
    """Two complete training images; the first holds ``boxes_in_first`` boxes, the other none."""
    recs = []
    for i in range(2):
        path = root / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (i * 80, 100, 50)).save(path)
        boxes = [BoxRecord(2, 2, 20, 20, "cell")] * (boxes_in_first if i == 0 else 0)
        recs.append(ImageRecord(path, 64, 48, boxes, "train", True))
    with ProjectStore.create(root) as store:
        store.import_dataset(Dataset(["cell"], recs))
        assert {r.review_state for r in store.images()} == {"complete"}
    return root


def test_cli_refuses_background_only_before_building_a_detector(tmp_path: Path, capsys) -> None:
    project = _project(tmp_path / "p", boxes_in_first=0)
    assert main(["train", str(project), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "nothing to train on yet: no reviewed image has a box" in err
    assert "detector:" not in err  # refused before one was built
    with ProjectStore.open(project) as store:
        assert not store.model_versions()


@pytest.mark.parametrize("boxes", [0, 1])
def test_workflow_trains_only_when_a_box_is_there(tmp_path: Path, boxes: int) -> None:
    project = _project(tmp_path / "p", boxes_in_first=boxes)
    with ProjectStore.open(project) as store:
        settings = workflow.ModelSettings(device="cpu", min_size=48, max_size=64)
        detector = workflow.load_model(store, settings)
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=1))
        if boxes:
            assert outcome.model_version is not None and outcome.result.steps == 1
            assert outcome.n_examples == 2  # the empty image trains as background beside it
        else:
            assert outcome.model_version is None
            assert outcome.result.stopped_reason == "no_data" and outcome.n_examples == 0
            assert not store.model_versions()
