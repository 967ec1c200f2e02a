"""Boxes from centre clicks without a model: how close the pixels alone get to drawn boxes.

A click on an object becomes a box before any detector exists
(:func:`napari_al.core.clicks.box_from_image`: Otsu threshold, the component under the click;
Papadopoulos et al. 2017 ask for the click, the box is ours). If those boxes matched the
drawn ones, an initial set labelled by clicks (1.9 s each) and yes/no verification (1.6 s)
would cost far less than drawing (7 s a box). This script clicks the centre of every
ground-truth box of a dataset and prints, per class, the IoU (torchvision ``box_iou``) of the
box the click gives against the drawn one; a click that gives no box counts IoU 0. Example::

    python benchmarks/click_boxes.py ../shared/datasets/bccd
    python benchmarks/click_boxes.py ../shared/datasets/deeppcb --limit 100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import torch
    from torchvision.ops import box_iou
    from tqdm import tqdm

    from napari_al.core.clicks import box_from_image
    from napari_al.core.formats.voc import read_voc
    from napari_al.core.images import read_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("voc", type=Path, help="a Pascal VOC folder (Annotations/, JPEGImages/)")
    ap.add_argument("--limit", type=int, default=None, help="first N annotated images only")
    args = ap.parse_args(argv)
    dataset = read_voc(args.voc, strict=False)
    images = [im for im in dataset.images if im.annotated and im.boxes][: args.limit]
    ious: dict[str, list[float]] = {}
    for im in tqdm(images, unit="img"):
        pixels = read_image(im.path)
        for b in im.boxes:
            x1, y1, x2, y2 = b.xyxy()
            got = box_from_image(pixels, ((x1 + x2) / 2, (y1 + y2) / 2))
            iou = 0.0
            if got is not None:
                iou = float(box_iou(torch.tensor([got]), torch.tensor([[x1, y1, x2, y2]]))[0, 0])
            ious.setdefault(b.label, []).append(iou)
    print(f"{args.voc}: {len(images)} annotated images")
    print("| class | objects | median IoU | IoU >= 0.5 | IoU >= 0.7 |")
    print("|---|---|---|---|---|")
    for label in sorted(ious):
        v = np.asarray(ious[label])
        print(
            f"| {label} | {len(v)} | {np.median(v):.2f} | {100 * (v >= 0.5).mean():.0f} % "
            f"| {100 * (v >= 0.7).mean():.0f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
