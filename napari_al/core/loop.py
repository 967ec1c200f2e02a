"""One active-learning round on a project: train from the store, predict into it, rank its pool.

This is the glue the CLI, the GUI workers and notebooks share. It reads labels from the store
(one consistent snapshot per training run), turns them into partial-label training examples
(Desai et al.: human boxes are full targets, unverified predictions on partly reviewed images
are noisy labels damped by ``lambda_d``, rejected boxes are background), writes predictions
back as ``predicted`` boxes, and ranks the unlabeled pool with a scoring strategy, caching
per-image scores by (image content, model version, strategy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.data import HUMAN_STATUSES, ScoringViews
from napari_al.core.selection import QueryItem

if TYPE_CHECKING:
    from napari_al.core.engine import Detector, TrainingExample, TrainResult
    from napari_al.core.store import ProjectStore, TrainingSnapshot

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
TrainProgress = Callable[..., None]
ShouldStop = Callable[[], bool]

#: Folder (inside the project) that holds checkpoints.
MODELS_DIR = "models"
#: Default input size for project detectors: BCCD-like microscopy at 480-640 px.
DEFAULT_MIN_SIZE = 480
DEFAULT_MAX_SIZE = 640
#: Extra-view settings used when a strategy needs them (see ``Detector.scoring_views``).
MC_PASSES = 8
NOISE_VIEWS = 2
#: How many earlier checkpoints form the ensemble for ``source='ensemble'`` scorers.
ENSEMBLE_SIZE = 3
UNITS = ("image", "box", "region")
#: An unverified prediction overlapping a human or rejected box this much is not a noisy label.
JUDGED_IOU = 0.5


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as the detector's input: uint8 HxWx3 (16-bit, float, gray handled)."""
    from napari_al.core.images import read_image, to_rgb_uint8

    return to_rgb_uint8(read_image(path))


#: Called with (image id, message) for each image that could not be read and was skipped.
OnSkip = Callable[[int, str], None]


def _warn_skip(image_id: int, message: str) -> None:
    log.warning("image %d skipped: %s", image_id, message)


def _read_rows(
    store: ProjectStore, rows: Sequence[Any], on_skip: OnSkip | None
) -> tuple[list[Any], list[np.ndarray]]:
    """The images of ``rows`` that can be read (and those rows): a missing, corrupt or
    unsupported file is reported to ``on_skip`` (default: a logged warning) and left out, so
    one bad file does not stop a pass over the pool."""
    ok, images = [], []
    for row in rows:
        try:
            images.append(load_rgb(store.abs_path(row)))
        except (OSError, ValueError) as exc:
            (on_skip or _warn_skip)(int(row.id), f"{store.abs_path(row)}: {exc}")
            continue
        ok.append(row)
    return ok, images


def checkpoint_path(store: ProjectStore, version: int) -> Path:
    """Where model version ``version`` of this project is saved."""
    return Path(store.project_dir) / MODELS_DIR / f"model-v{version:04d}.pt"


def load_detector(
    store: ProjectStore,
    arch: str | None = None,
    device: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    weights: str | Path | None = None,
) -> Detector:
    """The project's latest checkpoint, or a fresh detector on the pretrained backbone.

    A fresh detector is built when the project has no model yet, when ``weights`` is given,
    or when ``arch`` differs from the latest checkpoint's architecture.
    """
    from napari_al.core.engine import DEFAULT_ARCH, Detector, load_checkpoint

    classes = [c.name for c in store.classes()]
    if not classes:
        raise ValueError("the project has no classes yet: import annotations or add a class first")
    latest = store.latest_model_version()
    if latest is not None and weights is None and (arch is None or arch == latest.arch):
        detector, _meta = load_checkpoint(store.abs_path(latest), device=device)
        if list(detector.classes) == classes:
            if min_size or max_size:
                detector.set_input_size(
                    min_size or detector.config.min_size, max_size or detector.config.max_size
                )
            detector.model_version = latest.id
            return detector
    detector = Detector(
        classes,
        arch or DEFAULT_ARCH,
        weights=weights,
        min_size=min_size or DEFAULT_MIN_SIZE,
        max_size=max_size or DEFAULT_MAX_SIZE,
        device=device,
    )
    return detector


