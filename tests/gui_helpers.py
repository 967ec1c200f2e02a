"""What the GUI tests share: a generated one-blob project, opening the widget on a project,
pressing keys through napari."""

from __future__ import annotations

from pathlib import Path

#: The generated image: 160 wide, 100 high (not square: a row/col swap misses the blob).
WIDTH, HEIGHT = 160, 100
#: x1, y1, x2, y2 of its one bright blob, far from the diagonal.
BLOB = (110, 20, 130, 34)


def blob_project(folder: Path) -> Path:
    """A new project in ``folder`` (created) with classes ``cell`` and ``debris`` and one
    ``WIDTH`` x ``HEIGHT`` grey PNG, dark noise (seeded) with a bright :data:`BLOB`."""
    import numpy as np
    from PIL import Image

    from napari_al.core.store import ProjectStore
    from napari_al.core.store.rows import file_sha256

    folder.mkdir(parents=True)
    img = (np.random.default_rng(0).random((HEIGHT, WIDTH)) * 20).astype(np.uint8)
    x1, y1, x2, y2 = BLOB
    img[y1:y2, x1:x2] = 220
    path = folder / "cells.png"
    Image.fromarray(img).save(path)
    with ProjectStore.create(folder) as s:
        s.add_class("cell")
        s.add_class("debris")
        s.add_image(path, file_sha256(path), WIDTH, HEIGHT)
    return folder


def open_widget(make_napari_viewer, project: Path, show: bool = False):  # type: ignore[no-untyped-def]
    """A viewer with the Active learning widget docked on the right, ``project`` open;
    returns (viewer, widget)."""
    from napari_al.gui.widget import ActiveLearningWidget

    viewer = make_napari_viewer(show=show)
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w, name="Active learning", area="right")
    w.open_project(project)
    return viewer, w


def press(viewer, key: str) -> bool:  # type: ignore[no-untyped-def]
    """Press and release a key through napari's own key dispatch; whether a binding took it."""
    handler = viewer.window._qt_viewer._key_map_handler
    hit = handler.press_key(key)
    handler.release_key(key)
    return hit
