"""The Model section: architecture, weights, device and input size; load a model."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
)

from napari_al.core.workflow import WEIGHT_SOURCES, ModelSettings
from napari_al.gui.sections.common import row

#: Architectures offered before torch is imported (refreshed from core.engine.ARCHS after).
DEFAULT_ARCHS = ("fasterrcnn_mobilenet_v2_fpn",)
DEVICES = ("auto", "cpu", "cuda", "mps")


class ModelSection(QGroupBox):
    """The model's parameters (:meth:`params`) and a Load button calling ``on_load()``."""

    def __init__(self, on_load: Callable[[], Any]) -> None:
        super().__init__("Model")
        form = QFormLayout(self)
        self.arch_combo = QComboBox()
        self.arch_combo.addItems(list(DEFAULT_ARCHS))
        self.refresh_archs()
        form.addRow("Architecture", self.arch_combo)
        # a weight source by name, or a file typed or browsed to; empty: the latest checkpoint
        self.weights_combo = QComboBox()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(["", *WEIGHT_SOURCES])
        self.weights_combo.lineEdit().setPlaceholderText("latest checkpoint of the project")
        self.weights_combo.setToolTip(
            "Where a new model starts: imagenet, coco-mnv2 (COCO-trained, offline), "
            "torchvision-coco (other architectures, downloaded once) or a weights file; "
            "empty keeps training the project's latest model (docs/weights.md)"
        )
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._choose_weights)
        form.addRow("Weights", row(self.weights_combo, browse))
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
        self.load_button.clicked.connect(lambda: on_load())
        self.model_label = QLabel("no model loaded")
        self.model_label.setWordWrap(True)
        form.addRow(self.load_button, self.model_label)

    def refresh_archs(self) -> None:
        """Offer every architecture of ``core.engine`` once a job has imported it (never
        imports it: that would import torch)."""
        engine = sys.modules.get("napari_al.core.engine")
        archs = getattr(engine, "ARCHS", None)
        if archs and self.arch_combo.count() != len(archs):
            current = self.arch_combo.currentText()
            self.arch_combo.clear()
            self.arch_combo.addItems(list(archs))
            index = self.arch_combo.findText(current)
            self.arch_combo.setCurrentIndex(max(index, 0))

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights file", filter="Weights (*.pt *.pth)")
        if path:
            self.weights_combo.setEditText(path)

    def params(self) -> ModelSettings:
        """The model parameters as chosen (``auto`` device and input size 0 become None)."""
        device = self.device_combo.currentText()
        size = self.min_size_spin.value()
        return ModelSettings(
            arch=self.arch_combo.currentText() or None,
            weights=self.weights_combo.currentText().strip() or None,
            device=None if device == "auto" else device,
            min_size=size or None,
            max_size=(size * 2) if size else None,
        )

    def show_model(self, detector: Any, version: int | None) -> None:
        """Show the model in use: its architecture and version (or that there is none)."""
        if detector is None:
            self.model_label.setText("no model loaded")
        else:
            arch = getattr(getattr(detector, "config", None), "arch", "model")
            text = f"v{version}" if version else "not trained here"
            self.model_label.setText(f"{arch} ({text})")
