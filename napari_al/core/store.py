"""The project store: one SQLite file per project, the single source of truth.

Everything a project knows lives in ``<project_dir>/napari_al.sqlite``: images, classes, boxes
(model proposals and human labels alike, told apart by ``status``), ignore regions, the
append-only log of user actions, model versions and cached acquisition scores.

Durability. Every public method that writes is ONE transaction, committed before it returns.
The file runs in WAL mode with ``synchronous=FULL``: a commit is on disk (fsynced) before the
call returns, so neither a killed process nor a power cut loses an action that returned.
``foreign_keys`` is on, ``busy_timeout`` waits for other writers.

Threads. Prefer one :class:`ProjectStore` per thread: :meth:`ProjectStore.open` is cheap (a
few ms), and with WAL a reader (e.g. a training worker taking :meth:`training_snapshot`) never
blocks the GUI's writes nor sees half of one. A single store may also be shared between threads:
each method holds the store's lock for its whole transaction.

Schema versions. ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` upgrades a
file step by step, each step in its own transaction. A file written by a newer napari-al is
refused with a clear :class:`StoreError`.

Action log and annotation cost. Each action row keeps its raw ``time`` (Unix seconds) and
``dt``, the seconds since the previous *human* action, or NULL for the first action and after
an idle gap longer than :data:`IDLE_CUTOFF_S` (the person was away; the time is not labelling
cost). Machine actions (:data:`MACHINE_KINDS`: import, predict, add) get ``dt`` NULL and are
not counted as predecessors. :meth:`ProjectStore.annotation_seconds` sums ``dt``, or recomputes
from the raw times with another cutoff.

Undo. Box actions record the full box state before and after (``payload = {"before": {...},
"after": {...}}``; ``None`` when the box does not exist), review-state changes record the old
and new state. :meth:`ProjectStore.undo_last` / :meth:`ProjectStore.redo` walk that log;
:meth:`ProjectStore.restore_box` is the logged inverse operation a GUI command stack can use.
The log itself is append-only (triggers refuse UPDATE and DELETE on it).

Stdlib ``sqlite3`` only; no Qt, no napari.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_al.core.data import BOX_STATUSES, HUMAN_STATUSES, REVIEW_STATES, SPLITS, Dataset

#: The store's file name inside the project directory.
STORE_FILENAME = "napari_al.sqlite"

#: ``PRAGMA application_id`` of a napari-al store ("naal"), so a foreign SQLite file is refused.
APPLICATION_ID = 0x6E61616C

#: A gap between two human actions longer than this (seconds) is idle time, not labelling cost:
#: the later action gets ``dt`` NULL. Five minutes: far above the 7-42 s a box takes to draw.
IDLE_CUTOFF_S = 300.0

#: How long a write waits for another connection's write transaction before giving up.
BUSY_TIMEOUT_S = 30.0

#: Box coordinates may stray this far (pixels) outside the image; they are clamped to it.
#: Beyond it a box is refused. Half a pixel absorbs centre/edge rounding in viewers.
BOX_TOLERANCE_PX = 0.5

#: Action kinds written by the machine, not a person: ``dt`` NULL, not annotation cost.
MACHINE_KINDS = ("import", "predict", "add")

#: Box actions a person makes; each logs the box state before and after.
BOX_ACTION_KINDS = ("accept", "reject", "correct", "draw", "delete", "set_class", "restore")

#: Review-state actions; payload ``{"before": state, "after": state}``.
REVIEW_ACTION_KINDS = ("complete", "review_state")

#: Kinds that :meth:`ProjectStore.undo_last` can undo.
UNDOABLE_KINDS = BOX_ACTION_KINDS + REVIEW_ACTION_KINDS

#: Kinds only the store itself writes; :meth:`ProjectStore.log_action` refuses them.
RESERVED_KINDS = (
    *UNDOABLE_KINDS,
    *MACHINE_KINDS,
    "undo",
    "redo",
    "set_split",
    "ignore",
    "delete_ignore",
)

_SCHEMA_V1 = f"""
CREATE TABLE classes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    position INTEGER NOT NULL
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    split TEXT NOT NULL DEFAULT 'pool' CHECK (split IN {SPLITS!r}),
    review_state TEXT NOT NULL DEFAULT 'unseen' CHECK (review_state IN {REVIEW_STATES!r}),
    added REAL NOT NULL
);
CREATE INDEX images_sha256 ON images (sha256);
CREATE INDEX images_split ON images (split, review_state);
CREATE TABLE boxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    x1 REAL NOT NULL,
    y1 REAL NOT NULL,
    x2 REAL NOT NULL,
    y2 REAL NOT NULL,
    class_id INTEGER NOT NULL REFERENCES classes (id),
    score REAL,
    status TEXT NOT NULL CHECK (status IN {BOX_STATUSES!r}),
    source TEXT NOT NULL,
    model_version INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    CHECK (x1 < x2 AND y1 < y2)
);
CREATE INDEX boxes_image ON boxes (image_id, status);
CREATE INDEX boxes_class ON boxes (class_id);
CREATE TABLE ignore_regions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    x1 REAL NOT NULL,
    y1 REAL NOT NULL,
    x2 REAL NOT NULL,
    y2 REAL NOT NULL,
    created REAL NOT NULL,
    CHECK (x1 < x2 AND y1 < y2)
);
CREATE INDEX ignore_regions_image ON ignore_regions (image_id);
-- No foreign keys on purpose: the log outlives the boxes and images it mentions.
CREATE TABLE actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL CHECK (length(kind) > 0),
    image_id INTEGER,
    box_id INTEGER,
    ref_id INTEGER,
    payload TEXT NOT NULL DEFAULT '{{}}',
    dt REAL
);
CREATE INDEX actions_kind ON actions (kind);
CREATE INDEX actions_image ON actions (image_id);
CREATE TRIGGER actions_no_update BEFORE UPDATE ON actions
BEGIN
    SELECT RAISE(ABORT, 'the action log is append-only');
