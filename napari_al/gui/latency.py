"""Measure how responsive the Qt event loop is: the delay of a periodic timer's ticks.

A 10 ms timer should fire every 10 ms; any extra delay is time the event loop was blocked
(by a long main-thread computation, or by a worker thread holding the GIL). Tests and
``benchmarks/gui_latency.py`` use it to check that background training keeps the viewer fluid.
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer


class LatencyProbe(QObject):
    """Records the event-loop delay (ms) of each tick of a ``interval_ms`` precise timer."""

    def __init__(self, interval_ms: int = 10) -> None:
        super().__init__()
        self.interval_ms = interval_ms
        self.delays_ms: list[float] = []
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None

    def start(self) -> None:
        self.delays_ms.clear()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.delays_ms.append(max(0.0, (now - self._last) * 1000.0 - self.interval_ms))
        self._last = now

    def summary(self) -> dict[str, float]:
        """p50, p99 and max delay in ms over the ticks recorded so far, and the tick count."""
        if not self.delays_ms:
            return {"ticks": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": 0.0}
        arr = np.asarray(self.delays_ms)
        return {
            "ticks": int(arr.size),
            "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)),
            "max_ms": float(arr.max()),
        }
