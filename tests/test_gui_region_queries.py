"""Region queries of a large image in the viewer (issue 14): moving to a region query (a window
of the image, as tiled ranking makes it) jumps the camera to that region and zooms to it, and
the focus stays inside it. Real viewer under Xvfb; the image is a generated sparse tiled TIFF
shown as a multiscale layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import open_widget, press
from large_image_helpers import sparse_tiff

from napari_al.core.selection import QueryItem
from napari_al.core.store import ProjectStore
from napari_al.core.store.rows import file_sha256

pytestmark = pytest.mark.gui

SIDE = 6000
#: a 480 x 640 window far from the image's top left corner, holding one bright object
REGION = (4000.0, 3000.0, 4640.0, 3480.0)
INSIDE = (4200.0, 3100.0, 4240.0, 3140.0)
#: a window holding no box (ranked for its possibly missed objects)
EMPTY = (2000.0, 4000.0, 2640.0, 4480.0)
#: a box query no stored box matches, and one matching INSIDE (IoU 0.82)
LONE = (5000.0, 5000.0, 5040.0, 5040.0)
NEAR_INSIDE = (4202.0, 3102.0, 4242.0, 3142.0)
#: an unreviewed predicted box far from both (where a fallback focus would go)
ELSEWHERE = (100.0, 100.0, 140.0, 140.0)


def test_moving_to_a_region_query_of_a_large_image_puts_the_region_on_screen(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, qtbot
) -> None:
    folder = tmp_path / "slide"
    folder.mkdir()
    rects = [(int(b[0]), int(b[1]), 40, 40) for b in (INSIDE, ELSEWHERE)]
    path = sparse_tiff(folder / "slide.tif", SIDE, rects)
    with ProjectStore.create(folder) as s:
        s.add_class("cell")
        image_id = s.add_image(path, file_sha256(path), SIDE, SIDE)
        cell = s.classes()[0].id
        s.replace_predictions(image_id, [(ELSEWHERE, cell, 0.9), (INSIDE, cell, 0.8)], None)
    viewer, w = open_widget(make_napari_viewer, folder, show=True)
    viewer.window._qt_window.resize(1400, 900)
    qtbot.wait(300)
    view, c = w.controller.view, w.controller
    assert view.multiscale
    view.fit()
    qtbot.wait(200)
    assert view.in_view(INSIDE) and view.in_view(ELSEWHERE)  # fitted: the whole image
    c.set_queries(
        [
            QueryItem(image=image_id, score=1.0, unit="region", box=REGION),
            QueryItem(image=image_id, score=0.5, unit="region", box=EMPTY),
            QueryItem(image=image_id, score=0.4, unit="box", box=LONE),
            QueryItem(image=image_id, score=0.3, unit="box", box=NEAR_INSIDE),
        ]
    )
    press(viewer, "N")
    qtbot.wait(200)
    assert c.query_index == 0
    assert view.in_view(REGION)  # the region is on screen ...
    assert not view.in_view(ELSEWHERE)  # ... zoomed to it, not to the whole image
    x1, y1, x2, y2 = REGION
    vx1, vy1, vx2, vy2 = (float(v) for v in _visible(viewer))
    assert (x2 - x1) / (vx2 - vx1) > 0.3 or (y2 - y1) / (vy2 - vy1) > 0.3  # fills the canvas
    focused = w.store.box(c.focus_box)
    assert focused.xyxy == INSIDE  # the focus is the unreviewed box inside the region
    press(viewer, "N")  # a region without boxes: the camera stays on it, nothing focused
    qtbot.wait(200)
    assert c.query_index == 1
    assert view.in_view(EMPTY) and not view.in_view(ELSEWHERE) and not view.in_view(INSIDE)
    assert c.focus_box is None
    # a box query no stored box matches (ranking windows are not prediction's): the query is
    # brought on screen, nothing else focused (it jumped to ELSEWHERE, the image's first box)
    view.fit()
    view.center_on(EMPTY, zoom=True)
    qtbot.wait(100)
    press(viewer, "N")
    qtbot.wait(200)
    assert c.query_index == 2 and c.focus_box is None
    assert view.in_view(LONE) and not view.in_view(ELSEWHERE)
    press(viewer, "N")  # one that matches a stored box (IoU >= 0.5) focuses that box
    qtbot.wait(200)
    assert c.query_index == 3 and w.store.box(c.focus_box).xyxy == INSIDE
    assert view.in_view(INSIDE)
    w.close_project()


def _visible(viewer):  # type: ignore[no-untyped-def]
    from napari_al.gui.viewer_state import visible_rect

    return visible_rect(viewer)
