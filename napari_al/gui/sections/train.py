"""The Train section: steps, lambda_d, augmentations, from scratch; Retrain / Cancel, progress
and loss curve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QRegularExpression
from qtpy.QtGui import QRegularExpressionValidator
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from napari_al.core.workflow import Progress, TrainSettings
from napari_al.core.workflow.settings import AUGMENT_PATTERN
from napari_al.gui.sections.common import row

PHASE_NAMES = {
    "load": "Loading model",
    "train": "Training",
    "predict": "Predicting",
    "rank": "Ranking",
    "suggest": "Suggesting missed objects",
    "evaluate": "Evaluating",
}


class TrainSection(QGroupBox):
    """The training parameters (:meth:`params`), Retrain (``on_retrain()``) and Cancel
    (``on_cancel()``) buttons, and the running job's progress, status line and loss curve."""

    def __init__(self, on_retrain: Callable[[], Any], on_cancel: Callable[[], Any]) -> None:
        from napari_al.gui.plots import LossPlot

        super().__init__("Train")
        form = QFormLayout(self)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100000)
        self.steps_spin.setValue(TrainSettings.steps)
        self.steps_spin.setToolTip("Optimisation steps (batch 2) per retraining")
        form.addRow("Steps", self.steps_spin)
        self.lambda_spin = QDoubleSpinBox()
        self.lambda_spin.setRange(0.0, 1.0)
        self.lambda_spin.setSingleStep(0.1)
        self.lambda_spin.setValue(TrainSettings.lambda_d)
        self.lambda_spin.setToolTip("Weight of unverified predictions on partial images")
        form.addRow("lambda_d", self.lambda_spin)
        self.augment_edit = QLineEdit(TrainSettings.augment)
        self.augment_edit.setValidator(
            QRegularExpressionValidator(QRegularExpression(f"({AUGMENT_PATTERN})?"))
        )
        self.augment_edit.setToolTip(
            "Training augmentations, comma-separated: hflip, vflip (random flips), scale=F "
            "(input size +-F), colour=F (brightness/contrast/saturation +-F), or none"
        )
        form.addRow("Augment", self.augment_edit)
        self.scratch_check = QCheckBox("from scratch (pretrained backbone, new heads)")
        form.addRow(self.scratch_check)
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.clicked.connect(lambda: on_retrain())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(on_cancel)
        form.addRow(row(self.retrain_button, self.cancel_button))
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        form.addRow(self.progress_bar)
        self.job_label = QLabel("idle")
        self.job_label.setWordWrap(True)
        form.addRow(self.job_label)
        self.loss_plot = LossPlot()
        form.addRow(self.loss_plot)

    def params(self) -> TrainSettings:
        """The training settings as chosen (the rest: the defaults)."""
        return TrainSettings(
            steps=self.steps_spin.value(),
            lambda_d=self.lambda_spin.value(),
            from_scratch=self.scratch_check.isChecked(),
            augment=self.augment_edit.text().strip().strip(",").strip() or "none",
        )

    def set_busy(self, busy: bool) -> None:
        """Enable Cancel while a job runs; a new job starts the progress bar at 0 % (when one
        ends the bar keeps its last state until :meth:`show_end` says how it ended)."""
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress_bar.setFormat("%p%")
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)

    def show_end(self, kind: str, how: str) -> None:
        """Show how the ``kind`` job ended (``how``: done, cancelled or failed): a finished
        job fills the bar (100 %, "retrain done"); a stopped one keeps where it stopped."""
        if self.progress_bar.maximum() == 0:  # it was a busy indicator
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        if how == "done":
            self.progress_bar.setValue(self.progress_bar.maximum())
        self.progress_bar.setFormat(f"{kind} {how}")

    def show_progress(self, p: Progress) -> None:
        """Show a job's progress report: the bar, the status line and the loss curve."""
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