def model_version_of(detector: Detector) -> int:
    """The store's model version the detector was loaded from (0: not trained here yet)."""
    return int(detector.model_version or 0)


# --------------------------------------------------------------------------- training


def training_examples(
    store: ProjectStore,
    snapshot: TrainingSnapshot,
    exclude_splits: Sequence[str] = ("val", "test"),
    noisy_min_score: float = 0.0,
) -> list[TrainingExample]:
    """Partial-label training examples from a consistent snapshot of the store.

    Per image (not in ``exclude_splits``, and reviewed at least partly):
    accepted/corrected/drawn boxes are full targets; ``pseudo`` boxes, and ``predicted`` boxes
    of a ``partial`` image scoring at least ``noisy_min_score``, are noisy labels (their loss
    is damped by ``lambda_d`` in training, Desai et al. eq. 3); rejected boxes are explicit
    background; ignore regions give no loss; a ``complete`` image with no boxes is a negative.
    ``unseen`` images teach nothing yet.
    """
    from napari_al.core.engine import TrainingExample

    index = {c.id: i for i, c in enumerate(snapshot.classes)}
    examples: list[TrainingExample] = []
    for item in snapshot.images:
        row = item.image
        if row.split in exclude_splits or row.review_state == "unseen":
            continue
        boxes, labels, noisy, background = [], [], [], []
        judged = [b.xyxy for b in item.boxes if b.status in (*HUMAN_STATUSES, "rejected")]
        for b in item.boxes:
            xyxy = (b.x1, b.y1, b.x2, b.y2)
            if b.status in HUMAN_STATUSES:
                boxes.append(xyxy), labels.append(index[b.class_id]), noisy.append(False)
            elif b.status == "pseudo" or (
                b.status == "predicted"
                and row.review_state == "partial"
                and (b.score is None or b.score >= noisy_min_score)
            ):
                # a fresh prediction on an object (or background) a person already judged is
                # not a noisy label: the judgement wins (Desai et al.: L_B boxes leave U_B)
                if judged and _max_iou(xyxy, judged) >= JUDGED_IOU:
                    continue
                boxes.append(xyxy), labels.append(index[b.class_id]), noisy.append(True)
            elif b.status == "rejected":
                background.append(xyxy)
        examples.append(
            TrainingExample(
                path=store.abs_path(row),
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                labels=np.asarray(labels, np.int64),
                noisy=np.asarray(noisy, bool),
                background_boxes=np.asarray(background, np.float32).reshape(-1, 4),
                ignore_regions=np.asarray(
                    [(r.x1, r.y1, r.x2, r.y2) for r in item.ignore_regions], np.float32
                ).reshape(-1, 4),
                complete=row.review_state == "complete",
                loader=load_rgb,
            )
        )
    return [e for e in examples if e.informative]


def _max_iou(box: Sequence[float], others: Sequence[Sequence[float]]) -> float:
    """The largest IoU of ``box`` with any of ``others``."""
    from napari_al.core.boxes import box_iou

    return float(box_iou(np.asarray([box], np.float64), np.asarray(others, np.float64)).max())


def labels_hash(snapshot: TrainingSnapshot) -> str:
    """A short hash of the labels a model was trained on (recorded in its checkpoint)."""
    h = hashlib.sha256()
    for item in snapshot.images:
        h.update(f"{item.image.sha256}:{item.image.review_state}".encode())
        for b in item.boxes:
            h.update(
                f"{b.x1:.2f},{b.y1:.2f},{b.x2:.2f},{b.y2:.2f},{b.class_id},{b.status}".encode()
            )
    return h.hexdigest()[:16]