END;
CREATE TRIGGER actions_no_delete BEFORE DELETE ON actions
BEGIN
    SELECT RAISE(ABORT, 'the action log is append-only');
END;
CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    arch TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{{}}',
    created REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE score_cache (
    image_sha256 TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    scorer TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (image_sha256, model_version, scorer)
);
PRAGMA application_id = {APPLICATION_ID};
"""


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run SQL statements one by one inside the caller's transaction.

    ``executescript`` would commit the open transaction first; this keeps a migration atomic.
    """
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                conn.execute(buf)
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    """Version 1: the initial schema."""
    _run_script(conn, _SCHEMA_V1)


#: ``MIGRATIONS[i]`` upgrades a file from schema version ``i`` to ``i + 1`` inside one
#: transaction; append a function for each schema change, never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1]

#: The schema version this napari-al writes.
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A store operation failed for a reason the user can act on (bad id, bad value, bad file)."""


@dataclass(frozen=True)
class ClassRow:
    """One object class; ``position`` orders the class list (the detector's label index)."""

    id: int
    name: str
    position: int


@dataclass(frozen=True)
class ImageRow:
    """One image; ``path`` is relative to the project dir (may hold ``..``) or absolute."""

    id: int
    path: str
    sha256: str
    width: int
    height: int
    split: str
    review_state: str
    added: float


@dataclass(frozen=True)
class BoxRow:
    """One box in image pixels, ``x1 < x2``, ``y1 < y2``."""

    id: int
    image_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    score: float | None
    status: str
    source: str
    model_version: int | None
    created: float
    updated: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, Any]:
        """The box as a JSON-ready dict (the form the action log stores)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IgnoreRegionRow:
    """A region of an image excluded from training and evaluation."""

    id: int
    image_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    created: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class ActionRow:
    """One entry of the append-only action log.

    ``dt``: seconds since the previous human action (NULL for the first one, after an idle gap
    and for machine actions). ``ref_id``: the action an ``undo``/``redo`` refers to.
    """

    id: int
    time: float
    kind: str
    image_id: int | None
    box_id: int | None
    ref_id: int | None
    payload: dict[str, Any]
    dt: float | None


@dataclass(frozen=True)
class ModelVersionRow:
    """A trained checkpoint; ``path`` stored like image paths (project-relative when possible)."""

    id: int
    path: str
    arch: str
    metrics: dict[str, Any]
    created: float
    note: str


@dataclass(frozen=True)
class SnapshotImage:
    """One image of a :class:`TrainingSnapshot` with its boxes and ignore regions."""

    image: ImageRow
    boxes: tuple[BoxRow, ...]
    ignore_regions: tuple[IgnoreRegionRow, ...]

    def boxes_with_status(self, statuses: Iterable[str] = HUMAN_STATUSES) -> list[BoxRow]:
        """The boxes whose status is in ``statuses`` (default: the human labels)."""
        wanted = set(statuses)
        return [b for b in self.boxes if b.status in wanted]


@dataclass(frozen=True)
class TrainingSnapshot:
    """Labels read in one read transaction: consistent even while the GUI keeps writing."""

    classes: tuple[ClassRow, ...]
    images: tuple[SnapshotImage, ...]
    last_action_id: int | None
    taken: float


_IMAGE_COLS = "id, path, sha256, width, height, split, review_state, added"
_BOX_COLS = (
    "id, image_id, x1, y1, x2, y2, class_id, score, status, source, model_version, created, updated"
)
_IGNORE_COLS = "id, image_id, x1, y1, x2, y2, created"
_ACTION_COLS = "id, time, kind, image_id, box_id, ref_id, payload, dt"
_MODEL_COLS = "id, path, arch, metrics, created, note"


def _action_row(r: Sequence[Any]) -> ActionRow:
    return ActionRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7])


def _model_row(r: Sequence[Any]) -> ModelVersionRow:
    return ModelVersionRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5])


def _as_id(value: Any, what: str) -> int:
    """An integer row id (numpy integers welcome: sqlite3 cannot bind them)."""
    if isinstance(value, bool):
        raise StoreError(f"{what} id must be an integer, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise StoreError(f"{what} id must be an integer, got {value!r}") from None
    if as_int != value:
        raise StoreError(f"{what} id must be an integer, got {value!r}")
    return as_int


def _opt_id(value: Any, what: str) -> int | None:
    return None if value is None else _as_id(value, what)


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays (``.item()`` / ``.tolist()``) and paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise StoreError(f"unknown {what} {value!r} (expected one of {', '.join(choices)})")
    return value


def _check_xyxy(
    xyxy: Iterable[float], width: int, height: int, what: str = "box"
) -> tuple[float, float, float, float]:
    """Validate a box against its image; clamp coordinates within the tolerance."""
    try:
        values = [float(v) for v in xyxy]
    except (TypeError, ValueError):
        raise StoreError(f"{what} must be 4 numbers x1, y1, x2, y2, got {xyxy!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise StoreError(f"{what} must be 4 finite numbers x1, y1, x2, y2, got {values!r}")
    x1, y1, x2, y2 = values
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise StoreError(f"{what} {values} lies outside the {width}x{height} image")
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if not (x1 < x2 and y1 < y2):
        raise StoreError(f"{what} {values} is empty (need x1 < x2 and y1 < y2)")
    return (x1, y1, x2, y2)


def _check_score(score: float | None) -> float | None:
    if score is None:
        return None
    value = float(score)
    if not math.isfinite(value):
        raise StoreError(f"score must be finite, got {score!r}")
    return value


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks so large images never sit in memory whole."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk_size):
                digest.update(block)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


class ProjectStore:
    """The SQLite store of one project. Open with :meth:`create` or :meth:`open`."""

    def __init__(
        self,
        project_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] | None = None,
        idle_cutoff_s: float = IDLE_CUTOFF_S,
        timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        """Connect to ``project_dir``'s store file, creating and migrating it as needed.

        Use :meth:`create` / :meth:`open`, which check first whether the file should exist.
        ``clock`` (Unix seconds) is for tests of the cost model.
        """
        self.project_dir = Path(os.path.abspath(project_dir))
        self.path = self.project_dir / STORE_FILENAME
        self.idle_cutoff_s = float(idle_cutoff_s)
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        conn = sqlite3.connect(
            str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"{self.path}: cannot use WAL journal mode (got {mode!r}); "
                    "is the project on a network file system?"
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path}: not a usable napari-al store ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def create(cls, project_dir: str | os.PathLike[str], **kwargs: Any) -> ProjectStore:
        """Create a new project store in ``project_dir`` (made if missing); fail if one exists."""
        project_dir = Path(os.path.abspath(project_dir))
        project_dir.mkdir(parents=True, exist_ok=True)
        path = project_dir / STORE_FILENAME
        try:  # O_EXCL: two concurrent creates cannot both succeed
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise StoreError(f"{project_dir}: a napari-al project store already exists") from None
        try:
            return cls(project_dir, **kwargs)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def open(
        cls, project_dir: str | os.PathLike[str], create: bool = False, **kwargs: Any
    ) -> ProjectStore:
        """Open the store in ``project_dir``; with ``create`` make it when missing.

        Cheap (a few ms): open one per thread rather than sharing one across threads.
        """
        path = Path(os.path.abspath(project_dir)) / STORE_FILENAME
        if not path.is_file():
            if not create:
                raise StoreError(
                    f"{project_dir}: no napari-al project store ({STORE_FILENAME} missing)"
                )
            Path(os.path.abspath(project_dir)).mkdir(parents=True, exist_ok=True)
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

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProjectStore({str(self.project_dir)!r}{', closed' if self.closed else ''})"

    # -- schema ------------------------------------------------------------------------

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring the file to the newest schema, one transaction per migration step."""
        migrations = MIGRATIONS
        target = len(migrations)
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                if app_id not in (0, APPLICATION_ID):
                    raise StoreError(f"not a napari-al store (application_id {app_id:#x})")
                if version > target:
                    raise StoreError(
                        f"the project store has schema version {version}, newer than this "
                        f"napari-al supports ({target}); upgrade napari-al to open it"
                    )
                if version == 0:
                    n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                    if n_objects:
                        raise StoreError("not a napari-al store (foreign tables, no version)")
                if version == target:
                    conn.execute("COMMIT")
                    return
                migrations[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

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
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); nested calls join the outer one."""
        with self._lock:
            conn = self._require_open()
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"the project store is busy ({exc}); try again") from exc
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._rollback(conn)
                raise StoreError(f"rejected by the store: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._depth = 0

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: all queries inside see the same committed state."""
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

    # -- classes -------------------------------------------------------------------------

    def classes(self) -> list[ClassRow]:
        """All classes in their order (``position``); index i is the detector's label i."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, name, position FROM classes ORDER BY position, id")
            return [ClassRow(*r) for r in rows]

    def add_class(self, name: str) -> int:
        """Append a class at the end of the list; fail if the name exists."""
        with self._write() as conn:
            return self._add_class(conn, name)

    def _add_class(self, conn: sqlite3.Connection, name: str) -> int:
        if not isinstance(name, str) or not name.strip():
            raise StoreError(f"class name must be a non-empty string, got {name!r}")
        if conn.execute("SELECT 1 FROM classes WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"class {name!r} already exists")
        position = conn.execute("SELECT coalesce(max(position) + 1, 0) FROM classes").fetchone()
        cur = conn.execute(
            "INSERT INTO classes (name, position) VALUES (?, ?)", (name, position[0])
        )
        return int(cur.lastrowid)

    def class_id(self, name: str) -> int:
        """The id of the class called ``name``; StoreError if unknown."""
        with self._read() as conn:
            row = conn.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"unknown class {name!r}")
        return int(row[0])

    def _require_class(self, conn: sqlite3.Connection, class_id: int) -> None:
        class_id = _as_id(class_id, "class")
        if conn.execute("SELECT 1 FROM classes WHERE id = ?", (class_id,)).fetchone() is None:
            raise StoreError(f"class {class_id} does not exist")

    # -- images --------------------------------------------------------------------------

    def add_image(
        self,
        path: str | os.PathLike[str],
        sha256: str,
        width: int,
        height: int,
        split: str = "pool",
        review_state: str = "unseen",
    ) -> int:
        """Register one image (not logged); fail if its path is already in the project."""
        with self._write() as conn:
            return self._add_image(
                conn, self.rel_path(path), sha256, width, height, split, review_state
            )

    def _add_image(
        self,
        conn: sqlite3.Connection,
        rel: str,
        sha256: str,
        width: int,
        height: int,
        split: str,
        review_state: str,
    ) -> int:
        _check_choice(split, SPLITS, "split")
        _check_choice(review_state, REVIEW_STATES, "review state")
        if not (isinstance(sha256, str) and len(sha256) == 64):
            raise StoreError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if int(width) <= 0 or int(height) <= 0:
            raise StoreError(f"image size must be positive, got {width}x{height}")
        if conn.execute("SELECT 1 FROM images WHERE path = ?", (rel,)).fetchone():
            raise StoreError(f"image {rel!r} is already in the project")
        cur = conn.execute(
            "INSERT INTO images (path, sha256, width, height, split, review_state, added)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel, sha256.lower(), int(width), int(height), split, review_state, self._now()),
        )
        return int(cur.lastrowid)

    def image(self, image_id: int) -> ImageRow:
        """The image with this id; StoreError if missing."""
        with self._read() as conn:
            return self._image(conn, image_id)

    def _image(self, conn: sqlite3.Connection, image_id: int) -> ImageRow:
        image_id = _as_id(image_id, "image")
        row = conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise StoreError(f"image {image_id} does not exist")
        return ImageRow(*row)

    def images(self, split: str | None = None, review_state: str | None = None) -> list[ImageRow]:
        """Images in id order, optionally only one split and/or review state."""
        where, args = [], []
        if split is not None:
            where.append("split = ?")
            args.append(_check_choice(split, SPLITS, "split"))
        if review_state is not None:
            where.append("review_state = ?")
            args.append(_check_choice(review_state, REVIEW_STATES, "review state"))
        sql = f"SELECT {_IMAGE_COLS} FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [ImageRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    def image_by_path(self, path: str | os.PathLike[str]) -> ImageRow | None:
        """The image stored under ``path`` (absolute, or relative to the project), or None."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_IMAGE_COLS} FROM images WHERE path = ?", (self.rel_path(path),)
            ).fetchone()
        return None if row is None else ImageRow(*row)

    def set_split(self, image_id: int, split: str, log: bool = True) -> None:
        """Move an image to another split; logged as ``set_split`` (not undoable here)."""
        _check_choice(split, SPLITS, "split")
        with self._write() as conn:
            before = self._image(conn, image_id)
            conn.execute("UPDATE images SET split = ? WHERE id = ?", (split, before.id))
            if log:
                self._log(
                    conn, "set_split", image_id, None, {"before": before.split, "after": split}
                )

    def set_review_state(self, image_id: int, state: str) -> int | None:
        """Set how far a person reviewed an image; returns the logged action id.

        Logged as ``complete`` when the state becomes complete, else ``review_state``; both are
        undoable. Setting the current state again changes and logs nothing (returns None).
        """
        _check_choice(state, REVIEW_STATES, "review state")
        with self._write() as conn:
            image = self._image(conn, image_id)
            before = image.review_state
            if before == state:
                return None
            conn.execute("UPDATE images SET review_state = ? WHERE id = ?", (state, image.id))
            kind = "complete" if state == "complete" else "review_state"
            return self._log(conn, kind, image_id, None, {"before": before, "after": state})

    # -- boxes: reading ------------------------------------------------------------------

    def box(self, box_id: int) -> BoxRow:
        """The box with this id; StoreError if missing."""
        with self._read() as conn:
            return self._box(conn, box_id)

    def _box(self, conn: sqlite3.Connection, box_id: int) -> BoxRow:
        row = self._box_or_none(conn, box_id)
        if row is None:
            raise StoreError(f"box {box_id} does not exist")
        return row

    @staticmethod
    def _box_or_none(conn: sqlite3.Connection, box_id: int) -> BoxRow | None:
        box_id = _as_id(box_id, "box")
        row = conn.execute(f"SELECT {_BOX_COLS} FROM boxes WHERE id = ?", (box_id,)).fetchone()
        return None if row is None else BoxRow(*row)

    def boxes(
        self, image_id: int | None = None, statuses: str | Iterable[str] | None = None
    ) -> list[BoxRow]:
        """Boxes in id order, optionally of one image and/or with the given statuses."""
        where, args = [], []
        if image_id is not None:
            where.append("image_id = ?")
            args.append(_as_id(image_id, "image"))
        if statuses is not None:
            wanted = [statuses] if isinstance(statuses, str) else list(statuses)
            for s in wanted:
                _check_choice(s, BOX_STATUSES, "box status")
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        sql = f"SELECT {_BOX_COLS} FROM boxes"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [BoxRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    # -- boxes: writing ------------------------------------------------------------------

    def _insert_box(
        self,
        conn: sqlite3.Connection,
        image: ImageRow,
        xyxy: Iterable[float],
        class_id: int,
        status: str,
        score: float | None,
        source: str,
        model_version: int | None,
        box_id: int | None = None,
        created: float | None = None,
    ) -> BoxRow:
        _check_choice(status, BOX_STATUSES, "box status")
        x1, y1, x2, y2 = _check_xyxy(xyxy, image.width, image.height)
        self._require_class(conn, class_id)
        now = self._now()
        cur = conn.execute(
            "INSERT INTO boxes (id, image_id, x1, y1, x2, y2, class_id, score, status, source,"
            " model_version, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                box_id,
                image.id,
                x1,
                y1,
                x2,
                y2,
                int(class_id),
                _check_score(score),
                status,
                str(source),
                None if model_version is None else int(model_version),
                now if created is None else created,
                now,
            ),
        )
        return self._box(conn, int(cur.lastrowid))

    def _update_box(self, conn: sqlite3.Connection, box: BoxRow, **fields: Any) -> BoxRow:
        """Change some columns of a box (validated) and return the new row."""
        if "xyxy" in fields:
            image = self._image(conn, box.image_id)
            fields.update(
                zip(
                    ("x1", "y1", "x2", "y2"),
                    _check_xyxy(fields.pop("xyxy"), image.width, image.height),
                    strict=True,
                )
            )
        if "class_id" in fields:
            self._require_class(conn, fields["class_id"])
        if "status" in fields:
            _check_choice(fields["status"], BOX_STATUSES, "box status")
        fields["updated"] = self._now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE boxes SET {sets} WHERE id = ?", (*fields.values(), box.id))
        return self._box(conn, box.id)

    def _log_box(
        self, conn: sqlite3.Connection, kind: str, before: BoxRow | None, after: BoxRow | None
    ) -> int:
        ref = after if after is not None else before
        assert ref is not None
        payload = {
            "before": None if before is None else before.to_dict(),
            "after": None if after is None else after.to_dict(),
        }
        return self._log(conn, kind, ref.image_id, ref.id, payload)

    def add_box(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        status: str,
        score: float | None = None,
        source: str = "human",
        model_version: int | None = None,
        log: bool = True,
    ) -> int:
        """Add a box with any status (a programmatic add, e.g. pseudo labels); returns its id.

        Logged as the machine action ``add`` (not undoable); people's boxes use :meth:`draw_box`.
        """
        with self._write() as conn:
            image = self._image(conn, image_id)
            row = self._insert_box(
                conn, image, xyxy, class_id, status, score, source, model_version
            )
            if log:
                self._log_box(conn, "add", None, row)
            return row.id

    def draw_box(self, image_id: int, xyxy: Iterable[float], class_id: int) -> int:
        """A person drew a box: status ``drawn``, source ``human``; returns the box id."""
        with self._write() as conn:
            image = self._image(conn, image_id)
            row = self._insert_box(conn, image, xyxy, class_id, "drawn", None, "human", None)
            self._log_box(conn, "draw", None, row)
            return row.id

    def accept_box(self, box_id: int) -> int:
        """A person confirmed a box: status ``accepted``; returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(conn, before, status="accepted")
            return self._log_box(conn, "accept", before, after)

    def reject_box(self, box_id: int) -> int:
        """A person rejected a box (background): status ``rejected``; returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(conn, before, status="rejected")
            return self._log_box(conn, "reject", before, after)

    @staticmethod
    def _edited_status(status: str) -> str:
        """A person edited a box: their own drawing stays ``drawn``, anything else ``corrected``."""
        return "drawn" if status == "drawn" else "corrected"

    def correct_box(
        self,
        box_id: int,
        xyxy: Iterable[float] | None = None,
        class_id: int | None = None,
    ) -> int:
        """A person moved/resized a box and/or changed its class; returns the action id.

        The status becomes ``corrected`` (a ``drawn`` box stays ``drawn``).
        """
        if xyxy is None and class_id is None:
            raise StoreError("correct_box needs a new box, a new class or both")
        with self._write() as conn:
            before = self._box(conn, box_id)
            fields: dict[str, Any] = {"status": self._edited_status(before.status)}
            if xyxy is not None:
                fields["xyxy"] = xyxy
            if class_id is not None:
                fields["class_id"] = int(class_id)
            after = self._update_box(conn, before, **fields)
            return self._log_box(conn, "correct", before, after)

    def set_box_class(self, box_id: int, class_id: int) -> int:
        """A person changed a box's class (status as in :meth:`correct_box`); returns action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            after = self._update_box(
                conn, before, class_id=int(class_id), status=self._edited_status(before.status)
            )
            return self._log_box(conn, "set_class", before, after)

    def delete_box(self, box_id: int) -> int:
        """A person deleted a box (the log keeps its last state); returns the action id."""
        with self._write() as conn:
            before = self._box(conn, box_id)
            conn.execute("DELETE FROM boxes WHERE id = ?", (before.id,))
            return self._log_box(conn, "delete", before, None)

    def restore_box(self, box_id: int, state: BoxRow | dict[str, Any] | None) -> int:
        """Put a box back into a recorded state (None: the box does not exist); logged, undoable.

        The inverse of every box action: a GUI command stack keeps the :class:`BoxRow` from
        before a command and restores it to undo. ``updated`` is set to now.
        """
        with self._write() as conn:
            before, after = self._put_box_state(conn, box_id, state)
            if before is None and after is None:
                raise StoreError(f"box {box_id} does not exist (nothing to restore)")
            return self._log_box(conn, "restore", before, after)

    def _put_box_state(
        self, conn: sqlite3.Connection, box_id: int, state: BoxRow | dict[str, Any] | None
    ) -> tuple[BoxRow | None, BoxRow | None]:
        """Make box ``box_id`` equal ``state`` (insert/update/delete); return (before, after)."""
        box_id = _as_id(box_id, "box")
        before = self._box_or_none(conn, box_id)
        if state is None:
            if before is not None:
                conn.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
            return before, None
        s = state.to_dict() if isinstance(state, BoxRow) else dict(state)
        if int(s.get("id", box_id)) != box_id:
            raise StoreError(f"state of box {s.get('id')} cannot restore box {box_id}")
        xyxy = (s["x1"], s["y1"], s["x2"], s["y2"])
        current = before
        if current is not None and current.image_id != s["image_id"]:  # moved: re-create
            conn.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
            current = None
        if current is None:
            image = self._image(conn, s["image_id"])
            after = self._insert_box(
                conn,
                image,
                xyxy,
                s["class_id"],
                s["status"],
                s.get("score"),
                s.get("source", "human"),
                s.get("model_version"),
                box_id=box_id,
                created=s.get("created"),
            )
        else:
            after = self._update_box(
                conn,
                current,
                xyxy=xyxy,
                class_id=int(s["class_id"]),
                score=_check_score(s.get("score")),
                status=s["status"],
                source=str(s.get("source", before.source)),
                model_version=_opt_id(s.get("model_version"), "model version"),
            )
        return before, after

    def replace_predictions(
        self,
        image_id: int,
        predictions: Iterable[tuple[Iterable[float], int, float | None]],
        model_version: int | None,
    ) -> list[int]:
        """Replace the image's ``predicted`` boxes by new ones ``(xyxy, class_id, score)``.

        One transaction; boxes with any other status (human labels, rejections, pseudo labels)
        are never touched. Logged as one machine action ``predict``. Returns the new box ids.
        """
        with self._write() as conn:
            image = self._image(conn, image_id)
            image_id = image.id
            model_version = _opt_id(model_version, "model version")
            removed = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM boxes WHERE image_id = ? AND status = 'predicted'", (image_id,)
                )
            ]
            conn.execute(
                "DELETE FROM boxes WHERE image_id = ? AND status = 'predicted'", (image_id,)
            )
            added = []
            for xyxy, class_id, score in predictions:
                row = self._insert_box(
                    conn, image, xyxy, class_id, "predicted", score, "model", model_version
                )
                added.append(row.id)
            self._log(
                conn,
                "predict",
                image_id,
                None,
                {"model_version": model_version, "removed": removed, "added": added},
            )
            return added

    # -- ignore regions ------------------------------------------------------------------

    def add_ignore_region(self, image_id: int, xyxy: Iterable[float]) -> int:
        """Mark a region of an image to be ignored in training/evaluation; logged ``ignore``."""
        with self._write() as conn:
            image = self._image(conn, image_id)
            image_id = image.id
            x1, y1, x2, y2 = _check_xyxy(xyxy, image.width, image.height, "ignore region")
            cur = conn.execute(
                "INSERT INTO ignore_regions (image_id, x1, y1, x2, y2, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (image_id, x1, y1, x2, y2, self._now()),
            )
            region_id = int(cur.lastrowid)
            self._log(
                conn, "ignore", image_id, None, {"region": region_id, "xyxy": [x1, y1, x2, y2]}
            )
            return region_id

    def delete_ignore_region(self, region_id: int) -> None:
        """Remove an ignore region; logged ``delete_ignore``."""
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_IGNORE_COLS} FROM ignore_regions WHERE id = ?", (region_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"ignore region {region_id} does not exist")
            region = IgnoreRegionRow(*row)
            conn.execute("DELETE FROM ignore_regions WHERE id = ?", (region_id,))
            self._log(
                conn,
                "delete_ignore",
                region.image_id,
                None,
                {"region": region_id, "xyxy": list(region.xyxy)},
            )

    def ignore_regions(self, image_id: int | None = None) -> list[IgnoreRegionRow]:
        """Ignore regions in id order, optionally of one image."""
        sql = f"SELECT {_IGNORE_COLS} FROM ignore_regions"
        args: tuple[Any, ...] = ()
        if image_id is not None:
            sql += " WHERE image_id = ?"
            args = (_as_id(image_id, "image"),)
        with self._read() as conn:
            return [IgnoreRegionRow(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    # -- the action log ------------------------------------------------------------------

    def _log(
        self,
        conn: sqlite3.Connection,
        kind: str,
        image_id: int | None,
        box_id: int | None,
        payload: dict[str, Any] | None,
        ref_id: int | None = None,
    ) -> int:
        """Append one action row inside the caller's transaction; returns its id."""
        now = self._now()
        dt = None
        if kind not in MACHINE_KINDS:
            placeholders = ", ".join("?" * len(MACHINE_KINDS))
            prev = conn.execute(
                f"SELECT time FROM actions WHERE kind NOT IN ({placeholders})"
                " ORDER BY id DESC LIMIT 1",
                MACHINE_KINDS,
            ).fetchone()
            if prev is not None:
                gap = now - prev[0]
                dt = max(0.0, gap) if gap <= self.idle_cutoff_s else None
        cur = conn.execute(
            "INSERT INTO actions (time, kind, image_id, box_id, ref_id, payload, dt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                kind,
                _opt_id(image_id, "image"),
                _opt_id(box_id, "box"),
                ref_id,
                _dumps(payload or {}),
                dt,
            ),
        )
        return int(cur.lastrowid)

    def log_action(
        self,
        kind: str,
        image_id: int | None = None,
        box_id: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Log a GUI event that changes no data (e.g. ``skip``, ``open``); returns its id.

        Kinds the store writes itself (:data:`RESERVED_KINDS`) are refused so the log stays
        truthful and undo stays correct.
        """
        if not isinstance(kind, str) or not kind:
            raise StoreError(f"action kind must be a non-empty string, got {kind!r}")
        if kind in RESERVED_KINDS:
            raise StoreError(f"action kind {kind!r} is written by the store itself")
        with self._write() as conn:
            return self._log(conn, kind, image_id, box_id, payload)

    def actions(
        self,
        kind: str | None = None,
        image_id: int | None = None,
        since_id: int | None = None,
    ) -> list[ActionRow]:
        """Logged actions in order, optionally of one kind / image / after an action id."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if image_id is not None:
            where.append("image_id = ?")
            args.append(_as_id(image_id, "image"))
        if since_id is not None:
            where.append("id > ?")
            args.append(_as_id(since_id, "action"))
        sql = f"SELECT {_ACTION_COLS} FROM actions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            return [_action_row(r) for r in conn.execute(sql + " ORDER BY id", args)]

    def last_action_id(self) -> int | None:
        """The id of the newest action (None for an empty log): a cheap 'anything new?' test."""
        with self._read() as conn:
            return conn.execute("SELECT max(id) FROM actions").fetchone()[0]

    def annotation_seconds(self, idle_cutoff_s: float | None = None) -> float:
        """Seconds people spent labelling: the sum of ``dt``.

        With ``idle_cutoff_s`` the sum is recomputed from the raw action times with that cutoff
        instead of the one in force when the actions were logged.
        """
        with self._read() as conn:
            if idle_cutoff_s is None:
                return float(conn.execute("SELECT total(dt) FROM actions").fetchone()[0])
            placeholders = ", ".join("?" * len(MACHINE_KINDS))
            times = [
                r[0]
                for r in conn.execute(
                    f"SELECT time FROM actions WHERE kind NOT IN ({placeholders}) ORDER BY id",
                    MACHINE_KINDS,
                )
            ]
        total = 0.0
        for prev, cur in itertools.pairwise(times):
            gap = cur - prev
            if gap <= idle_cutoff_s:
                total += max(0.0, gap)
        return total

    # -- undo / redo ---------------------------------------------------------------------

    def _undo_stacks(self, conn: sqlite3.Connection) -> tuple[list[int], list[int]]:
        """Replay the log: (ids that can be undone, ids that can be redone), newest last."""
        kinds = (*UNDOABLE_KINDS, "undo", "redo")
        placeholders = ", ".join("?" * len(kinds))
        done: list[int] = []
        undone: list[int] = []
        rows = conn.execute(
            f"SELECT id, kind, ref_id FROM actions WHERE kind IN ({placeholders}) ORDER BY id",
            kinds,
        )
        for action_id, kind, ref_id in rows:
            if kind == "undo":
                if ref_id in done:
                    done.remove(ref_id)
                undone.append(ref_id)
            elif kind == "redo":
                if ref_id in undone:
                    undone.remove(ref_id)
                done.append(ref_id)
            else:
                done.append(action_id)
                undone.clear()
        return done, undone

    def _apply(self, conn: sqlite3.Connection, target: ActionRow, side: str, kind: str) -> None:
        """Set the target action's subject to its ``side`` state and log ``kind``."""
        state = target.payload[side]
        if target.kind in BOX_ACTION_KINDS:
            assert target.box_id is not None
            before, after = self._put_box_state(conn, target.box_id, state)
            payload = {
                "before": None if before is None else before.to_dict(),
                "after": None if after is None else after.to_dict(),
            }
        else:
            assert target.image_id is not None
            old = self._image(conn, target.image_id).review_state
            _check_choice(state, REVIEW_STATES, "review state")
            conn.execute(
                "UPDATE images SET review_state = ? WHERE id = ?", (state, target.image_id)
            )
            payload = {"before": old, "after": state}
        self._log(conn, kind, target.image_id, target.box_id, payload, ref_id=target.id)

    def _undo_redo(self, undo: bool) -> ActionRow | None:
        with self._write() as conn:
            done, undone = self._undo_stacks(conn)
            stack = done if undo else undone
            if not stack:
                return None
            row = conn.execute(
                f"SELECT {_ACTION_COLS} FROM actions WHERE id = ?", (stack[-1],)
            ).fetchone()
            target = _action_row(row)
            self._apply(conn, target, "before" if undo else "after", "undo" if undo else "redo")
            return target

    def undo_last(self) -> ActionRow | None:
        """Undo the newest not-yet-undone box or review action; returns it (None: nothing).

        Logged as ``undo`` (``ref_id`` = the undone action). A new undoable action clears the
        redo stack, as in any editor.
        """
        return self._undo_redo(undo=True)

    def redo(self) -> ActionRow | None:
        """Redo the most recently undone action; returns it (None: nothing to redo)."""
        return self._undo_redo(undo=False)

    # -- model versions ------------------------------------------------------------------

    def add_model_version(
        self,
        path: str | os.PathLike[str],
        arch: str,
        metrics: dict[str, Any] | None = None,
        note: str = "",
    ) -> int:
        """Register a trained checkpoint; returns its version id (1, 2, ...)."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO model_versions (path, arch, metrics, created, note)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.rel_path(path), str(arch), _dumps(metrics or {}), self._now(), note),
            )
            return int(cur.lastrowid)

    def set_model_metrics(self, version_id: int, metrics: dict[str, Any]) -> None:
        """Replace a model version's metrics (e.g. after evaluating it)."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE model_versions SET metrics = ? WHERE id = ?",
                (_dumps(metrics), _as_id(version_id, "model version")),
            )
            if cur.rowcount == 0:
                raise StoreError(f"model version {version_id} does not exist")

    def model_versions(self) -> list[ModelVersionRow]:
        """All model versions, oldest first."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_MODEL_COLS} FROM model_versions ORDER BY id")
            return [_model_row(r) for r in rows]

    def latest_model_version(self) -> ModelVersionRow | None:
        """The newest model version, or None before the first training."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_MODEL_COLS} FROM model_versions ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _model_row(row)

    # -- score cache ---------------------------------------------------------------------

    def put_scores(self, image_sha: str, model_version: int, scorer: str, payload: bytes) -> None:
        """Cache a scorer's output for (image content, model version, scorer); overwrites.

        Keyed by content hash so a renamed or re-imported image keeps its scores. Use model
        version 0 for a detector not registered as a version (e.g. pretrained weights).
        """
        self.put_scores_many([(image_sha, model_version, scorer, payload)])

    def put_scores_many(self, items: Iterable[tuple[str, int, str, bytes]]) -> None:
        """:meth:`put_scores` for many entries in one transaction (one fsync)."""
        now = self._now()
        with self._write() as conn:
            for image_sha, model_version, scorer, payload in items:
                if model_version is None:
                    raise StoreError("model_version must be an int (0: unregistered model)")
                conn.execute(
                    "INSERT OR REPLACE INTO score_cache"
                    " (image_sha256, model_version, scorer, payload, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (image_sha, int(model_version), str(scorer), bytes(payload), now),
                )

    def get_scores(self, image_sha: str, model_version: int, scorer: str) -> bytes | None:
        """The cached payload, or None when missing."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT payload FROM score_cache"
                " WHERE image_sha256 = ? AND model_version = ? AND scorer = ?",
                (image_sha, int(model_version), str(scorer)),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def clear_scores(self, model_version: int | None = None) -> int:
        """Drop cached scores (of one model version, or all); returns how many."""
        with self._write() as conn:
            if model_version is None:
                return conn.execute("DELETE FROM score_cache").rowcount
            return conn.execute(
                "DELETE FROM score_cache WHERE model_version = ?", (int(model_version),)
            ).rowcount

    # -- import --------------------------------------------------------------------------

    def import_dataset(
        self,
        dataset: Dataset,
        progress: Callable[[int, int], None] | None = None,
        split_default: str = "pool",
        annotated_split_default: str = "train",
    ) -> dict[str, Any]:
        """Import a dataset, all or nothing, in one transaction; returns a summary dict.

        - Images whose path is already in the project are SKIPPED untouched (their boxes, split
          and review state are human work; nothing is overwritten), as are repeated paths.
        - Images with ``annotated=True`` become ``complete`` with their boxes ``accepted``
          (source ``import``); an annotated image without a split goes to
          ``annotated_split_default`` (``train``).
        - Unannotated images become ``unseen``, in their split or ``split_default`` (``pool``).
        - Classes are added as needed, in ``dataset.classes`` order then first use.
        - One ``import`` action is logged.

        Everything is validated and every file hashed (streamed) before the write transaction,
        which then holds the write lock only briefly. ``progress(done, total)`` follows the
        hashing; raising from it cancels the import with nothing written.
        """
        _check_choice(split_default, SPLITS, "split")
        _check_choice(annotated_split_default, SPLITS, "split")
        with self._read() as conn:
            existing = {r[0] for r in conn.execute("SELECT path FROM images")}
        planned: list[tuple[str, Any, str]] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for index, rec in enumerate(dataset.images):
            where = f"image {index} ({rec.path})"
            rel = self.rel_path(rec.path)
            if rel in existing or rel in seen:
                skipped.append(rel)
                continue
            seen.add(rel)
            if rec.split is not None:
                split = rec.split
            else:
                split = annotated_split_default if rec.annotated else split_default
            try:
                _check_choice(split, SPLITS, "split")
                if int(rec.width) <= 0 or int(rec.height) <= 0:
                    raise StoreError(f"image size must be positive, got {rec.width}x{rec.height}")
                for j, b in enumerate(rec.boxes):
                    _check_xyxy(b.xyxy(), rec.width, rec.height, f"box {j}")
                    _check_score(b.score)
                    if not isinstance(b.label, str) or not b.label.strip():
                        raise StoreError(f"box {j} has no class label")
            except StoreError as exc:
                raise StoreError(f"{where}: {exc}; nothing was imported") from None
            planned.append((rel, rec, split))

        total = len(planned)
        hashes: list[str] = []
        if progress is not None:
            progress(0, total)
        for done, (rel, _rec, _split) in enumerate(planned, start=1):
            hashes.append(file_sha256(self.abs_path(rel)))
            if progress is not None:
                progress(done, total)

        class_names = list(dataset.classes)
        for _rel, rec, _split in planned:
            class_names.extend(b.label for b in rec.boxes)
        summary: dict[str, Any] = {
            "source": dataset.source,
            "images_added": 0,
            "images_skipped": len(skipped),
            "boxes_added": 0,
            "annotated": 0,
            "unannotated": 0,
            "classes_added": [],
            "skipped_paths": skipped,
            "warnings": list(dataset.warnings),
        }
        with self._write() as conn:
            class_ids = {name: cid for cid, name in conn.execute("SELECT id, name FROM classes")}
            for name in class_names:
                if name not in class_ids:
                    class_ids[name] = self._add_class(conn, name)
                    summary["classes_added"].append(name)
            for (rel, rec, split), sha in zip(planned, hashes, strict=True):
                if conn.execute("SELECT 1 FROM images WHERE path = ?", (rel,)).fetchone():
                    summary["images_skipped"] += 1  # added by another connection meanwhile
                    skipped.append(rel)
                    continue
                state = "complete" if rec.annotated else "unseen"
                image_id = self._add_image(conn, rel, sha, rec.width, rec.height, split, state)
                image = self._image(conn, image_id)
                for b in rec.boxes:
                    self._insert_box(
                        conn,
                        image,
                        b.xyxy(),
                        class_ids[b.label],
                        "accepted",
                        b.score,
                        "import",
                        None,
                    )
                summary["images_added"] += 1
                summary["boxes_added"] += len(rec.boxes)
                summary["annotated" if rec.annotated else "unannotated"] += 1
            log_payload = {k: v for k, v in summary.items() if k != "skipped_paths"}
            summary["action_id"] = self._log(conn, "import", None, None, log_payload)
        return summary

    # -- summaries -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts for display and the CLI (JSON-ready)."""
        with self._read() as conn:

            def count(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])

            classes = [r[0] for r in conn.execute("SELECT name FROM classes ORDER BY position, id")]
            by_status = dict.fromkeys(BOX_STATUSES, 0)
            by_status.update(conn.execute("SELECT status, count(*) FROM boxes GROUP BY status"))
            by_class = dict.fromkeys(classes, 0)
            by_class.update(
                conn.execute(
                    "SELECT c.name, count(*) FROM boxes b JOIN classes c ON c.id = b.class_id"
                    " GROUP BY c.name"
                )
            )
            by_split = dict.fromkeys(SPLITS, 0)
            by_split.update(conn.execute("SELECT split, count(*) FROM images GROUP BY split"))
            by_review = dict.fromkeys(REVIEW_STATES, 0)
            by_review.update(
                conn.execute("SELECT review_state, count(*) FROM images GROUP BY review_state")
            )
            return {
                "project_dir": str(self.project_dir),
                "schema_version": int(conn.execute("PRAGMA user_version").fetchone()[0]),
                "images": count("SELECT count(*) FROM images"),
                "boxes": count("SELECT count(*) FROM boxes"),
                "classes": classes,
                "boxes_by_status": by_status,
                "boxes_by_class": by_class,
                "images_by_split": by_split,
                "images_by_review_state": by_review,
                "ignore_regions": count("SELECT count(*) FROM ignore_regions"),
                "actions": count("SELECT count(*) FROM actions"),
                "model_versions": count("SELECT count(*) FROM model_versions"),
                "annotation_seconds": float(
                    conn.execute("SELECT total(dt) FROM actions").fetchone()[0]
                ),
            }

    def training_snapshot(self, splits: Iterable[str] | None = None) -> TrainingSnapshot:
        """All images (optionally of some splits) with boxes and ignore regions, read in ONE
        read transaction: a training run sees one consistent state while the GUI writes."""
        wanted = None if splits is None else {_check_choice(s, SPLITS, "split") for s in splits}
        with self._read() as conn:
            classes = tuple(
                ClassRow(*r)
                for r in conn.execute("SELECT id, name, position FROM classes ORDER BY position")
            )
            images = [
                ImageRow(*r) for r in conn.execute(f"SELECT {_IMAGE_COLS} FROM images ORDER BY id")
            ]
            boxes: dict[int, list[BoxRow]] = {}
            for r in conn.execute(f"SELECT {_BOX_COLS} FROM boxes ORDER BY image_id, id"):
                boxes.setdefault(r[1], []).append(BoxRow(*r))
            regions: dict[int, list[IgnoreRegionRow]] = {}
            for r in conn.execute(f"SELECT {_IGNORE_COLS} FROM ignore_regions ORDER BY id"):
                regions.setdefault(r[1], []).append(IgnoreRegionRow(*r))
            last = conn.execute("SELECT max(id) FROM actions").fetchone()[0]
        return TrainingSnapshot(
            classes=classes,
            images=tuple(
                SnapshotImage(im, tuple(boxes.get(im.id, ())), tuple(regions.get(im.id, ())))
                for im in images
                if wanted is None or im.split in wanted
            ),
            last_action_id=last,
            taken=self._now(),
        )


def import_dataset(
    dataset: Dataset,
    project_dir: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    split_default: str = "pool",
) -> dict[str, Any]:
    """Import ``dataset`` into the project at ``project_dir`` (created if missing)."""
    with ProjectStore.open(project_dir, create=True) as store:
        return store.import_dataset(dataset, progress=progress, split_default=split_default)
