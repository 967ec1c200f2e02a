"""Ranking large images window by window (issue 14): the region unit's queries are windows in
image pixels, an image ranks by its best window, box queries come from the windows once each,
the windows are read one at a time (never the image whole) and cached, and small images rank
exactly as before. Every image is generated here; the detector finds exactly the bright
objects a window shows (``fake_infer_raw``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import tifffile
from large_image_helpers import fake_infer_raw
from PIL import Image

from napari_al.core import lazy_images
from napari_al.core.data import Dataset, ImageRecord
from napari_al.core.engine import Detector
from napari_al.core.engine.tiling import native_tile, stride_alignment, tile_windows
from napari_al.core.lazy_images import padded_window, reads_lazily
from napari_al.core.store import ProjectStore
from napari_al.core.workflow import QuerySettings, TileSettings, rank_pool
from napari_al.core.workflow.ranking import _plan, score_batch, score_images

W, H = 2400, 1800
TILES = TileSettings(tile_above=1000, overlap=64)
#: only in the window x 448-1088, y 352-832 (480 x 640 tiles, 64 px overlap, origins at
#: multiples of 32 px)
OBJECTS = [(660, 500, 700, 540), (760, 560, 800, 610), (820, 600, 860, 640)]
#: in that window and its right neighbour (x 896-1536), whole in both
SHARED = (900, 520, 940, 560)
BEST_WINDOW = (448.0, 352.0, 1088.0, 832.0)


def _pixels(boxes) -> np.ndarray:
    img = ((np.arange(H)[:, None] + np.arange(W)[None, :]) % 7).astype(np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[y1:y2, x1:x2] = 255
    return img


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A large tiled TIFF (read window by window: the lazy threshold is lowered to 1 Mpx)
    and a small PNG with one object, both in the pool."""
    monkeypatch.setattr(lazy_images, "LAZY_PIXELS", 1_000_000)
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, _pixels([*OBJECTS, SHARED]), tile=(256, 256), compression="zlib")
    assert reads_lazily(big)
    small = np.zeros((300, 400, 3), np.uint8)
    small[100:140, 150:200] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    recs = [ImageRecord(big, W, H, []), ImageRecord(tmp_path / "small.png", 400, 300, [])]
    with ProjectStore.create(tmp_path / "p") as store:
        store.import_dataset(Dataset(["cell"], recs))
    return tmp_path / "p"


@pytest.fixture
def detector(monkeypatch: pytest.MonkeyPatch) -> Detector:
    d = Detector(["cell"], min_size=480, max_size=640, seed=0, device="cpu")
    d.model_version = 1  # cacheable, as a registered model version
    calls = []

    def counting(self, tensors, *a, **k):
        calls.append([tuple(t.shape[-2:]) for t in tensors])
        return fake_infer_raw(self, tensors, *a, **k)

    monkeypatch.setattr(d, "infer_raw", counting.__get__(d))
    d.calls = calls  # type: ignore[attr-defined]
    return d


def _no_whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def whole(*a, **k):
        raise AssertionError("the large image was read whole")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", whole)
    monkeypatch.setattr(lazy_images, "read_image", whole)


def _ids(p: Path) -> tuple[int, int]:
    with ProjectStore.open(p) as store:
        rows = {Path(r.path).name: r.id for r in store.images()}
    return rows["big.tif"], rows["small.png"]


