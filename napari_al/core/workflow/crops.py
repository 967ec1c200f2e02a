"""Training a large image in crops at the model's native scale, from its reviewed regions.

Issue 14 ("large images", tiled training). An image with a side over
``TileSettings.tile_above`` is predicted tile by tile at the detector's input size
(:mod:`napari_al.core.engine.tiling`); read whole and shrunk to that size for training, its
objects would be learnt at a scale prediction never shows. It trains instead in **crops of the
detector's input size** (:func:`~napari_al.core.engine.tiling.native_tile`, the windows
prediction uses: ``min_size x max_size`` with the long side along the image's, SSDlite's fixed
320 x 320), which the model's transform leaves at scale 1, read window by window
(:class:`~napari_al.core.lazy_images.WindowReader`: a tiled TIFF decodes only the tiles under
a crop, never the whole image).

**Region-level completeness.** A large image is reviewed region by region: a person labels
every object in a rectangle and marks it complete (:meth:`Annotator.complete_region
<napari_al.core.reviewing.RegionReviewActions.complete_region>`, stored as a reviewed region).
The *reviewed area* of an image is the union of its reviewed regions, or the whole image once
the image is marked ``complete``. Inside it, everything is known: as on a complete image,
human boxes (and unconfirmed click or refined boxes, damped by ``lambda_d``) are targets,
rejected boxes and regions answered "no" are background, the model's unreviewed predictions
are not noisy labels, and every anchor or proposal matching no box is background at full
weight. Outside it, nothing is known, so it is **neither positive nor background**:

- **Where crops come from** (:func:`crop_windows`): each reviewed region is covered by crops,
  as prediction covers an image (:func:`~napari_al.core.engine.tiling.axis_windows`: evenly
  spaced, overlapping by ``TileSettings.overlap``); a region smaller than a crop gets one crop
  centred on it, shifted to lie inside the image. Along an axis where the image is smaller than
  a crop, the crop starts at 0 and is padded with black, as a prediction tile is. A crop never
  lies wholly outside the reviewed area.
- **What a crop's target holds** (:func:`crop_example`): the boxes whose centre lies in the
  reviewed area (an object belongs to the region holding its centre), shifted into crop
  pixels. The crop's area outside the reviewed area (and its padding) becomes ignore regions
  (:func:`uncovered`: disjoint rectangles whose union is exactly that area), which the engine
  already honours (``engine/losses.py``): an anchor or proposal whose centre lies in one, or
  with at least half of its area in one, gets no loss at all, neither positive nor background,
  and a box centred in one is dropped. A box centred outside the reviewed area but reaching into
  the crop (any status but rejected) is an ignore region too, so the anchors on the part of it
  inside the reviewed area are not taught background; so is the part in the crop of a target
  box the crop cuts to less than :data:`MIN_VISIBLE` of its area. Such an extra ignore region
  is left out where it would hold a target's centre (the engine would drop that target).

A crop example is ``complete`` (background weight 1, not ``partial_background_weight``): the
unknown part is ignored instead of down-weighted. A large image with no reviewed region and not
``complete`` teaches nothing yet (its human boxes outside reviewed regions wait for the region
around them to be marked complete). Every image at or under ``tile_above`` trains whole,
exactly as before (its reviewed regions, if any, are not used).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import centred_in, inside_fraction
from napari_al.core.lazy_images import WindowReader
from napari_al.core.workflow.errors import WorkflowError
from napari_al.core.workflow.model import DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator, Command
    from napari_al.core.engine import TrainingExample
    from napari_al.core.selection import QueryItem
    from napari_al.core.store import ImageRow, ProjectStore, SnapshotImage
    from napari_al.core.workflow.settings import TileSettings

XYXY = tuple[float, float, float, float]
#: A crop window in image pixels, ``(x0, y0, x1, y1)``, ends exclusive.
Window = tuple[int, int, int, int]
#: ``tile_shape(height, width) -> (rows, columns)``: the crop size for an image of that size.
TileShape = Callable[[int, int], tuple[int, int]]

#: A target box cut by a crop's edge stays a target when at least this fraction of its area
#: lies in the crop; otherwise its part in the crop is an ignore region.
MIN_VISIBLE = 0.5


def trains_in_crops(row: ImageRow, tiles: TileSettings) -> bool:
    """Whether an image trains in crops: a side over ``tiles.tile_above`` px (the images
    prediction tiles, :func:`napari_al.core.workflow.prediction.is_tiled`)."""
    return max(int(row.width), int(row.height)) > tiles.tile_above


def default_tile_shape(height: int, width: int) -> tuple[int, int]:
    """The crop ``(rows, columns)`` of a new workflow detector (480 x 640 px input), its long
    side along the image's, as :func:`~napari_al.core.engine.tiling.native_tile` gives it."""
    short, long = DEFAULT_MIN_SIZE, max(DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE)
    return (long, short) if height > width else (short, long)


