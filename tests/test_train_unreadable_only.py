"""Training whose only labelled images are unreadable says so (found by a newcomer).

When the one reviewed image with a box was truncated or deleted after import, training left
it out (with a warning) and then said "nothing to train on yet: no reviewed image has a box
(accept, correct or draw boxes ...)": the wrong advice, since the box is there and the file is
what is missing. Every front end now names the skipped files and the fix: the CLI's ``train``,
a round (the widget's Retrain, the notebook's rounds) and the training outcome the notebook's
``Session.train`` returns. Every image is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import ProjectStore
from napari_al.core.workflow.training import unreadable_message

TINY = ["--min-size", "64", "--max-size", "80", "--device", "cpu"]
TINY_MODEL = {"device": "cpu", "min_size": 64, "max_size": 80}


def _project(root: Path, labelled: int = 1) -> Path:
    """``labelled`` complete train images with a box each and one complete empty image; the
    labelled images' files are then broken (the first junk, the next deleted)."""
    recs = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(labelled + 1):
        path = root / f"im{i}.png"
        Image.new("RGB", (64, 48), (i * 60, 100, 50)).save(path)
        boxes = [BoxRecord(4, 4, 30, 30, "cell")] if i < labelled else []
        recs.append(ImageRecord(path, 64, 48, boxes, "train", True))
    with ProjectStore.create(root) as store:
        store.import_dataset(Dataset(["cell"], recs))
    (root / "im0.png").write_bytes(b"junk")  # truncated to nothing an image reader knows
    for i in range(1, labelled):
        (root / f"im{i}.png").unlink()  # moved away
    return root


def test_cli_train_names_the_unreadable_labelled_image(tmp_path: Path, capsys) -> None:
    project = _project(tmp_path / "p")
    capsys.readouterr()
    assert main(["train", str(project), *TINY, "--steps", "1"]) == 1
    err = capsys.readouterr().err
    error = next(line for line in err.splitlines() if "error:" in line)
    assert "no reviewed image has a box" not in error  # the box is there; the file is not
    assert "skipped as unreadable" in error and str(project / "im0.png") in error
    assert "restore that file" in error and "nothing was saved" in error
    with ProjectStore.open(project) as store:
        assert not store.model_versions()


def test_a_round_names_the_unreadable_labelled_images(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", labelled=2)
    settings = workflow.RoundSettings(
        model=workflow.ModelSettings(**TINY_MODEL), train=workflow.TrainSettings(steps=1)
    )
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, settings.model)
        with pytest.raises(workflow.WorkflowError) as info:
            workflow.drive(workflow.run_round(store, detector, settings))
    text = str(info.value)
    assert "review some boxes first" not in text
    assert "2 files" in text and "were skipped as unreadable" in text
    assert str(project / "im0.png") in text and str(project / "im1.png") in text
    assert "restore those files" in text


def test_the_outcome_says_skipping_is_why_and_only_then(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=1))
    assert outcome.result.stopped_reason == "no_data" and outcome.model_version is None
    assert outcome.skipped_all and outcome.skipped_paths == [str(project / "im0.png")]
    assert outcome.result.message == unreadable_message(outcome.skipped_paths)
    # the image with the box readable again, the empty one broken: skipping is not why
    Image.new("RGB", (64, 48), (0, 100, 50)).save(project / "im0.png")
    (project / "im1.png").unlink()
    with ProjectStore.open(project) as store:
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=1))
    assert outcome.model_version == 1 and not outcome.skipped_all
    assert outcome.skipped_paths == [str(project / "im1.png")]


def test_the_message_names_at_most_five_files() -> None:
    text = unreadable_message([f"/d/im{i}.png" for i in range(7)])
    assert "7 files: /d/im0.png, " in text and "/d/im4.png and 2 more" in text
    assert "/d/im5.png" not in text
