"""``napari-al mark-region-complete``: region-level completeness of a large image (issue 14),
the command-line twin of "mark image complete" for one rectangle
(:func:`napari_al.core.workflow.mark_region_complete`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from napari_al.cli.common import CliError, counted, open_store
from napari_al.core.names import shown


def add_review_commands(sub: Any) -> None:
    """The ``mark-region-complete`` subcommand."""
    p = sub.add_parser(
        "mark-region-complete",
        help="every object in a rectangle of a (large) image is labelled: it trains there",
        description="Mark a rectangle of an image complete: every object in it is labelled. "
        "An image larger than the tiling threshold (4096 px a side) trains in crops of the "
        "model's input size from its complete regions; the rest of it is neither object nor "
        "background (docs/large-images.md). One undoable action, as in napari.",
    )
    p.add_argument("project", metavar="DIR")
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="the image: its id or its path as stored in the project (both listed by "
        "'napari-al info DIR --images'), or a file path",
    )
    p.add_argument(
        "--xyxy",
        nargs=4,
        type=float,
        required=True,
        action="append",  # a second --xyxy is refused, not silently the only one marked
        metavar=("X0", "Y0", "X1", "Y1"),
        help="the rectangle, image pixels: left, top, right, bottom (x to the right, y down); "
        "a part outside the image is clipped off",
    )
    p.set_defaults(func=cmd_mark_region_complete)


def find_image(store: Any, project: str, image: str) -> Any:
    """The image row named by ``image``: a path as stored, a path relative to ``project`` or
    to the working folder, or an id. CliError naming what to give instead."""
    from napari_al.core.store import StoreError

    for candidate in (image, Path(project) / image, Path(image).resolve()):
        row = store.image_by_path(candidate)
        if row is not None:
            return row
    if image.isdigit():
        try:
            return store.image(int(image))
        except StoreError:
            pass
    raise CliError(
        f"{image}: no such image in the project {project}; give its id or its path as stored "
        f"(both listed by 'napari-al info {shlex.quote(str(project))} --images')"
    )


def _numbers(values: Any) -> str:
    return ", ".join(f"{float(v):g}" for v in values)


def cmd_mark_region_complete(args: argparse.Namespace) -> int:
    from napari_al.core import workflow
    from napari_al.core.annotator import Annotator

    if len(args.xyxy) > 1:
        raise CliError(
            f"--xyxy given {len(args.xyxy)} times: one region per command; run "
            "mark-region-complete once for each region (nothing was marked)"
        )
    args.xyxy = args.xyxy[0]
    with open_store(args.project) as store:
        row = find_image(store, args.project, args.image)
        annotator = Annotator(store)
        command = workflow.mark_region_complete(annotator, row.id, args.xyxy)
        area = workflow.image_reviewed_area(store, row.id)
        left = (
            0
            if command is None
            else workflow.unreviewed_in_region(annotator, row.id, command.region_after.xyxy)
        )
        state = store.image(row.id).review_state
    if command is None:
        if row.review_state == "complete":
            print(f"{shown(row.path)} is already complete: every region of it is reviewed")
        else:
            x1, y1, x2, y2 = args.xyxy
            inside = (max(x1, 0), max(y1, 0), min(x2, row.width), min(y2, row.height))
            print(
                f"nothing to do: [{_numbers(inside)}] (the rectangle within the image) lies in "
                f"a region of {shown(row.path)} already marked complete"
            )
        return 0
    box = _numbers(command.region_after.xyxy)
    if any(abs(a - b) > 1e-6 for a, b in zip(command.region_after.xyxy, args.xyxy, strict=True)):
        asked = _numbers(args.xyxy)
        print(
            f"note: [{asked}] reaches past the {row.width}x{row.height} px image; "
            f"clipped to [{box}]",
            file=sys.stderr,
        )
    if left:
        print(
            f"note: {counted(left, 'prediction')} in [{box}] not reviewed: in a complete region "
            f"{'it trains' if left == 1 else 'they train'} as background, not as objects; "
            f"accept the right {'one' if left == 1 else 'ones'} in the viewer (W)",
            file=sys.stderr,
        )
    if state == "complete":
        print(f"marked [{box}], the whole of {shown(row.path)}, complete: the image is complete")
        return 0
    regions = f"{len(area)} complete region{'' if len(area) == 1 else 's'}"
    print(f"marked [{box}] of {shown(row.path)} complete ({regions} on this image)")
    tiles = workflow.TileSettings()
    if max(row.width, row.height) <= tiles.tile_above:
        print(
            f"note: {shown(row.path)} is {row.width}x{row.height} px, at most "
            f"{tiles.tile_above} px a side, so it trains whole and by its review state; its "
            "complete regions take effect only on images trained in crops (docs/large-images.md)",
            file=sys.stderr,
        )
    return 0


def examples_text(outcome: Any) -> str:
    """What a training run trained on, in words: ``3 images``, or ``3 images and 40 crops of
    1 large image`` (a :class:`~napari_al.core.workflow.TrainOutcome`)."""
    whole = outcome.n_examples - outcome.crops
    text = f"{whole} images"
    if outcome.crops:
        s = "s" if outcome.crop_images != 1 else ""
        text += f" and {outcome.crops} crops of {outcome.crop_images} large image{s}"
    return text
