"""Large images: lazy window reads of tiled TIFFs, tiled inference and its merging at tile
borders, and the workflow's prediction path (small images unchanged, bit for bit)."""

from __future__ import annotations

import itertools
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from large_image_helpers import fake_infer_raw, sparse_tiff

from napari_al.core.engine import Detector, tiling
from napari_al.core.engine.losses import proposal_budget
from napari_al.core.engine.tiling import axis_windows, native_tile, tile_windows
from napari_al.core.images import (
    MAX_SIDE,
    ImageReadError,
    check_pixels,
    image_size,
    read_image,
    to_rgb_uint8,
)
from napari_al.core.lazy_images import (
    LAZY_PIXELS,
    LazyImage,
    open_display,
    open_rgb,
    reads_lazily,
)

RNG = np.random.default_rng(0)


# ---- windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(100, 100, 10), (101, 100, 10), (1000, 128, 32), (999, 160, 0), (25_000, 480, 64), (5, 9, 3)],
)
def test_axis_windows_cover_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    spans = axis_windows(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == max(length, min(length, tile))
    assert all(e - s == min(tile, length) for s, e in spans)
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < s1 and e0 - s1 >= overlap  # neighbours overlap by at least `overlap`
    n = len(spans)
    if n > 1:  # as few windows as that takes
        assert (n - 2) * (tile - overlap) + tile < length


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [
        (14_400, 960, 64, 32),
        (1000, 128, 32, 32),
        (1001, 160, 40, 32),
        (25_000, 480, 64, 64),
        (5, 9, 3, 32),
        (700, 224, 40, 32),
        (12_345, 300, 290, 32),
    ],
)
def test_aligned_windows_start_at_multiples_and_cover_with_the_overlap(
    length: int, tile: int, overlap: int, align: int
) -> None:
    spans = axis_windows(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] >= length
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < s1 and e0 - s1 >= overlap and e0 - s0 == tile
    if tile - overlap < align:  # no room for an aligned step: as without alignment
        assert spans == axis_windows(length, tile, overlap)
    elif len(spans) > 1:
        assert all(s % align == 0 for s, _ in spans)
        assert spans[-1][1] - length < align  # the last window ends less than a step past
        assert spans[-2][1] < length  # and none earlier reaches the end
        # as few as aligned steps allow: one window fewer would leave the end uncovered
        longest_step = (tile - overlap) // align * align
        assert (len(spans) - 2) * longest_step + tile < length
    # alignment 1 is the plain rule
    assert axis_windows(length, tile, overlap, 1) == axis_windows(length, tile, overlap)


def test_prediction_windows_start_at_multiples_of_the_models_stride(
    tiny: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every window goes in at the same phase of the network's stride (its size multiple, 32
    px), as the whole image would: a convolutional network is equivariant only to shifts by
    multiples of its stride (Zhang 2019), so an object in an overlap gets the same features
    from both windows. The last windows reach past the image by less than a stride, padded."""
    step = tiling.stride_alignment(tiny.model)
    assert step == int(tiny.model.transform.size_divisible) == 32
    seen: list[tiling.Window] = []
    real = tiling._tile_tensor

    def spy(image, window, tile):
        seen.append(window)
        return real(image, window, tile)

    monkeypatch.setattr(tiling, "_tile_tensor", spy)
    img = RNG.integers(0, 256, (301, 413, 3), dtype=np.uint8)
    pred = tiny.predict_tiled(img, overlap=32, score_threshold=0.0, features=False)
    assert pred is not None and len(seen) > 4
    assert all(w.y0 % step == 0 and w.x0 % step == 0 for w in seen)
    assert max(w.y1 for w in seen) == 301 and max(w.x1 for w in seen) == 413


def test_overlap_must_be_smaller_than_the_tile() -> None:
    with pytest.raises(ValueError, match="smaller than the tile"):
        axis_windows(1000, 64, 64)


def test_window_cores_tile_the_image() -> None:
    windows = tile_windows(700, 900, (128, 160), 40)
    ys, xs = np.mgrid[0:700, 0:900] + 0.5
    owners = np.zeros(ys.shape, int)
    for w in windows:
        y0, x0, y1, x1 = w.core
        owners += (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
        assert w.y0 <= max(y0, 0) and min(y1, 700) <= w.y1  # a core lies in its window
    assert (owners == 1).all()


# ---- merging at tile borders, with a detector that finds exactly what a tile shows --------


@pytest.fixture(scope="module")
def tiny() -> Detector:
    """The default architecture at a tiny input: tiles of 128 x 160 px."""
    return Detector(["cell"], min_size=128, max_size=160, seed=0, device="cpu")


@pytest.fixture
def perfect(tiny: Detector, monkeypatch: pytest.MonkeyPatch) -> Detector:
    monkeypatch.setattr(tiny, "infer_raw", fake_infer_raw.__get__(tiny))
    return tiny


def _windows(detector: Detector, h: int, w: int, overlap: int) -> list[tiling.Window]:
    """The windows :meth:`Detector.predict_tiled` cuts an ``h x w`` image into at scale 1."""
    shape = tiling.prediction_tile(detector.model, h, w, overlap)
    return tile_windows(h, w, shape, overlap, tiling.stride_alignment(detector.model))


def _image_with(boxes: list[tuple[int, int, int, int]], h: int = 500, w: int = 700) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[y1:y2, x1:x2] = 255
    return img


def _found(pred) -> list[tuple[int, ...]]:
    return sorted(tuple(round(v) for v in b) for b in pred.boxes)


def _random_objects(
    rng: np.random.Generator, n: int, sides: tuple[int, int], gap: int
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 600 x 800 black image with ``n`` white rectangles of sides in ``sides`` (inclusive),
    at least ``gap`` px apart, and their xyxy boxes."""
    img = np.zeros((600, 800, 3), np.uint8)
    objects: list[tuple[int, int, int, int]] = []
    while len(objects) < n:
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
        x, y = int(rng.integers(0, 800 - w)), int(rng.integers(0, 600 - h))
        if img[max(0, y - gap) : y + h + gap, max(0, x - gap) : x + w + gap].any():
            continue  # keep objects apart
        img[y : y + h, x : x + w] = 255
        objects.append((x, y, x + w, y + h))
    return img, objects


