"""The Evaluate section: mAP on the val split, and the mAP-vs-effort plot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout

from napari_al.gui.sections.common import row


class EvaluateSection(QGroupBox):
    """An evaluate button calling ``on_evaluate()``, the last mAP, and mAP against effort."""

    def __init__(self, on_evaluate: Callable[[], Any]) -> None:
        from napari_al.gui.plots import EffortPlot

        super().__init__("Evaluate")
        form = QVBoxLayout(self)
        self.evaluate_button = QPushButton("mAP on val")
        self.evaluate_button.clicked.connect(lambda: on_evaluate())
        self.map_label = QLabel("no evaluation yet")
        self.map_label.setWordWrap(True)
        form.addWidget(row(self.evaluate_button, self.map_label))
        self.effort_plot = EffortPlot()
        form.addWidget(self.effort_plot)

    def show_metrics(self, metrics: dict[str, Any], version: int | None) -> None:
        """Show an evaluation of model ``version``: mAP@0.5 and COCO mAP@[.5:.95] on its split
        (``metrics`` as :meth:`~napari_al.core.evaluation.EvalResult.as_dict`, plus ``split``)."""
        map50 = metrics.get("map50", float("nan"))
        self.map_label.setText(
            f"mAP@0.5 {map50:.3f}, mAP {metrics.get('map', float('nan')):.3f} "
            f"on {metrics.get('split', 'val')} (model v{version})"
        )
