"""Tiled training (issue 14): a large image trains in crops at the model's native scale from
its reviewed regions, the rest of it neither positive nor background; "mark region complete" in
the store (one action, undoable), the workflow and the CLI; small images train as before.
Every image is generated here."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import sql_commits

from napari_al.core.annotator import Annotator
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.engine import Detector
from napari_al.core.engine.tiling import native_tile, tile_windows
from napari_al.core.engine.training import make_target
from napari_al.core.lazy_images import reads_lazily
from napari_al.core.store import ProjectStore, StoreError
from napari_al.core.store import schema as store_schema
from napari_al.core.workflow import (
    TileSettings,
    image_reviewed_area,
    labels_hash,
    mark_region_complete,
    training_examples,
)
from napari_al.core.workflow.crops import CropLoader, crop_windows, is_crop, uncovered

W, H = 5000, 4200  # over LAZY_PIXELS: a tiled TIFF of this size is read window by window
REGION = (1000.0, 1000.0, 2000.0, 1600.0)
INSIDE = [(1100, 1100, 1130, 1130), (1500, 1300, 1540, 1350), (1900, 1500, 1960, 1560)]
OUTSIDE = [(3000, 3000, 3030, 3030), (200, 200, 240, 260)]
STRADDLE = (1985, 1400, 2045, 1440)  # centre x 2015: outside the region, reaching into it


def grey_tiff(path: Path, width: int, height: int, boxes, tile: int = 256) -> Path:
    """A ``width x height`` grey tiled TIFF (zlib), black but white ``boxes`` (xyxy), written
    tile by tile; its pixels vary by position so a crop's pixels name their window."""

    def tiles():
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                t = ((np.arange(tile)[:, None] + y + np.arange(tile)[None, :] + x) % 7).astype(
                    np.uint8
                )
                for x1, y1, x2, y2 in boxes:
                    t[max(0, y1 - y) : max(0, y2 - y), max(0, x1 - x) : max(0, x2 - x)] = 255
                yield t

    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="zlib",
    )
    return path


def large_project(tmp_path: Path, boxes, complete: bool = False) -> Path:
    """A project holding one large tiled TIFF whose ``boxes`` are human labels (class cell)."""
    image = grey_tiff(tmp_path / "big.tif", W, H, boxes)
    assert reads_lazily(image)
    rec = ImageRecord(image, W, H, [BoxRecord(*b, "cell") for b in boxes], annotated=complete)
    with ProjectStore.create(tmp_path / "p") as store:
        store.import_dataset(Dataset(["cell"], [rec]))
    return tmp_path / "p"


def mask(rects, shape) -> np.ndarray:
    """Pixels (rows, columns) whose centre lies in one of ``rects`` (xyxy), edges in."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    out = np.zeros(shape, bool)
    for x1, y1, x2, y2 in rects:
        out |= (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
    return out


def shifted(example, rects) -> list[tuple[float, ...]]:
    """``rects`` (image pixels) in the crop's pixels."""
    x0, y0 = example.loader.window[:2]
    return [(a - x0, b - y0, c - x0, d - y0) for a, b, c, d in rects]


# ---- geometry ------------------------------------------------------------------------------


def test_uncovered_is_exactly_the_rest_of_the_crop_in_disjoint_rectangles() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        covers = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(-10, 60, size=2)
            w, h = rng.integers(1, 40, size=2)
            covers.append((x, y, x + w, y + h))
        rect = (0, 0, 64, 48)
        parts = uncovered(rect, covers)
        shape = (48, 64)
        rest = ~mask(covers, shape) if covers else np.ones(shape, bool)
        grid = np.zeros(shape, int)
        for p in parts:
            assert p[0] < p[2] and p[1] < p[3]
            x1, y1, x2, y2 = (int(v) for v in p)
            grid[y1:y2, x1:x2] += 1
        assert grid.max() <= 1  # disjoint
        assert (grid.astype(bool) == rest).all()  # exactly the uncovered pixels
    assert uncovered((0, 0, 10, 10), [(-5, -5, 20, 20)]) == []
    assert uncovered((0, 0, 10, 10), []) == [(0.0, 0.0, 10.0, 10.0)]


