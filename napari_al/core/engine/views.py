"""Extra views of the same images for uncertainty scorers, the backbone run once per view.

- MC dropout (Gal & Ghahramani; as used for detection by Miller et al.) reruns only the box
  head over the cached RoI-pooled features of the base boxes' proposals (two-stage only);
- the horizontally flipped view is mapped back to original pixels;
- noisy views add Gaussian noise to the 0-1 intensities (Kao et al.);
- candidates use a low threshold and more boxes per image (Desai et al.: maximise recall);
- ensemble members (e.g. earlier checkpoints) re-classify the base boxes.

The random draws (dropout masks, noise) come from one generator seeded per call, in a fixed
order (per batch: MC passes image by image, then the noisy views), so a seed reproduces a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from napari_al.core.data import ScoringViews
from napari_al.core.engine.device import autocast
from napari_al.core.engine.inference import (
    CANDIDATE_DETECTIONS_PER_IMAGE,
    CANDIDATE_SCORE_THRESHOLD,
    DETECTIONS_PER_IMAGE,
    SCORE_THRESHOLD,
    to_predictions,
)

if TYPE_CHECKING:
    from napari_al.core.engine.detector import Detector, ProgressCallback

log = logging.getLogger(__name__)

#: Default MC-dropout rate on the box head's hidden activations.
MC_DROPOUT_P = 0.2
#: Default Gaussian noise (std on the 0-1 intensity scale) for noisy views (Kao et al.).
NOISE_SIGMA = 0.05


@dataclass(frozen=True)
class ViewOptions:
    """Which views :meth:`~napari_al.core.engine.detector.Detector.scoring_views` computes
    besides the base predictions (the parameters are documented there)."""

    mc_passes: int = 0
    flip: bool = False
    noise_views: int = 0
    noise_sigma: float = NOISE_SIGMA
    candidates: bool = False
    dropout_p: float = MC_DROPOUT_P
    score_threshold: float = SCORE_THRESHOLD
    ensemble: Sequence[Detector] = ()


def scoring_views(
    detector: Detector,
    images: Sequence[np.ndarray],
    options: ViewOptions,
    seed: int = 0,
    batch_size: int = 4,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ScoringViews]:
    """One :class:`~napari_al.core.data.ScoringViews` per image, batch by batch;
    ``progress(done, total)`` after each batch; ``should_stop()`` is checked between batches
    (returns what is done)."""
    gen_device = detector.device if detector.device.type == "cuda" else torch.device("cpu")
    generator = torch.Generator(device=gen_device)
    generator.manual_seed(int(seed))
    if options.mc_passes and not detector.two_stage:
        log.warning("MC dropout needs a box head: mc_probs left None for %s", detector.arch)
    out: list[ScoringViews] = []
    total = len(images)
    for start in range(0, total, max(1, batch_size)):
        if should_stop is not None and should_stop():
            break
        out.extend(batch_views(detector, images[start : start + batch_size], options, generator))
        if progress is not None:
            progress(len(out), total)
    return out


def batch_views(
    detector: Detector,
    images: Sequence[np.ndarray],
    options: ViewOptions,
    generator: torch.Generator,
) -> list[ScoringViews]:
    """The views of one batch of images (drawing from ``generator``)."""
    tensors = detector.image_tensors(images)
    views = _base_views(detector, tensors, options, generator)
    threshold = options.score_threshold
    if options.flip:
        flipped = detector.infer_raw([t.flip(-1) for t in tensors], threshold, DETECTIONS_PER_IMAGE)
        for v, r in zip(views, flipped, strict=True):
            v.flipped = to_predictions(r, detector.num_classes, flipped=True)
    if options.noise_views:
        for v in views:
            v.noisy = []
        for _ in range(int(options.noise_views)):
            noisy = [add_noise(t, options.noise_sigma, generator) for t in tensors]
            raws = detector.infer_raw(noisy, threshold, DETECTIONS_PER_IMAGE)
            for v, r in zip(views, raws, strict=True):
                v.noisy.append(to_predictions(r, detector.num_classes))  # type: ignore[union-attr]
    if options.ensemble:
        base_boxes = [v.base.boxes for v in views]
        member_probs = [m.reclassify(images, base_boxes) for m in options.ensemble]
        for i, v in enumerate(views):
            v.ensemble_probs = np.stack([mp[i] for mp in member_probs]).astype(np.float32)
    return views


def _base_views(
    detector: Detector, tensors: list[Tensor], options: ViewOptions, generator: torch.Generator
) -> list[ScoringViews]:
    """Base predictions (and candidates, MC-dropout probabilities) from one forward pass."""
    keep_pooled = bool(options.mc_passes) and detector.two_stage
    threshold = options.score_threshold
    if options.candidates:
        raws = detector.infer_raw(
            tensors, CANDIDATE_SCORE_THRESHOLD, CANDIDATE_DETECTIONS_PER_IMAGE, keep_pooled
        )
    else:
        raws = detector.infer_raw(tensors, threshold, DETECTIONS_PER_IMAGE, keep_pooled)
    views: list[ScoringViews] = []
    for raw in raws:
        cand = None
        base_raw = raw
        if options.candidates:
            cand = to_predictions(raw, detector.num_classes)
            idx = torch.where(raw.scores > threshold)[0][:DETECTIONS_PER_IMAGE]
            base_raw = raw.subset(idx)
        v = ScoringViews(base=to_predictions(base_raw, detector.num_classes), candidates=cand)
        if keep_pooled:
            v.mc_probs = mc_probs(
                detector, base_raw.pooled, options.mc_passes, options.dropout_p, generator
            )
        views.append(v)
    return views


def add_noise(t: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """``t`` (0-1 intensities) plus Gaussian noise of std ``sigma``, clamped to [0, 1]."""
    noise = torch.randn(t.shape, generator=generator, device=generator.device)
    return (t + sigma * noise.to(t.device)).clamp_(0, 1)


@torch.inference_mode()
def mc_probs(
    detector: Detector, pooled: Tensor | None, passes: int, p: float, generator: Any
) -> np.ndarray:
    """``(passes, N, C+1)`` float32 class distributions of N boxes from ``passes`` MC-dropout
    passes (rate ``p``) of the two-stage box head over their RoI-pooled features ``pooled``."""
    n = 0 if pooled is None else int(pooled.shape[0])
    c1 = detector.num_classes + 1
    if n == 0 or pooled is None:
        return np.zeros((passes, 0, c1), np.float32)
    rh = detector.model.roi_heads
    with autocast(detector.device, detector.amp):
        res = [rh.head_probs(pooled, p, generator) for _ in range(passes)]
    return torch.stack(res).float().cpu().numpy().astype(np.float32)
