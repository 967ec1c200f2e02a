"""A simulator-like parent: one pool worker (napari-al's worker initializer) sleeping in a task;
prints the worker's pid, then waits. The test kills this process with SIGKILL."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from napari_al.simulation import parallel


def task() -> int:
    time.sleep(120)
    return os.getpid()


def pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    parallel.PARENT_POLL_S = float(sys.argv[1])
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        1, mp_context=ctx, initializer=parallel._init_worker, initargs=(1, os.getpid())
    )
    print(pool.submit(pid).result(), flush=True)
    pool.submit(task)
    time.sleep(300)
