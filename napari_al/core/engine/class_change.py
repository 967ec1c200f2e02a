"""A detector for a changed class list that keeps what a trained one learnt.

Adding a class (``napari-al add-class``) changes the size of a detector's class-specific
layers, so the trained checkpoint cannot be loaded as it is. Starting again from the pretrained
backbone would throw away every round of training. :func:`with_classes` instead builds the same
structure (architecture, input size, anchors, normalisation) for the new classes and copies
the old weights into it: every tensor whose name and shape match (backbone, FPN, RPN, the box
head's shared layers, a one-stage head's regression and shared convolutions), and in the
class-specific layers the rows of every class both lists hold, matched by name, the background
row too. Only the rows of the new classes start fresh (torchvision's initialisation). This is
the usual way of growing a classifier's output layer in incremental learning (e.g. the
"expanded output layer" of Li & Hoiem, *Learning without Forgetting*, 2016; here without their
distillation loss: the old classes keep their labels in the project and train on).

Row layouts (torchvision's heads; C classes, A anchors per location):

- Faster R-CNN ``roi_heads.box_predictor.cls_score``: ``C + 1`` rows, background first;
  ``bbox_pred``: ``4 (C + 1)`` rows, four per class (class-major).
- SSDlite ``head.classification_head``: ``A (C + 1)`` output channels per level, background
  first within each anchor (anchor-major).
- RetinaNet and FCOS ``head.classification_head.cls_logits``: ``A (C + 1)`` channels,
  anchor-major (torchvision counts a background slot there too, unused by their sigmoid loss).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from napari_al.core.engine.detector import Detector

#: Class-specific tensors laid out class-major, ``rows_per_class`` rows per class.
_CLASS_MAJOR = {"roi_heads.box_predictor.bbox_pred.": 4, "roi_heads.box_predictor.cls_score.": 1}


@dataclasses.dataclass(frozen=True)
class CarriedOver:
    """What :func:`with_classes` kept: ``tensors`` copied whole, ``partly`` class-specific
    tensors whose rows of the ``shared`` classes were copied, ``fresh`` tensors left at their
    initialisation (none for torchvision's detectors), and the class names ``shared`` by the
    old and new lists and ``added`` by the new one."""

    tensors: int
    partly: int
    fresh: tuple[str, ...]
    shared: tuple[str, ...]
    added: tuple[str, ...]


def _row_map(old: Sequence[str], new: Sequence[str]) -> list[tuple[int, int]]:
    """``(new slot, old slot)`` of the class slots both lists hold, background 0 to 0."""
    where = {name: i for i, name in enumerate(old)}
    return [(0, 0), *((j + 1, where[n] + 1) for j, n in enumerate(new) if n in where)]


def _copy_rows(
    dst: Tensor, src: Tensor, pairs: list[tuple[int, int]], n_new: int, n_old: int, key: str
) -> bool:
    """Copy the rows of the shared class slots of ``src`` (``n_old`` slots) into ``dst``
    (``n_new`` slots) in place; False when the shapes fit neither layout."""
    if dst.shape[1:] != src.shape[1:] or dst.shape[0] % n_new or src.shape[0] % n_old:
        return False
    per_new, per_old = dst.shape[0] // n_new, src.shape[0] // n_old
    if per_new != per_old:
        return False
    per = per_new
    class_major = any(key.startswith(prefix) for prefix in _CLASS_MAJOR)
    for j, i in pairs:
        for r in range(per):  # class-major: k * per + r; anchor-major: r * slots + k
            if class_major:
                dst[j * per + r] = src[i * per + r]
            else:
                dst[r * n_new + j] = src[r * n_old + i]
    return True


def with_classes(old: Detector, classes: Sequence[str]) -> tuple[Detector, CarriedOver]:
    """A detector for ``classes`` with ``old``'s structure and everything it learnt that
    still applies (module docstring); on ``old``'s device, in eval mode, ``model_version``
    0 (not yet a version of the project). Raises ValueError for an empty ``classes``."""
    from napari_al.core.engine.detector import Detector

    if not classes:
        raise ValueError("a detector needs at least one class")
    config = dataclasses.replace(old.config, classes=list(classes))
    new = Detector.from_config(config, device=old.device, amp=old.amp)
    # the class-specific tensors: those whose shape follows the number of classes
    probe = Detector.from_config(dataclasses.replace(config, classes=[*classes, "\0"]))
    sized = probe.model.state_dict()
    slots_old, slots_new = len(old.classes) + 1, len(classes) + 1  # background: slot 0
    pairs = _row_map(old.classes, classes)
    own, src = new.model.state_dict(), old.model.state_dict()
    whole, partly, fresh = 0, 0, []
    with torch.no_grad():
        for key, dst in own.items():
            value = src.get(key)
            per_class = sized[key].shape != dst.shape
            if value is not None and not per_class and value.shape == dst.shape:
                dst.copy_(value)
                whole += 1
            elif (
                per_class
                and value is not None
                and _copy_rows(dst, value, pairs, slots_new, slots_old, key)
            ):
                partly += 1
            else:
                fresh.append(key)
    new.model.load_state_dict(own, strict=True)
    new.model.eval()
    new.model_version = 0
    shared = tuple(n for n in classes if n in set(old.classes))
    added = tuple(n for n in classes if n not in set(old.classes))
    return new, CarriedOver(whole, partly, tuple(fresh), shared, added)
