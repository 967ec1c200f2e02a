"""Running (or resuming) a whole benchmark: the order of the work, one process or a pool of
worker processes, the run's settings and machine recorded beside the results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_al.simulation.config import (
    FULL_NAME,
    RESULT_KEYS,
    BenchmarkData,
    SimConfig,
    SimStrategy,
    load_data,
    resolve_strategies,
)
from napari_al.simulation.report import write_report
from napari_al.simulation.results import (
    CONFIG_JSON,
    RESULTS_CSV,
    RUN_INFO_JSON,
    check_columns,
    read_results,
    remove_lock_file,
    row_key,
    sort_results,
)
from napari_al.simulation.runner import Notify, run_base, run_full, run_strategy


@dataclass
class SimOutputs:
    """Where a benchmark run put its results."""

    out: Path
    csv: Path
    plot: Path | None
    summary: Path | None
    wall_s: float


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_config(out: Path, config: SimConfig) -> None:
    path = out / CONFIG_JSON
    current = config.to_dict()
    if path.is_file():
        old = json.loads(path.read_text())
        # a setting newer than the folder's config.json had its default value there
        defaults = SimConfig().to_dict()
        diff = [
            k
            for k in RESULT_KEYS
            if json.dumps(old.get(k, defaults.get(k)), sort_keys=True, default=str)
            != json.dumps(current.get(k), sort_keys=True, default=str)
        ]
        if diff:
            shown = "; ".join(
                f"{k}: {_short(old.get(k, defaults.get(k)))} there, {_short(current.get(k))} now"
                for k in diff
            )
            raise ValueError(
                f"{out} holds results made with other settings ({shown}); "
                "use another --out folder or the same settings"
            )
        # remember the union of strategies and seeds ever run here
        current["strategies"] = list(
            dict.fromkeys([*old.get("strategies", []), *current["strategies"]])
        )
        current["seeds"] = max(int(old.get("seeds", 0)), int(current["seeds"]))
    path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


#: Seconds between a worker's checks that the process that started it is still there.
PARENT_POLL_S = 2.0


def _exit_with_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """Watch (a daemon thread) for the end of the process that started this worker: a worker
    whose run was stopped (``kill``, ``kill -9``) must not go on training with nobody to hand
    its result to, holding its project's lock. The worker exits at once (its task unfinished:
    the round is redone when the run resumes)."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:  # re-parented: the run is gone
                os._exit(1)

    threading.Thread(target=watch, name="napari-al-parent-watch", daemon=True).start()


def _init_worker(threads: int | None, parent: int | None = None) -> None:
    if parent is not None:
        _exit_with_parent(parent)
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


_WORKER_DATA: dict[str, BenchmarkData] = {}


def _worker_data(config: SimConfig) -> BenchmarkData:
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[key] = load_data(config)
    return _WORKER_DATA[key]


def _task(
    kind: str, config_d: dict[str, Any], out: str, seed: int, name: str | None, queue: Any
) -> str:
    """A unit of work in a worker process: ``base``, ``full`` or ``run``."""
    config = SimConfig.from_dict(config_d)
    data = _worker_data(config)
    out_p = Path(out)
    work, csv_path = out_p / "work", out_p / RESULTS_CSV
    notify = (lambda msg: queue.put(msg)) if queue is not None else None
    if kind == "base":
        run_base(config, data, work, seed)
        if notify:
            notify(f"initial set seed {seed}")
    elif kind == "full":
        run_full(config, data, work, seed, csv_path, notify)
    else:
        strategies = {s.name: s for s in resolve_strategies(config.strategies)}
        run_strategy(config, data, work, strategies[str(name)], seed, csv_path, notify)
    return f"{kind} {name or ''} seed {seed}"


