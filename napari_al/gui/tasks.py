"""The widget's background jobs: plain generators over the workflow layer (Qt-free, so tests
can drive them with :func:`run_job`).

Each job runs in a worker thread (see :mod:`napari_al.gui.workers`), opens its OWN
:class:`~napari_al.core.store.ProjectStore` connection (the GUI keeps writing through its own;
with WAL neither blocks the other), yields :class:`~napari_al.core.workflow.Progress` between
steps (where a napari worker's ``quit()`` takes effect), and returns a :class:`JobResult` that
the main thread applies. A job never touches layers or widgets, and does no math of its own:
the round is :func:`napari_al.core.workflow.run_round`.

The model in use is never trained in place: the round trains a copy and the main thread swaps
the reference when the job succeeds, so a cancelled or failed run leaves the model in use, and
the project, as they were.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_al.core import workflow
from napari_al.core.store import ProjectStore
from napari_al.core.workflow import ModelSettings, Progress, RoundResult, RoundSettings
from napari_al.runtime import torch_threads

log = logging.getLogger(__name__)

#: Modules imported on the main thread before the first worker starts.
TORCH_MODULES = ("torch", "torchvision", "torchvision.models.detection", "napari_al.core.engine")

_torch_ready = False


def ensure_torch() -> None:
    """Import torch, torchvision's detection models and the engine on the calling thread.

    Called on the MAIN thread by the widget before its first background job (cheap once done),
    after :func:`napari_al.runtime.block_triton` (see there why a GUI process must not load
    triton). Raises RuntimeError on another thread.
    """
    global _torch_ready
    if _torch_ready:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("ensure_torch() must run on the main thread (see conventions)")
    from napari_al.runtime import block_triton

    block_triton()
    for name in TORCH_MODULES:
        importlib.import_module(name)
    _torch_ready = True


@dataclass
class JobResult:
    """What a job hands back to the main thread (``kind``: load, rescore, retrain, evaluate,
    click)."""

    kind: str
    detector: Any = None
    model_version: int | None = None
    queries: list[Any] | None = None
    #: image id -> [(xyxy, score, class index)] possibly missed objects.
    missed: dict[int, list[workflow.Suggestion]] = field(default_factory=dict)
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
    #: A click job's result: the model's candidate boxes of one image
    #: (:class:`~napari_al.core.workflow.ClickCandidates`).
    candidates: Any = None

    @classmethod
    def from_round(cls, kind: str, r: RoundResult) -> JobResult:
        return cls(
            kind,
            detector=r.detector,
            model_version=r.model_version,
            queries=r.queries,
            missed=r.missed,
            metrics=r.metrics,
            predicted_images=r.predicted_images,
            outcome=r.outcome,
            cancelled=r.cancelled,
            message=r.message,
            skipped=r.skipped,
        )


Report = Callable[[Progress], None]
Job = Generator[Progress, None, JobResult]


def _noop(_: Progress) -> None:
    pass


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


def _guarded(kind: str, body: Callable[[], Job], threads: int | None = None) -> Job:
    """Run a job body; an exception becomes a failed :class:`JobResult` (and a log entry)."""
    t0 = time.perf_counter()
    try:
        with torch_threads(threads):  # process-wide: one job at a time, main thread idle
            result = yield from body()
    except Exception as exc:
        log.exception("napari-al %s job failed", kind)
        result = JobResult(
            kind, error=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()
        )
    result.seconds = time.perf_counter() - t0
    return result


def load_model_job(
    project_dir: str | Path, model: ModelSettings, stop: threading.Event, report: Report = _noop
) -> Job:
    """Load (or build) the detector ``model`` describes (:func:`workflow.load_model`)."""

    def body() -> Job:
        yield Progress("load", 0, 1, message="loading the model")
        with ProjectStore.open(project_dir) as store:
            detector = workflow.load_model(store, model)
        yield Progress("load", 1, 1, message="model loaded")
        return JobResult(
            "load",
            detector=detector,
            model_version=detector.model_version or None,
            message=detector.build_message,
        )

    return (yield from _guarded("load", body))


def _round_job(
    kind: str,
    project_dir: str | Path,
    detector: Any,
    settings: RoundSettings,
    stop: threading.Event,
    report: Report,
    current_image: int | None,
) -> Job:
    def body() -> Job:
        with ProjectStore.open(project_dir) as store:
            result = yield from workflow.run_round(
                store,
                detector,
                settings,
                train=kind == "retrain",
                should_stop=stop.is_set,
                report=report,
                current_image=current_image,
            )
        return JobResult.from_round(kind, result)

    return (yield from _guarded(kind, body, job_threads()))


def rescore_job(
    project_dir: str | Path,
    detector: Any,
    settings: RoundSettings,
    stop: threading.Event,
    report: Report = _noop,
    current_image: int | None = None,
) -> Job:
    """Predict with the model in use (loaded first if none), then rank and suggest."""
    return _round_job("rescore", project_dir, detector, settings, stop, report, current_image)


def retrain_job(
    project_dir: str | Path,
    detector: Any,
    settings: RoundSettings,
    stop: threading.Event,
    report: Report = _noop,
    current_image: int | None = None,
) -> Job:
    """Train a copy of the model on a snapshot of the labels, then evaluate, predict, rank and
    suggest (:func:`workflow.run_round`). Labels edited while this runs are kept for the next
    round; the new model is handed back and the main thread swaps it in."""
    return _round_job("retrain", project_dir, detector, settings, stop, report, current_image)


def evaluate_job(
    project_dir: str | Path,
    detector: Any,
    model: ModelSettings,
    stop: threading.Event,
    report: Report = _noop,
    split: str = "val",
) -> Job:
    """mAP of the model in use on a split, recorded on its model version."""

    def body() -> Job:
        result = JobResult("evaluate")
        with ProjectStore.open(project_dir) as store:
            det = detector
            if det is None:
                yield Progress("load", 0, 1, message="loading the model")
                det = workflow.load_model(store, model)
                result.detector = det
            result.model_version = det.model_version or None
            yield Progress("evaluate", 0, 1, message=f"mAP on {split}")
            result.metrics = workflow.evaluate_model(
                store, det, split, progress=lambda d, t: report(Progress("evaluate", d, t))
            )
            yield Progress("evaluate", 1, 1)
        return result

    return (yield from _guarded("evaluate", body, job_threads()))


def click_candidates_job(
    detector: Any, pixels: Any, stop: threading.Event, report: Report = _noop
) -> Job:
    """The model's candidate boxes of one image for click mode
    (:func:`workflow.click_candidates`; ``pixels``: the image as read). Uses the torch threads
    as they are: it is one forward pass, and may run beside a round's job."""

    def body() -> Job:
        yield Progress("click", 0, 1, message="the model's boxes for the click")
        candidates = workflow.click_candidates(detector, pixels)
        yield Progress("click", 1, 1)
        return JobResult("click", candidates=candidates, model_version=detector.model_version)

    return (yield from _guarded("click", body))


def run_job(job: Job, report: Report = _noop) -> JobResult:
    """Drive a job to the end on the calling thread (headless use and tests)."""
    return workflow.drive(job, report)
