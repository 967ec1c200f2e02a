"""Run the loop's jobs (:mod:`napari_al.gui.tasks`) as napari generator workers.

One job at a time. Every job is a generator: each ``yield`` emits progress to the main thread
and is where ``worker.quit()`` takes effect; a ``threading.Event`` passed into the long calls
(``should_stop`` of the workflow's ``run_round`` and its steps) stops them between steps.
Progress reported from inside a long call travels through a Qt signal (queued to the main
thread). The result is applied by the caller's ``on_done`` slot, on the main thread. Errors
inside a job come back as a failed :class:`~napari_al.gui.tasks.JobResult` and are shown as a
napari notification.

torch and torchvision are imported on the main thread before the first job starts
(:func:`~napari_al.gui.tasks.ensure_torch`, which also applies :func:`napari_al.runtime
.block_triton`: loading triton once a viewer exists segfaults).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_al.gui.tasks import Job, JobResult, Progress, ensure_torch

log = logging.getLogger(__name__)


class JobRunner(QObject):
    """Starts, tracks and cancels the one background job of a widget.

    Signals (main thread): ``progressed(Progress)`` for every report, ``done(JobResult)`` when a
    job ends (also when cancelled or failed), ``busy_changed(bool)``.
    """

    progressed = Signal(object)
    done = Signal(object)
    busy_changed = Signal(bool)
    _report = Signal(object)  # emitted from worker threads, delivered on the main thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: Any = None
        self.kind: str | None = None
        self.stop = threading.Event()
        self._gen: Job | None = None
        self._on_done: Callable[[JobResult], None] | None = None
        self._finished_result: JobResult | None = None
        self._report.connect(self.progressed.emit)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def report(self, progress: Progress) -> None:
        """Thread-safe progress report (used by jobs from inside long calls)."""
        self._report.emit(progress)

    def start(
        self,
        kind: str,
        make_job: Callable[[threading.Event, Callable[[Progress], None]], Job],
        on_done: Callable[[JobResult], None] | None = None,
    ) -> Any:
        """Start ``make_job(stop, report)`` in a worker thread; returns the napari worker.

        Refuses (RuntimeError) while another job runs.
        """
        if self.busy:
            raise RuntimeError(f"a {self.kind} job is running; cancel it or wait")
        from napari.qt.threading import create_worker

        ensure_torch()  # main thread, before any worker touches torch
        self.stop = threading.Event()
        gen = make_job(self.stop, self.report)
        self._gen = gen

        def run() -> Job:  # a generator function wrapping the job, so we keep its handle
            return (yield from gen)

        worker = create_worker(run, _start_thread=False)
        worker.yielded.connect(self.progressed.emit)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.kind = kind
        self._on_done = on_done
        self._finished_result = None
        self.busy_changed.emit(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the job to stop: at its next yield, or between steps of a long call."""
        if self.worker is None:
            return
        self.stop.set()
        self.worker.quit()

    # -- slots (main thread) --------------------------------------------------------------

    def _on_returned(self, result: JobResult) -> None:
        self._finished_result = result

    def _on_aborted(self) -> None:
        self._finished_result = JobResult(self.kind or "job", cancelled=True)

    def _on_errored(self, exc: Exception) -> None:  # jobs catch their own; this is a backstop
        self._finished_result = JobResult(self.kind or "job", error=f"{type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        result = self._finished_result or JobResult(self.kind or "job", cancelled=True)
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()  # a job abandoned at a yield runs its cleanup (closes its store) now
        on_done = self._on_done
        self.worker, self.kind, self._on_done = None, None, None
        self.busy_changed.emit(False)
        if on_done is not None:
            on_done(result)
        self.done.emit(result)
