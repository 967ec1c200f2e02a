"""The dock widget: Project, Model, Query, Train, Evaluate and Keys sections.

The widget is thin: the annotation loop lives in
:class:`~napari_al.gui.controller.AnnotationController` (actions, keys, layer edits) and the
background work in :mod:`napari_al.gui.tasks` / :mod:`napari_al.gui.workers`. torch is
imported only when the first background job starts (on the main thread), so the plugin opens
fast.
"""

from __future__ import annotations

import html
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_al.core.costs import CostModel
from napari_al.core.store import ProjectStore, StoreError
from napari_al.gui.controller import AnnotationController
from napari_al.gui.keys import key_table
from napari_al.gui.tasks import (
    JobResult,
    ModelParams,
    Progress,
    QueryParams,
    TrainParams,
    effort_series,
    evaluate_job,
    load_model_job,
    rescore_job,
    retrain_job,
)
from napari_al.gui.workers import JobRunner

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

#: Architectures offered before torch is imported (refreshed from core.engine.ARCHS after).
DEFAULT_ARCHS = ("fasterrcnn_mobilenet_v2_fpn",)
DEVICES = ("auto", "cpu", "cuda", "mps")
STRATEGY_PRESETS = ("entropy", "least_confidence", "margin", "entropy+missed", "random")
PHASE_NAMES = {
    "load": "Loading model",
    "train": "Training",
    "predict": "Predicting",
    "rank": "Ranking",
    "suggest": "Suggesting missed objects",
    "evaluate": "Evaluating",
}


def _notify(level: str, message: str) -> None:
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning}.get(
        level, notifications.show_error
    )(message)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


