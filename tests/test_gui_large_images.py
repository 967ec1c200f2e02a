"""A 25,000 x 25,000 px image from import to the viewer (issue 14), in a real viewer under Xvfb.

The image is generated on the fly as a sparse RGB tiled TIFF (512 px tiles, Deflate: under a
megabyte on disk), without and with a stored pyramid (SubIFDs). It is imported as
``napari-al init`` does, predicted tile by tile through the workflow (``napari-al predict``;
the network's forward pass is the "perfect" detector of ``large_image_helpers``, which finds
exactly the bright rectangles a window shows: a real network would take about 17 s per
2048 x 4096 px window on two CPU cores, some 25 minutes for this image), and opened through
the widget. The image layer must be multiscale, its full level 25,000 x 25,000 px, the
predicted boxes on the boxes layer where the rectangles are, on screen too, and the process's
peak memory must grow far less than reading the image whole would take (1.9 GB). No TIFF page
is ever decoded whole (``TiffPage.asarray`` raises).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from gui_helpers import open_widget
from large_image_helpers import fake_infer_raw, sparse_tiff

from napari_al.core.boxes import xyxy_to_napari
from napari_al.core.engine import Detector

pytestmark = pytest.mark.gui

SIDE = 25_000
#: Bright rectangles (x, y, width, height): one cut by the prediction windows' rows, one near
#: the top right corner (a row/column swap or a mirrored level misplaces it), one wide and one
#: tall, all apart from each other by more than a zoomed-out canvas shows.
RECTS = [(3000, 2030, 40, 40), (23_500, 1_200, 60, 30), (1_500, 22_800, 30, 56)]
#: Peak memory growth allowed (bytes): the image read whole is 25,000^2 x 3 = 1.9 GB.
MAX_GROWTH = 600e6
#: ... while importing and predicting it (the detector's windows are 2048 x 4096 px here, fed in
#: batches of four as float tensors: 400 MB; the whole image as a float tensor is 7.5 GB).
MAX_PREDICT_GROWTH = 1.5e9
WINDOW = (1400, 900)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset the process's peak RSS (Linux: ``clear_refs`` 5); returns the RSS now (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def _peak() -> int:
    """The process's peak RSS since the last :func:`_reset_peak` (bytes)."""
    return _status_kb("VmHWM") * 1024