@dataclass
class TrainOutcome:
    """A training run on a project: the run, and the model version it produced (if any)."""

    result: TrainResult
    n_examples: int
    model_version: int | None = None
    checkpoint: Path | None = None
    last_action_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def train_project(
    store: ProjectStore,
    detector: Detector,
    *,
    steps: int = 200,
    lambda_d: float = 0.5,
    from_scratch: bool = False,
    seed: int = 0,
    batch_size: int = 2,
    lr: float | None = None,
    progress: TrainProgress | None = None,
    should_stop: ShouldStop | None = None,
    save: bool = True,
    threads: int | None = None,
    noisy_min_score: float = 0.0,
    partial_background_weight: float = 1.0,
) -> TrainOutcome:
    """Fine-tune ``detector`` on the project's current labels and record a new model version.

    The labels come from one store snapshot, so edits made while training runs are kept
    for the next round. A run that is cancelled, hits a non-finite loss or raises saves
    nothing: the detector is restored to the weights it had and the store's model stays in
    use. ``threads`` caps torch's CPU threads for the run (the GUI keeps one core free).
    ``noisy_min_score`` and ``partial_background_weight``: see :func:`training_examples` and
    :func:`napari_al.core.engine.train` (how much partly reviewed images teach background).
    """
    from napari_al.core.engine import save_checkpoint, train

    snapshot = store.training_snapshot()
    examples = training_examples(store, snapshot, noisy_min_score=noisy_min_score)
    kwargs: dict[str, Any] = {"partial_background_weight": partial_background_weight}
    if lr is not None:
        kwargs["lr"] = lr
    if threads is not None:
        kwargs["threads"] = threads
    # A run that does not finish (cancel, non-finite loss, an exception) must leave the
    # detector as it was: its weights are those of the model version it reports.
    initial = {k: v.detach().clone() for k, v in detector.model.state_dict().items()}
    try:
        result = train(
            detector,
            examples,
            steps=steps,
            batch_size=batch_size,
            lambda_d=lambda_d,
            from_scratch=from_scratch,
            seed=seed,
            progress=progress,
            should_stop=should_stop,
            **kwargs,
        )
    except BaseException:
        detector.model.load_state_dict(initial)
        raise
    if result.stopped_reason != "done":
        detector.model.load_state_dict(initial)
    del initial
    outcome = TrainOutcome(
        result=result, n_examples=len(examples), last_action_id=snapshot.last_action_id
    )
    if not save or result.stopped_reason != "done" or result.steps == 0:
        return outcome
    version_guess = len(store.model_versions()) + 1
    path = checkpoint_path(store, version_guess)
    while path.exists():
        version_guess += 1
        path = checkpoint_path(store, version_guess)
    metrics = {
        "steps": result.steps,
        "final_loss": float(result.losses[-1]) if result.losses else None,
        "examples": len(examples),
        "lambda_d": lambda_d,
        "noisy_min_score": noisy_min_score,
        "partial_background_weight": partial_background_weight,
        "labels_hash": labels_hash(snapshot),
        "last_action_id": snapshot.last_action_id,
        "trained_at": time.time(),
    }
    save_checkpoint(detector, path, metadata=metrics)
    version = store.add_model_version(path, detector.arch, metrics=metrics)
    detector.model_version = version
    outcome.model_version = version
    outcome.checkpoint = path
    outcome.metrics = metrics
    return outcome


# --------------------------------------------------------------------------- prediction


def pool_image_ids(store: ProjectStore) -> list[int]:
    """The images active learning may query: the pool, unless already complete."""
    return [r.id for r in store.images(split="pool") if r.review_state != "complete"]


def predict_project(
    store: ProjectStore,
    detector: Detector,
    image_ids: Sequence[int] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    batch_size: int = 2,
    on_skip: OnSkip | None = None,
) -> int:
    """Run the detector on images (default: the pool) and store its boxes as ``predicted``.

    Human boxes are never touched (``store.replace_predictions``). Returns how many images
    were predicted (fewer than asked when ``should_stop`` fired, or when an image could not be
    read: those are reported to ``on_skip`` and skipped).
    """
    ids = pool_image_ids(store) if image_ids is None else list(image_ids)
    rows = [store.image(i) for i in ids]
    classes = store.classes()
    version = model_version_of(detector) or None
    done = 0
    for start in range(0, len(rows), batch_size):
        if should_stop is not None and should_stop():
            break
        batch, pixels = _read_rows(store, rows[start : start + batch_size], on_skip)
        preds = detector.predict(pixels) if pixels else []
        for row, p in zip(batch, preds, strict=True):
            store.replace_predictions(
                row.id,
                [
                    (
                        tuple(map(float, p.boxes[i])),
                        classes[int(p.labels[i])].id,
                        float(p.scores[i]),
                    )
                    for i in range(len(p))
                ],
                version,
            )
        done += len(batch)
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    return done