class ActiveLearningWidget(QWidget):
    """Dock widget of napari-al: open a project, annotate, retrain in the background."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.controller = AnnotationController(viewer)
        self.runner = JobRunner(self)
        self.view = self.controller.view
        self._image_ids: list[int] = []
        self._closed = False
        self._job_project: Path | None = None

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self._project_section())
        layout.addWidget(self._model_section())
        layout.addWidget(self._query_section())
        layout.addWidget(self._train_section())
        layout.addWidget(self._evaluate_section())
        layout.addWidget(self._keys_section())
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

    # -- sections -------------------------------------------------------------------------

    def _project_section(self) -> QGroupBox:
        box = QGroupBox("Project")
        form = QVBoxLayout(box)
        self.open_button = QPushButton("Open folder…")
        self.open_button.setToolTip("A napari-al project, or a folder of images to start one")
        self.open_button.clicked.connect(self._choose_folder)
        self.sample_button = QPushButton("Sample project…")
        self.sample_button.setToolTip("Make a project from the 16-image BCCD sample")
        self.sample_button.clicked.connect(self._choose_sample_folder)
        form.addWidget(_row(self.open_button, self.sample_button))
        self.project_label = QLabel("No project open")
        self.project_label.setWordWrap(True)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        form.addWidget(self.project_label)
        form.addWidget(self.summary_label)

        self.import_format = QComboBox()
        self.import_format.addItems(["voc", "coco", "yolo", "images"])
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self._choose_import)
        form.addWidget(_row(QLabel("Import"), self.import_format, self.import_button))
        self.export_format = QComboBox()
        self.export_format.addItems(["voc", "coco", "yolo"])
        self.export_all = QCheckBox("incl. incomplete")
        self.export_all.setToolTip("Also export images not marked complete")
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._choose_export)
        form.addWidget(
            _row(QLabel("Export"), self.export_format, self.export_all, self.export_button)
        )

        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class of the boxes you draw (keys 1-9)")
        self.class_combo.currentIndexChanged.connect(self._on_class_chosen)
        self.new_class = QLineEdit()
        self.new_class.setPlaceholderText("new class")
        self.add_class_button = QPushButton("Add")
        self.add_class_button.clicked.connect(self._add_class)
        form.addWidget(
            _row(QLabel("Class"), self.class_combo, self.new_class, self.add_class_button)
        )

        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(120)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        form.addWidget(QLabel("Images"))
        form.addWidget(self.image_list)
        self.split_combo = QComboBox()
        self.split_combo.addItems(["pool", "train", "val", "test"])
        self.split_button = QPushButton("Set split")
        self.split_button.clicked.connect(self._set_split)
        form.addWidget(_row(QLabel("Split of this image"), self.split_combo, self.split_button))
        return box

    def _model_section(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.arch_combo = QComboBox()
        self.arch_combo.addItems(list(DEFAULT_ARCHS))
        self._refresh_archs()
        form.addRow("Architecture", self.arch_combo)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("latest checkpoint of the project")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._choose_weights)
        form.addRow("Weights", _row(self.weights_edit, browse))
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        form.addRow("Device", self.device_combo)
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 4096)
        self.min_size_spin.setSingleStep(32)
        self.min_size_spin.setSpecialValueText("default")
        self.min_size_spin.setToolTip("Input size (shorter side); 0: the architecture default")
        form.addRow("Input size", self.min_size_spin)
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(lambda: self.start_load_model())
        self.model_label = QLabel("no model loaded")
        self.model_label.setWordWrap(True)
        form.addRow(self.load_button, self.model_label)
        return box

    def _query_section(self) -> QGroupBox:
        from napari_al.core.aggregation import AGGREGATIONS
        from napari_al.core.scoring.registry import IMAGE_SCORERS, SCORERS
        from napari_al.core.selection import UNITS

        box = QGroupBox("Query")
        form = QFormLayout(box)
        self.strategy_combo = QComboBox()
        self.strategy_combo.setEditable(True)
        names = list(dict.fromkeys([*STRATEGY_PRESETS, *SCORERS, *IMAGE_SCORERS]))
        self.strategy_combo.addItems(names)
        self.strategy_combo.setToolTip("A scorer, or several joined with + (e.g. entropy+missed)")
        form.addRow("Strategy", self.strategy_combo)
        self.unit_combo = QComboBox()
        self.unit_combo.addItems(list(UNITS))
        form.addRow("Unit", self.unit_combo)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 10000)
        self.budget_spin.setValue(10)
        form.addRow("Budget", self.budget_spin)
        self.aggregation_combo = QComboBox()
        self.aggregation_combo.addItems(list(AGGREGATIONS))
        form.addRow("Aggregation", self.aggregation_combo)
        self.diversity_combo = QComboBox()
        self.diversity_combo.addItems(["none", "coreset", "kmeans++"])
        form.addRow("Diversity", self.diversity_combo)
        self.suggest_check = QCheckBox("suggest possibly missed objects")
        self.suggest_check.setChecked(True)
        form.addRow(self.suggest_check)
        self.rescore_button = QPushButton("Rescore && rank")
        self.rescore_button.setToolTip("Predict with the model in use, then rank (background)")
        self.rescore_button.clicked.connect(lambda: self.start_rescore())
        form.addRow(self.rescore_button)
        self.query_list = QListWidget()
        self.query_list.setMinimumHeight(90)
        self.query_list.itemActivated.connect(
            lambda item: self.controller.go_to_item(self.query_list.row(item))
        )
        self.query_list.itemClicked.connect(
            lambda item: self.controller.go_to_item(self.query_list.row(item))
        )
        form.addRow(self.query_list)
        self.highlight_check = QCheckBox("show highlights")
        self.highlight_check.setChecked(True)
        self.highlight_check.toggled.connect(self.view.set_highlights_visible)
        self.rejected_check = QCheckBox("show rejected")
        self.rejected_check.setChecked(True)
        self.rejected_check.toggled.connect(self._on_rejected_toggled)
        form.addRow(_row(self.highlight_check, self.rejected_check))
        # below the cost model's break-even score a yes/no question costs more than it saves
        # (docs/simulation.md), so weaker predictions are hidden and skipped by default
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(0.0, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setDecimals(2)
        self.min_score_spin.setValue(round(CostModel().verify_threshold, 2))
        self.min_score_spin.setToolTip(
            "predictions scoring below this are hidden and skipped when reviewing "
            "(0.23 = verify 1.6 s / draw 7 s: where a yes/no question stops paying off)"
        )
        self.min_score_spin.valueChanged.connect(self.controller.set_min_prediction_score)
        self.controller.set_min_prediction_score(self.min_score_spin.value())
        form.addRow("hide predictions below", self.min_score_spin)
        return box

    def _train_section(self) -> QGroupBox:
        from napari_al.gui.plots import LossPlot

        box = QGroupBox("Train")
        form = QFormLayout(box)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100000)
        self.steps_spin.setValue(200)
        self.steps_spin.setToolTip("Optimisation steps (batch 2) per retraining")
        form.addRow("Steps", self.steps_spin)
        self.lambda_spin = QDoubleSpinBox()
        self.lambda_spin.setRange(0.0, 1.0)
        self.lambda_spin.setSingleStep(0.1)
        self.lambda_spin.setValue(0.5)
        self.lambda_spin.setToolTip("Weight of unverified predictions on partial images")
        form.addRow("lambda_d", self.lambda_spin)
        self.scratch_check = QCheckBox("from scratch (pretrained backbone, new heads)")
        form.addRow(self.scratch_check)
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.clicked.connect(lambda: self.start_retrain())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_job)
        form.addRow(_row(self.retrain_button, self.cancel_button))
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        form.addRow(self.progress_bar)
        self.job_label = QLabel("idle")
        self.job_label.setWordWrap(True)
        form.addRow(self.job_label)
        self.loss_plot = LossPlot()
        form.addRow(self.loss_plot)
        return box

    def _evaluate_section(self) -> QGroupBox:
        from napari_al.gui.plots import EffortPlot

        box = QGroupBox("Evaluate")
        form = QVBoxLayout(box)
        self.evaluate_button = QPushButton("mAP on val")
        self.evaluate_button.clicked.connect(lambda: self.start_evaluate())
        self.map_label = QLabel("no evaluation yet")
        self.map_label.setWordWrap(True)
        form.addWidget(_row(self.evaluate_button, self.map_label))
        self.effort_plot = EffortPlot()
        form.addWidget(self.effort_plot)
        return box

    def _keys_section(self) -> QGroupBox:
        box = QGroupBox("Keys")
        layout = QVBoxLayout(box)
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(d)}</td></tr>"
            for k, d in key_table()
        )
        self.keys_label = QLabel(f"<table>{rows}</table>")
        self.keys_label.setWordWrap(True)
        self.keys_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.keys_label)
        return box

    # -- project ---------------------------------------------------------------------------

    @property
    def store(self) -> ProjectStore | None:
        return self.controller.store

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a napari-al project folder")
        if folder:
            self._guard("open project", lambda: self.open_project(folder))

    def _choose_sample_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder for the sample project (an empty one)"
        )
        if folder:
            self._guard("sample project", lambda: self.open_sample_project(folder))

    def open_sample_project(self, folder: str | Path) -> None:
        """Make (or reopen) a project from the BCCD sample in ``folder`` and open it."""
        from napari_al.core.project import import_into, is_project
        from napari_al.sample import sample_dir

        folder = Path(folder)
        if not is_project(folder):
            with ProjectStore.create(folder) as store:
                import_into(store, sample_dir(), "voc")
        self.open_project(folder)

    def open_project(self, project_dir: str | Path) -> None:
        """Open (or create from a plain image folder) the project, show its first image."""
        from napari_al.core.project import open_or_init

        self.cancel_job()
        old = self.store
        store = open_or_init(Path(project_dir))
        self.controller.set_store(store)
        if old is not None:
            old.close()
        self.project_label.setText(str(Path(project_dir).resolve()))
        self.loss_plot.start_run()
        self.refresh()
        if self._image_ids:
            first = next(
                (
                    i
                    for i, row in zip(self._image_ids, store.images(), strict=True)
                    if row.review_state != "complete"
                ),
                self._image_ids[0],
            )
            self.show_image(first)

    def refresh(self) -> None:
        """Re-read the image list, classes, counts and the effort plot from the store."""
        store = self.store
        if store is None:
            return
        rows = store.images()
        self._image_ids = [row.id for row in rows]
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for row in rows:
            self.image_list.addItem(self._image_text(row))
        if self.controller.image_id in self._image_ids:
            self.image_list.setCurrentRow(self._image_ids.index(self.controller.image_id))
        self.image_list.blockSignals(False)
        self._refresh_classes()
        self._refresh_summary()
        self.effort_plot.set_series(effort_series(store))

    @staticmethod
    def _image_text(row: Any) -> str:
        return f"{Path(row.path).name}  [{row.split}, {row.review_state}]"

    def _refresh_summary(self) -> None:
        store = self.store
        if store is None:
            return
        info = store.info()
        st = info["boxes_by_status"]
        human = st["accepted"] + st["corrected"] + st["drawn"]
        self.summary_label.setText(
            f"{info['images']} images ({info['images_by_review_state']['complete']} complete), "
            f"{human} human boxes, {st['predicted']} to review, {st['rejected']} rejected; "
            f"{info['annotation_seconds'] / 60:.1f} min of annotation"
        )

    def _refresh_classes(self) -> None:
        store = self.store
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        if store is not None:
            for n, c in enumerate(store.classes(), start=1):
                self.class_combo.addItem(f"{n}: {c.name}" if n <= 9 else c.name, c.id)
            cid = self.controller.current_class_id
            index = self.class_combo.findData(cid)
            if index >= 0:
                self.class_combo.setCurrentIndex(index)
        self.class_combo.blockSignals(False)

    def _refresh_current_row(self) -> None:
        store, image_id = self.store, self.controller.image_id
        if store is None or image_id is None or image_id not in self._image_ids:
            return
        row = self._image_ids.index(image_id)
        item = self.image_list.item(row)
        if item is not None:
            item.setText(self._image_text(store.image(image_id)))

    def _on_row_changed(self, row: int) -> None:
        if self.store is None or not 0 <= row < len(self._image_ids):
            return
        if self._image_ids[row] != self.controller.image_id:
            self._guard("show image", lambda: self.show_image(self._image_ids[row]))

    def show_image(self, image_id: int) -> dict[str, float]:
        """Show one image of the project with its boxes; returns the switch timing."""
        return self.controller.show_image(image_id)

    def _on_class_chosen(self, index: int) -> None:
        cid = self.class_combo.itemData(index)
        if cid is not None:
            self.controller.set_current_class(int(cid))

    def _add_class(self) -> None:
        name = self.new_class.text().strip()
        if not name or self.store is None:
            return

        def act() -> None:
            assert self.store is not None
            cid = self.store.add_class(name)
            self.new_class.clear()
            self.controller.set_current_class(cid)
            self._refresh_classes()
            if self.controller.detector is not None:
                _notify("info", f"class {name!r} added; retrain to teach the model about it")

        self._guard("add class", act)

    def _set_split(self) -> None:
        store, image_id = self.store, self.controller.image_id
        if store is None or image_id is None:
            return
        split = self.split_combo.currentText()
        self._guard("set split", lambda: store.set_split(image_id, split))
        self._refresh_current_row()

    def _choose_import(self) -> None:
        fmt = self.import_format.currentText()
        if fmt == "coco":
            path, _ = QFileDialog.getOpenFileName(
                self, "COCO annotation file", filter="JSON (*.json)"
            )
        else:
            path = QFileDialog.getExistingDirectory(self, f"{fmt.upper()} dataset folder")
        if path:
            self._guard("import", lambda: self.import_dataset(path, fmt))

    def import_dataset(self, path: str | Path, fmt: str) -> dict[str, Any]:
        """Import a dataset into the open project (one transaction)."""
        from napari_al.core.project import import_into

        if self.store is None:
            raise StoreError("open a project first")
        dataset, summary = import_into(self.store, Path(path), fmt)
        for line in dataset.warnings[:5]:
            _notify("warning", line)
        _notify(
            "info",
            f"imported {summary.get('images_added', 0)} images and "
            f"{summary.get('boxes_added', 0)} boxes",
        )
        self.refresh()
        if self.controller.image_id is None and self._image_ids:
            self.show_image(self._image_ids[0])
        return summary

    def _choose_export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export to folder")
        if out:
            fmt = self.export_format.currentText()
            self._guard("export", lambda: self.export_dataset(out, fmt))

    def export_dataset(self, out: str | Path, fmt: str, overwrite: bool = False) -> Any:
        """Export the human labels (of complete images, unless 'incl. incomplete')."""
        from napari_al.core.project import export_dataset

        if self.store is None:
            raise StoreError("open a project first")
        dataset = export_dataset(
            self.store,
            Path(out),
            fmt,
            overwrite=overwrite,
            only_reviewed=not self.export_all.isChecked(),
        )
        _notify("info", f"exported {len(dataset.images)} images, {dataset.n_boxes} boxes to {out}")
        return dataset

    def _guard(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except (StoreError, OSError, ValueError) as exc:
            _notify("warning", f"{what}: {exc}")
        except Exception as exc:
            log.exception("%s failed", what)
            _notify("error", f"{what} failed: {type(exc).__name__}: {exc}")
        return None

    def _on_rejected_toggled(self, checked: bool) -> None:
        if self.view.show_rejected != checked:
            self.controller.toggle_rejected()

    # -- model / query / train parameters -------------------------------------------------

    def _refresh_archs(self) -> None:
        detector = sys.modules.get("napari_al.core.engine")
        archs = getattr(detector, "ARCHS", None)
        if archs and self.arch_combo.count() != len(archs):
            current = self.arch_combo.currentText()
            self.arch_combo.clear()
            self.arch_combo.addItems(list(archs))
            index = self.arch_combo.findText(current)
            self.arch_combo.setCurrentIndex(max(index, 0))

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights file", filter="Weights (*.pt *.pth)")
        if path:
            self.weights_edit.setText(path)

    def model_params(self) -> ModelParams:
        device = self.device_combo.currentText()
        size = self.min_size_spin.value()
        return ModelParams(
            arch=self.arch_combo.currentText() or None,
            weights=self.weights_edit.text().strip() or None,
            device=None if device == "auto" else device,
            min_size=size or None,
            max_size=(size * 2) if size else None,
        )

    def query_params(self) -> QueryParams:
        diversity = self.diversity_combo.currentText()
        return QueryParams(
            strategy=self.strategy_combo.currentText().replace(" ", "") or "entropy",
            unit=self.unit_combo.currentText(),
            budget=self.budget_spin.value(),
            diversity=None if diversity == "none" else diversity,
            aggregation=self.aggregation_combo.currentText(),
            suggest_missed=self.suggest_check.isChecked(),
        )

    def train_params(self) -> TrainParams:
        return TrainParams(
            steps=self.steps_spin.value(),
            lambda_d=self.lambda_spin.value(),
            from_scratch=self.scratch_check.isChecked(),
        )

    # -- background jobs ------------------------------------------------------------------

    def _project_dir(self) -> Path:
        if self.store is None:
            raise StoreError("open a project first")
        return self.store.project_dir

    def _start(self, kind: str, make_job: Any) -> Any:
        if self.runner.busy:
            _notify("info", f"a {self.runner.kind} job is running; cancel it first")
            return None
        self._job_project = self._project_dir()
        try:
            worker = self.runner.start(kind, make_job, on_done=self._on_done)
        except Exception as exc:
            log.exception("could not start %s", kind)
            _notify("error", f"could not start {kind}: {exc}")
            return None
        self._refresh_archs()
        self.job_label.setText(f"{kind}: starting")
        return worker

    def start_load_model(self) -> Any:
        """Load the model (latest checkpoint, weights file or pretrained) in the background."""
        project, params = self._project_dir(), self.model_params()
        return self._start(
            "load", lambda stop, report: load_model_job(project, params, stop, report)
        )

    def start_rescore(self, query: QueryParams | None = None) -> Any:
        """Predict the images still to review, rank them and suggest missed objects."""
        project, model = self._project_dir(), self.model_params()
        query = query or self.query_params()
        detector, image = self.controller.detector, self.controller.image_id
        return self._start(
            "rescore",
            lambda stop, report: rescore_job(
                project, detector, model, query, stop, report, current_image=image
            ),
        )

    def start_retrain(
        self, train: TrainParams | None = None, query: QueryParams | None = None
    ) -> Any:
        """Retrain (a copy of) the model on the labels so far, then predict, rank, evaluate."""
        project, model = self._project_dir(), self.model_params()
        train = train or self.train_params()
        query = query or self.query_params()
        detector, image = self.controller.detector, self.controller.image_id
        self.loss_plot.start_run()
        return self._start(
            "retrain",
            lambda stop, report: retrain_job(
                project, detector, model, train, query, stop, report, current_image=image
            ),
        )

    def start_evaluate(self, split: str = "val") -> Any:
        """mAP of the model in use on a split, recorded with the model version."""
        project, model = self._project_dir(), self.model_params()
        detector, version = self.controller.detector, self.controller.model_version
        return self._start(
            "evaluate",
            lambda stop, report: evaluate_job(
                project, detector, model, version, stop, report, split=split
            ),
        )

    def cancel_job(self) -> None:
        """Cancel the running job (it stops at its next step; the model in use is kept)."""
        if self.runner.busy:
            self.job_label.setText(f"{self.runner.kind}: cancelling…")
            self.runner.cancel()

    def _on_busy(self, busy: bool) -> None:
        for button in (
            self.retrain_button,
            self.rescore_button,
            self.evaluate_button,
            self.load_button,
        ):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if not busy:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)

    def _on_progress(self, p: Progress) -> None:
        if not isinstance(p, Progress):
            return
        if p.total > 0:
            self.progress_bar.setRange(0, p.total)
            self.progress_bar.setValue(min(p.done, p.total))
        else:
            self.progress_bar.setRange(0, 0)  # busy indicator
        text = PHASE_NAMES.get(p.phase, p.phase)
        if p.total:
            text += f" {p.done}/{p.total}"
        if p.loss is not None:
            text += f", loss {p.loss:.3f}"
            self.loss_plot.add(p.done, p.loss)
        if p.message:
            text += f" ({p.message})"
        self.job_label.setText(text)
        if (
            p.phase == "predict"
            and p.image_id is not None
            and p.image_id == self.controller.image_id
        ):
            self.controller.reload()  # the image on screen got its new predictions

    def _on_done(self, result: JobResult) -> None:
        if self._closed:
            return
        if self.store is None or self.store.project_dir != self._job_project:
            return  # a job of a project that is no longer open: its result does not apply here
        if result.error:
            self.job_label.setText(f"{result.kind} failed: {result.error}")
            _notify(
                "error",
                f"{result.kind} failed: {result.error}. Your annotations are safe in the "
                "project store; the model in use is unchanged.",
            )
            return
        if result.cancelled:
            self.job_label.setText(f"{result.kind} cancelled; the model in use is unchanged")
            _notify("info", f"{result.kind} cancelled")
            return
        self.controller.apply_result(result)
        parts = [f"{result.kind} done in {result.seconds:.0f} s"]
        if result.queries is not None:
            parts.append(f"{len(result.queries)} items queried (N: next)")
        if result.metrics:
            m = result.metrics
            map50 = m.get("map50", float("nan"))
            self.map_label.setText(
                f"mAP@0.5 {map50:.3f}, mAP {m.get('map', float('nan')):.3f} "
                f"on {m.get('split', 'val')} (model v{result.model_version})"
            )
            parts.append(f"mAP@0.5 {map50:.3f}")
        if result.message:
            parts.append(result.message)
        if result.skipped:
            parts.append(f"{len(result.skipped)} unreadable images skipped")
            _notify(
                "warning",
                f"{len(result.skipped)} images could not be read and were skipped: "
                + "; ".join(result.skipped[:3])
                + (" ..." if len(result.skipped) > 3 else ""),
            )
        self.job_label.setText("; ".join(parts))
        self.refresh()

    # -- controller events ----------------------------------------------------------------

    def _on_controller_event(self, what: str) -> None:
        if self._closed:
            return
        if what == "data":
            self._refresh_current_row()
            self._refresh_summary()
        elif what == "image":
            image_id = self.controller.image_id
            if image_id in self._image_ids:
                self.image_list.blockSignals(True)
                self.image_list.setCurrentRow(self._image_ids.index(image_id))
                self.image_list.blockSignals(False)
                if self.store is not None:
                    split = self.store.image(image_id).split
                    self.split_combo.setCurrentText(split)
        elif what == "class":
            self._refresh_classes()
        elif what == "queries":
            self._refresh_queries()
        elif what == "model":
            c = self.controller
            if c.detector is None:
                self.model_label.setText("no model loaded")
            else:
                arch = getattr(getattr(c.detector, "config", None), "arch", "model")
                version = f"v{c.model_version}" if c.model_version else "not trained here"
                self.model_label.setText(f"{arch} ({version})")

    def _refresh_queries(self) -> None:
        c = self.controller
        self.query_list.blockSignals(True)
        self.query_list.clear()
        names = {}
        if self.store is not None:
            names = {row.id: Path(row.path).name for row in self.store.images()}
        for q in c.queries:
            where = names.get(q.image, str(q.image))
            extra = "" if q.unit == "image" else f" {q.unit}"
            self.query_list.addItem(f"{q.score:.3f}  {where}{extra}")
        if 0 <= c.query_index < len(c.queries):
            self.query_list.setCurrentRow(c.query_index)
        self.query_list.blockSignals(False)

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
