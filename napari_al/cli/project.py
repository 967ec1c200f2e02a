"""The project's data commands: init, import, export, add-class, info (no model involved)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from napari_al.cli.common import CliError, counted, json_text, open_store, progress_bar, say
from napari_al.cli.evaluate import calibration_fix, calibration_line
from napari_al.core.names import escaped, shown


def cmd_init(args: argparse.Namespace) -> int:
    from napari_al.core.project import is_project
    from napari_al.core.project_paths import nesting_error
    from napari_al.core.store import ProjectStore

    path = Path(args.project)
    if path.exists() and not path.is_dir():
        raise CliError(
            f"{path}: is a file, not a folder; give the folder of images to make a project"
        )
    if is_project(path):
        store = _unfinished_init(path)
        if store is None:
            raise CliError(f"{path}: already a napari-al project")
    else:
        nested = nesting_error(path)
        if nested is not None:
            raise CliError(nested)
        store = ProjectStore.create(path)
        print(f"created project {shown(str(path))}")
    with store:
        first_import(store, path)
    return 0


def _unfinished_init(path: Path) -> Any:
    """The store of ``path`` opened to finish an interrupted init (saying so), or None when
    the project is made: a store file left empty (0 bytes: killed before the schema), or a
    store with nothing at all in it (no image, class or action: killed while the images were
    read, or an init of a folder that was empty then) in a folder that holds images now. The
    viewer's open finishes both too (:func:`napari_al.core.project.open_or_init`)."""
    from napari_al.core.images import find_images
    from napari_al.core.store import ProjectStore, is_empty_store, not_writable_error

    if is_empty_store(path):
        store = ProjectStore.open(path, create=True)
        print(
            f"finishing the interrupted init of {shown(str(path))}: its store was empty (0 bytes)"
        )
        return store
    store = ProjectStore.open(path, read_only=None)  # a made project on a read-only folder
    nothing = store.last_action_id() is None and not store.images() and not store.classes()
    if nothing and find_images(path):
        if store.read_only:
            store.close()
            raise not_writable_error(path, "finishing its init")
        print(
            f"finishing the init of {shown(str(path))}: its store holds nothing yet (an init "
            "interrupted while it read the images, or of a folder empty then)"
        )
        return store
    store.close()
    return None


def first_import(store, path: Path) -> None:
    """Import a new project's folder (its images, and a VOC or YOLO folder's labels)."""
    from napari_al.core.project import import_folder

    update, close = progress_bar("importing")
    try:
        summary = import_folder(store, path, progress=update)
    finally:
        close()
    if summary is not None:
        _print_import(summary, path)


def cmd_import(args: argparse.Namespace) -> int:
    from napari_al.core.project import import_into

    options: dict[str, Any] = {}
    for flag, key, fmt in (("image_root", "image_root", "coco"), ("images", "image_dir", "voc")):
        if getattr(args, flag, None):
            if args.format != fmt:
                raise CliError(f"--{flag.replace('_', '-')} applies to --format {fmt} only")
            options[key] = getattr(args, flag)
    if args.format == "yolo":  # --skip-bad of every split entry that names images: an error
        options["allow_empty"] = False
    from napari_al.core.formats import FormatError

    with open_store(args.project) as store:
        update, close = progress_bar("importing")
        try:
            dataset, summary = import_into(
                store,
                Path(args.path),
                args.format,
                strict=not args.skip_bad,
                progress=update,
                allow_duplicates=args.allow_duplicates,
                **options,
            )
        except FormatError as exc:
            if args.skip_bad or not getattr(exc, "skippable", False):
                raise
            raise CliError(
                f"{exc}; nothing imported (--skip-bad imports the rest and names what it left out)"
            ) from None
        finally:
            close()
    _print_import(summary, Path(args.path), n_read=len(dataset.images))
    return 0