# --------------------------------------------------------------------------- ranking


def view_kwargs(needs: frozenset[str]) -> dict[str, Any]:
    """``Detector.scoring_views`` arguments for the views a strategy needs."""
    return {
        "mc_passes": MC_PASSES if "mc_probs" in needs else 0,
        "flip": "flipped" in needs,
        "noise_views": NOISE_VIEWS if "noisy" in needs else 0,
        "candidates": "candidates" in needs,
    }


def _strategy_key(strategy: Any, kwargs: dict[str, Any], extra: dict[str, Any]) -> str:
    desc = {"spec": strategy.spec, "views": kwargs, **extra}
    return "strategy:" + json.dumps(desc, sort_keys=True, default=str)


def ensemble_members(store: ProjectStore, detector: Detector, size: int = ENSEMBLE_SIZE) -> list:
    """Earlier checkpoints of the project (newest first, excluding the detector's own)."""
    from napari_al.core.engine import load_checkpoint

    own = model_version_of(detector)
    members = []
    for row in reversed(store.model_versions()):
        if row.id == own or len(members) >= size:
            continue
        try:
            det, _ = load_checkpoint(store.abs_path(row), device=str(detector.device))
        except (OSError, ValueError, RuntimeError):
            continue
        if list(det.classes) == list(detector.classes):
            members.append(det)
    return members


def fit_missed_regressor(store: ProjectStore, detector: Detector, max_images: int = 50) -> Any:
    """Train the missed-object regressor (Nakamura et al.) on reviewed images, or None.

    Target: how many human boxes of a complete image the detector fails to find (IoU 0.5).
    Needs at least 5 complete images.
    """
    from napari_al.core.scoring.missed import MissedObjectRegressor, count_missed, missed_features

    rows = [r for r in store.images() if r.review_state == "complete"][:max_images]
    if len(rows) < 5:
        return None
    feats, targets = [], []
    for start in range(0, len(rows), 4):
        batch = rows[start : start + 4]
        views = detector.scoring_views(
            [load_rgb(store.abs_path(r)) for r in batch], candidates=True
        )
        for row, v in zip(batch, views, strict=True):
            gt = np.asarray(
                [b.xyxy for b in store.boxes(image_id=row.id, statuses=HUMAN_STATUSES)],
                np.float64,
            ).reshape(-1, 4)
            feats.append(missed_features(v))
            targets.append(count_missed(gt, v.base.boxes))
    return MissedObjectRegressor().fit(np.stack(feats), np.asarray(targets, np.float64))


