"""A newcomer's first hour in the widget (issue 16, item 17), in a real viewer under Xvfb.

The first image fits the laid-out canvas; the box the keys act on is brought into view when
zoomed in; a retrain leaves a box selected; the progress bar ends at 100 %; the query list
reads as a ranking; a project of plain images says how to add a class; warnings name what the
person sees, not store ids. The last test photographs the demo (items 16 and 17 together) and
checks the picture. Background jobs run the real round on fake model steps
(``tests/fake_workflow.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_workflow import use_fake_workflow
from gui_helpers import open_widget, press

from napari_al.core.selection import QueryItem
from napari_al.core.store import ProjectStore

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000
#: The window size the tests lay the viewer out at (screen pixels).
WINDOW = (1400, 900)


@pytest.fixture
def widget(make_napari_viewer, labelled_project: Path, qtbot):  # type: ignore[no-untyped-def]
    _, w = open_widget(make_napari_viewer, labelled_project)
    yield w
    if w.runner.busy:
        w.runner.cancel()
        qtbot.waitUntil(lambda: not w.runner.busy, timeout=TIMEOUT_MS)
    w.close_project()


def wait_done(w, qtbot) -> object:  # type: ignore[no-untyped-def]
    results: list[object] = []
    w.runner.done.connect(results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    w.runner.done.disconnect(results.append)
    return results[0]


def canvas_hw(viewer) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The canvas size in screen pixels (napari 0.9's canvas model follows the Qt canvas)."""
    h, w = viewer.canvas.size
    return int(h), int(w)


def shown_rect(viewer) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """The part of the image on the canvas, (x1, y1, x2, y2) in image pixels."""
    cam = viewer.scene.camera
    h, w = canvas_hw(viewer)
    cy, cx = (float(v) for v in tuple(cam.center)[-2:])
    return (
        cx - w / 2 / cam.zoom,
        cy - h / 2 / cam.zoom,
        cx + w / 2 / cam.zoom,
        cy + h / 2 / cam.zoom,
    )


def on_screen(viewer, xyxy) -> bool:  # type: ignore[no-untyped-def]
    x1, y1, x2, y2 = shown_rect(viewer)
    return x1 <= xyxy[0] and xyxy[2] <= x2 and y1 <= xyxy[1] and xyxy[3] <= y2


