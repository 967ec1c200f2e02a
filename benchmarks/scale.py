"""Scale benchmark: pool scoring throughput in one process and on a Dask LocalCluster of 1 and
2 workers, and how its cost grows with the pool (issue 15; docs/scale.md).

A project is made from BCCD (its 364 labelled images, in their splits) plus a pool of the
largest ``--images`` count of images generated from BCCD with augmentations (random crop of
60-100 % of the area resized back to 640x480, flips, brightness/contrast/colour jitter; JPEG,
seeded), and a model trained ``--train-steps`` steps on it (model version 1, so scores are
cached). Then, for each worker count (0: the single-process pass, no Dask) and each pool size
N (the first N pool images), the score cache is emptied and ``score_images`` scores the N
images (writing their scores to the cache, as ``napari-al rank`` does), then scores them again
with nothing changed (every score cached: it must score no image).

Each worker count gets one cluster (``DaskCluster``: started, then warmed up on one chunk so
its workers have imported torch and built the detector; both times are reported apart from
the scoring). A worker gets ``cores / workers`` torch threads; the single-process pass uses
torch's default (one per core).

Linear cost: per-image seconds at the largest N over those at the smallest, within 10 %.

Prints a Markdown table (and writes it with the raw figures as JSON with ``--json``). The
full run (run by the lead, hours on 2 cores)::

    python benchmarks/scale.py --images 1000,10000 --workers 0,1,2

A small check that it works::

    python benchmarks/scale.py --images 8,16 --workers 0,2 --size 128 --strategy entropy \\
        --train-steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BCCD = REPO.parent / "shared" / "datasets" / "bccd"
#: The most demanding strategy (as benchmarks/scoring.py): entropy + flip consistency +
#: MC-dropout mutual information (T=8) + the missed-object estimate.
FULL = "entropy+consistency+mutual_information+missed"
#: Within this fraction, the per-image cost does not grow with the pool.
LINEAR_TOLERANCE = 0.10


def augmented(src: Path, rng: np.random.Generator):  # -> PIL.Image.Image
    """One augmented copy of a BCCD image: a random crop (60-100 % of the area, any aspect
    within 3:4..4:3 of the original) resized back to its size, random flips, brightness,
    contrast and colour saturation x U(0.8, 1.2)."""
    from PIL import Image, ImageEnhance

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        area = rng.uniform(0.6, 1.0) * w * h
        aspect = (w / h) * rng.uniform(0.75, 4 / 3)
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhance(out).enhance(float(rng.uniform(0.8, 1.2)))
    return out


def make_pool(folder: Path, n: int, seed: int) -> None:
    """``n`` augmented BCCD images in ``folder`` (kept between runs: existing ones stay)."""
    sources = sorted((BCCD / "JPEGImages").glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for i in range(n):
        src = sources[int(rng.integers(len(sources)))]
        child = np.random.default_rng([seed, i])  # image i is the same whatever n is
        path = folder / f"aug{i:06d}_{src.stem}.jpg"
        if not path.exists():
            augmented(src, child).save(path, quality=90)
        if (i + 1) % 500 == 0:
            print(f"  generated {i + 1}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


def make_project(root: Path, n: int, args: argparse.Namespace) -> Path:
    """BCCD labelled + ``n`` generated pool images + model version 1; reused when present."""
    from napari_al.cli import main as cli
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    proj = root / "project"
    if (proj / "napari_al.sqlite").exists():
        with ProjectStore.open(proj) as store:
            if len(store.images(split="pool")) >= n and store.latest_model_version():
                return proj
        raise SystemExit(f"{proj} exists with fewer than {n} pool images: use another --out")
    make_pool(root / "pool", n, args.seed)
    assert cli(["init", str(proj)]) == 0
    assert cli(["import", str(proj), str(BCCD), "--format", "voc"]) == 0
    assert cli(["import", str(proj), str(root / "pool"), "--format", "images"]) == 0
    with ProjectStore.open(proj) as store:
        detector = workflow.load_model(store, model_settings(args))
        outcome = workflow.train_model(
            store, detector, workflow.TrainSettings(steps=args.train_steps)
        )
        assert outcome.model_version == 1, outcome.stopped_reason
    return proj


def model_settings(args: argparse.Namespace):  # -> workflow.ModelSettings
    from napari_al.core import workflow

    return workflow.ModelSettings(
        min_size=args.size, max_size=args.size * 4 // 3, device=args.device
    )


def run_pass(store, detector, q, ids, cluster) -> tuple[float, int]:
    """Wall seconds and images scored of one ``score_images`` pass (cache used)."""
    from napari_al.core.workflow.ranking import score_images

    t0 = time.perf_counter()
    scored = score_images(store, detector, q, ids, distributed=cluster)[1]
    return time.perf_counter() - t0, int(scored.computed)


def measure(proj: Path, workers: int, sizes: list[int], args: argparse.Namespace) -> list[dict]:
    """One row per pool size for ``workers`` (0: one process)."""
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow.distributed import DaskCluster
    from napari_al.core.workflow.prediction import pool_image_ids

    q = workflow.QuerySettings(strategy=args.strategy, budget=10)
    cluster = None
    started = warmed = 0.0
    rows = []
    with ProjectStore.open(proj) as store:
        detector = workflow.load_model(store, model_settings(args))
        ids = pool_image_ids(store)
        try:
            if workers:
                settings = workflow.DistributedSettings(
                    workers=workers, chunk_size=args.chunk, device=args.device
                )
                cluster = DaskCluster(settings)
                t0 = time.perf_counter()
                cluster.client()
                started = time.perf_counter() - t0
            store.clear_scores()
            warmed, _ = run_pass(store, detector, q, ids[: max(2, args.chunk)], cluster)
            for n in sizes:
                store.clear_scores()
                seconds, computed = run_pass(store, detector, q, ids[:n], cluster)
                again, recomputed = run_pass(store, detector, q, ids[:n], cluster)
                rows.append(
                    {
                        "workers": workers,
                        "images": n,
                        "seconds": seconds,
                        "computed": computed,
                        "rescore_seconds": again,
                        "rescored_images": recomputed,
                        "cluster_start_s": started,
                        "warm_up_s": warmed,
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr)
        finally:
            if cluster is not None:
                cluster.close()
    return rows


def table(rows: list[dict], sizes: list[int]) -> str:
    lines = [
        "| workers | images | seconds | images/s | s/image | cost growth | rescoring: s, images "
        "scored | cluster start, warm-up s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per = r["seconds"] / max(1, r["computed"])
        first = next(x for x in rows if x["workers"] == r["workers"] and x["images"] == sizes[0])
        growth = per / (first["seconds"] / max(1, first["computed"]))
        lines.append(
            f"| {r['workers'] or 'none (one process)'} | {r['images']} | {r['seconds']:.1f} | "
            f"{r['computed'] / r['seconds']:.2f} | {per:.3f} | {growth:.3f} | "
            f"{r['rescore_seconds']:.2f}, {r['rescored_images']} | "
            f"{r['cluster_start_s']:.1f}, {r['warm_up_s']:.1f} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict], sizes: list[int]) -> list[str]:
    """Linear cost and no rescoring, per worker count."""
    out = []
    for w in sorted({r["workers"] for r in rows}):
        mine = {r["images"]: r for r in rows if r["workers"] == w}
        lo, hi = mine[sizes[0]], mine[sizes[-1]]
        growth = (hi["seconds"] / hi["computed"]) / (lo["seconds"] / lo["computed"])
        linear = abs(growth - 1) <= LINEAR_TOLERANCE
        untouched = all(r["rescored_images"] == 0 for r in mine.values())
        out.append(
            f"workers {w}: per-image cost x{growth:.3f} from {sizes[0]} to {sizes[-1]} images "
            f"({'linear' if linear else 'NOT linear'} within {LINEAR_TOLERANCE:.0%}); "
            f"rescoring scored {'no image' if untouched else 'SOME IMAGES'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,10000", help="pool sizes, comma-separated")
    parser.add_argument("--workers", default="0,1,2", help="0: one process, no Dask")
    parser.add_argument("--strategy", default=FULL)
    parser.add_argument("--size", type=int, default=480, help="min_size (max_size = 4/3 of it)")
    parser.add_argument("--chunk", type=int, default=32, help="images per Dask task")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="work folder, kept (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    sizes = sorted(int(x) for x in args.images.split(","))
    counts = [int(x) for x in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="napari-al-scale-") as tmp:
        root = args.out or Path(tmp)
        t0 = time.perf_counter()
        proj = make_project(root, sizes[-1], args)
        print(f"project ready in {time.perf_counter() - t0:.0f} s: {proj}", file=sys.stderr)
        rows = [row for w in counts for row in measure(proj, w, sizes, args)]
    print(
        f"{os.cpu_count()} cores, device {args.device}, strategy {args.strategy}, min_size "
        f"{args.size}, chunks of {args.chunk} images\n"
    )
    print(table(rows, sizes))
    print()
    for line in verdicts(rows, sizes):
        print(f"- {line}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "rows": rows}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
