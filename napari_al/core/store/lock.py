"""The project lock: one long-running writer (training, prediction, ranking) per project.

Two ``napari-al train`` runs on one project would both train on the same labels and both
save a model version; a prediction running beside another would replace the boxes the other
just stored. :func:`project_lock` lets one run at a time hold a project: the workflow's
:func:`~napari_al.core.workflow.train_model`, :func:`~napari_al.core.workflow.predict_images`,
:func:`~napari_al.core.workflow.rank_pool` and :func:`~napari_al.core.workflow.run_round`
take it, whoever calls them (the CLI, the widget's background jobs, a notebook ``Session``,
the simulator); the CLI takes it before it loads a model, so a second run fails at once.
Annotation (the viewer's key presses) does not take it: the store's transactions keep those
consistent, and a person keeps labelling while a model trains.

The lock is an OS-level file lock (``flock`` on POSIX, ``LockFileEx`` on Windows) on
``<project>/napari_al.lock``, taken with the `filelock <https://py-filelock.readthedocs.io>`_
library. The kernel drops it when the holding process ends, however it ends (``kill -9``
included), so a crashed run never blocks the project. The lock file stays in the folder
(empty; removing it would let two runs lock two different files). While a run holds the lock,
``napari_al.lock.holder`` (JSON: ``pid``, ``what``, ``command``, ``since`` in Unix seconds)
says who holds it; it is removed on release, and overwritten by the next holder when a killed
run left it behind.

Within one process the lock is re-entrant per thread: a round that holds it calls
``train_model``, which takes it again. Another thread (the widget's job while a notebook
trains) does not share it: it gets :class:`ProjectBusyError`, as another process does.

A holder may lend its lock to the processes it starts and waits for (the ranks of
``napari-al train --nproc N``): :func:`lend_env` gives the environment that names the holder;
a child whose environment names the process that holds the project's lock (per the holder
file) works under it without taking it. The lender must outlive the borrowers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from napari_al.core.store.access import folder_writable, not_writable_error
from napari_al.core.store.rows import StoreError

LOCK_FILENAME = "napari_al.lock"
HOLDER_FILENAME = "napari_al.lock.holder"
#: ``PID:FOLDER``: the process holding FOLDER's lock lends it to the processes it starts.
LEND_ENV = "NAPARI_AL_LOCK_LENT_BY"

_F = TypeVar("_F", bound=Callable[..., Any])
_held = threading.local()  # .locks: {lock path: [filelock.FileLock, depth]} of this thread


class ProjectBusyError(StoreError):
    """Another run holds the project (one line: which, since when, what to do)."""


def _thread_locks() -> dict[str, list[Any]]:
    if not hasattr(_held, "locks"):
        _held.locks = {}
    return _held.locks


def _command_line() -> str:
    """This process's command line, short (``napari-al train proj --steps 5``)."""
    first = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if first in ("", "-c", "-m"):
        first = f"python {first}".strip()
    text = " ".join([first, *sys.argv[1:]])
    return text if len(text) <= 100 else text[:97] + "..."


