"""A fast, deterministic stand-in for the workflow's model steps, for GUI tests.

It replaces the functions :func:`napari_al.core.workflow.run_round` and the widget's jobs call
(``load_model``, ``train_model``, ``predict_split``, ``evaluate_model``, ``predict_images``,
``rank_pool``, ``suggest_missed``; the calibration runs for real on what they store) with
fakes of the SAME signatures (``test_fakes_follow_the_real_signatures`` checks it), so the
real round, jobs, workers and widget run on top of them, without torch.
The fakes write to the real store as the real steps do (model versions with effort metrics,
predicted boxes, the saved query set).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from napari_al.core import workflow
from napari_al.core.selection import QueryItem
from napari_al.core.workflow import rounds

NAMES = (
    "load_model",
    "train_model",
    "predict_split",
    "evaluate_model",
    "predict_images",
    "rank_pool",
    "suggest_missed",
)


class FakeDetector:
    """What the round and the widget read of a detector: classes, version, names."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = list(classes)
        self.model_version = 0
        self.trained = 0
        self.arch = "fake"
        self.device = "cpu"
        self.build_message = "a fake detector"
        self.config = SimpleNamespace(arch="fake", min_size=64, max_size=128)


class FakeWorkflow:
    """The fakes, with a record of the calls and of the threads training ran on."""

    def __init__(self, step_s: float = 0.02, fail: str | None = None, burn: bool = False) -> None:
        self.step_s = step_s
        self.fail = fail
        #: Burn CPU in numpy during a step (holds and releases the GIL like torch) instead of
        #: sleeping: what ``benchmarks/gui_latency.py --fake`` measures.
        self.burn = burn
        self.calls: list[str] = []
        self.threads: set[str] = set()

    def load_model(self, store, settings=None):  # type: ignore[no-untyped-def]
        self.calls.append("load")
        latest = store.latest_model_version()
        det = FakeDetector([c.name for c in store.classes()])
        det.model_version = 0 if latest is None else latest.id
        return det

    def train_model(  # type: ignore[no-untyped-def]
        self,
        store,
        detector,
        settings=None,
        *,
        progress=None,
        should_stop=None,
        save=True,
        tiles=None,
        on_skip=None,
    ):
        s = settings or workflow.TrainSettings()
        self.calls.append("train")
        self.threads.add(threading.current_thread().name)
        snapshot = store.training_snapshot()
        effort = workflow.labelling_effort(store)
        for step in range(1, s.steps + 1):
            if should_stop is not None and should_stop():
                result = SimpleNamespace(stopped_reason="cancelled", steps=step - 1, losses=[])
                return workflow.TrainOutcome(result=result, n_examples=0)
            if self.fail:
                raise RuntimeError(self.fail)
            self._step()
            if progress is not None:
                progress(step, s.steps, 1.0 / step, step / s.steps)
        detector.trained += 1
        metrics = {"snapshot_action": snapshot.last_action_id, **effort}
        version = store.add_model_version(
            Path(store.project_dir) / f"fake{detector.trained}.pt", "fake", metrics
        )
        detector.model_version = version
        result = SimpleNamespace(stopped_reason="done", steps=s.steps, losses=[0.5])
        return workflow.TrainOutcome(
            result=result, n_examples=1, model_version=version, metrics=metrics
        )

    def _step(self) -> None:
        if not self.burn:
            time.sleep(self.step_s)
            return
        a = np.random.default_rng(0).normal(size=(400, 400))
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.step_s:
            a = np.tanh(a @ a.T / 400.0)

    def predict_split(  # type: ignore[no-untyped-def]
        self, store, detector, split="val", *, progress=None, batch_size=2, on_skip=None
    ):
        self.calls.append("predict_split")
        return workflow.SplitPredictions(split, [])

    def evaluate_model(  # type: ignore[no-untyped-def]
        self,
        store,
        detector,
        split="val",
        *,
        progress=None,
        record=True,
        batch_size=2,
        predictions=None,
    ):
        self.calls.append("evaluate")
        out = {
            "map50": 0.25 * detector.trained,
            "map": 0.1 * detector.trained,
            "per_class": {},
            "split": split,
            **workflow.labelling_effort(store),
        }
        if record:
            workflow.record_metrics(store, detector.model_version, out)
        return out

    def predict_images(  # type: ignore[no-untyped-def]
        self,
        store,
        detector,
        image_ids=None,
        *,
        progress=None,
        should_stop=None,
        batch_size=2,
        on_skip=None,
        tiles=None,
        tile_progress=None,
        distributed=None,
    ):
        self.calls.append("predict")
        ids = workflow.images_to_predict(store) if image_ids is None else list(image_ids)
        cid = store.classes()[0].id
        for image_id in ids:
            store.replace_predictions(image_id, [((5, 5, 45, 45), cid, 0.55)], model_version=None)
        return ids

    def rank_pool(  # type: ignore[no-untyped-def]
        self,
        store,
        detector,
        settings=None,
        *,
        image_ids=None,
        progress=None,
        should_stop=None,
        on_skip=None,
        use_cache=True,
        save=True,
        distributed=None,
        tiles=None,
    ):
        q = settings or workflow.QuerySettings()
        self.calls.append(f"rank:{q.strategy}:{q.unit}")
        pool = [r for r in store.images(split="pool") if r.review_state != "complete"]
        items = [QueryItem(image=r.id, score=1.0 / (k + 1)) for k, r in enumerate(pool)]
        items = items[: q.budget]
        if save:
            store.save_queries(
                items, model_version=detector.model_version or None, settings=asdict(q)
            )
        return items

    def suggest_missed(self, store, detector, image_id, settings=None) -> list[Any]:  # type: ignore[no-untyped-def]
        self.calls.append("suggest")
        return []


def use_fake_workflow(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeWorkflow:
    """Install the fakes where the round and the jobs look the steps up."""
    fake = FakeWorkflow(**kwargs)
    for name in NAMES:
        for module in (workflow, rounds):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(fake, name))
    return fake
