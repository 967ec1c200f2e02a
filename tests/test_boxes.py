"""Coordinate conversion between napari rectangles and torchvision boxes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_al.core.boxes import (
    box_area,
    box_iou,
    clip_xyxy,
    flip_xyxy_horizontal,
    is_degenerate,
    napari_to_xy,
    napari_to_xyxy,
    valid_mask,
    xy_pixel,
    xy_to_napari,
    xyxy_to_napari,
)

coord = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
size = st.floats(1e-3, 1e4, allow_nan=False, allow_infinity=False)


@st.composite
def xyxy_boxes(draw, max_n: int = 20) -> np.ndarray:
    n = draw(st.integers(0, max_n))
    x1 = draw(arrays(np.float64, n, elements=coord))
    y1 = draw(arrays(np.float64, n, elements=coord))
    w = draw(arrays(np.float64, n, elements=size))
    h = draw(arrays(np.float64, n, elements=size))
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).reshape(n, 4)


def napari_find_corners(points: np.ndarray) -> np.ndarray:
    """napari's own rectangle corner order (copied so the test needs no napari import)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


# ---- hand cases -------------------------------------------------------------------------------


def test_single_pixel_box() -> None:
    """The pixel at row 0, col 0 is xyxy [0, 0, 1, 1] and spans -0.5..0.5 in napari."""
    verts = xyxy_to_napari([[0, 0, 1, 1]])
    assert verts.shape == (1, 4, 2)
    np.testing.assert_array_equal(verts[0], [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    np.testing.assert_array_equal(napari_to_xyxy(verts), [[0, 0, 1, 1]])


def test_rows_are_y_and_cols_are_x() -> None:
    verts = xyxy_to_napari([[10, 20, 30, 60]])[0]  # x 10..30, y 20..60
    assert verts[:, 0].min() == 19.5 and verts[:, 0].max() == 59.5  # rows from y
    assert verts[:, 1].min() == 9.5 and verts[:, 1].max() == 29.5  # cols from x


def test_vertex_order_matches_napari() -> None:
    box = np.array([[3.0, 4.0, 10.0, 20.0]])
    verts = xyxy_to_napari(box)[0]
    np.testing.assert_array_equal(verts, napari_find_corners(verts[[0, 2]]))


def test_vertex_order_matches_installed_napari() -> None:
    utils = pytest.importorskip("napari.layers.shapes._shapes_utils")
    verts = xyxy_to_napari([[3.0, 4.0, 10.0, 20.0]])[0]
    np.testing.assert_array_equal(verts, utils.find_corners(verts[[2, 0]]))


def test_empty_inputs() -> None:
    assert xyxy_to_napari(np.zeros((0, 4))).shape == (0, 4, 2)
    assert napari_to_xyxy(np.zeros((0, 4, 2))).shape == (0, 4)
    assert napari_to_xyxy([]).shape == (0, 4)
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert clip_xyxy([], 5, 5).shape == (0, 4)


def test_rotated_shape_reduced_to_bounding_box() -> None:
    diamond = np.array([[0.0, 5.0], [5.0, 10.0], [10.0, 5.0], [5.0, 0.0]])  # (row, col)
    np.testing.assert_allclose(napari_to_xyxy([diamond]), [[0.5, 0.5, 10.5, 10.5]])


def test_list_of_arbitrary_shapes_and_nd_vertices() -> None:
    tri = np.array([[1.0, 1.0], [4.0, 2.0], [2.0, 7.0]])
    rect_3d = np.array([[5, 0.0, 0.0], [5, 2.0, 0.0], [5, 2.0, 3.0], [5, 0.0, 3.0]])  # z, r, c
    out = napari_to_xyxy([tri, rect_3d])
    np.testing.assert_allclose(out, [[1.5, 1.5, 7.5, 4.5], [0.5, 0.5, 3.5, 2.5]])


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        xyxy_to_napari(np.zeros((3, 5)))
    with pytest.raises(ValueError):
        napari_to_xyxy([np.zeros((4, 1))])


def test_float32_storage_is_exact_for_half_pixels() -> None:
    """napari stores shapes as float32: integer boxes survive it exactly."""
    boxes = np.array([[0, 0, 1, 1], [123, 456, 7890, 8191], [19999, 0, 20000, 20000]], float)
    as_stored = xyxy_to_napari(boxes).astype(np.float32)
    np.testing.assert_array_equal(napari_to_xyxy(as_stored), boxes)


def test_clip_and_validity() -> None:
    boxes = np.array([[-5, -5, 10, 10], [5, 5, 200, 90], [3, 3, 3, 8], [9, 1, 2, 4]], float)
    np.testing.assert_array_equal(
        clip_xyxy(boxes, 100, 50), [[0, 0, 10, 10], [5, 5, 100, 50], [3, 3, 3, 8], [9, 1, 2, 4]]
    )
    assert is_degenerate(boxes).tolist() == [False, False, True, True]
    assert valid_mask(boxes).tolist() == [True, True, False, False]
    assert valid_mask(boxes, 100, 50).tolist() == [False, False, False, False]
    assert valid_mask(clip_xyxy(boxes, 100, 50), 100, 50).tolist() == [True, True, False, False]
    assert valid_mask([[0, 0, 2, 2], [0, 0, 5, 5]], min_size=2).tolist() == [False, True]
    assert is_degenerate([[0, 0, np.nan, 1], [0, 0, np.inf, 1]]).tolist() == [True, True]
    np.testing.assert_array_equal(box_area(boxes), [225, 195 * 85, 0, 0])


def test_box_iou_hand_cases() -> None:
    a = [[0, 0, 2, 2], [0, 0, 1, 1]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 0, 0]]
    iou = box_iou(a, b)
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.0]])


