"""A project folder napari-al cannot write: the one-line error, and reading its store anyway.

A project on a read-only file system (a read-only mount, a snapshot, a DVD) or in a folder
the user may not write holds a healthy store that SQLite cannot open the usual way: the store
uses a write-ahead log (WAL), whose ``napari_al.sqlite-wal`` and ``-shm`` files SQLite makes
beside the store at open, so the open fails with "unable to open database file", which is no
sign of damage. :func:`folder_writable` says which case it is before SQLite is asked, so:

- a command that changes the project gets :class:`ReadOnlyProjectError`, one line naming the
  folder, why (a read-only file system or no write permission) and the fix (make it
  writable, or copy the project somewhere writable and work on the copy), before it does
  anything; the project lock (:mod:`~napari_al.core.store.lock`) says the same;
- a command that only reads (``info``, ``export``, ``evaluate``) opens the store read-only
  (:func:`connect_read_only`): SQLite's ``mode=ro`` reads the store with its write-ahead log
  where the log's files are there (a project copied while it was open); with neither there
  (a project closed cleanly: every change is in the store file) it needs ``immutable=1``,
  which reads the store file alone. A store whose log holds changes but whose ``-shm`` file
  is missing cannot be read without writing: that is :class:`ReadOnlyProjectError` too.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from pathlib import Path

from napari_al.core.store.rows import StoreError
from napari_al.core.store.schema import STORE_FILENAME


class ReadOnlyProjectError(StoreError):
    """The project folder cannot be written (one line: which folder, why, and the fix)."""


def folder_writable(project_dir: str | os.PathLike[str]) -> bool:
    """Whether napari-al may write the project in ``project_dir``: the folder (where SQLite
    makes the store's write-ahead log, and the lock file lies), and the store file when it
    exists. ``os.access`` answers for the file system too: a read-only mount is not writable,
    even to root."""
    folder = Path(os.path.abspath(project_dir))
    if not os.access(folder, os.W_OK):
        return False
    store = folder / STORE_FILENAME
    return not store.exists() or os.access(store, os.W_OK)


def why_not_writable(project_dir: str | os.PathLike[str]) -> str:
    """Why ``project_dir`` cannot be written, in a few words: ``a read-only file system`` or
    ``no write permission``."""
    try:
        read_only = bool(os.statvfs(os.path.abspath(project_dir)).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows), or the folder went away
        read_only = False
    return "a read-only file system" if read_only else "no write permission"


def not_writable_error(
    project_dir: str | os.PathLike[str], doing: str | None = None
) -> ReadOnlyProjectError:
    """The error for ``doing`` (``training``, ...; default: the command) on a project whose
    folder cannot be written: which folder, why, and the fix."""
    folder = Path(os.path.abspath(project_dir))
    return ReadOnlyProjectError(
        f"{folder}: the project folder is not writable ({why_not_writable(folder)}), and "
        f"{doing or 'this command'} needs to write to the project; make the folder writable, "
        f"or copy the project to a writable folder (cp -r {shlex.quote(str(folder))} COPY) "
        "and work on the copy (info, export and evaluate read it as it is)"
    )


def cannot_create_error(project_dir: str | os.PathLike[str]) -> ReadOnlyProjectError:
    """The error for making a project in a folder that cannot be written (where its store
    would go), with the way to label the folder's images anyway: a project elsewhere that
    imports them in place."""
    folder = Path(os.path.abspath(project_dir))
    where = folder if folder.exists() else folder.parent
    return ReadOnlyProjectError(
        f"cannot make a project in {folder}: {where} is not writable "
        f"({why_not_writable(where)}); make it writable, or make the project in a writable "
        "folder and import these images in place (napari-al init NEW; napari-al import NEW "
        f"--format images {shlex.quote(str(folder))})"
    )


def cannot_open(exc: sqlite3.Error) -> bool:
    """Whether SQLite's error is a file it could not open or may not write (``SQLITE_CANTOPEN``,
    ``SQLITE_READONLY``): permissions, a read-only file system, a missing ``-shm`` file; never
    damage in the file."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
        return True
    text = str(exc).lower()
    return "unable to open database file" in text or "readonly database" in text


def connect_read_only(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A connection that reads the store file ``path`` and never writes it, nor makes a file
    beside it (see the module docstring). Raises :class:`ReadOnlyProjectError` when its
    write-ahead log holds changes that SQLite can read only in a writable folder."""
    uri = Path(path).absolute().as_uri()
    options = {"timeout": timeout_s, "isolation_level": None, "check_same_thread": False}
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the log, if any
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if not cannot_open(exc):
            raise
    wal = path.with_name(path.name + "-wal")
    try:
        logged = wal.stat().st_size > 0
    except FileNotFoundError:
        logged = False
    if logged:
        raise ReadOnlyProjectError(
            f"{path.parent}: the project folder is not writable "
            f"({why_not_writable(path.parent)}), and its store's write-ahead log, {wal.name}, "
            f"holds changes not yet in {path.name}, which SQLite reads only in a writable "
            "folder (its -shm file is missing); make the folder writable, or copy the project "
            f"to a writable folder (cp -r {shlex.quote(str(path.parent))} COPY) and work on the "
            "copy"
        )
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, **options)
