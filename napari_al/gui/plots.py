"""Small matplotlib plots embedded in the dock widget (Qt canvas, no pyplot global state)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer

_DARK = {"face": "#262930", "text": "#d6d6d6", "grid": "#4a4d55"}


def _style(ax) -> None:  # type: ignore[no-untyped-def]
    ax.set_facecolor(_DARK["face"])
    ax.tick_params(colors=_DARK["text"], labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(_DARK["grid"])
    ax.xaxis.label.set_color(_DARK["text"])
    ax.yaxis.label.set_color(_DARK["text"])
    ax.title.set_color(_DARK["text"])
    ax.grid(True, color=_DARK["grid"], linewidth=0.5)


class _Canvas(FigureCanvasQTAgg):
    def __init__(self, height_in: float = 1.8) -> None:
        self.figure = Figure(figsize=(3.2, height_in), dpi=90, facecolor=_DARK["face"])
        super().__init__(self.figure)
        self.setMinimumHeight(int(height_in * 70))


class LossPlot(_Canvas):
    """The live training loss of the current run (and the previous run, faded).

    Redraws at most every :attr:`min_interval_s` seconds (matplotlib draws on the main thread;
    the event loop must stay responsive while a job reports every step).
    """

    min_interval_s = 0.5

    def __init__(self) -> None:
        super().__init__(1.7)
        self.ax = self.figure.add_subplot(111)
        _style(self.ax)
        self.ax.set_xlabel("step", fontsize=7)
        self.ax.set_ylabel("loss", fontsize=7)
        (self._prev_line,) = self.ax.plot([], [], color="#888888", linewidth=0.8)
        (self._line,) = self.ax.plot([], [], color="#00e5ff", linewidth=1.2)
        self.figure.tight_layout(pad=0.4)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self._last_draw = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._redraw)

    def start_run(self) -> None:
        if self.steps:
            self._prev_line.set_data(self.steps, self.losses)
        self.steps, self.losses = [], []
        self._redraw()

    def add(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self.steps.append(int(step))
        self.losses.append(float(loss))
        wait = self.min_interval_s - (time.perf_counter() - self._last_draw)
        if wait <= 0:
            self._redraw()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def _redraw(self) -> None:
        self._line.set_data(self.steps, self.losses)
        self.ax.relim()
        self.ax.autoscale_view()
        self._last_draw = time.perf_counter()
        self.draw_idle()


class EffortPlot(_Canvas):
    """mAP@0.5 of each model version against annotation seconds and boxes annotated."""

    def __init__(self) -> None:
        super().__init__(1.9)
        self.ax_time = self.figure.add_subplot(121)
        self.ax_boxes = self.figure.add_subplot(122, sharey=self.ax_time)
        self.series: list[dict[str, float]] = []
        self.set_series([])

    def set_series(self, series: Sequence[dict[str, float]]) -> None:
        self.series = list(series)
        for ax, key, label in (
            (self.ax_time, "annotation_seconds", "annotation s"),
            (self.ax_boxes, "boxes_annotated", "boxes annotated"),
        ):
            ax.clear()
            _style(ax)
            pts = sorted(
                (s[key], s["map50"])
                for s in self.series
                if math.isfinite(s.get(key, math.nan)) and math.isfinite(s["map50"])
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "o-", color="#00c853", markersize=3, linewidth=1)
            ax.set_xlabel(label, fontsize=7)
        self.ax_time.set_ylabel("mAP@0.5", fontsize=7)
        self.ax_time.set_ylim(0, 1)
        self.figure.tight_layout(pad=0.4)
        self.draw_idle()