def _print_import(summary: dict, source: Path, n_read: int | None = None) -> None:
    """What an import added, and every image or file it left out, and why (stderr)."""
    for line in summary.get("warnings", []):
        say("warning", line)
    added, boxes = summary["images_added"], summary["boxes_added"]
    line = f"imported {counted(added, 'image')} and {counted(boxes, 'box')} from "
    line += shown(str(source))
    if summary.get("images_labelled"):
        n = summary["images_labelled"]
        line += (
            f"; {n} of the images {'was' if n == 1 else 'were'} already in the project, "
            f"unreviewed, and now {'has its' if n == 1 else 'have their'} labels"
        )
    if summary.get("ignore_regions_added"):
        line += f"; {counted(summary['ignore_regions_added'], 'ignore region')}"
    if summary.get("reviewed_regions_added"):
        line += f"; {counted(summary['reviewed_regions_added'], 'reviewed region')}"
    lost = summary.get("lost_objects", 0)
    if summary.get("partial", 0) > lost:
        line += (
            f"; {counted(summary['partial'] - lost, 'image')} partly reviewed, as the dataset "
            "marks them"
        )
    if n_read == 0:  # nothing readable: every image skipped (warned above), or none at all
        skipped = " (no image in it could be read: see the warnings above)"
        line += skipped if summary.get("warnings") else " (it holds no image)"
    print(line)
    if lost:
        print(
            f"warning: {counted(lost, 'image')} lost objects that could not be read; they are "
            "partly reviewed, so their unlabelled area is not taken as background",
            file=sys.stderr,
        )
    from napari_al.core.project import left_out_lines

    for line in left_out_lines(summary):
        say("warning", line)


