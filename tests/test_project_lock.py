"""The project lock: one long-running writer (train, predict, rank, a round) per project.

Two ``napari-al train`` runs on one project used to both save a model version. Now the second
fails at once with one line naming the holder, whichever front end it comes from (the CLI, a
notebook ``Session``, the widget's round), and a holder killed with SIGKILL blocks nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.store import (
    HOLDER_FILENAME,
    LOCK_FILENAME,
    ProjectBusyError,
    ProjectStore,
    project_lock,
)

REPO = Path(__file__).resolve().parents[1]

#: A child process that takes the project lock, says so, and waits to be killed.
CHILD = """
import sys, time
from napari_al.core.store import project_lock
with project_lock(sys.argv[1], "training"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project with one class (enough for ``train`` to get as far as the lock)."""
    proj = tmp_path / "proj"
    with ProjectStore.create(proj) as store:
        store.add_class("cell")
    return proj


@pytest.fixture
def held_by_child(project: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the project's lock (killed at the end if still alive)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "locked", proc.stderr.read() if proc.stderr else line
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _in_other_thread(project: Path, ready: threading.Event, done: threading.Event) -> None:
    with project_lock(project, "ranking"):
        ready.set()
        done.wait(30)


def test_second_holder_in_another_thread_fails_at_once(project: Path) -> None:
    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=_in_other_thread, args=(project, ready, done))
    thread.start()
    try:
        assert ready.wait(30)
        t0 = time.monotonic()
        with pytest.raises(ProjectBusyError) as err, project_lock(project, "training"):
            pass
        assert time.monotonic() - t0 < 2
        message = str(err.value)
        assert "\n" not in message
        assert f"(pid {os.getpid()}) has been ranking since" in message
        assert "then start training again" in message
        assert (project / HOLDER_FILENAME).is_file()
    finally:
        done.set()
        thread.join()
    assert not (project / HOLDER_FILENAME).exists()  # removed on release
    with project_lock(project, "training"):  # free again
        pass


def test_lock_is_reentrant_within_a_thread(project: Path) -> None:
    """A round holds the lock and calls train_model, which takes it again."""
    with project_lock(project, "a round"), project_lock(project, "training"):
        assert (project / LOCK_FILENAME).is_file()
    with project_lock(project, "training"):
        pass


def test_cli_train_fails_at_once_while_another_process_trains(
    project: Path, held_by_child: subprocess.Popen, capsys
) -> None:
    t0 = time.monotonic()
    code = main(["train", str(project), "--steps", "1", "--device", "cpu"])
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "project busy" in err and f"(pid {held_by_child.pid})" in err
    assert "has been training since" in err and f"kill {held_by_child.pid}" in err
    assert "detector:" not in err  # refused before a model was loaded
    assert elapsed < 5
    with ProjectStore.open(project) as store:
        assert store.latest_model_version() is None
    for command in ("predict", "rank"):
        assert main([command, str(project), "--device", "cpu"]) == 1
        assert "project busy" in capsys.readouterr().err


def test_session_and_round_are_refused_while_another_process_holds_it(
    project: Path, held_by_child: subprocess.Popen
) -> None:
    """The notebook Session, the widget's background round and the workflow's steps take the
    same lock."""
    from napari_al.gui.session import Session
    from napari_al.gui.tasks import retrain_job, run_job

    with Session.open(project) as session, pytest.raises(ProjectBusyError, match="busy"):
        session.train(steps=1)
    with ProjectStore.open(project) as store:
        round_ = workflow.run_round(store, None, train=True)
        with pytest.raises(ProjectBusyError, match=f"pid {held_by_child.pid}"):
            next(round_)
        with pytest.raises(ProjectBusyError):
            workflow.train_model(store, None)  # type: ignore[arg-type]
        with pytest.raises(ProjectBusyError):
            workflow.predict_images(store, None, [])  # type: ignore[arg-type]
    job = run_job(retrain_job(project, None, workflow.RoundSettings(), threading.Event()))
    assert job.error is not None and "project busy" in job.error
    assert f"kill {held_by_child.pid}" in job.error


def test_a_holder_killed_with_sigkill_does_not_block(
    project: Path, held_by_child: subprocess.Popen
) -> None:
    with pytest.raises(ProjectBusyError), project_lock(project, "training"):
        pass
    held_by_child.send_signal(signal.SIGKILL)
    held_by_child.wait(timeout=30)
    assert held_by_child.returncode == -signal.SIGKILL
    assert (project / HOLDER_FILENAME).is_file()  # left behind by the killed run
    with project_lock(project, "training"):
        assert f'"pid": {os.getpid()}' in (project / HOLDER_FILENAME).read_text()
    assert not (project / HOLDER_FILENAME).exists()
