"""The simulated-oracle benchmark: oracle answers and costs, bookkeeping, reproducibility."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_al.core.boxes import box_iou
from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.store import ProjectStore
from napari_al.core.store.lock import _running
from napari_al.simulation import (
    CSV_COLUMNS,
    FULL_NAME,
    RESULTS_CSV,
    STRATEGIES,
    TEST_SPLIT,
    TIMING_COLUMNS,
    GroundTruth,
    Oracle,
    SimClock,
    SimProject,
    add_arguments,
    config_from_args,
    load_data,
    per_seed_table,
    plan_verification,
    preset,
    read_results,
    resolve_strategies,
    run_base,
    run_simulation,
    run_strategy,
    summarize,
    summary_table,
    write_report,
)

SHA = "ab" * 32
COSTS = CostModel()

# --------------------------------------------------------------------------- oracle, by hand

#: Four objects: A, B (class 0), C (class 1), D (class 0).
GT = GroundTruth(
    boxes=np.asarray(
        [[10, 10, 50, 50], [60, 10, 100, 50], [10, 60, 50, 100], [60, 60, 100, 100]], np.float64
    ),
    labels=np.asarray([0, 0, 1, 0], np.int64),
)


@pytest.fixture
def sim(tmp_path: Path):
    """A store on a simulated clock with one 200x200 image whose truth is :data:`GT`."""
    clock = SimClock()
    store = ProjectStore.create(tmp_path / "p", clock=clock, idle_cutoff_s=1e15)
    store.add_class("a")
    store.add_class("b")
    image = store.add_image(tmp_path / "p" / "x.png", SHA, 200, 200)
    store.log_action("sim_start")  # the first human action has no predecessor (dt NULL)
    oracle = Oracle(store, clock, {image: GT}, COSTS)
    yield store, oracle, image
    store.close()


def _predict(store: ProjectStore, image: int, boxes: list[tuple[list[float], int, float]]):
    ids = [c.id for c in store.classes()]
    return store.replace_predictions(image, [(b, ids[c], s) for b, c, s in boxes], None)


def test_verification_costs_and_statuses(sim) -> None:
    store, oracle, image = sim
    tp, wrong_class, badly_placed, fp, hidden = _predict(
        store,
        image,
        [
            ([11, 11, 50, 50], 0, 0.9),  # A: right box, right class
            ([60, 10, 100, 50], 1, 0.8),  # B: right box, wrong class
            ([10, 60, 28, 100], 1, 0.7),  # C: IoU 0.45, badly placed
            ([150, 150, 180, 180], 0, 0.6),  # nothing there
            ([120, 10, 140, 30], 0, 0.1),  # below the shown score: never asked
        ],
    )
    tally = oracle.verify_image(image)  # D was missed by the model
    assert tally == {"accept": 1, "set_class": 1, "correct": 1, "reject": 1, "draw": 1}
    # 1.6 + (1.6 + 1.5) + (1.6 + 7) + 1.6 + 7
    assert store.annotation_seconds() == pytest.approx(21.9, abs=1e-9)
    counts = count_answers(store.actions())
    assert counts == Counts(
        boxes_drawn=2, verifications=4, class_changes=1, images=1, images_completed=1
    )
    assert COSTS.seconds(counts) == pytest.approx(21.9, abs=1e-9)
    a, b = (c.id for c in store.classes())
    assert store.box(tp).status == "accepted" and store.box(tp).xyxy == (11, 11, 50, 50)
    assert store.box(wrong_class).status == "corrected" and store.box(wrong_class).class_id == a
    fixed = store.box(badly_placed)
    assert (fixed.status, fixed.xyxy, fixed.class_id) == ("corrected", (10, 60, 50, 100), b)
    assert store.box(fp).status == "rejected"
    assert store.box(hidden).status == "predicted"
    drawn = store.boxes(image_id=image, statuses=("drawn",))
    assert [(d.xyxy, d.class_id) for d in drawn] == [((60, 60, 100, 100), a)]
    assert store.image(image).review_state == "complete"
    # answering again asks nothing and costs nothing (resumable)
    assert sum(oracle.verify_image(image).values()) == 0
    assert store.annotation_seconds() == pytest.approx(21.9, abs=1e-9)


def test_weak_uncovered_predictions_are_asked_before_drawing(sim) -> None:
    store, oracle, image = sim
    oracle.verify_missed_min_score = 0.05
    shown, on_d, dup, nothing = _predict(
        store,
        image,
        [
            ([10, 10, 50, 50], 0, 0.9),  # A, shown
            ([61, 61, 100, 100], 0, 0.15),  # D: weak, uncovered -> asked, yes
            ([12, 12, 50, 50], 0, 0.12),  # a weak duplicate of A: covered, never asked
            ([150, 150, 180, 180], 0, 0.1),  # weak, uncovered, nothing there -> asked, no
        ],
    )
    tally = oracle.verify_image(image)
    # A accepted; D accepted instead of drawn; the empty one rejected; B and C drawn
    assert tally == {
        "accept": 2,
        "set_class": 0,
        "correct": 0,
        "reject": 1,
        "draw": 2,
        "missed_asked": 2,
    }
    assert store.box(shown).status == store.box(on_d).status == "accepted"
    assert store.box(dup).status == "predicted" and store.box(nothing).status == "rejected"
    # 3 questions x 1.6 + 2 drawings x 7: the log and the counts agree
    assert store.annotation_seconds() == pytest.approx(3 * 1.6 + 2 * 7, abs=1e-9)
    assert COSTS.seconds(count_answers(store.actions())) == pytest.approx(18.8, abs=1e-9)


def test_verification_duplicates_and_greedy_order() -> None:
    # two boxes on A: the higher-scoring one (first) is accepted, the duplicate rejected; a box
    # overlapping B at IoU 0.375 is redrawn onto B rather than left for a draw
    plan, missing = plan_verification(
        np.asarray([[10, 10, 50, 50], [12, 12, 50, 50], [85, 10, 100, 50]]),
        np.asarray([0, 0, 0]),
        GT,
    )
    assert plan == [("accept", 0), ("reject", None), ("correct", 1)]
    assert missing == [2, 3]
    # a true box already covered by a human box is not available again
    plan, missing = plan_verification(
        np.asarray([[10, 10, 50, 50]]), np.asarray([0]), GT, claimed={0}
    )
    assert plan == [("reject", None)] and missing == [1, 2, 3]
    # same-class matches win over a better IoU of another class
    plan, _ = plan_verification(np.asarray([[10, 10, 50, 50]]), np.asarray([1]), GT)
    assert plan == [("set_class", 0)]


def test_box_level_answers(sim) -> None:
    store, oracle, image = sim
    tp, wrong, bad, dup = _predict(
        store,
        image,
        [
            ([11, 11, 50, 50], 0, 0.9),
            ([60, 10, 100, 50], 1, 0.3),
            ([10, 60, 28, 100], 1, 0.7),
            ([10, 10, 49, 49], 0, 0.2),
        ],
    )
    assert oracle.answer_box(tp) == "accept"
    assert store.image(image).review_state == "partial"
    assert oracle.answer_box(wrong) == "set_class"
    assert oracle.answer_box(bad) == "reject"  # Desai et al.: below IoU 0.5 is background
    assert oracle.answer_box(dup) == "reject"  # A is already labelled
    assert oracle.answer_box(tp) == "skipped"
    assert store.annotation_seconds() == pytest.approx(1.6 * 4 + 1.5, abs=1e-9)
    counts = count_answers(store.actions())
    assert (counts.verifications, counts.class_changes, counts.boxes_drawn) == (4, 1, 0)
    assert counts.images == 1 and counts.images_completed == 0
    # nothing beyond the asked boxes was revealed: C and D have no human box
    human = store.boxes(image_id=image, statuses=HUMAN_STATUSES)
    assert sorted(b.id for b in human) == sorted([tp, wrong])


def test_drawing_is_idempotent(sim) -> None:
    store, oracle, image = sim
    store.draw_box(image, [10, 10, 50, 50], store.classes()[0].id)  # a person already drew A
    before = store.annotation_seconds()
    assert oracle.draw_image(image) == 3
    assert store.annotation_seconds() - before == pytest.approx(21.0, abs=1e-9)
    assert oracle.draw_image(image) == 0
    assert len(store.boxes(image_id=image, statuses=("drawn",))) == 4


def test_cost_model() -> None:
    with pytest.raises(ValueError):
        CostModel(draw_s=-1)
    c = CostModel(draw_s=10, verify_s=2, class_change_s=1, image_s=5)
    assert c.of_kind("correct") == 12 and c.of_kind("set_class") == 3
    assert (
        c.seconds(Counts(boxes_drawn=1, verifications=2, class_changes=1, images_completed=1)) == 20
    )


def test_strategies_always_include_baselines() -> None:
    names = [s.name for s in resolve_strategies(["box-entropy", "margin"])]
    assert names == ["random-draw", "random-verify", "entropy", "box-entropy", "margin"]
    with pytest.raises(ValueError, match="unknown strategy"):
        resolve_strategies(["nonsense"])
    assert STRATEGIES["box-entropy"].oracle == "box"


def test_cli_flags_override_the_preset() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(
        [
            "--preset",
            "ci",
            "--rounds",
            "5",
            "--draw-s",
            "25.5",
            "--strategies",
            "mc-mi",
            "--out",
            "x",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.rounds == 5 and cfg.costs.draw_s == 25.5 and cfg.costs.verify_s == 1.6
    assert cfg.strategies == ("mc-mi",) and cfg.min_size == preset("ci").min_size
    args = p.parse_args(["--data", "d.json", "--out", "x"])
    assert config_from_args(args).fmt is None  # detected from the data


def _curve(name: str, seed: int, points: list[tuple[float, float]]) -> list[dict]:
    return [
        {
            "strategy": name,
            "unit": "image",
            "oracle": "draw" if name == "random-draw" else "verify",
            "seed": seed,
            "round": r,
            "cost_seconds": c,
            "map50": m,
            "boxes_drawn": 0,
            "verifications": 0,
            "class_changes": 0,
            "images": 0,
        }
        for r, (c, m) in enumerate(points)
    ]


def test_summary_censors_runs_that_never_reach_the_target() -> None:
    full = [{**_curve(FULL_NAME, 0, [(10_000.0, 0.8)])[0]}]  # target 0.72
    rows = [
        *full,
        # random drawing reaches the target at 1,000 s on seed 0, never on seed 1 (5,000 s)
        *_curve("random-draw", 0, [(500.0, 0.5), (1_000.0, 0.72), (5_000.0, 0.8)]),
        *_curve("random-draw", 1, [(500.0, 0.5), (2_500.0, 0.6), (5_000.0, 0.7)]),
        # a strategy that reaches it on both seeds, at 600 and 1,000 s
        *_curve("fast", 0, [(500.0, 0.5), (600.0, 0.72), (2_500.0, 0.8)]),
        *_curve("fast", 1, [(500.0, 0.5), (1_000.0, 0.72), (2_500.0, 0.8)]),
        # one that never does
        *_curve("slow", 0, [(500.0, 0.5), (2_000.0, 0.6)]),
        *_curve("slow", 1, [(500.0, 0.5), (3_000.0, 0.6)]),
    ]
    st = summarize(rows)["strategies"]
    assert st["random-draw"]["cost_to_90"] is None and st["random-draw"]["reached"] == 1
    assert st["random-draw"]["cost_to_90_lower"] == pytest.approx(3_000.0)  # (1,000 + 5,000) / 2
    assert st["fast"]["cost_to_90"] == pytest.approx(800.0)
    table = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in summary_table(summarize(rows)).splitlines()[2:]
    }
    # 800 / >= 3,000: an upper bound on the ratio, not 800 / 5,000 (random's last cost)
    assert table["fast"][4] == "< 0.27x"
    assert table["slow"][4] == "n/a"  # neither is known
    assert table["random-draw"][3].startswith(">= 3,000 (1/2 seeds")
    per_seed = per_seed_table(rows, 0.72).splitlines()
    assert per_seed[0] == "| strategy | seed 0 | seed 1 |"
    assert "| fast | 600 (0.60x) | 1,000 |" in per_seed  # random never reached it on seed 1
    assert "| slow | not reached (best 0.600) | not reached (best 0.600) |" in per_seed


# --------------------------------------------------------------------------- the ci preset


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim") / "ci"
    config = preset("ci")
    outputs = run_simulation(config, out, progress=False, log=lambda m: None)
    return config, out, outputs


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def test_ci_preset_outputs(ci_run) -> None:
    config, _, outputs = ci_run
    rows = read_results(outputs.csv)
    with open(outputs.csv, newline="") as f:
        assert tuple(next(csv.reader(f))) == CSV_COLUMNS
    names = [s.name for s in resolve_strategies(config.strategies)]
    assert [r["strategy"] for r in rows] == [
        *(n for n in names for _ in range(config.rounds + 1)),
        FULL_NAME,
    ]
    assert all(0 <= r["map50"] <= 1 and 0 <= r["map"] <= 1 for r in rows)
    # every strategy starts from the same initial set and model
    first = {tuple(v for k, v in r.items() if k not in ("strategy", "unit", "oracle"))
             for r in rows if r["round"] == 0 and r["strategy"] != FULL_NAME}  # fmt: skip
    assert len(first) == 1
    assert outputs.plot.is_file() and outputs.plot.stat().st_size > 1000
    text = outputs.summary.read_text()
    assert "Full-supervision mAP@0.5" in text and "| random-draw |" in text
    assert not (outputs.csv.parent / f"{RESULTS_CSV}.lock").exists()  # cleaned up at the end


def test_the_results_lock_file_goes_once_no_one_holds_it(tmp_path: Path) -> None:
    from filelock import FileLock

    from napari_al.simulation.results import append_result, remove_lock_file

    csv_path = tmp_path / RESULTS_CSV
    counts = ("boxes_drawn", "verifications", "class_changes", "images", "human_boxes")
    row = {
        "strategy": "random",
        "seed": 0,
        "round": 0,
        "train_steps": 0,
        **dict.fromkeys(counts, 0),
    }
    append_result(csv_path, row)
    lock = tmp_path / f"{RESULTS_CSV}.lock"
    assert lock.exists()
    with FileLock(lock, timeout=0, thread_local=False):  # another run writing: kept
        remove_lock_file(csv_path)
        assert lock.exists()
    remove_lock_file(csv_path)
    assert not lock.exists() and len(read_results(csv_path)) == 1


def test_ci_costs_add_up_from_the_action_log(ci_run) -> None:
    config, out, outputs = ci_run
    data = load_data(config)
    rows = read_results(outputs.csv)
    for name in [*config.strategies, FULL_NAME]:
        last = max((r for r in rows if r["strategy"] == name), key=lambda r: r["round"])
        folder = out / "work" / "seed0" / ("full" if name == FULL_NAME else name)
        proj = SimProject(folder, config, data, create=False)
        try:
            logged = proj.store.annotation_seconds()
            counts = count_answers(proj.store.actions())
            # the CSV's cost is the store's measured time, which is the answers' price
            assert last["cost_seconds"] == pytest.approx(logged, abs=1e-3)
            assert config.costs.seconds(counts) == pytest.approx(logged, abs=1e-6)
            assert (last["boxes_drawn"], last["verifications"], last["images"]) == (
                counts.boxes_drawn,
                counts.verifications,
                counts.images,
            )
            if last["oracle"] == "draw":
                assert counts.verifications == 0
                assert logged == pytest.approx(config.costs.draw_s * counts.boxes_drawn)
            # the labelled test split costs nothing and counts as no labelling work
            pool_human = [
                b for b in proj.store.boxes(statuses=HUMAN_STATUSES) if b.image_id in proj.gt
            ]
            test_boxes = [
                b
                for r in proj.store.images(split=TEST_SPLIT)
                for b in proj.store.boxes(image_id=r.id)
            ]
            assert test_boxes and last["human_boxes"] == len(pool_human)
            # evaluated by the workflow: the row's mAP is recorded on the model version
            version = proj.store.latest_model_version()
            assert version.metrics["split"] == TEST_SPLIT
            assert version.metrics["map50"] == pytest.approx(last["map50"], abs=1e-6)
        finally:
            proj.close()
    # costs only grow
    for name in config.strategies:
        c = [r["cost_seconds"] for r in rows if r["strategy"] == name]
        assert c == sorted(c)


def _assert_test_split_is_imported_ground_truth(store: ProjectStore, data) -> None:
    """The test split holds the benchmark's labelled test images as a labelled import does:
    complete, every box accepted from source ``import`` and equal to the ground truth; no
    action of the log (oracle, predict, marker) ever touched one of them."""
    rows = store.images(split=TEST_SPLIT)
    assert sorted(r.path for r in rows) == sorted(store.rel_path(im.path) for im in data.test)
    by_path = {store.rel_path(im.path): im for im in data.test}
    classes = {c.id: c.name for c in store.classes()}
    for row in rows:
        assert row.review_state == "complete"
        boxes = store.boxes(image_id=row.id)
        assert all(b.status == "accepted" and b.source == "import" for b in boxes)
        truth = sorted((b.label, *np.round(b.xyxy(), 3)) for b in by_path[row.path].boxes)
        assert sorted((classes[b.class_id], *np.round(b.xyxy, 3)) for b in boxes) == truth
    test_ids = {r.id for r in rows}
    assert not [a for a in store.actions() if a.image_id in test_ids]


def test_ci_oracle_reveals_only_what_was_asked(ci_run) -> None:
    config, out, _ = ci_run
    data = load_data(config)
    for s in resolve_strategies(config.strategies):
        proj = SimProject(out / "work" / "seed0" / s.name, config, data, create=False)
        try:
            store = proj.store
            _assert_test_split_is_imported_ground_truth(store, data)
            pool = store.images(split="pool")
            pool_ids = {r.id for r in pool}
            assert set(proj.gt) == pool_ids  # the oracle knows the pool, not the test split
            assert {r.id for r in store.images()} == pool_ids | {
                r.id for r in store.images(split=TEST_SPLIT)
            }
            asked_images: set[int] = set()
            asked_boxes: list[tuple[int, list[float]]] = []
            for m in store.actions(kind="sim_round"):
                if m.payload["phase"] == "query":
                    asked_images.update(int(i) for i in m.payload.get("images", []))
                    asked_boxes.extend((int(b[0]), b[1:]) for b in m.payload.get("boxes", []))
            assert asked_images | {i for i, _ in asked_boxes} <= pool_ids
            human = [
                b
                for b in store.boxes(statuses=(*HUMAN_STATUSES, "rejected"))
                if b.image_id in pool_ids
            ]
            touched = {b.image_id for b in human}
            if s.unit == "image":
                assert touched <= asked_images
                for row in pool:
                    if row.id not in asked_images:
                        assert row.review_state == "unseen"
            else:
                initial = {int(i) for i in store.actions(kind="sim_round")[0].payload["images"]}
                assert touched <= initial | {i for i, _ in asked_boxes}
                for b in human:
                    if b.image_id in initial:
                        continue
                    # a box answer never draws: every human box is a judged model box, one of
                    # the queried candidates, its coordinates the model's (class only fixed)
                    assert b.status in ("accepted", "corrected", "rejected")
                    assert b.source == "model"
                    asked = [q for i, q in asked_boxes if i == b.image_id]
                    assert asked and box_iou([b.xyxy], asked).max() >= 0.9
            # unqueried pool images hold no human boxes at all
            for row in pool:
                if row.id not in asked_images | {i for i, _ in asked_boxes}:
                    assert not store.boxes(image_id=row.id, statuses=HUMAN_STATUSES)
        finally:
            proj.close()


def test_ci_seed_reproduces_the_run_and_resumes(ci_run, tmp_path: Path) -> None:
    config, out, _ = ci_run
    data = load_data(config)
    rows = read_results(out / RESULTS_CSV)
    entropy = STRATEGIES["entropy"]
    expected = _strip([r for r in rows if r["strategy"] == "entropy"])
    work, csv_path = tmp_path / "work", tmp_path / RESULTS_CSV
    base = run_base(config, data, work, 0)
    assert _strip([base])[0] == {**expected[0], "strategy": "initial", "oracle": "draw"}
    # stop after round 1, then resume to the last round
    run_strategy(dataclasses.replace(config, rounds=1), data, work, entropy, 0, csv_path)
    assert len(read_results(csv_path)) == 2
    run_strategy(config, data, work, entropy, 0, csv_path)
    assert _strip(read_results(csv_path)) == expected
    # the whole benchmark resumes as a no-op when every row is there, and refuses to mix
    # results made with other settings into the same folder
    before = (out / RESULTS_CSV).read_text()
    run_simulation(config, out, progress=False, log=lambda m: None)
    assert (out / RESULTS_CSV).read_text() == before
    with pytest.raises(ValueError, match="other settings"):
        run_simulation(dataclasses.replace(config, round_steps=2), out, progress=False)
    # the report can be rebuilt from the CSV alone
    shutil.copy(out / RESULTS_CSV, tmp_path / "copy.csv")
    summary = summarize(read_results(tmp_path / "copy.csv"))
    assert math.isfinite(summary["full_map50"]) and "entropy" in summary["strategies"]
    assert write_report(out)[1] is not None


@pytest.mark.slow
def test_ci_in_parallel_workers_matches_one_process(ci_run, tmp_path: Path) -> None:
    config, out, _ = ci_run
    parallel = run_simulation(
        dataclasses.replace(config, workers=2), tmp_path / "par", progress=False, log=lambda m: None
    )
    assert _strip(read_results(parallel.csv)) == _strip(read_results(out / RESULTS_CSV))


def test_torch_threads_is_restored_after_the_block() -> None:
    import torch

    from napari_al.runtime import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_a_worker_exits_when_its_run_is_killed(tmp_path: Path) -> None:
    """kill -9 of a run leaves no worker training on, holding its project's lock."""
    import signal
    import subprocess
    import sys
    import time

    child = Path(__file__).with_name("parent_death_child.py")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(child.parent.parent), str(child.parent)]),
    }
    parent = subprocess.Popen(
        [sys.executable, str(child), "0.2"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        worker = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert _running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _running(worker):
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            raise AssertionError("the worker outlived its run")
    finally:
        parent.kill()


def test_round_lr_applies_to_fine_tuning_a_trained_model_only(monkeypatch, tmp_path) -> None:
    """``--round-lr``: the first training (no model yet) and full supervision keep ``lr``; each
    round's fine-tuning of a trained model runs at ``round_lr``; a bad value is refused."""
    from types import SimpleNamespace

    from napari_al.core import workflow
    from napari_al.simulation.config import SimConfig
    from napari_al.simulation.project import SimProject

    seen: list[float | None] = []

    def train_model(store, detector, settings):
        seen.append(settings.lr)
        return SimpleNamespace(model_version=1)

    monkeypatch.setattr(workflow, "train_model", train_model)
    project = SimProject.__new__(SimProject)
    project.folder = tmp_path
    project.config = SimConfig(lr=0.01, round_lr=0.003)
    project.prune_checkpoints = lambda: None  # type: ignore[method-assign]
    versions: list[int] = []
    project.store = SimpleNamespace(latest_model_version=lambda: versions[-1] if versions else None)
    project.train(None, steps=5, seed=0)  # type: ignore[arg-type]
    versions.append(1)
    project.train(None, steps=5, seed=0)  # type: ignore[arg-type]
    project.config = SimConfig(lr=0.01)
    project.train(None, steps=5, seed=0)  # type: ignore[arg-type]
    assert seen == [0.01, 0.003, 0.01]
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match="round_lr must be a positive number"):
            SimConfig(round_lr=bad)
