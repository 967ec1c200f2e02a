"""Detector engine benchmark: train-step and inference times per architecture, BCCD mAP.

Prints Markdown tables. Examples::

    python benchmarks/detector.py                       # all archs, CPU (or CUDA if present)
    python benchmarks/detector.py --device cuda --size 640 --archs fasterrcnn_mobilenet_v2_fpn
    python benchmarks/detector.py --bccd --bccd-steps 400 --bccd-size 480   # long on a CPU

Timings use :func:`napari_al.core.engine.train` (what the plugin runs: SGD step, clipping,
weight snapshot) with batch ``--batch`` and :meth:`Detector.predict` on one image. Architectures
other than the default start from torchvision weights only if they are already in torch's cache
(nothing is downloaded unless ``--allow-download``); the "init" column says which.

``--bccd`` trains the default architecture on BCCD train (VOC, ../shared/datasets/bccd) with and
without the pretrained (offline ImageNet) backbone and reports COCO-style AP on BCCD test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from napari_al.core.engine import (  # noqa: E402
    ARCHS,
    DEFAULT_ARCH,
    Detector,
    TrainingExample,
    configure_threads,
    load_image,
    select_device,
    train,
)
from napari_al.core.evaluation import evaluate  # noqa: E402

BCCD = REPO.parent / "shared" / "datasets" / "bccd"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _synthetic(n: int, size: int, seed: int = 0) -> list[TrainingExample]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        xy = rng.uniform(0, size * 0.8, (8, 2))
        wh = rng.uniform(size * 0.05, size * 0.2, (8, 2))
        boxes = np.c_[xy, np.minimum(xy + wh, size)].astype(np.float32)
        out.append(TrainingExample(image=img, boxes=boxes, labels=rng.integers(0, 3, 8)))
    return out


def time_arch(arch: str, args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    d = Detector(
        ["a", "b", "c"],
        arch,
        min_size=args.size,
        max_size=args.size,
        device=device,
        allow_download=args.allow_download,
    )
    examples = _synthetic(max(2, args.batch), args.size)
    train(d, examples, steps=1, batch_size=args.batch)  # warm-up
    stamps: list[float] = []
    _sync(device)
    t0 = time.perf_counter()
    train(
        d,
        examples,
        steps=args.repeats,
        batch_size=args.batch,
        progress=lambda *a: (_sync(device), stamps.append(time.perf_counter())),
    )
    steps = np.diff([t0, *stamps])
    img = [examples[0].image]
    d.predict(img)  # warm-up
    inf = []
    for _ in range(args.repeats):
        _sync(device)
        t = time.perf_counter()
        d.predict(img)
        _sync(device)
        inf.append(time.perf_counter() - t)
    return {
        "arch": arch,
        "init": d.build_info.source,
        "train_step_s": statistics.median(steps),
        "infer_s": statistics.median(inf),
        "D": d.feature_dim,
        "E": d.embedding_dim,
        "device": str(device),
    }


def _read_voc(xml: Path) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for obj in ET.parse(xml).getroot().iter("object"):
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x2 > x1 and y2 > y1:
            boxes.append([x1 - 1, y1 - 1, x2, y2])
            labels.append(BCCD_CLASSES.index(obj.find("name").text.strip()))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def _split(name: str, limit: int | None) -> list[str]:
    names = (BCCD / "ImageSets" / "Main" / f"{name}.txt").read_text().split()
    return names[:limit] if limit else names


def bccd(args: argparse.Namespace) -> list[dict]:
    train_names = _split("train", args.bccd_train_limit)
    test_names = _split("test", args.bccd_test_limit)
    examples = []
    for n in train_names:
        b, lab = _read_voc(BCCD / "Annotations" / f"{n}.xml")
        examples.append(TrainingExample(path=BCCD / "JPEGImages" / f"{n}.jpg", boxes=b, labels=lab))
    test_imgs = [load_image(BCCD / "JPEGImages" / f"{n}.jpg") for n in test_names]
    gts = [_read_voc(BCCD / "Annotations" / f"{n}.xml") for n in test_names]
    rows = []
    inits = {"both": (True, False), "pretrained": (True,), "scratch": (False,)}[args.bccd_init]
    for pretrained in inits:
        d = Detector(
            BCCD_CLASSES,
            DEFAULT_ARCH,
            pretrained_backbone=pretrained,
            min_size=args.bccd_size,
            max_size=round(args.bccd_size * 4 / 3),
            device=args.device,
        )
        last = [time.perf_counter()]

        def report(step, total, loss, epoch, last=last, src=d.build_info.source):
            if time.perf_counter() - last[0] > 30 or step == total:
                print(f"  [{src}] step {step}/{total} loss {loss:.3f}", flush=True)
                last[0] = time.perf_counter()

        res = train(d, examples, steps=args.bccd_steps, batch_size=args.batch, progress=report)
        ev = evaluate(gts, d.predict(test_imgs), BCCD_CLASSES)
        rows.append(
            {
                "init": d.build_info.source,
                "steps": res.steps,
                "train_s": res.seconds,
                "map50": ev.map50,
                "map": ev.map,
                **{c: ev.per_class[c]["ap50"] for c in BCCD_CLASSES},
            }
        )
        print(f"  result: {json.dumps(rows[-1])}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="*", default=list(ARCHS))
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    p.add_argument("--size", type=int, default=512, help="input side for timings")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--allow-download", action="store_true")
    p.add_argument("--bccd", action="store_true", help="also train/evaluate on BCCD (long)")
    p.add_argument("--bccd-steps", type=int, default=400)
    p.add_argument(
        "--bccd-init",
        default="both",
        choices=("both", "pretrained", "scratch"),
        help="which backbone initialisations to train (run them as separate processes to "
        "use one core each)",
    )
    p.add_argument("--bccd-size", type=int, default=480)
    p.add_argument("--bccd-train-limit", type=int, default=None)
    p.add_argument("--bccd-test-limit", type=int, default=None)
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    threads = configure_threads(args.threads)
    device = select_device(args.device)
    out: dict = {"device": str(device), "threads": threads, "torch": torch.__version__}
    if not args.skip_timing:
        rows = [time_arch(a, args) for a in args.archs]
        out["timing"] = rows
        print(
            f"\n### Detector timings ({device}, {threads} threads, {args.size}x{args.size}, "
            f"train batch {args.batch}, median of {args.repeats})\n"
        )
        print("| arch | init | train step (s) | inference (s/img) | D | E |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['arch']} | {r['init']} | {r['train_step_s']:.3f} | {r['infer_s']:.3f} "
                f"| {r['D']} | {r['E']} |"
            )
    if args.bccd:
        rows = bccd(args)
        out["bccd"] = rows
        print(
            f"\n### BCCD ({DEFAULT_ARCH}, {args.bccd_steps} steps, batch {args.batch}, "
            f"input {args.bccd_size} px; COCO-style AP on BCCD test)\n"
        )
        print("| init | steps | train (s) | mAP@0.5 | AP@[.5:.95] | RBC | WBC | Platelets |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['init']} | {r['steps']} | {r['train_s']:.0f} | {r['map50']:.3f} "
                f"| {r['map']:.3f} | {r['RBC']:.3f} | {r['WBC']:.3f} | {r['Platelets']:.3f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
