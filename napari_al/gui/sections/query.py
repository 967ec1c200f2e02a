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
    from napari_al.core.selection import QueryItem
    from napari_al.gui.controller import AnnotationController

STRATEGY_PRESETS = ("entropy", "least_confidence", "margin", "entropy+missed", "random")
#: The score filter's minimum, shown as "auto": the workflow's calibrated rule decides.
AUTO_MIN_SCORE = -0.05


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
        self.unit_combo.currentTextChanged.connect(self._on_unit)
        self._on_unit(self.unit_combo.currentText())
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
        # where P(yes) x draw_s <= verify_s a yes/no question costs more than it saves
        # (docs/simulation.md), so those predictions are hidden and skipped by default ("auto",
        # the spin box's minimum: the workflow's calibrated rule); a number is a raw threshold
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(AUTO_MIN_SCORE, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setDecimals(2)
        self.min_score_spin.setSpecialValueText("auto")
        self.min_score_spin.setValue(AUTO_MIN_SCORE)
        costs = CostModel()
        self.min_score_spin.setToolTip(
            "auto: show a prediction only where P(yes) x "
            f"{costs.draw_s:g} s (draw) > {costs.verify_s:g} s (verify), with P(yes) the model's "
            "calibrated score (fitted on the boxes you judged); a number: hide predictions "
            "scoring below it"
        )
        self.min_score_spin.valueChanged.connect(self._on_min_score)
        self._on_min_score(self.min_score_spin.value())
        form.addRow("hide predictions below", self.min_score_spin)

    def _on_unit(self, unit: str) -> None:
        """Diversity spreads image queries only: offered for the ``image`` unit alone."""
        self.diversity_combo.setEnabled(unit == "image")
        self.diversity_combo.setToolTip(
            "spread the queried images over the model's embedding space"
            if unit == "image"
            else "diversity applies to image queries only (unit: image)"
        )

    def _on_min_score(self, value: float) -> None:
        self.controller.set_min_prediction_score(None if value < 0 else value)

    def params(self) -> QuerySettings:
        """The query settings as chosen (spaces in the strategy dropped)."""
        diversity = self.diversity_combo.currentText()
        if not self.diversity_combo.isEnabled():
            diversity = "none"
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
        """List the controller's queried items (rank, image file, unit, what the score is),
        the current one selected."""
        c = self.controller
        self.query_list.blockSignals(True)
        self.query_list.clear()
        names = {}
        if c.store is not None:
            names = {r.id: Path(r.path).name for r in c.store.images()}
        for rank, q in enumerate(c.queries, start=1):
            self.query_list.addItem(query_text(rank, q, names.get(q.image, f"image {q.image}")))
            self.query_list.item(rank - 1).setToolTip(query_tooltip(q))
        if 0 <= c.query_index < len(c.queries):
            self.query_list.setCurrentRow(c.query_index)
        self.query_list.blockSignals(False)


def short_number(x: float) -> str:
    """A score with few digits: 48.3, 0.48, 1234 (about three significant figures)."""
    ax = abs(float(x))
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def query_text(rank: int, item: QueryItem, name: str) -> str:
    """One line of the query list, e.g. ``1. img_004.jpg  entropy 0.48``: the rank (1 =
    ask first), the image file, the unit when not a whole image, and the score with the
    scorer(s) it comes from."""
    unit = "" if item.unit == "image" else f" ({item.unit})"
    what = "+".join(item.breakdown) if item.breakdown else "score"
    return f"{rank}. {name}{unit}  {what} {short_number(item.score)}"


def query_tooltip(item: QueryItem) -> str:
    """The item's full score and its parts (higher: more informative, asked first)."""
    parts = ", ".join(f"{k} {v:.4g}" for k, v in item.breakdown.items())
    return f"score {item.score:.4g}" + (f" ({parts})" if parts else "") + "; higher: ask first"
