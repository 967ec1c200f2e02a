"""Screenshot of the annotation loop for the README (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m napari_al.gui._screenshot docs/images/loop.png

The project is the BCCD sample with simulated predictions on its pool images
(:func:`~napari_al.gui._testing.make_loop_project`); a few boxes are judged with the keys, one
is drawn, the regions come from :func:`napari_al.core.selection.rank_regions` over the
simulated scores, and "possibly missed" suggestions are ground-truth boxes the simulation left
out. With ``--train-steps N`` the loss curve is a real training run of the default detector on
the project's labels (``core.workflow.train_model``; nothing is predicted with it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

    from napari_al.core.selection import QueryItem
    from napari_al.gui.widget import ActiveLearningWidget

#: (xyxy, score, class index) of a "possibly missed" suggestion, as the controller keeps them.
Missed = tuple[tuple[float, float, float, float], float, int]


@dataclass
class Scene:
    """The project to photograph and what the shot shows on its ``target`` pool image."""

    project: Path
    pool: list[int]
    target: int
    missed_gt: list[Any]  # the ground-truth boxes left out of the target's predictions
    missed: list[Missed]  # the same boxes as "possibly missed" suggestions
    regions: list[QueryItem]  # the two best regions of the target image


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="screenshot of the napari-al loop")
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument(
        "--questions",
        action="store_true",
        help="ask the dialog planner's first question (key J) and show the Questions panel",
    )
    return parser.parse_args(argv)


def make_scene() -> Scene:
    """The loop project, with two ground-truth cells left out of one pool image's predictions
    (the "possibly missed" ones) and that image's regions ranked on simulated scores."""
    import numpy as np

    from napari_al.core.formats import read_voc
    from napari_al.core.selection import rank_regions
    from napari_al.core.store import ProjectStore
    from napari_al.gui._testing import make_loop_project
    from napari_al.sample import sample_dir

    project = make_loop_project(Path(tempfile.mkdtemp(prefix="napari-al-shot-")) / "bccd")
    # leave two ground-truth cells out of one pool image's predictions: "possibly missed"
    truth = {str(r.path): r.boxes for r in read_voc(sample_dir()).images}
    with ProjectStore.open(project) as store:
        pool = [r.id for r in store.images(split="pool")]
        target = pool[1]
        row = store.image(target)
        boxes = store.boxes(image_id=target, statuses="predicted")
        gt = truth[str(store.abs_path(row))]
        names = [c.name for c in store.classes()]
        missed_gt = sorted(gt, key=lambda b: -(b.x2 - b.x1) * (b.y2 - b.y1))[:2]
        keep = []
        for b in boxes:
            centre = ((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2)
            hit = any(m.x1 <= centre[0] <= m.x2 and m.y1 <= centre[1] <= m.y2 for m in missed_gt)
            if not hit:
                keep.append((b.xyxy, b.class_id, b.score))
        store.replace_predictions(target, keep, model_version=None)
        scores = np.array([s for _, _, s in keep])
        uncertainty = 1.0 - np.abs(2 * scores - 1)  # simulated: 0.5 is the least sure
        regions = rank_regions(
            (row.height, row.width),
            np.array([x for x, _, _ in keep]),
            uncertainty,
            np.array([[m.x1, m.y1, m.x2, m.y2] for m in missed_gt]),
            missed_scores=np.array([0.45, 0.3]),
            block=160,
            image=target,
        )[:2]
        missed = [
            ((m.x1, m.y1, m.x2, m.y2), s, names.index(m.label))
            for m, s in zip(missed_gt, (0.45, 0.3), strict=True)
        ]
    return Scene(project, pool, target, missed_gt, missed, regions)


def open_viewer(project: Path) -> tuple[napari.viewer.Viewer, ActiveLearningWidget]:
    """A 1600x1000 viewer with the widget docked and the project open."""
    import napari

    from napari_al.gui.widget import ActiveLearningWidget

    viewer = napari.Viewer(title="napari-al: BCCD sample")
    viewer.window._qt_window.resize(1600, 1000)
    widget = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Active learning", area="right")
    widget.open_project(project)
    return viewer, widget


def annotate(viewer: napari.viewer.Viewer, widget: ActiveLearningWidget, scene: Scene) -> None:
    """Query a few items, judge boxes with the keys, draw one missed cell by hand and show
    the region item of the target image with its highlights."""
    from napari_al.core.selection import QueryItem

    c = widget.controller
    queries = [QueryItem(image=scene.pool[k], score=2.5 - 0.4 * k) for k in (0, 2, 3, 4)]
    queries.append(scene.regions[0])
    queries.sort(key=lambda q: -q.score)
    region_index = queries.index(scene.regions[0])
    c.missed[scene.target] = scene.missed
    c.set_queries(queries)
    handler = viewer.window._qt_viewer._key_map_handler
    for key in ("W", "W", "Q", "W", "G", "W"):
        handler.press_key(key)
        handler.release_key(key)
    c.go_to_item(region_index)  # the region item on the target image
    for key in ("W", "W", "Q"):
        handler.press_key(key)
        handler.release_key(key)
    # a drawn box: one of the missed cells, drawn by hand
    m = scene.missed_gt[0]
    c.annotator.draw(scene.target, (m.x1, m.y1, m.x2, m.y2), c.store.class_id(m.label))
    c.missed[scene.target] = scene.missed[1:]
    c.reload()
    c._render_highlights(query=queries[region_index])
    viewer.reset_view()


def train_loss_curve(widget: ActiveLearningWidget, steps: int, min_size: int) -> None:
    """A real training run of the default detector on the project's labels, drawn in the
    widget's loss plot (nothing is predicted with it, nothing saved)."""
    from napari_al.core import workflow
    from napari_al.gui.tasks import ensure_torch

    app = _app()
    c = widget.controller
    train = widget.train_section
    ensure_torch()
    model = workflow.ModelSettings(min_size=min_size, max_size=min_size * 2)
    detector = workflow.load_model(c.store, model)
    train.loss_plot.start_run()

    def progress(step, total, loss, epoch=0.0):  # type: ignore[no-untyped-def]
        train.loss_plot.add(step, loss)
        train.job_label.setText(f"Training {step}/{total}, loss {loss:.3f}")
        train.progress_bar.setRange(0, total)
        train.progress_bar.setValue(step)
        app.processEvents()

    settings = workflow.TrainSettings(steps=steps)
    workflow.train_model(c.store, detector, settings, progress=progress, save=False)
    train.loss_plot._redraw()


def _app() -> Any:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    assert app is not None
    return app


def pump(seconds: float) -> None:
    """Process Qt events for ``seconds`` (let the canvas and the plots draw)."""
    app = _app()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def capture(
    viewer: napari.viewer.Viewer, widget: ActiveLearningWidget, out: Path, questions: bool = False
) -> None:
    """Scroll the widget to the loss curve (or the Questions panel) and save a screenshot of
    the whole window."""
    from qtpy.QtWidgets import QScrollArea

    pump(1.0)
    viewer.reset_view()
    scroll = widget.findChild(QScrollArea)
    target = widget.questions_section if questions else widget.train_section.loss_plot
    if scroll is not None:  # show the Query and Train sections (the loss curve)
        scroll.ensureWidgetVisible(target, 0, 10)
    pump(1.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scene = make_scene()
    viewer, widget = open_viewer(scene.project)
    _app()  # the viewer made the QApplication
    annotate(viewer, widget, scene)
    if args.train_steps:
        train_loss_curve(widget, args.train_steps, args.min_size)
    if args.questions:
        widget.controller.next_question()  # what J does: the planner's best question
    widget.refresh()
    capture(viewer, widget, args.out, args.questions)
    print(f"saved {args.out}")
    widget.close_project()
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
