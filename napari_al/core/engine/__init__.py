"""The detector engine: the only torch code of :mod:`napari_al.core`.

Importing this package imports torch and torchvision (nothing else in ``core.store`` or
``core.formats`` may). It has no process-wide side effects: thread counts are set by the entry
points (:func:`configure_threads`), the device is chosen per detector (:func:`select_device`).

Modules:

- :mod:`~napari_al.core.engine.detector`: :class:`Detector` (predict, reclassify, scoring views,
  state);
- :mod:`~napari_al.core.engine.build`: architectures, :func:`build_model`;
- :mod:`~napari_al.core.engine.weights`: weight sources (``imagenet``, ``coco-mnv2``,
  ``torchvision-coco``, files) and the preprocessing each needs;
  :mod:`~napari_al.core.engine.convert_tf_mnv2` converts the TF COCO MobileNetV2 body;
- :mod:`~napari_al.core.engine.heads`, :mod:`~napari_al.core.engine.one_stage`: rich outputs
  of two-stage and one-stage heads;
- :mod:`~napari_al.core.engine.losses`: partial-label losses (Desai et al., eq. 3);
- :mod:`~napari_al.core.engine.inference`: image tensors, raw detections, default thresholds;
- :mod:`~napari_al.core.engine.views`: MC dropout, flipped, noisy and ensemble views;
- :mod:`~napari_al.core.engine.tiling`: large images predicted window by window at native scale;
- :mod:`~napari_al.core.engine.training`: fine-tuning on partially labeled images;
- :mod:`~napari_al.core.engine.checkpoints`: atomic, weights-only checkpoints (and the same
  bytes in memory, sent to Dask workers);
- :mod:`~napari_al.core.engine.device`: device choice, autocast, CPU threads.
- :mod:`~napari_al.core.engine.ddp`: training on several processes (torchrun, DDP).
"""

from __future__ import annotations

from napari_al.core.engine.build import (
    ARCHS,
    DEFAULT_ARCH,
    AnchorSizesError,
    BuildInfo,
    DetectorConfig,
)
from napari_al.core.engine.checkpoints import from_bytes as detector_from_bytes
from napari_al.core.engine.checkpoints import load as load_checkpoint
from napari_al.core.engine.checkpoints import load_into as load_checkpoint_into
from napari_al.core.engine.checkpoints import read_metadata as read_checkpoint_metadata
from napari_al.core.engine.checkpoints import save as save_checkpoint
from napari_al.core.engine.checkpoints import to_bytes as detector_to_bytes
from napari_al.core.engine.detector import Detector
from napari_al.core.engine.device import configure_threads, num_threads, select_device
from napari_al.core.engine.inference import load_image
from napari_al.core.engine.training import (
    LAMBDA_D,
    LEARNING_RATE,
    TrainingExample,
    TrainProgress,
    TrainResult,
    train,
)
from napari_al.core.engine.weights import DEFAULT_SOURCE as DEFAULT_WEIGHTS
from napari_al.core.engine.weights import SOURCES as WEIGHT_SOURCES
from napari_al.core.engine.weights import WeightsUnavailable

__all__ = [
    "ARCHS",
    "DEFAULT_ARCH",
    "DEFAULT_WEIGHTS",
    "LAMBDA_D",
    "LEARNING_RATE",
    "WEIGHT_SOURCES",
    "AnchorSizesError",
    "BuildInfo",
    "Detector",
    "DetectorConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingExample",
    "WeightsUnavailable",
    "configure_threads",
    "detector_from_bytes",
    "detector_to_bytes",
    "load_checkpoint",
    "load_checkpoint_into",
    "load_image",
    "num_threads",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "select_device",
    "train",
]
