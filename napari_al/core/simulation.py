"""Simulated-oracle benchmark: how many annotation seconds does each strategy save?

``napari-al simulate`` replays the active-learning loop on a labelled dataset with an oracle
that answers from the ground truth and charges every answer its published human cost
(:mod:`napari_al.core.costs`; Papadopoulos et al. 2016, 2017). It runs through the product's
own path, so the number it reports is what the plugin would measure on a person:

- one real :class:`~napari_al.core.store.ProjectStore` per (strategy, seed), the pool imported
  WITHOUT its annotations: the ground truth stays in the simulator's memory and reaches the
  store only through the oracle's answers;
- the oracle answers through the store's user actions (``draw_box``, ``accept_box``,
  ``reject_box``, ``set_box_class``, ``correct_box``, ``set_review_state``) on a simulated clock
  that it advances by each answer's cost before the answer, so the cost IS the store's action
  log (:meth:`~napari_al.core.store.ProjectStore.annotation_seconds`), with an idle cut-off too
  large to ever apply;
- training is :func:`~napari_al.core.loop.train_project` (continuous fine-tuning from the last
  checkpoint; unverified predictions on partly reviewed images are noisy labels damped by
  ``lambda_d``, Desai et al. eq. 3), querying is :func:`~napari_al.core.loop.rank_project`,
  verification uses the boxes :func:`~napari_al.core.loop.predict_project` stored;
- evaluation runs the detector on a fixed test split whose labels never enter any store.

Oracle modes (``SimStrategy.oracle``):

- ``draw``: image-level full drawing, the classic baseline: every ground-truth box of a chosen
  image is drawn (``draw_s`` each) and the image is marked complete;
- ``verify``: Papadopoulos et al. 2016 / Benenson's slides ("verify instead of draw"): each of
  the model's boxes on a chosen image gets a yes/no question (``verify_s``). Yes when IoU >=
  0.5 with a not yet matched ground-truth box of the same class (accepted as is); a box at IoU
  >= 0.5 with a box of another class gets a class change (+ ``class_change_s``); a badly placed
  box (best IoU in [``redraw_iou``, 0.5) with a free ground-truth box) is redrawn (+ ``draw_s``);
  the rest (false positives, duplicates) are rejected. Ground-truth boxes left unmatched (missed
  objects) are drawn. Matching is greedy by score, same-class matches first;
- ``box``: Desai et al. box-level querying: the chosen candidate boxes are each verified
  (``verify_s``); one at IoU >= 0.5 with a free ground-truth box takes that box's class (a class
  change if it differs), below 0.5 it is marked background (rejected). Nothing else in the image
  is labelled: the image becomes ``partial`` and its other predictions stay noisy labels.

The loop, per seed: a random initial set (the same for every strategy; drawn in full; one
shared initial model, as in Desai et al.), then ``rounds`` of query -> oracle -> retrain ->
evaluate for each strategy. Results go to ``results.csv`` after every round (rows are also
kept as markers in each store's action log), so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.costs import CostModel, Counts, count_answers
from napari_al.core.data import HUMAN_STATUSES, Dataset, ImageRecord

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ActionRow, BoxRow, ProjectStore

# --------------------------------------------------------------------------- constants

#: The simulated clock starts here (Unix seconds); small, so float sums stay exact to ~1e-10 s.
CLOCK_T0 = 1_000_000.0
#: Idle cut-off for the simulated stores: never reached, every answer's time counts.
IDLE_CUTOFF_S = 1e15
#: A weak prediction overlapping a shown or human box this much is not a possibly missed object.
MISSED_IOU = 0.3
#: Marker action kind in the store's log: ``{"round": r, "phase": ..., ...}``.
MARKER_KIND = "sim_round"
RESULTS_CSV = "results.csv"
PLOT_PNG = "map50_vs_seconds.png"
SUMMARY_MD = "summary.md"
CONFIG_JSON = "config.json"
RUN_INFO_JSON = "run_info.json"
FULL_NAME = "full-supervision"
#: Columns of ``results.csv`` (costs and counts are cumulative up to and including the round).
CSV_COLUMNS = (
    "strategy",
    "unit",
    "oracle",
    "seed",
    "round",
    "cost_seconds",
    "boxes_drawn",
    "verifications",
    "class_changes",
    "images",
    "human_boxes",
    "map50",
    "map",
    "train_steps",
    "wall_s",
    "query_s",
    "answer_s",
    "train_s",
    "eval_s",
)
#: Columns that hold machine time, not results (they differ between identical runs).
TIMING_COLUMNS = ("wall_s", "query_s", "answer_s", "train_s", "eval_s")
ORACLES = ("draw", "verify", "box")

# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class SimStrategy:
    """One benchmarked way of choosing what to ask and how the person answers.

    ``scorer`` is a :class:`~napari_al.core.scoring.Strategy` spec for
    :func:`~napari_al.core.loop.rank_project`, or ``random`` (uniform over pool images, no
    model involved). ``diversity``/``candidate_factor`` as in
    :func:`~napari_al.core.selection.select_images` (``inf``: core-set over the whole pool).
    """

    name: str
    scorer: str
    unit: str = "image"
    oracle: str = "verify"
    diversity: str | None = None
    candidate_factor: float = 3.0
    aggregation: str = "sum"
    description: str = ""

    def __post_init__(self) -> None:
        if self.unit not in ("image", "box"):
            raise ValueError(f"strategy {self.name}: unit must be image or box, not {self.unit!r}")
        if self.oracle not in ORACLES:
            raise ValueError(f"strategy {self.name}: oracle must be one of {ORACLES}")
        if (self.unit == "box") != (self.oracle == "box"):
            raise ValueError(f"strategy {self.name}: the box oracle goes with the box unit")
        if self.scorer == "random" and self.unit == "box":
            raise ValueError(f"strategy {self.name}: random box selection is not implemented")


_S = SimStrategy
#: The strategies the benchmark knows by name.
STRATEGIES: dict[str, SimStrategy] = {
    s.name: s
    for s in (
        _S("random-draw", "random", oracle="draw", description="random images, boxes drawn"),
        _S("random-verify", "random", description="random images, model boxes verified"),
        _S("entropy", "entropy", description="summed box entropy, verified"),
        _S("entropy-draw", "entropy", oracle="draw", description="summed box entropy, drawn"),
        _S("consistency", "consistency", description="flip self-consistency, verified"),
        _S("mc-mi", "mutual_information", description="MC-dropout mutual information, verified"),
        _S("missed", "missed", description="expected missed objects, verified"),
        _S(
            "coreset",
            "entropy",
            diversity="coreset",
            candidate_factor=math.inf,
            description="core-set k-center on image embeddings over the whole pool, verified",
        ),
        _S(
            "entropy-coreset",
            "entropy",
            diversity="coreset",
            candidate_factor=3.0,
            description="two-stage: top 3xB by entropy, then core-set, verified",
        ),
        _S(
            "box-entropy",
            "entropy",
            unit="box",
            oracle="box",
            description="box-level (Desai et al.): most uncertain single boxes, verified",
        ),
    )
}
#: Always run: the baselines every other strategy is judged against.
BASELINES = ("random-draw", "random-verify", "entropy")
#: The strategies the issue requires on BCCD.
BCCD_STRATEGIES = (
    "random-draw",
    "random-verify",
    "entropy",
    "consistency",
    "mc-mi",
    "missed",
    "coreset",
    "entropy-coreset",
    "box-entropy",
)


def resolve_strategies(names: Iterable[str] | None) -> list[SimStrategy]:
    """The baselines, then the named strategies (registry names, or any scorer spec, which runs
    image-level with verification), without duplicates."""
    from napari_al.core.scoring.strategy import Strategy

    out: list[SimStrategy] = []
    seen: set[str] = set()
    for name in [*BASELINES, *(names or ())]:
        name = name.strip()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in STRATEGIES:
            out.append(STRATEGIES[name])
            continue
        try:
            Strategy(name)
        except ValueError as exc:
            raise ValueError(
                f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)} or a scorer "
                f"spec ({exc})"
            ) from None
        out.append(SimStrategy(name, name, description=f"{name}, verified"))
    return out


# --------------------------------------------------------------------------- configuration


@dataclass
class SimConfig:
    """Every setting of a benchmark run (saved as ``config.json`` beside the results)."""

    data: str | None = None
    fmt: str | None = None
    #: Held out for evaluation when the data has neither a ``test`` nor a ``val`` split.
    test_fraction: float = 0.2
    #: Splits that form the pool (images with no split join it too).
    pool_splits: tuple[str, ...] = ("train", "pool")
    max_pool: int | None = None
    max_test: int | None = None
    strategies: tuple[str, ...] = BCCD_STRATEGIES
    seeds: int = 3
    seed_start: int = 0
    rounds: int = 4
    init_images: int = 10
    budget_images: int = 10
    budget_boxes: int = 100
    #: Score only a random subset of the pool per round (None: all of it).
    pool_subset: int | None = None
    init_steps: int = 60
    round_steps: int = 30
    #: Full-supervision steps (None: init_steps + rounds x round_steps, the same budget).
    full_steps: int | None = None
    full_supervision: bool = True
    batch_size: int = 2
    lambda_d: float = 0.5
    #: Predictions on partly reviewed images below this score are not noisy labels.
    noisy_min_score: float = 0.0
    #: Loss weight of background on partly reviewed images (1: as on complete images).
    partial_background_weight: float = 1.0
    lr: float | None = None
    arch: str = "fasterrcnn_mobilenet_v2_fpn"
    min_size: int = 240
    max_size: int = 320
    rpn_proposals_train: int = 300
    rpn_proposals_test: int = 100
    box_batch_size_per_image: int = 128
    device: str | None = None
    workers: int = 1
    #: torch CPU threads per worker (None: torch's default when workers == 1, else 1).
    threads: int | None = None
    costs: CostModel = field(default_factory=CostModel)
    verify_iou: float = 0.5
    redraw_iou: float = 0.1
    #: Model boxes scoring below this are not shown for verification (None: verify_s / draw_s,
    #: where verifying a box starts to pay off if scores are calibrated).
    verify_min_score: float | None = None
    #: Ask yes/no about weaker predictions (score >= this, below ``verify_min_score``) that no
    #: shown or human box covers, before drawing what is still missing (None: never).
    verify_missed_min_score: float | None = None
    #: Checkpoints kept on disk per run (older model files are deleted; rows stay in the store).
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.costs, Mapping):
            self.costs = CostModel(**self.costs)
        self.pool_splits = tuple(self.pool_splits)
        self.strategies = tuple(self.strategies)
        for name in ("seeds", "rounds", "init_images", "budget_images", "budget_boxes"):
            if int(getattr(self, name)) < (0 if name == "rounds" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 0 < self.verify_iou <= 1 or self.redraw_iou < 0:
            raise ValueError("verify_iou must lie in (0, 1] and redraw_iou be >= 0")

    @property
    def total_full_steps(self) -> int:
        if self.full_steps is not None:
            return int(self.full_steps)
        return int(self.init_steps + self.rounds * self.round_steps)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["costs"] = self.costs.as_dict()
        d["pool_splits"] = list(self.pool_splits)
        d["strategies"] = list(self.strategies)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


#: Settings that change the numbers: a results folder made with other values is refused.
_RESULT_KEYS = (
    "data",
    "fmt",
    "test_fraction",
    "pool_splits",
    "max_pool",
    "max_test",
    "rounds",
    "init_images",
    "budget_images",
    "budget_boxes",
    "pool_subset",
    "init_steps",
    "round_steps",
    "full_steps",
    "batch_size",
    "lambda_d",
    "noisy_min_score",
    "partial_background_weight",
    "lr",
    "arch",
    "min_size",
    "max_size",
    "rpn_proposals_train",
    "rpn_proposals_test",
    "box_batch_size_per_image",
    "costs",
    "verify_iou",
    "redraw_iou",
    "verify_min_score",
    "verify_missed_min_score",
)


def default_bccd_dir() -> Path | None:
    """BCCD beside a clone (``../shared/datasets/bccd``) or ``$NAPARI_AL_BCCD_DIR``."""
    env = os.environ.get("NAPARI_AL_BCCD_DIR")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates.append(repo.parent / "shared" / "datasets" / "bccd")
    for c in candidates:
        if (c / "Annotations").is_dir():
            return c
    return None


def preset(name: str) -> SimConfig:
    """The ``ci`` or ``bccd`` preset (see ``docs/simulation.md`` for the choices)."""
    if name == "ci":
        from napari_al.sample import sample_dir

        return SimConfig(
            data=str(sample_dir()),
            fmt="voc",
            strategies=(
                "random-draw",
                "random-verify",
                "entropy",
                "entropy-coreset",
                "box-entropy",
            ),
            seeds=1,
            rounds=2,
            init_images=3,
            budget_images=2,
            budget_boxes=6,
            init_steps=3,
            round_steps=1,
            full_steps=3,
            min_size=128,
            max_size=171,
            rpn_proposals_train=200,
            rpn_proposals_test=100,
            box_batch_size_per_image=64,
            workers=1,
            threads=1,
        )
    if name == "bccd":
        bccd = default_bccd_dir()
        return SimConfig(
            data=None if bccd is None else str(bccd),
            fmt="voc",
            strategies=BCCD_STRATEGIES,
            seeds=3,
            rounds=3,
            init_images=5,
            budget_images=15,
            budget_boxes=400,
            pool_subset=60,
            init_steps=200,
            round_steps=50,
            full_steps=800,
            min_size=240,
            max_size=320,
            box_batch_size_per_image=64,
            workers=2,
            threads=1,
        )
    raise ValueError(f"unknown preset {name!r}; use ci or bccd")


# --------------------------------------------------------------------------- data


@dataclass
class BenchmarkData:
    """The pool (labels kept here, never imported) and the fixed test split."""

    classes: list[str]
    pool: list[ImageRecord]
    test: list[ImageRecord]
    note: str


def load_data(config: SimConfig) -> BenchmarkData:
    """Read the dataset and split it: test = the ``test`` split, else ``val``, else a seeded
    ``test_fraction`` hold-out (seed 0: the same for every run); pool = ``pool_splits`` (and
    images without a split). Only annotated images take part."""
    from napari_al.core.formats import read_dataset

    if not config.data:
        raise FileNotFoundError("no dataset given: pass --data PATH (or use --preset ci)")
    ds: Dataset = read_dataset(Path(config.data), config.fmt)
    images = sorted((im for im in ds.images if im.annotated), key=lambda im: str(im.path))
    if not images:
        raise ValueError(f"{config.data}: no annotated images to simulate with")
    splits = {im.split for im in images}
    if "test" in splits or "val" in splits:
        held = "test" if "test" in splits else "val"
        test = [im for im in images if im.split == held]
        pool = [im for im in images if im.split in config.pool_splits or im.split is None]
        note = f"test = the dataset's {held!r} split; pool = splits {list(config.pool_splits)}"
    else:
        rng = np.random.default_rng(0)
        order = rng.permutation(len(images))
        n_test = max(1, round(config.test_fraction * len(images)))
        test_idx = set(order[:n_test].tolist())
        test = [im for i, im in enumerate(images) if i in test_idx]
        pool = [im for i, im in enumerate(images) if i not in test_idx]
        note = f"no split files: {n_test} images ({config.test_fraction:.0%}) held out, seed 0"
    if config.max_pool is not None and len(pool) > config.max_pool:
        keep = np.sort(np.random.default_rng(1).permutation(len(pool))[: config.max_pool])
        pool = [pool[i] for i in keep]
    if config.max_test is not None and len(test) > config.max_test:
        keep = np.sort(np.random.default_rng(2).permutation(len(test))[: config.max_test])
        test = [test[i] for i in keep]
    if not pool or not test:
        raise ValueError(f"{config.data}: empty pool ({len(pool)}) or test split ({len(test)})")
    if config.init_images > len(pool):
        raise ValueError(f"init_images {config.init_images} > pool size {len(pool)}")
    classes = list(ds.classes)
    for im in [*pool, *test]:
        for b in im.boxes:
            if b.label not in classes:
                classes.append(b.label)
    return BenchmarkData(classes, pool, test, note)


# --------------------------------------------------------------------------- oracle


class SimClock:
    """The stores' clock: stands still except when the oracle spends annotation time."""

    def __init__(self, t0: float = CLOCK_T0) -> None:
        self.t = float(t0)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.t += float(seconds)


