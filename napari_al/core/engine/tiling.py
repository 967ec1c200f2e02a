"""Tiled inference: a large image predicted window by window at the model's native scale.

A detector resizes its input so that the shorter side is ``min_size`` and the longer at most
``max_size`` (torchvision's ``GeneralizedRCNNTransform``); a 10,000 px image would shrink ~16x
and its cells to a pixel or two. :func:`predict_tiled` instead cuts the image into windows of
exactly the input size (:func:`native_tile`: ``min_size x max_size``, its long side along the
image's; SSDlite's fixed 320 x 320), which the transform leaves at scale 1, so objects are seen
at the size they have in the image (the scale the model was trained at, for a model trained on
images no larger than its input). Windows overlap by at least ``overlap`` pixels and are evenly
spaced with their origins at multiples of the model's stride (:func:`stride_alignment`, 32 px),
so each sees the image at the phase the whole image would be seen at; the last one reaches the
image's edge (:func:`tile_windows`). A window reaching past the image (by less than a stride,
or a window larger than the image) is cut to the image and padded with black pixels to the
tile's size.

Merging (the rule of overlapping-tile inference, e.g. SAHI, Akyon et al. 2022; StarDist's tiled
prediction keeps objects by their centre in a tile's core): every window owns a *core*, the
part of it nearer to it than to its neighbours (the overlaps are split in the middle), and the
cores tile the image. A box found in a window that touches none of the window's edges lying
inside the image (with :data:`EDGE_MARGIN`) is *whole* and kept. A box cut by such an edge is a
*piece*: pieces of one object seen by neighbouring windows (an object larger than the overlap
is whole in neither) are joined into their union (:mod:`~napari_al.core.engine.tile_pieces`);
a piece that joins with nothing is kept when its centre lies in the window's core, else
dropped: when the object is at most ``overlap`` px across, the neighbour that owns its centre
sees it whole. The kept boxes of all windows, shifted into image pixels, are merged by
``torchvision.ops.batched_nms`` (class-aware, at the model's own NMS IoU), which removes the
copies of an object seen whole by two windows. Merging runs every :data:`MERGE_EVERY` windows
into the running result (windows come row by row, so only boxes near the boundary of two
groups meet in a later merge; a greedy suppression chain across that boundary can end
differently from one NMS over everything, which needs three overlapping boxes there); the
running result's boxes that end above every new box are final and leave the merge, so each
merge costs what its own rows hold, not the whole image's boxes; a piece
waits until the windows it could join with are predicted. An object larger than a window
whose pieces disagree across a cut (a very irregular shape) can stay in pieces.

Each kept box keeps what its window's forward pass said of it: ``labels``, ``scores``,
``probs``, ``features`` (RoI features at native scale) and ``proposals`` (shifted like the
box). ``embedding`` is the mean of the windows' embeddings weighted by their areas in the image
(overlaps count once per window). ``detections_per_image`` and the score threshold apply per
window; the image keeps at most :func:`max_detections` boxes (the highest scores), so
that memory stays bounded whatever the model finds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from napari_al.core.data import Predictions
from napari_al.core.engine.inference import image_to_tensor, to_predictions
from napari_al.core.engine.tile_pieces import Pieces, concat, join_pieces

if TYPE_CHECKING:
    from napari_al.core.engine.detector import Detector

#: A box edge within this many pixels of a window edge inside the image touches that edge.
EDGE_MARGIN = 2.0
#: NMS IoU of the merge when the model has none (torchvision's detectors use 0.5).
MERGE_IOU = 0.5
#: A joined box spans at most this many sides of the model's input (:func:`native_tile`)
#: along each axis (tile_pieces): the model sees objects up to about its input's size.
MAX_JOINED_TILES = 2
#: Windows whose boxes are merged (NMS) into the running result at a time, so memory stays
#: bounded by the merged boxes, not by every window's raw detections.
MERGE_EVERY = 64
#: Most boxes one tiled image keeps (highest scores), with their features: a weak model on a
#: 25,000 px image (about 10,000 windows of up to 100 boxes each) would otherwise hold a
#: million boxes, several GB. 10,000 boxes with 1024 features each are about 45 MB.
MAX_TILED_DETECTIONS = 10_000
#: ... and at least this many per million pixels of the image, so the cap grows with it (a
#: 19,200 x 14,400 px BCCD mosaic holds 11,832 cells: a flat 10,000 lost a sixth of them).
DETECTIONS_PER_MEGAPIXEL = 100


def max_detections(height: int, width: int) -> int:
    """Most boxes a tiled image of ``height`` x ``width`` px keeps: :data:`MAX_TILED_DETECTIONS`,
    or :data:`DETECTIONS_PER_MEGAPIXEL` per million pixels where that is more."""
    return max(MAX_TILED_DETECTIONS, math.ceil(height * width / 1e6 * DETECTIONS_PER_MEGAPIXEL))


@dataclass(frozen=True)
class Window:
    """One window of a tiled image, in image pixels (rows y, columns x; ends exclusive).

    ``core``: ``(y0, x0, y1, x1)`` the part of the image this window owns (-inf / inf on the
    image's borders); ``inner``: whether its top, left, bottom and right edges lie inside the
    image (a box touching one of them is cut)."""

    y0: int
    x0: int
    y1: int
    x1: int
    core: tuple[float, float, float, float]
    inner: tuple[bool, bool, bool, bool]

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def owned_share(self) -> float:
        """The share of the window's area that its core covers (1 for a window alone; about
        ``(tile - overlap)**2 / tile**2`` inside a grid)."""
        y0, x0, y1, x1 = self.core
        h = min(y1, self.y1) - max(y0, self.y0)
        w = min(x1, self.x1) - max(x0, self.x0)
        return max(0.0, h) * max(0.0, w) / float(self.height * self.width)


def _check_overlap(overlap: int, tile: int) -> None:
    """ValueError unless ``0 <= overlap < tile`` (pixels)."""
    if not 0 <= overlap < tile:
        raise ValueError(
            f"tile overlap must be at least 0 and smaller than the tile ({tile} px); "
            f"got {overlap} px"
        )


def _fixed_input(model: nn.Module) -> bool:
    """Whether the model's transform resizes every input to one fixed size (SSDlite)."""
    return bool(getattr(model.transform, "fixed_size", None))