def test_an_object_cut_by_a_tile_border_is_found_once(perfect: Detector) -> None:
    windows = _windows(perfect, 500, 700, 48)
    xs = sorted({w.x0 for w in windows})
    ys = sorted({w.y0 for w in windows})
    e = windows[0].x1  # the first window's right edge, inside the second window
    cut = (e - 20, 30, e + 20, 70)  # straddles that edge: cut in the first window
    corner = (xs[2] - 10, ys[1] - 10, xs[2] + 25, ys[1] + 25)  # across four windows' edges
    overlap_only = (xs[1] + 5, 300, xs[1] + 30, 330)  # whole in two windows
    objects = [cut, corner, overlap_only]
    pred = perfect.predict_tiled(_image_with(objects), overlap=48)
    assert _found(pred) == sorted(objects)


@pytest.mark.parametrize("window_scale", [1.0, 2.0])
def test_random_objects_up_to_the_overlap_are_each_found_once_and_whole(
    perfect: Detector, window_scale: float
) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        img, objects = _random_objects(rng, 25, (4, 40), gap=2)
        pred = perfect.predict_tiled(img, overlap=40, window_scale=window_scale)
        assert _found(pred) == sorted(objects)


def test_an_object_larger_than_the_overlap_is_joined_from_its_pieces(perfect: Detector) -> None:
    """Neither window holds an object wider than the overlap that lies over the overlap strip:
    each finds a piece; the pieces are joined into the whole object, once (also across a
    corner of four windows, and along a row of three windows)."""
    windows = _windows(perfect, 500, 700, 40)
    xs = sorted({w.x0 for w in windows})
    ys = sorted({w.y0 for w in windows})
    e = windows[0].x1  # the first window's right edge, inside the second window
    across = (xs[1] - 30, 20, e + 30, 60)  # in neither window whole
    corner = (xs[3] - 35, ys[2] - 30, xs[3] + 70, ys[2] + 70)  # pieces in four windows
    long = (xs[1] + 30, 420, xs[3] + 20, 460)  # over two cuts of one row
    objects = [across, corner, long]
    pred = perfect.predict_tiled(_image_with(objects), overlap=40)
    assert _found(pred) == sorted(objects)


@pytest.mark.parametrize("window_scale", [1.0, 2.0])
def test_random_objects_up_to_twice_the_overlap_are_each_found_once_and_whole(
    perfect: Detector, window_scale: float
) -> None:
    rng = np.random.default_rng(5)
    for _ in range(4):
        img, objects = _random_objects(rng, 12, (30, 80), gap=4)
        pred = perfect.predict_tiled(img, overlap=40, window_scale=window_scale)
        assert _found(pred) == sorted(objects)


def test_joining_never_makes_a_box_longer_than_two_windows(perfect: Detector) -> None:
    """A band across the whole image (a weak model's chain of overlapping boxes looks so) is
    not joined into one box wider than two windows."""
    img = np.zeros((500, 700, 3), np.uint8)
    img[200:240, :] = 255
    pred = perfect.predict_tiled(img, overlap=40)
    _, tile_w = native_tile(perfect.model, 500, 700)
    widths = pred.boxes[:, 2] - pred.boxes[:, 0]
    assert len(pred) > 1 and widths.max() <= 2 * tile_w


