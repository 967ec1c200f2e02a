"""The results folder of a run: file names, and ``results.csv`` (one row per strategy, seed and
round), appended to under a file lock so that parallel workers can share it."""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_CSV = "results.csv"
PLOT_PNG = "map50_vs_seconds.png"
SUMMARY_MD = "summary.md"
CONFIG_JSON = "config.json"
RUN_INFO_JSON = "run_info.json"
#: Columns of ``results.csv`` (costs and counts are cumulative up to and including the round).
CSV_COLUMNS = (
    "strategy",
    "unit",
    "oracle",
    "seed",
    "round",
    "cost_seconds",
    "boxes_drawn",
    "verifications",
    "class_changes",
    "images",
    "human_boxes",
    "map50",
    "map",
    "ece_before",
    "ece_after",
    "train_steps",
    "wall_s",
    "query_s",
    "answer_s",
    "train_s",
    "eval_s",
)
#: Columns that hold machine time, not results (they differ between identical runs).
TIMING_COLUMNS = ("wall_s", "query_s", "answer_s", "train_s", "eval_s")


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """An exclusive lock on ``path``.lock (the ``filelock`` library: an OS-level lock, dropped
    by the kernel if the holder dies), waited for."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock", thread_local=False):
        yield


def remove_lock_file(path: Path) -> None:
    """Remove ``path``.lock once a run is over (all its workers done), unless another process
    holds it right now (a second run writing to the same folder), which keeps it."""
    from filelock import FileLock, Timeout

    lock_path = Path(str(path) + ".lock")
    if not lock_path.exists():
        return
    lock = FileLock(lock_path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        return
    try:
        lock_path.unlink(missing_ok=True)
    finally:
        lock.release()


def check_columns(path: Path) -> None:
    """Raise ValueError (one line naming the file and the fix) when the results CSV at
    ``path`` exists and its header is not :data:`CSV_COLUMNS`, e.g. one written by another
    napari-al version: rows appended to it would land under the wrong columns (and a later
    read fail on them). A missing or empty file passes."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, newline="") as f:
        header = tuple(next(csv.reader(f), ()))
    if header == CSV_COLUMNS:
        return
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    what = "; ".join(
        part
        for part in (
            f"lacks {', '.join(missing)}" if missing else "",
            f"has {', '.join(extra)}" if extra else "",
        )
        if part
    )
    raise ValueError(
        f"{path} has other columns than this napari-al writes ({what or 'another order'}), "
        f"e.g. from another version: use a new --out folder, or move the old {RESULTS_CSV} "
        "away"
    )


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results CSV with numbers parsed (empty list when missing). Raises
    ValueError for a file with other columns (:func:`check_columns`)."""
    path = Path(path)
    if not path.is_file():
        return []
    check_columns(path)
    ints = {"seed", "round", "boxes_drawn", "verifications", "class_changes", "images"}
    ints |= {"human_boxes", "train_steps"}
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if k in ints:
                    parsed[k] = int(v)
                elif k in ("strategy", "unit", "oracle"):
                    parsed[k] = v
                else:
                    parsed[k] = float(v) if v not in ("", None) else math.nan
            out.append(parsed)
    return out


def row_key(row: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(row["strategy"]), int(row["seed"]), int(row["round"]))


def _fmt_cell(k: str, v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6f}" if k in ("map50", "map", "ece_before", "ece_after") else f"{v:.4f}"
    return str(v)


def append_result(path: Path, row: Mapping[str, Any]) -> bool:
    """Append a row unless its (strategy, seed, round) is already there; returns whether added.
    Raises ValueError, writing nothing, when the file has other columns."""
    path = Path(path)
    with _locked(path):
        if row_key(row) in {row_key(r) for r in read_results(path)}:
            return False
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(CSV_COLUMNS)
            w.writerow([_fmt_cell(k, row.get(k, "")) for k in CSV_COLUMNS])
            f.flush()
            os.fsync(f.fileno())
        return True


def sort_results(path: Path, order: Sequence[str]) -> None:
    """Rewrite the CSV sorted by strategy (``order``), seed and round (atomic replace)."""
    path = Path(path)
    with _locked(path):
        rows = read_results(path)
        rank = {n: i for i, n in enumerate(order)}
        rows.sort(
            key=lambda r: (rank.get(r["strategy"], len(rank)), r["strategy"], r["seed"], r["round"])
        )
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                w.writerow([_fmt_cell(k, r.get(k, "")) for k in CSV_COLUMNS])
        os.replace(tmp, path)
