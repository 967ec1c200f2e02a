"""The ``napari-al simulate`` options and the :class:`SimConfig` they make."""

from __future__ import annotations

import dataclasses
from typing import Any

from napari_al.core.costs import CostModel
from napari_al.simulation.config import STRATEGIES, SimConfig, preset


def add_arguments(p: Any) -> None:
    """The ``napari-al simulate`` options (the parser block in :mod:`napari_al.cli`)."""
    p.add_argument(
        "--preset", choices=("ci", "bccd"), help="ci: tiny smoke run; bccd: the benchmark"
    )
    p.add_argument("--data", metavar="PATH", help="labelled dataset (VOC folder or COCO JSON)")
    p.add_argument("--format", dest="fmt", choices=("voc", "coco", "yolo"))
    p.add_argument(
        "--test-fraction", type=float, help="held out when the data has no test/val split"
    )
    p.add_argument(
        "--strategies", help="comma-separated names (baselines are always added); 'list' to show"
    )
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...)")
    p.add_argument("--seed-start", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--init-images", type=int)
    p.add_argument("--budget-images", type=int, help="images per round (image-level strategies)")
    p.add_argument("--budget-boxes", type=int, help="boxes per round (box-level strategies)")
    p.add_argument("--pool-subset", type=int, help="score a random subset of the pool per round")
    p.add_argument("--init-steps", type=int)
    p.add_argument("--round-steps", type=int)
    p.add_argument("--full-steps", type=int, help="default: init + rounds x round steps")
    p.add_argument("--no-full", action="store_true", help="skip the full-supervision run")
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        help="model files kept per run (default 1, the latest; benchmarks/calibration.py "
        "needs every version's)",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lambda-d", type=float)
    p.add_argument("--noisy-min-score", type=float, help="weakest prediction kept as a noisy label")
    p.add_argument(
        "--partial-background-weight", type=float, help="background loss on partial images"
    )
    p.add_argument("--lr", type=float)
    p.add_argument(
        "--round-lr", type=float, help="peak lr of each round's fine-tuning (default: --lr)"
    )
    p.add_argument("--augment", help="training augmentations, e.g. hflip,vflip,scale=0.25")
    p.add_argument("--arch")
    p.add_argument(
        "--weights",
        help="initial weights: coco-mnv2 (default), imagenet, torchvision-coco or a file",
    )
    p.add_argument("--min-size", type=int)
    p.add_argument("--max-size", type=int)
    p.add_argument("--max-pool", type=int)
    p.add_argument("--max-test", type=int)
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--workers", type=int, help="parallel processes")
    p.add_argument("--threads", type=int, help="torch threads per process")
    for name, default in dataclasses.asdict(CostModel()).items():
        flag = "--" + name.replace("_s", "").replace("_", "-") + "-s"
        p.add_argument(flag, dest=name, type=float, help=f"seconds (default {default})")
    _add_oracle_arguments(p)


def _add_oracle_arguments(p: Any) -> None:
    """How the simulated person answers (part of :func:`add_arguments`)."""
    p.add_argument("--verify-iou", type=float)
    p.add_argument("--redraw-iou", type=float)
    p.add_argument(
        "--verify-min-score",
        type=float,
        help="explicit raw-score threshold of the model boxes shown for verification (default: "
        "the calibrated rule P(yes) x draw_s > verify_s)",
    )
    from napari_al.core.workflow import CALIBRATION_METHODS

    p.add_argument(
        "--calibration",
        choices=CALIBRATION_METHODS,
        help="score calibration of each model version (default isotonic; none: raw scores "
        "against verify_s / draw_s)",
    )
    p.add_argument(
        "--verify-missed",
        dest="verify_missed_min_score",
        type=float,
        metavar="MIN",
        help="before drawing missed objects, ask yes/no about uncovered predictions >= MIN",
    )
    _add_question_arguments(p)
    p.add_argument("--report-only", action="store_true", help="redo plot and table from the CSV")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, metavar="DIR")