def test_crops_are_the_models_input_size_and_cover_each_region() -> None:
    tile, overlap = (480, 640), 64
    regions = [(100.0, 100.0, 300.0, 200.0), (4900.0, 10.0, 5000.0, 50.0), REGION]
    regions.append((0.0, 0.0, 3000.0, 2000.0))  # larger than a crop: tiled like prediction
    for region in regions:
        windows = crop_windows([region], W, H, tile, overlap)
        covered = np.zeros((H // 10, W // 10), bool)
        for x0, y0, x1, y1 in windows:
            assert (y1 - y0, x1 - x0) == tile
            assert x0 >= 0 and x1 <= W and y0 >= 0 and y1 <= H  # inside the image
            covered[y0 // 10 : y1 // 10, x0 // 10 : x1 // 10] = True
        x1, y1, x2, y2 = (int(v) // 10 for v in region)
        assert covered[y1:y2, x1:x2].all()
    # a small region: one crop centred on it
    assert crop_windows([(100.0, 100.0, 300.0, 200.0)], W, H, tile, overlap) == [(0, 0, 640, 480)]
    assert crop_windows([(1000.0, 1000.0, 1100.0, 1100.0)], W, H, tile, overlap) == [
        (730, 810, 1370, 1290)
    ]
    # along an axis shorter than a crop the crop starts at 0 and runs past it (padded)
    assert crop_windows([(10.0, 10.0, 50.0, 50.0)], W, 300, tile, overlap) == [(0, 0, 640, 480)]


# ---- region-level completeness in training targets ---------------------------------------


def region_examples(tmp_path: Path, region=REGION, **kw):
    project = large_project(tmp_path, [*INSIDE, *OUTSIDE, STRADDLE])
    with ProjectStore.open(project) as store:
        (row,) = store.images()
        assert row.review_state == "unseen"
        assert mark_region_complete(Annotator(store), row.id, region) is not None
        assert store.image(row.id).review_state == "partial"
        return training_examples(store, store.training_snapshot(), **kw)


def test_crop_targets_hold_only_the_boxes_of_the_reviewed_region(tmp_path: Path) -> None:
    examples = region_examples(tmp_path)
    assert examples and all(is_crop(e) and e.complete for e in examples)
    found = set()
    for ex in examples:
        x0, y0, x1, y1 = ex.loader.window
        assert (y1 - y0, x1 - x0) == (480, 640)  # the default input: objects at scale 1
        for b in ex.boxes:
            found.add((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0))
        # every target has its centre in the reviewed region
        cx = (ex.boxes[:, 0] + ex.boxes[:, 2]) / 2 + x0
        cy = (ex.boxes[:, 1] + ex.boxes[:, 3]) / 2 + y0
        assert ((cx >= REGION[0]) & (cx <= REGION[2]) & (cy >= REGION[1]) & (cy <= REGION[3])).all()
    assert found == {tuple(map(float, b)) for b in INSIDE}  # the outside boxes never
    cut = 0
    for ex in examples:  # a box a crop cuts to less than half is ignored there, not a target
        x0, y0, x1, y1 = ex.loader.window
        for b in INSIDE:
            part = (max(b[0], x0), max(b[1], y0), min(b[2], x1), min(b[3], y1))
            if part[0] >= part[2] or part[1] >= part[3]:
                continue
            visible = (part[2] - part[0]) * (part[3] - part[1]) / ((b[2] - b[0]) * (b[3] - b[1]))
            (local,) = shifted(ex, [part])
            if visible < 0.5:
                cut += 1
                assert list(local) in ex.ignore_regions.tolist()
            else:
                assert list(shifted(ex, [b])[0]) in ex.boxes.tolist()
    assert cut


def test_the_crops_area_outside_the_reviewed_region_is_ignored(tmp_path: Path) -> None:
    examples = region_examples(tmp_path)
    for ex in examples:
        x0, y0, x1, y1 = ex.loader.window
        shape = (y1 - y0, x1 - x0)
        reviewed = mask(shifted(ex, [REGION]), shape)
        ignored = mask(ex.ignore_regions.tolist(), shape)
        # a crop never spans unreviewed area as background
        assert ignored[~reviewed].all()
        # inside the region only objects are ignored: the straddling box, cut boxes
        objects = mask(shifted(ex, [*INSIDE, STRADDLE]), shape)
        assert not (ignored & reviewed & ~objects).any()
    with_straddle = [e for e in examples if e.loader.window[2] > STRADDLE[0]]
    assert with_straddle
    for ex in with_straddle:  # the part of the straddling object inside the region: ignored
        part = shifted(ex, [(STRADDLE[0], STRADDLE[1], REGION[2], STRADDLE[3])])
        shape = (ex.loader.window[3] - ex.loader.window[1], 640)
        assert mask(ex.ignore_regions.tolist(), shape)[mask(part, shape)].all()


def test_crops_are_read_window_by_window_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = region_examples(tmp_path)
    full = tifffile.imread(tmp_path / "big.tif")

    def whole(*a, **k):
        raise AssertionError("the large image was read whole")

    monkeypatch.setattr("napari_al.core.lazy_images.read_image", whole)
    for ex in examples:
        x0, y0, x1, y1 = ex.loader.window
        crop = ex.load()
        assert crop.shape == (y1 - y0, x1 - x0, 3) and crop.dtype == np.uint8
        assert (crop[..., 0] == full[y0:y1, x0:x1]).all()


def test_no_background_loss_where_an_anchor_is_centred_outside_the_reviewed_area(
    tmp_path: Path,
) -> None:
    """Through the engine's own partial-label RPN and box head: anchors and proposals centred
    outside the reviewed region get weight 0 (not sampled); inside, away from objects, they
    are background at full weight."""
    tiny = Detector(["cell"], min_size=128, max_size=160, seed=0, device="cpu")
    small = (1900.0, 1480.0, 1990.0, 1580.0)  # smaller than a crop, around INSIDE[2]
    (ex,) = region_examples(tmp_path, small, tile_shape=lambda h, w: native_tile(tiny.model, h, w))
    x0, y0, x1, y1 = ex.loader.window
    assert (y1 - y0, x1 - x0) == (128, 160)
    assert ex.boxes.tolist() == [[1900 - x0, 1500 - y0, 1960 - x0, 1560 - y0]]
    _, target = make_target(ex, ex.load(), two_stage=True)
    ys, xs = np.mgrid[2 : y1 - y0 : 4, 2 : x1 - x0 : 4]
    centres = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    anchors = torch.from_numpy(np.concatenate([centres - 4, centres + 4], 1))
    labels, _, weights = tiny.model.rpn.assign_weighted([anchors], [target])
    cx, cy = torch.from_numpy(centres[:, 0] + x0), torch.from_numpy(centres[:, 1] + y0)
    out = (cx < small[0]) | (cx > small[2]) | (cy < small[1]) | (cy > small[3])
    assert out.any() and (~out).any()
    assert (weights[0][out] == 0).all() and (labels[0][out] == -1).all()
    from torchvision.ops import box_iou

    far = (cx > small[0] + 4) & (cx < small[2] - 4) & (cy > small[1] + 4) & (cy < small[3] - 4)
    far &= box_iou(anchors, torch.from_numpy(ex.boxes)).max(1).values == 0
    assert far.any() and (labels[0][far] == 0).all() and (weights[0][far] == 1).all()
    heads = tiny.model.roi_heads
    props, *_ = heads.select_training_samples_weighted([anchors.clone()], [target])
    pcx = (props[0][:, 0] + props[0][:, 2]) / 2 + x0
    pcy = (props[0][:, 1] + props[0][:, 3]) / 2 + y0
    inside = (pcx >= small[0]) & (pcx <= small[2]) & (pcy >= small[1]) & (pcy <= small[3])
    assert inside.all()  # no proposal centred outside is sampled, as object or background


def test_a_complete_large_image_trains_everywhere_in_the_prediction_windows(
    tmp_path: Path,
) -> None:
    project = large_project(tmp_path, [*INSIDE, *OUTSIDE], complete=True)
    with ProjectStore.open(project) as store:
        (row,) = store.images()
        assert row.review_state == "complete"
        examples = training_examples(store, store.training_snapshot())
        assert image_reviewed_area(store, row.id) == [(0.0, 0.0, W, H)]
    windows = [e.loader.window for e in examples]
    expected = [(w.x0, w.y0, w.x1, w.y1) for w in tile_windows(H, W, (480, 640), 64)]
    assert windows == expected
    for e in examples:  # nothing unknown: only the parts of objects a crop cuts are ignored
        boxes = np.asarray(shifted(e, [*INSIDE, *OUTSIDE]))
        for r in e.ignore_regions:
            assert ((boxes[:, :2] <= r[:2]) & (r[2:] <= boxes[:, 2:])).all(1).any()
    found = {
        tuple(float(v) for v in (b[0] + e.loader.window[0], b[1] + e.loader.window[1]))
        for e in examples
        for b in e.boxes
    }
    assert found == {(float(b[0]), float(b[1])) for b in [*INSIDE, *OUTSIDE]}


def test_a_large_image_without_a_reviewed_region_teaches_nothing_yet(tmp_path: Path) -> None:
    project = large_project(tmp_path, INSIDE)
    with ProjectStore.open(project) as store:
        (row,) = store.images()
        store.set_review_state(row.id, "partial")
        assert training_examples(store, store.training_snapshot()) == []
        # above tile_above only: raise it and the image trains whole, as before
        (whole,) = training_examples(
            store, store.training_snapshot(), tiles=TileSettings(tile_above=W)
        )
        assert not is_crop(whole) and len(whole.boxes) == len(INSIDE) and not whole.complete


def test_small_images_train_bit_for_bit_as_before(labelled_project: Path) -> None:
    """Reviewed regions on images at or under tile_above change nothing: same examples, read
    whole by the same loader."""
    from napari_al.core.workflow import load_rgb

    def fields(examples):
        return [
            (
                str(e.path),
                e.boxes.tobytes(),
                e.labels.tobytes(),
                None if e.noisy is None else e.noisy.tobytes(),
                e.background_boxes.tobytes(),
                e.ignore_regions.tobytes(),
                e.complete,
                e.loader,
            )
            for e in examples
        ]

    with ProjectStore.open(labelled_project) as store:
        pool = [r for r in store.images() if r.review_state == "unseen"]
        for row in pool[::2]:  # partly reviewed images train too (noisy labels)
            store.set_review_state(row.id, "partial")
        before = training_examples(store, store.training_snapshot())
        assert before and not any(is_crop(e) for e in before)
        assert all(e.loader is load_rgb for e in before)
        assert {e.complete for e in before} == {True, False}
        annotator = Annotator(store)
        for row in store.images():
            if row.review_state == "partial":
                mark_region_complete(annotator, row.id, (0, 0, row.width / 2, row.height / 2))
        assert len(store.reviewed_regions()) == len(pool[::2])
        after = training_examples(store, store.training_snapshot())
    assert fields(after) == fields(before)


# ---- the store: one action, undoable, migrated -------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    with ProjectStore.create(tmp_path / "s") as s:
        s.add_class("cell")
        yield s


def test_mark_region_complete_is_one_action_one_commit_and_undoable(
    store: ProjectStore,
) -> None:
    img = store.add_image("a.png", "a" * 64, 6000, 5000)
    ann = Annotator(store)
    with sql_commits(store) as commits:
        command = ann.complete_region(img, (10, 20, 300.2, 400))
    assert len(commits) == 1
    (action,) = store.actions()
    region = command.region_after
    assert action.kind == "complete_region" and action.image_id == img
    assert action.payload["after"]["x2"] == 300.2 and action.payload["before"] is None
    assert action.payload["review"] == {"before": "unseen", "after": "partial"}
    assert store.reviewed_regions(img) == [region] and region.xyxy == (10, 20, 300.2, 400)
    # kept on disk; one snapshot carries it
    store.close()
    with ProjectStore.open(store.project_dir) as again:
        assert again.reviewed_regions(img) == [region]
        assert again.training_snapshot().images[0].reviewed_regions == (region,)
        ann = Annotator(again)
        ann._undo.append(command)
        with sql_commits(again) as commits:
            ann.undo()
        assert len(commits) == 1
        assert again.reviewed_regions(img) == [] and again.image(img).review_state == "unseen"
        ann.redo()
        assert again.reviewed_regions(img) == [region]  # same id, same creation time
        assert again.image(img).review_state == "partial"
        kinds = [(a.kind, a.ref_id) for a in again.actions()]
        assert kinds == [("complete_region", None), ("undo", action.id), ("redo", action.id)]
        # a second region of a partial image leaves the review state alone
        second = ann.complete_region(img, (500, 500, 900, 900))
        assert second.review_before is None and len(again.reviewed_regions(img)) == 2
        ann.undo()
        assert again.reviewed_regions(img) == [region]


def test_mark_region_complete_checks_its_input_and_a_complete_image(store: ProjectStore) -> None:
    img = store.add_image("a.png", "a" * 64, 600, 500)
    ann = Annotator(store)
    with pytest.raises(StoreError, match="lies outside the 600x500 image"):
        ann.complete_region(img, (0, 0, 700, 100))
    with pytest.raises(StoreError, match="is empty"):
        ann.complete_region(img, (50, 50, 50, 80))
    with pytest.raises(StoreError, match="image 99 does not exist"):
        ann.complete_region(99, (0, 0, 10, 10))
    with pytest.raises(StoreError, match="written by the store itself"):
        store.log_action("complete_region", image_id=img)
    assert store.actions() == [] and store.reviewed_regions() == [] and not ann.can_undo
    store.set_review_state(img, "complete")
    assert ann.complete_region(img, (0, 0, 10, 10)) is None
    assert store.reviewed_regions() == []


def test_a_region_covering_the_whole_image_completes_it(store: ProjectStore) -> None:
    """Marking the whole image (within the store's half-pixel tolerance) complete says what
    "mark image complete" says: the image turns complete in the same action (newcomer: it
    stayed partial); undo puts it back."""
    for review in ("unseen", "partial"):
        img = store.add_image(f"{review}.png", review[0] * 64, 600, 500)
        store.set_review_state(img, review)
        ann = Annotator(store)
        command = ann.complete_region(img, (-0.3, 0, 600.4, 500))
        assert (command.review_before, command.review_after) == (review, "complete")
        assert store.image(img).review_state == "complete"
        assert store.actions()[-1].payload["review"] == {"before": review, "after": "complete"}
        ann.undo()
        assert store.image(img).review_state == review and store.reviewed_regions(img) == []
    # one pixel short of the image's width: a region, the image stays partial
    img = store.add_image("c.png", "c" * 64, 600, 500)
    Annotator(store).complete_region(img, (0, 0, 599, 500))
    assert store.image(img).review_state == "partial"


def test_a_region_inside_one_marked_complete_is_not_stored_again(store: ProjectStore) -> None:
    img = store.add_image("a.png", "a" * 64, 6000, 5000)
    ann = Annotator(store)
    ann.complete_region(img, (10, 10, 300, 300))
    actions = len(store.actions())
    assert ann.complete_region(img, (10, 10, 300, 300)) is None  # the same one again
    assert ann.complete_region(img, (20, 30, 100, 300)) is None  # inside it
    assert len(store.reviewed_regions(img)) == 1 and len(store.actions()) == actions
    assert ann.complete_region(img, (0, 0, 300, 300)) is not None  # larger: new information
    assert len(store.reviewed_regions(img)) == 2


def test_reviewed_regions_change_the_labels_hash(store: ProjectStore) -> None:
    img = store.add_image("a.png", "a" * 64, 6000, 5000)
    before = labels_hash(store.training_snapshot())
    Annotator(store).complete_region(img, (0, 0, 10, 10))
    store.set_review_state(img, "unseen")  # only the region differs
    assert labels_hash(store.training_snapshot()) != before


def test_a_version_2_store_migrates_to_reviewed_regions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "old"
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:2])
    with ProjectStore.create(d) as s:
        assert s.schema_version() == 2
        img = s.add_image("a.png", "a" * 64, 6000, 5000)
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "reviewed_regions" not in tables
    monkeypatch.undo()
    with ProjectStore.open(d) as s:
        assert s.schema_version() == store_schema.SCHEMA_VERSION == 3
        assert s.reviewed_regions(img) == [] and s.info()["reviewed_regions"] == 0
        Annotator(s).complete_region(img, (0, 0, 10, 10))
        assert len(s.reviewed_regions(img)) == 1 and s.integrity_check() == "ok"


# ---- the command line --------------------------------------------------------------------


def test_cli_marks_a_region_complete_and_trains_in_crops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from napari_al.cli import main

    project = large_project(tmp_path, [*INSIDE, *OUTSIDE])
    argv = ["mark-region-complete", str(project), "../big.tif", "--xyxy", *map(str, REGION)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "marked [1000, 1000, 2000, 1600] of " in out
    assert "big.tif complete (1 complete region on this image)" in out
    with ProjectStore.open(project) as store:
        (row,) = store.images()
        assert image_reviewed_area(store, row.id) == [REGION]
    # by id, and by the file's path as the shell gives it
    mark = ["mark-region-complete", str(project)]
    assert main([*mark, str(row.id), "--xyxy", "0", "0", "9", "9"]) == 0
    assert main([*mark, str(tmp_path / "big.tif"), "--xyxy", "20", "20", "40", "40"]) == 0
    capsys.readouterr()
    # mistakes: one line each, nothing stored
    assert main([*mark, "nope.tif", "--xyxy", "0", "0", "9", "9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.tif: no such image in the project" in err
    assert f"listed by 'napari-al info {project} --images'" in err  # ids and stored paths
    assert main([*mark, "1", "--xyxy", "6000", "0", "9000", "9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lies entirely outside" in err and "(5000x4200 px)" in err
    with ProjectStore.open(project) as store:
        assert len(store.reviewed_regions()) == 3
    assert main(["info", str(project)]) == 0
    assert "regions marked complete: 3" in capsys.readouterr().out
    tiny = ["--min-size", "128", "--max-size", "160", "--device", "cpu", "--weights", "imagenet"]
    assert main(["train", str(project), "--steps", "2", *tiny]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "trained 2 steps on 0 images and " in out and "crops of 1 large image" in out
    with ProjectStore.open(project) as store:
        (version,) = store.model_versions()
        assert version.metrics["crops"] > 0 and version.metrics["crop_images"] == 1


def test_cli_says_a_region_of_a_small_image_changes_no_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from napari_al.cli import main

    folder = tmp_path / "p"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    assert main(["init", str(folder)]) == 0
    capsys.readouterr()
    assert main(["mark-region-complete", str(folder), "a.png", "--xyxy", "0", "0", "9", "9"]) == 0
    out, err = capsys.readouterr()
    assert "marked [0, 0, 9, 9] of a.png complete (1 complete region on this image)" in out
    assert "trains whole and by its review state" in err
    assert main(["mark-region-complete", str(folder), "a.png", "--xyxy", "1", "1", "9", "9"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do: [1, 1, 9, 9] (the rectangle within the image) lies in a region" in out
    assert main(["mark-region-complete", str(folder), "a.png", "--xyxy", "-5", "-5", "9", "9"]) == 0
    assert "nothing to do: [0, 0, 9, 9] (the rectangle" in capsys.readouterr().out
    assert main(["mark-region-complete", str(folder), "a.png", "--xyxy", "0", "0", "64", "48"]) == 0
    out = capsys.readouterr().out
    assert "marked [0, 0, 64, 48], the whole of a.png, complete: the image is complete" in out
    assert main(["mark-region-complete", str(folder), "a.png", "--xyxy", "0", "0", "9", "9"]) == 0
    assert "a.png is already complete" in capsys.readouterr().out


def test_crop_loader_reads_its_window_through_one_shared_reader(tmp_path: Path) -> None:
    examples = region_examples(tmp_path)
    readers = {id(e.loader.reader) for e in examples}
    assert len(readers) == 1 and all(isinstance(e.loader, CropLoader) for e in examples)
    windows = [e.loader.window for e in examples]
    assert len(set(windows)) == len(windows)
    assert list(itertools.chain.from_iterable(windows))  # non-empty


def test_an_infinite_region_is_refused_like_a_nan_one() -> None:
    """``--xyxy 0 0 inf 10`` was clipped and stored while ``nan`` was refused as not finite."""
    from napari_al.core.workflow.crops import clip_to_image

    for bad in ((0, 0, math.inf, 10), (0, 0, math.nan, 10), (-math.inf, 0, 5, 10)):
        out = clip_to_image(bad, 100, 50)  # given back unclipped, for the store to refuse
        assert out is not None and not all(math.isfinite(v) for v in out)
    assert clip_to_image((-5, 0, 500, 10), 100, 50) == (0.0, 0.0, 100.0, 10.0)


def test_marking_a_region_with_unreviewed_predictions_in_it_says_they_train_as_background(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a complete region of a large image the model's unreviewed predictions are
    background: marking one with predictions left in it said nothing (as a newcomer found,
    marking one holding many). A small image trains whole by its review state: no such note."""
    from PIL import Image

    from napari_al.cli import main

    project = large_project(tmp_path, [])
    Image.new("RGB", (64, 48)).save(project / "a.png")
    assert main(["import", str(project), str(project / "a.png"), "--format", "images"]) == 0
    with ProjectStore.open(project) as store:
        big, small = sorted(store.images(), key=lambda r: -r.width)
        cls = store.classes()[0].id
        preds = [((x1, y1, x2, y2), cls, 0.9) for x1, y1, x2, y2 in [*INSIDE, *OUTSIDE]]
        store.replace_predictions(big.id, preds, None)
        store.replace_predictions(small.id, [((2, 2, 8, 8), cls, 0.9)], None)
    capsys.readouterr()
    mark = ["mark-region-complete", str(project)]
    assert main([*mark, str(big.id), "--xyxy", *map(str, REGION)]) == 0
    err = capsys.readouterr().err
    assert "note: 3 predictions in [1000, 1000, 2000, 1600] not reviewed" in err
    assert "background" in err
    assert main([*mark, str(big.id), "--xyxy", "2500", "0", "2600", "100"]) == 0
    assert "not reviewed" not in capsys.readouterr().err  # none in that one
    assert main([*mark, str(big.id), "--xyxy", "100", "100", "300", "300"]) == 0
    err = capsys.readouterr().err  # one prediction, in the singular
    assert "1 prediction in [100, 100, 300, 300] not reviewed" in err
    assert "it trains as background" in err and "the right one in" in err
    assert main([*mark, str(small.id), "--xyxy", "0", "0", "20", "20"]) == 0
    err = capsys.readouterr().err
    assert "not reviewed" not in err and "trains whole and by its review state" in err
