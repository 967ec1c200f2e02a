"""The pieces of one forward pass that do not need the model: image tensors in, raw detections
out, numpy :class:`~napari_al.core.data.Predictions` back in original-image pixels.

Default thresholds of ordinary and candidate predictions (Desai et al.: a low detection
threshold and more boxes per image to maximise recall) live here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.transform import resize_boxes

from napari_al.core.data import Predictions

#: Ordinary predictions: torchvision's defaults.
SCORE_THRESHOLD = 0.05
DETECTIONS_PER_IMAGE = 100
#: Candidate mode (Desai et al.: a low detection threshold to maximise recall).
CANDIDATE_SCORE_THRESHOLD = 0.01
CANDIDATE_DETECTIONS_PER_IMAGE = 300


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``uint8`` HxWx3 RGB, upright: the same pixels the viewer shows.

    Goes through :func:`napari_al.core.images.read_image` (EXIF orientation applied; 16-bit,
    float, gray, palette and multi-channel TIFF images read) and
    :func:`~napari_al.core.images.to_rgb_uint8` (percentile scaling of non-uint8 images), so
    training, inference, evaluation and the simulator see what display and import-time size
    checks see. Raises :class:`~napari_al.core.images.ImageReadError` (a ValueError) or OSError.
    """
    from napari_al.core.images import read_image, to_rgb_uint8

    return to_rgb_uint8(read_image(path))


def image_to_tensor(image: np.ndarray) -> Tensor:
    """HxW, HxWx1/3/4 arrays (uint8, other integers scaled by their maximum, floats in 0-1) to a
    float CHW tensor in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    if a.dtype == np.uint8:
        a = np.ascontiguousarray(a)
        # torch wants writable memory (np.asarray of a PIL image is not) and no negative
        # stride, which a flipped view keeps along an axis of length 1 (a 1 px wide image
        # flipped left-right): numpy calls that view contiguous and does not copy it
        if not a.flags.writeable or any(s < 0 for s in a.strides):
            a = a.copy()
        t = torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    elif np.issubdtype(a.dtype, np.integer):
        t = torch.from_numpy(a.astype(np.float32) / float(np.iinfo(a.dtype).max)).permute(2, 0, 1)
    else:
        t = torch.from_numpy(np.clip(a.astype(np.float32), 0, 1)).permute(2, 0, 1)
    return t.contiguous()


def image_embedding(
    features: dict[str, Tensor], image_sizes: list[tuple[int, int]], padded: tuple[int, int]
) -> Tensor:
    """(B, E): average of each level over the image's unpadded area, levels concatenated."""
    out = []
    for f in features.values():
        h, w = f.shape[-2:]
        per = []
        for i, (ih, iw) in enumerate(image_sizes):
            vh = max(1, min(h, math.ceil(ih * h / padded[0])))
            vw = max(1, min(w, math.ceil(iw * w / padded[1])))
            per.append(f[i, :, :vh, :vw].float().mean(dim=(1, 2)))
        out.append(torch.stack(per))
    return torch.cat(out, dim=1)


@dataclass
class RawDetections:
    """Detections of one image in resized-image coordinates (tensors on the device): ``boxes``
    (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,) 0-based, ``probs`` (N, C+1), ``features``
    (N, D), ``proposals`` (N, 4) or None (one-stage), ``pooled`` RoI-pooled features of each
    box's proposal (kept for MC dropout) or None, ``embedding`` (E,)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor  # 0-based
    probs: Tensor
    features: Tensor
    proposals: Tensor | None
    pooled: Tensor | None
    embedding: Tensor
    image_size: tuple[int, int]  # resized (h, w)
    orig_size: tuple[int, int]  # original (h, w)

    def subset(self, index: Tensor) -> RawDetections:
        """The detections selected by ``index`` (same image, same embedding)."""
        return RawDetections(
            self.boxes[index],
            self.scores[index],
            self.labels[index],
            self.probs[index],
            self.features[index],
            None if self.proposals is None else self.proposals[index],
            None if self.pooled is None else self.pooled[index],
            self.embedding,
            self.image_size,
            self.orig_size,
        )


def to_predictions(raw: RawDetections, num_classes: int, flipped: bool = False) -> Predictions:
    """Numpy predictions in original-image pixels (mapped back if the input was flipped);
    ``num_classes`` foreground classes C (probs have C + 1 columns)."""
    scale_from, scale_to = list(raw.image_size), list(raw.orig_size)

    def back(b: Tensor) -> np.ndarray:
        b = resize_boxes(b.float(), scale_from, scale_to)
        if flipped:
            w = float(raw.orig_size[1])
            b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
        return b.cpu().numpy().astype(np.float32).reshape(-1, 4)

    return Predictions(
        boxes=back(raw.boxes),
        labels=raw.labels.cpu().numpy().astype(np.int64),
        scores=raw.scores.cpu().numpy().astype(np.float32),
        probs=raw.probs.cpu().numpy().astype(np.float32).reshape(-1, num_classes + 1),
        features=raw.features.cpu().numpy().astype(np.float32),
        embedding=raw.embedding.cpu().numpy().astype(np.float32),
        proposals=None if raw.proposals is None else back(raw.proposals),
    )
