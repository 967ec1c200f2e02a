"""Fine-tuning a :class:`~napari_al.core.engine.detector.Detector` on partially labeled images.

Implements the partial-label training of Desai et al. ("Towards fine-grained sampling for
active learning in object detection"), eq. 3: ``L = L_labeled + lambda_d * L_noisy``. Each
:class:`TrainingExample` carries human boxes (weight 1), still-unverified predictions on
partially reviewed images (``noisy``: weight ``lambda_d``), rejected boxes (explicit background)
and ignore regions (no loss). For Faster R-CNN the weighting happens inside the RPN and RoI-head
losses (:class:`~napari_al.core.engine.losses.PartialLabelRPN`,
:class:`~napari_al.core.engine.heads.RichRoIHeads`): every sampled anchor/proposal is weighted by
the box it matches, losses are ``sum_i w_i l_i / n`` over the n sampled anchors/proposals.

One-stage architectures (RetinaNet, FCOS, SSDlite) train with torchvision's own losses, which
take no weights. There: boxes with weight > 0 are used at full weight (``lambda_d`` has no effect),
rejected boxes are not used (unlabeled area is background anyway), and ignore regions are blanked
(filled with the image's mean colour) with the boxes centred in them dropped.

Optimisation: SGD (momentum 0.9, weight decay 1e-4), one-cycle learning rate up to ``lr``
(by weight source, :func:`default_lr`: 0.02 from ImageNet, 0.01 from COCO MobileNetV2, else
0.005; 20% warm-up), gradient-norm clipping at 10 (a peak lr of 0.01 without clipping diverged
on BCCD), left-right flips (more augmentations: :mod:`napari_al.core.engine.augment`).
Seeded: the same seed on the CPU gives identical weights.

Several processes (``torchrun``, :mod:`napari_al.core.engine.ddp`): the model is wrapped in
DistributedDataParallel and ``batch_size`` is per process. Every rank draws the same global
batch of ``batch_size x world_size`` examples (and flips) from the same seeded permutation and
trains on its own contiguous slice (:func:`~napari_al.core.engine.ddp.shard`); DDP averages
the gradients, so a step is one step on the global batch. An epoch is
``ceil(examples / (batch_size x world_size))`` steps; the learning rate is not scaled. Stops
(a cancel on any rank, a non-finite loss on any rank) are agreed by all ranks at each step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from napari_al.core.engine import ddp
from napari_al.core.engine.augment import Augmentation, Flip, apply_colour
from napari_al.core.engine.detector import Detector
from napari_al.core.engine.device import autocast_dtype, num_threads
from napari_al.core.engine.inference import image_to_tensor, load_image
from napari_al.core.engine.losses import centres_inside

log = logging.getLogger(__name__)

#: Default dampening of unverified predictions (Desai et al.: 0.5 works in most cases).
LAMBDA_D = 0.5
#: Peak learning rate where no measured schedule applies (conventions: 0.005 with clipping
#: converged; 0.01 without clipping diverged).
LEARNING_RATE = 0.005
#: Peak learning rate of the few-label schedule by where a detector's weights came from
#: (``DetectorConfig.init``), measured on BCCD with 10 images, 200 steps, 2 seeds
#: (``benchmarks/learning_curve.py --lrs``, docs/benchmarks.md "A stronger start"): ImageNet
#: backbone 0.005 -> 0.474, 0.01 -> 0.552, 0.02 -> 0.812 mAP@0.5; COCO-trained MobileNetV2
#: 0.739 / 0.770 / 0.764. Other sources were not measured and keep :data:`LEARNING_RATE`.
PEAK_LR_BY_INIT = {"offline-imagenet": 0.02, "coco-mnv2": 0.01}


def default_lr(detector: Detector) -> float:
    """The peak learning rate :func:`train` uses for ``detector`` when none is given: the
    few-label schedule of its weight source (:data:`PEAK_LR_BY_INIT`), else
    :data:`LEARNING_RATE`."""
    return PEAK_LR_BY_INIT.get(detector.config.init, LEARNING_RATE)


CLIP_NORM = 10.0

#: ``progress(step, total, loss, epoch)``, called after every optimisation step.
TrainProgress = Callable[[int, int, float, float], None]


def _boxes(a: np.ndarray | Sequence | None) -> np.ndarray:
    if a is None:
        return np.zeros((0, 4), np.float32)
    return np.asarray(a, dtype=np.float32).reshape(-1, 4)


@dataclass
class TrainingExample:
    """One training image and what is known about it.

    - ``image`` (uint8 HxWx3) or ``path`` (read by ``loader``, default PIL RGB);
    - ``boxes`` (K, 4) xyxy pixels, ``labels`` (K,) 0-based class indices;
    - ``weights`` (K,) per-box loss weight (default 1); ``noisy`` (K,) bool marks still
      unverified predictions, whose weight is multiplied by ``lambda_d`` in :func:`train`
      (Desai et al., eq. 3). Either mechanism may be used;
    - ``background_boxes`` (R, 4): rejected boxes, explicit background;
    - ``ignore_regions`` (G, 4): areas contributing no loss;
    - ``complete``: every object in the image is labeled (a complete image without boxes is a
      negative image). An incomplete image with no boxes and no rejected boxes teaches nothing
      and is skipped.
    """

    image: np.ndarray | None = None
    path: str | Path | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    weights: np.ndarray | None = None
    noisy: np.ndarray | None = None
    background_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    complete: bool = True
    loader: Callable[[Path], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.image is None and self.path is None:
            raise ValueError("a TrainingExample needs an image or a path")
        self.boxes = _boxes(self.boxes)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.labels.shape[0] != self.boxes.shape[0]:
            raise ValueError("boxes and labels differ in length")
        k = self.boxes.shape[0]
        for name in ("weights", "noisy"):
            v = getattr(self, name)
            if v is not None and np.asarray(v).reshape(-1).shape[0] != k:
                raise ValueError(f"{name} must have one entry per box")
        self.background_boxes = _boxes(self.background_boxes)
        self.ignore_regions = _boxes(self.ignore_regions)

    def load(self) -> np.ndarray:
        """The image as an array."""
        if self.image is not None:
            return self.image
        assert self.path is not None
        return (self.loader or load_image)(Path(self.path))

    def box_weights(self, lambda_d: float = LAMBDA_D) -> np.ndarray:
        """Effective per-box weights: ``weights`` x (``lambda_d`` where ``noisy``)."""
        k = self.boxes.shape[0]
        w = (
            np.ones(k, np.float32)
            if self.weights is None
            else np.asarray(self.weights, np.float32).reshape(-1)
        )
        if self.noisy is not None:
            w = np.where(np.asarray(self.noisy, bool).reshape(-1), w * lambda_d, w)
        return w.astype(np.float32)

    @property
    def informative(self) -> bool:
        """False for an incomplete image with neither boxes nor rejected boxes."""
        return self.complete or len(self.boxes) > 0 or len(self.background_boxes) > 0


@dataclass
class TrainResult:
    """What a :func:`train` run did."""

    steps: int
    total_steps: int
    losses: list[float]
    stopped_reason: str  # "done" | "cancelled" | "non_finite" | "no_data"
    epochs: float = 0.0
    seconds: float = 0.0
    n_examples: int = 0
    n_skipped: int = 0
    loss_parts: dict[str, list[float]] = field(default_factory=dict)
    message: str = ""
    #: Processes that trained together (DDP); ``losses`` are their mean.
    world_size: int = 1


def _clean(boxes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image; returns (boxes, keep mask) dropping boxes thinner than 0.01 px."""
    b = boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    keep = ((b[:, 2] - b[:, 0]) > 1e-2) & ((b[:, 3] - b[:, 1]) > 1e-2)
    return b[keep], keep