def rank_project(
    store: ProjectStore,
    detector: Detector,
    strategy: str = "entropy",
    unit: str = "image",
    budget: int = 10,
    diversity: str | None = None,
    aggregation: str = "sum",
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    seed: int = 0,
    image_ids: Sequence[int] | None = None,
    candidate_factor: float = 3.0,
    region_block: int = 160,
    use_cache: bool = True,
    on_skip: OnSkip | None = None,
) -> list[QueryItem]:
    """Rank the pool (unreviewed and partly reviewed images) by a strategy.

    An image that cannot be read is reported to ``on_skip`` (default: a logged warning) and
    left out of the ranking.

    ``unit`` is ``image`` (whole images; optionally diverse, two-stage: top
    ``candidate_factor x budget`` by score, then core-set or k-means++ on image embeddings),
    ``box`` (Desai et al.: single boxes to verify, drawn from low-threshold candidates) or
    ``region`` (blocks of images ranked by summed box scores plus missed-object density).
    Scores are cached in the store per (image hash, model version, strategy).
    """
    from napari_al.core.scoring.missed import possibly_missed
    from napari_al.core.scoring.strategy import ImageRaw, Strategy
    from napari_al.core.selection import rank_regions, select_boxes, select_images

    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; use one of {UNITS}")
    strat = Strategy(strategy, aggregation=aggregation)
    needs = set(strat.needs)
    if unit in ("box", "region"):
        needs.add("candidates")
    params: dict[str, Any] = {}
    if "missed" in strat.names:
        regressor = fit_missed_regressor(store, detector)
        if regressor is not None:
            params["missed"] = {"regressor": regressor}
            strat = Strategy(strategy, params=params, aggregation=aggregation)
        needs.add("candidates")
    kwargs = view_kwargs(frozenset(needs))
    ensemble = ensemble_members(store, detector) if "ensemble_probs" in needs else []
    ids = pool_image_ids(store) if image_ids is None else list(image_ids)
    rows = [store.image(i) for i in ids]
    version = model_version_of(detector)
    key = _strategy_key(
        strat, kwargs, {"unit": unit, "seed": seed, "fitted": bool(params), "ens": len(ensemble)}
    )
    # Box and region units need the boxes themselves, so they always compute views.
    cacheable = use_cache and unit == "image" and version > 0 and "random" not in strat.names
    raws: list[ImageRaw | None] = [None] * len(rows)
    embeddings: list[np.ndarray | None] = [None] * len(rows)
    extra: dict[int, tuple[ScoringViews, np.ndarray]] = {}
    if cacheable:
        for i, row in enumerate(rows):
            data = store.get_scores(row.sha256, version, key)
            if data is not None:
                raw, emb = _unpack(data)
                raws[i], embeddings[i] = raw, emb
    todo = [i for i, r in enumerate(raws) if r is None]
    rng = np.random.default_rng(seed)
    done = len(rows) - len(todo)
    batch_size = 2
    for start in range(0, len(todo), batch_size):
        if should_stop is not None and should_stop():
            break
        chunk = todo[start : start + batch_size]
        readable, pixels = _read_rows(store, [rows[i] for i in chunk], on_skip)
        ok_ids = {r.id for r in readable}
        chunk = [i for i in chunk if rows[i].id in ok_ids]
        views = (
            detector.scoring_views(pixels, seed=seed, ensemble=ensemble, **kwargs) if pixels else []
        )
        for i, v in zip(chunk, views, strict=True):
            raw = strat.raw_scores(v, rng)
            raws[i] = raw
            embeddings[i] = np.asarray(v.base.embedding, np.float32)
            if unit != "image":
                extra[i] = (v, possibly_missed(v))
            if cacheable:
                store.put_scores(rows[i].sha256, version, key, _pack(raw, embeddings[i]))
        done += len(todo[start : start + batch_size])
        if progress is not None:
            progress(done, len(rows))
    keep = [i for i, r in enumerate(raws) if r is not None]
    pool = strat.combine_raw([raws[i] for i in keep])  # type: ignore[misc]
    kept_ids = [rows[i].id for i in keep]
    if unit == "image":
        emb = np.stack([embeddings[i] for i in keep]) if keep else None
        labelled = (
            labelled_embeddings(store, detector, use_cache=use_cache, on_skip=on_skip)
            if diversity is not None and emb is not None
            else None
        )
        return select_images(
            pool.image_scores,
            budget,
            embeddings=emb,
            diversity=diversity,
            candidate_factor=candidate_factor,
            labeled_embeddings=labelled,
            rng=seed,
            ids=kept_ids,
            breakdown=pool.breakdown,
        )
    if unit == "box":
        return select_boxes(
            {rows[i].id: pool.box_scores[j] for j, i in enumerate(keep)},
            budget,
            boxes={rows[i].id: extra[i][0].base.boxes for i in keep},
            breakdown={rows[i].id: pool.box_breakdown[j] for j, i in enumerate(keep)},
            skip={rows[i].id: judged_mask(store, rows[i].id, extra[i][0].base.boxes) for i in keep},
        )
    items: list[QueryItem] = []
    for j, i in enumerate(keep):
        v, missed = extra[i]
        missed_boxes = np.asarray(getattr(missed, "boxes", missed), np.float64).reshape(-1, 4)
        items.extend(
            rank_regions(
                (rows[i].height, rows[i].width),
                v.base.boxes,
                pool.box_scores[j],
                missed_boxes,
                block=region_block,
                image=rows[i].id,
            )
        )
    items.sort(key=lambda q: -q.score)
    return items[:budget]


