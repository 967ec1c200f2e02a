"""Shared fixtures: where the real data lives, and a small project built from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# The suite compares against torchvision's CPU reference bit for bit and checks seeded
# reproducibility, so it runs on the CPU even where a GPU is present; tests/test_cuda.py
# exercises the CUDA path explicitly.
os.environ.setdefault("NAPARI_AL_DEVICE", "cpu")

REPO = Path(__file__).resolve().parent.parent
#: BCCD (364 images, VOC), kept beside the repository in ../shared/datasets/bccd.
BCCD_DIR = REPO.parent / "shared" / "datasets" / "bccd"
SAMPLE_DIR = REPO / "sample_data" / "bccd_sample"


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    """The full BCCD dataset; its absence is a setup error, not a reason to skip."""
    assert (BCCD_DIR / "Annotations").is_dir(), f"BCCD not found at {BCCD_DIR}"
    return BCCD_DIR


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 16-image BCCD sample shipped in sample_data/."""
    assert (SAMPLE_DIR / "Annotations").is_dir(), f"sample not found at {SAMPLE_DIR}"
    return SAMPLE_DIR


# -- layered project fixtures: empty -> labelled BCCD sample -> with a tiny trained model ------
#
# Each layer is built once per session (a template) and copied for every test that asks for
# it, so tests never share a project's state.

#: A tiny model for tests: small input (the point is the wiring, not the accuracy).
TINY_MODEL = {"min_size": 128, "max_size": 160, "device": "cpu"}


def _copy(template: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(template, dest)
    return dest


@pytest.fixture
def empty_project(tmp_path: Path) -> Path:
    """A new project with no image, class or model."""
    from napari_al.core.store import ProjectStore

    ProjectStore.create(tmp_path / "empty").close()
    return tmp_path / "empty"


@pytest.fixture(scope="session")
def labelled_template(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The BCCD sample: every other image labelled (complete, in its split), the rest in the
    pool with simulated predictions (``napari_al.gui._testing.make_loop_project``)."""
    from napari_al.gui._testing import make_loop_project

    return make_loop_project(tmp_path_factory.mktemp("labelled") / "proj", sample_dir)


@pytest.fixture
def labelled_project(labelled_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of :func:`labelled_template`."""
    return _copy(labelled_template, tmp_path / "labelled")


@pytest.fixture(scope="session")
def trained_template(labelled_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`labelled_template` with model version 1 trained through the workflow (tiny input,
    2 steps)."""
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    project = _copy(labelled_template, tmp_path_factory.mktemp("trained") / "proj")
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=2))
        assert outcome.model_version == 1, outcome.stopped_reason
    return project


@pytest.fixture
def trained_project(trained_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of :func:`trained_template`."""
    return _copy(trained_template, tmp_path / "trained")


@contextmanager
def sql_commits(store: Any) -> Iterator[list[str]]:
    """The COMMIT statements SQLite runs on a ProjectStore's connection inside the block."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if sql.strip().upper().startswith("COMMIT"):
            seen.append(sql)

    store._conn.set_trace_callback(trace)
    try:
        yield seen
    finally:
        store._conn.set_trace_callback(None)


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every napari notification shown during the test, as (severity, message) (GUI tests)."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(event) -> None:  # type: ignore[no-untyped-def]
        n = event if hasattr(event, "message") else event.value
        seen.append((str(n.severity), str(n.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def tagged_image(
    path: Path,
    size: tuple[int, int] = (64, 48),
    colour: tuple[int, int, int] = (10, 20, 30),
    **save: Any,
) -> Path:
    """Write a plain ``size`` (width, height) image to ``path`` (format from the extension,
    ``save`` options to Pillow) whose content depends on the path: the 32 bits of its CRC-32
    are painted as white cells over ``colour`` (cells of up to 4 px, so they survive JPEG),
    so no two generated files share their content. An import leaves out a file whose content
    is already in the project; tests that mean different images must write different bytes.
    """
    import zlib

    from PIL import Image

    w, h = size
    tag = zlib.crc32(bytes(path))  # any file name, UTF-8 or not
    im = Image.new("RGB", size, colour)
    cell = max(1, min(w // 8, h // 4, 4))
    for k in range(32):
        x, y = (k % 8) * cell, (k // 8) * cell
        if tag >> k & 1 and x < w and y < h:
            im.paste((255, 255, 255), (x, y, min(x + cell, w), min(y + cell, h)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **save)
    return path
