"""The store's schema: file constants, action kinds and the step-by-step migrations.

``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` upgrades a file step by step,
each step in its own transaction (:func:`migrate`). A file written by a newer napari-al is
refused with a clear :class:`~napari_al.core.store.rows.StoreError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from napari_al.core.data import BOX_STATUSES, REVIEW_STATES, RICH_ANSWERS, SPLITS
from napari_al.core.store.rows import StoreError

#: The store's file name inside the project directory.
STORE_FILENAME = "napari_al.sqlite"

#: ``PRAGMA application_id`` of a napari-al store ("naal"), so a foreign SQLite file is refused.
APPLICATION_ID = 0x6E61616C

#: A gap between two human actions longer than this (seconds) is idle time, not labelling cost:
#: the later action gets ``dt`` NULL. Five minutes: far above the 7-42 s a box takes to draw.
IDLE_CUTOFF_S = 300.0

#: How long a write waits for another connection's write transaction before giving up.
BUSY_TIMEOUT_S = 30.0

#: Action kinds written by the machine, not a person: ``dt`` NULL, not annotation cost.
MACHINE_KINDS = ("import", "predict", "add")

#: Box actions a person makes; each logs the box state before and after. ``click``: a centre
#: click that became a proposed box (payload also ``click``: the point, and ``method``).
#: ``part``, ``container``, ``several``: rich verification answers
#: (:data:`napari_al.core.data.RICH_ANSWERS`; payload also ``refined``: the proposed box, or
#: None).
BOX_ACTION_KINDS = (
    "accept",
    "reject",
    "correct",
    "draw",
    "delete",
    "set_class",
    "restore",
    "click",
    *RICH_ANSWERS,
)

#: The answer to a region question "any more <class> here?" (:mod:`napari_al.core.regions`):
#: payload ``answer`` (``yes``/``no``), ``region`` ``[x1, y1, x2, y2]``, ``class_id``,
#: ``expected``; a "no" also stores the region as a box (payload ``before``/``after``).
REGION_ACTION_KINDS = ("region",)

#: Review-state actions; payload ``{"before": state, "after": state}``.
REVIEW_ACTION_KINDS = ("complete", "review_state")

#: A person marked a region of an image complete (every object in it labelled; issue 14's
#: region-level completeness): payload ``region`` (its id), ``before`` None, ``after`` the
#: region's row, and ``review`` when the image's review state changed in the same action.
REGION_REVIEW_KINDS = ("complete_region",)

#: Kinds of the undo system's actions (:class:`~napari_al.core.annotator.Annotator`): the
#: subject put back into its state before (``undo``) or after (``redo``) action ``ref_id``.
UNDO_KINDS = ("undo", "redo")

#: Kinds :meth:`~napari_al.core.store.ProjectStore.restore_box` may log.
RESTORE_KINDS = ("restore", *UNDO_KINDS)

#: Kinds only the store itself writes; :meth:`ProjectStore.log_action` refuses them.
RESERVED_KINDS = (
    *BOX_ACTION_KINDS,
    *REVIEW_ACTION_KINDS,
    *MACHINE_KINDS,
    *REGION_ACTION_KINDS,
    *REGION_REVIEW_KINDS,
    *UNDO_KINDS,
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


#: Version 2: stored queries, a ranking (``napari-al rank``, the widget's rank job) kept so it
#: can be walked in the viewer after a restart. ``rank`` is the 0-based order of the items.
#: Items go with their image (ON DELETE CASCADE) and with their set.
_SCHEMA_V2 = """
CREATE TABLE query_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    model_version INTEGER,
    strategy TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE query_items (
    set_id INTEGER NOT NULL REFERENCES query_sets (id) ON DELETE CASCADE,
    rank INTEGER NOT NULL CHECK (rank >= 0),
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    unit TEXT NOT NULL CHECK (length(unit) > 0),
    score REAL NOT NULL,
    x1 REAL,
    y1 REAL,
    x2 REAL,
    y2 REAL,
    box_index INTEGER,
    breakdown TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (set_id, rank),
    CHECK ((x1 IS NULL) = (y1 IS NULL) AND (x1 IS NULL) = (x2 IS NULL)
           AND (x1 IS NULL) = (y2 IS NULL))
);
CREATE INDEX query_items_image ON query_items (image_id);
"""


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Version 2: the ``query_sets`` and ``query_items`` tables (stored queries)."""
    _run_script(conn, _SCHEMA_V2)


#: Version 3: reviewed regions (region-level completeness of large images, issue 14): the
#: rectangles of an image a person marked complete. They go with their image.
_SCHEMA_V3 = """
CREATE TABLE reviewed_regions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    x1 REAL NOT NULL,
    y1 REAL NOT NULL,
    x2 REAL NOT NULL,
    y2 REAL NOT NULL,
    created REAL NOT NULL,
    CHECK (x1 < x2 AND y1 < y2)
);
CREATE INDEX reviewed_regions_image ON reviewed_regions (image_id);
"""


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """Version 3: the ``reviewed_regions`` table (regions of an image marked complete)."""
    _run_script(conn, _SCHEMA_V3)


#: ``MIGRATIONS[i]`` upgrades a file from schema version ``i`` to ``i + 1`` inside one
#: transaction; append a function for each schema change, never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
]

#: The schema version this napari-al writes.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to the newest schema, one transaction per migration step.

    Raises :class:`StoreError` for a foreign SQLite file or one newer than :data:`MIGRATIONS`.
    """
    migrations = MIGRATIONS
    target = len(migrations)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = check_schema(conn)
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


def check_schema(conn: sqlite3.Connection) -> int:
    """The file's schema version (``PRAGMA user_version``), read without writing; raises
    :class:`StoreError` for a foreign SQLite file or one newer than :data:`MIGRATIONS`."""
    target = len(MIGRATIONS)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
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
    return version