def holder(project_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the project's lock, from ``napari_al.lock.holder`` (``pid``, ``what``,
    ``command``, ``since``), or None when the file is missing, unreadable, or names a process
    that no longer runs (a run killed before it could remove it)."""
    try:
        info = json.loads((Path(project_dir) / HOLDER_FILENAME).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return info


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (POSIX; on Windows, where ``os.kill`` would end it, the
    holder file is trusted)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def busy_message(project_dir: str | os.PathLike[str], what: str) -> str:
    """The one-line error for a run (``what``, e.g. ``training``) that found the project held."""
    info = holder(project_dir)
    if info is None:
        who = f"another napari-al process holds its lock ({LOCK_FILENAME})"
        todo = "wait for it to end"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since", 0))))
        who = (
            f"'{info.get('command', '?')}' (pid {info['pid']}) has been "
            f"{info.get('what', 'running')} since {since}"
        )
        todo = f"wait for it to end or stop it (kill {info['pid']})"
    return f"{project_dir}: project busy: {who}; {todo}, then start {what} again"


@contextlib.contextmanager
def project_lock(project_dir: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold the project's lock for the ``with`` block; ``what`` (``training``, ``predicting``,
    ``ranking``, ...) is what a second run is told this one is doing.

    Raises :class:`ProjectBusyError` at once (no waiting) when another process, or another
    thread of this one, holds it;
    :class:`~napari_al.core.store.access.ReadOnlyProjectError` (one line: the folder, why,
    the fix) when the project folder cannot be written (a read-only file system, no write
    permission), where the lock file cannot be made. Re-entrant within a thread.
    """
    from filelock import FileLock, Timeout

    folder = os.path.realpath(project_dir)
    path = os.path.join(folder, LOCK_FILENAME)
    locks = _thread_locks()
    entry = locks.get(path)
    if entry is None and _lent_to_us(folder):  # a child of the holder (a torchrun rank)
        entry = locks[path] = [None, 0]
        _exit_with_lender(int(os.environ[LEND_ENV].partition(":")[0]))
    if entry is not None:  # this thread holds it already (a round calling train_model)
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
        return
    if not folder_writable(folder):  # say so before trying: the lock file cannot be made
        raise not_writable_error(project_dir, what)
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise ProjectBusyError(busy_message(project_dir, what)) from None
    except OSError:
        if folder_writable(folder):
            raise
        raise not_writable_error(project_dir, what) from None
    try:
        _write_holder(folder, what)
        locks[path] = [lock, 1]
        yield
    finally:
        locks.pop(path, None)
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, HOLDER_FILENAME))
        lock.release()


def lend_env(project_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The environment variable (:data:`LEND_ENV`) by which this process, holding the project's
    lock, lets the child processes it starts and waits for work under it."""
    return {LEND_ENV: f"{os.getpid()}:{os.path.realpath(project_dir)}"}


#: Seconds between a borrower's checks that the process that lent it the lock still runs.
LENDER_POLL_S = 1.0
_watching: set[int] = set()


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie counts as exited; psutil)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _exit_with_lender(pid: int) -> None:
    """A process working under a lent lock ends at once when the lender ends (``kill``,
    ``kill -9`` of ``napari-al train --nproc N``): the lock is free then, and a rank that went on
    would write the store beside the next holder. A daemon thread polls every
    :data:`LENDER_POLL_S`; the store's transactions make an abrupt exit safe."""
    if pid in _watching:
        return
    _watching.add(pid)

    def watch() -> None:
        while _running(pid):
            time.sleep(LENDER_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="napari-al-lender-watch", daemon=True).start()


def _lent_to_us(folder: str) -> bool:
    """Whether this process's environment says the process holding ``folder``'s lock (as its
    holder file names it) lent the lock to it."""
    pid, _, lent = os.environ.get(LEND_ENV, "").partition(":")
    if lent != folder or not pid.isdigit():
        return False
    info = holder(folder)
    return info is not None and int(info["pid"]) == int(pid) and int(pid) != os.getpid()


def _write_holder(folder: str, what: str) -> None:
    """Write ``napari_al.lock.holder`` atomically (a reader never sees half of it)."""
    info = {"pid": os.getpid(), "what": what, "command": _command_line(), "since": time.time()}
    tmp = os.path.join(folder, f"{HOLDER_FILENAME}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, os.path.join(folder, HOLDER_FILENAME))


def holds_project_lock(what: str) -> Callable[[_F], _F]:
    """Decorate a function whose first argument is a :class:`ProjectStore` so that it runs
    holding that project's lock (:func:`project_lock`, ``what`` as there)."""

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(store: Any, *args: Any, **kwargs: Any) -> Any:
            with project_lock(store.project_dir, what):
                return fn(store, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
