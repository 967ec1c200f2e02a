"""Settings of a simulated-oracle benchmark run: the strategies it knows, :class:`SimConfig`
with its presets, and the benchmark data (pool with labels kept in memory, fixed test split)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_al.core.costs import CostModel
from napari_al.core.data import Dataset, ImageRecord

#: Strategy name of the full-supervision reference run in ``results.csv``.
FULL_NAME = "full-supervision"
#: The ways the simulated person answers (``SimStrategy.oracle``).
ORACLES = ("draw", "verify", "box", "dialog")

# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class SimStrategy:
    """One benchmarked way of choosing what to ask and how the person answers.

    ``scorer`` is a :class:`~napari_al.core.scoring.Strategy` spec for
    :func:`~napari_al.core.workflow.rank_pool`, or ``random`` (uniform over pool images, no
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
        if self.unit not in ("image", "box", "question"):
            raise ValueError(
                f"strategy {self.name}: unit must be image, box or question, not {self.unit!r}"
            )
        if self.oracle not in ORACLES:
            raise ValueError(f"strategy {self.name}: oracle must be one of {ORACLES}")
        if (self.unit == "box") != (self.oracle == "box"):
            raise ValueError(f"strategy {self.name}: the box oracle goes with the box unit")
        if (self.unit == "question") != (self.oracle == "dialog"):
            raise ValueError(f"strategy {self.name}: the dialog oracle goes with the question unit")
        if self.scorer == "random" and self.unit in ("box", "question"):
            raise ValueError(
                f"strategy {self.name}: random {self.unit} selection is not implemented"
            )


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
            "dialog",
            "entropy",
            unit="question",
            oracle="dialog",
            description="the dialog planner: verify / region / draw questions by value per "
            "second (entropy gains), a seconds budget per round",
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
    #: Peak learning rate of the rounds' fine-tuning of an already trained model (None: ``lr``);
    #: the first training and full supervision keep ``lr``.
    round_lr: float | None = None
    #: Training augmentations (``TrainSettings.augment``; None: the workflow's default).
    augment: str | None = None
    arch: str = "fasterrcnn_mobilenet_v2_fpn"
    #: Weight source of every new detector (imagenet, coco-mnv2, torchvision-coco or a file;
    #: None: the architecture's default, coco-mnv2 for the default one).
    weights: str | None = None
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
    #: An explicit raw-score threshold: model boxes scoring below it are not shown for
    #: verification. None: the calibrated rule, P(yes) x draw_s > verify_s, with P(yes) from the
    #: model version's calibration (``calibration``), or, with ``calibration`` ``none``, the raw
    #: score against verify_s / draw_s.
    verify_min_score: float | None = None
    #: How each model version's scores are calibrated after training (isotonic, platt or none:
    #: raw scores); :class:`napari_al.core.workflow.CalibrationSettings`.
    calibration: str = "isotonic"
    #: Ask yes/no about weaker predictions (score >= this, below ``verify_min_score``) that no
    #: shown or human box covers, before drawing what is still missing (None: never).
    verify_missed_min_score: float | None = None
    #: Answer badly placed boxes part / container / several (Benenson's slides; a refined box
    #: or clicks follow) instead of redrawing them (:mod:`napari_al.simulation.oracle`). Off by
    #: default until measured.
    rich_answers: bool = False
    #: How the objects the shown boxes missed are labelled: ``draw`` (each drawn), ``click``
    #: (each clicked at its centre, the proposed box verified) or ``region`` (region questions
    #: "any more <class> here?" first, clicks in the yes-regions, the rest drawn);
    #: :mod:`napari_al.simulation.missed`.
    missed_by: str = "draw"
    #: Seconds of annotation per round of the ``dialog`` strategy (None: what drawing
    #: ``budget_images`` images costs by the initial set; :mod:`napari_al.simulation.dialog`).
    dialog_seconds: float | None = None
    #: How the ``dialog`` strategy's missed objects are labelled: auto, click or box
    #: (``DialogSettings.supervision``; auto: clicks while localisation still improves).
    dialog_supervision: str = "auto"
    #: RPN anchor sizes of the new detector, comma-separated pixels of the resized input, one
    #: per feature level (``ModelSettings.anchors``; None: the architecture's).
    anchors: str | None = None
    #: The ``dialog`` strategy asks the pool's best question each time instead of finishing
    #: each begun image first (``DialogSettings.scatter_images``).
    dialog_scatter_images: bool = False
    #: Self-training (``TrainSettings.self_training``): predictions on unreviewed pool images
    #: with P(yes) >= this that are stable under a horizontal flip train as pseudo labels,
    #: damped by ``lambda_d`` (None: off, the default until measured).
    self_training: float | None = None
    #: Most unreviewed images pseudo-labelled per training (``TrainSettings``).
    self_training_images: int = 20
    #: Checkpoints kept on disk per run (older model files are deleted; rows stay in the store).
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.costs, Mapping):
            self.costs = CostModel(**self.costs)
        if self.anchors is not None:
            from napari_al.core.workflow import ModelSettings

            ModelSettings(anchors=self.anchors)  # a SettingsError (ValueError) names the field
        self.pool_splits = tuple(self.pool_splits)
        self.strategies = tuple(self.strategies)
        for name in ("seeds", "rounds", "init_images", "budget_images", "budget_boxes"):
            if int(getattr(self, name)) < (0 if name == "rounds" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 0 < self.verify_iou <= 1 or self.redraw_iou < 0:
            raise ValueError("verify_iou must lie in (0, 1] and redraw_iou be >= 0")
        if self.self_training is not None and not 0 <= self.self_training <= 1:
            raise ValueError(f"self_training must lie in [0, 1], got {self.self_training}")
        for name in ("lr", "round_lr"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:  # NaN fails too
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.dialog_seconds is not None and not self.dialog_seconds > 0:
            raise ValueError(f"dialog_seconds must be positive, got {self.dialog_seconds}")
        from napari_al.core.dialog import SUPERVISION
        from napari_al.core.workflow import CALIBRATION_METHODS

        if self.dialog_supervision not in SUPERVISION:
            raise ValueError(
                f"dialog_supervision must be one of {', '.join(SUPERVISION)}, "
                f"got {self.dialog_supervision!r}"
            )
        from napari_al.simulation.missed import MISSED_BY

        if self.missed_by not in MISSED_BY:
            raise ValueError(
                f"missed_by must be one of {', '.join(MISSED_BY)}, got {self.missed_by!r}"
            )

        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, "
                f"got {self.calibration!r}"
            )

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
RESULT_KEYS = (
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
    "round_lr",
    "augment",
    "arch",
    "weights",
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
    "calibration",
    "rich_answers",
    "missed_by",
    "self_training",
    "self_training_images",
    "dialog_seconds",
    "dialog_supervision",
    "dialog_scatter_images",
    "anchors",
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
    """The pool (labels kept here, never imported: the oracle reveals them) and the fixed test
    split (imported labelled into each project's ``test`` split, for evaluation only)."""

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
