"""The one place that converts between napari rectangles and torchvision boxes.

Two conventions meet here:

- **torchvision / this package** (:class:`~napari_al.core.data.BoxRecord`, the store, the
  detector): ``[x1, y1, x2, y2]`` in image pixels with pixel *edges* on integers, so the pixel in
  column 0, row 0 is the box ``[0, 0, 1, 1]`` and a valid box has ``0 <= x1 < x2 <= width``.
- **napari** Shapes: a rectangle is a ``(4, 2)`` array of ``(row, col)`` vertices and pixel
  *centres* sit on integer coordinates, so the pixel edge ``x = 0`` is ``col = -0.5``.

Hence ``col = x - 0.5`` and ``row = y - 0.5``. Vertices are emitted in the order napari itself
uses for rectangles (``napari.layers.shapes._shapes_utils.find_corners``): ``(rmin, cmin)``,
``(rmax, cmin)``, ``(rmax, cmax)``, ``(rmin, cmax)``. napari stores shape data as float32, so
coordinates of boxes that went through a layer are exact only to float32 precision (exact for
integer and half-integer values below 2**23).

Points (a mouse click) follow the same rule: :func:`napari_to_xy` and :func:`xy_to_napari`
convert a napari ``(row, col)`` point to an image ``(x, y)`` point and back, and
:func:`xy_pixel` names the pixel an ``(x, y)`` point lies on.

Everything is vectorised numpy and free of napari/Qt imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Offset between torchvision pixel-edge coordinates and napari pixel-centre coordinates.
NAPARI_OFFSET = 0.5


def as_xyxy(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``boxes`` as a float64 ``(N, 4)`` array (an empty input gives shape ``(0, 4)``)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr


def xyxy_to_napari(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """torchvision ``(N, 4)`` boxes -> napari rectangles, an ``(N, 4, 2)`` array of (row, col).

    Vertex order matches napari's own rectangles: (rmin, cmin), (rmax, cmin), (rmax, cmax),
    (rmin, cmax). Pass the result (or ``list(result)``) as Shapes data with
    ``shape_type="rectangle"``.
    """
    b = as_xyxy(boxes)
    r0 = b[:, 1] - NAPARI_OFFSET
    r1 = b[:, 3] - NAPARI_OFFSET
    c0 = b[:, 0] - NAPARI_OFFSET
    c1 = b[:, 2] - NAPARI_OFFSET
    rows = np.stack([r0, r1, r1, r0], axis=1)
    cols = np.stack([c0, c0, c1, c1], axis=1)
    return np.stack([rows, cols], axis=2)


def napari_to_xyxy(shapes: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """napari shapes -> torchvision ``(N, 4)`` float64 boxes.

    Accepts an ``(N, V, D)`` array or a list of ``(V, D)`` vertex arrays (V >= 1, D >= 2; the
    last two columns are row and col, so shapes on nD layers work). Rotated rectangles and any
    other polygon are reduced to the axis-aligned box over their vertices (min/max).
    """
    if isinstance(shapes, np.ndarray) and shapes.ndim == 3:
        if shapes.shape[0] == 0:
            return np.zeros((0, 4), np.float64)
        if shapes.shape[2] < 2:
            raise ValueError(f"shapes need at least 2 coordinates per vertex, got {shapes.shape}")
        pts = shapes[..., -2:].astype(np.float64)
        lo = pts.min(axis=1)
        hi = pts.max(axis=1)
    else:
        shapes = list(shapes)
        if not shapes:
            return np.zeros((0, 4), np.float64)
        lo = np.empty((len(shapes), 2), np.float64)
        hi = np.empty((len(shapes), 2), np.float64)
        for i, s in enumerate(shapes):
            v = np.asarray(s, dtype=np.float64)
            if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 2:
                raise ValueError(f"shape {i} must be a (V, D>=2) vertex array, got {v.shape}")
            v = v[:, -2:]
            lo[i] = v.min(axis=0)
            hi[i] = v.max(axis=0)
    # lo/hi columns are (row, col); output is (x1, y1, x2, y2)
    out = np.stack([lo[:, 1], lo[:, 0], hi[:, 1], hi[:, 0]], axis=1)
    return out + NAPARI_OFFSET


def napari_to_xy(points: np.ndarray | Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """napari points -> image-pixel ``(x, y)`` points, an ``(N, 2)`` float64 array.

    A point is ``(row, col)`` (or ``(..., row, col)`` on an nD layer: the last two coordinates
    count), as napari reports a mouse position in a layer's data coordinates, with pixel centres
    on integers. The result is in this package's convention, pixel edges on integers:
    ``x = col + 0.5``, ``y = row + 0.5``, so a click anywhere on the pixel in column ``c``,
    row ``r`` gives ``c <= x < c + 1`` and ``r <= y < r + 1`` (:func:`xy_pixel` gives it back).
    A single point ``(D,)`` gives shape ``(1, 2)``.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"points must have shape (N, D>=2) of (row, col), got {p.shape}")
    return np.stack([p[:, -1], p[:, -2]], axis=1) + NAPARI_OFFSET


def xy_to_napari(points: np.ndarray | Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """Image-pixel ``(x, y)`` points -> napari ``(row, col)`` points, ``(N, 2)`` float64 (the
    inverse of :func:`napari_to_xy`: ``row = y - 0.5``, ``col = x - 0.5``)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) of (x, y), got {p.shape}")
    return np.stack([p[:, 1], p[:, 0]], axis=1) - NAPARI_OFFSET


def xy_pixel(points: np.ndarray | Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """The pixel each image-pixel ``(x, y)`` point lies on, as ``(N, 2)`` int64 ``(row, col)``
    array indices (``row = floor(y)``, ``col = floor(x)``); ``image[row, col]`` is its value."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) of (x, y), got {p.shape}")
    return np.floor(p[:, ::-1]).astype(np.int64)