def _bright_bounds(png: np.ndarray, channel: int, above: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) screen pixels (x2, y2 exclusive) of the pixels of a screenshot whose
    ``channel`` is over ``above``."""
    mask = png[..., channel].astype(int) > above
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert rows.size and cols.size, "nothing bright on the canvas"
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _screen_box(viewer, xyxy) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """Where a box (image pixels, pixel edges on integers) lies on the canvas, screen px."""
    cam = viewer.scene.camera
    h, w = (int(v) for v in viewer.canvas.size)
    cy, cx = (float(v) for v in tuple(cam.center)[-2:])
    x1, y1, x2, y2 = xyxy  # napari puts pixel centres on integers: edges at -0.5
    return tuple(  # type: ignore[return-value]
        (v - 0.5 - c) * cam.zoom + half
        for v, c, half in ((x1, cx, w / 2), (y1, cy, h / 2), (x2, cx, w / 2), (y2, cy, h / 2))
    )


@pytest.mark.parametrize(
    "reduced",
    # the pyramid changes only what is shown, and the prediction takes most of the time (about
    # a minute on two busy cores): with a pyramid it runs with -m slow, and the lighter test
    # below shows a pyramid by default
    [(), pytest.param((2, 4), marks=pytest.mark.slow)],
    ids=["no-pyramid", "pyramid"],
)
def test_a_25000_px_image_is_imported_predicted_and_shown_multiscale(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, capsys, monkeypatch, qtbot, reduced
) -> None:
    from napari_al.cli import main

    folder = tmp_path / "slide"
    folder.mkdir()
    path = sparse_tiff(folder / "slide.tif", SIDE, RECTS, rgb=True, reduced=reduced)
    assert path.stat().st_size < 4_000_000  # 0.7 MB, 2.6 MB with the pyramid

    def whole_read(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a TIFF page was decoded whole")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", whole_read)
    monkeypatch.setattr(Detector, "infer_raw", fake_infer_raw)
    before = _reset_peak()
    t0 = time.perf_counter()
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    code = main(["predict", str(folder), "--min-size", "2048", "--max-size", "4096"])
    assert code == 0, capsys.readouterr().err
    t1 = time.perf_counter()
    predict_growth = _peak() - before
    before = _reset_peak()

    viewer, w = open_widget(make_napari_viewer, folder, show=True)
    viewer.window._qt_window.resize(*WINDOW)
    qtbot.wait(300)
    view = w.controller.view
    layer = view.image_layer
    assert layer is not None and layer.multiscale and layer.rgb
    assert view.multiscale
    shapes = [tuple(level.shape) for level in layer.data]
    assert shapes == [(-(-SIDE // s), -(-SIDE // s), 3) for s in (1, 2, 4, 8, 16)]
    assert layer.data_level > 0  # the whole image on the canvas: a coarse level is drawn
    t2 = time.perf_counter()

    # the predicted boxes are the rectangles, on the boxes layer, in image pixels
    want = sorted((x, y, x + rw, y + rh) for x, y, rw, rh in RECTS)
    store = w.store
    (row,) = store.images()
    assert (row.width, row.height) == (SIDE, SIDE)
    stored = sorted(b.xyxy for b in store.boxes(image_id=row.id, statuses=("predicted",)))
    assert stored == want
    boxes = view.boxes_layer
    assert sorted(view.box_ids()) == sorted(b.id for b in store.boxes(image_id=row.id))
    shown = sorted(tuple(v) for v in (view.shape_xyxy(i) for i in range(len(boxes.data))))
    assert shown == want
    np.testing.assert_array_equal(
        sorted(np.asarray(boxes.data), key=lambda d: tuple(d[0])),
        sorted(xyxy_to_napari(np.asarray(want, float)), key=lambda d: tuple(d[0])),
    )
    # one coordinate system: image and boxes share scale 1 and no offset
    for lay in (layer, boxes):
        np.testing.assert_array_equal(lay.scale, (1, 1))
        np.testing.assert_array_equal(lay.translate, (0, 0))
    # every level of the image is bright under each box (what napari draws from)
    for x1, y1, x2, y2 in want:
        for k, level in enumerate(layer.data):
            s = 2**k
            window = np.asarray(level[-(-y1 // s) : -(-y2 // s), -(-x1 // s) : -(-x2 // s)])
            assert window.size and (window == (255, 200, 40)).all(), (k, (x1, y1))

    # on screen, at levels 1 and 3: the image's rectangle, and the box's outline, where the
    # box says (the top right one: a swapped or mirrored level would put it elsewhere)
    x, y, rw, rh = RECTS[1]
    x1, y1, x2, y2 = x, y, x + rw, y + rh
    view.select_boxes([])  # no selection handles
    boxes.text.visible = False  # no captions
    view.center_on((x1, y1, x2, y2))
    for zoom, level in ((0.5, 1), (0.125, 3)):
        viewer.scene.camera.zoom = zoom
        qtbot.wait(200)
        assert layer.data_level == level
        expected = _screen_box(viewer, (x1, y1, x2, y2))
        boxes.visible = False
        image_on_screen = _bright_bounds(viewer.screenshot(canvas_only=True, flash=False), 0, 128)
        boxes.visible = True
        # within a screen pixel or so (a sampled level's pixel is its block's first one: under
        # half a screen pixel off)
        np.testing.assert_allclose(image_on_screen, expected, atol=1.5)
        if zoom >= 0.5:  # the outline itself (its 2 px edge, centred on the box's border)
            layer.visible = False
            outline = _bright_bounds(viewer.screenshot(canvas_only=True, flash=False), 0, 128)
            layer.visible = True
            np.testing.assert_allclose(outline, expected, atol=1.5 + zoom)

    view.fit()
    qtbot.wait(200)
    growth = _peak() - before
    print(  # the figures of the report (pytest -s)
        f"\n{'+'.join(map(str, reduced)) or 'no pyramid'}: import + predict {t1 - t0:.1f} s, "
        f"peak RSS growth {predict_growth / 1e6:.0f} MB; open {t2 - t1:.1f} s, peak RSS growth "
        f"while shown {growth / 1e6:.0f} MB"
    )
    assert growth < MAX_GROWTH, f"showing the image: peak RSS grew by {growth / 1e6:.0f} MB"
    # prediction: four 2048 x 4096 windows per batch as float tensors (400 MB) at most
    assert predict_growth < MAX_PREDICT_GROWTH, f"predicting: {predict_growth / 1e6:.0f} MB"
    w.close_project()


def test_a_pyramid_is_shown_from_its_stored_levels_and_a_box_drawn_on_it_lands_in_place(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, monkeypatch, qtbot, notes
) -> None:
    """The lighter default variant: a pyramidal TIFF (SubIFDs at steps 2 and 4) beside a small
    PNG; no prediction. Switching between them swaps a plain and a multiscale layer (the small
    image's pixels as before, the large file closed when it leaves the screen), and a box drawn
    on the large one while a sampled level is on screen is stored where it was drawn."""
    from PIL import Image

    from napari_al.cli import main
    from napari_al.core.images import read_image

    folder = tmp_path / "slide"
    folder.mkdir()
    sparse_tiff(folder / "b-slide.tif", SIDE, RECTS, rgb=True, reduced=(2, 4))
    sparse_tiff(folder / "c-slide.tif", 6_000, [(100, 5_000, 40, 20)], rgb=True)
    small = (np.random.default_rng(0).random((100, 160, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).save(folder / "a-small.png")

    def whole_read(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a TIFF page was decoded whole")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", whole_read)
    before = _reset_peak()
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    viewer, w = open_widget(make_napari_viewer, folder, show=True)
    viewer.window._qt_window.resize(*WINDOW)
    c, view, store = w.controller, w.controller.view, w.store
    ids = {Path(r.path).name: r.id for r in store.images()}

    c.show_image(ids["a-small.png"])
    assert not view.image_layer.multiscale and not view.multiscale
    np.testing.assert_array_equal(view.image_layer.data, read_image(folder / "a-small.png"))
    c.show_image(ids["b-slide.tif"])
    qtbot.wait(300)
    layer, lazy = view.image_layer, view._lazy
    assert layer.multiscale and lazy is not None
    assert lazy.levels == [(SIDE, SIDE), (12_500, 12_500), (6_250, 6_250)]  # stored
    assert [lv.shape[0] for lv in layer.data] == [25_000, 12_500, 6_250, 3_125, 1_563]

    # zoomed out on a sampled level, the person draws a box around a rectangle
    x, y, rw, rh = RECTS[2]
    xyxy = (x, y, x + rw, y + rh)
    view.center_on(xyxy)
    viewer.scene.camera.zoom = 0.125
    qtbot.wait(200)
    assert layer.data_level == 3
    boxes = view.boxes_layer
    boxes.visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    np.testing.assert_allclose(_bright_bounds(shot, 0, 128), _screen_box(viewer, xyxy), atol=1.5)
    boxes.visible = True
    boxes.add(xyxy_to_napari([xyxy]), shape_type="rectangle")
    image_id = ids["b-slide.tif"]
    qtbot.waitUntil(lambda: len(store.boxes(image_id=image_id)) == 1, timeout=5000)
    (drawn,) = store.boxes(image_id=image_id)
    assert (drawn.xyxy, drawn.status) == (xyxy, "drawn")
    for k, level in enumerate(layer.data):  # under it, every level is the rectangle
        s = 2**k
        window = np.asarray(level[-(-y // s) : -(-(y + rh) // s), -(-x // s) : -(-(x + rw) // s)])
        assert window.size and (window == (255, 200, 40)).all(), k

    # click mode reads an image whole: on this one a click says so, never gathering the levels
    c.set_click_mode(True)
    c.click_at((y + rh / 2, x + rw / 2))
    c.set_click_mode(False)
    assert len(store.boxes(image_id=image_id)) == 1
    assert any("25000x25000 px" in m and "click mode" in m for _, m in notes), notes

    c.show_image(ids["c-slide.tif"])  # another large image: the same layer, its levels
    assert view.image_layer is layer and lazy._tf.filehandle.closed
    assert [lv.shape for lv in layer.data] == [
        (6_000, 6_000, 3),
        (3_000, 3_000, 3),
        (1_500, 1_500, 3),
    ]
    qtbot.wait(200)
    shot = viewer.screenshot(canvas_only=True, flash=False)  # fitted: the coarsest level
    assert layer.data_level == 2
    np.testing.assert_allclose(
        _bright_bounds(shot, 0, 128), _screen_box(viewer, (100, 5_000, 140, 5_020)), atol=1.5
    )
    lazy = view._lazy
    c.show_image(ids["a-small.png"])  # back to the small image: a plain layer again
    assert not view.image_layer.multiscale and view._lazy is None
    assert lazy is not None and lazy._tf.filehandle.closed
    np.testing.assert_array_equal(view.image_layer.data, read_image(folder / "a-small.png"))
    growth = _peak() - before
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 1e6:.0f} MB"
    w.close_project()
