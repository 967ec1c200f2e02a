"""Training-time augmentations: flips, scale jitter and colour jitter.

A few labelled images go further when each step sees them differently. Flips are exact for
microscopy, PCB scans and aerial images (no up or down); scale jitter is torchvision's
multi-scale training (``GeneralizedRCNNTransform`` draws the input's shorter side from a tuple
of sizes in training mode); colour jitter is :class:`torchvision.transforms.v2.ColorJitter`
(brightness, contrast, saturation, hue), for stain and illumination differences between slides.
The survey in ``../shared/seeds`` lists these as the standard data side of few-label detection;
which ones help is measured in ``docs/benchmarks.md`` (``benchmarks/learning_curve.py
--augment``).

Everything is drawn from torch's random generators, so a seeded training run stays reproducible.
Boxes are ``float32`` ``(N, 4)`` xyxy in pixels of the (unflipped) image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

#: The names :meth:`Augmentation.parse` accepts.
NAMES = ("hflip", "vflip", "scale", "colour")


@dataclass(frozen=True)
class Augmentation:
    """Which random augmentations a training run applies.

    ``hflip``/``vflip``: each image flipped left-right / top-bottom with probability 0.5.
    ``scale``: the input's shorter side drawn per image from ``(1 - scale .. 1 + scale) x
    min_size`` (five sizes), 0 = off; no effect on SSDlite (fixed input size). ``colour``:
    brightness, contrast and saturation factors drawn from ``[1 - colour, 1 + colour]``, hue
    shifted by up to ``colour / 4`` of a turn, 0 = off.
    """

    hflip: bool = True
    vflip: bool = False
    scale: float = 0.0
    colour: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale < 1.0:
            raise ValueError(f"scale jitter must be in [0, 1), got {self.scale}")
        if not 0.0 <= self.colour <= 1.0:
            raise ValueError(f"colour jitter must be in [0, 1], got {self.colour}")

    @classmethod
    def parse(cls, text: str) -> Augmentation:
        """``"hflip,vflip,scale=0.25,colour=0.2"``; ``"none"`` or ``""`` for none; a name
        without a value takes 0.25 (scale) or 0.2 (colour). Raises ValueError naming the
        unknown part and the accepted names, or a name given twice."""
        fields: dict[str, float | bool] = {"hflip": False}
        seen: set[str] = set()
        for part in (p.strip() for p in text.split(",")):
            if not part or part == "none":
                continue
            name, _, value = part.partition("=")
            name = name.strip().lower().replace("color", "colour")
            if name not in NAMES:
                raise ValueError(f"unknown augmentation {part!r}; use any of {', '.join(NAMES)}")
            if name in seen:
                raise ValueError(f"augmentation {name!r} is given twice; give it once")
            seen.add(name)
            if name in ("hflip", "vflip"):
                fields[name] = True
            else:
                default = 0.25 if name == "scale" else 0.2
                try:
                    fields[name] = float(value) if value else default
                except ValueError:
                    raise ValueError(f"augmentation {part!r}: {value!r} is not a number") from None
        return cls(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        parts = [n for n in ("hflip", "vflip") if getattr(self, n)]
        parts += [f"{n}={getattr(self, n):g}" for n in ("scale", "colour") if getattr(self, n)]
        return ",".join(parts) or "none"

    def colour_jitter(self) -> nn.Module | None:
        """The colour jitter transform (float CHW images in [0, 1]), or None when off."""
        if not self.colour:
            return None
        c = self.colour
        return v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.5, c / 4))

    def draw(self, n: int, generator: torch.Generator) -> list[Flip]:
        """The flips of ``n`` images (one uniform draw per image and axis, in that order)."""
        h = torch.rand(n, generator=generator) < 0.5 if self.hflip else torch.zeros(n, dtype=bool)
        v = torch.rand(n, generator=generator) < 0.5 if self.vflip else torch.zeros(n, dtype=bool)
        return [Flip(bool(a), bool(b)) for a, b in zip(h.tolist(), v.tolist(), strict=True)]

    @contextmanager
    def scales(self, transform: nn.Module) -> Iterator[None]:
        """Scale jitter on a torchvision ``GeneralizedRCNNTransform`` for the block: its
        ``min_size`` becomes five sizes and ``max_size`` grows with the largest (so the cap of
        the longer side does not undo the jitter); restored afterwards, also on error."""
        if not self.scale or not hasattr(transform, "min_size"):
            yield
            return
        old_min, old_max = transform.min_size, transform.max_size
        base = int(old_min[0] if isinstance(old_min, (tuple, list)) else old_min)
        factors = np.linspace(1.0 - self.scale, 1.0 + self.scale, 5)
        transform.min_size = tuple(max(16, round(base * f)) for f in factors)
        transform.max_size = round(old_max * (1.0 + self.scale))
        try:
            yield
        finally:
            transform.min_size, transform.max_size = old_min, old_max


@dataclass(frozen=True)
class Flip:
    """How one training image is flipped."""

    horizontal: bool = False
    vertical: bool = False

    def image(self, image: np.ndarray) -> np.ndarray:
        """The flipped ``(H, W[, C])`` array (a view)."""
        if self.horizontal:
            image = image[:, ::-1]
        if self.vertical:
            image = image[::-1]
        return image

    def boxes(self, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
        """``(N, 4)`` xyxy boxes of an ``height x width`` image, in the flipped image (the
        array itself when nothing is flipped)."""
        if not (self.horizontal or self.vertical):
            return boxes
        out = boxes.copy()
        if self.horizontal:
            out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
        if self.vertical:
            out[:, 1], out[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
        return out


def apply_colour(jitter: nn.Module | None, tensor: Tensor) -> Tensor:
    """``jitter`` applied to a float ``(3, H, W)`` image in [0, 1]; grey images (all channels
    equal) get brightness/contrast only in effect, since saturation and hue leave grey alone."""
    if jitter is None:
        return tensor
    return jitter(tensor).clamp_(0.0, 1.0)
