"""What the large-image tests share: sparse tiled TIFFs written tile by tile (never whole in
memory), and a "perfect" detector forward pass that finds exactly the bright objects a tile
shows (the network replaced, everything around it real: tiling, merging, storing)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

from napari_al.core.engine.inference import RawDetections

#: A bright rectangle of a sparse image: x, y (left, top), width, height, in full-image pixels.
Rect = tuple[int, int, int, int]


def fake_infer_raw(self, tensors, score_thresh, detections, keep_pooled=False, **_):
    """What a perfect detector reports of a tile: the visible part of each bright object
    (a box clipped to the tile; bright: channel 0 over half its range), class 0, score 0.9;
    ``features`` (w, h, 1) of its box in the tile, ``proposals`` the box itself,
    ``embedding`` (tile's mean, 1). Monkeypatch it onto ``Detector.infer_raw``."""
    out = []
    for t in tensors:
        mask = t[0] > 0.5
        boxes = []
        if bool(mask.any()):  # most windows of a sparse image are empty: skip the labelling
            labels, _ = ndimage.label(mask.cpu().numpy())
            boxes = [
                [s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(labels)
            ]
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        n = len(b)
        wh = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], torch.ones(n)], 1)
        probs = torch.tensor([[0.1] + [0.9] + [0.0] * (self.num_classes - 1)] * n).reshape(
            n, self.num_classes + 1
        )
        size = (int(t.shape[-2]), int(t.shape[-1]))
        out.append(
            RawDetections(
                boxes=b,
                scores=torch.full((n,), 0.9),
                labels=torch.zeros(n, dtype=torch.int64),
                probs=probs,
                features=wh,
                proposals=b.clone(),
                pooled=None,
                embedding=torch.tensor([float(t.mean()), 1.0]),
                image_size=size,
                orig_size=size,
            )
        )
    return out


def _tiles(
    side: int, rects: Sequence[Rect], tile: int, step: int, colour: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """The tiles, row by row, of the level sampled every ``step`` px (``data[::step, ::step]``)
    of a ``side`` x ``side`` image of zeros with ``rects`` filled with ``colour``."""
    n = -(-side // step)
    for y in range(0, n, tile):
        for x in range(0, n, tile):
            t = np.zeros((tile, tile, len(colour)), np.uint8)
            for rx, ry, rw, rh in rects:  # the sampled pixels k * step inside the rectangle
                y0, y1 = -(-ry // step) - y, -(-(ry + rh) // step) - y
                x0, x1 = -(-rx // step) - x, -(-(rx + rw) // step) - x
                if y1 > 0 and x1 > 0 and y0 < tile and x0 < tile:
                    t[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = colour
            yield t if len(colour) == 3 else t[..., 0]


def sparse_tiff(
    path: Path,
    side: int,
    rects: Sequence[Rect],
    *,
    tile: int = 512,
    rgb: bool = False,
    reduced: Sequence[int] = (),
) -> Path:
    """A ``side`` x ``side`` tiled (``tile`` px), Deflate-compressed uint8 TIFF: zeros but the
    ``rects`` (x, y, w, h), white (grey) or (255, 200, 40) (``rgb``), written tile by tile so
    it is never whole in memory (a few hundred kB on disk for 25,000 px). ``reduced``: the
    steps of a pyramid's reduced levels (SubIFDs), each ``data[::step, ::step]``."""
    colour = (255, 200, 40) if rgb else (255,)
    opts = {
        "dtype": np.uint8,
        "tile": (tile, tile),
        "compression": "zlib",
        "photometric": "rgb" if rgb else "minisblack",
    }
    with tifffile.TiffWriter(path) as tw:
        for i, step in enumerate((1, *reduced)):
            n = -(-side // step)
            shape = (n, n, 3) if rgb else (n, n)
            extra = {"subifds": len(reduced)} if i == 0 and reduced else {}
            if i > 0:
                extra = {"subfiletype": 1}
            tw.write(_tiles(side, rects, tile, step, colour), shape=shape, **opts, **extra)
    return path
