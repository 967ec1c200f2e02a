"""Large-image benchmark: a mosaic of BCCD test images, imported and predicted tile by tile.

Builds a ``grid x grid`` mosaic of BCCD ``test`` images (640 x 480 px each; 30 x 30 gives
19,200 x 14,400 px, 20,160 x 15,360 px with 32 px gutters, issue 14; the 72 test
images are repeated in a seeded order), written as a tiled (512 px), pyramidal (SubIFDs, each
level half the one above), zlib-compressed RGB TIFF, never whole in memory, with the images'
boxes shifted into mosaic pixels (``OUT/mosaic_boxes.json``). ``--gutter PX`` puts the
placements that many pixels apart, mid-grey (the value a detector normalising with mean 0.5
pads an image's border with), to tell apart what the mosaic's joins cost from what tiling
costs (BCCD leaves most cells cut by an image's border unlabelled; side by side, a neighbour's
pixels can make them look whole); by default there is none (``docs/large-images.md``, runs
3-6: once the pieces of large objects were joined, the mosaic without gutters came closest).
Then, each step in its own process so that its peak RSS is its
own (``os.wait4``'s ``ru_maxrss``):

1. **import**: ``napari-al init OUT/project`` on the folder holding the mosaic, then
   ``napari-al add-class`` with the model's classes;
2. **predict**: ``workflow.predict_images`` on the mosaic (tile by tile at the model's native
   scale, ``--overlap`` px; ``docs/large-images.md``; tiled whatever ``--grid``: the benchmark
   sets ``TileSettings.tile_above`` to one image's side), timed;
3. **separate**: the same model on the distinct test images of the mosaic, whole, timed two
   ways and scaled to the mosaic's placements: through ``workflow.predict_images`` on a project
   of those images (``OUT/separate-project``, imported like the mosaic), so reading the files
   and storing the boxes count on both sides, as they do in the predict step (the sum of
   per-image times the ratio uses); and the forward passes alone (``Detector.predict`` in
   batches of 4, reading untimed; runs 1-12 of ``docs/large-images.md`` used only this,
   against which the mosaic's reading and storing counted as prediction time);
4. **display**: the project opened in a napari viewer through the widget, as a person opens
   it (under ``xvfb-run`` when there is no display): the mosaic fitted to the canvas, then
   views at full resolution and at 1/4 on a few places, each drawn (a canvas screenshot); the
   image layer is multiscale when the mosaic reads lazily (over 4096 x 4096 px: ``--grid`` 8
   or more), read window by window. Peak RSS and times.

mAP@0.5 (pycocotools, :func:`napari_al.core.evaluation.evaluate`) of the mosaic's predictions
is computed per placement: each predicted box goes to the placement holding its centre, in that
image's pixels, against the image's own boxes (a mosaic of 12,000 boxes as one COCO image would
need a 30,000 x 12,000 IoU matrix). The separate images are evaluated on the same placements
(each distinct image's predictions repeated), so both sides have the same ground truth.

The model: ``--checkpoint PATH`` (a ``napari-al`` checkpoint, e.g. ``PROJECT/models/...pt``),
else one trained here once on BCCD ``train`` with the workflow's defaults for a new model
(coco-mnv2 weights, input 480 x 640, ``--steps``), kept as ``OUT/model.pt``.

Examples::

    python benchmarks/mosaic.py --out bench-out/mosaic --grid 3 --steps 20   # a quick check
    python benchmarks/mosaic.py --out bench-out/mosaic --device cuda --json mosaic.json

Needs ../shared/datasets/bccd (``--data``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: BCCD image size, pixels (every image is 640 x 480).
CELL_W, CELL_H = 640, 480
#: Tile side of the written TIFF, pixels.
TIFF_TILE = 512
#: Default gutter between placements, pixels (``--gutter``; module docstring).
GUTTER = 0
#: Its grey level: 128 is what a detector normalising with mean 0.5 (the default weights) pads
#: an image's border with (zero after normalisation), so a placement's border looks like one.
GUTTER_VALUE = 128


# ---- the mosaic ---------------------------------------------------------------------------


def _test_images(data: Path) -> tuple[list[str], list[Any]]:
    from napari_al.core.formats import read_dataset

    ds = read_dataset(data, "voc")
    test = sorted((im for im in ds.images if im.split == "test"), key=lambda im: str(im.path))
    if not test:
        raise SystemExit(f"{data}: no test split (ImageSets/Main/test.txt)")
    bad = [im.path for im in test if (im.width, im.height) != (CELL_W, CELL_H)]
    if bad:
        raise SystemExit(f"{bad[0]}: not {CELL_W} x {CELL_H} px; the mosaic needs equal cells")
    return list(ds.classes), test


def _levels(grid: int, gutter: int) -> int:
    """Reduced pyramid levels: halve while the level stays over one tile and cells and
    gutters divide."""
    n, h = 0, grid * (CELL_H + gutter)
    sides = (CELL_H, CELL_W, gutter)
    while h // 2 >= TIFF_TILE and all(v % (2 ** (n + 1)) == 0 for v in sides):
        n, h = n + 1, h // 2
    return n


def _cell_pixels(paths: list[Path], level: int) -> dict[Path, np.ndarray]:
    from PIL import Image

    from napari_al.core.workflow import load_rgb

    out = {}
    for p in dict.fromkeys(paths):
        img = load_rgb(p)
        if level:
            size = (CELL_W >> level, CELL_H >> level)
            img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))
        out[p] = img
    return out


def _tiles(
    placed: list[list[Path]], level: int, gutter: int, value: int = GUTTER_VALUE
) -> Iterator[np.ndarray]:
    """The level's tiles, row by row, composed one band of tile rows at a time; each
    placement's pixels at its pitch (cell + gutter), the gutters grey ``value``."""
    grid = len(placed)
    ch, cw = CELL_H >> level, CELL_W >> level
    ph, pw = (CELL_H + gutter) >> level, (CELL_W + gutter) >> level
    height, width = grid * ph, grid * pw
    pixels = _cell_pixels([p for row in placed for p in row], level)
    for y0 in range(0, height, TIFF_TILE):
        band = np.full((TIFF_TILE, -(-width // TIFF_TILE) * TIFF_TILE, 3), value, np.uint8)
        for r in range(y0 // ph, min(grid, -(-(y0 + TIFF_TILE) // ph))):
            top, bottom = max(y0, r * ph), min(y0 + TIFF_TILE, r * ph + ch, height)
            if bottom <= top:  # this band holds only the row's gutter
                continue
            for c in range(grid):
                img = pixels[placed[r][c]]
                band[top - y0 : bottom - y0, c * pw : c * pw + cw] = img[
                    top - r * ph : bottom - r * ph
                ]
        for x0 in range(0, width, TIFF_TILE):
            yield band[:, x0 : x0 + TIFF_TILE]


def build_mosaic(data: Path, out: Path, grid: int, seed: int, gutter: int) -> dict[str, Any]:
    """Write ``out/project/mosaic.tif`` and ``out/mosaic_boxes.json``; returns the latter."""
    import tifffile

    classes, test = _test_images(data)
    order = np.random.default_rng(seed).permutation(len(test))
    recs = [test[order[i % len(test)]] for i in range(grid * grid)]
    placed = [[Path(recs[r * grid + c].path) for c in range(grid)] for r in range(grid)]
    (out / "project").mkdir(parents=True, exist_ok=True)
    path = out / "project" / "mosaic.tif"
    levels = _levels(grid, gutter)
    ph, pw = CELL_H + gutter, CELL_W + gutter
    opts = {"tile": (TIFF_TILE, TIFF_TILE), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in range(levels + 1):
            shape = (grid * (ph >> level), grid * (pw >> level), 3)
            extra = {"subifds": levels} if level == 0 else {"subfiletype": 1}
            tw.write(_tiles(placed, level, gutter), shape=shape, dtype=np.uint8, **opts, **extra)
    cells = []
    for i, rec in enumerate(recs):
        r, c = divmod(i, grid)
        cells.append(
            {
                "image": str(rec.path),
                "row": r,
                "col": c,
                "boxes": [[*b.xyxy(), b.label] for b in rec.boxes],
                "ignore": [list(b.xyxy()) for b in rec.ignore_regions],
            }
        )
    shift = [[c["col"] * pw, c["row"] * ph] for c in cells]
    meta = {
        "classes": classes,
        "grid": grid,
        "gutter": gutter,
        "width": grid * pw,
        "height": grid * ph,
        "levels": levels + 1,
        "file_bytes": path.stat().st_size,
        "cells": cells,
        "boxes_in_mosaic": [
            [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy, b[4]]
            for cell, (dx, dy) in zip(cells, shift, strict=True)
            for b in cell["boxes"]
        ],
    }
    (out / "mosaic_boxes.json").write_text(json.dumps(meta))
    return meta


# ---- steps, each in its own process ---------------------------------------------------------


def _run(argv: list[str]) -> tuple[int, float, float]:
    """Run a child process; (exit status, wall seconds, peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024.0


def _checkpoint_classes(path: Path) -> list[str]:
    from napari_al.core.engine import read_checkpoint_metadata

    return list(read_checkpoint_metadata(path)["config"]["classes"])


def step_train(args: argparse.Namespace) -> None:
    """Train a model on BCCD train with the workflow's defaults for a new model."""
    from napari_al.core import workflow
    from napari_al.core.engine import save_checkpoint
    from napari_al.core.formats import read_dataset
    from napari_al.core.store import ProjectStore

    work = Path(args.out) / "train-project"
    shutil.rmtree(work, ignore_errors=True)
    ds = read_dataset(Path(args.data), "voc")
    ds.images = [im for im in ds.images if im.split == "train"]
    with ProjectStore.create(work) as store:
        store.import_dataset(ds)
        settings = workflow.ModelSettings(device=args.device)
        detector = workflow.load_model(store, settings)
        workflow.train_model(store, detector, workflow.TrainSettings(steps=args.steps))
    save_checkpoint(detector, Path(args.out) / "model.pt")


def step_predict(args: argparse.Namespace) -> None:
    """Predict the mosaic through the workflow; write times, RSS and boxes to JSON."""
    import resource

    from napari_al.core import workflow
    from napari_al.core.engine import load_checkpoint
    from napari_al.core.store import ProjectStore

    detector, _ = load_checkpoint(args.checkpoint, device=args.device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # tiled even when --grid makes the mosaic smaller than the workflow's threshold
    tiles = workflow.TileSettings(
        tile_above=max(CELL_W, CELL_H), overlap=args.overlap, window_scale=args.window_scale
    )
    last = [0.0]

    def tile_progress(image_id: int, done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            print(f"  mosaic: {done}/{total} tiles", file=sys.stderr, flush=True)

    with ProjectStore.open(Path(args.out) / "project") as store:
        t0 = time.perf_counter()
        done = workflow.predict_images(store, detector, tiles=tiles, tile_progress=tile_progress)
        seconds = time.perf_counter() - t0
        names = {c.id: c.name for c in store.classes()}
        boxes = [
            [*b.xyxy, names[b.class_id], b.score]
            for i in done
            for b in store.boxes(image_id=i, statuses=("predicted",))
        ]
    result = {"seconds": seconds, "rss_before_mb": before, "boxes": boxes, "images": done}
    (Path(args.out) / "predict.json").write_text(json.dumps(result))


def step_separate(args: argparse.Namespace) -> None:
    """The same model on the distinct images of the mosaic, whole; times and boxes to JSON."""
    from napari_al.core import workflow
    from napari_al.core.engine import load_checkpoint
    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow import load_rgb

    meta = json.loads((Path(args.out) / "mosaic_boxes.json").read_text())
    paths = list(dict.fromkeys(c["image"] for c in meta["cells"]))
    detector, _ = load_checkpoint(args.checkpoint, device=args.device)
    classes = detector.classes
    with ProjectStore.open(Path(args.out) / "separate-project") as store:
        t0 = time.perf_counter()
        done = workflow.predict_images(store, detector)
        workflow_seconds = time.perf_counter() - t0
    if len(done) != len(paths):
        raise SystemExit(f"separate-project: predicted {len(done)} images, not {len(paths)}")
    seconds, preds = 0.0, {}
    for start in range(0, len(paths), 4):
        chunk = paths[start : start + 4]
        images = [load_rgb(p) for p in chunk]  # reading is not timed (nor in the mosaic's tiles)
        t0 = time.perf_counter()
        out = detector.predict(images, batch_size=4)
        seconds += time.perf_counter() - t0
        for p, pred in zip(chunk, out, strict=True):
            preds[p] = [
                [*map(float, pred.boxes[i]), classes[int(pred.labels[i])], float(pred.scores[i])]
                for i in range(len(pred))
            ]
    result = {
        "seconds": workflow_seconds,
        "forward_seconds": seconds,
        "images": len(paths),
        "predictions": preds,
    }
    (Path(args.out) / "separate.json").write_text(json.dumps(result))


#: The views the display step draws after fitting the mosaic: (centre x, centre y as fractions
#: of the mosaic's width and height, zoom: screen px per image px).
DISPLAY_VIEWS = [(0.5, 0.5, 1.0), (0.1, 0.9, 1.0), (0.9, 0.1, 0.25), (0.3, 0.6, 0.25)]


def step_display(args: argparse.Namespace) -> None:
    """Open the project in a napari viewer with the widget and draw a few views of the mosaic;
    times, levels and peak RSS to JSON."""
    import resource

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_al.gui.widget import ActiveLearningWidget

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    before = peak_mb()
    t0 = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    widget = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Active learning", area="right")
    widget.open_project(Path(args.out) / "project")
    QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)  # drawn: the fitted mosaic
    open_s = time.perf_counter() - t0
    view = widget.controller.view
    layer = view.image_layer
    assert layer is not None and view.image_row is not None
    width, height = view.image_row.width, view.image_row.height
    views = []
    for fx, fy, zoom in DISPLAY_VIEWS:
        t1 = time.perf_counter()
        camera = viewer.scene.camera
        camera.center = (fy * height, fx * width)
        camera.zoom = zoom
        QApplication.processEvents()
        viewer.screenshot(canvas_only=True, flash=False)
        views.append({"zoom": zoom, "level": int(layer.data_level), "s": time.perf_counter() - t1})
    result = {
        "open_s": open_s,
        "views": views,
        "multiscale": bool(layer.multiscale),
        "levels": [list(level.shape) for level in layer.data] if layer.multiscale else [],
        "rss_before_mb": before,
        "rss_peak_mb": peak_mb(),
    }
    widget.close_project()
    viewer.close()
    (Path(args.out) / "display.json").write_text(json.dumps(result))


def _display_argv(argv: list[str]) -> list[str]:
    """``argv`` under ``xvfb-run`` when there is no display (the viewer needs one)."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return argv
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        raise SystemExit("the display step needs a display, or xvfb-run (apt install xvfb)")
    return [xvfb, "-a", "-s", "-screen 0 1600x1000x24", *argv]


# ---- evaluation and report ----------------------------------------------------------------


def _per_placement(meta: dict[str, Any], boxes: list[list[Any]]) -> list[list[list[Any]]]:
    """Mosaic boxes split by the placement holding their centre, in that image's pixels."""
    grid, gutter = meta["grid"], meta.get("gutter", 0)
    pw, ph = CELL_W + gutter, CELL_H + gutter
    out: list[list[list[Any]]] = [[] for _ in meta["cells"]]
    for x1, y1, x2, y2, label, score in boxes:
        c = min(grid - 1, max(0, int((x1 + x2) / 2 // pw)))
        r = min(grid - 1, max(0, int((y1 + y2) / 2 // ph)))
        dx, dy = c * pw, r * ph
        out[r * grid + c].append([x1 - dx, y1 - dy, x2 - dx, y2 - dy, label, score])
    return out


def _map50(meta: dict[str, Any], per_cell: list[list[list[Any]]]) -> float:
    from napari_al.core.evaluation import evaluate

    classes = meta["classes"]
    index = {c: i for i, c in enumerate(classes)}

    def arrays(rows: list[list[Any]], scored: bool) -> tuple:
        b = np.asarray([r[:4] for r in rows], np.float64).reshape(-1, 4)
        lab = np.asarray([index[r[4]] for r in rows], np.int64)
        return (b, lab, np.asarray([r[5] for r in rows], np.float64)) if scored else (b, lab)

    gts = [
        (*arrays(c["boxes"], False), np.asarray(c["ignore"]).reshape(-1, 4)) for c in meta["cells"]
    ]
    preds = [arrays(rows, True) for rows in per_cell]
    return float(evaluate(gts, preds, classes).map50)


def report(meta: dict[str, Any], runs: dict[str, Any], out: Path) -> dict[str, Any]:
    pred = json.loads((out / "predict.json").read_text())
    sep = json.loads((out / "separate.json").read_text())
    disp = json.loads((out / "display.json").read_text())
    n_cells = len(meta["cells"])
    sep_sum = sep["seconds"] * n_cells / sep["images"]
    forward_sum = sep["forward_seconds"] * n_cells / sep["images"]
    mosaic_map = _map50(meta, _per_placement(meta, pred["boxes"]))
    separate_map = _map50(meta, [sep["predictions"][c["image"]] for c in meta["cells"]])
    rows = {
        "mosaic": f"{meta['width']} x {meta['height']} px ({meta['grid']} x {meta['grid']} "
        f"images, {meta.get('gutter', 0)} px gutters), {meta['levels']} levels, "
        f"{meta['file_bytes'] / 1e6:.0f} MB on disk, {len(meta['boxes_in_mosaic'])} boxes",
        "import peak RSS": f"{runs['import']['rss_mb']:.0f} MB",
        "prediction peak RSS": f"{runs['predict']['rss_mb']:.0f} MB (model loaded: "
        f"{pred['rss_before_mb']:.0f} MB)",
        "display peak RSS": f"{disp['rss_peak_mb']:.0f} MB (at the step's start: "
        f"{disp['rss_before_mb']:.0f} MB; "
        + (f"multiscale, {len(disp['levels'])} levels" if disp["multiscale"] else "read whole")
        + ")",
        "display time": f"open {disp['open_s']:.1f} s, views "
        + ", ".join(
            f"{v['s']:.2f} s (zoom {v['zoom']}, level {v['level']})" for v in disp["views"]
        ),
        "prediction time": f"{pred['seconds']:.1f} s",
        "sum of per-image times": f"{sep_sum:.1f} s ({sep['images']} distinct images, "
        f"scaled to {n_cells} placements; read, predicted and stored as the mosaic)",
        "time ratio": f"{pred['seconds'] / sep_sum:.2f}x",
        "sum of per-image forward passes": f"{forward_sum:.1f} s (batches of 4, reading "
        f"untimed; ratio {pred['seconds'] / forward_sum:.2f}x)",
        "mAP@0.5 mosaic": f"{mosaic_map:.3f}",
        "mAP@0.5 separate images": f"{separate_map:.3f}",
        "mAP@0.5 difference": f"{mosaic_map - separate_map:+.3f}",
    }
    print("\n| measure | value |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v} |")
    return {
        "grid": meta["grid"],
        "gutter": meta.get("gutter", 0),
        "overlap": runs["overlap"],
        "window_scale": runs.get("window_scale", 1.0),
        "import_rss_mb": runs["import"]["rss_mb"],
        "predict_rss_mb": runs["predict"]["rss_mb"],
        "predict_rss_before_mb": pred["rss_before_mb"],
        "predict_s": pred["seconds"],
        "display_rss_mb": disp["rss_peak_mb"],
        "display_multiscale": disp["multiscale"],
        "display_open_s": disp["open_s"],
        "display_views_s": [v["s"] for v in disp["views"]],
        "separate_sum_s": sep_sum,
        "separate_forward_sum_s": forward_sum,
        "map50_mosaic": mosaic_map,
        "map50_separate": separate_map,
        "n_boxes_predicted": len(pred["boxes"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="work folder (mosaic, project, JSON)")
    p.add_argument("--grid", type=int, default=30, help="images per side of the mosaic")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "bccd")
    p.add_argument("--checkpoint", type=Path, help="model (default: train one, OUT/model.pt)")
    p.add_argument("--steps", type=int, default=300, help="training steps of that model")
    p.add_argument(
        "--overlap", type=int, default=None, help="tile overlap, px (default: the workflow's)"
    )
    p.add_argument(
        "--window-scale",
        type=float,
        default=None,
        help="prediction windows up to this many times the model's input per side "
        "(default: the workflow's)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per step")
    p.add_argument("--seed", type=int, default=0, help="order of the images in the mosaic")
    p.add_argument("--gutter", type=int, default=GUTTER, help="grey pixels between placements")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--step", choices=("train", "predict", "separate", "display"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.overlap is None:
        from napari_al.core.workflow import TileSettings

        args.overlap = TileSettings().overlap
    if args.window_scale is None:
        from napari_al.core.workflow import TileSettings

        args.window_scale = TileSettings().window_scale
    if args.step:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        steps = {"train": step_train, "predict": step_predict, "separate": step_separate}
        steps["display"] = step_display
        steps[args.step](args)
        return 0
    out = args.out.resolve()
    common = ["--out", str(out), "--data", str(args.data), "--device", args.device]
    common += ["--overlap", str(args.overlap), "--steps", str(args.steps)]
    common += ["--window-scale", str(args.window_scale)]
    common += ["--threads", str(args.threads)] if args.threads else []
    me = [sys.executable, str(Path(__file__).resolve())]
    if args.checkpoint is None:
        args.checkpoint = out / "model.pt"
        if not args.checkpoint.is_file():
            out.mkdir(parents=True, exist_ok=True)
            print(f"training a model on BCCD train ({args.steps} steps) -> {args.checkpoint}")
            if _run([*me, *common, "--step", "train"])[0]:
                return 1
    common += ["--checkpoint", str(args.checkpoint.resolve())]
    shutil.rmtree(out / "project", ignore_errors=True)
    t0 = time.perf_counter()
    meta = build_mosaic(args.data, out, args.grid, args.seed, args.gutter)
    print(
        f"mosaic {meta['width']} x {meta['height']} px written in {time.perf_counter() - t0:.0f} s"
    )
    cli = [sys.executable, "-m", "napari_al.cli"]
    runs: dict[str, Any] = {"overlap": args.overlap, "window_scale": args.window_scale}
    code, secs, rss = _run([*cli, "init", str(out / "project")])
    if (
        code
        or _run([*cli, "add-class", str(out / "project"), *_checkpoint_classes(args.checkpoint)])[0]
    ):
        return 1
    runs["import"] = {"seconds": secs, "rss_mb": rss}
    # the distinct images as a project of their own, for the per-image times of the workflow
    separate = out / "separate-project"
    shutil.rmtree(separate, ignore_errors=True)
    separate.mkdir()
    for path in dict.fromkeys(c["image"] for c in meta["cells"]):
        shutil.copy(path, separate / Path(path).name)
    if (
        _run([*cli, "init", str(separate)])[0]
        or _run([*cli, "add-class", str(separate), *_checkpoint_classes(args.checkpoint)])[0]
    ):
        return 1
    for step in ("predict", "separate", "display"):
        argv = [*me, *common, "--step", step]
        code, secs, rss = _run(_display_argv(argv) if step == "display" else argv)
        if code:
            return 1
        runs[step] = {"seconds": secs, "rss_mb": rss}
    figures = report(meta, runs, out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