def reviewed_area(item: SnapshotImage) -> list[XYXY]:
    """The reviewed area of an image as rectangles (image pixels): the whole image when it
    is ``complete``, else its reviewed regions (possibly none)."""
    return _area(item.image, item.reviewed_regions)


def _area(row: ImageRow, regions: Sequence[Any]) -> list[XYXY]:
    if row.review_state == "complete":
        return [(0.0, 0.0, float(row.width), float(row.height))]
    return [r.xyxy for r in regions]


def _axis(lo: float, hi: float, length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Crop spans along one axis covering ``[lo, hi]`` of an axis of ``length`` px."""
    from napari_al.core.engine.tiling import axis_windows

    if length <= tile:  # the whole axis, padded (as a prediction tile)
        return [(0, tile)]
    a, b = max(0, math.floor(lo)), min(length, math.ceil(hi))
    if b - a <= tile:  # one crop centred on the span, inside the image
        start = min(max(0, round((a + b - tile) / 2)), length - tile)
        return [(start, start + tile)]
    return [(a + s, a + e) for s, e in axis_windows(b - a, tile, overlap)]


def crop_windows(
    area: Sequence[XYXY], width: int, height: int, tile: tuple[int, int], overlap: int
) -> list[Window]:
    """The crops covering each rectangle of ``area`` (module docstring), in order, without
    repeats. ``tile`` is ``(rows, columns)``; ValueError unless ``0 <= overlap < tile``."""
    out: dict[Window, None] = {}
    for x1, y1, x2, y2 in area:
        ys = _axis(y1, y2, height, tile[0], overlap)
        xs = _axis(x1, x2, width, tile[1], overlap)
        for (y0, ye), (x0, xe) in itertools.product(ys, xs):
            out[(x0, y0, xe, ye)] = None
    return list(out)


def uncovered(rect: Sequence[float], covers: Sequence[Sequence[float]]) -> list[XYXY]:
    """The part of ``rect`` (xyxy) that no rectangle of ``covers`` covers, as disjoint
    rectangles (xyxy) whose union is exactly that part: bands between the rectangles' edges,
    merged along x and then along y. Empty when ``covers`` covers ``rect``."""
    x0, y0, x1, y1 = map(float, rect)
    clipped = [
        (max(a, x0), max(b, y0), min(c, x1), min(d, y1))
        for a, b, c, d in (map(float, r) for r in covers)
    ]
    clipped = [c for c in clipped if c[0] < c[2] and c[1] < c[3]]
    xs = sorted({x0, x1, *(c[0] for c in clipped), *(c[2] for c in clipped)})
    ys = sorted({y0, y1, *(c[1] for c in clipped), *(c[3] for c in clipped)})
    done: list[list[float]] = []
    open_: dict[tuple[float, float], list[float]] = {}  # x span -> rect growing downwards
    for ya, yb in itertools.pairwise(ys):
        spans: list[tuple[float, float]] = []
        cy = (ya + yb) / 2
        for xa, xb in itertools.pairwise(xs):
            cx = (xa + xb) / 2
            if any(c[0] <= cx <= c[2] and c[1] <= cy <= c[3] for c in clipped):
                continue
            if spans and spans[-1][1] == xa:
                spans[-1] = (spans[-1][0], xb)
            else:
                spans.append((xa, xb))
        grown: dict[tuple[float, float], list[float]] = {}
        for span in spans:
            r = open_.pop(span, None)
            if r is not None and r[3] == ya:
                r[3] = yb
            else:
                r = [span[0], ya, span[1], yb]
            grown[span] = r
        done.extend(open_.values())
        open_ = grown
    done.extend(open_.values())
    return [(a, b, c, d) for a, b, c, d in sorted(done, key=lambda r: (r[1], r[0]))]


@dataclass(frozen=True)
class CropLoader:
    """A crop example's ``loader``: reads its ``window`` (``x0, y0, x1, y1`` image pixels)
    through the image's shared :class:`~napari_al.core.lazy_images.WindowReader`; the path
    the engine passes is the image's own."""

    reader: WindowReader
    window: Window

    def __call__(self, path: Path) -> np.ndarray:
        return self.reader.read(*self.window)


def _intersects(boxes: np.ndarray, window: Window) -> np.ndarray:
    x0, y0, x1, y1 = window
    return (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)


def _centred(boxes: np.ndarray, area: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether each box's centre lies in a rectangle of ``area`` (edges in;
    :func:`~napari_al.core.boxes.centred_in`, the rule the store's predictions to review
    share)."""
    return centred_in(boxes, area)


def _holds_centre(regions: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(R,)`` bool: whether each of ``regions`` holds the centre of one of ``boxes``."""
    if not len(regions) or not len(boxes):
        return np.zeros(len(regions), bool)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = regions[:, None, :]
    return ((r[..., 0] <= cx) & (cx <= r[..., 2]) & (r[..., 1] <= cy) & (cy <= r[..., 3])).any(1)


def _in_crop(boxes: np.ndarray, window: Window) -> np.ndarray:
    """``boxes`` (image pixels) that reach into ``window``, clipped to it, in crop pixels."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    b = b[_intersects(b, window)]
    x0, y0, x1, y1 = window
    b[:, [0, 2]] = b[:, [0, 2]].clip(x0, x1) - x0
    b[:, [1, 3]] = b[:, [1, 3]].clip(y0, y1) - y0
    return b


def crop_example(
    full: TrainingExample,
    area: Sequence[XYXY],
    outside: np.ndarray,
    window: Window,
    reader: WindowReader,
    centred: np.ndarray | None = None,
) -> TrainingExample:
    """One crop's training example (module docstring). ``full``: the image's example as for a
    complete image (image pixels); ``area``: its reviewed area; ``outside``: ``(M, 4)`` the
    boxes (any status but rejected) centred outside the area; ``window``: the crop;
    ``centred``: which of ``full.boxes`` are centred in the area (computed when None)."""
    from napari_al.core.engine import TrainingExample

    area_a = np.asarray(area, np.float64).reshape(-1, 4)
    boxes = full.boxes
    if centred is None:
        centred = _centred(boxes, area_a)
    near = _intersects(boxes, window) & centred
    visible = np.zeros(len(boxes))
    visible[near] = inside_fraction(boxes[near], np.asarray([window], np.float64))[:, 0]
    target = near & (visible >= MIN_VISIBLE)
    cut = near & (visible > 0) & ~target
    x0, y0 = window[0], window[1]
    shift = np.array([x0, y0, x0, y0], np.float32)
    kept = boxes[target] - shift
    extra = np.concatenate([_in_crop(boxes[cut], window), _in_crop(outside, window)])
    extra = extra[~_holds_centre(extra, kept)]  # it must not drop a target (engine rule)
    size = (0.0, 0.0, float(window[2] - x0), float(window[3] - y0))
    unknown = uncovered(size, (area_a - shift).tolist())
    noisy = None if full.noisy is None else np.asarray(full.noisy, bool)[target]
    return TrainingExample(
        path=full.path,
        boxes=kept,
        labels=full.labels[target],
        weights=None if full.weights is None else np.asarray(full.weights)[target],
        noisy=noisy,
        background_boxes=_in_crop(full.background_boxes, window),
        ignore_regions=np.concatenate(
            [
                np.asarray(unknown, np.float32).reshape(-1, 4),
                _in_crop(full.ignore_regions, window),
                extra,
            ]
        ),
        complete=True,
        loader=CropLoader(reader, window),
    )


def crop_examples(
    full: TrainingExample,
    item: SnapshotImage,
    tile_shape: TileShape,
    overlap: int,
) -> list[TrainingExample]:
    """The crop examples of one large image (module docstring); none when it has no reviewed
    area. ``full``: its example as for a complete image (from
    :func:`~napari_al.core.workflow.examples.training_examples`' rules), ``tile_shape`` the
    crop size, ``overlap`` the crops' overlap in pixels."""
    row = item.image
    area = reviewed_area(item)
    if not area:
        return []
    others = np.asarray([b.xyxy for b in item.boxes if b.status != "rejected"], np.float32).reshape(
        -1, 4
    )
    area_a = np.asarray(area, np.float64)
    outside = others[~_centred(others, area_a)]
    centred = _centred(full.boxes, area_a)
    tile = tile_shape(int(row.height), int(row.width))
    reader = WindowReader(Path(str(full.path)))
    windows = crop_windows(area, int(row.width), int(row.height), tile, overlap)
    return [crop_example(full, area, outside, w, reader, centred) for w in windows]


def is_crop(example: Any) -> bool:
    """Whether a training example is a crop of a large image."""
    return isinstance(getattr(example, "loader", None), CropLoader)


# ---- the person's side: marking a region complete ----------------------------------------


def clip_to_image(
    xyxy: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """``xyxy`` (``x1, y1, x2, y2`` image pixels, ``x1 < x2``, ``y1 < y2``) clipped to the
    ``width`` x ``height`` image, or None when no area of it lies inside. What is not such a
    rectangle (not 4 numbers, NaN or infinite, ``x1 >= x2``) comes back as given, as a tuple,
    for the store to refuse with its own message."""
    try:
        values = tuple(float(v) for v in xyxy)
    except (TypeError, ValueError):
        return tuple(xyxy)  # type: ignore[return-value]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        return values  # type: ignore[return-value]
    x1, y1, x2, y2 = values
    if not (x1 < x2 and y1 < y2):
        return values
    out = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    return out if out[0] < out[2] and out[1] < out[3] else None


def mark_region_complete(
    annotator: Annotator, image_id: int, xyxy: Sequence[float]
) -> Command | None:
    """ "Mark region complete": every object in ``xyxy`` (``x1, y1, x2, y2`` image pixels) of
    the image is labelled; a rectangle reaching past the image is clipped to it
    (:func:`clip_to_image`; the command's ``region_after`` is what was stored). ONE user
    action (:meth:`Annotator.complete_region
    <napari_al.core.reviewing.RegionReviewActions.complete_region>`): one transaction, one
    logged ``complete_region`` action, undoable; an ``unseen`` image turns ``partial``.
    Returns the command, or None when the whole image is ``complete`` already. Raises
    :class:`WorkflowError` for a rectangle entirely outside the image,
    :class:`~napari_al.core.store.StoreError` for an unknown image or an empty rectangle.
    The CLI's ``napari-al mark-region-complete`` and the widget call this."""
    row = annotator.store.image(image_id)
    clipped = clip_to_image(xyxy, int(row.width), int(row.height))
    if clipped is None:
        shown = ", ".join(f"{float(v):g}" for v in xyxy)
        raise WorkflowError(
            f"region [{shown}] lies entirely outside {row.path} ({row.width}x{row.height} px); "
            f"give X0 Y0 X1 Y1 within 0-{row.width} and 0-{row.height}"
        )
    return annotator.complete_region(image_id, clipped)


def unreviewed_in_region(
    annotator: Annotator,
    image_id: int,
    xyxy: Sequence[float],
    tiles: TileSettings | None = None,
) -> int:
    """How many of the image's unreviewed predictions (:meth:`Annotator.unreviewed_boxes`,
    those in areas already marked complete included: the CLI and the widget ask once ``xyxy``
    is marked) have their centre in ``xyxy`` (image pixels), on an image that trains in crops
    (:func:`trains_in_crops`, ``tiles`` default :class:`TileSettings`): once the region is
    complete they train as background there, not as objects (module docstring), so marking it
    with them left deserves a word to the person. 0 for an image that trains whole: its
    regions do not change how it trains."""
    from napari_al.core.workflow.settings import TileSettings

    if not trains_in_crops(annotator.store.image(image_id), tiles or TileSettings()):
        return 0
    rows = annotator.unreviewed_boxes(image_id, reviewed_area=True)
    boxes = np.asarray([b.xyxy for b in rows], np.float64)
    region = np.asarray([xyxy], np.float64)
    return int(_centred(boxes.reshape(-1, 4), region).sum())  # the crop targets' own rule


def outside_reviewed_area(store: ProjectStore, items: Sequence[QueryItem]) -> list[QueryItem]:
    """``items`` (region queries: ``box`` an ``xyxy`` in image pixels) without those lying
    wholly (99.9 %) inside one region of their image already marked complete: a person said
    every object there is labelled, so asking about it again wastes their seconds."""
    reviewed: dict[int, np.ndarray] = {}
    kept = []
    for item in items:
        image = int(item.image)  # type: ignore[arg-type]
        if image not in reviewed:
            area = image_reviewed_area(store, image)
            reviewed[image] = np.asarray(area, np.float64).reshape(-1, 4)
        done = reviewed[image]
        if item.box is None or not len(done) or inside_fraction([item.box], done).max() < 0.999:
            kept.append(item)
    return kept


def in_reviewed_area(store: ProjectStore, image_id: int, boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether each of ``boxes`` (``(N, 4)`` xyxy image pixels) has its centre in
    the image's reviewed area now (:func:`image_reviewed_area`; the crop targets' own rule): a
    person said every object there is labelled, so a prediction there is not worth a question
    (box queries, verify questions) and a candidate there is not a missed object (region
    questions). All False for an image with no reviewed region; StoreError for an unknown
    image."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.asarray(image_reviewed_area(store, image_id), np.float64).reshape(-1, 4)
    if not len(b) or not len(area):
        return np.zeros(len(b), bool)
    return _centred(b, area)


def image_reviewed_area(store: ProjectStore, image_id: int) -> list[XYXY]:
    """The reviewed area of one image now (:func:`reviewed_area`): the whole image when it is
    ``complete``, else its reviewed regions, in the order they were marked (image pixels).
    StoreError for an unknown image."""
    row = store.image(image_id)
    return _area(row, store.reviewed_regions(image_id) if row.review_state != "complete" else ())
