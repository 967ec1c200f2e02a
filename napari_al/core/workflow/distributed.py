"""Scoring and predicting the pool as a Dask task graph (dask.distributed), on this machine or
a cluster.

One scoring pass (:func:`~napari_al.core.workflow.ranking.score_images`) over the images whose
scores are not cached for this model version and strategy, cut into chunks of
:attr:`~napari_al.core.workflow.settings.DistributedSettings.chunk_size` images (whole
2-image scoring batches, so each batch, and the noise seeded per batch, is the one the
single-process pass scores); or one prediction pass
(:func:`~napari_al.core.workflow.prediction.predict_images`), whole prediction batches to a
chunk:

- the detector (checkpoint bytes, :func:`napari_al.core.engine.detector_to_bytes`) and the
  earlier checkpoints of an ensemble scorer go to each worker once, in a worker plugin
  (:class:`DetectorPlugin`; a worker that joins or restarts mid-run gets it too), and each
  worker builds its detector once, on its first chunk;
- one task per chunk (:func:`score_chunk`, :func:`predict_chunk`) reads its images by path
  and returns their raw scores and embeddings (and views, for box and region units), or
  their predictions. Tasks are pure: no worker opens the project's store;
- this process, the store's one writer (it holds the project lock), takes the results as
  they complete (``as_completed``) and writes each chunk's scores to the score cache in one
  transaction, keeping any entry already there (``put_scores_many(replace=False)``): a chunk
  that a lost worker was scoring is scored again by Dask (up to its ``allowed-failures``),
  and its images are neither lost nor written twice. Predictions replace an image's
  ``predicted`` boxes, one transaction per image, as in one process.

Where: :class:`DaskCluster`, a ``LocalCluster`` of ``workers`` processes started for the run
(each with one task at a time and its share of the cores as torch threads), or the running
scheduler at ``scheduler`` (``dask scheduler`` / ``dask worker``, dask-jobqueue, Kubernetes,
Coiled; every worker needs napari-al installed and the project's image paths readable). The
Dask dashboard runs when bokeh is installed. See docs/scale.md.

A strategy with the ``random`` scorer draws from a generator per chunk, seeded by
(``QuerySettings.seed``, chunk number): reproducible, not the single-process draw. The
question unit (the dialog planner) is planned in one process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from napari_al.core.workflow.dask_connect import connect
from napari_al.core.workflow.errors import WorkflowError
from napari_al.core.workflow.examples import OnSkip, _warn_skip, load_rgb, skip_message
from napari_al.core.workflow.ranking import BATCH_SIZE, pack_scores, score_batch
from napari_al.core.workflow.settings import DistributedSettings

if TYPE_CHECKING:
    from distributed import Client

    from napari_al.core.data import Predictions
    from napari_al.core.engine import Detector
    from napari_al.core.store import ImageRow, ProjectStore
    from napari_al.core.workflow.ranking import _Plan, _Scored
    from napari_al.core.workflow.settings import QuerySettings, TileSettings

log = logging.getLogger(__name__)


def _cores() -> int:
    """CPU cores this process may run on (its affinity, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _scheduler_info(client: Client) -> dict[str, Any]:
    """The scheduler's identity with every worker (distributed 2025-2026 lists only 5 unless
    asked; earlier releases take no ``n_workers`` and list them all)."""
    try:
        return dict(client.scheduler_info(n_workers=-1))
    except TypeError:
        return dict(client.scheduler_info())


#: Preloaded into each local worker: it ignores SIGINT (Ctrl+C goes to the whole process group).
WORKER_SETUP = "napari_al.core.workflow.dask_worker_setup"


class DaskCluster:
    """A Dask client for scoring and predicting, started on first use and closed by
    :meth:`close` (or at the end of a ``with`` block): a ``LocalCluster`` of
    ``settings.workers`` processes with one task each and ``cores / workers`` torch threads
    each, or the cluster of ``settings.scheduler``. ``on_start`` is called with
    :meth:`describe`'s line once it runs. Nothing starts if no image needs the model. Raises
    :class:`WorkflowError` when the scheduler cannot be reached within
    ``settings.connect_timeout`` seconds (:func:`connect`) or the settings ask for no Dask at
    all."""

    def __init__(
        self, settings: DistributedSettings, on_start: Callable[[str], None] | None = None
    ) -> None:
        if not settings.active:
            raise WorkflowError("Dask scoring needs a scheduler address or at least one worker")
        self.settings = settings
        self.on_start = on_start
        self._client: Client | None = None
        self._cluster: Any = None
        #: Whether a client was ever started (some image needed the model).
        self.used = False

    def client(self) -> Client:
        """The running client (started now if it is not)."""
        if self._client is None:
            self._client = self._start()
            self.used = True
            if self.on_start is not None:
                self.on_start(self.describe())
        return self._client

    def _start(self) -> Client:
        from distributed import Client, LocalCluster

        s = self.settings
        if s.scheduler is not None:
            return connect(s.scheduler, s.connect_timeout)
        self._cluster = LocalCluster(
            n_workers=s.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: 8787 may be another cluster's
            silence_logs=logging.ERROR,
            preload=[WORKER_SETUP],  # the workers leave Ctrl+C to this process
        )
        return Client(self._cluster)

    def describe(self) -> str:
        """One line: where the work runs, how many workers, the dashboard if any."""
        client = self.client()
        info = _scheduler_info(client)
        where = (
            f"the Dask cluster at {self.settings.scheduler}"
            if self.settings.scheduler is not None
            else "a local Dask cluster"
        )
        threads = sum(int(w.get("nthreads", 1)) for w in info["workers"].values())
        line = f"running on {where}: {len(info['workers'])} workers, {threads} tasks at a time"
        if "dashboard" in info.get("services", {}) and importlib.util.find_spec("bokeh"):
            line += f", dashboard {client.dashboard_link}"
        return line

    def torch_threads(self) -> int | dict[str, int]:
        """torch CPU threads of each worker: the setting; for a local cluster the cores
        divided among its workers; on a cluster, per host, its cores' share (resolved on the
        worker from the number of task threads the scheduler had on that host at the start)."""
        client = self.client()
        if self.settings.worker_threads is not None:
            return int(self.settings.worker_threads)
        if self._cluster is not None:
            return max(1, _cores() // max(1, self.settings.workers))
        per_host: dict[str, int] = {}
        for info in _scheduler_info(client)["workers"].values():
            host = str(info.get("host", ""))
            per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
        return per_host

    def close(self) -> None:
        """Close the client (and the local cluster, if this started one)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DetectorPlugin(WorkerPlugin):
    """The detector each worker runs, sent once per worker (Dask sends a worker plugin to every
    worker, including one that joins or restarts later): its checkpoint bytes and model
    version, and the ensemble members' (an ensemble scorer). Built on the worker's first
    chunk (:meth:`detector`), on ``device`` (None: the worker's best), with ``threads`` torch
    CPU threads (an int, or per host: the host's cores divided by its task threads). A worker
    runs one task at a time per task thread, and the threads of one worker share its
    detector: give workers one thread each (``dask worker --nthreads 1``)."""

    def __init__(
        self,
        detector: bytes,
        model_version: int,
        ensemble: Sequence[tuple[bytes, int]],
        device: str | None,
        threads: int | dict[str, int] | None,
    ) -> None:
        self.detector_bytes = detector
        self.model_version = int(model_version)
        self.ensemble_bytes = list(ensemble)
        self.device = device
        self.threads = threads
        self.digest = hashlib.sha256(
            b"".join([detector, *(data for data, _v in ensemble)])
        ).hexdigest()
        self._lock: threading.Lock | None = None

    def setup(self, worker: Any) -> None:
        from napari_al.runtime import set_torch_threads

        self._lock = threading.Lock()
        threads = self.threads
        if isinstance(threads, dict):
            host = str(getattr(worker, "ip", ""))
            share = threads.get(host) or worker.state.nthreads
            threads = max(1, _cores() // max(1, int(share)))
        set_torch_threads(threads)

    def detector(self) -> tuple[Detector, list[Detector]]:
        """The worker's detector and ensemble members, built on first use; the worker process
        keeps the last ones built, so the next run with the same weights (the same model
        version, ranked again) does not build them again."""
        from napari_al.core.engine import detector_from_bytes

        assert self._lock is not None, "the plugin is used on a worker after its setup"
        key = (self.digest, self.device)
        with self._lock:
            built = _BUILT.get(key)
            if built is None:
                detector = detector_from_bytes(self.detector_bytes, device=self.device)
                members = [
                    detector_from_bytes(data, device=str(detector.device))
                    for data, _version in self.ensemble_bytes
                ]
                _BUILT.clear()
                built = _BUILT[key] = (detector, members)
            detector, members = built
            detector.model_version = self.model_version
            for member, (_data, version) in zip(members, self.ensemble_bytes, strict=True):
                member.model_version = version
            return detector, members


#: In a worker process: the detector and ensemble built last, by (weights digest, device).
_BUILT: dict[tuple[str, str | None], tuple[Detector, list[Detector]]] = {}


@dataclass
class ChunkResult:
    """A chunk's results: ``positions`` (indexes into the pass's rows) of the images done and
    what each gave (a :data:`~napari_al.core.workflow.ranking.BatchScore`, or a
    :class:`~napari_al.core.data.Predictions`), (image id, message) of each image that could
    not be read, and the address of the worker that did it."""

    index: int
    positions: list[int] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    worker: str = ""


#: One image of a chunk: (position in the pass, image id, absolute path).
Item = tuple[int, int, str]


def _worker_detector(plugin: str, index: int) -> tuple[Detector, list[Detector], ChunkResult]:
    from distributed import get_worker

    worker = get_worker()
    owner: DetectorPlugin = worker.plugins[plugin]  # type: ignore[assignment]
    detector, members = owner.detector()
    return detector, members, ChunkResult(index, worker=str(worker.address))


def _read(items: Sequence[Item], out: ChunkResult) -> tuple[list[int], list[np.ndarray]]:
    """The images of ``items`` that can be read, as ``read_rows`` does: the others go to
    ``out.skipped`` with the same message."""
    ok, pixels = [], []
    for position, image_id, path in items:
        try:
            pixels.append(load_rgb(path))
        except (OSError, ValueError) as exc:
            out.skipped.append((image_id, skip_message(path, exc)))
            continue
        ok.append(position)
    return ok, pixels


def score_chunk(
    plugin: str, index: int, items: Sequence[Item], query: QuerySettings, plan: _Plan
) -> ChunkResult:
    """A Dask task: score chunk ``index`` (``items``) with the detector of the worker's
    :class:`DetectorPlugin` named ``plugin`` and the ``plan`` of ``query`` (its ensemble: the
    plugin's), in 2-image batches as the single-process pass does. Writes nothing."""
    detector, members, out = _worker_detector(plugin, index)
    plan = dataclasses.replace(plan, ensemble=members)
    rng = np.random.default_rng([query.seed, index])
    for start in range(0, len(items), BATCH_SIZE):
        ok, pixels = _read(items[start : start + BATCH_SIZE], out)
        out.positions.extend(ok)
        out.results.extend(score_batch(detector, query, plan, pixels, rng))
    return out


def predict_chunk(
    plugin: str,
    index: int,
    batches: Sequence[Sequence[Item]],
    tiled: Sequence[bool],
    tiles: TileSettings,
) -> ChunkResult:
    """A Dask task: predict chunk ``index``, batch by batch as ``predict_images`` does (a
    ``tiled`` batch is one large image, predicted tile by tile). Writes nothing."""
    from napari_al.core.images import ImageReadError
    from napari_al.core.workflow.prediction import predict_large_file

    detector, _members, out = _worker_detector(plugin, index)
    for batch, large in zip(batches, tiled, strict=True):
        if large:
            (position, image_id, path) = batch[0]
            try:
                pred = predict_large_file(detector, path, tiles)
            except (OSError, ImageReadError) as exc:
                out.skipped.append((image_id, skip_message(path, exc)))
                continue
            out.positions.append(position)
            out.results.append(pred)
            continue
        ok, pixels = _read(batch, out)
        out.positions.extend(ok)
        out.results.extend(detector.predict(pixels) if pixels else [])
    return out


def chunks(todo: Sequence[int], chunk_size: int) -> list[list[int]]:
    """``todo`` cut into chunks of ``chunk_size`` rounded up to whole 2-image batches."""
    size = -(-max(1, chunk_size) // BATCH_SIZE) * BATCH_SIZE
    return [list(todo[k : k + size]) for k in range(0, len(todo), size)]


def _on_cluster(
    distributed: DistributedSettings | DaskCluster, run: Callable[[DaskCluster], Any]
) -> Any:
    """``run(cluster)``: on ``distributed`` itself, or on a :class:`DaskCluster` of those
    settings started for it and closed after."""
    if isinstance(distributed, DaskCluster):
        return run(distributed)
    with DaskCluster(distributed) as cluster:
        return run(cluster)


def _run(
    cluster: DaskCluster,
    detector: Detector,
    ensemble: Sequence[Detector],
    tasks: Sequence[tuple[Callable[..., ChunkResult], tuple[Any, ...], int]],
    take: Callable[[ChunkResult], None],
    total: int,
    done: int,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Send the detector (once per worker), submit ``tasks`` (function, arguments after the
    plugin's name and the chunk's index, images in the chunk) and ``take`` each result as it
    completes; ``progress(done + images of the chunks taken, total)``; stop after a chunk when
    ``should_stop()``. Cancels what is left and drops the plugin however it ends."""
    from distributed import KilledWorker, as_completed

    from napari_al.core.engine import detector_to_bytes

    client = cluster.client()
    name = f"napari-al-detector-{uuid.uuid4().hex}"
    plugin = DetectorPlugin(
        detector_to_bytes(detector),
        detector.model_version,
        [(detector_to_bytes(m), int(m.model_version)) for m in ensemble],
        cluster.settings.device,
        cluster.torch_threads(),
    )
    client.register_plugin(plugin, name=name)
    futures = [
        client.submit(fn, name, k, *args, key=f"{name}-chunk-{k}", pure=False)
        for k, (fn, args, _n) in enumerate(tasks)
    ]
    try:
        for _future, result in as_completed(futures, with_results=True):
            take(result)
            done += tasks[result.index][2]
            if progress is not None:
                progress(done, total)
            if should_stop is not None and should_stop():
                break
    except KilledWorker as exc:
        raise WorkflowError(
            f"a Dask worker died on every try at one chunk ({exc}); see the workers' logs "
            "(memory?), or lower --dask-chunk"
        ) from None
    finally:
        client.cancel(futures)
        try:
            client.unregister_worker_plugin(name)
        except Exception as exc:  # the cluster may be going away: nothing to undo then
            log.debug("unregistering %s: %s", name, exc)


def score_distributed(
    distributed: DistributedSettings | DaskCluster,
    store: ProjectStore,
    detector: Detector,
    q: QuerySettings,
    plan: _Plan,
    scored: _Scored,
    todo: Sequence[int],
    *,
    cacheable: bool,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
) -> None:
    """Score the rows ``todo`` (positions in ``scored.rows``) on Dask and fill ``scored``;
    with ``cacheable``, each chunk's scores go to the score cache in one transaction as it
    completes. ``progress(images done, images in total)`` after each chunk; ``should_stop``
    is checked after each chunk (the rest are cancelled). Settings start a
    :class:`DaskCluster` for the pass, closed after it. Raises :class:`WorkflowError` when a
    chunk killed its workers ``allowed-failures`` times, the task's own error when one
    failed."""
    rows = scored.rows
    bare = dataclasses.replace(plan, ensemble=[])  # the members travel in the plugin
    tasks = [
        (score_chunk, ([_item(store, rows[i], i) for i in part], q, bare), len(part))
        for part in chunks(todo, _chunk_size(distributed))
    ]

    def take(result: ChunkResult) -> None:
        _take(store, detector, plan, scored, result, cacheable, on_skip or _warn_skip)

    _on_cluster(
        distributed,
        lambda cluster: _run(
            cluster,
            detector,
            plan.ensemble,
            tasks,
            take,
            len(rows),
            len(rows) - len(todo),
            progress,
            should_stop,
        ),
    )


def predict_distributed(
    distributed: DistributedSettings | DaskCluster,
    store: ProjectStore,
    detector: Detector,
    rows: Sequence[ImageRow],
    batches: Sequence[Sequence[int]],
    tiles: TileSettings,
    write: Callable[[int, Predictions], None],
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_skip: OnSkip | None = None,
) -> list[int]:
    """Predict ``rows`` on Dask in ``predict_images``'s ``batches`` (positions), whole batches
    to a chunk of about ``chunk_size`` images; ``write(position, predictions)`` for each image
    as its chunk completes. Returns the ids predicted, in order. Errors as
    :func:`score_distributed`."""
    from napari_al.core.workflow.prediction import is_tiled

    groups: list[list[Sequence[int]]] = [[]]
    for batch in batches:
        if sum(map(len, groups[-1])) >= _chunk_size(distributed):
            groups.append([])
        groups[-1].append(batch)
    tasks = [
        (
            predict_chunk,
            (
                [[_item(store, rows[i], i) for i in batch] for batch in group],
                [is_tiled(rows[batch[0]], tiles) for batch in group],
                tiles,
            ),
            sum(map(len, group)),
        )
        for group in groups
        if group
    ]
    done: list[int] = []

    def take(result: ChunkResult) -> None:
        for image_id, message in result.skipped:
            (on_skip or _warn_skip)(image_id, message)
        for position, pred in zip(result.positions, result.results, strict=True):
            write(position, pred)
            done.append(position)

    _on_cluster(
        distributed,
        lambda cluster: _run(
            cluster, detector, [], tasks, take, len(rows), 0, progress, should_stop
        ),
    )
    return [int(rows[i].id) for i in sorted(done)]


def _chunk_size(distributed: DistributedSettings | DaskCluster) -> int:
    settings = distributed.settings if isinstance(distributed, DaskCluster) else distributed
    return int(settings.chunk_size)


def _item(store: ProjectStore, row: ImageRow, position: int) -> Item:
    return (position, int(row.id), str(store.abs_path(row)))


def _take(
    store: ProjectStore,
    detector: Detector,
    plan: _Plan,
    scored: _Scored,
    result: ChunkResult,
    cacheable: bool,
    on_skip: OnSkip,
) -> None:
    """One chunk's scores into ``scored`` and (``cacheable``) the score cache, in one
    transaction that keeps entries already cached."""
    for image_id, message in result.skipped:
        on_skip(image_id, message)
    entries = []
    for i, (raw, emb, extra) in zip(result.positions, result.results, strict=True):
        if scored.raws[i] is None:
            scored.computed += 1
        scored.raws[i], scored.embeddings[i] = raw, emb
        if extra is not None:
            scored.extra[i] = extra
        if cacheable:
            entries.append(
                (scored.rows[i].sha256, detector.model_version, plan.key, pack_scores(raw, emb))
            )
    if entries:
        store.put_scores_many(entries, replace=False)
