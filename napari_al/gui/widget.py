"""The dock widget: Project, Model, Query, Questions, Train, Evaluate and Keys sections.

The widget is thin: it composes the sections of :mod:`napari_al.gui.sections` (one module
each), the annotation loop lives in :class:`~napari_al.gui.controller.AnnotationController`
(actions, keys, layer edits) and the background work in :mod:`napari_al.gui.tasks` /
:mod:`napari_al.gui.workers`.

Process-wide settings. Importing this module (or any of ``napari_al.gui``) changes nothing
process-wide: it imports neither torch nor triton and sets no thread count, so the plugin
opens fast (``tests/test_gui_imports.py`` checks it). The widget's entry point for them is the
start of its first background job: :meth:`ActiveLearningWidget._start` ->
:meth:`~napari_al.gui.workers.JobRunner.start` -> :func:`~napari_al.gui.tasks.ensure_torch`,
on the main thread, which installs the triton guard (``sys.modules["triton"] = None`` unless
triton is loaded already or ``NAPARI_AL_ALLOW_TRITON=1``: triton loaded after a viewer's
OpenGL context segfaults) and imports torch. Each job then sets torch's CPU thread count for
its own run and restores it afterwards (``NAPARI_AL_GUI_THREADS``, default all cores but one;
:func:`~napari_al.gui.tasks.job_threads`). The CLI sets them in its ``main``; a notebook
:class:`~napari_al.gui.session.Session` calls ``ensure_torch`` when it first loads a model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from napari_al.core.project import plural
from napari_al.core.store import ProjectStore, StoreError
from napari_al.core.workflow import (
    Progress,
    QuerySettings,
    RoundSettings,
    TrainSettings,
    effort_series,
    first_round,
)
from napari_al.gui.controller import AnnotationController
from napari_al.gui.notify import NO_CLASS_HINT, notify_import, notify_user
from napari_al.gui.sections.evaluate import EvaluateSection
from napari_al.gui.sections.keys import KeysSection
from napari_al.gui.sections.model import ModelSection
from napari_al.gui.sections.project import ProjectSection
from napari_al.gui.sections.query import QuerySection
from napari_al.gui.sections.questions import QuestionsSection
from napari_al.gui.sections.train import TrainSection
from napari_al.gui.tasks import (
    JobResult,
    evaluate_job,
    load_model_job,
    rescore_job,
    retrain_job,
)
from napari_al.gui.workers import JobRunner

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)


class ActiveLearningWidget(QWidget):
    """Dock widget of napari-al: open a project, annotate, retrain in the background.

    The sections are attributes: ``project_section``, ``model_section``, ``query_section``,
    ``questions_section``, ``train_section``, ``evaluate_section`` and ``keys_section``.
    Creating the widget binds the annotation keys; it imports no torch (see the module
    docstring for where the triton guard and thread counts are set).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.controller = AnnotationController(viewer)
        self.runner = JobRunner(self)
        self.view = self.controller.view
        self._closed = False
        self._job_project: Path | None = None

        self.project_section = ProjectSection(self.controller, self.open_project, self.refresh)
        self.model_section = ModelSection(on_load=self.start_load_model)
        self.query_section = QuerySection(self.controller, on_rescore=self.start_rescore)
        self.questions_section = QuestionsSection(self.controller)
        self.train_section = TrainSection(on_retrain=self.start_retrain, on_cancel=self.cancel_job)
        self.evaluate_section = EvaluateSection(on_evaluate=self.start_evaluate)
        self.keys_section = KeysSection()
        content = QWidget()
        layout = QVBoxLayout(content)
        for section in (
            self.project_section,
            self.model_section,
            self.query_section,
            self.questions_section,
            self.train_section,
            self.evaluate_section,
            self.keys_section,
        ):
            layout.addWidget(section)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(330)

        self.controller.listeners.append(self._on_controller_event)
        self.runner.progressed.connect(self._on_progress)
        self.runner.busy_changed.connect(self._on_busy)
        self.controller.bind_keys()
        self._on_busy(False)

    # -- project ---------------------------------------------------------------------------

    @property
    def store(self) -> ProjectStore | None:
        return self.controller.store

    def open_project(self, project_dir: str | Path) -> None:
        """Open (or create from a plain image folder) the project, show its first image."""
        from napari_al.core.project import open_or_init

        self.cancel_job()
        old = self.store
        store = open_or_init(Path(project_dir), report=notify_import)
        self.controller.set_store(store)
        if old is not None:
            old.close()
        self.project_section.project_label.setText(str(Path(project_dir).resolve()))
        self.train_section.loss_plot.start_run()
        self.refresh()
        if not store.classes():
            notify_user("info", NO_CLASS_HINT)
            self.project_section.new_class.setFocus()
        image_ids = self.project_section.image_ids
        if image_ids:
            first = next(
                (
                    i
                    for i, row in zip(image_ids, store.images(), strict=True)
                    if row.review_state != "complete"
                ),
                image_ids[0],
            )
            self.show_image(first)

    def refresh(self) -> None:
        """Re-read the image list, classes, counts and the effort plot from the store."""
        store = self.store
        if store is None:
            return
        self.project_section.refresh(store)
        self.evaluate_section.effort_plot.set_series(effort_series(store))

    def show_image(self, image_id: int) -> dict[str, float]:
        """Show one image of the project with its boxes; returns the switch timing."""
        return self.controller.show_image(image_id)

    # -- background jobs ------------------------------------------------------------------

    def _project_dir(self) -> Path:
        if self.store is None:
            raise StoreError("open a project first")
        return self.store.project_dir

    def _start(self, kind: str, make_job: Any) -> Any:
        if self.runner.busy:
            notify_user("info", f"a {self.runner.kind} job is running; cancel it first")
            return None
        self._job_project = self._project_dir()
        try:
            worker = self.runner.start(kind, make_job, on_done=self._on_done)
        except Exception as exc:
            log.exception("could not start %s", kind)
            notify_user("error", f"could not start {kind}: {exc}")
            return None
        self.model_section.refresh_archs()
        self.train_section.job_label.setText(f"{kind}: starting")
        return worker

    def start_load_model(self) -> Any:
        """Load the model (latest checkpoint, weights file or pretrained) in the background."""
        project, params = self._project_dir(), self.model_section.params()
        return self._start(
            "load", lambda stop, report: load_model_job(project, params, stop, report)
        )

    def round_settings(
        self, train: TrainSettings | None = None, query: QuerySettings | None = None
    ) -> RoundSettings:
        """The round's settings as the sections show them (``train``/``query`` override)."""
        return RoundSettings(
            model=self.model_section.params(),
            train=train or self.train_section.params(),
            query=query or self.query_section.params(),
            suggest=self.query_section.suggest_params(),
        )

    def start_rescore(self, query: QuerySettings | None = None) -> Any:
        """Predict the images still to review, rank them and suggest missed objects."""
        project, settings = self._project_dir(), self.round_settings(query=query)
        detector, image = self.controller.detector, self.controller.image_id
        return self._start(
            "rescore",
            lambda stop, report: rescore_job(
                project, detector, settings, stop, report, current_image=image
            ),
        )

    def start_retrain(
        self, train: TrainSettings | None = None, query: QuerySettings | None = None
    ) -> Any:
        """Retrain (a copy of) the model on the labels so far, then evaluate, predict, rank."""
        project, settings = self._project_dir(), self.round_settings(train, query)
        detector, image = self.controller.detector, self.controller.image_id
        self.train_section.loss_plot.start_run()
        return self._start(
            "retrain",
            lambda stop, report: retrain_job(
                project, detector, settings, stop, report, current_image=image
            ),
        )

    def start_evaluate(self, split: str = "val") -> Any:
        """mAP of the model in use on a split, recorded with the model version."""
        project, model = self._project_dir(), self.model_section.params()
        detector = self.controller.detector
        return self._start(
            "evaluate",
            lambda stop, report: evaluate_job(project, detector, model, stop, report, split=split),
        )

    def start_first_round(self) -> Any:
        """Bring a project opened in the middle of the loop to where a person can go on: the
        round :func:`~napari_al.core.workflow.first_round` names (retrain when it has labels
        but no model, rescore when it has a model but no query list), in the background with
        the widget's settings. Returns the worker, or None when no round is needed."""
        if self.store is None:
            return None
        kind = first_round(self.store)
        if kind == "retrain":
            return self.start_retrain()
        if kind == "rescore":
            return self.start_rescore()
        return None

    def cancel_job(self) -> None:
        """Cancel the running job (it stops at its next step; the model in use is kept)."""
        if self.runner.busy:
            self.train_section.job_label.setText(f"{self.runner.kind}: cancelling…")
            self.runner.cancel()

    def _on_busy(self, busy: bool) -> None:
        for button in (
            self.train_section.retrain_button,
            self.query_section.rescore_button,
            self.evaluate_section.evaluate_button,
            self.model_section.load_button,
        ):
            button.setEnabled(not busy)
        self.train_section.set_busy(busy)

    def _on_progress(self, p: Progress) -> None:
        if not isinstance(p, Progress):
            return
        self.train_section.show_progress(p)
        if (
            p.phase == "predict"
            and p.image_id is not None
            and p.image_id == self.controller.image_id
        ):
            self.controller.reload()  # the image on screen got its new predictions

    def _on_done(self, result: JobResult) -> None:
        if self._closed:
            return
        how = "failed" if result.error else "cancelled" if result.cancelled else "done"
        self.train_section.show_end(result.kind, how)
        if self.store is None or self.store.project_dir != self._job_project:
            return  # a job of a project that is no longer open: its result does not apply here
        job_label = self.train_section.job_label
        if result.error:
            job_label.setText(f"{result.kind} failed: {result.error}")
            notify_user(
                "error",
                f"{result.kind} failed: {result.error}. Your annotations are safe in the "
                "project store; the model in use is unchanged.",
            )
            return
        if result.cancelled:
            job_label.setText(f"{result.kind} cancelled; the model in use is unchanged")
            notify_user("info", f"{result.kind} cancelled")
            return
        self.controller.apply_result(result)
        parts = [f"{result.kind} done in {result.seconds:.0f} s"]
        if result.queries is not None:
            parts.append(f"{len(result.queries)} items queried (N: next)")
        if result.metrics:
            self.evaluate_section.show_metrics(result.metrics, result.model_version)
            parts.append(f"mAP@0.5 {result.metrics.get('map50', float('nan')):.3f}")
        if result.message:
            parts.append(result.message)
        if result.skipped:
            n = len(result.skipped)
            parts.append(f"{n} unreadable {plural(n, 'image')} skipped")
            notify_user(
                "warning",
                f"{n} {plural(n, 'image')} could not be read and {'was' if n == 1 else 'were'} "
                "skipped: "
                + "; ".join(result.skipped[:3])
                + (" ..." if len(result.skipped) > 3 else ""),
            )
        job_label.setText("; ".join(parts))
        self.refresh()

    # -- controller events ----------------------------------------------------------------

    def _on_controller_event(self, what: str) -> None:
        if self._closed:
            return
        if what in ("data", "question"):
            self.questions_section.refresh()
        if what == "data":
            self.project_section.refresh_current_row()
            self.project_section.refresh_summary()
        elif what == "image":
            self.project_section.select_image(self.controller.image_id)
        elif what == "class":
            self.project_section.refresh_classes()
        elif what == "queries":
            self.query_section.refresh_queries()
        elif what == "model":
            self.model_section.show_model(self.controller.detector, self.controller.model_version)

    def closeEvent(self, event: Any) -> None:
        self.close_project()
        super().closeEvent(event)

    def close_project(self) -> None:
        """Cancel any job, unbind the keys and close the store (every action is saved)."""
        self._closed = True
        self.runner.cancel()
        store = self.store
        self.controller.close()
        if store is not None:
            store.close()
