"""The workflow layer: one wiring of the round for the CLI, the widget's jobs, the notebook
``Session`` and the simulator. These tests pin what the four copies used to disagree on."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL
from fake_workflow import NAMES, FakeWorkflow

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.store import ProjectStore

CLI_TINY = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]


def test_fakes_follow_the_real_signatures() -> None:
    """The GUI tests' stand-ins take exactly the real functions' parameters."""
    fake = FakeWorkflow()
    for name in NAMES:
        real = inspect.signature(getattr(workflow, name)).parameters
        double = inspect.signature(getattr(fake, name)).parameters
        assert [(p.name, p.kind, p.default) for p in real.values()] == [
            (p.name, p.kind, p.default) for p in double.values()
        ], name


@pytest.mark.parametrize(
    "cls",
    [
        workflow.ModelSettings,
        workflow.TrainSettings,
        workflow.QuerySettings,
        workflow.CalibrationSettings,
    ],
)
def test_command_line_flags_come_from_the_settings(cls) -> None:
    parser = argparse.ArgumentParser()
    workflow.add_arguments(parser, cls)
    assert workflow.from_args(cls, parser.parse_args([])) == cls()
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_flags_override_one_field_each() -> None:
    parser = argparse.ArgumentParser()
    workflow.add_arguments(parser, workflow.TrainSettings)
    args = parser.parse_args(["--steps", "5", "--lambda-d", "0.2", "--from-scratch"])
    assert workflow.from_args(workflow.TrainSettings, args) == workflow.TrainSettings(
        steps=5, lambda_d=0.2, from_scratch=True
    )


def test_a_cli_trained_model_is_evaluated_stored_and_in_the_effort_series(
    labelled_project: Path, capsys
) -> None:
    with ProjectStore.open(labelled_project) as store:
        effort = workflow.labelling_effort(store)
    assert main(["train", str(labelled_project), *CLI_TINY, "--steps", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(labelled_project), *CLI_TINY, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with ProjectStore.open(labelled_project) as store:
        metrics = store.latest_model_version().metrics
        series = workflow.effort_series(store)
    assert metrics["map50"] == pytest.approx(printed["map50"])
    assert metrics["annotation_seconds"] == pytest.approx(effort["annotation_seconds"])
    assert [row["version"] for row in series] == [1.0]
    assert series[0]["boxes_annotated"] == effort["boxes_annotated"]


def test_a_rank_result_is_stored_and_survives_a_restart(trained_project: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["rank", str(trained_project), *CLI_TINY, "--budget", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with ProjectStore.open(trained_project) as store:
        stored = store.latest_queries()
    assert stored is not None and stored.model_version == 1
    assert [q.image_id for q in stored.items] == [row["image_id"] for row in printed]
    assert stored.settings["budget"] == 3


def _predicted(project: Path) -> dict[str, list[tuple]]:
    with ProjectStore.open(project) as store:
        return {
            r.path: sorted(
                (b.class_id, round(b.score, 3), *np.round(b.xyxy, 1))
                for b in store.boxes(r.id, statuses=("predicted",))
            )
            for r in store.images()
        }


def _assert_same_predictions(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for path in a:
        assert len(a[path]) == len(b[path]), path
        if a[path]:
            np.testing.assert_allclose(
                np.asarray(a[path], float), np.asarray(b[path], float), atol=0.2
            )


def test_cli_widget_session_and_simulator_predict_the_same(
    trained_template: Path, tmp_path: Path
) -> None:
    from napari_al.gui.session import Session
    from napari_al.gui.tasks import rescore_job, run_job
    from napari_al.simulation import SimConfig, load_detector, predict_queried

    projects = [shutil.copytree(trained_template, tmp_path / f"p{i}") for i in range(4)]
    assert main(["predict", str(projects[0]), *CLI_TINY]) == 0
    settings = workflow.RoundSettings(model=workflow.ModelSettings(**TINY_MODEL))
    result = run_job(rescore_job(projects[1], None, settings, threading.Event()))
    assert result.error is None, result.details
    with Session.open(projects[2]) as session:
        session.load_detector(workflow.ModelSettings(**TINY_MODEL))
        session.predict()
    # the simulator: its own model settings and its "predict the queried images" step, here
    # asked about every image still to review (what the CLI predicts)
    config = SimConfig(**TINY_MODEL)
    with ProjectStore.open(projects[3]) as store:
        detector = load_detector(store, config, seed=0)
        assert detector.model_version == 1
        ids = workflow.images_to_predict(store)
        assert predict_queried(store, detector, ids) == ids
    cli, widget, notebook, simulator = (_predicted(p) for p in projects)
    assert sum(len(v) for v in cli.values()) > 0
    _assert_same_predictions(cli, widget)
    _assert_same_predictions(cli, notebook)
    _assert_same_predictions(cli, simulator)


def test_a_round_trains_evaluates_predicts_ranks_and_stores(trained_project: Path) -> None:
    settings = workflow.RoundSettings(
        model=workflow.ModelSettings(**TINY_MODEL),
        train=workflow.TrainSettings(steps=1),
        query=workflow.QuerySettings(budget=2),
    )
    with ProjectStore.open(trained_project) as store:
        detector = workflow.load_model(store, settings.model)
        result = workflow.drive(workflow.run_round(store, detector, settings))
        assert detector.model_version == 1  # the caller's model was not trained in place
        assert result.model_version == 2 and result.detector.model_version == 2
        metrics = store.latest_model_version().metrics
        assert metrics["map50"] == pytest.approx(result.metrics["map50"])
        assert "annotation_seconds" in metrics
        stored = store.latest_queries()
        assert stored.model_version == 2
        assert [q.image_id for q in stored.items] == [q.image for q in result.queries]
        versions = {b.model_version for b in store.boxes(statuses=("predicted",))}
        assert versions == {2}


def test_a_cancelled_round_keeps_the_model_and_saves_nothing(trained_project: Path) -> None:
    with ProjectStore.open(trained_project) as store:
        settings = workflow.RoundSettings(model=workflow.ModelSettings(**TINY_MODEL))
        detector = workflow.load_model(store, settings.model)
        result = workflow.drive(
            workflow.run_round(store, detector, settings, should_stop=lambda: True)
        )
        assert result.cancelled and result.detector is None
        assert [v.id for v in store.model_versions()] == [1]


# -- the query layer's contract: every unit and diversity option ---------------------------

QUERY_CASES = [
    ("image", None),
    ("image", "coreset"),
    ("image", "kmeans++"),
    ("box", None),
    ("region", None),
]


@pytest.fixture(scope="module")
def ranked_project(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shutil.copytree(trained_template, tmp_path_factory.mktemp("queries") / "proj")


@pytest.mark.parametrize(("unit", "diversity"), QUERY_CASES)
def test_query_contract(ranked_project: Path, unit: str, diversity: str | None) -> None:
    """Whatever the unit: at most ``budget`` distinct items of that unit, on incomplete pool
    images, boxes inside the image, stored as the latest query set, reproducible by seed."""
    q = workflow.QuerySettings(unit=unit, diversity=diversity, budget=3, strategy="entropy")
    with ProjectStore.open(ranked_project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        items = workflow.rank_pool(store, detector, q, use_cache=False)
        again = workflow.rank_pool(store, detector, q, use_cache=False)
        pool = set(workflow.pool_image_ids(store))
        stored = store.latest_queries()
        assert 0 < len(items) <= q.budget
        assert all(it.unit == unit for it in items)
        assert {it.image for it in items} <= pool
        keys = [(it.image, None if it.box is None else tuple(it.box)) for it in items]
        assert len(set(keys)) == len(keys)
        if diversity is None:
            scores = [it.score for it in items]
            assert scores == sorted(scores, reverse=True)
        for it in items:
            assert np.isfinite(it.score)
            if unit == "image":
                assert it.box is None
            else:
                row = store.image(it.image)
                x1, y1, x2, y2 = it.box
                assert 0 <= x1 < x2 <= row.width + 1e-6 and 0 <= y1 < y2 <= row.height + 1e-6
        assert [(q.image_id, q.unit) for q in stored.items] == [(it.image, it.unit) for it in again]
        assert [(it.image, it.box) for it in again] == [(it.image, it.box) for it in items]


def test_labelling_effort_counts_only_boxes_that_teach(labelled_project: Path) -> None:
    """Human boxes on held-out (val/test) images are ground truth for evaluation, not effort."""
    from napari_al.core.data import HUMAN_STATUSES

    with ProjectStore.open(labelled_project) as store:
        split = {r.id: r.split for r in store.images()}
        boxes = store.boxes(statuses=HUMAN_STATUSES)
        teaching = [b for b in boxes if split[b.image_id] not in ("val", "test")]
        assert len(teaching) < len(boxes)  # the sample has labelled val/test images
        effort = workflow.labelling_effort(store)
    assert effort["boxes_annotated"] == len(teaching)


def test_session_export_reaches_the_copied_yolo_layout(labelled_project: Path, tmp_path: Path):
    """The notebook ``Session`` can ask for the Ultralytics layout (images/ + labels/)."""
    from napari_al.gui.session import Session

    with Session.open(labelled_project) as session:
        out = session.export(tmp_path / "yolo", "yolo", copy_images=True)
    assert out.images
    assert (tmp_path / "yolo" / "images").is_dir() and (tmp_path / "yolo" / "labels").is_dir()
    assert any((tmp_path / "yolo" / "images").rglob("*.jpg"))


def test_anchor_sizes_reach_a_new_detector_and_a_mismatch_is_one_line(tmp_path: Path) -> None:
    from napari_al.simulation.config import SimConfig
    from napari_al.simulation.project import model_settings

    with ProjectStore.create(tmp_path / "p") as store:
        store.add_class("defect")
        small = dict(min_size=96, max_size=96)
        s = workflow.ModelSettings(anchors="16,32,64,128,256", **small)
        assert s.anchor_sizes == [16, 32, 64, 128, 256]
        det = workflow.load_model(store, s)
        assert det.config.anchor_sizes == [16, 32, 64, 128, 256]
        assert (
            workflow.load_model(store, workflow.ModelSettings(**small)).config.anchor_sizes is None
        )
        # one line, not torchvision's assertion text: the sizes needed and an example
        needle = r"--anchors 16,32: fasterrcnn_mobilenet_v2_fpn has 5 feature levels; give 5 "
        with pytest.raises(workflow.WorkflowError, match=needle):
            workflow.load_model(store, workflow.ModelSettings(anchors="16,32", **small))
        # MobileNetV3-FPN: torchvision's builder sets its own generator (passing one was a
        # TypeError); its RPN head gets as many anchors per location as the sizes give
        v3 = dict(arch="fasterrcnn_mobilenet_v3_large_fpn", **small)
        with pytest.raises(workflow.WorkflowError, match="has 3 feature levels; give 3 sizes"):
            workflow.load_model(store, workflow.ModelSettings(anchors="16,32", **v3))
        det = workflow.load_model(store, workflow.ModelSettings(anchors="16,64,256", **v3))
        assert det.model.rpn.anchor_generator.sizes == ((16,), (64,), (256,))
        assert det.model.rpn.head.cls_logits.out_channels == 3
        assert len(det.predict([np.zeros((96, 96, 3), np.uint8)])) == 1
    with pytest.raises(ValueError, match="anchors"):
        workflow.ModelSettings(anchors="16;32")
    with pytest.raises(ValueError, match="anchors"):
        SimConfig(anchors="0,16")
    assert model_settings(SimConfig(anchors="8,16,32,64,128"), 0).anchor_sizes[0] == 8
    from napari_al.cli import build_parser

    args = build_parser().parse_args(
        ["train", str(tmp_path / "p"), "--anchors", "16,32,64,128,256"]
    )
    assert workflow.from_args(workflow.ModelSettings, args).anchors == "16,32,64,128,256"