def _partial_left_out(store: Any, dataset: Any) -> str:
    """A line for the partly reviewed images with human boxes and no reviewed region that an
    export without --all left out (an import that skipped a bad object makes its image partly
    reviewed); ``""`` when there are none."""
    from napari_al.core.data import HUMAN_STATUSES

    exported = {str(im.path) for im in dataset.images}
    left = [
        (row, len(store.boxes(row.id, HUMAN_STATUSES)))
        for row in store.images(review_state="partial")
        # an image with reviewed regions left out (YOLO) has its own note and advice
        if str(store.abs_path(row)) not in exported and not store.reviewed_regions(row.id)
    ]
    left = [(row, n) for row, n in left if n]
    if not left:
        return ""
    n_boxes = counted(sum(n for _, n in left), "human box")
    return (
        f"left out {counted(len(left), 'partly reviewed image')} ({n_boxes}, e.g. "
        f"{shown(Path(left[0][0].path).name)}): mark them complete in napari (or mark their "
        "reviewed regions complete) to export them, or pass --all"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from napari_al.core.formats import ExportFileError, ExportIntoProjectError
    from napari_al.core.project import export_dataset

    if args.copy_images and args.format == "coco":
        raise CliError("--copy-images applies to --format voc and yolo only")
    with open_store(args.project, reads_only=True) as store:
        try:
            dataset = export_dataset(
                store,
                Path(args.out),
                args.format,
                overwrite=args.force,
                only_reviewed=not args.all,
                copy_images=True if args.copy_images else None,
            )
        except FileExistsError as exc:
            target = exc.filename or str(exc).split(":")[0]
            raise CliError(f"{target} already exists; pass --force to overwrite it") from exc
        except (NotADirectoryError, ExportIntoProjectError) as exc:
            raise CliError(str(exc)) from exc
        except ExportFileError as exc:  # refused by the file system: OUT, cause and fix
            raise CliError(str(exc)) from exc
        except shutil.SameFileError as exc:  # --copy-images onto the images themselves
            raise CliError(
                f"{args.out} holds the project's own images, which --copy-images would copy "
                "onto themselves; choose another output folder"
            ) from exc
        except OSError as exc:  # cannot be made or written: /proc, read-only, a full disk
            why = exc.strerror or str(exc)
            raise CliError(
                f"cannot write the export to {args.out} ({why}); nothing of it was left "
                "there; choose an output folder you can write to, with free space"
            ) from exc
        if not args.all:
            dataset.warnings.append(_partial_left_out(store, dataset))
    for line in filter(None, dataset.warnings):
        say("note", line)
    n_images, n_boxes = counted(len(dataset.images), "image"), counted(dataset.n_boxes, "box")
    print(f"exported {n_images} and {n_boxes} to {shown(str(args.out))}")
    if not dataset.images and not args.all:
        what = "no image is marked complete yet: only complete images are exported to YOLO"
        if args.format != "yolo":
            what = (
                "no image and no region of one is marked complete yet: only complete images "
                "and images with regions marked complete are exported"
            )
        print(f"{what} (--all exports every image with its human labels)", file=sys.stderr)
    return 0


def cmd_add_class(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names]
    if not all(names):
        raise CliError("a class name cannot be empty; give each class a name, e.g. 'cell'")
    with open_store(args.project) as store:
        have = {c.name for c in store.classes()}
        new = [n for n in dict.fromkeys(names) if n not in have]
        with store.transaction():  # one commit for all names
            for name in new:
                store.add_class(name)
        classes = [c.name for c in store.classes()]
        latest = store.latest_model_version()
    kept = sorted(set(names) & have)
    note = f" ({', '.join(kept)} already there)" if kept else ""
    word = "class" if len(new) == 1 else "classes"
    print(f"added {len(new)} {word}{note}; the project's classes: {', '.join(classes)}")
    if new and latest is not None:
        print(
            f"the next training continues model version {latest.id} with output rows for the "
            f"new {word} (napari-al train {shlex.quote(str(args.project))})"
        )
    return 0


def _latest_model(store) -> dict | None:
    """The latest model version: id, mAP@0.5 and the split it was measured on, and its score
    calibration (method, how fitted, ECE before/after); None before the first training."""
    from napari_al.core.workflow import calibration_summary

    row = store.latest_model_version()
    if row is None:
        return None
    m = row.metrics
    return {
        "version": row.id,
        "map50": m.get("map50"),
        "split": m.get("split"),
        "calibration": calibration_summary(m),
    }


def add_info_command(sub: Any) -> None:
    """``napari-al info DIR [--images] [--json]``."""
    p = sub.add_parser("info", help="counts of images, boxes, classes and splits")
    p.add_argument("project", metavar="DIR")
    p.add_argument(
        "--images",
        action="store_true",
        help="also list every image: id, split, review state, size, boxes, stored path (the "
        "id or path 'mark-region-complete' takes)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)


def _image_list(store: Any) -> list[dict[str, Any]]:
    """Per image: id, stored path (relative to the project, or absolute), split, review state,
    width and height (pixels), human and predicted boxes, and the predictions still to review
    (not those in an area marked complete: ``store.predictions_to_review``)."""
    from napari_al.core.data import HUMAN_STATUSES

    human: dict[int, int] = {}
    predicted: dict[int, int] = {}
    to_review: dict[int, int] = {}
    for b in store.boxes():
        if b.status in HUMAN_STATUSES:
            human[b.image_id] = human.get(b.image_id, 0) + 1
        elif b.status == "predicted":
            predicted[b.image_id] = predicted.get(b.image_id, 0) + 1
    for b in store.predictions_to_review():
        to_review[b.image_id] = to_review.get(b.image_id, 0) + 1
    regions: dict[int, int] = {}
    for region in store.reviewed_regions():
        regions[region.image_id] = regions.get(region.image_id, 0) + 1
    return [
        {
            "id": r.id,
            "path": r.path,
            "split": r.split,
            "review_state": r.review_state,
            "width": r.width,
            "height": r.height,
            "human_boxes": human.get(r.id, 0),
            "predicted_boxes": predicted.get(r.id, 0),
            "predictions_to_review": to_review.get(r.id, 0),
            "reviewed_regions": regions.get(r.id, 0),
        }
        for r in store.images()
    ]


def cmd_info(args: argparse.Namespace) -> int:
    with open_store(args.project, reads_only=True) as store:
        info = store.info()
        untouched = store.last_action_id() is None and not info["classes"]
        info["image_files"] = store.check_files()
        info["latest_model"] = _latest_model(store)
        info["partial_checkpoints"] = _partial_checkpoints(store)
        if getattr(args, "images", False):
            info["image_list"] = _image_list(store)
        fix = calibration_fix(store, args.project)
    if args.json:
        print(json_text(info, indent=2, sort_keys=True))
        return 0
    st = info["boxes_by_status"]
    print(f"project: {shown(str(Path(args.project).resolve()))}")
    print(f"images: {info['images']}")
    settled = info["predicted_boxes"] - info["predictions_to_review"]
    print(
        f"boxes: {info['human_boxes']} human (accepted, corrected, drawn), "
        f"{counted(info['predictions_to_review'], 'prediction')} still to review"
        + (f" ({settled} more in areas marked complete, not to review)" if settled else "")
        + f", {st['rejected']} rejected"
        + (f", {counted(st['pseudo'], 'pseudo label')}" if st["pseudo"] else "")
    )
    print(f"classes: {', '.join(info['classes']) or '(none)'}")
    for key in ("images_by_split", "images_by_review_state", "boxes_by_status"):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(info[key].items()))
        print(f"{key.replace('_', ' ')}: {parts or '-'}")
    parts = ", ".join(f"{k} {v}" for k, v in sorted(info["human_boxes_by_class"].items()))
    print(f"human boxes by class: {parts or '-'}")
    if info["reviewed_regions"]:
        print(f"regions marked complete: {info['reviewed_regions']}")
    model = info["latest_model"]
    if model is not None:
        line = f"latest model: version {model['version']}"
        if model["map50"] is not None:
            line += f", mAP@0.5 {model['map50']:.4f} on {model['split']}"
        if model["calibration"] is not None:
            line += f"; {calibration_line(model['calibration'], fix)}"
        print(line)
    _print_files(info["image_files"])
    _print_partial(info["partial_checkpoints"], args.project)
    if "image_list" in info:
        _print_images(info["image_list"])
    if untouched and not info["images"]:
        q = shlex.quote(str(args.project))
        say(
            "note",
            "the project holds nothing yet: if its init was interrupted, run "
            f"'napari-al init {q}' again (it imports the folder's images); else import data: "
            f"'napari-al import {q} --format images FOLDER' (or voc, coco, yolo)",
        )
    return 0


def _partial_checkpoints(store) -> dict[str, Any]:
    """The temporary files that checkpoint saves killed before their rename left in the
    project's ``models/`` (``files``: names, ``bytes``: their size together, ``held_by``: the
    pid of the run holding the project now, whose save may be one of them, or None)."""
    from napari_al.core.atomic_files import partial_writes, total_bytes
    from napari_al.core.store.lock import holder
    from napari_al.core.workflow.model import MODELS_DIR

    paths = partial_writes(Path(store.project_dir) / MODELS_DIR)
    run = holder(store.project_dir) if paths else None
    return {
        "files": [p.name for p in paths],
        "bytes": total_bytes(paths),
        "held_by": None if run is None else run.get("pid"),
    }


def _print_partial(partial: dict[str, Any], project: str) -> None:
    """A warning naming the temporary files of killed checkpoint saves, and the fix."""
    files = partial["files"]
    if not files:
        return
    n = len(files)
    what = (
        f"models/ holds {counted(n, 'temporary file')} of checkpoint saves that were "
        f"killed before they finished ({partial['bytes'] / 1e6:.0f} MB, e.g. {shown(files[0])})"
    )
    train = f"napari-al train {shlex.quote(str(project))}"
    if partial["held_by"] is None:
        fix = f"nothing reads them: the next '{train}' removes them, or delete them now"
    else:
        fix = (
            f"a run holds the project now (pid {partial['held_by']}), whose save may be one of "
            f"them; the next '{train}' removes those left"
        )
    say("warning", f"{what}; {fix}")


def _print_images(images: list[dict[str, Any]]) -> None:
    """The table of ``info --images``: a header, then one aligned row per image."""
    head = ("id", "split", "state", "size (px)", "human", "to review", "regions", "path")
    rows = [
        (
            str(im["id"]),
            im["split"],
            im["review_state"],
            f"{im['width']}x{im['height']}",
            str(im["human_boxes"]),
            str(im["predictions_to_review"]),
            str(im["reviewed_regions"]),
            shown(im["path"]),
        )
        for im in images
    ]
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head) - 1)]
    for r in [head, *rows]:
        cells = [
            c.rjust(w) if k in (0, 4, 5, 6) else c.ljust(w)
            for k, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
        ]
        print("  ".join([*cells, r[-1]]))


def _print_files(files: dict, first: int = 3) -> None:
    """The image-file check of ``napari-al info``: counts, the first few paths, what was
    checked (stdout when all is well, else a warning on stderr)."""
    checked = (
        "checked: each file exists and its header reads, a TIFF's data lies inside the file; "
        "pixels not decoded"
    )
    missing, unreadable, n = files["missing"], files["unreadable"], files["checked"]
    if not missing and not unreadable:
        print(f"image files: all {n} found and readable ({checked})")
        return
    problems = []
    if missing:
        names = ", ".join(shown(p) for p in missing[:first])
        names += ", ..." if len(missing) > first else ""
        problems.append(f"{len(missing)} missing ({names})")
    if unreadable:
        names = ", ".join(f"{shown(u['path'])}: {escaped(u['reason'])}" for u in unreadable[:first])
        more = ", ..." if len(unreadable) > first else ""
        problems.append(f"{len(unreadable)} unreadable ({names}{more})")
    print(
        f"warning: image files: {'; '.join(problems)} of {n} ({checked}); training and "
        "prediction skip them: put good copies back where the project expects them",
        file=sys.stderr,
    )
