"""``napari-al open`` and ``napari-al demo``: napari with the plugin docked, on a project (made
from the folder on a first open) or on the BCCD demo project."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_al.cli.common import CliError
from napari_al.cli.project import first_import
from napari_al.core.names import shown


def _require_display() -> None:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise CliError(
            "no display found (DISPLAY is not set); to run napari on a virtual screen use "
            "'xvfb-run -a napari-al ...' (Debian: apt-get install xvfb)"
        )


def _run_napari(project: Path, screenshot: str | None, quit_after: bool) -> int:
    _require_display()
    from napari_al.runtime import block_triton

    block_triton()  # a GUI process: see napari_al.runtime (before torch or napari load)
    import napari

    from napari_al.gui.session import open_project

    session = open_project(project)
    viewer = session.viewer
    if screenshot or quit_after:
        from qtpy.QtCore import QTimer

        def finish() -> None:
            if screenshot:
                viewer.screenshot(screenshot, canvas_only=False, flash=False)
                print(f"screenshot saved to {screenshot}")
            viewer.close()

        def frame() -> None:
            viewer.window.resize(1400, 900)
            viewer.reset_view()
            QTimer.singleShot(1000, finish)

        QTimer.singleShot(1000, frame)
    napari.run()
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from napari_al.core.project import is_project
    from napari_al.core.project_paths import nesting_error
    from napari_al.core.store import ProjectStore, folder_writable, not_writable_error

    path = Path(args.project)
    nested = None if is_project(path) else nesting_error(path)
    if nested is not None:  # a project inside (or around) another: refused
        raise CliError(nested)
    if not path.is_dir():
        raise CliError(f"{path}: no such folder")
    if is_project(path) and not folder_writable(path):  # every key press is a write
        raise not_writable_error(path, "the viewer (it records each action in the store)")
    _require_display()
    if not is_project(path):  # a first open: import the folder here, saying what it held
        with ProjectStore.create(path) as store:
            print(f"created project {shown(str(path))}")
            first_import(store, path)
    return _run_napari(path, args.screenshot, args.quit)


def cmd_demo(args: argparse.Namespace) -> int:
    """napari on a project made from the BCCD sample, in the middle of the loop: a few
    labelled images, an unlabelled pool; the first model trains in the background."""
    from napari_al.core.project import DEMO_LABELLED, create_demo_project, is_project
    from napari_al.core.workflow import ModelSettings, from_args
    from napari_al.sample import sample_dir

    _require_display()
    project = Path(args.project)
    if not is_project(project):
        create_demo_project(project, sample_dir())
        print(
            f"created demo project {project} from the BCCD sample: {DEMO_LABELLED} labelled "
            "training images, the rest to annotate; the first model trains in the background"
        )
    from napari_al.gui.demo import run_demo

    return run_demo(
        project,
        screenshot=args.screenshot,
        quit_after=args.quit,
        steps=args.steps,
        model=from_args(ModelSettings, args),
    )