def clip_xyxy(
    boxes: np.ndarray | Sequence[Sequence[float]], width: float, height: float
) -> np.ndarray:
    """Boxes clipped to the image ``[0, width] x [0, height]`` (a new float64 array)."""
    b = as_xyxy(boxes).copy()
    np.clip(b[:, 0::2], 0.0, float(width), out=b[:, 0::2])
    np.clip(b[:, 1::2], 0.0, float(height), out=b[:, 1::2])
    return b


def box_area(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Area of each box; inverted or degenerate boxes have area 0."""
    b = as_xyxy(boxes)
    w = np.clip(b[:, 2] - b[:, 0], 0.0, None)
    h = np.clip(b[:, 3] - b[:, 1], 0.0, None)
    return w * h


def is_degenerate(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """True where a box has zero or negative width or height, or a non-finite coordinate."""
    b = as_xyxy(boxes)
    finite = np.isfinite(b).all(axis=1)
    with np.errstate(invalid="ignore"):
        positive = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return ~(finite & positive)


def valid_mask(
    boxes: np.ndarray | Sequence[Sequence[float]],
    width: float | None = None,
    height: float | None = None,
    min_size: float = 0.0,
) -> np.ndarray:
    """True where a box is usable: finite, ``x2 - x1 > min_size`` and ``y2 - y1 > min_size``.

    With ``width``/``height`` also requires the box to lie inside the image
    (``0 <= x1 < x2 <= width``, same for y).
    """
    b = as_xyxy(boxes)
    ok = ~is_degenerate(b)
    with np.errstate(invalid="ignore"):
        ok &= (b[:, 2] - b[:, 0] > min_size) & (b[:, 3] - b[:, 1] > min_size)
        if width is not None:
            ok &= (b[:, 0] >= 0) & (b[:, 2] <= width)
        if height is not None:
            ok &= (b[:, 1] >= 0) & (b[:, 3] <= height)
    return ok


def box_intersection(
    a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """Pairwise intersection areas, an ``(N, M)`` float64 array (0 for disjoint boxes)."""
    a = as_xyxy(a)
    b = as_xyxy(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    return wh[..., 0] * wh[..., 1]


def inside_fraction(
    a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """``(N, M)`` float64: the fraction of each box of ``a``'s area that lies inside each box
    of ``b`` (intersection over the area of ``a``; 0 for a box of ``a`` with no area)."""
    a = as_xyxy(a)
    area_a = box_area(a)[:, None]
    inter = box_intersection(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area_a > 0, inter / np.where(area_a > 0, area_a, 1.0), 0.0)


def centred_in(
    boxes: np.ndarray | Sequence[Sequence[float]], rects: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """``(N,)`` bool: whether each of ``boxes`` has its centre in one of ``rects`` (``(R, 4)``
    xyxy, edges included; all False when there are none). The one rule for "a box lies in a
    reviewed area" (an object belongs to the region holding its centre): crop targets
    (:mod:`napari_al.core.workflow.crops`), the predictions prediction does not store and the
    store's predictions still to review
    (:meth:`~napari_al.core.store.ProjectStore.predictions_to_review`)."""
    b = as_xyxy(boxes)
    r = as_xyxy(rects)
    if not len(b) or not len(r):
        return np.zeros(len(b), bool)
    x, y = (b[:, None, 0] + b[:, None, 2]) / 2, (b[:, None, 1] + b[:, None, 3]) / 2
    hit = (r[None, :, 0] <= x) & (x <= r[None, :, 2]) & (r[None, :, 1] <= y) & (y <= r[None, :, 3])
    return hit.any(axis=1)


def box_iou(
    a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """Pairwise IoU, an ``(N, M)`` float64 array; pairs with zero union give 0."""
    a = as_xyxy(a)
    b = as_xyxy(b)
    area_a = box_area(a)
    area_b = box_area(b)
    inter = box_intersection(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def flip_xyxy_horizontal(boxes: np.ndarray | Sequence[Sequence[float]], width: float) -> np.ndarray:
    """Boxes mirrored left-right in an image ``width`` pixels wide (``x -> width - x``).

    Applying it twice gives the original boxes; use it to map predictions on a flipped image
    back to the original.
    """
    b = as_xyxy(boxes)
    out = b.copy()
    out[:, 0] = width - b[:, 2]
    out[:, 2] = width - b[:, 0]
    return out


def camera_fit(
    xyxy: Sequence[float], canvas: Sequence[int], margin: float = 2.0
) -> tuple[tuple[float, float], float]:
    """The napari camera that shows the box ``xyxy`` (image pixels, pixel edges on integers)
    whole, centred, on a canvas of ``canvas = (height, width)`` screen pixels: ``((row, col),
    zoom)``, the centre in napari data coordinates (pixel centres on integers, hence the
    :data:`NAPARI_OFFSET`) and the zoom (screen pixels per image pixel) at which the box
    spans ``1 / margin`` of the canvas along its tighter axis (``margin`` >= 1 leaves that
    much room around it; a side under one pixel counts as one)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    (row, col) = xy_to_napari([(x1 + x2) / 2, (y1 + y2) / 2])[0]
    span_h, span_w = max(y2 - y1, 1.0) * margin, max(x2 - x1, 1.0) * margin
    zoom = min(float(canvas[0]) / span_h, float(canvas[1]) / span_w)
    return (float(row), float(col)), float(zoom)