def image_fills_canvas(viewer, shape: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """The whole image (``shape``: rows, cols) is on the canvas and fills it along its
    limiting side (napari's fit leaves a 5 % margin)."""
    h, w = canvas_hw(viewer)
    x1, y1, x2, y2 = shown_rect(viewer)
    rows, cols = shape
    assert x1 <= -0.5 and y1 <= -0.5 and x2 >= cols - 0.5 and y2 >= rows - 0.5, (
        "cropped",
        (x1, y1, x2, y2),
        (h, w),
    )
    zoom = float(viewer.scene.camera.zoom)
    assert max(rows * zoom / h, cols * zoom / w) > 0.9, ("too small", zoom, (h, w))


def canvas_png_fits(png: np.ndarray) -> None:
    """In a canvas screenshot (RGB(A) array), the image lies inside the canvas with a margin
    on every side and fills it along one axis: not cropped, not lost in the middle."""
    bright = png[..., :3].astype(int).sum(-1) > 60  # the canvas background is black
    rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    assert rows.size and cols.size, "the canvas is empty"
    h, w = bright.shape
    top, bottom, left, right = rows[0], h - 1 - rows[-1], cols[0], w - 1 - cols[-1]
    assert min(top, bottom, left, right) >= 2, ("the image touches the canvas edge", png.shape)
    assert max((rows[-1] - rows[0]) / h, (cols[-1] - cols[0]) / w) > 0.9


# -- the view ----------------------------------------------------------------------------------


def test_first_image_fits_the_laid_out_canvas(  # type: ignore[no-untyped-def]
    make_napari_viewer, labelled_project: Path, qtbot
) -> None:
    viewer, w = open_widget(make_napari_viewer, labelled_project, show=True)
    # the window gets its final size after the first image is shown (as on a real desktop)
    viewer.window._qt_window.resize(*WINDOW)
    qtbot.wait(300)
    row = w.store.image(w.controller.image_id)
    image_fills_canvas(viewer, (row.height, row.width))
    canvas_png_fits(viewer.screenshot(canvas_only=True, flash=False))
    # once the person zooms, a resize leaves the camera where they put it
    viewer.scene.camera.zoom = 5.0
    viewer.window._qt_window.resize(WINDOW[0] - 200, WINDOW[1] - 100)
    qtbot.wait(300)
    assert viewer.scene.camera.zoom == pytest.approx(5.0)
    w.close_project()


def test_focused_box_is_brought_into_view(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    c = w.controller
    cam = w.viewer.scene.camera
    cam.zoom = 6.0
    cam.center = (-2000.0, -2000.0)  # zoomed in, far off the image: no box is in view
    assert press(w.viewer, "G")
    box = w.store.box(c.focus_box)
    assert on_screen(w.viewer, box.xyxy), (tuple(cam.center), cam.zoom, box.xyxy)
    h, wide = canvas_hw(w.viewer)
    row = w.store.image(c.image_id)
    fit = min(h / row.height, wide / row.width)
    assert cam.zoom > 1.5 * fit  # still zoomed in: only as far out as the box needs
    # a box already on screen does not move the camera
    center = tuple(cam.center)
    c._focus(c.focus_box, center=True)
    assert tuple(cam.center) == center


# -- after a job ---------------------------------------------------------------------------


def retrain(w, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from napari_al.core.workflow import QuerySettings, TrainSettings

    use_fake_workflow(monkeypatch)
    assert w.start_retrain(TrainSettings(steps=5), QuerySettings(budget=3)) is not None
    result = wait_done(w, qtbot)
    assert not result.error and not result.cancelled, result


def test_after_a_retrain_the_next_box_is_selected(widget, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = widget
    c = w.controller
    retrain(w, qtbot, monkeypatch)
    # the new predictions replaced the boxes on screen: the next one to review is selected
    predicted = [b.id for b in w.store.boxes(image_id=c.image_id, statuses="predicted")]
    assert c.focus_box in predicted
    assert w.view.selected_box_ids() == [c.focus_box]
    assert press(w.viewer, "W")  # and the keys act on it at once
    assert w.store.box(predicted[0]).status == "accepted"


def test_progress_bar_ends_full(widget, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = widget
    bar = w.train_section.progress_bar
    retrain(w, qtbot, monkeypatch)
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # 100 %, not back to 0
    assert bar.text() == "retrain done"


def test_query_list_reads_as_a_ranking(widget) -> None:  # type: ignore[no-untyped-def]
    w = widget
    store, c = w.store, w.controller
    pool = store.images(split="pool")
    c.set_queries(
        [
            QueryItem(image=pool[0].id, score=48.27713, breakdown={"entropy": 48.27713}),
            QueryItem(
                image=pool[1].id,
                score=0.482131,
                unit="box",
                box=(0, 0, 10, 10),
                breakdown={"entropy": 0.3, "missed": 0.182131},
            ),
            QueryItem(image=pool[2].id, score=0.0123),
        ]
    )
    lines = [w.query_section.query_list.item(i).text() for i in range(3)]
    names = [Path(r.path).name for r in pool[:3]]
    assert lines == [
        f"1. {names[0]}  entropy 48.3",
        f"2. {names[1]} (box)  entropy+missed 0.48",
        f"3. {names[2]}  score 0.01",
    ]
    assert "48.28" in w.query_section.query_list.item(0).toolTip()


# -- a project of plain images ---------------------------------------------------------------


def test_plain_images_say_how_to_add_a_class(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, notes, qtbot
) -> None:
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(np.full((60, 80, 3), 40 * k, np.uint8)).save(folder / f"p{k}.png")
    _, w = open_widget(make_napari_viewer, folder)
    section = w.project_section
    hint = section.class_hint
    assert not hint.isHidden() and "click Add" in hint.text() and "new class" in hint.text()
    assert any("no classes yet" in m and "click Add" in m for _, m in notes), notes
    # a box drawn now is not kept, and the warning says why and what to do
    notes.clear()
    layer = w.view.boxes_layer
    layer.add([np.array([[10, 10], [10, 40], [40, 40], [40, 10]])], shape_type="rectangle")
    w.controller.flush()
    assert w.store.boxes() == []
    assert any(s == "warning" and "click Add" in m for s, m in notes), notes
    assert not any("1 pixel" in m for _, m in notes), notes
    # the exact action: type a name, click Add
    section.new_class.setText("cell")
    section.add_class_button.click()
    assert [c.name for c in w.store.classes()] == ["cell"]
    assert hint.isHidden() and section.class_combo.currentText() == "1: cell"
    w.close_project()


def test_opening_a_folder_names_the_copies_and_broken_files_it_left_out(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, notes, qtbot
) -> None:
    """The widget's Open on a new folder: a copy of an image and a cut JPEG are left out of the
    first import, each named in a warning with why."""
    import shutil

    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(folder / "p0.png")
    shutil.copyfile(folder / "p0.png", folder / "p1.png")
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "cut.jpg", quality=90)
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    _, w = open_widget(make_napari_viewer, folder)
    assert [Path(r.path).name for r in w.store.images()] == ["p0.png"]
    warnings = [m for s, m in notes if s == "warning"]
    assert "left out p1.png: same content as p0.png, earlier in this import" in warnings, notes
    assert any(m.startswith("left out cut.jpg: image data is truncated") for m in warnings)
    w.close_project()


# -- warnings in the person's words -------------------------------------------------------------


def test_stale_undo_warning_names_the_box_as_seen(widget, notes) -> None:  # type: ignore[no-untyped-def]
    """Undoing an accept of a box someone else changed since: dropped, and said in words."""
    w = widget
    store, c = w.store, w.controller
    image_name = Path(store.image(c.image_id).path).name
    box = c.focus_box
    assert press(w.viewer, "W")
    other = ProjectStore.open(store.project_dir)
    other.reject_box(box)
    other.close()
    notes.clear()
    press(w.viewer, "Control-Z")
    stale = [m for s, m in notes if s == "warning"]
    assert stale and image_name in stale[0] and "was changed elsewhere" in stale[0], notes
    assert f"box {box}" not in stale[0]
    assert "RBC box at x " in stale[0] or "WBC box at x " in stale[0] or "Platelets box" in stale[0]


def test_gone_box_warning_names_no_store_id(widget, notes) -> None:  # type: ignore[no-untyped-def]
    """W on a box that a rescoring removed meanwhile: a warning in words, no store id."""
    w = widget
    store, c = w.store, w.controller
    target = c.focus_box
    other = ProjectStore.open(store.project_dir)
    other.replace_predictions(c.image_id, [], model_version=None)
    other.close()
    notes.clear()
    press(w.viewer, "W")
    gone = [m for s, m in notes if s == "warning"]
    assert gone and "no longer in the project" in gone[0], notes
    assert f"box {target}" not in gone[0] and str(target) not in gone[0].split()


# -- the demo, photographed (items 16 and 17) --------------------------------------------------


def test_demo_screenshot_fits_the_image_and_lists_the_queries(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, sample_dir: Path, qtbot, monkeypatch
) -> None:
    from PIL import Image

    from napari_al.core.project import create_demo_project
    from napari_al.gui.demo import show_query_list

    use_fake_workflow(monkeypatch)
    project = create_demo_project(tmp_path / "demo", sample_dir)
    viewer, w = open_widget(make_napari_viewer, project, show=True)
    viewer.window._qt_window.resize(*WINDOW)
    assert w.start_first_round() is not None
    result = wait_done(w, qtbot)
    assert not result.error, result
    show_query_list(w)
    qtbot.wait(500)
    shot = tmp_path / "demo.png"
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    with Image.open(shot) as im:
        assert im.size[0] >= 1000
    canvas_png_fits(viewer.screenshot(canvas_only=True, flash=False))
    listed = w.query_section.query_list
    assert listed.count() == 8 and listed.item(0).text().startswith("1. BloodImage_")
    assert listed.isVisible() and not listed.visibleRegion().isEmpty()  # scrolled into view
    assert w.train_section.progress_bar.text() == "retrain done"
    assert w.controller.focus_box is not None
    w.close_project()