#: Score-cache key of an image's embedding (``Predictions.embedding``, float32 bytes).
EMBEDDING_KEY = "embedding/v1"


def labelled_embeddings(
    store: ProjectStore,
    detector: Detector,
    *,
    use_cache: bool = True,
    on_skip: OnSkip | None = None,
    batch_size: int = 2,
) -> np.ndarray | None:
    """Image embeddings ``(n, E)`` of the images people have labelled (complete or partly
    reviewed, outside val/test), or None when there are none.

    They are the centres a core-set starts from (Sener & Savarese 2018: k-center greedy covers
    the pool given the labelled set), so diversity picks what the labels do not cover yet.
    Cached per (image hash, model version) like scores.
    """
    rows = [
        r for r in store.images() if r.review_state != "unseen" and r.split not in ("val", "test")
    ]
    version = model_version_of(detector)
    cacheable = use_cache and version > 0
    out: list[np.ndarray] = []
    todo = []
    for r in rows:
        data = store.get_scores(r.sha256, version, EMBEDDING_KEY) if cacheable else None
        if data is None:
            todo.append(r)
        else:
            out.append(np.frombuffer(data, np.float32))
    for start in range(0, len(todo), batch_size):
        ok, pixels = _read_rows(store, todo[start : start + batch_size], on_skip)
        if not pixels:
            continue
        for r, p in zip(ok, detector.predict(pixels), strict=True):
            e = np.asarray(p.embedding, np.float32)
            out.append(e)
            if cacheable:
                store.put_scores(r.sha256, version, EMBEDDING_KEY, e.tobytes())
    return np.stack(out) if out else None


def judged_mask(store: ProjectStore, image_id: int, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` lie on an object (or background) a person already judged on the
    image (IoU >= ``JUDGED_IOU`` with a human or rejected box): asking again teaches nothing."""
    from napari_al.core.boxes import box_iou

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    judged = [b.xyxy for b in store.boxes(image_id, statuses=(*HUMAN_STATUSES, "rejected"))]
    if not judged or not len(boxes):
        return np.zeros(len(boxes), bool)
    return box_iou(boxes, np.asarray(judged, np.float64)).max(axis=1) >= JUDGED_IOU


def _pack(raw: Any, embedding: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(
        buf,
        raw=np.frombuffer(raw.to_bytes(), np.uint8),
        embedding=np.asarray(embedding, np.float32),
    )
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[Any, np.ndarray]:
    import io

    from napari_al.core.scoring.strategy import ImageRaw

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return ImageRaw.from_bytes(z["raw"].tobytes()), z["embedding"]


# --------------------------------------------------------------------------- evaluation


def evaluate_project(
    store: ProjectStore,
    detector: Detector,
    split: str = "val",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """mAP@0.5 and COCO AP of the detector on the human labels of a split's complete images."""
    from napari_al.core.evaluation import evaluate

    classes = store.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    rows = [r for r in store.images(split=split) if r.review_state == "complete"]
    if not rows:
        raise ValueError(f"no reviewed images in split {split!r} to evaluate on")
    gts, preds = [], []
    for start in range(0, len(rows), 2):
        batch = rows[start : start + 2]
        preds.extend(detector.predict([load_rgb(store.abs_path(r)) for r in batch]))
        for r in batch:
            bx = store.boxes(image_id=r.id, statuses=HUMAN_STATUSES)
            gts.append(
                (
                    np.asarray([b.xyxy for b in bx], np.float64).reshape(-1, 4),
                    np.asarray([index[b.class_id] for b in bx], np.int64),
                )
            )
        if progress is not None:
            progress(min(start + 2, len(rows)), len(rows))
    result = evaluate(gts, preds, [c.name for c in classes])
    out = result.as_dict()
    out["split"] = split
    out["images"] = len(rows)
    return out
