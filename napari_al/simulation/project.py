"""One simulated project: a real store on the simulated clock, its ground truth and oracle, its
model. The pool enters the store without its labels (the oracle reveals them); the test split
enters it labelled, as a labelled import does (split ``test``, ``complete``, boxes ``accepted``
from source ``import``), so the workflow evaluates on it. The model steps (load, train,
predict for the oracle, evaluate) are the workflow's, nothing below it."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.core.costs import Counts, count_answers
from napari_al.core.data import HUMAN_STATUSES, Dataset, ImageRecord
from napari_al.simulation.config import BenchmarkData, SimConfig
from napari_al.simulation.oracle import GroundTruth, Oracle, SimClock

if TYPE_CHECKING:
    from napari_al.core.store import ActionRow, ProjectStore

#: A detector, as the workflow hands it out (``workflow.load_model``); the simulator never
#: reaches below the workflow, so it names no engine type.
Model = Any

#: Idle cut-off for the simulated stores: never reached, every answer's time counts.
IDLE_CUTOFF_S = 1e15
#: Marker action kind in the store's log: ``{"round": r, "phase": ..., ...}``.
MARKER_KIND = "sim_round"
#: The store split that holds the labelled test images (evaluation only: the workflow never
#: trains on it, the pool never contains it, the oracle never sees it).
TEST_SPLIT = "test"
#: Test images run through the detector per forward pass when evaluating.
EVAL_BATCH = 4


def model_settings(config: SimConfig, seed: int) -> workflow.ModelSettings:
    """The simulator's detector settings (``seed``: the heads of a new detector)."""
    return workflow.ModelSettings(
        arch=config.arch,
        weights=config.weights,
        min_size=config.min_size,
        max_size=config.max_size,
        device=config.device,
        seed=seed,
        rpn_proposals_train=config.rpn_proposals_train,
        rpn_proposals_test=config.rpn_proposals_test,
        box_batch_size_per_image=config.box_batch_size_per_image,
        anchors=config.anchors,
    )


def load_detector(store: ProjectStore, config: SimConfig, seed: int) -> Model:
    """The project's latest model version, or a new detector from ``config.weights``
    (:func:`napari_al.core.workflow.load_model` with :func:`model_settings`)."""
    settings = model_settings(config, seed)
    if store.latest_model_version() is not None:
        # a weight source starts a new detector: only when the project has no model yet
        settings = dataclasses.replace(settings, weights=None)
    return workflow.load_model(store, settings)


def predict_queried(store: ProjectStore, detector: Model, image_ids: Sequence[int]) -> list[int]:
    """The boxes the oracle is shown: the detector's predictions on the queried images, stored
    as ``predicted`` (:func:`napari_al.core.workflow.predict_images`). Returns the ids
    predicted."""
    return workflow.predict_images(store, detector, [int(i) for i in image_ids])


def _benchmark_dataset(data: BenchmarkData, pool: bool, test: bool) -> Dataset:
    """The pool without its labels (``unseen`` in split ``pool``) and/or the test split with
    its labels (``complete`` in split ``test``), as one dataset to import."""
    images = []
    if pool:
        images += [
            ImageRecord(path=im.path, width=im.width, height=im.height, split="pool")
            for im in data.pool
        ]
    if test:
        images += [
            ImageRecord(
                path=im.path,
                width=im.width,
                height=im.height,
                boxes=list(im.boxes),
                split=TEST_SPLIT,
                annotated=True,
            )
            for im in data.test
        ]
    parts = ["pool (labels withheld)"] * pool + ["test split (labelled)"] * test
    return Dataset(
        classes=list(data.classes), images=images, source="simulation " + ", ".join(parts)
    )


