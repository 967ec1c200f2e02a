"""Learning curve of image-level drawing on BCCD: test mAP@0.5 against labelled images.

What the simulated-oracle benchmark needs to know before its schedule is chosen: how mAP@0.5
grows with the number of fully drawn images when each model is trained from the ImageNet
backbone for a fixed number of steps, and how much a short schedule (few steps, half-size
input) costs against a longer one. Each cell trains a fresh detector on a random subset of
BCCD ``train`` (nested subsets per seed: the 10 images of seed s are among its 20) and
evaluates on BCCD ``test``. Prints a Markdown table; cost is the simulator's drawing price
(7 s per box, ``napari_al.core.costs``).

Examples::

    python benchmarks/learning_curve.py --images 10,20,40,205 --steps 100,400 --seeds 3
    python benchmarks/learning_curve.py --device cuda --workers 4 --sizes 240,480 --json lc.json
    python benchmarks/learning_curve.py --weights imagenet,coco-mnv2 --images 5,10,20,40 --steps 200

``--weights`` takes weight sources (``docs/weights.md``): imagenet, coco-mnv2, torchvision-coco
(not for the default architecture), weights files, or auto (the default: the architecture's
default source, coco-mnv2 for the default architecture), comma-separated; each is a row group.

Cells run in ``--workers`` processes (``--threads`` torch threads each on the CPU).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from napari_al.core.costs import CostModel  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _stages(text: str) -> int | None:
    """A ``--trainable`` variant: "default" (the detector's default), "all" or 0-5."""
    text = text.strip()
    if text == "default":
        return None
    return 5 if text == "all" else int(text)


def _load(data: Path) -> tuple[list[str], list[Any], list[Any]]:
    from napari_al.core.formats import read_dataset

    ds = read_dataset(data, "voc")
    images = sorted((im for im in ds.images if im.annotated), key=lambda im: str(im.path))
    train = [im for im in images if im.split == "train"]
    test = [im for im in images if im.split == "test"]
    if not train or not test:
        raise SystemExit(f"{data}: needs train and test split files")
    return list(ds.classes), train, test


def _cell(job: dict[str, Any]) -> dict[str, Any]:
    """Train one detector on ``n`` random train images for ``steps`` steps; test mAP."""
    import torch

    from napari_al.core.engine import Detector, TrainingExample, train
    from napari_al.core.engine.training import default_lr
    from napari_al.core.evaluation import evaluate
    from napari_al.core.workflow import load_rgb

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    classes, train_recs, test_recs = _load(Path(job["data"]))
    order = np.random.default_rng(job["seed"]).permutation(len(train_recs))
    chosen = [train_recs[i] for i in order[: job["images"]]]
    index = {c: i for i, c in enumerate(classes)}
    examples = [
        TrainingExample(
            path=r.path,
            boxes=np.asarray([b.xyxy() for b in r.boxes], np.float32).reshape(-1, 4),
            labels=np.asarray([index[b.label] for b in r.boxes], np.int64),
            loader=load_rgb,
        )
        for r in chosen
    ]
    det = Detector(
        classes,
        job["arch"],
        weights=None if job["weights"] == "auto" else job["weights"],
        min_size=job["size"],
        max_size=round(job["size"] * 4 / 3),
        device=job["device"],
        seed=job["seed"],
        rpn_proposals_train=job["rpn_train"],
        rpn_proposals_test=job["rpn_test"],
        box_batch_size_per_image=job["roi_batch"],
        trainable_backbone_layers=job["trainable"],
        anchor_sizes=job["anchors"],
    )
    t0 = time.perf_counter()
    lr = job["lr"] or default_lr(det)  # default: the weight source's few-label schedule
    res = train(
        det,
        examples,
        steps=job["steps"],
        batch_size=job["batch"],
        seed=job["seed"],
        augment=job["augment"],
        lr=lr,
    )
    train_s = time.perf_counter() - t0
    test_imgs = [load_rgb(r.path) for r in test_recs]
    preds = []
    for i in range(0, len(test_imgs), 4):
        preds.extend(det.predict(test_imgs[i : i + 4], batch_size=4))
    gts = [
        (
            np.asarray([b.xyxy() for b in r.boxes], np.float32).reshape(-1, 4),
            np.asarray([index[b.label] for b in r.boxes], np.int64),
        )
        for r in test_recs
    ]
    ev = evaluate(gts, preds, classes)
    boxes = sum(len(r.boxes) for r in chosen)
    return {
        **{
            k: job[k]
            for k in ("weights", "images", "steps", "size", "seed", "augment", "trainable")
        },
        "lr": lr,
        "data": Path(job["data"]).name,
        "boxes": boxes,
        "draw_s": boxes * CostModel().draw_s,
        "map50": float(ev.map50),
        "map": float(ev.map),
        "train_s": train_s,
        "step_s": train_s / max(1, res.steps),
        "device": str(det.device),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    """The Markdown table of cells: one row per setting and image count, over seeds."""
    print(
        "| data | weights | input | steps | lr | augment | stages | images | boxes | drawing s "
        "| mAP@0.5 (mean +- sd) | AP | s/step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def key(r: dict[str, Any]) -> tuple:
        return (
            r.get("data", "bccd"),
            r["weights"],
            r["size"],
            r["steps"],
            r["lr"] or 0,
            r.get("augment", "hflip"),
            -1 if r.get("trainable") is None else r["trainable"],
            r["images"],
        )

    for k, grp in itertools.groupby(sorted(rows, key=key), key=key):
        g = list(grp)
        m = [r["map50"] for r in g]
        sd = statistics.stdev(m) if len(m) > 1 else 0.0
        print(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4] or 'default'} | {k[5]} | "
            f"{'default' if k[6] < 0 else k[6]} | {k[7]} | "
            f"{statistics.mean(r['boxes'] for r in g):.0f} | "
            f"{statistics.mean(r['draw_s'] for r in g):.0f} | {statistics.mean(m):.3f} +- "
            f"{sd:.3f} | {statistics.mean(r['map'] for r in g):.3f} | "
            f"{statistics.mean(r['step_s'] for r in g):.3f} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "bccd")
    p.add_argument("--images", type=_ints, default=_ints("5,10,20,40,80,205"))
    p.add_argument("--steps", type=_ints, default=_ints("100,400"))
    p.add_argument("--sizes", type=_ints, default=_ints("240"), help="shorter input side")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1"
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument(
        "--lrs", default="", help="peak learning rates (default: the weight source's, default_lr)"
    )
    p.add_argument("--arch", default="fasterrcnn_mobilenet_v2_fpn")
    p.add_argument(
        "--weights",
        default="auto",
        help="weight sources, comma-separated: auto, imagenet, coco-mnv2, torchvision-coco, FILE",
    )
    p.add_argument(
        "--augment",
        action="append",
        default=None,
        help="training augmentations, e.g. hflip,vflip,scale=0.25,colour=0.2 (repeat the flag "
        "for variants; default: hflip)",
    )
    p.add_argument(
        "--trainable",
        default="default",
        help="backbone stages trained, comma-separated variants (0-5, all, default)",
    )
    p.add_argument(
        "--anchors",
        type=_ints,
        default=None,
        help="RPN anchor sizes, one per FPN level, pixels of the resized input "
        "(default 32,64,128,256,512); e.g. 16,32,64,128,256 for small objects",
    )
    p.add_argument("--rpn-train", type=int, default=300)
    p.add_argument("--rpn-test", type=int, default=100)
    p.add_argument("--roi-batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write every cell here")
    p.add_argument(
        "--table",
        type=Path,
        nargs="+",
        default=None,
        help="print the table of these --json files (their cells together) and exit",
    )
    args = p.parse_args(argv)
    if args.table:
        print_table([row for f in args.table for row in json.loads(f.read_text())["rows"]])
        return 0

    jobs = [
        {
            "data": str(args.data),
            "images": n,
            "steps": s,
            "size": z,
            "seed": seed,
            "lr": lr,
            "weights": w,
            "batch": args.batch,
            "arch": args.arch,
            "rpn_train": args.rpn_train,
            "rpn_test": args.rpn_test,
            "roi_batch": args.roi_batch,
            "device": args.device,
            "threads": args.threads,
            "augment": aug,
            "trainable": tr,
            "anchors": args.anchors,
        }
        for w, z, s, n, seed, lr, aug, tr in itertools.product(
            [x.strip() for x in args.weights.split(",") if x.strip()],
            args.sizes,
            args.steps,
            args.images,
            range(args.first_seed, args.first_seed + args.seeds),
            [float(x) for x in args.lrs.split(",") if x.strip()] or [None],
            args.augment or ["hflip"],
            [_stages(x) for x in args.trainable.split(",") if x.strip()],
        )
    ]
    # the longest cells first, so the workers finish together; then seed by seed, so that a
    # run stopped early has every setting's first seeds to compare
    jobs.sort(key=lambda j: (-j["steps"] * j["size"] ** 2, j["seed"], j["images"]))
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for row in pool.imap_unordered(_cell, jobs):
                rows.append(row)
                print(json.dumps(row), flush=True)
    else:
        for job in jobs:
            rows.append(_cell(job))
            print(json.dumps(rows[-1]), flush=True)
    wall = time.perf_counter() - t0
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"data": str(args.data)}, "wall_s": wall, "rows": rows},
                indent=1,
                default=str,
            )
        )
    print(f"\n{len(rows)} cells in {wall:.0f} s on {rows[0]['device'] if rows else '?'}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
