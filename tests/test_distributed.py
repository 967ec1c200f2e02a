"""Pool scoring as a Dask task graph (issue 15): a 2-worker ``LocalCluster`` scores as one
process does, a worker killed mid-run (SIGKILL) loses and duplicates nothing, and a second
run with nothing changed scores no image. The project is generated here: the BCCD sample
(labelled) plus pool images made from it by flips and rotations, a tiny model trained 1 step.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.store import ProjectStore
from napari_al.core.workflow.distributed import DaskCluster, chunks
from napari_al.core.workflow.ranking import _unpack, score_images
from napari_al.runtime import torch_threads

TINY = {"min_size": 128, "max_size": 160, "device": "cpu"}
TINY_ARGS = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]
#: Noise views are seeded per 2-image batch: equal scores need the same batches everywhere.
STRATEGY = "entropy+localization_stability"
#: The pool's 800x600 image is predicted tile by tile, the 640x480 ones whole.
TILES = workflow.TileSettings(tile_above=700, overlap=16)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The labelled BCCD sample and 13 pool images (3 transposes of 4 sample images, and one
    enlarged to 800x600, predicted tile by tile above :data:`TILE_ABOVE`), with model version 1
    trained for one step."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dask")
    pool = root / "pool"
    pool.mkdir()
    ops = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.ROTATE_180)
    for p in sorted((sample_dir / "JPEGImages").glob("*.jpg"))[:4]:
        with Image.open(p) as im:
            for k, op in enumerate(ops):
                im.transpose(op).save(pool / f"pool{k}_{p.stem}.png")
            if p.stem.endswith("7"):
                im.resize((800, 600)).save(pool / f"large_{p.stem}.png")
    proj = root / "proj"
    assert main(["init", str(proj)]) == 0
    assert main(["import", str(proj), str(sample_dir), "--format", "voc"]) == 0
    assert main(["import", str(proj), str(pool), "--format", "images"]) == 0
    with ProjectStore.open(proj) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=1))
        assert outcome.model_version == 1
    return proj


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "proj"))


@pytest.fixture(scope="module")
def cluster() -> DaskCluster:
    """Two worker processes, one torch thread each (the reference runs with one too)."""
    settings = workflow.DistributedSettings(workers=2, chunk_size=3, worker_threads=1)
    with DaskCluster(settings) as c:
        c.client()
        yield c


def _query(unit: str = "image") -> workflow.QuerySettings:
    return workflow.QuerySettings(strategy=STRATEGY, unit=unit, budget=100)


def _one_process(project: Path, unit: str = "image"):
    with ProjectStore.open(project) as store, torch_threads(1):
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        return score_images(store, detector, _query(unit), use_cache=False)[1]


@pytest.fixture(scope="module")
def reference(template: Path):
    """The single-process pass (image unit, one torch thread as each worker; writes nothing)."""
    return _one_process(template)


def _same(a, b) -> None:
    """Two scoring passes gave the same raw scores and embeddings, image by image."""
    assert [r.id for r in a.rows] == [r.id for r in b.rows]
    for ra, rb, ea, eb in zip(a.raws, b.raws, a.embeddings, b.embeddings, strict=True):
        assert ra is not None and rb is not None
        np.testing.assert_array_equal(ra.labels, rb.labels)
        np.testing.assert_array_equal(ra.scores, rb.scores)
        assert ra.box.keys() == rb.box.keys() and ra.image == rb.image
        for k in ra.box:
            np.testing.assert_array_equal(ra.box[k], rb.box[k])
        np.testing.assert_array_equal(ea, eb)


def _cached(project: Path) -> list[tuple[str, int, bytes]]:
    with sqlite3.connect(f"file:{project / 'napari_al.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT image_sha256, model_version, payload FROM score_cache WHERE scorer LIKE "
            "'strategy:%'"
        ).fetchall()


def test_chunks_are_whole_scoring_batches() -> None:
    assert chunks(list(range(7)), 3) == [[0, 1, 2, 3], [4, 5, 6]]
    assert chunks([5, 9], 32) == [[5, 9]]


def test_a_chunk_written_again_writes_nothing(project: Path) -> None:
    """The writer keeps an entry already cached (``replace=False``) and counts what it wrote."""
    with ProjectStore.open(project) as store:
        entries = [("a" * 64, 1, "s", b"first"), ("b" * 64, 1, "s", b"first")]
        assert store.put_scores_many(entries) == 2
        again = [("a" * 64, 1, "s", b"second"), ("c" * 64, 1, "s", b"second")]
        assert store.put_scores_many(again, replace=False) == 1
        assert store.get_scores("a" * 64, 1, "s") == b"first"
        assert store.put_scores_many(again) == 2
        assert store.get_scores("a" * 64, 1, "s") == b"second"


def test_a_detector_travels_as_checkpoint_bytes(project: Path) -> None:
    """What a worker gets (``detector_to_bytes``) rebuilds the same detector."""
    import torch

    from napari_al.core.engine import detector_from_bytes, detector_to_bytes
    from napari_al.core.workflow.examples import load_rgb

    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        image = load_rgb(store.abs_path(store.images()[0]))
    copy = detector_from_bytes(detector_to_bytes(detector), device="cpu")
    assert copy.config == detector.config
    a, b = detector.predict([image])[0], copy.predict([image])[0]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    other = io.BytesIO()
    torch.save({"format": "other"}, other)
    with pytest.raises(ValueError, match="detector bytes: not a napari-al checkpoint"):
        detector_from_bytes(other.getvalue())


def test_settings_refuse_a_scheduler_with_local_workers() -> None:
    with pytest.raises(workflow.SettingsError, match="not both"):
        workflow.DistributedSettings(scheduler="tcp://h:8786", workers=2)
    assert not workflow.DistributedSettings().active


# the box unit scores through the same chunks and cache (14 s more): with -m slow
@pytest.mark.parametrize("unit", ["image", pytest.param("box", marks=pytest.mark.slow)])
def test_two_workers_score_as_one_process(
    project: Path, cluster: DaskCluster, reference, unit
) -> None:
    if unit != "image":
        reference = _one_process(project, unit)
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        seen: list[tuple[int, int]] = []
        scored = score_images(
            store,
            detector,
            _query(unit),
            use_cache=False,
            distributed=cluster,
            progress=lambda d, t: seen.append((d, t)),
        )[1]
    _same(scored, reference)
    assert scored.computed == len(scored.rows) == 13
    assert seen[-1] == (13, 13) and len(seen) == 4  # chunks of 4, 4, 4 and 1 image
    if unit == "box":  # the views come back too: the box ranking is the same
        assert set(scored.extra) == set(reference.extra)
        for i, (views, missed) in scored.extra.items():
            np.testing.assert_array_equal(views.base.boxes, reference.extra[i][0].base.boxes)
            other = reference.extra[i][1]
            np.testing.assert_array_equal(
                getattr(missed, "boxes", missed), getattr(other, "boxes", other)
            )


def test_a_killed_worker_loses_and_duplicates_nothing(
    project: Path, cluster: DaskCluster, reference, monkeypatch
) -> None:
    """SIGKILL to a worker busy with a chunk, right after the first chunk is written: its
    chunk is scored again by another worker; the cache holds each image once, with the
    single-process scores; a second run scores no image (and starts no cluster)."""
    from napari_al.core.workflow import distributed

    client = cluster.client()
    killed: list[tuple[int, str, list[str]]] = []
    taken: dict[int, str] = {}  # chunk -> the worker whose result was written
    real_take = distributed._take

    def take(store, detector, plan, scored, result, *rest):
        assert result.index not in taken, "a chunk reached the writer twice"
        taken[result.index] = result.worker
        return real_take(store, detector, plan, scored, result, *rest)

    def kill_a_busy_worker(done: int, total: int) -> None:
        if killed:
            return
        busy = [(w, list(keys)) for w, keys in client.processing().items() if keys]
        assert busy, "the first chunk finished the run: give the test more chunks"
        address, keys = busy[0]
        pid = client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, address, [str(k) for k in keys]))

    monkeypatch.setattr(distributed, "_take", take)

    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        scored = score_images(
            store, detector, _query(), distributed=cluster, progress=kill_a_busy_worker
        )[1]
        rows = store.images(split="pool")
    ((pid, address, keys),) = killed
    assert pid not in client.run(os.getpid).values()
    lost = {int(k.rsplit("-", 1)[1]) for k in keys}
    assert sorted(taken) == [0, 1, 2, 3] and lost
    assert all(taken[k] != address for k in lost), "the killed worker's chunk was scored again"
    _same(scored, reference)
    cached = _cached(project)
    assert sorted(sha for sha, _v, _p in cached) == sorted(r.sha256 for r in rows)
    _same_as_cached(project, reference)

    started: list[str] = []
    idle = DaskCluster(workflow.DistributedSettings(workers=2), on_start=started.append)
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
        again = score_images(store, detector, _query(), distributed=idle)[1]
    assert again.computed == 0 and not started
    _same(again, reference)
    assert len(_cached(project)) == len(cached)


def _same_as_cached(project: Path, reference) -> None:
    """The score cache holds model version 1's scores of every pool image once, equal to the
    single-process pass's."""
    cached = _cached(project)
    assert len(cached) == len({sha for sha, _v, _p in cached}) == len(reference.rows)
    assert {v for _s, v, _p in cached} == {1}
    by_sha = {sha: _unpack(p) for sha, _v, p in cached}
    for row, raw, emb in zip(reference.rows, reference.raws, reference.embeddings, strict=True):
        np.testing.assert_array_equal(by_sha[row.sha256][0].scores, raw.scores)
        assert by_sha[row.sha256][0].image == raw.image
        np.testing.assert_array_equal(by_sha[row.sha256][1], emb)