@dataclass(frozen=True)
class GroundTruth:
    """The true boxes of one image: ``boxes`` (K, 4) xyxy, ``labels`` (K,) class indices."""

    boxes: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_record(cls, rec: ImageRecord, classes: Sequence[str]) -> GroundTruth:
        index = {c: i for i, c in enumerate(classes)}
        return cls(
            np.asarray([b.xyxy() for b in rec.boxes], np.float64).reshape(-1, 4),
            np.asarray([index[b.label] for b in rec.boxes], np.int64),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def claim_ground_truth(human_boxes: np.ndarray, gt: GroundTruth, min_iou: float = 0.5) -> set[int]:
    """Ground-truth boxes already covered by human boxes (greedy one-to-one, IoU >= min_iou)."""
    human_boxes = np.asarray(human_boxes, np.float64).reshape(-1, 4)
    if not len(human_boxes) or not len(gt):
        return set()
    from napari_al.core.scoring.base import match_boxes

    _, cols = match_boxes(box_iou(human_boxes, gt.boxes), min_iou)
    return {int(c) for c in cols}


def plan_verification(
    pred_boxes: np.ndarray,
    pred_labels: np.ndarray,
    gt: GroundTruth,
    claimed: Iterable[int] = (),
    verify_iou: float = 0.5,
    redraw_iou: float = 0.1,
) -> tuple[list[tuple[str, int | None]], list[int]]:
    """What an exact annotator answers about each model box, and which true boxes stay missing.

    Boxes are taken in the given order (by decreasing score). Three greedy passes, as a person
    looking at the whole image would pair boxes with objects: (1) IoU >= ``verify_iou`` with a
    free true box of the same class -> ``accept``; (2) IoU >= ``verify_iou`` with a free true box
    of another class -> ``set_class``; (3) IoU >= ``redraw_iou`` with a free true box ->
    ``correct`` (redrawn onto it). Everything else -> ``reject``. Returns ``[(decision, true box
    index or None)]`` per model box and the indices of the true boxes no box matched (to draw).
    """
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    pred_labels = np.asarray(pred_labels, np.int64).reshape(-1)
    n = pred_boxes.shape[0]
    free = set(range(len(gt))) - set(claimed)
    iou = box_iou(pred_boxes, gt.boxes) if n and len(gt) else np.zeros((n, len(gt)))
    plan: list[tuple[str, int | None]] = [("reject", None)] * n
    done = np.zeros(n, bool)
    passes = (
        ("accept", verify_iou, True),
        ("set_class", verify_iou, False),
        ("correct", redraw_iou, False),
    )
    for decision, threshold, same_class in passes:
        if not math.isfinite(threshold) or threshold > 1:
            continue
        for i in range(n):
            if done[i] or not free:
                continue
            cands = [
                j
                for j in sorted(free)
                if iou[i, j] >= threshold and (not same_class or gt.labels[j] == pred_labels[i])
            ]
            if not cands:
                continue
            j = max(cands, key=lambda k: (iou[i, k], -k))
            plan[i] = (decision, j)
            done[i] = True
            free.discard(j)
    return plan, sorted(free)


class Oracle:
    """Answers queries from the ground truth through the store's user actions.

    Before each action the clock advances by that answer's cost, so the store logs it with
    ``dt`` = the cost. Answers are idempotent: human boxes already on an image claim their
    true boxes first, and a box already judged is not asked again (this makes resuming safe).
    """

    def __init__(
        self,
        store: ProjectStore,
        clock: SimClock,
        ground_truth: Mapping[int, GroundTruth],
        costs: CostModel | None = None,
        verify_iou: float = 0.5,
        redraw_iou: float = 0.1,
        verify_min_score: float | None = None,
        verify_missed_min_score: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.gt = ground_truth
        self.costs = costs or CostModel()
        self.verify_iou = float(verify_iou)
        self.redraw_iou = float(redraw_iou)
        if verify_min_score is None:
            verify_min_score = self.costs.verify_threshold
        self.verify_min_score = float(verify_min_score)
        self.verify_missed_min_score = verify_missed_min_score
        self.class_ids = [c.id for c in store.classes()]
        self._index = {cid: i for i, cid in enumerate(self.class_ids)}

    def _charge(self, kind: str) -> None:
        self.clock.advance(self.costs.of_kind(kind))

    def _claimed(self, image_id: int) -> set[int]:
        human = self.store.boxes(image_id=image_id, statuses=HUMAN_STATUSES)
        return claim_ground_truth(
            np.asarray([b.xyxy for b in human], np.float64), self.gt[image_id], self.verify_iou
        )

    def _draw(self, image_id: int, j: int) -> int:
        gt = self.gt[image_id]
        self._charge("draw")
        return self.store.draw_box(image_id, gt.boxes[j].tolist(), self.class_ids[gt.labels[j]])

    def _complete(self, image_id: int) -> None:
        if self.store.image(image_id).review_state != "complete":
            self._charge("complete")
            self.store.set_review_state(image_id, "complete")

    def draw_image(self, image_id: int) -> int:
        """Full drawing: every true box not yet labelled is drawn; returns how many."""
        todo = sorted(set(range(len(self.gt[image_id]))) - self._claimed(image_id))
        for j in todo:
            self._draw(image_id, j)
        self._complete(image_id)
        return len(todo)

    def _apply(self, box_id: int, gt: GroundTruth, decision: str, j: int | None) -> None:
        """Charge one answer about a model box and make it in the store."""
        self._charge(decision)
        if decision == "accept":
            self.store.accept_box(box_id)
        elif decision == "set_class":
            self.store.set_box_class(box_id, self.class_ids[gt.labels[j]])
        elif decision == "correct":
            self.store.correct_box(box_id, gt.boxes[j].tolist(), self.class_ids[gt.labels[j]])
        else:
            self.store.reject_box(box_id)

    def _judge_one(
        self, box: BoxRow, gt: GroundTruth, claimed: Iterable[int]
    ) -> tuple[str, int | None]:
        """One yes/no question about one model box (no redraw: a misplaced box is a no)."""
        plan, _ = plan_verification(
            np.asarray([box.xyxy], np.float64),
            np.asarray([self._index[box.class_id]], np.int64),
            gt,
            claimed,
            self.verify_iou,
            redraw_iou=math.inf,
        )
        decision, j = plan[0]
        self._apply(box.id, gt, decision, j)
        return decision, j

    def verify_image(self, image_id: int) -> dict[str, int]:
        """Verify the unjudged model boxes shown (score >= ``verify_min_score``), draw what they
        missed, mark the image complete. Returns the number of answers of each kind."""
        gt = self.gt[image_id]
        pending = [
            b
            for b in self.store.boxes(image_id=image_id, statuses=("predicted", "pseudo"))
            if b.score is None or b.score >= self.verify_min_score
        ]
        pending.sort(key=lambda b: (-(b.score if b.score is not None else 0.0), b.id))
        plan, missing = plan_verification(
            np.asarray([b.xyxy for b in pending], np.float64),
            np.asarray([self._index[b.class_id] for b in pending], np.int64),
            gt,
            self._claimed(image_id),
            self.verify_iou,
            self.redraw_iou,
        )
        tally = dict.fromkeys(("accept", "set_class", "correct", "reject", "draw"), 0)
        for box, (decision, j) in zip(pending, plan, strict=True):
            self._apply(box.id, gt, decision, j)
            tally[decision] += 1
        if self.verify_missed_min_score is not None and missing:
            missing = self._ask_about_missed(image_id, pending, missing, tally)
        for j in missing:
            self._draw(image_id, j)
        tally["draw"] = len(missing)
        self._complete(image_id)
        return tally

    def _ask_about_missed(
        self, image_id: int, shown: Sequence[BoxRow], missing: list[int], tally: dict[str, int]
    ) -> list[int]:
        """Before drawing the objects the shown boxes missed, ask yes/no about the weaker
        predictions that no shown or human box covers (IoU < ``MISSED_IOU``, as the GUI's
        "possibly missed" marks), best first: a yes (IoU >= ``verify_iou`` with a missing true
        box) costs ``verify_s`` instead of ``draw_s``. Returns the true boxes still missing."""
        gt = self.gt[image_id]
        floor = float(self.verify_missed_min_score or 0.0)
        shown_ids = {b.id for b in shown}
        weak = [
            b
            for b in self.store.boxes(image_id=image_id, statuses="predicted")
            if b.id not in shown_ids and b.score is not None and floor <= b.score
        ]
        weak.sort(key=lambda b: (-float(b.score or 0.0), b.id))
        covered = [
            b.xyxy
            for b in self.store.boxes(image_id=image_id)
            if b.status in HUMAN_STATUSES or b.id in shown_ids
        ]
        free = set(missing)
        for box in weak:
            if not free:
                break
            if (
                covered
                and box_iou(
                    np.asarray([box.xyxy], np.float64), np.asarray(covered, np.float64)
                ).max()
                >= MISSED_IOU
            ):
                continue
            decision, j = self._judge_one(box, gt, set(range(len(gt))) - free)
            tally[decision] += 1
            tally["missed_asked"] = tally.get("missed_asked", 0) + 1
            covered.append(box.xyxy)
            if j is not None:
                free.discard(j)
        return sorted(free)

    def answer_box(self, box_id: int) -> str:
        """Box-level query (Desai et al.): one model box verified, class fixed if needed, or
        marked background below ``verify_iou``. The image becomes ``partial``. Returns the
        decision, or ``skipped`` when the box was already judged."""
        box = self.store.box(box_id)
        if box.status not in ("predicted", "pseudo"):
            return "skipped"
        image_id = box.image_id
        if self.store.image(image_id).review_state == "unseen":
            self._charge("review_state")
            self.store.set_review_state(image_id, "partial")
        decision, _ = self._judge_one(box, self.gt[image_id], self._claimed(image_id))
        return decision


# --------------------------------------------------------------------------- evaluation


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


# --------------------------------------------------------------------------- results file


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """An exclusive lock on ``path``.lock (POSIX flock; no lock elsewhere)."""
    lock = Path(str(path) + ".lock")
    with open(lock, "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        try:
            yield
        finally:
            with contextlib.suppress(ImportError):
                import fcntl

                fcntl.flock(fh, fcntl.LOCK_UN)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results CSV with numbers parsed (empty list when missing)."""
    path = Path(path)
    if not path.is_file():
        return []
    ints = {"seed", "round", "boxes_drawn", "verifications", "class_changes", "images"}
    ints |= {"human_boxes", "train_steps"}
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if k in ints:
                    parsed[k] = int(v)
                elif k in ("strategy", "unit", "oracle"):
                    parsed[k] = v
                else:
                    parsed[k] = float(v) if v not in ("", None) else math.nan
            out.append(parsed)
    return out


def _row_key(row: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(row["strategy"]), int(row["seed"]), int(row["round"]))


def _fmt_cell(k: str, v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6f}" if k in ("map50", "map") else f"{v:.4f}"
    return str(v)


def append_result(path: Path, row: Mapping[str, Any]) -> bool:
    """Append a row unless its (strategy, seed, round) is already there; returns whether added."""
    path = Path(path)
    with _locked(path):
        if _row_key(row) in {_row_key(r) for r in read_results(path)}:
            return False
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(CSV_COLUMNS)
            w.writerow([_fmt_cell(k, row.get(k, "")) for k in CSV_COLUMNS])
            f.flush()
            os.fsync(f.fileno())
        return True


def sort_results(path: Path, order: Sequence[str]) -> None:
    """Rewrite the CSV sorted by strategy (``order``), seed and round (atomic replace)."""
    path = Path(path)
    with _locked(path):
        rows = read_results(path)
        rank = {n: i for i, n in enumerate(order)}
        rows.sort(
            key=lambda r: (rank.get(r["strategy"], len(rank)), r["strategy"], r["seed"], r["round"])
        )
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                w.writerow([_fmt_cell(k, r.get(k, "")) for k in CSV_COLUMNS])
        os.replace(tmp, path)


# --------------------------------------------------------------------------- one project


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


def _with_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn(config, ...)`` under :func:`_threads`."""
    import functools

    @functools.wraps(fn)
    def wrapper(config: SimConfig, *args: Any, **kwargs: Any) -> Any:
        with _threads(config):
            return fn(config, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _threads(config: SimConfig) -> Any:
    """Run with ``config.threads`` torch threads (results differ bitwise between thread counts,
    so every entry point applies the configured count)."""
    if not config.threads:
        yield
        return
    from napari_al.core.engine import num_threads

    with num_threads(config.threads):
        yield


# --------------------------------------------------------------------------- the loop


def _seed_dir(work: Path, seed: int) -> Path:
    return Path(work) / f"seed{seed}"


def _choose_random(ids: Sequence[int], k: int, *entropy: int) -> list[int]:
    rng = np.random.default_rng(list(entropy))
    ids = sorted(ids)
    pick = rng.choice(len(ids), size=min(k, len(ids)), replace=False)
    return [ids[int(i)] for i in pick]


Notify = Callable[[str], None]


def _do_round(
    proj: SimProject,
    r: int,
    seed: int,
    detector: Detector | None,
    choose: Callable[[Detector | None], dict[str, Any]],
    answer: Callable[[dict[str, Any], Detector | None, ActionRow], None],
    steps: int,
    tests: EvalSplit,
    label: tuple[str, str, str],
) -> tuple[dict[str, Any], Detector]:
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
    metrics = tests.evaluate(detector)
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
    folder = _seed_dir(work, seed) / "base"
    proj = _open_project(folder, config, data)
    try:
        done = proj.markers().get(0, {}).get("evaluated")
        if done is not None:
            return dict(done.payload["row"])
        tests = EvalSplit(data.test, proj.classes)

        def choose(_det: Detector | None) -> dict[str, Any]:
            ids = [r.id for r in proj.store.images(split="pool")]
            return {"images": _choose_random(ids, config.init_images, seed, 0)}

        def answer(q: dict[str, Any], _det: Detector | None, _m: ActionRow) -> None:
            for i in q["images"]:
                proj.oracle.draw_image(int(i))

        label = ("initial", "image", "draw")
        row, _ = _do_round(proj, 0, seed, None, choose, answer, config.init_steps, tests, label)
        return row
    finally:
        proj.close()


def _open_project(folder: Path, config: SimConfig, data: BenchmarkData) -> SimProject:
    from napari_al.core.store import STORE_FILENAME

    exists = (Path(folder) / STORE_FILENAME).is_file()
    if not exists and Path(folder).exists():
        shutil.rmtree(folder)
    return SimProject(folder, config, data, create=not exists)


def _copy_project(src: Path, dst: Path) -> None:
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
    folder = _seed_dir(work, seed) / "full"
    proj = _open_project(folder, config, data)
    try:
        done = proj.markers().get(0, {}).get("evaluated")
        if done is None:
            tests = EvalSplit(data.test, proj.classes)

            def choose(_det: Detector | None) -> dict[str, Any]:
                return {"images": [r.id for r in proj.store.images(split="pool")]}

            def answer(q: dict[str, Any], _det: Detector | None, _m: ActionRow) -> None:
                for i in q["images"]:
                    proj.oracle.draw_image(int(i))

            label = (FULL_NAME, "image", "draw")
            row, _ = _do_round(
                proj, 0, seed, None, choose, answer, config.total_full_steps, tests, label
            )
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

    folder = _seed_dir(work, seed) / strategy.name
    if not (folder / STORE_FILENAME).is_file():
        base = _seed_dir(work, seed) / "base"
        if not (base / STORE_FILENAME).is_file():
            run_base(config, data, work, seed)
        if folder.exists():
            shutil.rmtree(folder)
        _copy_project(base, folder)
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
        tests = EvalSplit(data.test, proj.classes)
        detector: Detector | None = None
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
                    tests,
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
    detector: Detector | None,
    seed: int,
    r: int,
) -> dict[str, Any]:
    """The query of round ``r``: image ids, or candidate boxes ``[image, x1, y1, x2, y2]``."""
    from napari_al.core.loop import pool_image_ids, rank_project

    ids = pool_image_ids(proj.store)
    if not ids:  # the pool is exhausted
        return {"images": []} if strategy.unit == "image" else {"boxes": [], "budget": 0}
    if strategy.scorer == "random":
        return {"images": _choose_random(ids, config.budget_images, seed, r)}
    assert detector is not None
    candidates = ids
    if config.pool_subset is not None and len(ids) > config.pool_subset:
        candidates = sorted(_choose_random(ids, config.pool_subset, seed, r, 1))
    if strategy.unit == "image":
        items = rank_project(
            proj.store,
            detector,
            strategy=strategy.scorer,
            unit="image",
            budget=config.budget_images,
            diversity=strategy.diversity,
            aggregation=strategy.aggregation,
            seed=seed * 1000 + r,
            image_ids=candidates,
            candidate_factor=strategy.candidate_factor,
            use_cache=False,
        )
        return {"images": [int(it.image) for it in items]}
    # box level: over-ask, since boxes on objects already answered are skipped
    items = rank_project(
        proj.store,
        detector,
        strategy=strategy.scorer,
        unit="box",
        budget=config.budget_boxes * 4 + 20,
        aggregation=strategy.aggregation,
        seed=seed * 1000 + r,
        image_ids=candidates,
        use_cache=False,
    )
    return {
        "boxes": [[int(it.image), *map(float, it.box)] for it in items if it.box is not None],
        "budget": config.budget_boxes,
    }


def _answer(
    proj: SimProject,
    strategy: SimStrategy,
    detector: Detector | None,
    query: dict[str, Any],
    marker: ActionRow,
    config: SimConfig,
) -> None:
    """The oracle answers a stored query (resumable: answers already given are not repeated)."""
    from napari_al.core.loop import predict_project

    store = proj.store
    if strategy.unit == "image":
        ids = [int(i) for i in query["images"]]
        if strategy.oracle == "verify":
            assert detector is not None
            fresh = [
                i
                for i in ids
                if store.image(i).review_state != "complete"
                and not store.boxes(image_id=i, statuses=(*HUMAN_STATUSES, "rejected"))
            ]
            predict_project(store, detector, image_ids=fresh)
            for i in ids:
                proj.oracle.verify_image(i)
        else:
            for i in ids:
                proj.oracle.draw_image(i)
        return
    # box level
    assert detector is not None
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
        judged = store.boxes(image_id=image_id, statuses=(*HUMAN_STATUSES, "rejected"))
        if judged and box_iou(box, [b.xyxy for b in judged]).max() >= config.verify_iou:
            continue  # an object (or background) already answered
        if image_id not in predicted:
            predict_project(store, detector, image_ids=[image_id])
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


# --------------------------------------------------------------------------- orchestration


@dataclass
class SimOutputs:
    """Where a benchmark run put its results."""

    out: Path
    csv: Path
    plot: Path | None
    summary: Path | None
    wall_s: float


def _check_config(out: Path, config: SimConfig) -> None:
    path = out / CONFIG_JSON
    current = config.to_dict()
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [
            k
            for k in _RESULT_KEYS
            if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(current.get(k), sort_keys=True, default=str)
        ]
        if diff:
            raise ValueError(
                f"{out} holds results made with other settings ({', '.join(diff)}); "
                "use another --out folder or the same settings"
            )
        # remember the union of strategies and seeds ever run here
        current["strategies"] = list(
            dict.fromkeys([*old.get("strategies", []), *current["strategies"]])
        )
        current["seeds"] = max(int(old.get("seeds", 0)), int(current["seeds"]))
    path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


def _init_worker(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


_WORKER_DATA: dict[str, BenchmarkData] = {}


def _worker_data(config: SimConfig) -> BenchmarkData:
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[key] = load_data(config)
    return _WORKER_DATA[key]


def _task(
    kind: str, config_d: dict[str, Any], out: str, seed: int, name: str | None, queue: Any
) -> str:
    """A unit of work in a worker process: ``base``, ``full`` or ``run``."""
    config = SimConfig.from_dict(config_d)
    data = _worker_data(config)
    out_p = Path(out)
    work, csv_path = out_p / "work", out_p / RESULTS_CSV
    notify = (lambda msg: queue.put(msg)) if queue is not None else None
    if kind == "base":
        run_base(config, data, work, seed)
        if notify:
            notify(f"initial set seed {seed}")
    elif kind == "full":
        run_full(config, data, work, seed, csv_path, notify)
    else:
        strategies = {s.name: s for s in resolve_strategies(config.strategies)}
        run_strategy(config, data, work, strategies[str(name)], seed, csv_path, notify)
    return f"{kind} {name or ''} seed {seed}"


def run_simulation(
    config: SimConfig,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SimOutputs:
    """Run (or resume) the benchmark into ``out``: ``results.csv``, the plot and the summary."""
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    strategies = resolve_strategies(config.strategies)
    config = dataclasses.replace(config, strategies=tuple(s.name for s in strategies))
    _check_config(out, config)
    data = load_data(config)
    log(
        f"simulate: pool {len(data.pool)} images, test {len(data.test)} images ({data.note}); "
        f"{len(strategies)} strategies x {config.seeds} seeds x {config.rounds} rounds"
    )
    csv_path = out / RESULTS_CSV
    have = {_row_key(r) for r in read_results(csv_path)}
    seeds = config.seed_list
    runs = [
        (s, seed)
        for seed in seeds
        for s in strategies
        if any((s.name, seed, r) not in have for r in range(config.rounds + 1))
    ]
    need_base = sorted({seed for _, seed in runs})
    full = [seeds[0]] if config.full_supervision and (FULL_NAME, seeds[0], 0) not in have else []
    total = (
        len(need_base)
        + len(full)
        + sum(
            sum((s.name, seed, r) not in have for r in range(1, config.rounds + 1))
            for s, seed in runs
        )
    )
    bar = tqdm(total=total, desc="simulate", unit="step", file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()

    def note(msg: str) -> None:
        bar.set_postfix_str(msg[-40:], refresh=False)
        bar.update(1)

    try:
        if config.workers <= 1:
            for seed in need_base:
                run_base(config, data, out / "work", seed)
                note(f"initial set seed {seed}")
            for seed in full:
                run_full(config, data, out / "work", seed, csv_path, note)
            for s, seed in runs:
                run_strategy(config, data, out / "work", s, seed, csv_path, note)
        else:
            _run_parallel(config, out, need_base, full, runs, note)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    sort_results(csv_path, [*(s.name for s in strategies), FULL_NAME])
    _record_run_info(out, config, wall)
    plot, summary = write_report(out)
    log(f"simulate: done in {wall / 60:.1f} min; results in {out}")
    return SimOutputs(out, csv_path, plot, summary, wall)


def _run_parallel(
    config: SimConfig,
    out: Path,
    need_base: list[int],
    full: list[int],
    runs: list[tuple[SimStrategy, int]],
    note: Notify,
) -> None:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    threads = config.threads or 1
    cfg = config.to_dict()
    with (
        ctx.Manager() as manager,
        ProcessPoolExecutor(
            max_workers=config.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(threads,),
        ) as pool,
    ):
        q = manager.Queue()
        pending: dict[Any, tuple[str, int]] = {}
        for seed in need_base:
            pending[pool.submit(_task, "base", cfg, str(out), seed, None, q)] = ("base", seed)
        for seed in full:
            pending[pool.submit(_task, "full", cfg, str(out), seed, None, q)] = ("full", seed)
        waiting = {seed: [s for s, sd in runs if sd == seed] for seed in {sd for _, sd in runs}}
        errors: list[str] = []
        while pending:
            finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            while True:
                try:
                    note(q.get_nowait())
                except queue_mod.Empty:
                    break
            for fut in finished:
                kind, seed = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    errors.append(f"{kind} seed {seed}: {type(exc).__name__}: {exc}")
                    continue
                if kind == "base":
                    for s in waiting.pop(seed, []):
                        f = pool.submit(_task, "run", cfg, str(out), seed, s.name, q)
                        pending[f] = ("run " + s.name, seed)
        while True:
            try:
                note(q.get_nowait())
            except queue_mod.Empty:
                break
        if errors:
            raise RuntimeError("some simulation tasks failed:\n  " + "\n  ".join(errors))


def _record_run_info(out: Path, config: SimConfig, wall: float) -> None:
    import torch

    path = out / RUN_INFO_JSON
    info: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name(0)}"
    sessions = [*info.get("sessions", []), {"wall_s": round(wall, 1), "finished": time.time()}]
    info.update(
        machine=machine,
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        device=device,
        workers=config.workers,
        threads=config.threads,
        sessions=sessions,
        wall_s_total=round(sum(s["wall_s"] for s in sessions), 1),
    )
    path.write_text(json.dumps(info, indent=2))


# --------------------------------------------------------------------------- report


def _interp_cost_to_reach(costs: np.ndarray, maps: np.ndarray, target: float) -> float | None:
    """First cost at which the (piecewise linear) curve reaches ``target``; None if never."""
    for i in range(len(costs)):
        if maps[i] >= target:
            if i == 0:
                return float(costs[0])
            c0, c1, m0, m1 = costs[i - 1], costs[i], maps[i - 1], maps[i]
            return float(c0 + (target - m0) / (m1 - m0) * (c1 - c0)) if m1 != m0 else float(c1)
    return None


def _mean_over(costs: np.ndarray, maps: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the piecewise linear curve over ``[lo, hi]`` (normalised area under it)."""
    if not hi > lo:
        return math.nan
    grid = np.linspace(lo, hi, 512)
    return float(np.mean(np.interp(grid, costs, maps)))


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-strategy statistics: seconds to 90% of full-supervision mAP@0.5, mean mAP@0.5 over a
    common cost range (area under the curve / width), final numbers."""
    full = [r["map50"] for r in rows if r["strategy"] == FULL_NAME]
    full_cost = [r["cost_seconds"] for r in rows if r["strategy"] == FULL_NAME]
    full_map = float(np.mean(full)) if full else math.nan
    target = 0.9 * full_map
    curves: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for r in rows:
        if r["strategy"] == FULL_NAME:
            continue
        curves.setdefault(r["strategy"], {}).setdefault(r["seed"], []).append(r)
        meta[r["strategy"]] = (r["unit"], r["oracle"])
    for per_seed in curves.values():
        for rs in per_seed.values():
            rs.sort(key=lambda r: r["round"])
    seeds = sorted({s for per in curves.values() for s in per})
    # common range per seed: from the shared initial cost to the median final cost; a curve
    # that ends earlier is extended flat at its last mAP (np.interp), one that goes on is cut
    ranges: dict[int, tuple[float, float]] = {}
    for seed in seeds:
        finals = [per[seed][-1]["cost_seconds"] for per in curves.values() if seed in per]
        starts = [per[seed][0]["cost_seconds"] for per in curves.values() if seed in per]
        ranges[seed] = (max(starts), float(np.median(finals)))
    stats: dict[str, dict[str, Any]] = {}
    for name, per_seed in curves.items():
        reach, auc, final_map, final_cost = [], [], [], []
        counts = {k: [] for k in ("boxes_drawn", "verifications", "class_changes", "images")}
        for seed, rs in per_seed.items():
            c = np.asarray([r["cost_seconds"] for r in rs], float)
            m = np.asarray([r["map50"] for r in rs], float)
            reach.append(_interp_cost_to_reach(c, m, target) if math.isfinite(target) else None)
            auc.append(_mean_over(c, m, *ranges[seed]))
            final_map.append(m[-1])
            final_cost.append(c[-1])
            for k in counts:
                counts[k].append(rs[-1][k])
        reached = [x for x in reach if x is not None]
        # a seed that never reached the target is censored at its final cost: the mean over
        # seeds is then a lower bound on the strategy's cost to reach it
        bound = [x if x is not None else fc for x, fc in zip(reach, final_cost, strict=True)]
        stats[name] = {
            "unit": meta[name][0],
            "oracle": meta[name][1],
            "seeds": len(per_seed),
            "reached": len(reached),
            "cost_to_90": float(np.mean(reached)) if len(reached) == len(reach) else None,
            "cost_to_90_sd": float(np.std(reached)) if len(reached) == len(reach) else None,
            "cost_to_90_partial": float(np.mean(reached)) if reached else None,
            "cost_to_90_lower": float(np.mean(bound)) if bound else None,
            "auc": float(np.nanmean(auc)) if auc else math.nan,
            "final_map50": float(np.mean(final_map)),
            "final_map50_sd": float(np.std(final_map)),
            "final_cost": float(np.mean(final_cost)),
            **{k: float(np.mean(v)) for k, v in counts.items()},
        }
    lo = float(np.mean([a for a, _ in ranges.values()])) if ranges else math.nan
    hi = float(np.mean([b for _, b in ranges.values()])) if ranges else math.nan
    return {
        "full_map50": full_map,
        "full_cost": float(np.mean(full_cost)) if full_cost else math.nan,
        "target": target,
        "auc_range": (lo, hi),
        "strategies": stats,
        "seeds": seeds,
    }


def _fmt_s(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}"


def cost_ratio(s: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """Seconds to the target relative to the reference (random drawing), honest under
    censoring: a run that never reached the target counts at its final cost, a lower bound,
    so the ratio is exact, an upper bound (``<``), a lower bound (``>``) or unknown."""
    if not ref or s.get("cost_to_90_lower") is None or ref.get("cost_to_90_lower") is None:
        return "n/a"
    exact_s, exact_r = s["cost_to_90"] is not None, ref["cost_to_90"] is not None
    r = s["cost_to_90_lower"] / ref["cost_to_90_lower"]
    if exact_s and exact_r:
        return f"{r:.2f}x"
    if exact_s:
        return f"< {r:.2f}x"
    if exact_r:
        return f"> {r:.2f}x"
    return "n/a"


def summary_table(summary: Mapping[str, Any]) -> str:
    """The Markdown table of :func:`summarize`."""
    st = summary["strategies"]
    ref = st.get("random-draw", {})
    lo, hi = summary["auc_range"]
    lines = [
        f"| strategy | unit | oracle | seconds to 90% of full mAP@0.5 | vs random-draw | "
        f"mean mAP@0.5 over {_fmt_s(lo)}-{_fmt_s(hi)} s (AUC) | final mAP@0.5 | final seconds | "
        "boxes drawn | verifications | images |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in st.items():
        if not math.isfinite(summary["target"]):
            reach = "n/a (no full-supervision run)"
        elif s["cost_to_90"] is not None:
            reach = f"{_fmt_s(s['cost_to_90'])} ± {_fmt_s(s['cost_to_90_sd'])}"
        elif s["reached"]:
            reach = (
                f">= {_fmt_s(s['cost_to_90_lower'])} ({s['reached']}/{s['seeds']} seeds "
                f"reached, at {_fmt_s(s['cost_to_90_partial'])})"
            )
        else:
            reach = f"not reached (> {_fmt_s(s['final_cost'])})"
        ratio = cost_ratio(s, ref) if math.isfinite(summary["target"]) else "n/a"
        lines.append(
            f"| {name} | {s['unit']} | {s['oracle']} | {reach} | {ratio} | {s['auc']:.3f} | "
            f"{s['final_map50']:.3f} ± {s['final_map50_sd']:.3f} | {_fmt_s(s['final_cost'])} | "
            f"{s['boxes_drawn']:.0f} | {s['verifications']:.0f} | {s['images']:.0f} |"
        )
    return "\n".join(lines)


def per_seed_table(rows: Sequence[Mapping[str, Any]], target: float) -> str:
    """Seconds to ``target`` per (strategy, seed), with the ratio to random drawing on the same
    seed (same initial set); a seed that never got there shows its best mAP@0.5."""
    curves: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for r in rows:
        if r["strategy"] != FULL_NAME:
            curves.setdefault(r["strategy"], {}).setdefault(int(r["seed"]), []).append(r)
    seeds = sorted({s for per in curves.values() for s in per})

    def reach(rs: list[Mapping[str, Any]]) -> float | None:
        rs = sorted(rs, key=lambda r: r["round"])
        c = np.asarray([r["cost_seconds"] for r in rs], float)
        m = np.asarray([r["map50"] for r in rs], float)
        return _interp_cost_to_reach(c, m, target)

    ref = {s: reach(rs) for s, rs in curves.get("random-draw", {}).items()}
    lines = [
        "| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for name, per in curves.items():
        cells = []
        for seed in seeds:
            rs = per.get(seed)
            if not rs:
                cells.append("")
                continue
            x = reach(rs)
            if x is None:
                cells.append(f"not reached (best {max(r['map50'] for r in rs):.3f})")
            elif ref.get(seed):
                cells.append(f"{_fmt_s(x)} ({x / ref[seed]:.2f}x)")
            else:
                cells.append(_fmt_s(x))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path, full_map: float) -> Path:
    """mAP@0.5 against cumulative annotation seconds: mean over seeds per round, band = ±1 sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    names = list(dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != FULL_NAME))
    for name in names:
        rs = [r for r in rows if r["strategy"] == name]
        rounds = sorted({r["round"] for r in rs})
        x, y, sd = [], [], []
        for rd in rounds:
            at = [r for r in rs if r["round"] == rd]
            x.append(np.mean([r["cost_seconds"] for r in at]))
            y.append(np.mean([r["map50"] for r in at]))
            sd.append(np.std([r["map50"] for r in at]))
        x, y, sd = map(np.asarray, (x, y, sd))
        style = "--" if name.startswith("random") else "-"
        (line,) = ax.plot(x, y, style, marker="o", ms=3, label=name)
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.15, lw=0)
    if math.isfinite(full_map):
        ax.axhline(full_map, color="k", lw=1, label=f"full supervision ({full_map:.3f})")
        ax.axhline(0.9 * full_map, color="k", lw=1, ls=":", label="90% of full supervision")
    ax.set_xlabel("cumulative annotation seconds (simulated oracle)")
    ax.set_ylabel("mAP@0.5 on the test split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out: str | Path) -> tuple[Path | None, Path | None]:
    """Plot and Markdown summary from ``out/results.csv`` (also usable on its own)."""
    out = Path(out)
    rows = read_results(out / RESULTS_CSV)
    if not rows:
        return None, None
    summary = summarize(rows)
    plot = plot_curves(rows, out / PLOT_PNG, summary["full_map50"])
    cfg = json.loads((out / CONFIG_JSON).read_text()) if (out / CONFIG_JSON).is_file() else {}
    info = json.loads((out / RUN_INFO_JSON).read_text()) if (out / RUN_INFO_JSON).is_file() else {}
    costs = cfg.get("costs", {})
    lines = [
        "# Simulated-oracle benchmark",
        "",
        f"Full-supervision mAP@0.5: **{summary['full_map50']:.3f}** (every pool box drawn: "
        f"{_fmt_s(summary['full_cost'])} s); target 90%: {summary['target']:.3f}.",
        "",
        summary_table(summary),
        "",
        "Seconds to the target per seed (ratio to random-draw on the same seed and initial set):",
        "",
        per_seed_table(rows, summary["target"]),
        "",
        f"![mAP@0.5 vs annotation seconds]({PLOT_PNG})",
        "",
        "Settings: "
        + ", ".join(
            f"{k} {cfg.get(k)}"
            for k in (
                "data",
                "rounds",
                "init_images",
                "budget_images",
                "budget_boxes",
                "pool_subset",
                "init_steps",
                "round_steps",
                "full_steps",
                "min_size",
                "max_size",
                "lr",
                "lambda_d",
                "noisy_min_score",
                "partial_background_weight",
                "verify_min_score",
                "verify_missed_min_score",
            )
            if k in cfg
        )
        + f"; seeds {summary['seeds']}.",
        "",
        "Costs (s): " + ", ".join(f"{k} {v}" for k, v in costs.items()) + ".",
    ]
    if info:
        lines += [
            "",
            f"Machine: {info.get('machine')} ({info.get('device')}, {info.get('workers')} "
            f"workers x {info.get('threads') or 'default'} threads); wall time "
            f"{info.get('wall_s_total', 0) / 60:.1f} min.",
        ]
    md = out / SUMMARY_MD
    md.write_text("\n".join(lines) + "\n")
    return plot, md


# --------------------------------------------------------------------------- command line


def add_arguments(p: Any) -> None:
    """The ``napari-al simulate`` options (the parser block in :mod:`napari_al.cli`)."""
    p.add_argument(
        "--preset", choices=("ci", "bccd"), help="ci: tiny smoke run; bccd: the benchmark"
    )
    p.add_argument("--data", metavar="PATH", help="labelled dataset (VOC folder or COCO JSON)")
    p.add_argument("--format", dest="fmt", choices=("voc", "coco", "yolo"))
    p.add_argument(
        "--test-fraction", type=float, help="held out when the data has no test/val split"
    )
    p.add_argument(
        "--strategies", help="comma-separated names (baselines are always added); 'list' to show"
    )
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...)")
    p.add_argument("--seed-start", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--init-images", type=int)
    p.add_argument("--budget-images", type=int, help="images per round (image-level strategies)")
    p.add_argument("--budget-boxes", type=int, help="boxes per round (box-level strategies)")
    p.add_argument("--pool-subset", type=int, help="score a random subset of the pool per round")
    p.add_argument("--init-steps", type=int)
    p.add_argument("--round-steps", type=int)
    p.add_argument("--full-steps", type=int, help="default: init + rounds x round steps")
    p.add_argument("--no-full", action="store_true", help="skip the full-supervision run")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lambda-d", type=float)
    p.add_argument("--noisy-min-score", type=float, help="weakest prediction kept as a noisy label")
    p.add_argument(
        "--partial-background-weight", type=float, help="background loss on partial images"
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--arch")
    p.add_argument("--min-size", type=int)
    p.add_argument("--max-size", type=int)
    p.add_argument("--max-pool", type=int)
    p.add_argument("--max-test", type=int)
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--workers", type=int, help="parallel processes")
    p.add_argument("--threads", type=int, help="torch threads per process")
    for name, default in dataclasses.asdict(CostModel()).items():
        flag = "--" + name.replace("_s", "").replace("_", "-") + "-s"
        p.add_argument(flag, dest=name, type=float, help=f"seconds (default {default})")
    p.add_argument("--verify-iou", type=float)
    p.add_argument("--redraw-iou", type=float)
    p.add_argument(
        "--verify-min-score", type=float, help="model boxes shown for verification (default 0.23)"
    )
    p.add_argument(
        "--verify-missed",
        dest="verify_missed_min_score",
        type=float,
        metavar="MIN",
        help="before drawing missed objects, ask yes/no about uncovered predictions >= MIN",
    )
    p.add_argument("--report-only", action="store_true", help="redo plot and table from the CSV")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, metavar="DIR")


def config_from_args(args: Any) -> SimConfig:
    """A :class:`SimConfig` from the preset (default: bccd settings) and the flags given."""
    config = preset(args.preset) if args.preset else SimConfig()
    changes: dict[str, Any] = {}
    simple = (
        "data", "fmt", "test_fraction", "seeds", "seed_start", "rounds", "init_images",
        "budget_images", "budget_boxes", "pool_subset", "init_steps", "round_steps",
        "full_steps", "batch_size", "lambda_d", "noisy_min_score",
        "partial_background_weight", "lr", "arch", "min_size", "max_size",
        "max_pool", "max_test", "device", "workers", "threads", "verify_iou", "redraw_iou",
        "verify_min_score", "verify_missed_min_score",
    )  # fmt: skip
    for k in simple:
        v = getattr(args, k, None)
        if v is not None:
            changes[k] = v
    if getattr(args, "strategies", None):
        changes["strategies"] = tuple(s for s in args.strategies.split(",") if s.strip())
    if getattr(args, "no_full", False):
        changes["full_supervision"] = False
    cost_changes = {
        k: getattr(args, k)
        for k in dataclasses.asdict(CostModel())
        if getattr(args, k, None) is not None
    }
    if cost_changes:
        changes["costs"] = dataclasses.replace(config.costs, **cost_changes)
    if "data" in changes and "fmt" not in changes:
        changes["fmt"] = None  # detect the format of the data given
    return dataclasses.replace(config, **changes)


def describe_strategies() -> str:
    """One line per known strategy (for ``--strategies list``)."""
    return "\n".join(
        f"{s.name:<16} {s.unit:<5} {s.oracle:<6} {s.description}" for s in STRATEGIES.values()
    )
