"""The project store: one SQLite file per project, the single source of truth.

Everything a project knows lives in ``<project_dir>/napari_al.sqlite``: images, classes, boxes
(model proposals and human labels alike, told apart by ``status``), ignore regions, reviewed
(complete) regions of large images (:meth:`ProjectStore.complete_region`), the
append-only log of user actions, model versions, cached acquisition scores and stored queries
(rankings kept to be walked after a restart: :meth:`ProjectStore.save_queries`,
:meth:`ProjectStore.latest_queries`, :meth:`ProjectStore.query_set`).

Durability. Every public method that writes is ONE transaction, committed before it returns.
The file runs in WAL mode with ``synchronous=FULL``: a commit is on disk (fsynced) before the
call returns, so neither a killed process nor a power cut loses an action that returned.
``foreign_keys`` is on, ``busy_timeout`` waits for other writers.

Transactions. :meth:`ProjectStore.transaction` groups writes: every store write inside
``with store.transaction():`` joins ONE SQLite transaction, committed once when the outermost
block exits (one fsync; other connections see all of it or nothing), and rolled back entirely
when an exception leaves the block (the exception is re-raised; a ``sqlite3.IntegrityError``
as :class:`StoreError`). Nested blocks join the outer one; each nested block and each write
method inside runs in a SAVEPOINT, so an exception caught inside the outer block undoes only
the part that raised. A process killed inside a block leaves none of it. Outside a block each
write method is its own transaction, as above. :attr:`ProjectStore.commit_count` counts the
``COMMIT`` statements a store object ran (for tests and benchmarks).

Threads. Prefer one :class:`ProjectStore` per thread: :meth:`ProjectStore.open` is cheap (a
few ms), and with WAL a reader (e.g. a training worker taking :meth:`training_snapshot`) never
blocks the GUI's writes nor sees half of one. A single store may also be shared between threads:
each method holds the store's lock for its whole transaction (a :meth:`ProjectStore.transaction`
block holds it for the whole block).

Schema versions. ``PRAGMA user_version`` is the schema version;
:data:`~napari_al.core.store.schema.MIGRATIONS` upgrades a file step by step, each step in its
own transaction. A file written by a newer napari-al is refused with a clear
:class:`StoreError`.

Action log and annotation cost. Each action row keeps its raw ``time`` (Unix seconds) and
``dt``, the seconds since the previous *human* action, or NULL for the first action and after
an idle gap longer than :data:`IDLE_CUTOFF_S` (the person was away; the time is not labelling
cost). Machine actions (:data:`MACHINE_KINDS`: import, predict, add) get ``dt`` NULL and are
not counted as predecessors. :meth:`ProjectStore.annotation_seconds` sums ``dt``, or recomputes
from the raw times with another cutoff.

Undo. The store has no undo of its own: the one undo system is the command stack of
:class:`napari_al.core.annotator.Annotator`. Box actions record the full box state before and
after (``payload = {"before": {...}, "after": {...}}``; ``None`` when the box does not exist),
review-state changes the old and new state; a box action that also changed its image's review
state (the Annotator marks an ``unseen`` image ``partial`` on the first box action) records it
in the same row, ``payload["review"] = {"before": ..., "after": ...}`` (the box methods'
``review_state=``). The Annotator undoes and redoes with
:meth:`ProjectStore.restore_box` and :meth:`ProjectStore.set_review_state` called with ``kind``
``undo``/``redo`` (:data:`UNDO_KINDS`) and ``ref_id`` the action undone or redone, so the log
stays a truthful record of the person's work. The log itself is append-only (triggers refuse
UPDATE and DELETE on it).

Long runs. :func:`project_lock` (:mod:`~napari_al.core.store.lock`) lets one long-running
writer (training, prediction, ranking) hold a project at a time; a second one gets
:class:`ProjectBusyError` at once, naming the holder. The workflow takes it.

Stdlib ``sqlite3`` (and the ``filelock`` library for the project lock); no Qt, no napari.
"""

from __future__ import annotations

from napari_al.core.store.access import ReadOnlyProjectError, folder_writable, not_writable_error
from napari_al.core.store.base import empty_store_error, is_empty_store, store_folder_error
from napari_al.core.store.lock import (
    HOLDER_FILENAME,
    LOCK_FILENAME,
    ProjectBusyError,
    holds_project_lock,
    lend_env,
    project_lock,
)
from napari_al.core.store.project_store import ProjectStore, import_dataset
from napari_al.core.store.rows import (
    BOX_TOLERANCE_PX,
    ActionRow,
    BoxRow,
    ClassRow,
    IgnoreRegionRow,
    ImageRow,
    ModelVersionRow,
    ReviewedRegionRow,
    SnapshotImage,
    StoredQuery,
    StoredQuerySet,
    StoreError,
    TrainingSnapshot,
    file_sha256,
)
from napari_al.core.store.schema import (
    APPLICATION_ID,
    BOX_ACTION_KINDS,
    BUSY_TIMEOUT_S,
    IDLE_CUTOFF_S,
    MACHINE_KINDS,
    REGION_ACTION_KINDS,
    REGION_REVIEW_KINDS,
    RESERVED_KINDS,
    REVIEW_ACTION_KINDS,
    SCHEMA_VERSION,
    STORE_FILENAME,
    UNDO_KINDS,
)

__all__ = [
    "APPLICATION_ID",
    "BOX_ACTION_KINDS",
    "BOX_TOLERANCE_PX",
    "BUSY_TIMEOUT_S",
    "HOLDER_FILENAME",
    "IDLE_CUTOFF_S",
    "LOCK_FILENAME",
    "MACHINE_KINDS",
    "REGION_ACTION_KINDS",
    "REGION_REVIEW_KINDS",
    "RESERVED_KINDS",
    "REVIEW_ACTION_KINDS",
    "SCHEMA_VERSION",
    "STORE_FILENAME",
    "UNDO_KINDS",
    "ActionRow",
    "BoxRow",
    "ClassRow",
    "IgnoreRegionRow",
    "ImageRow",
    "ModelVersionRow",
    "ProjectBusyError",
    "ProjectStore",
    "ReadOnlyProjectError",
    "ReviewedRegionRow",
    "SnapshotImage",
    "StoreError",
    "StoredQuery",
    "StoredQuerySet",
    "TrainingSnapshot",
    "empty_store_error",
    "file_sha256",
    "folder_writable",
    "holds_project_lock",
    "import_dataset",
    "is_empty_store",
    "lend_env",
    "not_writable_error",
    "project_lock",
    "store_folder_error",
]
