"""The whole loop in a real viewer with the real detector engine (a tiny, fast model).

Open the BCCD sample project, predict, annotate with the keys, retrain in the background while
annotating (the latency probe runs meanwhile; its figures are measured by
``benchmarks/gui_latency.py``, not asserted here), cancel a retrain. Needs
torch; run under ``xvfb-run``. About 20-30 s on two idle CPU cores; ``test_gui.py`` drives the
same widget with fake model steps for the finer cases.
"""

from __future__ import annotations

from pathlib import Path

import gui_helpers
import pytest

pytestmark = [pytest.mark.gui]

TIMEOUT_MS = 300_000
#: A tiny model: small input, few steps (the point is the loop, not the accuracy).
TINY = {"min_size": 128, "max_size": 160}


@pytest.fixture
def widget(make_napari_viewer, labelled_project: Path, qtbot):  # type: ignore[no-untyped-def]
    from napari_al.gui.widget import ActiveLearningWidget

    project = labelled_project
    viewer = make_napari_viewer()
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w, name="Active learning")
    w.open_project(project)
    w.model_section.min_size_spin.setValue(TINY["min_size"])
    yield w
    if w.runner.busy:
        w.runner.cancel()
        qtbot.waitUntil(lambda: not w.runner.busy, timeout=TIMEOUT_MS)
    w.close_project()


def press(viewer, key: str) -> None:  # type: ignore[no-untyped-def]
    assert gui_helpers.press(viewer, key)


def run(w, qtbot, start) -> object:  # type: ignore[no-untyped-def]
    results: list[object] = []
    w.runner.done.connect(results.append)
    assert start() is not None
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    w.runner.done.disconnect(results.append)
    return results[0]


def test_real_loop_retrains_in_background(widget, qtbot) -> None:  # type: ignore[no-untyped-def]
    from napari_al.core.workflow import QuerySettings, TrainSettings
    from napari_al.gui.latency import LatencyProbe

    w = widget
    store, c = w.store, w.controller
    query = QuerySettings(strategy="entropy", unit="image", budget=3)

    # annotate a few simulated predictions, then retrain while annotating more
    for _ in range(3):
        press(w.viewer, "W")
    press(w.viewer, "Q")
    accepted = [b.id for b in store.boxes(statuses="accepted") if b.source != "import"]
    assert len(accepted) == 3

    probe = LatencyProbe(10)
    probe.start()
    results: list[object] = []
    w.runner.done.connect(results.append)
    assert w.start_retrain(TrainSettings(steps=3), query) is not None
    qtbot.wait(300)
    press(w.viewer, "W")  # labels edited during training are kept
    during = c.annotator.undo_stack[-1].box_id
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    probe.stop()
    result = results[0]
    assert not result.error, result.details
    assert not result.cancelled
    assert c.detector is result.detector and c.model_version == result.model_version
    assert store.latest_model_version().id == c.model_version
    assert store.box(during).status == "accepted"
    assert all(store.box(i).status == "accepted" for i in accepted)
    assert c.queries and len(c.queries) <= 3
    assert store.integrity_check() == "ok"
    summary = probe.summary()
    assert summary["ticks"] > 10  # the event loop kept running while the model trained
    print(f"\nevent-loop delay during retraining: {summary}")

    # the next queried item, and a cancel that keeps the model just trained
    press(w.viewer, "N")
    assert c.image_id == c.queries[c.query_index].image
    version = c.model_version
    progress: list[object] = []
    w.runner.progressed.connect(progress.append)
    results.clear()
    w.start_retrain(TrainSettings(steps=500), query)
    qtbot.waitUntil(lambda: any(getattr(p, "loss", None) for p in progress), timeout=TIMEOUT_MS)
    w.cancel_job()
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    assert results[0].cancelled
    assert c.model_version == version and store.latest_model_version().id == version
