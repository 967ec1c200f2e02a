"""The store's connection: opening, creating, closing, transactions and stored paths.

:class:`StoreBase` holds one ``sqlite3`` connection (autocommit mode: the store issues
``BEGIN``/``COMMIT`` itself) and the lock that makes each transaction exclusive to one thread.
The mixins of :mod:`napari_al.core.store` build every public method on :meth:`StoreBase._write`
and :meth:`StoreBase._read`.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from napari_al.core.store.access import (
    ReadOnlyProjectError,
    cannot_create_error,
    cannot_open,
    connect_read_only,
    folder_writable,
    not_writable_error,
)
from napari_al.core.store.check import check_pages
from napari_al.core.store.rows import ImageRow, ModelVersionRow, StoreError
from napari_al.core.store.schema import (
    BUSY_TIMEOUT_S,
    IDLE_CUTOFF_S,
    SCHEMA_VERSION,
    STORE_FILENAME,
    check_schema,
    migrate,
)

_S = TypeVar("_S", bound="StoreBase")


def store_folder_error(project_dir: str | os.PathLike[str]) -> str:
    """The one line for a ``project_dir`` whose store path, ``napari_al.sqlite``, is a folder:
    neither a project (no store file) nor a folder a store can be made in."""
    path = Path(project_dir) / STORE_FILENAME
    return (
        f"{path} is a folder, not napari-al's store file, so {Path(project_dir)} is neither a "
        f"project nor can one be made there; rename or remove that folder (napari-al keeps a "
        "project's store in a file of that name), then run the command again"
    )


def is_empty_store(project_dir: str | os.PathLike[str]) -> bool:
    """Whether ``project_dir``'s store file is empty: 0 bytes, and no write-ahead log holding
    anything. :meth:`StoreBase.create` makes the file first (``O_EXCL``), then the schema: a
    ``napari-al init`` or first open killed in between leaves such a file."""
    path = Path(project_dir) / STORE_FILENAME
    try:
        if not path.is_file() or path.stat().st_size != 0:
            return False
        wal = path.with_name(path.name + "-wal")
        return not wal.exists() or wal.stat().st_size == 0
    except OSError:  # unreadable: let the open say what it finds
        return False


def empty_store_error(project_dir: str | os.PathLike[str]) -> str:
    """The one line for a ``project_dir`` whose store file is empty (:func:`is_empty_store`),
    met by a command that does not make projects: what it is, and that ``napari-al init``
    finishes the project (nothing was written)."""
    folder = Path(project_dir)
    return (
        f"{folder / STORE_FILENAME} is empty (0 bytes): the store of a napari-al init (or first "
        "open) that was interrupted before it wrote anything, left as it is; run 'napari-al "
        f"init {shlex.quote(str(folder))}' again: it makes the project and imports the folder's "
        "images"
    )


class StoreBase:
    """Connection, transactions and paths of a project store (see :class:`ProjectStore`)."""

    def __init__(
        self,
        project_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] | None = None,
        idle_cutoff_s: float = IDLE_CUTOFF_S,
        timeout_s: float = BUSY_TIMEOUT_S,
        read_only: bool | None = False,
    ) -> None:
        """Connect to ``project_dir``'s store file, creating and migrating it as needed.

        Use :meth:`create` / :meth:`open`, which check first whether the file should exist.
        ``clock`` (Unix seconds) is for tests of the cost model. Every page of every table
        and index is read once (:func:`~napari_al.core.store.check.check_pages`), so a
        damaged file is refused here, with :class:`StoreError` (one line naming the file and
        the way back), whatever its damaged page holds.

        ``read_only``: False (default) needs a project folder napari-al may write, else
        :class:`~napari_al.core.store.access.ReadOnlyProjectError` (one line: the folder, why,
        the fix); True opens the store read-only (a write raises that error); None opens it
        read-only only when the folder cannot be written (a command that only reads).
        """
        self.project_dir = Path(os.path.abspath(project_dir))
        self.path = self.project_dir / STORE_FILENAME
        self.idle_cutoff_s = float(idle_cutoff_s)
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._depth = 0
        self._commits = 0
        self._conn: sqlite3.Connection | None = None
        writable = folder_writable(self.project_dir)
        if read_only is False and not writable:
            raise not_writable_error(self.project_dir)
        #: Whether this store only reads (:meth:`_write` refuses, with the folder's error).
        self.read_only = bool(read_only) or not writable
        try:
            if self.read_only:
                conn = connect_read_only(self.path, timeout_s)
            else:
                conn = sqlite3.connect(
                    str(self.path),
                    timeout=timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
        except sqlite3.DatabaseError as exc:
            raise self._open_error(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            if self.read_only:
                self._check_schema_read_only(conn)
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(
                        f"{self.path}: cannot use WAL journal mode (got {mode!r}); "
                        "is the project on a network file system?"
                    )
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.read_only:
                self._migrate(conn)
            check_pages(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._open_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _open_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        """The one line for SQLite's ``exc`` at open: a folder that cannot be written (its
        fix), a file SQLite could not open (what to check: never the advice for a damaged
        store, which a healthy one would be restored over), or a damaged store (the way
        back)."""
        if cannot_open(exc):
            if not folder_writable(self.project_dir):
                return not_writable_error(self.project_dir)
            return StoreError(
                f"{self.path}: SQLite cannot open the store ({exc}); check that you may read "
                f"and write {self.project_dir} and its {STORE_FILENAME}* files (the store's "
                "write-ahead log files -wal and -shm must be files SQLite can make and open), "
                "and that the disk has room"
            )
        return StoreError(
            f"{self.path}: not a usable napari-al store ({exc}); restore it from a backup "
            "or re-import an export into a new project (docs/store.md, 'Backups')"
        )

    def _check_schema_read_only(self, conn: sqlite3.Connection) -> None:
        """Refuse a store a read-only open cannot use as it is: a foreign or newer file
        (:func:`~napari_al.core.store.schema.check_schema`), or one of an older schema, which
        only a migration (a write) brings up to date."""
        version = check_schema(conn)
        if version < SCHEMA_VERSION:
            raise ReadOnlyProjectError(
                f"{not_writable_error(self.project_dir)} (its store, of schema version "
                f"{version}, must be upgraded to {SCHEMA_VERSION} first, which writes to it)"
            )

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def create(cls: type[_S], project_dir: str | os.PathLike[str], **kwargs: Any) -> _S:
        """Create a new project store in ``project_dir`` (made if missing); fail if one exists."""
        project_dir = Path(os.path.abspath(project_dir))
        try:
            project_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not _refused_write(exc):
                raise
            raise cannot_create_error(project_dir) from None
        path = project_dir / STORE_FILENAME
        if path.is_dir():
            raise StoreError(store_folder_error(project_dir))
        try:  # O_EXCL: two concurrent creates cannot both succeed
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise StoreError(f"{project_dir}: a napari-al project store already exists") from None
        except OSError as exc:
            if not _refused_write(exc):
                raise
            raise cannot_create_error(project_dir) from None
        try:
            return cls(project_dir, **kwargs)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def open(
        cls: type[_S], project_dir: str | os.PathLike[str], create: bool = False, **kwargs: Any
    ) -> _S:
        """Open the store in ``project_dir``; with ``create`` make it when missing, or when
        its file is empty (:func:`is_empty_store`: an interrupted first open or init), which
        without ``create`` is a :class:`StoreError` (:func:`empty_store_error`), the file left
        as it is.

        Cheap: a few ms on a small project, about 0.25 s on a 390 MB store of a million boxes
        (the damage check reads every table and index page). Each thread may open its own
        store; a shared one is also safe.
        """
        path = Path(os.path.abspath(project_dir)) / STORE_FILENAME
        if path.is_dir():
            raise StoreError(store_folder_error(project_dir))
        if not create and is_empty_store(project_dir):  # nothing written: say so, write nothing
            raise StoreError(empty_store_error(project_dir))
        if not path.is_file():
            if not create:
                raise StoreError(
                    f"{project_dir}: no napari-al project store ({STORE_FILENAME} missing)"
                )
            folder = Path(os.path.abspath(project_dir))
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if not _refused_write(exc):
                    raise
                raise cannot_create_error(folder) from None
            if not folder_writable(folder):
                raise cannot_create_error(folder)
        return cls(project_dir, **kwargs)

    def close(self) -> None:
        """Close the connection (idempotent). Every write was already committed."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        closed = ", closed" if self.closed else ""
        return f"{type(self).__name__}({str(self.project_dir)!r}{closed})"

    # -- schema ------------------------------------------------------------------------

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring the file to the newest schema (:func:`~napari_al.core.store.schema.migrate`)."""
        migrate(conn)

    def schema_version(self) -> int:
        """The file's schema version (``PRAGMA user_version``)."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        """``'ok'`` when SQLite's integrity and foreign-key checks pass, else the problems."""
        with self._read() as conn:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        problems = [r for r in rows if r != "ok"]
        problems += [f"foreign key violation in {r[0]} rowid {r[1]} -> {r[2]}" for r in fk]
        return "ok" if not problems else "; ".join(problems)

    # -- transactions --------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the project store {self.path} is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every store write inside the block ONE SQLite transaction.

        The block starts ``BEGIN IMMEDIATE`` (it takes the file's write lock at once, so what
        the block reads stays true until it ends) and runs ``COMMIT`` once, when the outermost
        block exits: one fsync, and another connection sees all of the block's writes or none.
        An exception leaving the block rolls ALL of them back and is re-raised (a
        ``sqlite3.IntegrityError`` as :class:`StoreError`). A killed process loses the whole
        block, never part of it.

        Nested ``transaction()`` blocks, and the write methods called inside, join the
        outermost block. Each runs in a SAVEPOINT of it: an exception caught inside the outer
        block undoes only the nested part that raised. Reads inside the block see its own
        uncommitted writes. The store's lock is held for the whole block: another thread
        sharing this store object waits until it ends (keep blocks short).

        Example: ``with store.transaction(): store.accept_box(a); store.reject_box(b)``.
        """
        with self._write():
            yield

    @property
    def commit_count(self) -> int:
        """How many ``COMMIT`` statements this store object ran (read and write transactions
        alike; nested blocks add none). For tests and benchmarks of transaction counts."""
        return self._commits

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); nested calls join the outer one
        in a SAVEPOINT, rolled back alone when the nested call raises."""
        with self._lock:
            conn = self._require_open()
            if self.read_only:
                raise not_writable_error(self.project_dir)
            if self._depth:
                yield from self._nested_write(conn)
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"the project store is busy ({exc}); try again") from exc
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
                self._commits += 1
            except sqlite3.IntegrityError as exc:
                self._rollback(conn)
                raise StoreError(f"rejected by the store: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._depth = 0

    def _nested_write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """The body of a write nested in an open transaction: a SAVEPOINT, released on success,
        rolled back to (then released) on an exception, which propagates."""
        name = f"napari_al_{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            if isinstance(exc, sqlite3.IntegrityError):
                raise StoreError(f"rejected by the store: {exc}") from exc
            raise
        else:
            conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: all queries inside see the same committed state (inside a
        write transaction: joins it, and sees its uncommitted writes too)."""
        with self._lock:
            conn = self._require_open()
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN")
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
                self._commits += 1
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._depth = 0

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _now(self) -> float:
        return float(self._clock())

    # -- paths ---------------------------------------------------------------------------

    def rel_path(self, path: str | os.PathLike[str]) -> str:
        """How a path is stored: relative inside the project dir, absolute outside it.

        Files inside the project move with it; files elsewhere (a dataset imported in place)
        keep working when the project folder is moved. A relative ``path`` is taken as
        relative to the project dir. Separators are ``/``.
        """
        p = os.fspath(path)
        if not os.path.isabs(p):
            p = os.path.join(self.project_dir, p)
        p = os.path.normpath(os.path.abspath(p))
        root = os.path.normpath(os.path.abspath(self.project_dir))
        try:
            inside = os.path.commonpath([p, root]) == root
        except ValueError:  # another drive on Windows
            inside = False
        if inside:
            return Path(os.path.relpath(p, root)).as_posix()
        return Path(p).as_posix()

    def abs_path(self, row: ImageRow | ModelVersionRow | str | os.PathLike[str]) -> Path:
        """The absolute path of an image or checkpoint row (or of a stored path)."""
        stored = row.path if isinstance(row, (ImageRow, ModelVersionRow)) else os.fspath(row)
        return Path(os.path.normpath(os.path.join(self.project_dir, stored)))


def _refused_write(exc: OSError) -> bool:
    """Whether ``exc`` is a write the file system refused: no permission, or read-only."""
    import errno

    return isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