def test_rank_cli_on_a_running_scheduler(
    project: Path, cluster: DaskCluster, reference, capsys
) -> None:
    """``napari-al rank --scheduler ADDRESS`` scores on that cluster, as one process does."""
    address = cluster.client().scheduler.address
    argv = ["rank", str(project), *TINY_ARGS, "--strategy", STRATEGY, "--budget", "50", "--json"]
    capsys.readouterr()
    assert main([*argv, "--scheduler", address, "--dask-chunk", "4", "--dask-threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert f"running on the Dask cluster at {address}: 2 workers, 2 tasks at a time" in err
    assert sorted(r["image_id"] for r in json.loads(out)) == sorted(r.id for r in reference.rows)
    _same_as_cached(project, reference)


def _predictions(project: Path) -> dict[int, list[tuple]]:
    with ProjectStore.open(project) as store:
        return {
            r.id: sorted((b.xyxy, b.class_id, b.score) for b in store.boxes(r.id, ("predicted",)))
            for r in store.images(split="pool")
        }


def test_two_workers_predict_as_one_process(
    project: Path, template: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    """``predict_images`` on Dask stores the boxes one process stores, tile by tile for the
    large image; an unreadable image is reported and left out as in one process."""
    alone = Path(shutil.copytree(template, tmp_path / "alone"))
    with ProjectStore.open(project) as store:  # both copies' pool files live beside the template
        gone = store.images(split="pool")[1]
        path = Path(store.abs_path(gone))
    path.rename(path.with_suffix(".gone"))  # the file goes missing for the test
    try:
        results = []
        for proj, where in ((alone, None), (project, cluster)):
            skipped: list[int] = []
            with ProjectStore.open(proj) as store, torch_threads(1):
                detector = workflow.load_model(store, workflow.ModelSettings(**TINY))
                ids = [r.id for r in store.images(split="pool")]
                assert any(max(r.width, r.height) > TILES.tile_above for r in store.images())
                done = workflow.predict_images(
                    store,
                    detector,
                    ids,
                    tiles=TILES,
                    distributed=where,
                    on_skip=lambda i, _m, seen=skipped: seen.append(i),
                )
            assert done == [i for i in ids if i != gone.id] and skipped == [gone.id]
            results.append(_predictions(proj))
        assert results[0] == results[1] and sum(map(len, results[0].values())) > 0
    finally:
        path.with_suffix(".gone").rename(path)


def test_predict_cli_on_a_running_scheduler(project: Path, cluster: DaskCluster, capsys):
    address = cluster.client().scheduler.address
    capsys.readouterr()
    code = main(["predict", str(project), *TINY_ARGS, "--split", "pool", "--scheduler", address])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "running on the Dask cluster" in err and "predicted 13 images" in out
    assert all(_predictions(project).values())


def test_dask_flags_come_from_the_settings() -> None:
    import argparse

    from napari_al.cli.cluster import dask_arguments

    parser = argparse.ArgumentParser()
    dask_arguments(parser)
    assert workflow.from_args(workflow.DistributedSettings, parser.parse_args([])) == (
        workflow.DistributedSettings()
    )
    args = parser.parse_args(["--dask-workers", "3", "--dask-chunk", "8", "--dask-threads", "2"])
    assert workflow.from_args(workflow.DistributedSettings, args) == (
        workflow.DistributedSettings(workers=3, chunk_size=8, worker_threads=2)
    )


@contextlib.contextmanager
def _peer(kind: str) -> Iterator[str]:
    """The address of something that is not a Dask scheduler: a closed port, a TCP server
    that answers every connection with an HTTP error page (``garbage``), or one that accepts
    and never says a word (``silent``)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    if kind == "closed":
        server.close()
        yield address
        return
    server.listen(8)
    server.settimeout(0.2)
    stop, held = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if kind == "garbage":
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield address
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("kind", "command"),
    [("closed", "rank"), ("garbage", "rank"), ("silent", "rank"), ("garbage", "predict")],
)
def test_a_peer_that_is_no_scheduler_is_one_line(
    project: Path, capsys, kind: str, command: str
) -> None:
    """Not a Dask scheduler at --scheduler (nothing there, an HTTP server, a silent port):
    one line naming the address and the fix within the wait, exit 1, the lock released.
    Before: a closed port took 30 s, an HTTP server gave a traceback (numpy could not
    allocate 3 EiB for a frame length read from its text), a silent port hung for ever."""
    from napari_al.core.store import project_lock

    with _peer(kind) as address:
        start = time.monotonic()
        code = main(
            [command, str(project), *TINY_ARGS, "--scheduler", address, "--scheduler-timeout", "1"]
        )
        took = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"napari-al: error: cannot reach the Dask scheduler at {address} (")
    assert "'dask scheduler'" in line and "--dask-workers N" in line
    assert took < 8, took
    with project_lock(project, "checking"):  # released: taken again at once
        pass


def test_the_scheduler_wait_is_a_setting() -> None:
    with pytest.raises(workflow.SettingsError, match="connect_timeout must be at least"):
        workflow.DistributedSettings(scheduler="tcp://h:8786", connect_timeout=0)
    assert 10 <= workflow.DistributedSettings().connect_timeout <= 20


def test_rank_cli_refuses_both_kinds_of_cluster(project: Path, capsys) -> None:
    code = main(["rank", str(project), "--scheduler", "tcp://h:1", "--dask-workers", "2"])
    assert code == 1
    assert "not both" in capsys.readouterr().err


CTRL_C_CHILD = """
import signal, sys, time

def main():
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from napari_al.core import workflow
    from napari_al.core.workflow.distributed import DaskCluster

    try:
        with DaskCluster(workflow.DistributedSettings(workers=2)) as cluster:
            cluster.client()
            print("ready", flush=True)
            time.sleep(120)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
        sys.exit(130)

if __name__ == "__main__":
    main()
"""


def test_ctrl_c_reaches_the_local_workers_silently(tmp_path: Path) -> None:
    """Ctrl+C in a terminal signals the whole process group: each local Dask worker printed
    its own KeyboardInterrupt traceback (60 lines for 2 workers) while the command stopped."""
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(CTRL_C_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip() == "stopped", err


def test_a_cluster_no_image_needed_is_named_in_a_note(project: Path, capsys) -> None:
    """Every score cached: rank needs no worker, so a ``--scheduler`` nobody answers at (or
    ``--dask-workers``) was silently unused; a mistyped address went unnoticed. Now a note
    says Dask was not used, and the ranking is the one of the cache."""
    argv = ["rank", str(project), *TINY_ARGS, "--strategy", STRATEGY, "--budget", "5", "--json"]
    assert main(argv) == 0  # fills the score cache in this process
    first = capsys.readouterr().out
    address = "tcp://127.0.0.1:1"  # nothing listens there
    assert main([*argv, "--scheduler", address, "--scheduler-timeout", "1"]) == 0
    out, err = capsys.readouterr()
    assert out == first
    assert (
        "note: Dask was not used: no image needed the model (scores cached, or nothing to "
        f"predict); the scheduler at {address} was not contacted"
    ) in err
    assert main([*argv, "--dask-workers", "2"]) == 0
    assert "the 2 local workers were not started" in capsys.readouterr().err
    assert main([*argv, "--dask-workers", "1"]) == 0  # it said "the 1 local workers were"
    assert "the 1 local worker was not started" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--dask-chunk", "4"], "--dask-chunk applies to Dask scoring only"),
        (["--dask-threads", "1"], "--dask-threads applies to Dask scoring only"),
        (["--scheduler-timeout", "3"], "--scheduler-timeout applies to Dask scoring only"),
        (["--dask-workers", "0", "--dask-chunk", "4"], "--dask-chunk applies to Dask scoring"),
        (["--dask-workers", "2", "--scheduler-timeout", "3"], "applies to --scheduler only"),
    ],
)
@pytest.mark.parametrize("command", ["rank", "predict"])
def test_a_dask_flag_no_dask_run_uses_is_one_line(
    project: Path, capsys, flags: list[str], needle: str, command: str
) -> None:
    """Dask flags given where no Dask runs were accepted and ignored; now refused in one
    line, before a model is loaded or a worker started."""
    code = main([command, str(project), *TINY_ARGS, *flags])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert needle in err.strip().splitlines()[-1]
