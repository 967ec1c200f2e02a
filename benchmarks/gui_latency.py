"""How responsive is the annotation loop? Event-loop delay idle and during a retrain, and the
time to switch to an image with 200 boxes.

Run under a (virtual) screen::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py

A 10 ms precise Qt timer (:class:`napari_al.gui.latency.LatencyProbe`) records how late each
tick fires: the time the main thread was blocked. While measuring "during training" the script
keeps annotating during the second half of the steps (a key every 250 ms through napari's key
dispatch, an image switch every 10 keys), so there are four rows: idle, annotating alone,
training with an idle viewer, training while annotating. Under Xvfb the canvas is drawn by
Mesa's software OpenGL on the CPU, so every repaint after a key costs far more than on a GPU.

Training uses :mod:`napari_al.core.workflow` with the default detector (Faster R-CNN on the
MobileNetV2-FPN backbone) at the project's default input size; ``--fake`` instead burns CPU in
numpy inside the worker (no torch), for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def use_fake_steps(step_s: float) -> None:
    """Replace the round's model steps by the test suite's fakes, training burning CPU in numpy
    for ``step_s`` per step (``tests/fake_workflow.py``)."""
    sys.path.insert(0, str(REPO / "tests"))
    from fake_workflow import NAMES, FakeWorkflow

    from napari_al.core import workflow
    from napari_al.core.workflow import rounds

    fake = FakeWorkflow(step_s=step_s, burn=True)
    for name in NAMES:
        for module in (workflow, rounds):
            setattr(module, name, getattr(fake, name))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps during the probe")
    parser.add_argument("--idle-s", type=float, default=5.0, help="seconds of idle probing")
    parser.add_argument("--annotate-s", type=float, default=8.0, help="seconds annotating alone")
    parser.add_argument("--switches", type=int, default=20, help="image switches to time")
    parser.add_argument("--boxes", type=int, default=200, help="boxes on the switched images")
    parser.add_argument("--fake", action="store_true", help="numpy CPU burner instead of torch")
    parser.add_argument("--min-size", type=int, default=0, help="detector input size (0: default)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow import QuerySettings, TrainSettings
    from napari_al.gui._testing import add_many_boxes, make_loop_project
    from napari_al.gui.latency import LatencyProbe
    from napari_al.gui.widget import ActiveLearningWidget

    if args.fake:
        use_fake_steps(0.5)

    tmp = Path(tempfile.mkdtemp(prefix="napari-al-bench-"))
    project = make_loop_project(tmp / "proj")
    with ProjectStore.open(project) as store:
        pool = [r.id for r in store.images(split="pool")]
        add_many_boxes(store, pool[0], args.boxes, seed=0)
        add_many_boxes(store, pool[1], args.boxes, seed=1)
        # something to train on: a few reviewed pool images
        for image_id in pool[2:5]:
            for b in store.boxes(image_id=image_id, statuses="predicted"):
                store.accept_box(b.id)
            store.set_review_state(image_id, "complete")

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    widget = ActiveLearningWidget(viewer)
    # draw all --boxes boxes, weak predictions included
    widget.query_section.min_score_spin.setValue(0.0)
    viewer.window.add_dock_widget(widget, name="Active learning", area="right")
    widget.open_project(project)
    if args.min_size:
        widget.model_section.min_size_spin.setValue(args.min_size)
    app = QApplication.instance()
    assert app is not None

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)

    pump(1.0)

    # 1. image switch with N boxes: main-thread time of the switch, and until painted
    switch_s, painted_s = [], []
    for k in range(args.switches):
        t0 = time.perf_counter()
        widget.show_image(pool[k % 2])
        t1 = time.perf_counter()
        viewer.window._qt_viewer.canvas._scene_canvas.native.repaint()
        app.processEvents()
        switch_s.append(t1 - t0)
        painted_s.append(time.perf_counter() - t0)
    parts = widget.view.last_timing
    n_shapes = len(widget.view.boxes_layer.data)

    # 2. idle event-loop delay
    probe = LatencyProbe(10)
    probe.start()
    pump(args.idle_s)
    probe.stop()
    idle = probe.summary()

    # 3. annotating without training (the baseline for 4.)
    widget.show_image(pool[2])
    actions = {"n": 0}
    handler = viewer.window._qt_viewer._key_map_handler

    def annotate() -> None:
        key = ("G", "W", "G", "Q", "Control-Z")[actions["n"] % 5]
        handler.press_key(key)
        handler.release_key(key)
        if actions["n"] % 10 == 9:
            widget.show_image(pool[2 + (actions["n"] // 10) % 4])
        actions["n"] += 1

    timer = QTimer()
    timer.timeout.connect(annotate)
    probe = LatencyProbe(10)
    probe.start()
    timer.start(250)
    pump(args.annotate_s)
    timer.stop()
    probe.stop()
    annotating = probe.summary()
    n_alone = actions["n"]

    # 4. during a retrain: the first half of the steps untouched, the second half annotating
    from napari_al.gui.tasks import ensure_torch

    ensure_torch()  # import torch before probing (a one-off cost, not a steady-state delay)
    done: list[object] = []
    widget.runner.done.connect(done.append)
    quiet, busy = LatencyProbe(10), LatencyProbe(10)
    state = {"phase": "before"}
    half = max(1, args.steps // 2)

    def on_progress(p) -> None:  # type: ignore[no-untyped-def]
        if p.phase != "train" or p.loss is None:
            if state["phase"] in ("quiet", "annotating") and p.phase != "train":
                state["phase"] = "after"
                quiet.stop()
                busy.stop()
                timer.stop()
            return
        if state["phase"] == "before":
            state["phase"] = "quiet"
            quiet.start()
        elif state["phase"] == "quiet" and p.done >= half:
            state["phase"] = "annotating"
            quiet.stop()
            busy.start()
            timer.start(250)

    widget.runner.progressed.connect(on_progress)
    actions["n"] = 0
    t_train = time.perf_counter()
    widget.query_section.suggest_check.setChecked(False)
    worker = widget.start_retrain(TrainSettings(steps=args.steps), QuerySettings(budget=5))
    if worker is None:
        print("could not start training", file=sys.stderr)
        return 1
    while not done:
        app.processEvents()
        time.sleep(0.001)
    quiet.stop()
    busy.stop()
    timer.stop()
    train_wall = time.perf_counter() - t_train
    training, during = quiet.summary(), busy.summary()
    result = done[0]

    threads = threading.active_count()
    print(f"napari {napari.__version__}")
    print(
        f"training: {'fake numpy burner' if args.fake else 'core.workflow'}; {args.steps} steps; "
        f"job {train_wall:.1f} s; error: {getattr(result, 'error', None)}; threads {threads}"
    )
    print()
    print(f"{'measure':<46} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>6}")
    for label, m in (
        ("event-loop delay, idle", idle),
        ("event-loop delay, annotating (no training)", annotating),
        ("event-loop delay, training (idle viewer)", training),
        ("event-loop delay, training + annotating", during),
    ):
        print(
            f"{label:<46} {m['p50_ms']:8.1f} {m['p99_ms']:8.1f} {m['max_ms']:8.1f} {m['ticks']:6d}"
        )
    for label, values in (
        (f"image switch, {n_shapes} boxes (main thread)", switch_s),
        (f"image switch, {n_shapes} boxes (until painted)", painted_s),
    ):
        ms = [v * 1000 for v in values]
        print(
            f"{label:<46} {statistics.median(ms):8.1f} {pct(ms, 99):8.1f} {max(ms):8.1f} "
            f"{len(ms):6d}"
        )
    print()
    print(
        "last switch by part (ms): "
        + ", ".join(f"{k[:-2]} {v * 1000:.1f}" for k, v in parts.items())
    )
    print(
        f"annotation actions: {n_alone} without training, {actions['n']} during training "
        "(a key every 250 ms: G W G Q Ctrl+Z, an image switch every 10 keys)"
    )
    widget.close_project()
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