def axis_windows(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of the windows covering ``[0, length)``: as few windows of ``tile``
    pixels as overlap by at least ``overlap``, evenly spaced, the first at 0; one window
    ``(0, length)`` when ``length <= tile`` (whatever the overlap: a thin image's window is the
    image). ``align`` 1: integer starts, the last window ending at ``length``. ``align`` > 1:
    every start a multiple of ``align`` pixels, the last window the first such one reaching
    ``length`` (it may end up to ``align - 1`` px past the image: cut there and padded by the
    caller), so every window sees the image at the same phase of a network's stride
    (:func:`tile_windows`); when the overlap leaves no room for an aligned step
    (``tile - overlap < align``) the windows are not aligned. Raises ValueError unless
    ``overlap >= 0`` and, when more than one window is needed, ``overlap < tile``."""
    if overlap < 0 or length > tile:
        _check_overlap(overlap, tile)
    if length <= tile:
        return [(0, length)]
    unit = align if align > 1 and tile - overlap >= align else 1
    # in units of `unit` px: the last start, and the longest step keeping the overlap
    span, longest = -(-(length - tile) // unit), (tile - overlap) // unit
    gaps = -(-span // longest)  # ceil
    # round half up: consecutive starts differ by floor or ceil of span / gaps <= longest
    starts = [unit * ((2 * i * span + gaps) // (2 * gaps)) for i in range(gaps + 1)]
    return [(s, s + tile) for s in starts]


def _cores(spans: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Each window's core along one axis: split every overlap in its middle."""
    cuts = [(spans[i + 1][0] + spans[i][1]) / 2.0 for i in range(len(spans) - 1)]
    bounds = [-np.inf, *cuts, np.inf]
    return [(bounds[i], bounds[i + 1]) for i in range(len(spans))]


def tile_windows(
    height: int, width: int, tile: tuple[int, int], overlap: int, align: int = 1
) -> list[Window]:
    """The windows of a ``height x width`` image cut into tiles of ``tile`` ``(rows, columns)``
    overlapping by at least ``overlap`` pixels (:func:`axis_windows` along each axis), row by
    row; windows past the image's bottom or right edge are cut to it. ``align``: window
    origins at multiples of it (:func:`axis_windows`); prediction aligns them to the model's
    size multiple (:func:`stride_alignment`). Raises ValueError for an overlap not smaller
    than the tile."""
    rows = axis_windows(height, tile[0], overlap, align)
    cols = axis_windows(width, tile[1], overlap, align)
    out = []
    for (y0, y1), (cy0, cy1) in zip(rows, _cores(rows), strict=True):
        for (x0, x1), (cx0, cx1) in zip(cols, _cores(cols), strict=True):
            inner = (y0 > 0, x0 > 0, y1 < height, x1 < width)
            out.append(Window(y0, x0, min(y1, height), min(x1, width), (cy0, cx0, cy1, cx1), inner))
    return out


def stride_alignment(model: nn.Module) -> int:
    """Pixels to which :func:`predict_tiled` aligns window origins: the model's size multiple
    (``transform.size_divisible``, 32 for torchvision's detectors: the stride of their
    deepest convolutional features), 1 for a fixed-size input (SSDlite resizes every window).

    A convolutional network is equivariant to shifts by multiples of its stride only
    (Azulay & Weiss 2019, "Why do deep convolutional networks generalize so poorly to small
    image transformations?"; Zhang 2019, "Making convolutional networks shift-invariant
    again"): with origins at multiples of it, every window computes the features the whole
    image would give there (up to its borders' context), so an object in an overlap gets the
    same box from both windows and an image placed at a multiple of it gets the boxes it
    gets alone."""
    if _fixed_input(model):
        return 1
    return max(1, int(getattr(model.transform, "size_divisible", 1)))


def native_tile(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """``(rows, columns)`` of a window the model's transform leaves at scale 1: its fixed size
    (SSDlite), else ``min_size x max_size`` with the long side along the image's long side."""
    t = model.transform
    if getattr(t, "fixed_size", None):
        return int(t.fixed_size[0]), int(t.fixed_size[1])
    short, long = int(t.min_size[-1]), int(t.max_size)
    long = max(long, short)
    return (long, short) if height > width else (short, long)


def fitted_length(length: int, longest: int, overlap: int) -> int:
    """The shortest window side, at most ``longest`` px, that covers ``length`` px with as few
    windows overlapping by ``overlap`` px as ``longest`` would: the windows shrink to share the
    image evenly instead of overlapping more than ``overlap``. ``length`` when it fits in one.
    Raises ValueError unless ``0 <= overlap < longest``."""
    _check_overlap(overlap, longest)
    if length <= longest:
        return length
    n = -(-(length - overlap) // (longest - overlap))
    return -(-(length - overlap) // n) + overlap


def prediction_tile(
    model: nn.Module, height: int, width: int, overlap: int, scale: float = 1.0
) -> tuple[int, int]:
    """``(rows, columns)`` of the windows :func:`predict_tiled` cuts a ``height x width`` image
    into: :func:`native_tile` at ``scale`` 1; else at most ``scale`` times it per side (windows
    go in at scale 1, so a larger window only means fewer overlaps: 2x covers a 19,200 x 14,400
    px image with 1.14x its pixels, 1x with 1.32x), shrunk to share the image evenly
    (:func:`fitted_length`) and rounded up to the model's size multiple (32 px for
    torchvision's detectors), so no window is padded. SSDlite (a fixed input size) always gets
    its native tile. Raises ValueError unless ``scale >= 1`` and ``0 <= overlap <`` the
    native tile's shorter side."""
    native = native_tile(model, height, width)
    if not scale >= 1.0:
        raise ValueError(f"the window scale must be at least 1; got {scale}")
    _check_overlap(overlap, min(native))
    if scale == 1.0 or _fixed_input(model):
        return native
    step = max(1, int(getattr(model.transform, "size_divisible", 1)))

    def side(length: int, native_side: int) -> int:
        longest = int(native_side * scale)
        return min(longest, -(-fitted_length(length, longest, overlap) // step) * step)

    return side(height, native[0]), side(width, native[1])


def merge_iou(model: nn.Module) -> float:
    """The model's own NMS IoU (box head or one-stage head), else :data:`MERGE_IOU`."""
    heads = getattr(model, "roi_heads", model)
    return float(getattr(heads, "nms_thresh", MERGE_IOU))


def owns_centre(boxes: np.ndarray, window: Window) -> np.ndarray:
    """Which ``boxes`` (``(N, 4)`` xyxy image pixels) have their centre in ``window``'s core:
    the cores tile the image, so of the copies of one object found by overlapping windows,
    exactly one window owns it (used where windows are not merged by NMS, e.g. box queries
    of a large image ranked window by window)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0
    y0, x0, y1, x1 = window.core
    return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


def cut_sides(boxes: np.ndarray, window: Window, margin: float = EDGE_MARGIN) -> np.ndarray:
    """``(N, 4)`` float64: for each of ``boxes`` (``(N, 4)`` xyxy image pixels) found in
    ``window`` and each side (left, top, right, bottom), the coordinate of the window's edge
    inside the image that cuts the box there (the box reaches it within ``margin``), NaN where
    none does."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.full(b.shape, np.nan)
    top, left, bottom, right = window.inner
    if left:
        out[b[:, 0] <= window.x0 + margin, 0] = window.x0
    if top:
        out[b[:, 1] <= window.y0 + margin, 1] = window.y0
    if right:
        out[b[:, 2] >= window.x1 - margin, 2] = window.x1
    if bottom:
        out[b[:, 3] >= window.y1 - margin, 3] = window.y1
    return out


def _place(pred: Predictions, window: Window) -> tuple[Predictions, Pieces]:
    """A window's predictions (window pixels, maybe padded) in image pixels, clipped to the
    window's part of the image: its whole boxes, and its boxes cut by an edge inside the
    image (:mod:`~napari_al.core.engine.tile_pieces`)."""
    size = np.array([window.width, window.height] * 2, np.float32)
    shift = np.array([window.x0, window.y0] * 2, np.float32)

    def to_image(b: np.ndarray) -> np.ndarray:
        return np.minimum(b, size) + shift

    boxes = to_image(pred.boxes)
    real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not all padding
    placed = Predictions(
        boxes=boxes,
        labels=pred.labels,
        scores=pred.scores,
        probs=pred.probs,
        features=pred.features,
        embedding=pred.embedding,
        proposals=None if pred.proposals is None else to_image(pred.proposals),
    )
    cuts = cut_sides(boxes, window)
    cut = ~np.isnan(cuts).all(1)
    sel = real & cut
    pieces = Pieces(placed.subset(sel), cuts[sel], owns_centre(boxes, window)[sel])
    return placed.subset(real & ~cut), pieces


def merge(parts: list[Predictions], weights: list[float], iou: float) -> Predictions:
    """One image's predictions from its windows' (already in image pixels, :func:`_place`):
    class-aware ``torchvision.ops.batched_nms`` at ``iou``, boxes by decreasing score;
    ``embedding`` the ``weights``-weighted mean of the windows' embeddings."""
    w = np.asarray(weights, np.float64)
    embedding = (np.stack([p.embedding for p in parts]).astype(np.float64).T @ w) / w.sum()
    joined = Predictions.concat(parts, embedding.astype(np.float32))
    keep = batched_nms(
        torch.from_numpy(joined.boxes).float(),
        torch.from_numpy(joined.scores).float(),
        torch.from_numpy(joined.labels),
        iou,
    )
    return joined.subset(keep.numpy())


def _next_edges(windows: list[Window]) -> tuple[dict[float, float], dict[float, float]]:
    """Right edge -> the next column's left edge, bottom edge -> the next row's top edge."""
    xs = sorted({(w.x0, w.x1) for w in windows})
    ys = sorted({(w.y0, w.y1) for w in windows})
    return (
        {float(a[1]): float(b[0]) for a, b in itertools.pairwise(xs)},
        {float(a[1]): float(b[0]) for a, b in itertools.pairwise(ys)},
    )


def _settle(
    pending: Pieces | None,
    new: list[Pieces],
    like: Predictions,
    nexts: tuple[dict[float, float], dict[float, float]],
    frontier: float,
    longest: tuple[float, float],
) -> tuple[Pieces, Predictions]:
    """Join the pieces so far (:func:`~napari_al.core.engine.tile_pieces.join_pieces`); return
    those that may still join, and the settled boxes: joined ones cut nowhere, and the
    unjoined pieces whose neighbours are all predicted (every window starting at or above
    ``frontier`` px is) that own their centre. A joined box is at most ``longest`` ``(width,
    height)`` px: :data:`MAX_JOINED_TILES` windows."""
    pieces = concat([*([pending] if pending else []), *new], like)
    pieces = join_pieces(pieces, *nexts, EDGE_MARGIN, longest)
    whole = np.isnan(pieces.cuts).all(1)
    # the last row a piece may still join: the next one if it is cut at its bottom, else its own
    below = pieces.cuts[:, 3]
    next_row = [nexts[1].get(float(v), np.inf) for v in below]
    needed = np.where(np.isnan(below), pieces.pred.boxes[:, 3], next_row)
    final = ~whole & (needed < frontier)
    keep = whole | (final & pieces.owned)
    return pieces.subset(~whole & ~final), pieces.pred.subset(keep)


def _tile_tensor(image: Any, window: Window, tile: tuple[int, int]) -> Tensor:
    """The window's pixels as a float CHW tensor, padded with black to the tile's size."""
    t = image_to_tensor(np.asarray(image[window.y0 : window.y1, window.x0 : window.x1]))
    pad_h, pad_w = tile[0] - t.shape[-2], tile[1] - t.shape[-1]
    if pad_h > 0 or pad_w > 0:
        t = F.pad(t, (0, max(0, pad_w), 0, max(0, pad_h)))
    return t


def predict_tiled(
    detector: Detector,
    image: Any,
    *,
    overlap: int,
    tile: tuple[int, int] | None = None,
    score_threshold: float | None = None,
    candidate: bool = False,
    batch_size: int = 4,
    detections_per_image: int | None = None,
    window_scale: float = 1.0,
    features: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Predictions | None:
    """Predictions of one large image from windows at the model's native scale (module doc).

    ``image``: ``(H, W, 3)`` uint8 (or anything :meth:`Detector.predict` takes) supporting
    ``image[y0:y1, x0:x1]``: a numpy array, or a lazy reader that decodes only that window
    (:class:`napari_al.core.lazy_images.RGBWindows`). ``tile`` ``(rows, columns)`` defaults to
    :func:`prediction_tile` (up to ``window_scale`` times :func:`native_tile` per side);
    ``overlap`` pixels (ValueError unless smaller than the tile). Windows go in at scale 1
    (SSDlite: its fixed input), their origins at multiples of the model's stride
    (:func:`stride_alignment`); a window ``k`` times the native tile's area gets ``k`` times
    the RPN's proposals (one-stage: candidates per level) and detections, and ``batch_size /
    k`` windows go in one pass (at least one). The proposals are further scaled by the share
    of the window its core covers (:attr:`Window.owned_share`, the largest in the pass): the
    overlaps are seen by two windows or more, so without it the box head would score 1.3
    times as many proposals per image pixel as on a whole image (480 x 640 windows
    overlapping by 64 px), each RPN still ranking its own window's proposals (its NMS per
    native-tile-sized block: :mod:`~napari_al.core.engine.proposals`). Thresholds
    as :meth:`Detector.predict`. ``features=False``: no RoI features (``(N, 0)``; :func:`_lean`).
    ``progress(windows done, windows in total)`` after each batch; ``should_stop()`` is checked
    before each batch: None is returned when it fires.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    native = native_tile(detector.model, height, width)
    shape = tile or prediction_tile(detector.model, height, width, overlap, window_scale)
    windows = tile_windows(height, width, shape, overlap, stride_alignment(detector.model))
    thr, dets = detector._thresholds(score_threshold, candidate, detections_per_image)
    scale_one = not _fixed_input(detector.model)
    budget = _window_budget(shape, native) if scale_one else 1.0
    dets = round(dets * budget)
    passes = {"scale_one": scale_one, "proposal_block": native if budget > 1 else None}
    parts: list[Predictions] = []
    areas: list[float] = []
    new_pieces: list[Pieces] = []
    pending: Pieces | None = None
    merged: Predictions | None = None
    final: list[Predictions] = []  # boxes no later window can overlap
    merged_area = 0.0
    iou = merge_iou(detector.model)
    nexts = _next_edges(windows)
    cap = max_detections(height, width)
    # the model sees objects up to about its input's size, whatever the window
    longest = (float(MAX_JOINED_TILES * native[1]), float(MAX_JOINED_TILES * native[0]))
    step = max(1, int(batch_size / budget))
    for start in range(0, len(windows), step):
        if should_stop is not None and should_stop():
            return None
        batch = windows[start : start + step]
        tensors = [_tile_tensor(image, w, shape).to(detector.device) for w in batch]
        share = max(w.owned_share for w in batch)
        raws = detector.infer_raw(tensors, thr, dets, budget=budget * share, **passes)
        for window, raw in zip(batch, raws, strict=True):
            pred = to_predictions(raw, detector.num_classes)
            whole, pieces = _place(pred if features else _lean(pred), window)
            parts.append(whole)
            new_pieces.append(pieces)
            areas.append(float(window.height * window.width))
        done = start + len(batch)
        if len(parts) >= MERGE_EVERY or done >= len(windows):
            frontier = windows[done].y0 if done < len(windows) else np.inf
            pending, settled = _settle(pending, new_pieces, parts[0], nexts, frontier, longest)
            # the running result counts with the area of the windows it came from, so the
            # embedding stays the area-weighted mean over all windows (settled pieces: 0)
            head = [] if merged is None else [merged]
            weights = [merged_area, *areas][1 - len(head) :]
            new = [*parts, settled]
            if merged is not None and len(merged):
                # a box ending above every new box overlaps none of them: the NMS cannot
                # change it, so it is final (NMS over the rest = NMS over all, as the
                # running result has no pair left to suppress), and the merge stays local
                top = min((float(p.boxes[:, 1].min()) for p in new if len(p)), default=np.inf)
                above = merged.boxes[:, 3] <= top
                if above.any():
                    final.append(merged.subset(above))
                    head = [merged.subset(~above)]
            merged = merge([*head, *new], [*weights, 0.0], iou)
            merged_area += sum(areas)
            parts, areas, new_pieces = [], [], []
            if len(merged) + sum(map(len, final)) > cap:
                merged = _best(Predictions.concat([*final, merged], merged.embedding), cap)
                final = []
        if progress is not None:
            progress(done, len(windows))
    if merged is None or not final:
        return merged
    # by decreasing score, as one NMS over everything returns them
    return _best(Predictions.concat([*final, merged], merged.embedding), cap)


def _window_budget(shape: tuple[int, int], native: tuple[int, int]) -> float:
    """How many times the native tile's area a window of ``shape`` covers (at least 1)."""
    return max(1.0, shape[0] * shape[1] / (native[0] * native[1]))


def _lean(pred: Predictions) -> Predictions:
    """``pred`` without its boxes' RoI features (``(N, 0)``), for a caller that keeps only the
    boxes: 4 kB a box (1,024 float32), about 100 MB for the 26,000 boxes of the benchmark's
    19,200 x 14,400 px mosaic, held to the end and copied by every merge."""
    return dataclasses.replace(pred, features=np.zeros((len(pred), 0), np.float32))


def _best(pred: Predictions, n: int) -> Predictions:
    """The ``n`` highest-scoring boxes of ``pred``, by decreasing score (stable)."""
    return pred.subset(np.argsort(-pred.scores, kind="stable")[:n])
