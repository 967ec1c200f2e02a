"""Preloaded into each worker process of a local Dask cluster (``LocalCluster(preload=...)``,
Dask's documented worker preload hook, ``dask_setup``): the worker ignores SIGINT.

Ctrl+C in a terminal signals the whole process group: every worker raised its own
KeyboardInterrupt and printed a traceback while the command that started them was already
stopping them (it closes its cluster on the way out). The command alone handles Ctrl+C.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (only the main thread may set a handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