def test_flip_hand_case() -> None:
    np.testing.assert_array_equal(flip_xyxy_horizontal([[0, 1, 10, 5]], 100), [[90, 1, 100, 5]])


# ---- properties -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(xyxy_boxes())
def test_xyxy_napari_xyxy_round_trip(boxes: np.ndarray) -> None:
    back = napari_to_xyxy(xyxy_to_napari(boxes))
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-9)
    # the list-of-arrays path gives the same result
    np.testing.assert_allclose(napari_to_xyxy(list(xyxy_to_napari(boxes))), back, atol=0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(coord, coord), max_size=10))
def test_point_round_trips_and_pixel(points: list) -> None:
    """napari (row, col) points -> (x, y) -> back; the pixel is the one napari draws there
    (its centre at integer (row, col), so within half a pixel of it)."""
    rc = np.asarray(points, np.float64).reshape(-1, 2)
    xy = napari_to_xy(rc)
    np.testing.assert_allclose(xy_to_napari(xy), rc, rtol=0, atol=1e-9)
    np.testing.assert_allclose(xy, rc[:, ::-1] + 0.5, rtol=0, atol=1e-9)
    pix = xy_pixel(xy)
    assert pix.dtype == np.int64 and np.all(np.abs(pix - rc) <= 0.5 + 1e-9)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(coord, coord, coord, coord).filter(lambda t: t[0] != t[2] and t[1] != t[3]),
        max_size=10,
    ),
    st.integers(0, 3),
)
def test_napari_xyxy_napari_round_trip(corners: list, roll: int) -> None:
    """Axis-aligned rectangles come back as the same vertex set, in napari's order."""
    rects = [napari_find_corners(np.array([[r0, c0], [r1, c1]])) for r0, c0, r1, c1 in corners]
    # any starting vertex gives the same box
    shifted = [np.roll(r, roll, axis=0) for r in rects]
    back = xyxy_to_napari(napari_to_xyxy(shifted))
    assert back.shape == (len(rects), 4, 2)
    for got, want in zip(back, rects, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(xyxy_boxes(), st.floats(1, 1e4))
def test_flip_is_an_involution(boxes: np.ndarray, width: float) -> None:
    once = flip_xyxy_horizontal(boxes, width)
    assert not is_degenerate(once).any()
    np.testing.assert_allclose(flip_xyxy_horizontal(once, width), boxes, atol=1e-6)
    np.testing.assert_allclose(box_area(once), box_area(boxes), rtol=1e-9, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(xyxy_boxes(8), xyxy_boxes(8))
def test_box_iou_matches_scalar_formula(a: np.ndarray, b: np.ndarray) -> None:
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            want = inter / union if union > 0 else 0.0
            assert iou[i, j] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()


@settings(max_examples=100, deadline=None)
@given(xyxy_boxes(), st.integers(1, 5000), st.integers(1, 5000))
def test_clip_stays_inside(boxes: np.ndarray, w: int, h: int) -> None:
    c = clip_xyxy(boxes, w, h)
    assert (c[:, 0::2] >= 0).all() and (c[:, 0::2] <= w).all()
    assert (c[:, 1::2] >= 0).all() and (c[:, 1::2] <= h).all()
    inside = valid_mask(boxes, w, h)
    np.testing.assert_array_equal(c[inside], boxes[inside])
