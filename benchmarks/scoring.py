"""Scoring benchmark: images/s for plain inference and for full acquisition scoring.

Full scoring is what the most demanding strategy asks of the detector and scorers together:
entropy + self-consistency under a horizontal flip + MC-dropout mutual information (T=8) +
the missed-object estimate (low-threshold candidates). The detector shares work between them
(``Detector.scoring_views``): the candidates come from the base pass, the MC passes rerun only
the box head on cached RoI features, and only the flipped view runs the backbone again.
A naive implementation (one full forward pass per MC sample and per scorer) needs about
1 + 1 + 8 + 1 = 11 forward passes per image.

Prints a Markdown table. Example::

    python benchmarks/scoring.py --images 16 --size 480
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from napari_al.core.engine import Detector, configure_threads  # noqa: E402
from napari_al.core.images import read_image, to_rgb_uint8  # noqa: E402
from napari_al.core.scoring.strategy import Strategy  # noqa: E402

BCCD = REPO.parent / "shared" / "datasets" / "bccd"
FULL = "entropy+consistency+mutual_information+missed"


def load_images(n: int) -> list[np.ndarray]:
    ids = (BCCD / "ImageSets" / "Main" / "test.txt").read_text().split()[:n]
    return [to_rgb_uint8(read_image(BCCD / "JPEGImages" / f"{i}.jpg")) for i in ids]


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=480, help="min_size (max_size = 4/3 of it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--naive", action="store_true", help="also time the naive approach")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    images = load_images(args.images)
    det = Detector(
        ["RBC", "WBC", "Platelets"],
        min_size=args.size,
        max_size=args.size * 4 // 3,
        device=args.device,
    )
    strategy = Strategy(FULL)

    def plain() -> None:
        det.predict(images, batch_size=2)

    def full() -> None:
        views = det.scoring_views(
            images, mc_passes=8, flip=True, candidates=True, seed=0, batch_size=2
        )
        strategy.score_pool(views, np.random.default_rng(0))

    def naive() -> None:
        # one full pass per scorer and per MC sample: what sharing the work avoids
        for _ in range(11):
            det.predict(images, batch_size=2)

    rows = [("plain inference", timed(plain, args.repeats))]
    rows.append((f"full scoring ({FULL}, T=8)", timed(full, args.repeats)))
    if args.naive:
        rows.append(("naive full scoring (11 passes)", timed(naive, 1)))
    base = rows[0][1]
    print(
        f"device {det.device}, torch threads {torch.get_num_threads()}, "
        f"{args.images} BCCD test images at min_size {args.size}\n"
    )
    print("| what | s per image | images/s | x plain |")
    print("| --- | --- | --- | --- |")
    for name, secs in rows:
        per = secs / args.images
        print(f"| {name} | {per:.3f} | {1 / per:.2f} | {secs / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
