"""The ``napari-al`` command line: project management headless, and napari on a project."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

FORMATS_IN = ("voc", "coco", "yolo", "images")
FORMATS_OUT = ("voc", "coco", "yolo")


class CliError(Exception):
    """An error reported to the user as one line, exiting non-zero."""


def _progress_bar(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm progress callback ``(done, total)`` and a function that closes the bar."""
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)
        b = bar["bar"]
        b.total = total
        b.n = done
        b.refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def _open_store(project: str):
    from napari_al.core.project import is_project
    from napari_al.core.store import ProjectStore

    path = Path(project)
    if not is_project(path):
        raise CliError(f"{path}: not a napari-al project (run 'napari-al init {path}' first)")
    return ProjectStore.open(path)


def cmd_init(args: argparse.Namespace) -> int:
    from napari_al.core.project import is_project
    from napari_al.core.store import ProjectStore

    path = Path(args.project)
    if is_project(path):
        raise CliError(f"{path}: already a napari-al project")
    ProjectStore.create(path).close()
    print(f"created project {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from napari_al.core.project import import_into

    with _open_store(args.project) as store:
        update, close = _progress_bar("importing")
        try:
            dataset, summary = import_into(
                store, Path(args.path), args.format, strict=not args.skip_bad, progress=update
            )
        finally:
            close()
    for line in dataset.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"imported {summary.get('images_added', len(dataset.images))} images and "
        f"{summary.get('boxes_added', dataset.n_boxes)} boxes from {args.path}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from napari_al.core.project import export_dataset

    with _open_store(args.project) as store:
        dataset = export_dataset(
            store, Path(args.out), args.format, overwrite=args.force, only_reviewed=not args.all
        )
    print(f"exported {len(dataset.images)} images and {dataset.n_boxes} boxes to {args.out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _open_store(args.project) as store:
        info = store.info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"project: {Path(args.project).resolve()}")
    for key in ("images", "boxes"):
        print(f"{key}: {info[key]}")
    print(f"classes: {', '.join(info['classes']) or '(none)'}")
    for key in ("images_by_split", "images_by_review_state", "boxes_by_status", "boxes_by_class"):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(info[key].items()))
        print(f"{key.replace('_', ' ')}: {parts or '-'}")
    return 0


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

        QTimer.singleShot(1500, finish)
    napari.run()
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    path = Path(args.project)
    if not path.is_dir():
        raise CliError(f"{path}: no such folder")
    return _run_napari(path, args.screenshot, args.quit)


def cmd_demo(args: argparse.Namespace) -> int:
    from napari_al.core.project import import_into, is_project
    from napari_al.core.store import ProjectStore
    from napari_al.sample import sample_dir

    _require_display()
    project = Path(args.project)
    if not is_project(project):
        with ProjectStore.create(project) as store:
            import_into(store, sample_dir(), "voc")
        print(f"created demo project {project} from the BCCD sample")
    return _run_napari(project, args.screenshot, args.quit)


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can act on, or ``None`` for a bug."""
    known: list[type[BaseException]] = [CliError, FileNotFoundError, FileExistsError]
    for module, name in (
        ("napari_al.core.store", "StoreError"),
        ("napari_al.core.formats", "FormatError"),
        ("napari_al.core.images", "ImageReadError"),
    ):
        try:
            known.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            continue
    return str(exc) if isinstance(exc, tuple(known)) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-al",
        description="Human-in-the-loop active learning of object detectors (napari and CLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create an empty project in DIR")
    p.add_argument("project", metavar="DIR")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="import a dataset (VOC, COCO, YOLO or a folder of images)")
    p.add_argument("project", metavar="DIR")
    p.add_argument("path", metavar="PATH", help="dataset folder, or a COCO JSON file")
    p.add_argument("--format", required=True, choices=FORMATS_IN)
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip malformed files and boxes (reported as warnings) instead of refusing the import",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export the human labels (VOC, COCO or YOLO)")
    p.add_argument("project", metavar="DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", required=True, choices=FORMATS_OUT)
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--all", action="store_true", help="include images not yet marked complete")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="counts of images, boxes, classes and splits")
    p.add_argument("project", metavar="DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("open", help="open napari with the plugin docked on DIR")
    p.add_argument("project", metavar="DIR")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then quit")
    p.add_argument("--quit", action="store_true", help="quit right after opening (smoke test)")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("demo", help="open napari on a project made from the BCCD sample")
    p.add_argument(
        "--project",
        default="napari-al-demo",
        metavar="DIR",
        help="where to create the demo project (default: ./napari-al-demo)",
    )
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then quit")
    p.add_argument("--quit", action="store_true", help="quit right after opening (smoke test)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-al`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("napari-al: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, not a trace
        message = user_message(exc)
        if message is None:
            raise
        print(f"napari-al: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
