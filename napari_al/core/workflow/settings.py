"""Typed settings of an active-learning round: one dataclass per concern, one default per field.

Every front end builds its options from these classes, so a default lives in exactly one place:
the CLI adds flags with :func:`~napari_al.core.workflow.fields.add_arguments` and reads them
back with :func:`~napari_al.core.workflow.fields.from_args`, the
widget fills its fields from ``TrainSettings()`` and friends, the notebook ``Session`` and the
simulator pass instances. Each field's help text (``metadata["help"]``) states its unit.

- :class:`ModelSettings`: which detector (architecture, weight source, device, input size).
- :class:`TrainSettings`: one fine-tuning run (steps or epochs, batch, partial-label loss
  weights).
- :class:`QuerySettings`: how the pool is ranked (strategy, unit, budget, diversity).
- :class:`SuggestSettings`: which low-scoring candidates are shown as possibly missed objects.
- :class:`CalibrationSettings`: how detection scores become P(a person accepts the box).
- :class:`ClickSettings`: how a centre click becomes a box.
- :class:`RegionSettings`: which regions get the question "any more <class> here?".
- :class:`TileSettings`: which images are predicted tile by tile (and trained in crops), with
  what overlap.
- :class:`DialogSettings`: the dialog planner (which question is worth its seconds next).
- :class:`DistributedSettings`: scoring the pool in this process or as a Dask task graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_al.core.data import ARCHS
from napari_al.core.workflow.errors import SettingsError
from napari_al.core.workflow.fields import check_fields
from napari_al.core.workflow.fields import option as _opt

#: Units a query can ask about: whole images, single boxes, image blocks (regions), or the
#: dialog planner's questions (:mod:`napari_al.core.workflow.dialog`).
UNITS = ("image", "box", "region", "question")
#: How the dialog planner's missed objects are labelled (:data:`napari_al.core.dialog.SUPERVISION`).
SUPERVISION = ("auto", "click", "box")
#: Diversity options of image queries (two-stage: top candidates by score, then spread).
DIVERSITY = ("coreset", "kmeans++")
#: How per-box scores become an image score.
AGGREGATIONS = ("sum", "mean", "max", "topk_mean")
#: Named weight sources of a new detector (``ModelSettings.weights``; anything else is a file),
#: for front ends that offer a choice without importing torch: the engine's
#: ``WEIGHT_SOURCES`` (docs/weights.md), the default first.
WEIGHT_SOURCES = ("coco-mnv2", "imagenet", "torchvision-coco")


_AUGMENT_ONE = r"(hflip|vflip|scale(=0?\.[0-9]+|=0)?|colou?r(=0?\.[0-9]+|=1(\.0*)?|=0)?)"
#: What ``TrainSettings.augment`` accepts (``napari_al.core.engine.augment.Augmentation.parse``).
AUGMENT_PATTERN = rf"none|{_AUGMENT_ONE}( *, *{_AUGMENT_ONE})*"


def _check_augment_once(text: str) -> None:
    """Each augmentation at most once (``scale=0.25,scale=0.1`` is refused, not last-wins)."""
    names = [p.split("=")[0].strip().replace("color", "colour") for p in text.split(",")]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        raise ValueError(f"augment gives {', '.join(twice)} more than once; give each once")


def _check_anchor_sizes(sizes: list[int]) -> None:
    """At most 8 levels (5 in the default architecture), sizes increasing level by level
    (finest first) and at most 4096 px: anything else is a typo, not a detector."""
    if len(sizes) > 8 or max(sizes) > 4096 or sorted(set(sizes)) != sizes:
        raise ValueError(
            f"anchors {','.join(map(str, sizes))}: give one size per feature level (at most 8), "
            "finest first, strictly increasing, at most 4096 px, e.g. 16,32,64,128,256"
        )


#: Devices a detector can run on (``cuda:N`` picks one GPU).
DEVICE_PATTERN = r"(cpu|mps|cuda(:[0-9]+)?)"


def _check_strategy(spec: str) -> None:
    from napari_al.core.scoring.registry import check_strategy

    check_strategy(spec)


@dataclass(frozen=True)
class ModelSettings:
    """Which detector to use; ``None`` fields mean "the project's latest model's value"."""

    arch: str | None = _opt(
        None,
        "detector architecture (default: the project's model, else the default one)",
        choices=ARCHS,
    )
    weights: str | None = _opt(
        None,
        "initial weights of a new detector: coco-mnv2 (COCO-trained MobileNetV2, offline), "
        "imagenet (ImageNet backbone, offline), torchvision-coco (downloaded once) or a weights "
        "file; given: a new detector (default: the project's model, else coco-mnv2 for the "
        "default architecture; see docs/weights.md)",
    )
    device: str | None = _opt(
        None,
        "cuda, cuda:N, mps or cpu (default: the best available)",
        pattern=DEVICE_PATTERN,
        expected="cpu, mps, cuda or cuda:N",
    )
    min_size: int | None = _opt(
        None,
        "shorter image side fed to the model, pixels (default: the model's, 480 when new)",
        minimum=1,
    )
    max_size: int | None = _opt(
        None, "longer image side limit, pixels (default: the model's, 640 when new)", minimum=1
    )
    seed: int = _opt(0, "random seed of a new detector's heads (a loaded model keeps its own)")
    rpn_proposals_train: int = _opt(
        1000, "RPN proposals per image kept in training (a new Faster R-CNN)", minimum=1
    )
    rpn_proposals_test: int = _opt(
        300, "RPN proposals per image kept in inference (a new one)", minimum=1
    )
    box_batch_size_per_image: int = _opt(
        256, "RoIs sampled per image for the box head's loss (a new Faster R-CNN)", minimum=1
    )
    anchors: str | None = _opt(
        None,
        "RPN anchor sizes of a new Faster R-CNN (a project without a model, or with --weights), "
        "one per feature level, finest first, comma-separated pixels "
        "of the resized input, e.g. 16,32,64,128,256 for objects under about 20 px there "
        "(default: the architecture's, 32,64,128,256,512)",
        pattern=r"[1-9]\d*(,[1-9]\d*)*",
        expected="comma-separated whole pixel sizes above 0, e.g. 16,32,64,128,256",
        check=lambda text: _check_anchor_sizes([int(v) for v in text.split(",")]),
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.min_size and self.max_size and self.max_size < self.min_size:
            raise SettingsError(
                f"max_size {self.max_size} must be at least the min size, {self.min_size} px; "
                "below it the longer side's limit wins and the min size has no effect",
                "max_size",
            )

    @property
    def anchor_sizes(self) -> list[int] | None:
        """:attr:`anchors` as a list of pixel sizes (None: the architecture's default)."""
        return None if self.anchors is None else [int(v) for v in self.anchors.split(",")]


#: ``TrainSettings.steps`` unless given: a run given epochs and other steps was given both.
DEFAULT_STEPS = 200


def steps_and_epochs(steps: int, epochs: float) -> SettingsError:
    """The error of a training run given both a length in steps and one in epochs (epochs
    would silently win): ``TrainSettings`` raises it for steps other than the default beside
    epochs, the notebook ``Session`` for any steps given beside epochs; the CLI's ``--steps``
    and ``--epochs`` are exclusive flags."""
    return SettingsError(
        f"epochs {epochs:g} and steps {steps} given: give one or the other (epochs, when given, "
        "replace steps)",
        "epochs",
    )


@dataclass(frozen=True)
class TrainSettings:
    """One fine-tuning run on the project's labels (Desai et al. 2019 partial-label loss)."""

    steps: int = _opt(DEFAULT_STEPS, "optimisation steps (one batch each)", minimum=1)
    epochs: float | None = _opt(
        None,
        "passes over the training examples, each ceil(examples / batch_size) steps; "
        "replaces steps when set (give one or the other)",
        above=0,
    )
    batch_size: int = _opt(2, "images per optimisation step", minimum=1)
    lambda_d: float = _opt(
        0.5,
        "loss weight of unverified boxes on partly reviewed images (Desai et al. lambda_d)",
        minimum=0.0,
        maximum=1.0,
    )
    lr: float | None = _opt(
        None,
        "peak learning rate of the one-cycle schedule (default: by weight source, 0.02 from "
        "imagenet, 0.01 from coco-mnv2, else 0.005)",
        above=0,
    )
    from_scratch: bool = _opt(
        False, "restart from the pretrained weights instead of the latest model"
    )
    seed: int = _opt(0, "random seed of sampling and augmentation")
    noisy_min_score: float = _opt(
        0.0,
        "lowest score (0-1) of an unverified prediction that trains as a noisy label",
        minimum=0.0,
        maximum=1.0,
    )
    partial_background_weight: float = _opt(
        1.0, "weight (0-1) of background loss on partly reviewed images", minimum=0.0, maximum=1.0
    )
    threads: int | None = _opt(None, "torch CPU threads for the run (default: torch's)", minimum=1)
    self_training: float | None = _opt(
        None,
        "self-training: lowest P(yes) (0-1; calibrated where the model version has a "
        "calibration, else the raw score) of a prediction on an unreviewed image that trains "
        "as a pseudo label, damped by lambda_d, if the horizontally flipped image's prediction "
        "matches it (default: off; docs/strategies.md)",
        minimum=0.0,
        maximum=1.0,
    )
    self_training_images: int = _opt(
        20,
        "self-training: most unreviewed images pseudo-labelled per run (a seeded random "
        "sample), never more than the reviewed images that train",
        minimum=1,
    )
    augment: str = _opt(
        "hflip",
        "training augmentations, comma-separated: hflip, vflip (random flips), scale=F (input "
        "size jitter +-F, F < 1), colour=F (brightness/contrast/saturation +-F); or none",
        pattern=AUGMENT_PATTERN,
        expected="e.g. hflip,vflip,scale=0.25,colour=0.2 (scale below 1, colour at most 1) or none",
        check=_check_augment_once,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.epochs is not None and self.steps != DEFAULT_STEPS:
            raise steps_and_epochs(self.steps, self.epochs)


@dataclass(frozen=True)
class QuerySettings:
    """How the pool is ranked: what to ask a person next."""

    strategy: str = _opt(
        "entropy",
        "scorer name or NAME+NAME (see docs/strategies.md)",
        flag="--strategy",
        check=_check_strategy,
    )
    unit: str = _opt(
        "image",
        "what one query asks about (question: the dialog planner's queue of questions, "
        "docs/strategies.md)",
        choices=UNITS,
    )
    budget: int = _opt(10, "how many queries (images, boxes or regions) to return", minimum=1)
    diversity: str | None = _opt(
        None, "spread image queries over the embedding space", choices=DIVERSITY
    )
    aggregation: str = _opt("sum", "box scores -> image score", choices=AGGREGATIONS)
    seed: int = _opt(0, "random seed (random strategy, MC dropout, diversity)")
    candidate_factor: float = _opt(
        3.0, "diverse image queries pick from the top candidate_factor x budget images", minimum=1
    )
    region_block: int = _opt(160, "side of a region query's block, pixels", minimum=1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class SuggestSettings:
    """Possibly missed objects: low-threshold candidates that no known box covers."""

    enabled: bool = _opt(True, "compute possibly-missed-object suggestions after ranking")
    min_score: float = _opt(
        0.1, "lowest candidate score (0-1) shown as possibly missed", minimum=0.0, maximum=1.0
    )
    max_iou: float = _opt(
        0.3,
        "a candidate overlapping a known box at this IoU or more is not missed",
        minimum=0.0,
        maximum=1.0,
    )
    limit: int = _opt(20, "most suggestions per image", minimum=0)
    images: int = _opt(
        3, "how many queried images get suggestions (plus the one on screen)", minimum=0
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RegionSettings:
    """Region questions for missed objects, "any more <class> here?"
    (:mod:`napari_al.core.regions`)."""

    min_probability: float = _opt(
        0.05,
        "lowest probability (0-1; the calibrated P(yes) where the model has a calibration) of "
        "an uncovered candidate box that joins a region",
        minimum=0.0,
        maximum=1.0,
    )
    cover_iou: float = _opt(
        0.3,
        "a candidate overlapping a shown, human or rejected box at this IoU or more is not missed",
        minimum=0.0,
        maximum=1.0,
    )
    gap: float = _opt(
        0.0, "candidates this many pixels apart still merge into one region", minimum=0.0
    )
    max_fraction: float = _opt(
        0.25, "largest region, as a fraction of the image's area", minimum=0.0, maximum=1.0
    )
    min_chance: float = _opt(
        0.0,
        "lowest chance (0-1) that a region holds a missed object for it to be asked about (0: "
        "the cost model's verify_s / draw_s, the rule for showing a box)",
        minimum=0.0,
        maximum=1.0,
    )
    limit: int = _opt(5, "most region questions per image", minimum=0)
    calibrated: bool = _opt(
        True, "weigh candidates by calibrated P(yes) where the model has a calibration"
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ClickSettings:
    """How a centre click becomes a box (:mod:`napari_al.core.clicks`)."""

    sigma: float = _opt(
        0.25,
        "width of the click-to-box-centre term, in units of the box's width and height",
        minimum=1e-6,
    )
    min_probability: float = _opt(
        0.05,
        "lowest class probability (0-1; the calibrated P(yes) where the model has a "
        "calibration) of a model box a click may pick, else the box comes from the image",
        minimum=0.0,
        maximum=1.0,
    )
    calibrated: bool = _opt(
        True, "score the model's boxes by calibrated P(yes) where the model has a calibration"
    )
    window: int = _opt(
        0,
        "side of the first image window the image fallback searches, pixels (0: 3x the "
        "class's median human box side, else half the shorter image side)",
        minimum=0,
    )
    min_box: int = _opt(3, "smallest side of a box found in the image, pixels", minimum=1)
    max_fraction: float = _opt(
        0.5,
        "largest box found in the image, as a fraction of the image's area",
        minimum=0.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DialogSettings:
    """The dialog planner (:mod:`napari_al.core.dialog`, :mod:`napari_al.core.workflow.dialog`):
    which question (verify a box, "any more <class> here?", label an image) is asked next."""

    supervision: str = _opt(
        "auto",
        "how missed objects are labelled: click (centre clicks), box (drawn boxes) or auto "
        "(clicks while localisation, AP/AP50, still rises between model versions, then boxes; "
        "Desai et al. 2019)",
        choices=SUPERVISION,
    )
    switch_min_rise: float = _opt(
        0.01,
        "auto supervision: the rise of AP/AP50 between measured model versions at or below "
        "which localisation counts as no longer improving (boxes from then on)",
        minimum=0.0,
        maximum=1.0,
    )
    scatter_images: bool = _opt(
        False,
        "ask the best question of the whole pool each time, leaving images partly answered "
        "(default: once a person has begun an image, its questions come first until it is "
        "complete)",
    )
    saving_weight: float = _opt(
        1.0,
        "weight of the expected seconds saved against drawing (in units of draw_s) beside "
        "gain x P(change) in a question's value",
        minimum=0.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


#: Calibration methods (:mod:`napari_al.core.calibration`; ``none``: raw scores).
CALIBRATION_METHODS = ("isotonic", "platt", "none")


@dataclass(frozen=True)
class CalibrationSettings:
    """How a model version's scores are calibrated (:mod:`napari_al.core.workflow.calibration`)."""

    method: str = _opt(
        "isotonic",
        "score -> P(a person accepts the box): isotonic (Zadrozny & Elkan 2002), platt (Platt "
        "1999) or none (raw scores)",
        flag="--calibration",
        choices=CALIBRATION_METHODS,
    )
    min_samples: int = _opt(
        20,
        "fewest judged boxes (both answers present) for a fitted map, else raw scores",
        minimum=1,
    )
    min_class_samples: int = _opt(
        40, "fewest judged boxes of one class for its own map, else the pooled map", minimum=1
    )
    recent_samples: int = _opt(
        500,
        "judged boxes to fit on: those of the newest model versions first, whole versions at a "
        "time, until at least this many",
        minimum=1,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TileSettings:
    """Large images are predicted tile by tile at the model's native scale
    (:mod:`napari_al.core.engine.tiling`) and train in crops of that size from their reviewed
    regions (:mod:`napari_al.core.workflow.crops`; docs/large-images.md)."""

    tile_above: int = _opt(
        4096,
        "images with a side longer than this, pixels, are predicted tile by tile at the "
        "model's input size instead of shrunk whole to it, and train in crops of that size "
        "from their reviewed regions",
        minimum=1,
    )
    overlap: int = _opt(
        64,
        "overlap of neighbouring tiles, pixels: at least the side of the largest object "
        "(a larger one can be found in two pieces); below the model's shorter input side",
        minimum=0,
    )
    window_scale: float = _opt(
        2.0,
        "prediction windows of large images up to this many times the model's input per side, "
        "at scale 1: fewer overlapping pixels, more memory per pass (docs/large-images.md)",
        minimum=1.0,
        maximum=8.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DistributedSettings:
    """Where the pool is scored: in this process (the default), or as a Dask task graph
    (:mod:`napari_al.core.workflow.distributed`, docs/scale.md) on a ``LocalCluster`` of
    ``workers`` processes started for the run, or on the existing cluster at ``scheduler``."""

    scheduler: str | None = _opt(
        None,
        "address of a running Dask scheduler to score on, e.g. tcp://host:8786 (dask-jobqueue, "
        "Kubernetes, Coiled; default: none)",
        metavar="ADDRESS",
    )
    workers: int = _opt(
        0,
        "score on a Dask LocalCluster of this many worker processes on this machine, which "
        "share its cores (0: no Dask, score in this process)",
        flag="--dask-workers",
        metavar="N",
        minimum=0,
    )
    chunk_size: int = _opt(
        32,
        "images per Dask task, rounded up to whole scoring batches (2 images); a lost "
        "worker's chunk is scored again",
        flag="--dask-chunk",
        metavar="N",
        minimum=1,
    )
    worker_threads: int | None = _opt(
        None,
        "torch CPU threads in each Dask worker (default: the cores of its machine divided "
        "among the worker processes there)",
        flag="--dask-threads",
        metavar="N",
        minimum=1,
    )
    connect_timeout: float = _opt(
        15.0,
        "seconds to wait for the scheduler at --scheduler to answer before giving up",
        flag="--scheduler-timeout",
        metavar="SECONDS",
        minimum=0.1,
    )
    device: str | None = _opt(
        None,
        "device of the workers' detectors (default: each worker's best: CUDA, MPS, then CPU; "
        "NAPARI_AL_DEVICE on the worker overrides)",
        pattern=DEVICE_PATTERN,
        expected="cpu, mps, cuda or cuda:N",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.scheduler is not None and self.workers:
            raise SettingsError(
                "give a Dask scheduler address or a number of local Dask workers, not both"
            )
        if self.scheduler is not None and not self.scheduler.strip():
            raise SettingsError("scheduler must be an address such as tcp://host:8786", "scheduler")

    @property
    def active(self) -> bool:
        """Whether the pool is scored with Dask (a scheduler or at least one local worker)."""
        return self.scheduler is not None or self.workers > 0
