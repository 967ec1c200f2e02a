"""One active-learning round, the only place that runs one: train -> record -> evaluate ->
calibrate -> predict -> rank -> suggest missed objects.

:func:`run_round` is a generator: it yields a :class:`Progress` between steps (where a GUI
worker's ``quit()`` takes effect and a progress bar moves) and returns a :class:`RoundResult`.
The widget's background jobs run it in a worker thread, the notebook ``Session`` and the CLI
drive it with :func:`drive`. Fine-grained progress inside a step (training steps, ranked
images) goes to the ``report`` callback.

The model in use is never trained in place: a round trains a deep copy (or a freshly loaded
detector) and hands it back, so a cancelled or failed run leaves the caller's model, and the
project, as they were.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_al.core.selection import QueryItem
from napari_al.core.store.lock import project_lock
from napari_al.core.workflow.calibration import calibrate_model
from napari_al.core.workflow.errors import WorkflowError
from napari_al.core.workflow.evaluation import SplitPredictions, evaluate_model, predict_split
from napari_al.core.workflow.model import load_model
from napari_al.core.workflow.prediction import images_to_predict, predict_images
from napari_al.core.workflow.ranking import rank_pool
from napari_al.core.workflow.settings import (
    CalibrationSettings,
    DistributedSettings,
    ModelSettings,
    QuerySettings,
    SuggestSettings,
    TrainSettings,
)
from napari_al.core.workflow.suggest import Suggestion, suggest_missed
from napari_al.core.workflow.training import TrainOutcome, train_model

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """One progress report. ``phase``: load, train, evaluate, calibrate, predict, rank or
    suggest;
    ``done``/``total`` count steps or images; ``loss``/``epoch`` during training."""

    phase: str
    done: int = 0
    total: int = 0
    loss: float | None = None
    epoch: float | None = None
    message: str = ""
    image_id: int | None = None


Report = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


def _noop(_: Progress) -> None:
    pass


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RoundSettings:
    """Everything a round needs; ``evaluate_split`` None skips the evaluation (and the
    calibration's measurement)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    suggest: SuggestSettings = field(default_factory=SuggestSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    evaluate_split: str | None = "val"
    #: Where the rank step scores the pool (default: in this process; docs/scale.md).
    distributed: DistributedSettings = field(default_factory=DistributedSettings)


@dataclass
class RoundResult:
    """What a round hands back. ``detector`` is set when the round loaded or trained one (the
    caller swaps it in); ``metrics`` is the evaluation; ``calibration`` what
    :func:`~napari_al.core.workflow.calibration.calibrate_model` fitted and measured (None: not
    fitted); ``missed`` maps image id to
    suggestions; ``skipped`` has one line (path and reason) per unreadable image."""

    detector: Any = None
    model_version: int | None = None
    outcome: TrainOutcome | None = None
    metrics: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    queries: list[QueryItem] | None = None
    missed: dict[int, list[Suggestion]] = field(default_factory=dict)
    predicted_images: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cancelled: bool = False
    message: str = ""

    def note(self, message: str) -> None:
        """Append a message for the person (joined with '; ')."""
        self.message = "; ".join(m for m in (self.message, message) if m)


def _model_for_round(
    store: ProjectStore, detector: Detector | None, s: RoundSettings, train: bool
) -> tuple[Detector, bool]:
    """The detector to use and whether it is new to the caller (loaded or copied)."""
    classes = [c.name for c in store.classes()]
    stale = detector is not None and list(detector.classes) != classes
    if detector is None or stale or (train and s.train.from_scratch):
        return load_model(store, s.model), True
    if train:
        return copy.deepcopy(detector), True
    return detector, False


def run_round(
    store: ProjectStore,
    detector: Detector | None,
    settings: RoundSettings | None = None,
    *,
    train: bool = True,
    should_stop: ShouldStop = _never,
    report: Report = _noop,
    current_image: int | None = None,
) -> Generator[Progress, None, RoundResult]:
    """Run a round (``train=False``: predict, rank and suggest with the model as it is).

    After training, the new model version's scores are calibrated
    (:func:`~napari_al.core.workflow.calibration.calibrate_model`, on the judged model boxes,
    measured on the evaluation split with the evaluation's own predictions), so the boxes it
    predicts next are shown by the calibrated rule (:func:`~napari_al.core.workflow
    .calibration.verify_rule`). A rescore keeps the calibration fitted at training time.

    Raises ValueError when there is nothing to train on, RuntimeError when training saved no
    model for another reason; an evaluation or calibration failure after a successful training
    is reported in ``message`` and does not lose the new model. The round holds the project
    lock from its first step to its end (:func:`~napari_al.core.store.project_lock`): when
    another run holds it, :class:`~napari_al.core.store.ProjectBusyError` is raised at once,
    before any model is loaded.
    """
    s = settings or RoundSettings()
    what = "running a round (train, predict, rank)" if train else "predicting and ranking"
    with project_lock(store.project_dir, what):
        return (yield from _round(store, detector, s, train, should_stop, report, current_image))


def _round(
    store: ProjectStore,
    detector: Detector | None,
    s: RoundSettings,
    train: bool,
    should_stop: ShouldStop,
    report: Report,
    current_image: int | None,
) -> Generator[Progress, None, RoundResult]:
    """The body of :func:`run_round`, run holding the project lock."""
    result = RoundResult()
    yield Progress("load", 0, 1, message="preparing the model")
    det, new = _model_for_round(store, detector, s, train)
    if new:
        result.detector, result.model_version = det, det.model_version or None
    if train:
        yield from _train_step(store, det, s, should_stop, report, result)
        if result.cancelled:
            result.detector = None
            return result
        split_predictions = yield from _evaluate_step(store, det, s, report, result)
        yield from _calibrate_step(store, det, s, split_predictions, result)
    yield from _predict_step(store, det, should_stop, result, current_image)
    if not result.cancelled:
        yield from _rank_step(store, det, s, should_stop, report, result)
    if not result.cancelled:
        yield from _suggest_step(store, det, s, should_stop, result, current_image)
    if train and result.cancelled:  # the new model is trained: keep it even if ranking stopped
        result.cancelled = False
        result.note("ranking cancelled; the new model is in use")
    return result


def _train_step(
    store: ProjectStore,
    det: Detector,
    s: RoundSettings,
    should_stop: ShouldStop,
    report: Report,
    result: RoundResult,
) -> Generator[Progress, None, None]:
    steps = s.train.steps if s.train.epochs is None else 0  # epochs: the total comes later
    yield Progress("train", 0, steps, message="training")

    def on_step(step: int, total: int, loss: float, epoch: float = 0.0) -> None:
        report(Progress("train", int(step), int(total), float(loss), float(epoch)))

    outcome = train_model(store, det, s.train, progress=on_step, should_stop=should_stop)
    result.outcome = outcome
    if should_stop() or outcome.stopped_reason == "cancelled":
        result.cancelled = True
        return
    if outcome.model_version is None:
        if outcome.skipped_all:  # the files holding the boxes are unreadable: name them
            raise WorkflowError(outcome.result.message)
        if outcome.stopped_reason == "no_data":
            raise WorkflowError(
                "nothing to train on yet: review some boxes first (accept, correct, draw) "
                "or import annotations"
            )
        raise RuntimeError(f"training saved no model (stopped: {outcome.stopped_reason})")
    result.detector, result.model_version = det, outcome.model_version
    done = steps if s.train.epochs is None else outcome.result.steps  # epochs: known now
    yield Progress("train", done, done, message="trained")


def _evaluate_step(
    store: ProjectStore, det: Detector, s: RoundSettings, report: Report, result: RoundResult
) -> Generator[Progress, None, SplitPredictions | None]:
    """Evaluate on ``s.evaluate_split``; returns the predictions made there (None: none)."""
    split = s.evaluate_split
    if not split or not store.images(split=split, review_state="complete"):
        return None
    yield Progress("evaluate", 0, 1, message=f"mAP on {split}")
    predictions = None
    try:  # the model is trained and saved: an evaluation problem must not lose it
        predictions = predict_split(
            store, det, split, progress=lambda d, t: report(Progress("evaluate", d, t))
        )
        result.metrics = evaluate_model(store, det, split, predictions=predictions)
    except Exception as exc:
        log.exception("evaluation after training failed")
        result.note(f"evaluation failed: {type(exc).__name__}: {exc}")
    yield Progress("evaluate", 1, 1)
    return predictions


def _calibrate_step(
    store: ProjectStore,
    det: Detector,
    s: RoundSettings,
    predictions: SplitPredictions | None,
    result: RoundResult,
) -> Generator[Progress, None, None]:
    """Fit the new version's calibration; measure it on the evaluated split, if any."""
    yield Progress("calibrate", 0, 1, message="calibrating scores")
    try:
        result.calibration = calibrate_model(
            store,
            det,
            s.calibration,
            split=None if predictions is None else predictions.split,
            predictions=predictions,
        )
    except Exception as exc:
        log.exception("calibration after training failed")
        result.note(f"calibration failed: {type(exc).__name__}: {exc}")
    yield Progress("calibrate", 1, 1)


def _skip_recorder(result: RoundResult) -> Callable[[int, str], None]:
    def skip(image_id: int, message: str) -> None:
        if message not in result.skipped:
            result.skipped.append(message)

    return skip


def _predict_step(
    store: ProjectStore,
    det: Detector,
    should_stop: ShouldStop,
    result: RoundResult,
    current_image: int | None,
) -> Generator[Progress, None, None]:
    """Predict image by image (the one on screen first), so new boxes appear as they come."""
    ids = images_to_predict(store, first=current_image)
    skip = _skip_recorder(result)
    for i, image_id in enumerate(ids):
        if should_stop():
            result.cancelled = True
            return
        predict_images(store, det, [image_id], should_stop=should_stop, on_skip=skip)
        result.predicted_images.append(image_id)
        yield Progress("predict", i + 1, len(ids), image_id=image_id)
    if should_stop():
        result.cancelled = True


def _rank_step(
    store: ProjectStore,
    det: Detector,
    s: RoundSettings,
    should_stop: ShouldStop,
    report: Report,
    result: RoundResult,
) -> Generator[Progress, None, None]:
    yield Progress("rank", 0, 1, message=f"ranking by {s.query.strategy}")
    result.queries = rank_pool(
        store,
        det,
        s.query,
        progress=lambda d, t: report(Progress("rank", d, t)),
        should_stop=should_stop,
        on_skip=_skip_recorder(result),
        distributed=s.distributed,
    )
    if should_stop():
        result.cancelled = True
        return
    yield Progress("rank", 1, 1, message=f"{len(result.queries)} items queried")


def _suggest_step(
    store: ProjectStore,
    det: Detector,
    s: RoundSettings,
    should_stop: ShouldStop,
    result: RoundResult,
    current_image: int | None,
) -> Generator[Progress, None, None]:
    if not s.suggest.enabled:
        return
    wanted: list[int] = []
    for image_id in [current_image, *(q.image for q in result.queries or [])]:
        if image_id is not None and int(image_id) not in wanted:
            wanted.append(int(image_id))
    wanted = wanted[: s.suggest.images + 1]
    for i, image_id in enumerate(wanted):
        if should_stop():
            break
        result.missed[image_id] = suggest_missed(store, det, image_id, s.suggest)
        yield Progress("suggest", i + 1, len(wanted), image_id=image_id)


def first_round(store: ProjectStore) -> str | None:
    """The round a project opened in the middle of the loop needs before a person can go on.

    ``"retrain"`` when it has classes and reviewed training images (complete or partly
    reviewed, outside ``val``/``test``) but no model version yet; ``"rescore"`` when it has a
    model but no stored query set and images still to review; None when it needs neither
    (or has nothing to train on). ``napari-al demo`` starts this round in the background when
    the viewer opens (``ActiveLearningWidget.start_first_round``).
    """
    if store.latest_model_version() is None:
        reviewed = any(
            r.review_state != "unseen" and r.split not in ("val", "test") for r in store.images()
        )
        return "retrain" if reviewed and store.classes() else None
    if store.latest_queries() is None and images_to_predict(store):
        return "rescore"
    return None


def drive(round_: Generator[Progress, None, RoundResult], report: Report = _noop) -> RoundResult:
    """Run a round (or any such generator) to its end on the calling thread."""
    while True:
        try:
            report(next(round_))
        except StopIteration as stop:
            return stop.value
