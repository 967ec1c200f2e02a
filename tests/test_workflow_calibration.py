"""Calibrated scores through the workflow: samples from judged boxes, the fitting rule, the
measurement on val, the round, the CLI, and the rule the front ends show boxes by."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY_MODEL

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.calibration import ScoreCalibration
from napari_al.core.store import ProjectStore

CLI_TINY = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]


def _judge_overconfident(store: ProjectStore, version: int | None, n_per_image: int = 12) -> int:
    """Give each pool image ``n_per_image`` model boxes of ``version`` with scores spread over
    (0, 1) and judge them: accepted with probability score**2 (seeded), else rejected."""
    rng = np.random.default_rng(0)
    cids = [c.id for c in store.classes()]
    n = 0
    for row in store.images(split="pool"):
        preds = []
        for k in range(n_per_image):
            x = 5.0 + 12 * k
            preds.append(((x, 5.0, x + 10, 15.0), cids[k % len(cids)], float(rng.random())))
        for box_id in store.replace_predictions(row.id, preds, version):
            box = store.box(box_id)
            if rng.random() < box.score**2:
                store.accept_box(box_id)
            else:
                store.reject_box(box_id)
            n += 1
    return n


def test_judged_samples_follow_what_the_person_was_shown(labelled_project: Path) -> None:
    """accept -> yes; reject, correct, delete -> no; a class change is a no for the class the
    model showed, even when the box is accepted afterwards; an undone edit leaves a yes."""
    with ProjectStore.open(labelled_project) as store:
        a, b = (c.id for c in store.classes()[:2])
        names = {c.id: c.name for c in store.classes()}
        image = store.images(split="pool")[0].id
        ids = store.replace_predictions(
            image, [((10 * i, 0, 10 * i + 8, 8), a, 0.1 * (i + 1)) for i in range(6)], 3
        )
        store.accept_box(ids[0])  # yes
        store.reject_box(ids[1])  # no
        store.set_box_class(ids[2], b)  # no, for class a
        store.set_box_class(ids[3], b)
        store.accept_box(ids[3])  # still a no: the class shown was wrong
        before = store.box(ids[4])
        store.correct_box(ids[4], (41, 0, 49, 9))
        store.restore_box(ids[4], before, kind="undo")
        store.accept_box(ids[4])  # the move was undone: accepted as shown, a yes
        store.delete_box(ids[5])  # deleted while unreviewed: a no
        samples = workflow.judged_samples(store)
    got = sorted(zip(samples.scores.round(2), samples.outcomes, samples.classes, strict=True))
    assert got == [
        (0.1, True, names[a]),
        (0.2, False, names[a]),
        (0.3, False, names[a]),
        (0.4, False, names[a]),
        (0.5, True, names[a]),
        (0.6, False, names[a]),
    ]
    assert set(samples.groups.tolist()) == {3}


def test_only_the_newest_versions_boxes_are_kept(labelled_project: Path) -> None:
    with ProjectStore.open(labelled_project) as store:
        pool = [r.id for r in store.images(split="pool")]
        cid = store.classes()[0].id
        for version, image in ((1, pool[0]), (2, pool[1]), (3, pool[2])):
            ids = store.replace_predictions(
                image, [((10 * i, 0, 10 * i + 8, 8), cid, 0.5) for i in range(10)], version
            )
            for box_id in ids:
                store.reject_box(box_id)
        assert len(workflow.judged_samples(store)) == 30
        assert set(workflow.judged_samples(store, recent=15).groups.tolist()) == {2, 3}
        assert set(workflow.judged_samples(store, recent=10).groups.tolist()) == {3}
        own = workflow.judged_samples(store, version=2)  # one version's boxes only
        assert len(own) == 10 and set(own.groups.tolist()) == {2}
        newest = workflow.judged_samples(store, recent=4, version=3)
        assert len(newest) == 4 and set(newest.groups.tolist()) == {3}
        assert len(workflow.judged_samples(store, version=4)) == 0


def test_split_samples_match_greedily_by_score_within_a_class() -> None:
    gt = (
        np.asarray([[0, 0, 10, 10], [20, 0, 30, 10]], np.float64),
        np.asarray([0, 1]),
        np.asarray([[50, 50, 90, 90]], np.float64),
    )
    pred = SimpleNamespace(
        boxes=np.asarray(
            [
                [0, 0, 10, 10],  # 0.6: class 0 box, but the 0.9 duplicate takes it
                [0, 0, 10, 9],  # 0.9: matches the class-0 box
                [20, 0, 30, 10],  # 0.8: right place, wrong class
                [21, 0, 30, 10],  # 0.7: class 1, matches
                [55, 55, 70, 70],  # 0.5: unmatched, inside the ignore region: left out
                [100, 100, 110, 110],  # 0.4: a false positive
            ],
            np.float32,
        ),
        labels=np.asarray([0, 0, 0, 1, 0, 1]),
        scores=np.asarray([0.6, 0.9, 0.8, 0.7, 0.5, 0.4], np.float32),
    )
    preds = workflow.SplitPredictions("val", [SimpleNamespace(id=7)], [gt], [pred])
    s = workflow.split_samples(preds, ["a", "b"])
    got = sorted(zip(s.scores.round(2), s.outcomes, s.classes, strict=True))
    assert got == [
        (0.4, False, "b"),
        (0.6, False, "a"),
        (0.7, True, "b"),
        (0.8, False, "a"),
        (0.9, True, "a"),
    ]
    assert set(s.groups.tolist()) == {7}


def test_judged_boxes_are_fitted_and_stored_on_the_model_version(trained_project: Path) -> None:
    with ProjectStore.open(trained_project) as store:
        n = _judge_overconfident(store, version=1)
        out = workflow.calibrate_model(store, SimpleNamespace(model_version=1), split=None)
        metrics = store.latest_model_version().metrics
        rule = workflow.verify_rule(store)
        cid = store.classes()[0].id
        explicit = workflow.verify_rule(store, min_score=0.25)
        raw = workflow.verify_rule(store, calibrated=False)
    assert out["calibration_source"] == "judged" and out["calibration_samples"] == n >= 80
    assert out["ece_before"] is None and out["ece_split"] is None  # nothing measured
    stored = ScoreCalibration.from_dict(metrics["calibration"])
    assert stored == ScoreCalibration.from_dict(out["calibration"]) and not stored.is_identity
    assert metrics["calibration_method"] == "isotonic"
    # true P(yes | 0.3) = 0.09: a raw 0.3 is above 0.23 but not worth a question any more
    box = SimpleNamespace(score=0.3, class_id=cid, model_version=1)
    assert rule.probability([box])[0] < 0.2 and not rule.shows(box)
    assert explicit.shows(box)  # an explicit threshold wins
    assert raw.shows(box)  # raw scores: 0.3 > 0.23
    assert rule.shows(SimpleNamespace(score=None, class_id=cid, model_version=1))


def _val_predictions(store: ProjectStore, per_image: int = 60) -> workflow.SplitPredictions:
    """Hand-made predictions on the val images: disjoint boxes, each a correct detection (a
    human box on it) with probability score**2, seeded."""
    rng = np.random.default_rng(1)
    rows = store.images(split="val", review_state="complete")
    gts, preds = [], []
    for _ in rows:
        s = rng.random(per_image)
        boxes = np.asarray([[12.0 * k, 0, 12.0 * k + 10, 10] for k in range(per_image)])
        hit = rng.random(per_image) < s**2
        gts.append((boxes[hit], np.zeros(int(hit.sum()), np.int64), np.zeros((0, 4))))
        preds.append(SimpleNamespace(boxes=boxes, labels=np.zeros(per_image, int), scores=s))
    return workflow.SplitPredictions("val", rows, gts, preds)


def test_too_few_judged_boxes_fall_back_to_val_with_a_cross_fitted_error(
    trained_project: Path,
) -> None:
    with ProjectStore.open(trained_project) as store:
        split = _val_predictions(store)
        n = sum(len(p.scores) for p in split.predictions)
        det = SimpleNamespace(model_version=1)
        out = workflow.calibrate_model(store, det, split="val", predictions=split)
        raw = workflow.calibrate_model(
            store,
            det,
            workflow.CalibrationSettings(method="none"),
            split="val",
            predictions=split,
            record=False,
        )
        stored = store.latest_model_version().metrics
    assert len(split.rows) >= 2
    assert out["calibration_source"] == "val" and out["ece_cross_fitted"]
    assert out["calibration_samples"] == out["ece_samples"] == n
    assert 0 <= out["ece_after"] < out["ece_before"]
    assert stored["ece_after"] == out["ece_after"]  # recorded; the raw run was not
    curve = out["reliability_before"]
    assert len(curve["prob_pred"]) == len(curve["prob_true"]) == len(curve["count"])
    assert sum(curve["count"]) == n
    assert raw["calibration_source"] == "none" and not raw["ece_cross_fitted"]
    assert raw["ece_after"] == pytest.approx(raw["ece_before"])


def test_a_round_calibrates_the_new_version_on_its_own_boxes_only(trained_project: Path) -> None:
    settings = workflow.RoundSettings(
        model=workflow.ModelSettings(**TINY_MODEL),
        train=workflow.TrainSettings(steps=1),
        query=workflow.QuerySettings(budget=2),
    )
    with ProjectStore.open(trained_project) as store:
        _judge_overconfident(store, version=1)
        detector = workflow.load_model(store, settings.model)
        result = workflow.drive(workflow.run_round(store, detector, settings))
        metrics = store.latest_model_version().metrics
        new_boxes = store.boxes(statuses=("predicted",))
        p = workflow.probability_of_yes(store, new_boxes)
        names = {c.id: c.name for c in store.classes()}
    assert result.model_version == 2 and result.calibration is not None
    # version 1's judged boxes do not calibrate version 2 (measured: they make it worse)
    assert metrics["calibration_source"] != "judged" and metrics["calibration_judged"] == 0
    assert metrics["ece_split"] == "val" and metrics["ece_samples"] > 0
    assert 0 <= metrics["ece_before"] <= 1 and 0 <= metrics["ece_after"] <= 1
    cal = ScoreCalibration.from_dict(metrics["calibration"])
    expected = cal.predict([b.score for b in new_boxes], [names[b.class_id] for b in new_boxes])
    np.testing.assert_allclose(p, expected)


def test_the_rule_fits_online_once_the_version_s_own_boxes_are_judged(
    trained_project: Path,
) -> None:
    with ProjectStore.open(trained_project) as store:
        cid = store.classes()[0].id
        box = SimpleNamespace(score=0.3, class_id=cid, model_version=1)
        before = workflow.verify_rule(store)
        assert before.shows(box)  # no judged boxes of version 1 yet: raw 0.3 > 0.23
        assert workflow.online_calibration(store, 1) is None
        stored_before = store.latest_model_version().metrics.get("calibration")
        _judge_overconfident(store, version=1)  # the person answers; nothing is re-trained
        stored = store.latest_model_version().metrics.get("calibration")
        rule = workflow.verify_rule(store)
        online = workflow.online_calibration(store, 1)
        refit = workflow.CalibrationSettings()
        samples = workflow.judged_samples(store, refit.recent_samples, version=1)
        last = store.last_action_id()
        assert workflow.online_calibration(store, 1) is online  # cached: no new action
        pool = store.images(split="pool")[0]
        store.reject_box(store.replace_predictions(pool.id, [((0, 0, 9, 9), cid, 0.9)], 1)[0])
        assert store.last_action_id() != last
        assert workflow.online_calibration(store, 1) is not online  # refitted after an answer
    assert stored == stored_before  # fitted for the rule, not written: no hidden store write
    from napari_al.core.calibration import fit_calibration

    expected = fit_calibration(samples.scores, samples.outcomes, samples.classes)
    assert online == expected
    # true P(yes | 0.3) = 0.09: not worth a question any more, without retraining
    assert rule.probability([box])[0] < 0.2 and not rule.shows(box)


def test_evaluate_prints_and_stores_the_calibration_error(trained_project: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(trained_project), *CLI_TINY, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ece_split"] == "val" and printed["ece_samples"] > 0
    assert 0 <= printed["ece_before"] <= 1 and 0 <= printed["ece_after"] <= 1
    assert printed["calibration_method"] == "isotonic"
    assert main(["evaluate", str(trained_project), *CLI_TINY, "--calibration", "platt"]) == 0
    text = capsys.readouterr().out
    assert "calibration (platt" in text and "ECE on val" in text and " raw -> " in text
    assert main(["info", str(trained_project), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cal = info["latest_model"]["calibration"]
    assert cal["calibration_method"] == "platt" and cal["ece_before"] == pytest.approx(
        printed["ece_before"]
    )
    assert main(["info", str(trained_project)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "latest model" in ln)
    assert "; calibration (platt, fitted on " in line  # evaluate's own wording
    assert " raw -> " in line and "detections, 10 equal-width bins" in line


def test_a_calibration_with_too_few_samples_says_so_and_how_to_fix_it() -> None:
    """``info`` once printed "scores calibrated: isotonic (none)" for raw scores kept."""
    from napari_al.cli.evaluate import calibration_line

    cal = {"calibration_method": "isotonic", "calibration_source": "none"}
    cal |= {"calibration_samples": 0, "calibration_judged": 3, "ece_before": None}
    line = calibration_line(cal)
    assert line.startswith("calibration (isotonic, raw scores kept: 3 judged model boxes, too few")
    assert "evaluate on a val split" in line and "(none)" not in line
    old = {"calibration_method": "platt", "calibration_source": "val", "calibration_samples": 40}
    old |= {"ece_split": "val", "ece_before": 0.2, "ece_after": 0.05}  # no ece_samples kept
    assert calibration_line(old).endswith("ECE on val 0.2000 raw -> 0.0500 calibrated")


def test_a_look_at_another_split_keeps_the_val_figures(tmp_path: Path) -> None:
    """``napari-al evaluate --split train`` after a val evaluation replaced the version's val
    mAP (the mAP-against-seconds curve) and its val-fitted calibration (what the loop uses);
    the other split's figures now go under ``by_split``."""
    from PIL import Image

    from napari_al.core.data import BoxRecord, Dataset, ImageRecord, Predictions

    project = tmp_path / "proj"
    project.mkdir()
    recs = []
    for i, split in enumerate(["train", "train", "val", "val"]):
        path = project / f"im{i}.png"
        Image.new("RGB", (800, 20), (i * 40, 90, 60)).save(path)
        recs.append(ImageRecord(path, 800, 20, [BoxRecord(0, 0, 10, 10, "cell")], split, True))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], recs))
        (project / "m.pt").write_bytes(b"")
        store.add_model_version(project / "m.pt", "fasterrcnn_mobilenet_v2_fpn")
        det = SimpleNamespace(model_version=1)
        val, none = _val_predictions(store), np.zeros((0, 0))  # no probs, features
        val.predictions = [
            Predictions(p.boxes, p.labels, p.scores, none, none, np.zeros(0))
            for p in val.predictions
        ]
        first = workflow.evaluate_model(store, det, "val", predictions=val)
        cal = workflow.calibrate_model(store, det, split="val", predictions=val)
        assert cal["calibration_source"] == "val"
        rows = store.images(split="train", review_state="complete")
        train = workflow.SplitPredictions("train", rows, val.ground_truth, val.predictions)
        other = workflow.evaluate_model(store, det, "train", predictions=train)
        workflow.calibrate_model(store, det, split="train", predictions=train)
        metrics = store.latest_model_version().metrics
        series = workflow.effort_series(store)
    assert metrics["split"] == "val" and metrics["map50"] == first["map50"]
    assert [s["map50"] for s in series] == [first["map50"]]
    assert metrics["calibration_source"] == "val" and metrics["ece_split"] == "val"
    assert metrics["calibration"] == cal["calibration"]
    assert metrics["by_split"]["train"]["map50"] == other["map50"]
    assert metrics["by_split"]["train"]["ece_split"] == "train"