def test_touching_objects_cut_at_facing_edges_are_not_joined(perfect: Detector) -> None:
    """Two objects side by side, each cut by one window's edge but disagreeing across the cut
    (one above the other half): two boxes, never their union."""
    windows = _windows(perfect, 500, 700, 40)
    xs = sorted({w.x0 for w in windows})
    e = windows[0].x1
    left = (xs[1] - 30, 20, e + 2, 60)  # reaches past the first window's right edge
    right = (xs[1] - 2, 62, e + 30, 120)  # starts before the second window's left edge
    pred = perfect.predict_tiled(_image_with([left, right]), overlap=40)
    assert _found(pred) == sorted([left, right])  # each joined from its own two pieces


def test_boxes_without_their_features_are_the_same_boxes(perfect: Detector) -> None:
    """``features=False`` (what the workflow stores from: boxes only) leaves out the 4 kB a box
    of RoI features and nothing else, cut objects included."""
    rng = np.random.default_rng(11)
    img, objects = _random_objects(rng, 12, (30, 80), gap=4)
    full = perfect.predict_tiled(img, overlap=40, window_scale=2.0)
    lean = perfect.predict_tiled(img, overlap=40, window_scale=2.0, features=False)
    assert len(full) == len(objects) and full.features.shape[1] > 0
    assert lean.features.shape == (len(full), 0) and lean.features.dtype == np.float32
    for name in ("boxes", "labels", "scores", "probs", "embedding", "proposals"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))


def test_each_box_keeps_its_own_probs_features_and_proposal(perfect: Detector) -> None:
    objects = [(10, 10, 40, 30), (150, 100, 175, 140), (300, 200, 333, 211)]
    pred = perfect.predict_tiled(_image_with(objects), overlap=48)
    wh = np.stack([pred.boxes[:, 2] - pred.boxes[:, 0], pred.boxes[:, 3] - pred.boxes[:, 1]], 1)
    np.testing.assert_array_equal(pred.features[:, :2], wh)
    np.testing.assert_array_equal(pred.proposals, pred.boxes)
    assert pred.probs.shape == (3, 2) and np.allclose(pred.probs.sum(1), 1.0)
    np.testing.assert_array_equal(pred.scores, pred.probs[np.arange(3), pred.labels + 1])
    assert pred.embedding.shape == (2,) and pred.embedding[1] == pytest.approx(1.0)


def test_merging_in_groups_finds_the_same_and_caps_the_boxes(
    perfect: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_al.core.engine import tiling

    rng = np.random.default_rng(4)
    img = np.zeros((600, 800, 3), np.uint8)
    objects = []
    while len(objects) < 30:
        w, h = (int(v) for v in rng.integers(4, 41, 2))
        x, y = int(rng.integers(0, 800 - w)), int(rng.integers(0, 600 - h))
        if img[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2].any():
            continue
        img[y : y + h, x : x + w] = 255
        objects.append((x, y, x + w, y + h))
    n_windows = len(_windows(perfect, 600, 800, 40))
    whole = perfect.predict_tiled(img, overlap=40, batch_size=2)
    monkeypatch.setattr(tiling, "MERGE_EVERY", 3)  # many small merges instead of one
    assert n_windows > 6
    grouped = perfect.predict_tiled(img, overlap=40, batch_size=2)
    assert _found(grouped) == _found(whole) == sorted(objects)
    np.testing.assert_allclose(grouped.embedding, whole.embedding, rtol=1e-6)
    monkeypatch.setattr(tiling, "MAX_TILED_DETECTIONS", 7)  # memory bound: the best 7 stay
    monkeypatch.setattr(tiling, "DETECTIONS_PER_MEGAPIXEL", 0)
    capped = perfect.predict_tiled(img, overlap=40, batch_size=2)
    assert len(capped) == 7 and set(_found(capped)) <= set(objects)


def test_progress_counts_tiles_and_stop_returns_none(perfect: Detector) -> None:
    seen: list[tuple[int, int]] = []
    img = _image_with([])
    perfect.predict_tiled(img, overlap=48, batch_size=3, progress=lambda d, n: seen.append((d, n)))
    total = len(_windows(perfect, 500, 700, 48))
    assert seen[-1] == (total, total) and all(n == total for _, n in seen)
    assert perfect.predict_tiled(img, overlap=48, should_stop=lambda: True) is None


# ---- the real model on tiles --------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_scale", "windows", "shape"), [(1.0, 9, (128, 160)), (2.0, 4, (192, 224))]
)
def test_tiles_are_fed_at_the_models_native_scale(
    tiny: Detector,
    monkeypatch: pytest.MonkeyPatch,
    window_scale: float,
    windows: int,
    shape: tuple[int, int],
) -> None:
    # tiny's input is 128 x 160; a 300 x 400 image takes 3 x 3 windows of that size, or
    # 2 x 2 of at most twice that, shrunk to share it evenly (166 x 216 px) and rounded up to
    # the model's multiple of 32: every window goes in unresized, with proposals for its area
    calls: list[tuple] = []
    real = tiny.infer_raw

    def spy(tensors, *a, **k):
        raws = real(tensors, *a, **k)
        calls.extend((r.image_size, r.orig_size, k["budget"]) for r in raws)
        return raws

    monkeypatch.setattr(tiny, "infer_raw", spy)
    img = RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pred = tiny.predict_tiled(img, overlap=32, score_threshold=0.0, window_scale=window_scale)
    assert len(calls) == windows
    assert all(s == o == shape for s, o, _ in calls)  # no resize
    # proposals for the window's area, times the largest share of a pass's windows that their
    # cores cover (the overlaps are seen twice)
    budget = max(1.0, shape[0] * shape[1] / (128 * 160))
    cut = tile_windows(300, 400, shape, 32, tiling.stride_alignment(tiny.model))
    step = max(1, int(4 / budget))
    expected = [
        budget * max(w.owned_share for w in cut[i : i + step])
        for i in range(0, len(cut), step)
        for _ in cut[i : i + step]
    ]
    assert [b for _, _, b in calls] == pytest.approx(expected)
    assert all(b < budget for b in expected)  # every pass here holds a window's overlap
    n = len(pred)
    assert n > 0 and pred.features.shape == (n, tiny.feature_dim)
    assert pred.embedding.shape == (tiny.embedding_dim,) and pred.proposals.shape == (n, 4)
    assert (pred.boxes[:, 2] <= 400).all() and (pred.boxes[:, 3] <= 300).all()
    assert np.allclose(pred.probs.sum(1), 1.0, atol=1e-4)


