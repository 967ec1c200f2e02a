"""The Query section: strategy, unit, budget, the ranked list, highlights and score filter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QListWidget,
    QPushButton,
    QSpinBox,
)

from napari_al.core.costs import CostModel
from napari_al.core.workflow import QuerySettings, SuggestSettings
from napari_al.gui.sections.common import row

if TYPE_CHECKING:
    from napari_al.gui.controller import AnnotationController

STRATEGY_PRESETS = ("entropy", "least_confidence", "margin", "entropy+missed", "random")


class QuerySection(QGroupBox):
    """The query parameters (:meth:`params`), a Rescore button calling ``on_rescore()``, the
    list of queried items (a click goes to the item) and the display filters, which act on
    ``controller`` directly."""

    def __init__(self, controller: AnnotationController, on_rescore: Callable[[], Any]) -> None:
        from napari_al.core.aggregation import AGGREGATIONS
        from napari_al.core.scoring.registry import IMAGE_SCORERS, SCORERS
        from napari_al.core.selection import UNITS

        super().__init__("Query")
        self.controller = controller
        form = QFormLayout(self)
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
        self.rescore_button.clicked.connect(lambda: on_rescore())
        form.addRow(self.rescore_button)
        self.query_list = QListWidget()
        self.query_list.setMinimumHeight(90)
        self.query_list.itemActivated.connect(
            lambda item: controller.go_to_item(self.query_list.row(item))
        )
        self.query_list.itemClicked.connect(
            lambda item: controller.go_to_item(self.query_list.row(item))
        )
        form.addRow(self.query_list)
        self.highlight_check = QCheckBox("show highlights")
        self.highlight_check.setChecked(True)
        self.highlight_check.toggled.connect(controller.view.set_highlights_visible)
        self.rejected_check = QCheckBox("show rejected")
        self.rejected_check.setChecked(True)
        self.rejected_check.toggled.connect(self._on_rejected_toggled)
        form.addRow(row(self.highlight_check, self.rejected_check))
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
        self.min_score_spin.valueChanged.connect(controller.set_min_prediction_score)
        controller.set_min_prediction_score(self.min_score_spin.value())
        form.addRow("hide predictions below", self.min_score_spin)

    def params(self) -> QuerySettings:
        """The query settings as chosen (spaces in the strategy dropped)."""
        diversity = self.diversity_combo.currentText()
        return QuerySettings(
            strategy=self.strategy_combo.currentText().replace(" ", "") or QuerySettings.strategy,
            unit=self.unit_combo.currentText(),
            budget=self.budget_spin.value(),
            diversity=None if diversity == "none" else diversity,
            aggregation=self.aggregation_combo.currentText(),
        )

    def suggest_params(self) -> SuggestSettings:
        """Whether possibly missed objects are suggested (the rest: the defaults)."""
        return SuggestSettings(enabled=self.suggest_check.isChecked())

    def _on_rejected_toggled(self, checked: bool) -> None:
        if self.controller.view.show_rejected != checked:
            self.controller.toggle_rejected()

    def refresh_queries(self) -> None:
        """List the controller's queried items (score, image file, unit), the current one
        selected."""
        c = self.controller
        self.query_list.blockSignals(True)
        self.query_list.clear()
        names = {}
        if c.store is not None:
            names = {r.id: Path(r.path).name for r in c.store.images()}
        for q in c.queries:
            where = names.get(q.image, str(q.image))
            extra = "" if q.unit == "image" else f" {q.unit}"
            self.query_list.addItem(f"{q.score:.3f}  {where}{extra}")
        if 0 <= c.query_index < len(c.queries):
            self.query_list.setCurrentRow(c.query_index)
        self.query_list.blockSignals(False)
