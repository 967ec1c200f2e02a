"""The simulated oracle with calibrated scores: it stops asking about boxes that are mostly
wrong once the model version's calibration says so; the switch in config and command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_al.core import workflow
from napari_al.core.costs import CostModel
from napari_al.core.store import ProjectStore
from napari_al.simulation import (
    GroundTruth,
    Oracle,
    SimClock,
    SimConfig,
    add_arguments,
    config_from_args,
)
from napari_al.simulation.config import RESULT_KEYS

SHA = "cd" * 32
#: Four objects of class 0 on each 200x200 image.
GT = GroundTruth(
    boxes=np.asarray(
        [[10, 10, 50, 50], [60, 10, 100, 50], [10, 60, 50, 100], [60, 60, 100, 100]], np.float64
    ),
    labels=np.zeros(4, np.int64),
)


def _predictions(store: ProjectStore, image: int, version: int) -> None:
    """The four objects at 0.9, and 20 empty boxes at 0.4-0.6 (all wrong): raw scores would
    show every one of them (above 0.23)."""
    cid = store.classes()[0].id
    preds = [(GT.boxes[j].tolist(), cid, 0.9) for j in range(4)]
    for k in range(20):
        x = 110.0 + 4 * (k % 10)
        y = 110.0 + 40 * (k // 10)
        preds.append(([x, y, x + 30, y + 30], cid, 0.4 + 0.01 * k))
    store.replace_predictions(image, preds, version)


def _questions(tally: dict[str, int]) -> int:
    return sum(v for k, v in tally.items() if k in ("accept", "reject", "set_class", "correct"))


@pytest.mark.parametrize("calibrated", [True, False])
def test_calibrated_oracle_asks_fewer_questions_about_mostly_wrong_boxes(
    tmp_path: Path, calibrated: bool
) -> None:
    clock = SimClock()
    store = ProjectStore.create(tmp_path / "p", clock=clock, idle_cutoff_s=1e15)
    try:
        store.add_class("cell")
        first, second = (
            store.add_image(tmp_path / "p" / f"{n}.png", SHA[:-1] + str(n), 200, 200)
            for n in (1, 2)
        )
        version = store.add_model_version(tmp_path / "p" / "m.pt", "fake")
        oracle = Oracle(store, clock, {first: GT, second: GT}, CostModel(), calibrated=calibrated)
        # no calibration yet: the raw scores decide, every box is asked about
        _predictions(store, first, version)
        tally = oracle.verify_image(first)
        assert (_questions(tally), tally["accept"], tally["reject"], tally["draw"]) == (
            24,
            4,
            20,
            0,
        )
        # the workflow fits the version's calibration on those 24 answers
        out = workflow.calibrate_model(store, SimpleNamespace(model_version=version), split=None)
        assert out["calibration_source"] == "judged" and out["calibration_samples"] == 24
        _predictions(store, second, version)
        seconds = store.annotation_seconds()
        tally = oracle.verify_image(second)
        spent = store.annotation_seconds() - seconds
    finally:
        store.close()
    if calibrated:  # P(yes | 0.4-0.6) = 0: only the four right boxes are asked about
        assert (_questions(tally), tally["accept"], tally["reject"]) == (4, 4, 0)
        assert spent == pytest.approx(4 * 1.6)
    else:
        assert (_questions(tally), tally["reject"]) == (24, 20)
        assert spent == pytest.approx(24 * 1.6)


def test_an_explicit_min_score_overrides_the_calibration(tmp_path: Path) -> None:
    clock = SimClock()
    with ProjectStore.create(tmp_path / "p", clock=clock, idle_cutoff_s=1e15) as store:
        store.add_class("cell")
        image = store.add_image(tmp_path / "p" / "x.png", SHA, 200, 200)
        version = store.add_model_version(tmp_path / "p" / "m.pt", "fake")
        _predictions(store, image, version)
        oracle = Oracle(store, clock, {image: GT}, CostModel(), verify_min_score=0.5)
        shown = oracle.shown_boxes(image)
        assert sorted({b.score for b in shown}) == sorted(
            {b.score for b in store.boxes(image_id=image) if b.score >= 0.5}
        )


def test_the_calibration_switch_in_config_and_command_line() -> None:
    assert SimConfig().calibration == "isotonic"
    assert "calibration" in RESULT_KEYS  # another calibration: other numbers, another folder
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "ci", "--calibration", "platt", "--out", "x"])
    config = config_from_args(args)
    assert config.calibration == "platt" and config.to_dict()["calibration"] == "platt"
    args = parser.parse_args(["--preset", "ci", "--out", "x"])
    assert config_from_args(args).calibration == "isotonic"
    with pytest.raises(SystemExit):
        parser.parse_args(["--calibration", "beta", "--out", "x"])
    with pytest.raises(ValueError, match="calibration must be one of"):
        SimConfig(calibration="beta")
