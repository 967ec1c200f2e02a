"""Fine-tune the project's detector on its labels and record the new model version.

The labels come from one store snapshot (``store.training_snapshot()``), so edits made while
training runs are kept for the next round. Every recorded model version carries the labelling
effort at the time of the snapshot (annotation seconds, human boxes): that is what the
mAP-vs-effort plot needs, whichever front end trained it.

Under torchrun (``napari-al train --nproc N``) every rank runs :func:`train_model` on the same
snapshot; the engine trains them together (DistributedDataParallel). Only rank 0
(:func:`is_main_process`) writes: the checkpoint and the model version; the other ranks read
the store and write nothing, so the store keeps one writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_al.core.atomic_files import partial_writes, remove_partial_writes, total_bytes
from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.store.lock import holds_project_lock
from napari_al.core.workflow.crops import is_crop
from napari_al.core.workflow.examples import (
    HELD_OUT_SPLITS,
    OnSkip,
    _warn_skip,
    labels_hash,
    pseudo_label_examples,
    training_examples,
)
from napari_al.core.workflow.model import next_checkpoint_path
from napari_al.core.workflow.settings import TileSettings, TrainSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector, TrainResult
    from napari_al.core.store import ProjectStore

#: Called after each step with (step, total steps, loss, epoch).
TrainProgress = Callable[[int, int, float, float], None]
ShouldStop = Callable[[], bool]


def is_main_process() -> bool:
    """Whether this process writes the store: True except on the ranks > 0 of a multi-process
    (torchrun) training run (:func:`napari_al.core.engine.ddp.is_main_process`)."""
    from napari_al.core.engine.ddp import is_main_process as main

    return main()


def labelling_effort(store: ProjectStore) -> dict[str, float]:
    """Annotation seconds so far (the store's action log) and the number of human boxes that
    can teach (on images outside the held-out val/test splits)."""
    held_out = {r.id for r in store.images() if r.split in HELD_OUT_SPLITS}
    boxes = [b for b in store.boxes(statuses=HUMAN_STATUSES) if b.image_id not in held_out]
    return {
        "annotation_seconds": float(store.annotation_seconds()),
        "boxes_annotated": float(len(boxes)),
    }


@dataclass
class TrainOutcome:
    """A training run: the run itself, and the model version it recorded (None: nothing saved,
    because it was cancelled, stopped on a non-finite loss, had no data, or ``save=False``)."""

    result: TrainResult
    n_examples: int
    model_version: int | None = None
    checkpoint: Path | None = None
    last_action_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: How many of the examples are crops of large images, and of how many images
    #: (:mod:`napari_al.core.workflow.crops`).
    crops: int = 0
    crop_images: int = 0
    #: Images left out because their file could not be read (reported to ``on_skip``).
    skipped_images: int = 0
    #: The files of those images.
    skipped_paths: list[str] = field(default_factory=list)
    #: Whether skipping them is why nothing was trained (``no_data``): the reviewed images
    #: that held the boxes were among them. ``result.message`` then says so and names them
    #: (:func:`unreadable_message`).
    skipped_all: bool = False
    #: Temporary files of checkpoint saves killed before their rename, removed from
    #: ``models/`` before this save (:func:`_save_version`), and their bytes.
    removed_partial_writes: int = 0
    removed_partial_bytes: int = 0

    @property
    def stopped_reason(self) -> str:
        """``done``, ``cancelled``, ``non_finite``, ``no_data`` (the engine's words)."""
        return str(self.result.stopped_reason)


@holds_project_lock("training")
def train_model(
    store: ProjectStore,
    detector: Detector,
    settings: TrainSettings | None = None,
    *,
    progress: TrainProgress | None = None,
    should_stop: ShouldStop | None = None,
    save: bool = True,
    tiles: TileSettings | None = None,
    on_skip: OnSkip | None = None,
) -> TrainOutcome:
    """Fine-tune ``detector`` in place on the project's labels; save and record a version.

    The run is ``settings.steps`` optimisation steps, or, when ``settings.epochs`` is set,
    that many passes over the informative training examples (one pass is
    ``ceil(examples / batch_size)`` steps; the engine converts). With
    ``settings.self_training`` set, pseudo-labelled unreviewed images join the examples
    (:mod:`napari_al.core.workflow.selftraining`; recorded as ``pseudo_images`` and
    ``pseudo_boxes`` in the version's metrics). An image with a side over
    ``tiles.tile_above`` (default :class:`TileSettings`) trains in crops of the detector's
    input size from its reviewed regions (:mod:`napari_al.core.workflow.crops`; each crop is
    one example; recorded as ``crops`` and ``crop_images`` when there are any). An image
    whose file is missing or cannot be decoded (:func:`~napari_al.core.images.check_pixels`,
    before the first step) is reported to ``on_skip`` (default: a logged warning) and left
    out, as prediction and ranking leave it out; ``skipped_images`` counts them. When no
    example holds a box (:func:`has_a_box`: reviewed images that are all background), nothing
    is trained: the outcome stops with ``no_data``, as when nothing is reviewed; when that is
    because the images holding the boxes were skipped as unreadable, ``skipped_all`` is set and
    ``result.message`` names their files (:func:`unreadable_message`).

    A run that is cancelled, hits a non-finite loss or raises saves nothing, and the detector
    gets back the weights it had (those of the version it reports). On success the checkpoint
    is written atomically (:func:`_save_version`), the version is added to the store with its
    metrics (training settings, labels hash, effort) and ``detector.model_version`` is set.

    Under torchrun all ranks train together and only rank 0 saves and records (``world_size``
    in the version's metrics); a rank > 0 returns its outcome with no version.

    Runs holding the project lock (:func:`~napari_al.core.store.project_lock`): raises
    :class:`~napari_al.core.store.ProjectBusyError` at once when another run holds it.
    """
    from napari_al.core.engine import train

    s = settings or TrainSettings()
    snapshot = store.training_snapshot()
    effort = labelling_effort(store)
    examples = _reviewed_examples(store, snapshot, detector, s, tiles)
    had_a_box = has_a_box(examples)
    examples, skipped = _readable(store, snapshot, examples, on_skip or _warn_skip)
    crops = [e for e in examples if is_crop(e)]
    n_crop_images = len({str(e.path) for e in crops})
    pseudo = _self_training_examples(store, snapshot, detector, s, len(examples), should_stop)
    examples += pseudo
    if not has_a_box(examples):  # background alone teaches a detector to find nothing
        examples = []
    skipped_all = had_a_box and not examples  # the unreadable files held every box
    kwargs = _engine_options(s)
    initial = {k: v.detach().clone() for k, v in detector.model.state_dict().items()}
    try:
        result = train(
            detector,
            examples,
            steps=s.steps if s.epochs is None else None,
            epochs=s.epochs,
            batch_size=s.batch_size,
            lambda_d=s.lambda_d,
            from_scratch=s.from_scratch,
            seed=s.seed,
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
    if skipped_all and result.stopped_reason == "no_data":
        result.message = unreadable_message(skipped)
    outcome = TrainOutcome(
        result=result,
        n_examples=len(examples),
        last_action_id=snapshot.last_action_id,
        crops=len(crops),
        crop_images=n_crop_images,
        skipped_images=len(skipped),
        skipped_paths=skipped,
        skipped_all=skipped_all and result.stopped_reason == "no_data",
    )
    if not save or result.stopped_reason != "done" or result.steps == 0:
        return outcome
    if not is_main_process():  # the store has one writer: rank 0
        return outcome
    metrics = _metrics(s, result, examples, pseudo, outcome, snapshot, effort)
    _save_version(store, detector, metrics, outcome)
    return outcome


def _save_version(
    store: ProjectStore, detector: Detector, metrics: dict[str, Any], outcome: TrainOutcome
) -> None:
    """Save ``detector``'s checkpoint atomically and add it to the store as a model version
    with ``metrics``; set ``detector.model_version`` and ``outcome``'s version, checkpoint
    and metrics. The temporary files that saves killed before their rename left in
    ``models/`` (:mod:`napari_al.core.atomic_files`) are removed first: no live writer owns
    one, the caller (:func:`train_model`) holding the project lock."""
    from napari_al.core.engine import save_checkpoint

    path = next_checkpoint_path(store)
    outcome.removed_partial_bytes = total_bytes(partial_writes(path.parent))
    outcome.removed_partial_writes = len(remove_partial_writes(path.parent))
    save_checkpoint(detector, path, metadata=metrics)
    version = store.add_model_version(path, detector.arch, metrics=metrics)
    detector.model_version = version
    outcome.model_version = version
    outcome.checkpoint = path
    outcome.metrics = metrics


def _engine_options(s: TrainSettings) -> dict[str, Any]:
    """The engine's ``train`` options that ``s`` sets (its defaults where ``s`` has None)."""
    options: dict[str, Any] = {
        "partial_background_weight": s.partial_background_weight,
        "augment": s.augment,
    }
    if s.lr is not None:
        options["lr"] = s.lr
    if s.threads is not None:
        options["threads"] = s.threads
    return options


def has_a_box(examples: list[Any]) -> bool:
    """Whether any training example holds a box (human, clicked or pseudo label): reviewed
    images without one are background only, and a detector trained on background alone learns
    to find nothing, so :func:`train_model` then trains nothing (``no_data``), as when nothing
    is reviewed."""
    return any(len(e.boxes) for e in examples)


#: How many unreadable files :func:`unreadable_message` names before ``and N more``.
NAMED_FILES = 5


def unreadable_message(paths: Sequence[str]) -> str:
    """The one line of a training run left with nothing to train on because the reviewed
    images holding its boxes could not be read (``paths``, their files, missing or corrupt
    since they were imported): which files, and what to do. Every front end says this one."""
    from napari_al.core.project import plural

    n = len(paths)
    names = ", ".join(paths[:NAMED_FILES]) + (
        f" and {n - NAMED_FILES} more" if n > NAMED_FILES else ""
    )
    if n == 1:
        what, files, it = f"image with boxes was skipped as unreadable ({names})", "that file", "it"
    else:
        files, it = "those files", "them"
        what = f"images with boxes were skipped as unreadable ({n} {plural(n, 'file')}: {names})"
    return (
        f"nothing to train on: the reviewed {what}; restore {files} (from a backup or the "
        f"original source, at the same path) or re-save {it} in a readable format, then train "
        "again; nothing was saved"
    )


def _readable(
    store: ProjectStore, snapshot: Any, examples: list[Any], on_skip: OnSkip
) -> tuple[list[Any], list[str]]:
    """``examples`` without those whose image file cannot be read now, each such image
    reported once to ``on_skip``; and the files of the images left out."""
    from napari_al.core.images import ImageReadError, check_pixels

    ids = {str(store.abs_path(item.image)): int(item.image.id) for item in snapshot.images}
    bad: list[str] = []
    for path in dict.fromkeys(str(e.path) for e in examples if e.image is None):
        try:
            check_pixels(path)
        except (ImageReadError, OSError) as exc:
            bad.append(path)
            message = str(exc)
            on_skip(ids.get(path, -1), message if path in message else f"{path}: {message}")
    gone = set(bad)
    return [e for e in examples if str(e.path) not in gone], bad


def _metrics(
    s: TrainSettings,
    result: TrainResult,
    examples: list[Any],
    pseudo: list[Any],
    outcome: TrainOutcome,
    snapshot: Any,
    effort: dict[str, float],
) -> dict[str, Any]:
    """What a model version records of the run that made it."""
    crops = {"crops": outcome.crops, "crop_images": outcome.crop_images} if outcome.crops else {}
    return {
        **{k: v for k, v in asdict(s).items() if k != "threads"},
        "steps": result.steps,
        "final_loss": float(result.losses[-1]) if result.losses else None,
        "examples": len(examples),
        "pseudo_images": len(pseudo),
        "pseudo_boxes": sum(len(e.boxes) for e in pseudo),
        **crops,
        "labels_hash": labels_hash(snapshot),
        "last_action_id": snapshot.last_action_id,
        "trained_at": time.time(),
        "world_size": result.world_size,
        **effort,
    }


def _reviewed_examples(
    store: ProjectStore,
    snapshot: Any,
    detector: Detector,
    s: TrainSettings,
    tiles: TileSettings | None,
) -> list[Any]:
    """The examples of the reviewed images; large ones in crops of the detector's own input
    size (:func:`~napari_al.core.engine.tiling.native_tile`)."""
    from napari_al.core.engine.tiling import native_tile

    return training_examples(
        store,
        snapshot,
        noisy_min_score=s.noisy_min_score,
        tiles=tiles,
        tile_shape=lambda h, w: native_tile(detector.model, h, w),
    )


def _self_training_examples(
    store: ProjectStore,
    snapshot: Any,
    detector: Detector,
    s: TrainSettings,
    reviewed: int,
    should_stop: ShouldStop | None,
) -> list[Any]:
    """Pseudo-labelled unreviewed images (:mod:`napari_al.core.workflow.selftraining`); none
    when ``s.self_training`` is None."""
    if s.self_training is None:
        return []
    from napari_al.core.workflow.selftraining import pseudo_labels

    labels = pseudo_labels(store, snapshot, detector, s, reviewed, should_stop)
    return pseudo_label_examples(store, snapshot, labels)