def test_fitted_windows_cover_the_image_with_the_fewest_windows() -> None:
    for length, longest, overlap in [
        (19_200, 1280, 64),
        (14_400, 960, 64),
        (1000, 960, 64),
        (961, 960, 0),
        (5, 960, 64),
        (12_345, 300, 299),
    ]:
        side = tiling.fitted_length(length, longest, overlap)
        assert side <= longest
        spans = tiling.axis_windows(length, side, overlap)
        fewest = tiling.axis_windows(length, longest, overlap)
        assert len(spans) == len(fewest)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(b[0] <= a[1] - overlap for a, b in itertools.pairwise(spans))

    # the mosaic of the benchmark: 2x windows cover it with 1.12x its pixels, 1x with 1.28x
    def cover(scale: float) -> float:
        rows = tiling.axis_windows(14_400, tiling.fitted_length(14_400, int(480 * scale), 64), 64)
        cols = tiling.axis_windows(19_200, tiling.fitted_length(19_200, int(640 * scale), 64), 64)
        pixels = sum(b - a for a, b in rows) * sum(b - a for a, b in cols)
        return pixels / (14_400 * 19_200)

    assert cover(1.0) == pytest.approx(1.28, abs=0.01)
    assert cover(2.0) == pytest.approx(1.12, abs=0.01)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tiling.fitted_length(1000, 64, 64)


def test_a_window_scale_below_one_is_refused(tiny: Detector) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        tiling.prediction_tile(tiny.model, 1000, 1000, 32, 0.5)


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(300, 400, (128, 160), 32), (1000, 700, (480, 640), 64), (128, 160, (128, 160), 0)],
)
def test_window_cores_share_the_image(
    height: int, width: int, tile: tuple[int, int], overlap: int
) -> None:
    # the cores tile the image: the owned shares, weighted by the windows' areas, add up to it
    windows = tile_windows(height, width, tile, overlap)
    owned = sum(w.owned_share * w.height * w.width for w in windows)
    assert owned == pytest.approx(height * width)
    assert all(0.0 < w.owned_share <= 1.0 for w in windows)
    if len(windows) == 1:
        assert windows[0].owned_share == 1.0


def test_the_proposal_budget_scales_this_thread_only(tiny: Detector) -> None:
    rpn = tiny.model.rpn
    rpn.eval()
    pre, post = rpn.pre_nms_top_n(), rpn.post_nms_top_n()
    seen: list[tuple[int, int]] = []
    with proposal_budget(2.5):
        assert (rpn.pre_nms_top_n(), rpn.post_nms_top_n()) == (round(pre * 2.5), round(post * 2.5))
        other = threading.Thread(
            target=lambda: seen.append((rpn.pre_nms_top_n(), rpn.post_nms_top_n()))
        )
        other.start()
        other.join()
    assert seen == [(pre, post)]
    assert (rpn.pre_nms_top_n(), rpn.post_nms_top_n()) == (pre, post)