def _add_question_arguments(p: Any) -> None:
    """The flags of how the simulated person answers (issue 13): rich answers, missed objects,
    self-training."""
    p.add_argument(
        "--rich-answers",
        action="store_true",
        help="answer badly placed boxes part / container / several (a refined box or clicks "
        "follow) instead of redrawing them",
    )
    from napari_al.simulation.missed import MISSED_BY

    p.add_argument(
        "--missed-by",
        choices=MISSED_BY,
        help="how the objects the shown boxes missed are labelled: draw (default: each drawn), "
        'click (each clicked at its centre, the proposed box verified), region ("any more '
        '<class> here?" first, clicks in the yes-regions, the rest drawn)',
    )
    p.add_argument(
        "--self-training",
        type=float,
        metavar="P",
        help="self-training: predictions on unreviewed pool images with P(yes) >= P that are "
        "stable under a horizontal flip train as pseudo labels, damped by lambda_d",
    )
    p.add_argument(
        "--self-training-images",
        type=int,
        metavar="N",
        help="most unreviewed images pseudo-labelled per training (default 20)",
    )
    from napari_al.core.dialog import SUPERVISION

    p.add_argument(
        "--dialog-seconds",
        type=float,
        metavar="S",
        help="dialog strategy: annotation seconds per round (default: what drawing "
        "--budget-images images costs by the initial set)",
    )
    p.add_argument(
        "--dialog-supervision",
        choices=SUPERVISION,
        help="dialog strategy: missed objects clicked, drawn, or auto (clicks while "
        "localisation still improves, then boxes; default auto)",
    )
    p.add_argument(
        "--anchors",
        metavar="S,S,...",
        help="RPN anchor sizes of the new detector, one per feature level, pixels of the "
        "resized input (e.g. 16,32,64,128,256 for small objects; default: the architecture's)",
    )
    p.add_argument(
        "--dialog-scatter-images",
        action="store_true",
        default=None,
        help="dialog strategy: the pool's best question each time, leaving images partly "
        "answered (default: each begun image is finished first)",
    )


def config_from_args(args: Any) -> SimConfig:
    """A :class:`SimConfig` from the preset (default: bccd settings) and the flags given."""
    config = preset(args.preset) if args.preset else SimConfig()
    changes: dict[str, Any] = {}
    simple = (
        "data", "fmt", "test_fraction", "seeds", "seed_start", "rounds", "init_images",
        "budget_images", "budget_boxes", "pool_subset", "init_steps", "round_steps",
        "full_steps", "batch_size", "lambda_d", "noisy_min_score",
        "partial_background_weight", "lr", "round_lr", "augment", "arch", "weights", "min_size",
        "max_size",
        "max_pool", "max_test", "device", "workers", "threads", "verify_iou", "redraw_iou",
        "verify_min_score", "verify_missed_min_score", "calibration", "keep_checkpoints",
        "missed_by",
        "self_training", "self_training_images", "dialog_seconds", "dialog_supervision",
        "dialog_scatter_images", "anchors",
    )  # fmt: skip
    for k in simple:
        v = getattr(args, k, None)
        if v is not None:
            changes[k] = v
    if getattr(args, "strategies", None):
        changes["strategies"] = tuple(s for s in args.strategies.split(",") if s.strip())
    if getattr(args, "no_full", False):
        changes["full_supervision"] = False
    if getattr(args, "rich_answers", False):
        changes["rich_answers"] = True
    cost_changes = {
        k: getattr(args, k)
        for k in dataclasses.asdict(CostModel())
        if getattr(args, k, None) is not None
    }
    if cost_changes:
        changes["costs"] = dataclasses.replace(config.costs, **cost_changes)
    if "data" in changes and "fmt" not in changes:
        changes["fmt"] = None  # detect the format of the data given
    return dataclasses.replace(config, **changes)


def describe_strategies() -> str:
    """One line per known strategy (for ``--strategies list``)."""
    return "\n".join(
        f"{s.name:<16} {s.unit:<5} {s.oracle:<6} {s.description}" for s in STRATEGIES.values()
    )