def run_simulation(
    config: SimConfig,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SimOutputs:
    """Run (or resume) the benchmark into ``out``: ``results.csv``, the plot and the summary."""
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    strategies = resolve_strategies(config.strategies)
    config = dataclasses.replace(config, strategies=tuple(s.name for s in strategies))
    check_columns(out / RESULTS_CSV)  # before anything is written: resuming appends to it
    _check_config(out, config)
    data = load_data(config)
    log(
        f"simulate: pool {len(data.pool)} images, test {len(data.test)} images ({data.note}); "
        f"{len(strategies)} strategies x {config.seeds} seeds x {config.rounds} rounds"
    )
    csv_path = out / RESULTS_CSV
    have = {row_key(r) for r in read_results(csv_path)}
    seeds = config.seed_list
    runs = [
        (s, seed)
        for seed in seeds
        for s in strategies
        if any((s.name, seed, r) not in have for r in range(config.rounds + 1))
    ]
    need_base = sorted({seed for _, seed in runs})
    full = [seeds[0]] if config.full_supervision and (FULL_NAME, seeds[0], 0) not in have else []
    total = (
        len(need_base)
        + len(full)
        + sum(
            sum((s.name, seed, r) not in have for r in range(1, config.rounds + 1))
            for s, seed in runs
        )
    )
    bar = tqdm(total=total, desc="simulate", unit="step", file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()

    def note(msg: str) -> None:
        bar.set_postfix_str(msg[-40:], refresh=False)
        bar.update(1)

    try:
        if config.workers <= 1:
            for seed in need_base:
                run_base(config, data, out / "work", seed)
                note(f"initial set seed {seed}")
            for seed in full:
                run_full(config, data, out / "work", seed, csv_path, note)
            for s, seed in runs:
                run_strategy(config, data, out / "work", s, seed, csv_path, note)
        else:
            _run_parallel(config, out, need_base, full, runs, note)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    sort_results(csv_path, [*(s.name for s in strategies), FULL_NAME])
    remove_lock_file(csv_path)  # every worker is done: no lock file left behind
    _record_run_info(out, config, wall)
    plot, summary = write_report(out)
    log(f"simulate: done in {wall / 60:.1f} min; results in {out}")
    return SimOutputs(out, csv_path, plot, summary, wall)


def _run_parallel(
    config: SimConfig,
    out: Path,
    need_base: list[int],
    full: list[int],
    runs: list[tuple[SimStrategy, int]],
    note: Notify,
) -> None:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    threads = config.threads or 1
    cfg = config.to_dict()
    with (
        ctx.Manager() as manager,
        ProcessPoolExecutor(
            max_workers=config.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(threads, os.getpid()),
        ) as pool,
    ):
        q = manager.Queue()
        pending: dict[Any, tuple[str, int]] = {}
        for seed in need_base:
            pending[pool.submit(_task, "base", cfg, str(out), seed, None, q)] = ("base", seed)
        for seed in full:
            pending[pool.submit(_task, "full", cfg, str(out), seed, None, q)] = ("full", seed)
        waiting = {seed: [s for s, sd in runs if sd == seed] for seed in {sd for _, sd in runs}}
        errors: list[str] = []
        while pending:
            finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            while True:
                try:
                    note(q.get_nowait())
                except queue_mod.Empty:
                    break
            for fut in finished:
                kind, seed = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    errors.append(f"{kind} seed {seed}: {type(exc).__name__}: {exc}")
                    continue
                if kind == "base":
                    for s in waiting.pop(seed, []):
                        f = pool.submit(_task, "run", cfg, str(out), seed, s.name, q)
                        pending[f] = ("run " + s.name, seed)
        while True:
            try:
                note(q.get_nowait())
            except queue_mod.Empty:
                break
        if errors:
            raise RuntimeError("some simulation tasks failed:\n  " + "\n  ".join(errors))


def _record_run_info(out: Path, config: SimConfig, wall: float) -> None:
    import torch

    path = out / RUN_INFO_JSON
    info: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name(0)}"
    sessions = [*info.get("sessions", []), {"wall_s": round(wall, 1), "finished": time.time()}]
    info.update(
        machine=machine,
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        device=device,
        workers=config.workers,
        threads=config.threads,
        sessions=sessions,
        wall_s_total=round(sum(s["wall_s"] for s in sessions), 1),
    )
    path.write_text(json.dumps(info, indent=2))