def test_evaluate_on_another_split_says_the_val_calibration_stays(
    trained_project: Path, capsys
) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(trained_project), *CLI_TINY]) == 0
    assert "a look only" not in capsys.readouterr().out
    assert main(["evaluate", str(trained_project), *CLI_TINY, "--split", "train"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("calibration")]
    assert line and line[0].endswith(
        "a look only: the model keeps the calibration fitted and measured on val"
    )


def test_train_without_evaluate_names_the_val_split_it_could_fit_on(
    trained_project: Path, capsys
) -> None:
    """After ``train`` (no ``--evaluate``) on a project with complete val images the line
    said "evaluate on a val split of complete images", as if it had none (found by a
    newcomer): it now says how to use the one it has."""
    with ProjectStore.open(trained_project) as store:
        n_val = len(store.images(split="val", review_state="complete"))
    assert n_val > 0
    capsys.readouterr()
    assert main(["train", str(trained_project), *CLI_TINY, "--steps", "1"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("calibration"))
    assert "raw scores kept" in line, line  # the fixture judges no model box
    assert "train with --evaluate" in line and f"napari-al evaluate {trained_project}" in line
    assert "complete val image" in line and "evaluate on a val split" not in line
    assert main(["info", str(trained_project)]) == 0  # info says the same of that version
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "latest model" in ln)
    assert "raw scores kept" in line and "train with --evaluate" in line, line
