"""The rounds of one (strategy, seed): query -> oracle -> retrain -> evaluate, resumable from the
markers each round leaves in its store's action log."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow
from napari_al.core.boxes import box_iou
from napari_al.runtime import torch_threads
from napari_al.simulation.config import FULL_NAME, BenchmarkData, SimConfig, SimStrategy
from napari_al.simulation.dialog import answer_dialog, dialog_budget
from napari_al.simulation.project import (
    Model,
    SimProject,
    copy_project,
    open_project,
    predict_queried,
    seed_dir,
)
from napari_al.simulation.results import append_result

if TYPE_CHECKING:
    from napari_al.core.selection import QueryItem
    from napari_al.core.store import ActionRow


def _with_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn(config, ...)`` with ``config.threads`` torch threads
    (:func:`napari_al.runtime.torch_threads`; results differ bitwise between thread counts, so
    every entry point applies the configured count)."""

    @functools.wraps(fn)
    def wrapper(config: SimConfig, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(config.threads or None):
            return fn(config, *args, **kwargs)

    return wrapper


def _choose_random(ids: Sequence[int], k: int, *entropy: int) -> list[int]:
    rng = np.random.default_rng(list(entropy))
    ids = sorted(ids)
    pick = rng.choice(len(ids), size=min(k, len(ids)), replace=False)
    return [ids[int(i)] for i in pick]


#: Progress callback: called with a short message after each finished unit of work.
Notify = Callable[[str], None]


def _do_round(
    proj: SimProject,
    r: int,
    seed: int,
    detector: Model | None,
    choose: Callable[[Model | None], dict[str, Any]],
    answer: Callable[[dict[str, Any], Model | None, ActionRow], None],
    steps: int,
    label: tuple[str, str, str],
) -> tuple[dict[str, Any], Model]:
    """One resumable round: query -> answer -> train -> evaluate; returns (row, detector)."""
    t0 = time.perf_counter()
    times = dict.fromkeys(("query_s", "answer_s", "train_s", "eval_s"), 0.0)
    marks = proj.markers().get(r, {})
    if "query" not in marks:
        query = choose(detector)
        proj.mark(r, "query", **query)
        marks = proj.markers()[r]
    q = marks["query"]
    times["query_s"] = time.perf_counter() - t0
    if "labelled" not in marks:
        answer(q.payload, detector, q)
        proj.mark(r, "labelled")
        marks = proj.markers()[r]
    times["answer_s"] = time.perf_counter() - t0 - times["query_s"]
    t1 = time.perf_counter()
    if detector is None:
        detector = proj.detector(seed)
    if not proj.trained_since(marks["labelled"].id):
        proj.train(detector, steps, seed=seed * 1000 + r)
    t2 = time.perf_counter()
    metrics = proj.evaluate(detector)
    times.update(train_s=t2 - t1, eval_s=time.perf_counter() - t2)
    row = proj.row(label, seed, r, metrics, time.perf_counter() - t0)
    row.update({k: round(v, 3) for k, v in times.items()})
    proj.mark(r, "evaluated", row=row)
    return row, detector


@_with_threads
def run_base(
    config: SimConfig, data: BenchmarkData, work: Path, seed: int, csv_path: Path | None = None
) -> dict[str, Any]:
    """Round 0 of a seed: the random initial set drawn in full, the initial model, its mAP.

    Shared by every strategy of the seed (each run starts from a copy of this project).
    """
    folder = seed_dir(work, seed) / "base"
    proj = open_project(folder, config, data)
    try:
        done = proj.markers().get(0, {}).get("evaluated")
        if done is not None:
            return dict(done.payload["row"])

        def choose(_det: Model | None) -> dict[str, Any]:
            ids = [r.id for r in proj.store.images(split="pool")]
            return {"images": _choose_random(ids, config.init_images, seed, 0)}

        def answer(q: dict[str, Any], _det: Model | None, _m: ActionRow) -> None:
            for i in q["images"]:
                proj.oracle.draw_image(int(i))

        label = ("initial", "image", "draw")
        row, _ = _do_round(proj, 0, seed, None, choose, answer, config.init_steps, label)
        return row
    finally:
        proj.close()


@_with_threads
def run_full(
    config: SimConfig,
    data: BenchmarkData,
    work: Path,
    seed: int,
    csv_path: Path,
    notify: Notify | None = None,
) -> dict[str, Any]:
    """Full supervision: every pool image drawn in full, one training run from the pretrained
    backbone with the whole schedule's steps, evaluated on the test split."""
    folder = seed_dir(work, seed) / "full"
    proj = open_project(folder, config, data)
    try:
        done = proj.markers().get(0, {}).get("evaluated")
        if done is None:

            def choose(_det: Model | None) -> dict[str, Any]:
                return {"images": [r.id for r in proj.store.images(split="pool")]}

            def answer(q: dict[str, Any], _det: Model | None, _m: ActionRow) -> None:
                for i in q["images"]:
                    proj.oracle.draw_image(int(i))

            label = (FULL_NAME, "image", "draw")
            row, _ = _do_round(proj, 0, seed, None, choose, answer, config.total_full_steps, label)
        else:
            row = dict(done.payload["row"])
        if append_result(csv_path, row) and notify:
            notify(f"{FULL_NAME} seed {seed}")
        return row
    finally:
        proj.close()


@_with_threads
def run_strategy(
    config: SimConfig,
    data: BenchmarkData,
    work: Path,
    strategy: SimStrategy,
    seed: int,
    csv_path: Path,
    notify: Notify | None = None,
) -> list[dict[str, Any]]:
    """All rounds of one (strategy, seed), resuming from its project folder; rows appended to
    ``csv_path`` after every round."""
    from napari_al.core.store import STORE_FILENAME

    folder = seed_dir(work, seed) / strategy.name
    if not (folder / STORE_FILENAME).is_file():
        base = seed_dir(work, seed) / "base"
        if not (base / STORE_FILENAME).is_file():
            run_base(config, data, work, seed)
        if folder.exists():
            shutil.rmtree(folder)
        copy_project(base, folder)
    proj = SimProject(folder, config, data, create=False)
    rows: list[dict[str, Any]] = []
    try:
        base_row = proj.markers().get(0, {}).get("evaluated")
        if base_row is None:
            raise RuntimeError(f"{folder}: copied from an unfinished base project")
        row0 = dict(base_row.payload["row"])
        row0.update(strategy=strategy.name, unit=strategy.unit, oracle=strategy.oracle)
        append_result(csv_path, row0)
        rows.append(row0)
        detector: Model | None = None
        for r in range(1, config.rounds + 1):
            ev = proj.markers().get(r, {}).get("evaluated")
            if ev is not None:
                row = dict(ev.payload["row"])
            else:
                if detector is None:
                    detector = proj.detector(seed)
                row, detector = _do_round(
                    proj,
                    r,
                    seed,
                    detector,
                    lambda det, r=r: _choose(proj, strategy, config, det, seed, r),
                    lambda q, det, m: _answer(proj, strategy, det, q, m, config),
                    config.round_steps,
                    (strategy.name, strategy.unit, strategy.oracle),
                )
            added = append_result(csv_path, row)
            rows.append(row)
            if notify and added:
                notify(f"{strategy.name} seed {seed} round {r}")
        return rows
    finally:
        proj.close()


def _choose(
    proj: SimProject,
    strategy: SimStrategy,
    config: SimConfig,
    detector: Model | None,
    seed: int,
    r: int,
) -> dict[str, Any]:
    """The query of round ``r``: image ids, or candidate boxes ``[image, x1, y1, x2, y2]``.

    Ranked by :func:`napari_al.core.workflow.rank_pool` with ``save=False``: the query the
    simulator asks is the ``query`` marker in the action log (what resuming and the tests
    read), and box queries over-ask, so a stored query set would not be the one answered.
    """
    ids = workflow.pool_image_ids(proj.store)
    if not ids:  # the pool is exhausted
        if strategy.unit == "question":
            return {"images": [], "budget_s": 0.0}
        return {"images": []} if strategy.unit == "image" else {"boxes": [], "budget": 0}
    if strategy.scorer == "random":
        return {"images": _choose_random(ids, config.budget_images, seed, r)}
    assert detector is not None
    candidates = ids
    if config.pool_subset is not None and len(ids) > config.pool_subset:
        candidates = sorted(_choose_random(ids, config.pool_subset, seed, r, 1))
    if strategy.unit == "question":  # the dialog planner: its images and seconds
        budget = dialog_budget(proj.store, config)
        return {"images": list(candidates), "budget_s": budget, "seed": seed * 1000 + r}
    if strategy.unit == "image":
        query = workflow.QuerySettings(
            strategy=strategy.scorer,
            unit="image",
            budget=config.budget_images,
            diversity=strategy.diversity,
            aggregation=strategy.aggregation,
            seed=seed * 1000 + r,
            candidate_factor=strategy.candidate_factor,
        )
        items = _rank(proj, detector, query, candidates)
        return {"images": [int(it.image) for it in items]}
    # box level: over-ask, since boxes on objects already answered are skipped
    query = workflow.QuerySettings(
        strategy=strategy.scorer,
        unit="box",
        budget=config.budget_boxes * 4 + 20,
        aggregation=strategy.aggregation,
        seed=seed * 1000 + r,
    )
    items = _rank(proj, detector, query, candidates)
    return {
        "boxes": [[int(it.image), *map(float, it.box)] for it in items if it.box is not None],
        "budget": config.budget_boxes,
    }


def _rank(
    proj: SimProject, detector: Model, query: workflow.QuerySettings, candidates: Sequence[int]
) -> list[QueryItem]:
    """Rank ``candidates`` afresh (no score cache: every round's model is new) without storing
    the query set."""
    return workflow.rank_pool(
        proj.store, detector, query, image_ids=candidates, use_cache=False, save=False
    )


def _answer(
    proj: SimProject,
    strategy: SimStrategy,
    detector: Model | None,
    query: dict[str, Any],
    marker: ActionRow,
    config: SimConfig,
) -> None:
    """The oracle answers a stored query (resumable: answers already given are not repeated)."""
    store = proj.store
    if strategy.oracle == "dialog":
        assert detector is not None
        answer_dialog(proj, strategy, detector, query, marker, config)
        return
    if strategy.unit == "image":
        ids = [int(i) for i in query["images"]]
        if strategy.oracle == "verify":
            assert detector is not None
            fresh = [
                i
                for i in ids
                if store.image(i).review_state != "complete"
                and not len(workflow.judged_boxes(store, i))
            ]
            predict_queried(store, detector, fresh)
            for i in ids:
                proj.oracle.verify_image(i, detector=detector)
        else:
            for i in ids:
                proj.oracle.draw_image(i)
        return
    assert detector is not None
    _answer_boxes(proj, detector, query, marker, config)


def _answer_boxes(
    proj: SimProject,
    detector: Model,
    query: dict[str, Any],
    marker: ActionRow,
    config: SimConfig,
) -> None:
    """Box level: the queried candidates in order, until ``budget`` answers; a candidate on
    something already judged (:func:`napari_al.core.workflow.judged_mask` at ``verify_iou``)
    is skipped without charge."""
    store = proj.store
    budget = int(query["budget"])
    answered = sum(
        1 for a in store.actions(since_id=marker.id) if a.kind in ("accept", "reject", "set_class")
    )
    predicted: set[int] = {
        int(a.image_id) for a in store.actions(kind="predict", since_id=marker.id) if a.image_id
    }
    for image_id, *xyxy in query["boxes"]:
        if answered >= budget:
            break
        image_id = int(image_id)
        if store.image(image_id).review_state == "complete":
            continue
        box = np.asarray([xyxy], np.float64)
        judged = workflow.judged_boxes(store, image_id)
        if workflow.judged_mask(box, judged, iou=config.verify_iou)[0]:
            continue  # an object (or background) already answered
        if image_id not in predicted:
            predict_queried(store, detector, [image_id])
            predicted.add(image_id)
        preds = store.boxes(image_id=image_id, statuses=("predicted",))
        box_id = None
        if preds:
            ious = box_iou(box, [b.xyxy for b in preds])[0]
            if ious.max() >= 0.9:
                box_id = preds[int(ious.argmax())].id
        if box_id is None:  # not among the stored predictions: add it as one (machine action)
            cls = store.classes()[0].id
            if preds:
                cls = preds[int(box_iou(box, [b.xyxy for b in preds])[0].argmax())].class_id
            box_id = store.add_box(image_id, xyxy, cls, "predicted", source="model")
        if proj.oracle.answer_box(box_id) != "skipped":
            answered += 1