def test_an_image_of_one_tile_predicts_as_a_whole_image(tiny: Detector) -> None:
    img = RNG.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    whole = tiny.predict([img])[0]
    tiled = tiny.predict_tiled(img, overlap=32)
    for name in ("boxes", "labels", "scores", "probs", "features", "embedding", "proposals"):
        np.testing.assert_array_equal(getattr(tiled, name), getattr(whole, name), err_msg=name)


# ---- lazy reading -------------------------------------------------------------------------


def _pyramid(path: Path, data: np.ndarray, **kw) -> Path:
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(128, 128), subifds=1, compression="zlib", **kw)
        reduced = data[:, ::4, ::4] if kw.get("planarconfig") == "separate" else data[::4, ::4]
        tw.write(reduced, tile=(128, 128), subfiletype=1, compression="zlib", **kw)
    return path


@pytest.mark.parametrize(
    ("shape", "dtype", "kw"),
    [
        ((4200, 4100, 3), np.uint16, {"photometric": "rgb"}),
        ((4200, 4100), np.uint8, {}),
        ((4200, 4100, 4), np.uint8, {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
        ((3, 4200, 4100), np.uint16, {"photometric": "rgb", "planarconfig": "separate"}),
    ],
)
def test_lazy_windows_are_the_pixels_read_whole(tmp_path: Path, shape, dtype, kw) -> None:
    data = RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    path = _pyramid(tmp_path / "big.tif", data, **kw)
    assert reads_lazily(path) and LAZY_PIXELS < 4200 * 4100
    whole = read_image(path)
    with LazyImage(path) as image:
        assert image.shape == whole.shape and image.dtype == whole.dtype
        assert image.levels == [(4200, 4100), (1050, 1025)]
        np.testing.assert_array_equal(image[1000:1300, 4000:4100], whole[1000:1300, 4000:4100])
        rgb = image.rgb()[0:700, 0:900]
    np.testing.assert_array_equal(rgb, to_rgb_uint8(whole)[0:700, 0:900])  # same limits here


def test_ome_tiff_pyramid_reads_lazily(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (4200, 4100, 3), dtype=np.uint8)
    path = tmp_path / "scan.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        opts = {"tile": (256, 256), "compression": "zlib", "photometric": "rgb"}
        tw.write(data, subifds=2, metadata={"axes": "YXS"}, **opts)
        tw.write(data[::2, ::2], subfiletype=1, **opts)
        tw.write(data[::4, ::4], subfiletype=1, **opts)
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
    with LazyImage(path) as image:
        assert image.levels == [(4200, 4100), (2100, 2050), (1050, 1025)]
        np.testing.assert_array_equal(image[4000:4200, 10:300], data[4000:4200, 10:300])
        (full, half, _) = image.dask_levels()
        np.testing.assert_array_equal(np.asarray(half[5:9, 7:11]), data[10:18:2, 14:22:2])
        assert full.shape == data.shape


@pytest.mark.parametrize(
    ("shape", "kw", "reduced", "sides"),
    [  # no pyramid: sampled levels down to <= 2048 px; a pyramid: its levels, then sampled
        ((4200, 4100, 3), {"photometric": "rgb"}, (), [4200, 2100, 1050]),
        ((9000, 5000), {}, (), [9000, 4500, 2250, 1125]),
        ((3, 4200, 4100), {"photometric": "rgb", "planarconfig": "separate"}, (), None),
        ((9000, 5000), {}, (3,), [9000, 3000, 1500]),
    ],
)
def test_display_levels_sample_the_full_image_down_to_2048_px(
    tmp_path: Path, shape, kw, reduced, sides
) -> None:
    data = RNG.integers(0, 256, shape, dtype=np.uint8)
    planar = kw.get("planarconfig") == "separate"
    path = tmp_path / "big.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(256, 256), compression="zlib", subifds=len(reduced), **kw)
        for step in reduced:
            tw.write(
                data[..., ::step, ::step] if planar else data[::step, ::step],
                tile=(256, 256),
                compression="zlib",
                subfiletype=1,
                **kw,
            )
    full = np.moveaxis(data, 0, -1) if planar else data
    with open_display(path) as image:
        assert isinstance(image, LazyImage)
        levels = image.display_levels()
        got = [lv.shape[0] for lv in levels]
        assert got == (sides or [4200, 2100, 1050])
        assert max(levels[-1].shape[:2]) <= 2048 < max(levels[-2].shape[:2])
        stored = (1, *reduced)
        for level in levels:
            step = -(-full.shape[0] // level.shape[0])
            want = full[::step, ::step]
            if step not in stored:  # sampled from the last stored level
                last = stored[-1]
                want = full[::last, ::last][:: step // last, :: step // last]
            assert level.shape == want.shape and level.dtype == np.uint8
            rows, cols = slice(7, min(300, want.shape[0])), slice(want.shape[1] - 190, None)
            np.testing.assert_array_equal(np.asarray(level[rows, cols]), want[rows, cols])
        np.testing.assert_array_equal(np.asarray(levels[-1]), want)  # the whole coarsest level


def test_a_sampled_level_reads_only_the_tiles_under_its_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sparse_tiff(tmp_path / "big.tif", 25_000, [(20_000, 21_000, 60, 30)], rgb=True)

    def whole_read(*a, **k):
        raise AssertionError("the whole image was decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", whole_read)
    decoded: list[int] = []
    real = tifffile.TiffPage.decode.func  # a cached_property

    def counting(page):  # type: ignore[no-untyped-def]
        fn = real(page)

        def decode(*a, **k):  # type: ignore[no-untyped-def]
            decoded.append(1)
            return fn(*a, **k)

        return decode

    monkeypatch.setattr(tifffile.TiffPage, "decode", property(counting))
    with LazyImage(path) as image:
        levels = image.display_levels()
        assert [lv.shape for lv in levels] == [
            (-(-25_000 // s), -(-25_000 // s), 3) for s in (1, 2, 4, 8, 16)
        ]
        window = np.asarray(levels[3][2600:2640, 2490:2510])  # step 8: rows 20,800-21,120
        assert 1 <= len(decoded) <= 4  # the 512 px tiles under it, not the image's 2,401
        assert (window[25:29, 10:18] == (255, 200, 40)).all() and window[:25].max() == 0


def test_small_or_single_strip_images_are_read_whole(tmp_path: Path) -> None:
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((300, 400), np.uint8), tile=(128, 128))
    one_strip = tmp_path / "strip.tif"
    tifffile.imwrite(one_strip, np.zeros((4200, 4100), np.uint8), rowsperstrip=4200)
    for path in (small, one_strip):
        assert not reads_lazily(path)
        with open_rgb(path) as pixels:
            assert isinstance(pixels, np.ndarray) and pixels.shape[2] == 3
        shown = open_display(path)  # the viewer reads it whole too, as stored
        assert isinstance(shown, np.ndarray) and shown.shape == pixels.shape[:2]


def test_sizes_past_the_whole_read_limit(tmp_path: Path) -> None:
    big = sparse_tiff(tmp_path / "big.tif", 25_000, [])
    assert big.stat().st_size < 2_000_000
    assert image_size(big) == (25_000, 25_000)
    check_pixels(big)
    with pytest.raises(ImageReadError, match=r"big\.tif: image is 25000x25000 px.*tile by tile"):
        read_image(big)
    strip = tmp_path / "strip.tif"  # one strip: it could only be read whole
    data = np.zeros((MAX_SIDE + 1, 1000), np.uint8)
    tifffile.imwrite(strip, data, rowsperstrip=MAX_SIDE + 1, compression="zlib")
    with pytest.raises(ImageReadError, match=r"strip\.tif: image is 1000x20001 px in .*tile="):
        image_size(strip)
    # already tiled, in tiles too large to decode one at a time: the advice is smaller tiles,
    # not "save it as a tiled TIFF" (what a newcomer was told)
    coarse = tmp_path / "coarse.tif"
    tifffile.imwrite(coarse, np.zeros((MAX_SIDE + 16, 16), np.uint8), tile=(4096, 4096))
    with pytest.raises(ImageReadError, match=r"coarse\.tif: .* 16,777,216 px each.*smaller tiles"):
        image_size(coarse)
    with pytest.raises(ImageReadError, match=r"coarse\.tif: .*smaller tiles"):
        LazyImage(coarse)


# ---- the workflow: large images tiled, small ones as before -----------------------------


def test_small_images_predict_bit_for_bit_as_before(
    labelled_project: Path, tiny: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    def no_tiles(*a, **k):
        raise AssertionError("a small image was tiled")

    monkeypatch.setattr(tiny, "predict_tiled", no_tiles)
    with ProjectStore.open(labelled_project) as store:
        ids = workflow.pool_image_ids(store)[:4]
        done = workflow.predict_images(store, tiny, ids)
        assert done == ids
        expected = []
        for start in range(0, len(ids), 2):  # the path before tiling: batches of two
            rows = [store.image(i) for i in ids[start : start + 2]]
            pixels = [workflow.load_rgb(store.abs_path(r)) for r in rows]
            expected += tiny.predict(pixels)
        for image_id, p in zip(ids, expected, strict=True):
            stored = store.boxes(image_id=image_id, statuses=("predicted",))
            got = sorted((b.xyxy, b.score) for b in stored)
            want = sorted(
                (tuple(map(float, p.boxes[i])), float(p.scores[i])) for i in range(len(p))
            )
            assert got == want


def test_the_workflow_keeps_no_features_of_a_large_image(perfect: Detector, tmp_path: Path) -> None:
    """The store keeps boxes, classes and scores: a large image's boxes come without their
    RoI features (4 kB a box), in this process and on a Dask worker alike."""
    import tifffile

    from napari_al.core import workflow
    from napari_al.core.workflow.prediction import predict_large_file

    objects = [(10, 10, 40, 30), (150, 100, 175, 140), (300, 200, 333, 211)]
    img = _image_with(objects)
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, img)
    tiles = workflow.TileSettings(tile_above=100, overlap=48, window_scale=2.0)
    pred = predict_large_file(perfect, path, tiles)
    assert pred.features.shape == (3, 0)
    whole = perfect.predict_tiled(img, overlap=48, window_scale=2.0)
    np.testing.assert_array_equal(pred.boxes, whole.boxes)
    np.testing.assert_array_equal(pred.scores, whole.scores)


def test_prediction_stores_no_box_in_a_region_marked_complete(
    perfect: Detector, tmp_path: Path
) -> None:
    """A partly reviewed large image: its reviewed region's objects are the person's boxes, so
    prediction stores boxes outside that region only (a newcomer saw 471 predictions drawn over
    the 131 accepted boxes of a region marked complete)."""
    from napari_al.core import workflow
    from napari_al.core.data import Dataset, ImageRecord
    from napari_al.core.store import ProjectStore

    objects = [(10, 10, 40, 30), (150, 100, 175, 140), (300, 200, 333, 211), (600, 400, 640, 430)]
    tifffile.imwrite(tmp_path / "large.tif", _image_with(objects))
    tiles = workflow.TileSettings(tile_above=100, overlap=48, window_scale=2.0)
    with ProjectStore.create(tmp_path / "p") as store:
        rec = ImageRecord(tmp_path / "large.tif", 700, 500, [])
        store.import_dataset(Dataset(list(perfect.classes), [rec]))
        (image,) = [r.id for r in store.images()]
        store.complete_region(image, (0, 0, 200, 160))  # holds the first two objects
        workflow.predict_images(store, perfect, tiles=tiles)
        found = sorted(tuple(round(v) for v in b.xyxy) for b in store.boxes(image_id=image))
        assert found == sorted(objects[2:])
        assert store.image(image).review_state != "complete"


def test_a_large_image_damaged_after_import_is_skipped_with_its_path_once(
    perfect: Detector, tmp_path: Path
) -> None:
    """A tiled TIFF truncated after import: prediction skips it, and the reason names the file
    once (the reader's error starts with the path already; a newcomer saw it twice)."""
    from napari_al.core import workflow
    from napari_al.core.data import Dataset, ImageRecord
    from napari_al.core.store import ProjectStore

    path = tmp_path / "large.tif"
    noise = RNG.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    tifffile.imwrite(path, noise, tile=(256, 256), compression="zlib")
    tiles = workflow.TileSettings(tile_above=100, overlap=48, window_scale=2.0)
    skipped: list[tuple[int, str]] = []
    with ProjectStore.create(tmp_path / "p") as store:
        rec = ImageRecord(path, 1024, 1024, [])
        store.import_dataset(Dataset(list(perfect.classes), [rec]))
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
        done = workflow.predict_images(
            store, perfect, tiles=tiles, on_skip=lambda i, m: skipped.append((i, m))
        )
    assert done == [] and len(skipped) == 1
    message = skipped[0][1]
    assert message.count(str(path)) == 1 and message.startswith(f"{path}:")


def test_a_25000_px_image_imports_and_predicts_without_being_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_al.cli import main
    from napari_al.core.store import ProjectStore

    folder = tmp_path / "slide"
    folder.mkdir()
    # a square cut by the 2048 px tile rows, one at four tiles' corner, one alone
    squares = [(3000, 2030, 40), (8140, 4070, 50), (20_000, 21_000, 60)]
    sparse_tiff(folder / "slide.tif", 25_000, [(x, y, s, s) for x, y, s in squares])

    def whole_read(*a, **k):
        raise AssertionError("the whole image was decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", whole_read)
    monkeypatch.setattr(Detector, "infer_raw", fake_infer_raw)
    monkeypatch.setattr("napari_al.cli.common.bars_shown", lambda: True)  # as on a terminal
    tracemalloc.start()
    try:
        assert main(["init", str(folder)]) == 0
        assert "1 image" in capsys.readouterr().out
        assert main(["add-class", str(folder), "cell"]) == 0
        code = main(["predict", str(folder), "--min-size", "2048", "--max-size", "4096"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 0, err
    assert "slide.tif, tile by tile" in err and "window" in err  # a bar of windows, by file name
    assert peak < 120e6  # the whole image is 625 MB; a 2048 x 4096 window as RGB is 25 MB
    with ProjectStore.open(folder) as store:
        (row,) = store.images()
        boxes = sorted(b.xyxy for b in store.boxes(image_id=row.id, statuses=("predicted",)))
    assert boxes == sorted((x, y, x + s, y + s) for x, y, s in squares)


def test_a_labelled_image_too_large_to_read_whole_trains_in_crops_read_window_by_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A complete 25,000 px tiled TIFF trains in crops of the model's input anywhere in it
    (docs/large-images.md), built and read without ever holding the image; raise
    ``tile_above`` past it and it would be read whole: then it is left out, with a warning."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord
    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow import TileSettings, training_examples

    big = sparse_tiff(tmp_path / "big.tif", 25_000, [(100, 100, 30, 30), (20_000, 24_000, 40, 40)])
    boxes = [
        BoxRecord(100, 100, 130, 130, "cell"),
        BoxRecord(20_000, 24_000, 20_040, 24_040, "cell"),
    ]
    rec = ImageRecord(big, 25_000, 25_000, boxes, annotated=True)
    with ProjectStore.create(tmp_path / "p") as store:
        store.import_dataset(Dataset(["cell"], [rec]))
        assert [r.review_state for r in store.images()] == ["complete"]
        snapshot = store.training_snapshot()
        tracemalloc.start()
        try:
            examples = training_examples(store, snapshot)
            targets = [e for e in examples if len(e.boxes)]
            crops = [e.load() for e in targets]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 60e6  # the image is 625 MB; a 480 x 640 crop as RGB is 0.9 MB
        assert len(examples) == len(tile_windows(25_000, 25_000, (480, 640), 64))
        assert all(c.shape == (480, 640, 3) for c in crops)
        assert len(targets) == 2 and all(c.max() == 255 for c in crops)
        with caplog.at_level("WARNING"):
            too_big = TileSettings(tile_above=30_000)
            assert training_examples(store, snapshot, tiles=too_big) == []
    assert "left out of training: larger than 20000 px per side" in caplog.text


def test_the_box_cap_grows_with_the_image() -> None:
    from napari_al.core.engine.tiling import MAX_TILED_DETECTIONS, max_detections

    assert max_detections(4000, 5000) == MAX_TILED_DETECTIONS  # 20 Mpx: the flat cap
    assert max_detections(14_400, 19_200) >= 27_000 > 11_832  # the BCCD mosaic's cells fit


@pytest.mark.parametrize("window_scale", [1.0, 2.0])
def test_a_strip_thinner_than_the_overlap_predicts_in_one_row(
    perfect: Detector, window_scale: float
) -> None:
    # 30 px tall, overlap 40: the window's height is the image's (was: the overlap refused)
    objects = [(10, 5, 30, 25), (600, 2, 650, 28), (1990, 0, 2000, 30)]
    pred = perfect.predict_tiled(
        _image_with(objects, h=30, w=2000), overlap=40, window_scale=window_scale
    )
    assert _found(pred) == sorted(objects)


def test_a_large_image_that_hits_the_box_cap_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weak model on a large image stored the 10,000-box cap with no word (newcomer); now a
    warning names the file and what to do."""
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    squares = [(100 + 300 * k, 200, 30, 30) for k in range(8)]
    sparse_tiff(tmp_path / "big.tif", 5000, squares)
    monkeypatch.setattr(Detector, "infer_raw", fake_infer_raw)
    detector = Detector(["cell"], min_size=1024, max_size=1024, seed=0, device="cpu")
    with ProjectStore.create(tmp_path / "p") as store:
        store.add_class("cell")
        store.add_image(str(tmp_path / "big.tif"), "b" * 64, 5000, 5000)
        tiles = workflow.TileSettings(tile_above=4096)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            workflow.predict_images(store, detector, tiles=tiles)  # 8 boxes: no warning
        monkeypatch.setattr(tiling, "MAX_TILED_DETECTIONS", 5)
        monkeypatch.setattr(tiling, "DETECTIONS_PER_MEGAPIXEL", 0)
        with pytest.warns(UserWarning, match=r"big\.tif: kept the 5 highest-scoring boxes"):
            workflow.predict_images(store, detector, tiles=tiles)
        (row,) = store.images()
        assert len(store.boxes(image_id=row.id, statuses=("predicted",))) == 5
