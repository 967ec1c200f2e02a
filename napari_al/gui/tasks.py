"""The background jobs of the loop, as plain generators (Qt-free, so tests can drive them).

Each job runs in a worker thread (see :mod:`napari_al.gui.workers`), opens its OWN
:class:`~napari_al.core.store.ProjectStore` connection (the GUI keeps writing through its own;
with WAL neither blocks the other), yields a :class:`Progress` between phases (where a napari
worker's ``quit()`` takes effect), passes ``should_stop`` into the long calls, and returns a
:class:`JobResult` that the main thread applies. A job never touches layers or widgets.

The model in use is never trained in place: a retrain works on a deep copy (or a freshly loaded
detector) and the main thread swaps the reference when the job succeeds, so a cancelled or
failed run leaves the model in use, and the project, as they were.

The heavy lifting is :mod:`napari_al.core.loop` (``load_detector``, ``train_project``,
``predict_project``, ``rank_project``, ``evaluate_project``), looked up at call time through
:func:`loop_api` so tests can substitute a fake loop.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.store import ProjectStore

log = logging.getLogger(__name__)

#: Modules imported on the main thread before the first worker starts.
TORCH_MODULES = ("torch", "torchvision", "torchvision.models.detection")

#: Set to 1 to let torch import triton in the GUI process (see :func:`ensure_torch`).
ALLOW_TRITON_ENV = "NAPARI_AL_ALLOW_TRITON"

_torch_ready = False


def ensure_torch() -> None:
    """Import torch, torchvision's detection models and the loop on the calling thread.

    Call it on the MAIN thread before starting any worker that uses them (cheap once done).

    It also keeps torch from importing ``triton`` when triton is not loaded yet: importing
    ``triton`` (which ``torchvision.ops`` pulls in through ``torch._dynamo``) after a napari
    viewer has created its OpenGL context segfaults in ``libtriton``'s loader, on the main
    thread as in a worker (measured with Mesa's llvmpipe under Xvfb; both bundle LLVM). triton
    only serves ``torch.compile``, which napari-al does not use. Set
    ``NAPARI_AL_ALLOW_TRITON=1`` to opt out.
    """
    global _torch_ready
    if _torch_ready:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("ensure_torch() must run on the main thread (see conventions)")
    if "triton" not in sys.modules and os.environ.get(ALLOW_TRITON_ENV) != "1":
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    for name in TORCH_MODULES:
        importlib.import_module(name)
    for name in ("napari_al.core.engine", "napari_al.core.loop"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # the loop may not exist yet in a development tree
            log.debug("could not import %s: %s", name, exc)
    _torch_ready = True


def loop_api() -> Any:
    """The :mod:`napari_al.core.loop` module (looked up at call time; tests substitute it)."""
    return importlib.import_module("napari_al.core.loop")


@dataclass
class Progress:
    """One progress report: ``phase`` (load, train, predict, rank, suggest, evaluate)."""

    phase: str
    done: int = 0
    total: int = 0
    loss: float | None = None
    epoch: float | None = None
    message: str = ""
    image_id: int | None = None


@dataclass
class ModelParams:
    """How to get a detector: architecture, optional weights file, device, input size."""

    arch: str | None = None
    weights: str | None = None
    device: str | None = None
    min_size: int | None = None
    max_size: int | None = None


@dataclass
class TrainParams:
    steps: int = 100
    lambda_d: float = 0.5
    from_scratch: bool = False
    seed: int = 0


@dataclass
class QueryParams:
    strategy: str = "entropy"
    unit: str = "image"
    budget: int = 10
    diversity: str | None = None
    aggregation: str = "sum"
    suggest_missed: bool = True
    #: How many queried images get "possibly missed" suggestions computed (plus the current).
    suggest_images: int = 3


@dataclass
class JobResult:
    """What a job hands back to the main thread."""

    kind: str
    detector: Any = None
    model_version: int | None = None
    queries: list[Any] | None = None
    #: image id -> [(xyxy, score, class index)] possibly missed objects.
    missed: dict[int, list[tuple[tuple[float, float, float, float], float, int]]] = field(
        default_factory=dict
    )
    metrics: dict[str, Any] | None = None
    predicted_images: list[int] = field(default_factory=list)
    outcome: Any = None
    cancelled: bool = False
    error: str | None = None
    details: str = ""
    seconds: float = 0.0
    message: str = ""
    #: Images that could not be read and were left out (one line each: path and reason).
    skipped: list[str] = field(default_factory=list)


Report = Callable[[Progress], None]
Job = Generator[Progress, None, JobResult]


def _noop(_: Progress) -> None:
    pass


def _version_of(outcome: Any, store: ProjectStore) -> int | None:
    """The model version a training outcome recorded (None: the run saved no model)."""
    if hasattr(outcome, "model_version"):
        value = outcome.model_version
        return int(value) if value is not None else None
    latest = store.latest_model_version()  # an outcome without the field: the newest version
    return None if latest is None else latest.id


def _stop_reason(outcome: Any) -> str:
    result = getattr(outcome, "result", None)
    return str(getattr(result, "stopped_reason", "") or getattr(outcome, "stopped_reason", ""))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments it accepts (the loop's API grows over time)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def detector_version(detector: Any) -> int | None:
    """The store model version a detector was loaded from or trained to (None: none)."""
    value = detector.model_version
    return int(value) if value else None


def labelling_effort(store: ProjectStore) -> dict[str, float]:
    """Annotation seconds so far and the number of human boxes (for the mAP-vs-effort plots)."""
    return {
        "annotation_seconds": float(store.annotation_seconds()),
        "boxes_annotated": float(len(store.boxes(statuses=HUMAN_STATUSES))),
    }


def merge_metrics(store: ProjectStore, version: int | None, extra: dict[str, Any]) -> None:
    """Add keys to a model version's metrics (keeping what the trainer recorded)."""
    if version is None:
        return
    for row in store.model_versions():
        if row.id == version:
            store.set_model_metrics(version, {**row.metrics, **extra})
            return


def get_detector(store: ProjectStore, params: ModelParams) -> Any:
    """A detector per ``params``: from a weights file when given, else the project's latest
    checkpoint or a fresh pretrained-backbone model (``loop.load_detector``)."""
    kwargs: dict[str, Any] = {
        "arch": params.arch,
        "device": params.device,
        "min_size": params.min_size,
        "max_size": params.max_size,
    }
    if params.weights:
        kwargs["weights"] = params.weights
    return loop_api().load_detector(store, **kwargs)


def images_to_predict(store: ProjectStore) -> list[int]:
    """Images a person may still review: not complete, pool first, then the other splits."""
    rows = [r for r in store.images() if r.review_state != "complete"]
    rows.sort(key=lambda r: (r.split != "pool", r.id))
    return [r.id for r in rows]


#: Environment variable: torch CPU threads for background jobs (default: all cores but one).
GUI_THREADS_ENV = "NAPARI_AL_GUI_THREADS"


def job_threads() -> int:
    """torch CPU threads a background job uses: every core this process may use but one, so
    the viewer's event loop keeps a core (``NAPARI_AL_GUI_THREADS`` overrides)."""
    value = os.environ.get(GUI_THREADS_ENV)
    if value:
        return max(1, int(value))
    try:
        n = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n) - 1)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the job (process-wide: jobs run one at a time and the
    main thread computes nothing with torch), restored after; no-op without torch."""
    torch = sys.modules.get("torch")
    if n is None or torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _guarded(kind: str, body: Callable[[], Job], threads: int | None = None) -> Job:
    """Run a job body; an exception becomes a failed :class:`JobResult` (and a log entry)."""
    t0 = time.perf_counter()
    try:
        with _torch_threads(threads):
            result = yield from body()
    except Exception as exc:
        log.exception("napari-al %s job failed", kind)
        result = JobResult(
            kind, error=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()
        )
    result.seconds = time.perf_counter() - t0
    return result


def load_model_job(
    project_dir: str | Path, params: ModelParams, stop: threading.Event, report: Report = _noop
) -> Job:
    """Load (or build) the detector described by ``params``."""

    def body() -> Job:
        yield Progress("load", 0, 1, message="loading the model")
        with ProjectStore.open(project_dir) as store:
            detector = get_detector(store, params)
        yield Progress("load", 1, 1, message="model loaded")
        return JobResult(
            "load",
            detector=detector,
            model_version=detector_version(detector),
            message=getattr(detector, "build_message", ""),
        )

    return (yield from _guarded("load", body))


def _predict_and_rank(
    store: ProjectStore,
    detector: Any,
    query: QueryParams,
    stop: threading.Event,
    report: Report,
    result: JobResult,
    current_image: int | None,
) -> Job:
    """Predict the reviewable images one by one, rank the pool, suggest possibly missed."""
    loop = loop_api()

    def skip(image_id: int, message: str) -> None:
        if message not in result.skipped:
            result.skipped.append(message)

    ids = images_to_predict(store)
    if current_image in ids:  # the image on screen first: its new boxes appear soonest
        ids.remove(current_image)
        ids.insert(0, current_image)
    for i, image_id in enumerate(ids):
        if stop.is_set():
            result.cancelled = True
            return result
        _call(
            loop.predict_project,
            store,
            detector,
            image_ids=[image_id],
            should_stop=stop.is_set,
            on_skip=skip,
        )
        result.predicted_images.append(image_id)
        yield Progress("predict", i + 1, len(ids), image_id=image_id)
    if stop.is_set():
        result.cancelled = True
        return result
    yield Progress("rank", 0, 1, message=f"ranking by {query.strategy}")

    def rank_progress(*args: Any) -> None:
        done, total = (int(args[0]), int(args[1])) if len(args) >= 2 else (0, 0)
        report(Progress("rank", done, total))

    result.queries = list(
        _call(
            loop.rank_project,
            store,
            detector,
            strategy=query.strategy,
            unit=query.unit,
            budget=query.budget,
            diversity=query.diversity,
            aggregation=query.aggregation,
            progress=rank_progress,
            should_stop=stop.is_set,
            on_skip=skip,
        )
    )
    if stop.is_set():
        result.cancelled = True
        return result
    yield Progress("rank", 1, 1, message=f"{len(result.queries)} items queried")
    if query.suggest_missed and hasattr(detector, "scoring_views"):
        wanted: list[int] = []
        for image_id in [current_image, *(q.image for q in result.queries)]:
            if image_id is not None and image_id not in wanted:
                wanted.append(int(image_id))
        wanted = wanted[: query.suggest_images + 1]
        for i, image_id in enumerate(wanted):
            if stop.is_set():
                break
            result.missed[image_id] = suggest_missed(store, detector, image_id)
            yield Progress("suggest", i + 1, len(wanted), image_id=image_id)
    return result


def suggest_missed(
    store: ProjectStore,
    detector: Any,
    image_id: int,
    min_score: float = 0.1,
    limit: int = 20,
) -> list[tuple[tuple[float, float, float, float], float, int]]:
    """Low-threshold candidates overlapping no detection and no human box: possibly missed
    objects, best first, as ``(xyxy, score, class index)``."""
    import numpy as np

    from napari_al.core.boxes import box_iou
    from napari_al.core.images import read_image, to_rgb_uint8
    from napari_al.core.scoring import possibly_missed

    row = store.image(image_id)
    try:
        pixels = to_rgb_uint8(read_image(store.abs_path(row)))
    except (OSError, ValueError):  # unreadable: the predict/rank pass already reported it
        return []
    views = detector.scoring_views([pixels], candidates=True)[0]
    missed = possibly_missed(views, min_score=min_score)
    if len(missed) == 0:
        return []
    boxes = np.asarray(missed.boxes, dtype=float)
    keep = np.ones(len(boxes), bool)
    known = [b.xyxy for b in store.boxes(image_id=image_id) if b.status != "rejected"]
    if known:
        keep &= box_iou(boxes, np.asarray(known, float)).max(axis=1) < 0.3
    out = []
    for i in np.flatnonzero(keep)[:limit]:
        b = boxes[i]
        out.append(
            (
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                float(missed.scores[i]),
                int(missed.labels[i]),
            )
        )
    return out


def rescore_job(
    project_dir: str | Path,
    detector: Any,
    model: ModelParams,
    query: QueryParams,
    stop: threading.Event,
    report: Report = _noop,
    current_image: int | None = None,
) -> Job:
    """Predict with the model in use (loaded first if none), then rank and suggest."""

    def body() -> Job:
        result = JobResult("rescore")
        with ProjectStore.open(project_dir) as store:
            det = detector
            if det is None:
                yield Progress("load", 0, 1, message="loading the model")
                det = get_detector(store, model)
                result.detector = det
                result.model_version = detector_version(det)
            yield from _predict_and_rank(store, det, query, stop, report, result, current_image)
        return result

    return (yield from _guarded("rescore", body, job_threads()))


def retrain_job(
    project_dir: str | Path,
    detector: Any,
    model: ModelParams,
    train: TrainParams,
    query: QueryParams,
    stop: threading.Event,
    report: Report = _noop,
    current_image: int | None = None,
    evaluate_split: str | None = "val",
) -> Job:
    """Train a copy of the model on a snapshot of the labels, then predict, rank, evaluate.

    Labels edited while this runs are safe: the store is the truth, training reads a snapshot
    (``store.training_snapshot()`` inside ``train_project``) and predictions only replace
    ``predicted`` boxes. The new model is handed back; the main thread swaps it in.
    """

    def body() -> Job:
        loop = loop_api()
        result = JobResult("retrain")
        with ProjectStore.open(project_dir) as store:
            yield Progress("load", 0, 1, message="preparing the model")
            classes = [c.name for c in store.classes()]
            stale = hasattr(detector, "classes") and list(detector.classes) != classes
            if detector is None or train.from_scratch or stale:  # e.g. a class was added
                det = get_detector(store, model)
            else:
                det = copy.deepcopy(detector)
            effort = labelling_effort(store)
            yield Progress("train", 0, train.steps, message="training")

            def on_step(step: int, total: int, loss: float, epoch: float = 0.0) -> None:
                report(Progress("train", int(step), int(total), float(loss), float(epoch)))

            outcome = loop.train_project(
                store,
                det,
                steps=train.steps,
                lambda_d=train.lambda_d,
                from_scratch=train.from_scratch,
                seed=train.seed,
                progress=on_step,
                should_stop=stop.is_set,
            )
            result.outcome = outcome
            version = _version_of(outcome, store)
            if stop.is_set() or getattr(outcome, "stopped", False):
                result.cancelled = True
                return result
            if version is None:
                reason = _stop_reason(outcome)
                if reason == "no_data":
                    raise ValueError(
                        "nothing to train on yet: review some boxes first (accept, correct, "
                        "draw) or import annotations"
                    )
                raise RuntimeError(f"training saved no model (stopped: {reason or 'unknown'})")
            result.detector = det
            result.model_version = version
            merge_metrics(store, result.model_version, effort)
            yield Progress("train", train.steps, train.steps, message="trained")
            if evaluate_split and store.images(split=evaluate_split, review_state="complete"):
                yield Progress("evaluate", 0, 1, message=f"mAP on {evaluate_split}")
                try:  # the model is trained and saved: an evaluation problem must not lose it
                    metrics = _metrics_dict(
                        _call(
                            loop.evaluate_project,
                            store,
                            det,
                            split=evaluate_split,
                            progress=lambda d, t: report(Progress("evaluate", d, t)),
                        )
                    )
                except Exception as exc:
                    log.exception("evaluation after training failed")
                    result.message = f"evaluation failed: {type(exc).__name__}: {exc}"
                else:
                    result.metrics = {**metrics, **effort, "split": evaluate_split}
                    merge_metrics(store, result.model_version, _plain(result.metrics))
                yield Progress("evaluate", 1, 1)
            yield from _predict_and_rank(store, det, query, stop, report, result, current_image)
            if result.cancelled:  # the new model is trained: keep it even if ranking stopped
                result.cancelled = False
                result.message = "; ".join(
                    m for m in (result.message, "ranking cancelled; the new model is in use") if m
                )
        return result

    return (yield from _guarded("retrain", body, job_threads()))


def evaluate_job(
    project_dir: str | Path,
    detector: Any,
    model: ModelParams,
    model_version: int | None,
    stop: threading.Event,
    report: Report = _noop,
    split: str = "val",
) -> Job:
    """mAP of the model in use on a split; recorded in the model version's metrics."""

    def body() -> Job:
        result = JobResult("evaluate", model_version=model_version)
        with ProjectStore.open(project_dir) as store:
            det = detector
            if det is None:
                yield Progress("load", 0, 1, message="loading the model")
                det = get_detector(store, model)
                result.detector = det
            if not store.images(split=split, review_state="complete"):
                raise ValueError(f"the project has no complete {split!r} images to evaluate on")
            yield Progress("evaluate", 0, 1, message=f"mAP on {split}")
            metrics = _metrics_dict(
                _call(
                    loop_api().evaluate_project,
                    store,
                    det,
                    split=split,
                    progress=lambda d, t: report(Progress("evaluate", d, t)),
                )
            )
            effort = labelling_effort(store)
            old = {}
            for row in store.model_versions():
                if row.id == model_version:
                    old = row.metrics
            # keep the effort recorded when the model was trained, if any
            result.metrics = {**metrics, **effort, **{k: old[k] for k in effort if k in old}}
            result.metrics["split"] = split
            merge_metrics(store, model_version, _plain(result.metrics))
            yield Progress("evaluate", 1, 1)
        return result

    return (yield from _guarded("evaluate", body, job_threads()))


def _metrics_dict(value: Any) -> dict[str, Any]:
    """An evaluation result as a dict (a dict, or an object with ``as_dict``/``to_dict``)."""
    for name in ("as_dict", "to_dict"):
        if hasattr(value, name):
            return dict(getattr(value, name)())
    return dict(value)


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly copy (numpy scalars to floats, nested dicts kept)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = _plain(v)
        elif hasattr(v, "item"):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def run_job(job: Job, report: Report = _noop) -> JobResult:
    """Drive a job to the end on the calling thread (headless use and tests)."""
    while True:
        try:
            report(next(job))
        except StopIteration as stop:
            return stop.value


def effort_series(store: ProjectStore) -> list[dict[str, float]]:
    """Per model version with a recorded mAP: version, map50, annotation seconds, boxes."""
    rows = []
    for row in store.model_versions():
        m = row.metrics
        value = m.get("map50", m.get("mAP50", m.get("map_50")))
        if value is None or "annotation_seconds" not in m:
            continue
        rows.append(
            {
                "version": float(row.id),
                "map50": float(value),
                "annotation_seconds": float(m["annotation_seconds"]),
                "boxes_annotated": float(m.get("boxes_annotated", float("nan"))),
            }
        )
    return rows