def make_target(
    example: TrainingExample,
    image: np.ndarray,
    *,
    lambda_d: float = LAMBDA_D,
    flip: bool | Flip = False,
    partial_background_weight: float = 1.0,
    two_stage: bool = True,
    device: torch.device | str = "cpu",
    colour_jitter: torch.nn.Module | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The image tensor and torchvision target (1-based labels) for one example.

    ``flip``: True flips left-right; a :class:`~napari_al.core.engine.augment.Flip` says which
    axes. ``colour_jitter`` (``Augmentation.colour_jitter()``) is applied to the image tensor.

    Two-stage targets also carry ``weights``, ``bg_boxes``, ``ignore`` and ``bg_weight`` (the
    weight of background anchors/proposals: 1 on complete images, ``partial_background_weight``
    on partially reviewed ones). One-stage targets: see the module docstring.
    """
    h, w = image.shape[:2]
    boxes, keep = _clean(example.boxes, h, w)
    labels = example.labels[keep] + 1
    weights = example.box_weights(lambda_d)[keep]
    bg, _ = _clean(example.background_boxes, h, w)
    ign, _ = _clean(example.ignore_regions, h, w)
    how = flip if isinstance(flip, Flip) else Flip(horizontal=bool(flip))
    img = how.image(image)
    boxes, bg, ign = (how.boxes(b, h, w) for b in (boxes, bg, ign))
    tensor = apply_colour(colour_jitter, image_to_tensor(np.ascontiguousarray(img)))
    dev = torch.device(device)
    if not two_stage:
        sel = weights > 0
        boxes, labels = boxes[sel], labels[sel]
        if len(ign):
            ign_t = torch.from_numpy(ign)
            inside = centres_inside(torch.from_numpy(boxes), ign_t).numpy()
            boxes, labels = boxes[~inside], labels[~inside]
            mean = tensor.mean(dim=(1, 2))
            for x1, y1, x2, y2 in ign:
                ys, ye = math.floor(y1), math.ceil(y2)
                xs, xe = math.floor(x1), math.ceil(x2)
                tensor[:, ys:ye, xs:xe] = mean[:, None, None]
        target = {
            "boxes": torch.from_numpy(boxes).to(dev),
            "labels": torch.from_numpy(labels).to(dev),
        }
        return tensor.to(dev), target
    target = {
        "boxes": torch.from_numpy(boxes).to(dev),
        "labels": torch.from_numpy(labels).to(dev),
        "weights": torch.from_numpy(weights).to(dev),
        "bg_boxes": torch.from_numpy(bg).to(dev),
        "ignore": torch.from_numpy(ign).to(dev),
        "bg_weight": torch.tensor(1.0 if example.complete else partial_background_weight),
    }
    return tensor.to(dev), target


def compute_losses(
    detector: Detector,
    examples: Sequence[TrainingExample],
    *,
    lambda_d: float = LAMBDA_D,
    flips: Sequence[bool | Flip] | None = None,
    partial_background_weight: float = 1.0,
    images: Sequence[np.ndarray] | None = None,
    colour_jitter: torch.nn.Module | None = None,
    model: torch.nn.Module | None = None,
) -> dict[str, Tensor]:
    """The loss terms of one batch (model in training mode, gradients enabled); ``model``
    (default ``detector.model``) is what runs the batch, e.g. its DDP wrapper."""
    imgs, targets = [], []
    for i, ex in enumerate(examples):
        image = ex.load() if images is None else images[i]
        t, tgt = make_target(
            ex,
            image,
            lambda_d=lambda_d,
            flip=flips[i] if flips is not None else False,
            partial_background_weight=partial_background_weight,
            two_stage=detector.two_stage,
            device=detector.device,
            colour_jitter=colour_jitter,
        )
        imgs.append(t)
        targets.append(tgt)
    net = detector.model if model is None else model
    net.train()
    dtype = autocast_dtype(detector.device, detector.amp)
    if dtype is not None:
        with torch.autocast(device_type=detector.device.type, dtype=dtype):
            return net(imgs, targets)
    return net(imgs, targets)


class _ImageCache:
    """Loaded images kept in memory up to a byte budget (the same images recur every epoch)."""

    def __init__(self, budget_mb: float) -> None:
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self.items: dict[int, np.ndarray] = {}

    def get(self, i: int, ex: TrainingExample) -> np.ndarray:
        if i in self.items:
            return self.items[i]
        img = ex.load()
        if ex.image is None and self.used + img.nbytes <= self.budget:
            self.items[i] = img
            self.used += img.nbytes
        return img


def _scheduler(
    opt: torch.optim.Optimizer, lr: float, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if total >= 10:  # OneCycleLR needs a warm-up phase of at least 2 steps
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total, pct_start=0.2, cycle_momentum=False
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)


class _Batches:
    """Batches of example indices drawn from seeded permutations of the usable examples (always
    full, wrapping across epochs), each with its random flips. With ``world_size`` > 1 the
    global batch is ``batch_size x world_size`` (the same on every rank: same seed) and
    :meth:`next` returns rank ``rank``'s slice of it."""

    def __init__(
        self,
        usable: list[int],
        batch_size: int,
        seed: int,
        augmentation: Augmentation,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.usable = usable
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.gen = torch.Generator().manual_seed(int(seed))
        self.order: list[int] = []
        self.rank, self.world_size = rank, world_size

    def next_global(self) -> tuple[list[int], list[Flip]]:
        """The next global batch (all ranks' examples) and how to flip each."""
        size = self.batch_size * self.world_size
        while len(self.order) < size:
            perm = torch.randperm(len(self.usable), generator=self.gen)
            self.order.extend(self.usable[j] for j in perm)
        batch = self.order[:size]
        self.order = self.order[size:]
        return batch, self.augmentation.draw(len(batch), self.gen)

    def next(self) -> tuple[list[int], list[Flip]]:
        """This rank's part of the next batch: example indices and how to flip each."""
        batch, flips = self.next_global()
        if self.world_size == 1:
            return batch, flips
        return (
            ddp.shard(batch, self.rank, self.world_size),
            ddp.shard(flips, self.rank, self.world_size),
        )


class _Optimiser:
    """SGD (momentum, weight decay) over the trainable parameters, the learning-rate schedule,
    gradient-norm clipping and, under float16 autocast on CUDA, gradient scaling."""

    def __init__(
        self,
        detector: Detector,
        total: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        clip_norm: float,
    ) -> None:
        self.params = [p for p in detector.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.sched = _scheduler(self.opt, lr, total)
        dtype = autocast_dtype(detector.device, detector.amp)
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        self.clip_norm = clip_norm

    def step(self, loss: Tensor) -> bool:
        """Backpropagate ``loss`` and take one step; False (no step taken) when the gradient is
        not finite (with gradient scaling, the scaler skips such steps itself)."""
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        if not torch.isfinite(grad_norm) and self.scaler is None:
            return False
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        return True


@dataclass
class _Run:
    """How the optimisation steps went."""

    reason: str = "done"  # as TrainResult.stopped_reason
    done: int = 0
    losses: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)


def _run_steps(
    detector: Detector,
    examples: Sequence[TrainingExample],
    total: int,
    per_epoch: int,
    batches: _Batches,
    optimiser: _Optimiser,
    cache: _ImageCache,
    *,
    lambda_d: float,
    partial_background_weight: float,
    colour_jitter: torch.nn.Module | None,
    progress: TrainProgress | None,
    should_stop: Callable[[], bool] | None,
    wrapped: torch.nn.Module | None = None,
) -> _Run:
    """Up to ``total`` optimisation steps. ``should_stop()`` is checked before every step; a
    non-finite loss or gradient stops the run and restores the last weights that gave a finite
    loss. The model is left in eval mode, also when a step raises.

    ``wrapped``: the model's DDP wrapper when several processes train together; then a cancel
    or a non-finite loss on any rank stops every rank at the same step (one all-reduce of
    the stop flags and the loss per step), and the losses recorded are the ranks' mean."""
    model = detector.model
    run = _Run()
    world = batches.world_size
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        for step in range(total):
            stop = should_stop is not None and should_stop()
            if stop and wrapped is None:
                run.reason = "cancelled"
                break
            batch, flips = batches.next()
            loss_dict = compute_losses(
                detector,
                [examples[i] for i in batch],
                lambda_d=lambda_d,
                flips=flips,
                partial_background_weight=partial_background_weight,
                images=[cache.get(i, examples[i]) for i in batch],
                colour_jitter=colour_jitter,
                model=wrapped,
            )
            loss = sum(v.float() for v in loss_dict.values())
            finite = bool(torch.isfinite(loss))
            value = float(loss.detach()) if finite else 0.0
            if wrapped is not None:  # every rank takes the same decision
                n_stop, n_bad, total_loss = ddp.all_sum([stop, not finite, value], loss.device)
                stop, finite, value = n_stop > 0, n_bad == 0, total_loss / world
                if stop:
                    run.reason = "cancelled"
                    break
            if not finite:
                run.reason = "non_finite"
                break
            # the weights that just gave a finite loss
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    snapshot[k].copy_(v)
            if not optimiser.step(loss):
                run.reason = "non_finite"
                break
            run.done = step + 1
            run.losses.append(value)
            for k, v in loss_dict.items():
                run.parts.setdefault(k, []).append(float(v.detach()))
            if progress is not None:
                progress(run.done, total, value, run.done / per_epoch)
    finally:
        if run.reason == "non_finite":
            model.load_state_dict(snapshot)
            log.warning("non-finite loss at step %d: restored the last good weights", run.done + 1)
        model.eval()
    return run


def _message(run: _Run, total: int, seconds: float, world: int, n_skipped: int) -> str:
    """The one-line summary of a run."""
    msg = f"{run.done}/{total} steps in {seconds:.1f} s ({run.reason})"
    if world > 1:
        msg += f" on {world} processes"
    if n_skipped:
        msg += f"; {n_skipped} uninformative images skipped"
    return msg


def _augmentation(augment: Augmentation | str | None, flip: bool) -> Augmentation:
    """``augment`` as an :class:`Augmentation` (its text parsed); None: left-right flips when
    ``flip``."""
    if augment is None:
        return Augmentation(hflip=flip)
    return Augmentation.parse(augment) if isinstance(augment, str) else augment


def train(
    detector: Detector,
    examples: Sequence[TrainingExample],
    epochs: float | None = None,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int = 2,
    lambda_d: float = LAMBDA_D,
    from_scratch: bool = False,
    seed: int = 0,
    progress: TrainProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    augment_flip: bool = True,
    *,
    augment: Augmentation | str | None = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    clip_norm: float = CLIP_NORM,
    partial_background_weight: float = 1.0,
    image_cache_mb: float = 512.0,
    threads: int | None = None,
) -> TrainResult:
    """Fine-tune ``detector`` in place on ``examples`` (Desai et al. eq. 3 weighting).

    Runs ``steps`` optimisation steps, or ``epochs`` passes over the informative examples
    (default 10 epochs), in batches of ``batch_size`` (always full: examples are drawn from
    seeded permutations, wrapping across epochs). ``from_scratch`` re-initialises the detector
    first (pretrained backbone, fresh heads) instead of continuing from its current weights.
    ``should_stop()`` is checked before every step (a cancel stops within one step); a
    non-finite loss or gradient stops the run and restores the last weights that gave a finite
    loss. The detector is left in eval mode.

    ``lr`` (peak of the one-cycle schedule): default :func:`default_lr`, by weight source.
    ``augment`` (an :class:`~napari_al.core.engine.augment.Augmentation` or its text, e.g.
    ``"hflip,vflip,scale=0.25"``) replaces ``augment_flip`` (left-right flips only) when given.
    Under torchrun (``WORLD_SIZE`` > 1) the ranks train together with DDP, ``batch_size`` per
    process (module docstring); every rank must call it with the same examples and arguments.
    """
    t0 = time.perf_counter()
    usable = [i for i, ex in enumerate(examples) if ex.informative]
    n_skipped = len(examples) - len(usable)
    if detector.arch.startswith("ssdlite") and batch_size < 2:
        log.info("SSDlite cannot train with batch size 1 (BatchNorm); using 2")
        batch_size = 2
    batch_size = max(1, int(batch_size))
    if not usable:
        return TrainResult(0, 0, [], "no_data", n_skipped=n_skipped, message="nothing to train on")
    distributed = ddp.init_from_env(detector.device)
    rank, world = (ddp.rank(), ddp.world_size()) if distributed else (0, 1)
    per_epoch = max(1, math.ceil(len(usable) / (batch_size * world)))
    if steps is None:
        steps = math.ceil((10.0 if epochs is None else float(epochs)) * per_epoch)
    total = max(0, int(steps))
    ddp.check_agree([len(usable), total], detector.device)  # ranks that differ would hang
    if from_scratch:
        detector.reset(seed)
    if lr is None:
        lr = default_lr(detector)
    optimiser = _Optimiser(detector, total, lr, momentum, weight_decay, clip_norm)
    augmentation = _augmentation(augment, augment_flip)
    batches = _Batches(usable, batch_size, seed, augmentation, rank, world)
    wrapped = ddp.wrap(detector.model, detector.device) if distributed else None
    cuda = detector.device.type == "cuda"
    with (
        torch.random.fork_rng(devices=[detector.device.index or 0] if cuda else []),
        num_threads(threads),
        augmentation.scales(detector.model.transform),
    ):
        torch.manual_seed(int(seed) + rank)  # each rank its own colour jitter, dropout
        run = _run_steps(
            detector,
            examples,
            total,
            per_epoch,
            batches,
            optimiser,
            _ImageCache(image_cache_mb),
            lambda_d=lambda_d,
            partial_background_weight=partial_background_weight,
            colour_jitter=augmentation.colour_jitter(),
            progress=progress,
            should_stop=should_stop,
            wrapped=wrapped,
        )
    del wrapped  # the detector keeps the bare model: the checkpoint format is unchanged
    seconds = time.perf_counter() - t0
    return TrainResult(
        steps=run.done,
        total_steps=total,
        losses=run.losses,
        stopped_reason=run.reason,
        epochs=run.done / per_epoch,
        seconds=seconds,
        n_examples=len(usable),
        n_skipped=n_skipped,
        loss_parts=run.parts,
        message=_message(run, total, seconds, world, n_skipped),
        world_size=world,
    )