class SimProject:
    """One simulated project folder: its store on the simulated clock, ground truth, oracle."""

    def __init__(self, folder: Path, config: SimConfig, data: BenchmarkData, create: bool) -> None:
        from napari_al.core.store import ProjectStore

        self.folder = Path(folder)
        self.config = config
        self.clock = SimClock()
        if create:
            self.store = ProjectStore.create(
                self.folder, clock=self.clock, idle_cutoff_s=IDLE_CUTOFF_S
            )
        else:
            self.store = ProjectStore.open(
                self.folder, clock=self.clock, idle_cutoff_s=IDLE_CUTOFF_S
            )
        actions = self.store.actions()
        if actions:
            self.clock.t = max(a.time for a in actions)
        if not self.store.images():
            self.store.import_dataset(_benchmark_dataset(data, pool=True, test=True))
        elif not self.store.images(split=TEST_SPLIT):  # a project made before the test split
            self.store.import_dataset(_benchmark_dataset(data, pool=False, test=True))
        self.classes = [c.name for c in self.store.classes()]
        if self.classes != list(data.classes):
            raise RuntimeError(f"{folder}: class list {self.classes} != {data.classes}")
        test_paths = sorted(r.path for r in self.store.images(split=TEST_SPLIT))
        if test_paths != sorted(self.store.rel_path(im.path) for im in data.test):
            raise RuntimeError(f"{folder}: the stored test split is not the benchmark's")
        by_path = {self.store.rel_path(im.path): im for im in data.pool}
        #: Pool image id -> its true boxes: what the oracle knows (never the test split).
        self.gt: dict[int, GroundTruth] = {}
        for row in self.store.images(split="pool"):
            rec = by_path.get(row.path)
            if rec is None:
                raise RuntimeError(f"{folder}: image {row.path} is not in the pool")
            self.gt[row.id] = GroundTruth.from_record(rec, self.classes)
        self.oracle = Oracle(
            self.store,
            self.clock,
            self.gt,
            config.costs,
            verify_iou=config.verify_iou,
            redraw_iou=config.redraw_iou,
            verify_min_score=config.verify_min_score,
            verify_missed_min_score=config.verify_missed_min_score,
            calibrated=config.calibration != "none",
            rich_answers=config.rich_answers,
            missed_by=config.missed_by,
        )

    def close(self) -> None:
        self.store.close()

    # -- markers in the action log (cost-free: the clock does not move) ------------------

    def markers(self) -> dict[int, dict[str, ActionRow]]:
        out: dict[int, dict[str, ActionRow]] = {}
        for a in self.store.actions(kind=MARKER_KIND):
            out.setdefault(int(a.payload["round"]), {})[str(a.payload["phase"])] = a
        return out

    def mark(self, round_: int, phase: str, **payload: Any) -> int:
        return self.store.log_action(
            MARKER_KIND, payload={"round": round_, "phase": phase, **payload}
        )

    # -- bookkeeping ----------------------------------------------------------------------

    def counts(self) -> Counts:
        return count_answers(self.store.actions())

    def cost_seconds(self) -> float:
        """The store's annotation seconds, checked against the answer counts' cost."""
        logged = self.store.annotation_seconds()
        counted = self.config.costs.seconds(self.counts())
        if not math.isclose(logged, counted, rel_tol=1e-9, abs_tol=1e-6):
            raise RuntimeError(
                f"{self.folder}: action log says {logged:.6f} s but the answers cost "
                f"{counted:.6f} s"
            )
        return logged

    def row(
        self,
        label: tuple[str, str, str],
        seed: int,
        round_: int,
        metrics: Mapping[str, float],
        wall: float,
    ) -> dict[str, Any]:
        """A results row: ``label`` is (strategy, unit, oracle); costs from the action log."""
        c = self.counts()
        steps = sum(int(v.metrics.get("steps", 0) or 0) for v in self.store.model_versions())
        return {
            "strategy": label[0],
            "unit": label[1],
            "oracle": label[2],
            "seed": int(seed),
            "round": int(round_),
            "cost_seconds": round(self.cost_seconds(), 4),
            "boxes_drawn": c.boxes_drawn,
            "verifications": c.verifications,
            "class_changes": c.class_changes,
            "images": c.images,
            "human_boxes": sum(
                b.image_id in self.gt for b in self.store.boxes(statuses=HUMAN_STATUSES)
            ),
            "map50": round(float(metrics["map50"]), 6),
            "map": round(float(metrics["map"]), 6),
            "ece_before": round(float(metrics.get("ece_before", math.nan)), 6),
            "ece_after": round(float(metrics.get("ece_after", math.nan)), 6),
            "train_steps": steps,
            "wall_s": round(float(wall), 4),
        }

    # -- model: the workflow's steps -------------------------------------------------------

    def detector(self, seed: int) -> Model:
        """The latest model version, or a fresh detector on the pretrained backbone."""
        return load_detector(self.store, self.config, seed)

    def evaluate(self, detector: Model) -> dict[str, float]:
        """mAP@0.5 and AP@[.5:.95] on the test split (:func:`napari_al.core.workflow
        .evaluate_model`, pycocotools), recorded on the detector's model version; and the
        version's score calibration (``config.calibration``), fitted on the boxes the oracle
        judged (never on the test split) and measured there: ``ece_before``/``ece_after``
        (:func:`napari_al.core.workflow.calibrate_model`, with the same predictions)."""
        preds = workflow.predict_split(self.store, detector, TEST_SPLIT, batch_size=EVAL_BATCH)
        result = workflow.evaluate_model(self.store, detector, TEST_SPLIT, predictions=preds)
        cal = workflow.calibrate_model(
            self.store,
            detector,
            workflow.CalibrationSettings(method=self.config.calibration),
            split=TEST_SPLIT,
            predictions=preds,
        )
        nan = float("nan")
        return {
            "map50": float(result["map50"]),
            "map": float(result["map"]),
            "ece_before": nan if cal["ece_before"] is None else float(cal["ece_before"]),
            "ece_after": nan if cal["ece_after"] is None else float(cal["ece_after"]),
        }

    def trained_since(self, action_id: int) -> bool:
        """Whether the latest model was trained on labels including action ``action_id``."""
        latest = self.store.latest_model_version()
        if latest is None:
            return False
        last = latest.metrics.get("last_action_id")
        return last is not None and int(last) >= int(action_id)

    def train(self, detector: Model, steps: int, seed: int) -> None:
        """Continue fine-tuning ``detector`` on the project's labels
        (:func:`napari_al.core.workflow.train_model`; at peak lr ``round_lr`` once a model is
        trained, when set), keeping the newest checkpoints."""
        cfg = self.config
        extra = {} if cfg.augment is None else {"augment": cfg.augment}
        continuing = cfg.round_lr is not None and self.store.latest_model_version() is not None
        settings = workflow.TrainSettings(
            steps=steps,
            batch_size=cfg.batch_size,
            lambda_d=cfg.lambda_d,
            lr=cfg.round_lr if continuing else cfg.lr,
            seed=seed,
            noisy_min_score=cfg.noisy_min_score,
            partial_background_weight=cfg.partial_background_weight,
            self_training=cfg.self_training,
            self_training_images=cfg.self_training_images,
            **extra,
        )
        outcome = workflow.train_model(self.store, detector, settings)
        if outcome.model_version is None:
            raise RuntimeError(
                f"{self.folder}: training stopped ({outcome.result.stopped_reason}: "
                f"{outcome.result.message})"
            )
        self.prune_checkpoints()

    def prune_checkpoints(self) -> None:
        keep = max(1, int(self.config.keep_checkpoints))
        versions = self.store.model_versions()
        for v in versions[:-keep]:
            with contextlib.suppress(OSError):
                self.store.abs_path(v).unlink()


def seed_dir(work: Path, seed: int) -> Path:
    """The folder of one seed's projects (``base``, ``full`` and one per strategy)."""
    return Path(work) / f"seed{seed}"


def open_project(folder: Path, config: SimConfig, data: BenchmarkData) -> SimProject:
    """Open the project in ``folder``, or create it (clearing a folder left without a store)."""
    from napari_al.core.store import STORE_FILENAME

    exists = (Path(folder) / STORE_FILENAME).is_file()
    if not exists and Path(folder).exists():
        shutil.rmtree(folder)
    return SimProject(folder, config, data, create=not exists)


def copy_project(src: Path, dst: Path) -> None:
    """Copy a closed project folder (hard-linking checkpoints, which are never rewritten)."""
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(s: str, d: str) -> str:
        if s.endswith(".pt"):
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, tmp, copy_function=link_or_copy)
    os.replace(tmp, dst)
