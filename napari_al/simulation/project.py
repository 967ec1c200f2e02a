"""One simulated project: a real store on the simulated clock, its ground truth and oracle, its
model; and the fixed evaluation split whose labels never enter any store."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.costs import Counts, count_answers
from napari_al.core.data import HUMAN_STATUSES, Dataset, ImageRecord
from napari_al.simulation.config import BenchmarkData, SimConfig
from napari_al.simulation.oracle import GroundTruth, Oracle, SimClock

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ActionRow

#: Idle cut-off for the simulated stores: never reached, every answer's time counts.
IDLE_CUTOFF_S = 1e15
#: Marker action kind in the store's log: ``{"round": r, "phase": ..., ...}``.
MARKER_KIND = "sim_round"


class EvalSplit:
    """The fixed evaluation split, labels in memory (never in a store); images cached."""

    def __init__(self, records: Sequence[ImageRecord], classes: Sequence[str]) -> None:
        self.records = list(records)
        self.classes = list(classes)
        self.gt = [GroundTruth.from_record(r, classes) for r in self.records]
        self._images: list[np.ndarray] | None = None

    def images(self) -> list[np.ndarray]:
        if self._images is None:
            from napari_al.core.loop import load_rgb

            self._images = [load_rgb(r.path) for r in self.records]
        return self._images

    def evaluate(self, detector: Detector, batch_size: int = 4) -> dict[str, float]:
        """mAP@0.5 and COCO AP of ``detector`` (pycocotools, :mod:`napari_al.core.evaluation`)."""
        from napari_al.core.evaluation import evaluate

        if list(detector.classes) != self.classes:
            raise ValueError("the detector's classes differ from the test set's")
        imgs = self.images()
        preds = []
        for start in range(0, len(imgs), batch_size):
            preds.extend(detector.predict(imgs[start : start + batch_size], batch_size=batch_size))
        result = evaluate([(g.boxes, g.labels) for g in self.gt], preds, self.classes)
        return {"map50": float(result.map50), "map": float(result.map)}


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
            pool_only = Dataset(
                classes=list(data.classes),
                images=[
                    ImageRecord(path=im.path, width=im.width, height=im.height, split="pool")
                    for im in data.pool
                ],
                source="simulation pool (labels withheld)",
            )
            self.store.import_dataset(pool_only)
        self.classes = [c.name for c in self.store.classes()]
        if self.classes != list(data.classes):
            raise RuntimeError(f"{folder}: class list {self.classes} != {data.classes}")
        by_path = {self.store.rel_path(im.path): im for im in data.pool}
        self.gt: dict[int, GroundTruth] = {}
        for row in self.store.images():
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
            "human_boxes": len(self.store.boxes(statuses=HUMAN_STATUSES)),
            "map50": round(float(metrics["map50"]), 6),
            "map": round(float(metrics["map"]), 6),
            "train_steps": steps,
            "wall_s": round(float(wall), 4),
        }

    # -- model ----------------------------------------------------------------------------

    def detector(self, seed: int) -> Detector:
        """The latest checkpoint, or a fresh detector on the pretrained backbone."""
        from napari_al.core.loop import load_detector

        cfg = self.config
        if self.store.latest_model_version() is not None:
            return load_detector(self.store, device=cfg.device)
        from napari_al.core.engine import Detector

        det = Detector(
            self.classes,
            cfg.arch,
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            device=cfg.device,
            seed=seed,
            rpn_proposals_train=cfg.rpn_proposals_train,
            rpn_proposals_test=cfg.rpn_proposals_test,
            box_batch_size_per_image=cfg.box_batch_size_per_image,
        )
        return det

    def trained_since(self, action_id: int) -> bool:
        """Whether the latest model was trained on labels including action ``action_id``."""
        latest = self.store.latest_model_version()
        if latest is None:
            return False
        last = latest.metrics.get("last_action_id")
        return last is not None and int(last) >= int(action_id)

    def train(self, detector: Detector, steps: int, seed: int) -> None:
        from napari_al.core.loop import train_project

        cfg = self.config
        outcome = train_project(
            self.store,
            detector,
            steps=steps,
            lambda_d=cfg.lambda_d,
            seed=seed,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            noisy_min_score=cfg.noisy_min_score,
            partial_background_weight=cfg.partial_background_weight,
        )
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
