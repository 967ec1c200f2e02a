"""``napari-al demo`` opens in the middle of the loop (issue 16, item 16).

The demo project has a few labelled training images, the val images for mAP and an unlabelled
pool; when it opens, the round it still needs (a first model, then a ranking) runs in the
background through the widget's own retrain job, and the query list fills. The GUI tests run
the real round on fake model steps (``tests/fake_workflow.py``); ``test_cli.py`` runs the
command itself with a tiny real model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_workflow import use_fake_workflow

from napari_al.core.project import DEMO_LABELLED, create_demo_project
from napari_al.core.store import ProjectStore
from napari_al.core.workflow import first_round

TIMEOUT_MS = 60_000


def test_demo_project_is_in_the_middle_of_the_loop(tmp_path: Path, sample_dir: Path) -> None:
    project = create_demo_project(tmp_path / "demo", sample_dir)
    with ProjectStore.open(project) as store:
        info = store.info()
        assert info["images"] == 16
        assert info["images_by_split"] == {"pool": 8, "train": DEMO_LABELLED, "val": 4, "test": 0}
        # the labelled images keep their boxes; the pool has none and is unseen
        for row in store.images():
            boxes = store.boxes(image_id=row.id)
            if row.split == "pool":
                assert row.review_state == "unseen" and boxes == []
            else:
                assert row.review_state == "complete" and boxes
        # the labelled training images are spread over the sample, not its first four files
        train = sorted(Path(r.path).name for r in store.images(split="train"))
        assert train[0] == "BloodImage_00007.jpg" and train[-1] == "BloodImage_00058.jpg"
        assert first_round(store) == "retrain"  # labels, no model yet
    with pytest.raises(FileExistsError):
        create_demo_project(project, sample_dir)


def test_first_round_names_what_a_project_still_needs(empty_project: Path) -> None:
    with ProjectStore.open(empty_project) as store:
        assert first_round(store) is None  # nothing to train on


@pytest.mark.gui
def test_demo_trains_in_the_background_and_lists_queries(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, sample_dir: Path, qtbot, monkeypatch
) -> None:
    from napari_al.gui.demo import apply_settings
    from napari_al.gui.widget import ActiveLearningWidget

    loop = use_fake_workflow(monkeypatch)
    project = create_demo_project(tmp_path / "demo", sample_dir)
    viewer = make_napari_viewer()
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w, name="Active learning")
    w.open_project(project)
    apply_settings(w, steps=3)
    store, c = w.store, w.controller
    assert store.image(c.image_id).split == "pool"  # opens on an image to annotate
    assert w.query_section.query_list.count() == 0

    results: list[object] = []
    w.runner.done.connect(results.append)
    worker = w.start_first_round()
    assert worker is not None and w.runner.kind == "retrain"
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    result = results[0]
    assert not result.error and not result.cancelled, result
    assert loop.calls[:4] == ["load", "train", "predict_split", "evaluate"]
    assert store.latest_model_version() is not None and c.detector is not None
    assert len(c.queries) == 8 and w.query_section.query_list.count() == 8
    assert store.latest_queries() is not None
    # mid-loop now: nothing more to start, and N walks the queries
    assert first_round(store) is None and w.start_first_round() is None
    w.close_project()