def test_region_queries_of_a_large_image_are_its_windows_in_image_pixels(
    project: Path, detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, _ = _ids(project)
    q = QuerySettings(unit="region", budget=5)
    with ProjectStore.open(project) as store:
        _no_whole_reads(monkeypatch)
        items = rank_pool(store, detector, q, image_ids=[big], tiles=TILES)
    assert items[0].image == big and items[0].unit == "region"
    assert items[0].box == BEST_WINDOW  # the window holding the objects, image pixels
    assert items[1].box == (896.0, 352.0, 1536.0, 832.0)  # holds SHARED only
    assert items[0].score > items[1].score > 0 and len(items) == 2  # empty windows score 0
    tile = native_tile(detector.model, H, W)
    assert {s for call in detector.calls for s in call} == {tile}  # native-size windows only


def test_a_large_image_scores_its_best_window_and_a_second_pass_scores_nothing(
    project: Path, detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, small = _ids(project)
    q = QuerySettings(unit="image", strategy="entropy", budget=2)
    pixels = _pixels([*OBJECTS, SHARED])
    with ProjectStore.open(project) as store:
        plan = _plan(store, detector, q)
        tile = native_tile(detector.model, H, W)
        windows = tile_windows(H, W, tile, TILES.overlap, stride_alignment(detector.model))
        raws = []
        for w in windows:  # each window scored alone, as an image of the native size
            rgb = np.repeat(pixels[:, :, None], 3, axis=2)
            view = padded_window(rgb, w.x0, w.y0, w.x0 + tile[1], w.y0 + tile[0])
            raws.append(score_batch(detector, q, plan, [view], np.random.default_rng(0))[0][0])
        per_window = plan.strategy.combine_raw(raws).image_scores
        assert (per_window > 0).sum() == 2  # the objects' window and SHARED's neighbour
        _no_whole_reads(monkeypatch)
        detector.calls.clear()
        progress = []
        items = rank_pool(
            store,
            detector,
            q,
            image_ids=[big, small],
            tiles=TILES,
            progress=lambda *a: progress.append(a),
        )
        assert detector.calls  # the first pass scored the windows
        scores = {it.image: it.score for it in items}
        assert scores[big] == pytest.approx(per_window.max())  # the documented aggregate
        assert progress[-1] == (1 + len(windows), 1 + len(windows))  # windows count
        detector.calls.clear()
        _, scored = score_images(store, detector, q, [big, small], tiles=TILES)
        assert scored.computed == 0 and detector.calls == []  # all cached: no window scored
        again = rank_pool(store, detector, q, image_ids=[big, small], tiles=TILES)
        assert [(i.image, i.score) for i in again] == [(i.image, i.score) for i in items]
    with sqlite3.connect(f"file:{project / 'napari_al.sqlite'}?mode=ro", uri=True) as conn:
        keys = [k for (k,) in conn.execute("SELECT scorer FROM score_cache")]
    assert len(keys) == len(set(keys)) == len(windows) + 1  # one per window, one small


def test_box_queries_come_from_the_windows_once_each_in_image_pixels(
    project: Path, detector: Detector
) -> None:
    big, _ = _ids(project)
    q = QuerySettings(unit="box", budget=20)
    with ProjectStore.open(project) as store:
        items = rank_pool(store, detector, q, image_ids=[big], tiles=TILES)
    found = sorted(tuple(round(v) for v in it.box) for it in items)
    assert found == sorted([*OBJECTS, SHARED])  # SHARED, seen whole by two windows, once


@pytest.mark.parametrize("unit", ["image", "region", "box"])
def test_a_small_image_ranks_as_on_the_whole_image_path(
    project: Path, detector: Detector, unit: str
) -> None:
    big, small = _ids(project)
    q = QuerySettings(unit=unit, budget=50, strategy="entropy")
    with ProjectStore.open(project) as store:
        alone = rank_pool(store, detector, q, image_ids=[small], save=False, use_cache=False)
        whole = rank_pool(
            store,
            detector,
            q,
            image_ids=[small],
            save=False,
            use_cache=False,
            tiles=TileSettings(tile_above=100_000),
        )
        mixed = rank_pool(store, detector, q, image_ids=[big, small], tiles=TILES, save=False)
    assert alone == whole and alone
    assert [i for i in mixed if i.image == small] == alone


def test_labelled_large_images_are_never_read_whole_for_diversity_or_the_missed_regressor(
    project: Path, detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Core-set's labelled centres and the missed-object regressor's examples read labelled
    images whole: a large one is left out (a 16,384 px image took 11 GB, and its shrunken view
    finds almost nothing, so its missed-object target was nearly every human box)."""
    from napari_al.core.workflow import ranking

    big, small = _ids(project)
    read: list[str] = []
    real = ranking.read_rows

    def spy(store, rows, *a, **k):
        read.extend(Path(r.path).name for r in rows)
        return real(store, rows, *a, **k)

    monkeypatch.setattr(ranking, "read_rows", spy)
    monkeypatch.setattr(ranking, "MISSED_MIN_IMAGES", 1)
    with ProjectStore.open(project) as store:
        for image_id in (big, small):
            store.set_review_state(image_id, "complete")
        _no_whole_reads(monkeypatch)
        emb = ranking.labelled_embeddings(store, detector, use_cache=False, tiles=TILES)
        assert ranking.fit_missed_regressor(store, detector, tiles=TILES) is not None
        q = QuerySettings(unit="image", budget=2, diversity="coreset")
        items = rank_pool(store, detector, q, tiles=TILES, save=False)
    assert emb is not None and emb.shape[0] == 1
    assert read and set(read) == {"small.png"}
    assert {i.image for i in items} <= {big, small}


def test_a_region_counts_its_possibly_missed_objects_by_their_probabilities(
    project: Path, detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region's missed-object term is their expected number (the candidates' probabilities
    summed, as the missed scorer's weighted density), on the whole-image and the window path
    alike, and kept in the window cache: 0.3 + 0.2, not a count of 2 (an untrained model's
    ~100 candidates of probability 0.01 a window outranked every uncertain box)."""
    from napari_al.core.data import Predictions
    from napari_al.core.scoring import missed

    def two_weak_candidates(views, *a, **k) -> Predictions:
        n = views.base.probs.shape[1] - 1
        p = Predictions.empty(n, views.base.features.shape[1])
        p.boxes = np.array([[10, 10, 30, 30], [12, 12, 28, 28]], np.float32)
        p.scores = np.array([0.3, 0.2], np.float32)
        return p

    monkeypatch.setattr(missed, "possibly_missed", two_weak_candidates)
    big, small = _ids(project)
    q = QuerySettings(unit="region", budget=100, strategy="missed", region_block=1000)
    with ProjectStore.open(project) as store:
        first = rank_pool(store, detector, q, image_ids=[big, small], tiles=TILES)
        again = rank_pool(store, detector, q, image_ids=[big, small], tiles=TILES)  # cached
    tile = native_tile(detector.model, H, W)
    n_windows = len(tile_windows(H, W, tile, TILES.overlap, stride_alignment(detector.model)))
    assert [i.score for i in first] == pytest.approx([0.5] * (n_windows + 1))
    assert again == first
    assert {i.image for i in first} == {big, small}


def test_a_window_cache_entry_without_missed_probabilities_is_scored_again() -> None:
    """Entries written before the probabilities were kept read as a cache miss, not as a
    crash or as counts."""
    import io

    from napari_al.core.scoring.strategy import ImageRaw
    from napari_al.core.workflow.tiled_ranking import _pack, _unpack

    raw = ImageRaw(np.zeros(0, np.int64), np.zeros(0), {}, {"missed": 1.0})
    boxes = np.zeros((1, 4))
    new = _unpack(_pack(raw, np.ones(2), boxes, boxes, [0.4]))
    assert new is not None and new[4].tolist() == [0.4]
    buf = io.BytesIO()
    np.savez(buf, raw=np.frombuffer(raw.to_bytes(), np.uint8), embedding=np.ones(2),
             boxes=boxes, missed=boxes)  # fmt: skip
    assert _unpack(buf.getvalue()) is None


def test_no_region_query_lies_in_a_region_already_marked_complete(
    project: Path, detector: Detector
) -> None:
    """A newcomer marked [0, 0, 320, 240] of a small image complete and got a block inside it
    as the first region query; the same for a large image's window."""
    from napari_al.core.annotator import Annotator
    from napari_al.core.workflow import mark_region_complete

    big, small = _ids(project)
    q = QuerySettings(unit="region", budget=50, strategy="entropy")
    with ProjectStore.open(project) as store:
        before = rank_pool(store, detector, q, tiles=TILES, save=False)
        small_block = next(i.box for i in before if i.image == small)
        assert BEST_WINDOW in [i.box for i in before if i.image == big]
        annotator = Annotator(store)
        mark_region_complete(annotator, big, (400, 300, 1100, 840))  # holds BEST_WINDOW
        mark_region_complete(annotator, small, small_block)
        after = rank_pool(store, detector, q, tiles=TILES, save=False)
    assert BEST_WINDOW not in [i.box for i in after if i.image == big]
    assert small_block not in [i.box for i in after if i.image == small]
    dropped = {(i.image, i.box) for i in before} - {(i.image, i.box) for i in after}
    assert dropped == {(big, BEST_WINDOW), (small, small_block)}


def test_no_box_query_lies_in_a_region_already_marked_complete(
    project: Path, detector: Detector
) -> None:
    """Box queries, like region queries: a prediction whose centre lies in a region marked
    complete is not asked about (every object there is labelled already)."""
    from napari_al.core.annotator import Annotator
    from napari_al.core.workflow import mark_region_complete

    big, _ = _ids(project)
    q = QuerySettings(unit="box", budget=20)
    with ProjectStore.open(project) as store:
        before = rank_pool(store, detector, q, image_ids=[big], tiles=TILES, save=False)
        assert sorted(tuple(round(v) for v in i.box) for i in before) == sorted([*OBJECTS, SHARED])
        mark_region_complete(Annotator(store), big, (600, 450, 880, 700))  # holds OBJECTS
        after = rank_pool(store, detector, q, image_ids=[big], tiles=TILES, save=False)
    assert [tuple(round(v) for v in i.box) for i in after] == [SHARED]
