"""The project store: durability, atomicity, migrations, import, undo and the cost log."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import sql_commits, tagged_image

from napari_al.core import store as store_mod
from napari_al.core.annotator import Annotator, StaleCommand
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.selection import QueryItem
from napari_al.core.store import (
    IDLE_CUTOFF_S,
    SCHEMA_VERSION,
    STORE_FILENAME,
    BoxRow,
    ProjectStore,
    StoreError,
    file_sha256,
)
from napari_al.core.store import schema as store_schema

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "store_kill_child.py"
SHA = "ab" * 32


class FakeClock:
    """A settable clock for the cost-model tests."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with two classes and two 100x80 images (no files needed)."""
    d = tmp_path / "proj"
    with ProjectStore.create(d) as s:
        s.add_class("cat")
        s.add_class("dog")
        s.add_image(d / "a.png", SHA, 100, 80)
        s.add_image(d / "sub" / "b.png", "cd" * 32, 100, 80, split="train")
    return d


@pytest.fixture
def store(project: Path):
    with ProjectStore.open(project) as s:
        yield s


def same_box(a: BoxRow | None, b: BoxRow | None) -> bool:
    """Equal boxes, ignoring the ``updated`` time."""
    if a is None or b is None:
        return a is b
    da, db = a.to_dict(), b.to_dict()
    da.pop("updated")
    db.pop("updated")
    return da == db


# -- files, schema, migrations -------------------------------------------------------------


def test_create_open_reopen(tmp_path: Path) -> None:
    d = tmp_path / "new" / "proj"
    with pytest.raises(StoreError, match="no napari-al project store"):
        ProjectStore.open(d)
    with ProjectStore.create(d) as s:
        assert (d / STORE_FILENAME).is_file()
        assert s.schema_version() == SCHEMA_VERSION
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        cid = s.add_class("cell")
    with pytest.raises(StoreError, match="already exists"):
        ProjectStore.create(d)
    with ProjectStore.open(d) as s:
        assert [c.name for c in s.classes()] == ["cell"]
        assert s.class_id("cell") == cid
        assert s.integrity_check() == "ok"
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.classes()
    with ProjectStore.open(tmp_path / "other", create=True) as s2:
        assert s2.info()["images"] == 0


def test_newer_schema_version_is_refused(project: Path) -> None:
    raw = sqlite3.connect(project / STORE_FILENAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=r"newer than this napari-al supports"):
        ProjectStore.open(project)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("p").mkdir()
    raw = sqlite3.connect(tmp_path / "p" / STORE_FILENAME)
    raw.execute("CREATE TABLE stuff (x)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not a napari-al store"):
        ProjectStore.open(tmp_path / "p")
    tmp_path.joinpath("q").mkdir()
    tmp_path.joinpath("q", STORE_FILENAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError):
        ProjectStore.open(tmp_path / "q")


def test_migrations_upgrade_an_old_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def add_note_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE images ADD COLUMN note TEXT NOT NULL DEFAULT ''")
        conn.execute("UPDATE images SET note = 'migrated'")

    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, add_note_column])
    with ProjectStore.open(project) as s:
        assert s.schema_version() == SCHEMA_VERSION + 1
        notes = [r[0] for r in s._conn.execute("SELECT note FROM images")]
        assert notes == ["migrated", "migrated"]
        assert len(s.images()) == 2  # data survived
    # migrating twice is a no-op: the version is already current
    with ProjectStore.open(project) as s:
        assert s.schema_version() == SCHEMA_VERSION + 1


def test_failed_migration_rolls_back(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        ProjectStore.open(project)
    monkeypatch.undo()
    with ProjectStore.open(project) as s:
        assert s.schema_version() == SCHEMA_VERSION
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables


def test_action_log_is_append_only(store: ProjectStore) -> None:
    store.log_action("skip", 1)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store._conn.execute("UPDATE actions SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store._conn.execute("DELETE FROM actions")


# -- every action is one committed transaction ---------------------------------------------


def test_every_user_action_is_seen_by_a_second_connection(store: ProjectStore) -> None:
    d = store.project_dir
    cat, dog = store.class_id("cat"), store.class_id("dog")
    img = store.images()[0].id

    def other_sees(kind: str, box_id: int | None = None) -> ProjectStore:
        other = ProjectStore.open(d)
        last = other.actions()[-1]
        assert last.kind == kind
        assert last.id == store.last_action_id()
        if box_id is not None:
            assert last.box_id == box_id
        return other

    box = store.draw_box(img, (10, 10, 30, 40), cat)
    with other_sees("draw", box) as o:
        assert o.box(box).status == "drawn" and o.box(box).source == "human"

    pred = store.add_box(img, (1, 1, 5, 5), dog, "predicted", score=0.7, source="model")
    with other_sees("add", pred) as o:
        assert o.box(pred).status == "predicted" and o.box(pred).score == pytest.approx(0.7)

    store.accept_box(pred)
    with other_sees("accept", pred) as o:
        assert o.box(pred).status == "accepted"

    store.reject_box(pred)
    with other_sees("reject", pred) as o:
        assert o.box(pred).status == "rejected"

    store.correct_box(pred, xyxy=(2, 2, 6, 7))
    with other_sees("correct", pred) as o:
        assert o.box(pred).xyxy == (2, 2, 6, 7) and o.box(pred).status == "corrected"

    store.set_box_class(box, dog)
    with other_sees("set_class", box) as o:
        assert o.box(box).class_id == dog and o.box(box).status == "drawn"

    before = store.box(box)
    store.delete_box(box)
    with other_sees("delete", box) as o:
        assert o.boxes(image_id=img, statuses=["drawn"]) == []

    store.restore_box(box, before)
    with other_sees("restore", box) as o:
        assert same_box(o.box(box), before)

    store.set_review_state(img, "partial")
    with other_sees("review_state") as o:
        assert o.image(img).review_state == "partial"

    ann = Annotator(store)  # the undo system
    delete = ann.delete(box)
    with other_sees("delete", box) as o:
        assert o.boxes(statuses="drawn") == []

    ann.undo()
    with other_sees("undo", box) as o:
        assert same_box(o.box(box), before)
        assert o.actions()[-1].ref_id == delete.action_id

    ann.redo()
    with other_sees("redo", box) as o:
        assert o.boxes(statuses="drawn") == []
        assert o.actions()[-1].ref_id == delete.action_id

    store.set_review_state(img, "complete")
    with other_sees("complete") as o:
        assert o.image(img).review_state == "complete"

    store.set_split(img, "val")
    with other_sees("set_split") as o:
        assert o.image(img).split == "val"

    region = store.add_ignore_region(img, (0, 0, 10, 10))
    with other_sees("ignore") as o:
        assert [r.id for r in o.ignore_regions(img)] == [region]

    store.delete_ignore_region(region)
    with other_sees("delete_ignore") as o:
        assert o.ignore_regions(img) == []

    store.replace_predictions(img, [((3, 3, 9, 9), cat, 0.9)], model_version=1)
    with other_sees("predict") as o:
        assert len(o.boxes(image_id=img, statuses="predicted")) == 1

    store.log_action("skip", img)
    with other_sees("skip") as o:
        assert o.actions(kind="skip")[0].image_id == img


def _check_boxes_match_log(s: ProjectStore) -> None:
    """Every box equals the 'after' state of the newest logged action that touched it, and
    every image's review state the newest logged review change (a box action's ``review``)."""
    last_state: dict[int, dict | None] = {}
    reviews: dict[int, str] = {}
    for a in s.actions():
        if a.box_id is not None and "after" in a.payload:
            last_state[a.box_id] = a.payload["after"]
            if "review" in a.payload:
                reviews[a.image_id] = a.payload["review"]["after"]
        elif a.image_id is not None and isinstance(a.payload.get("after"), str):
            reviews[a.image_id] = a.payload["after"]
    current = {b.id: b.to_dict() for b in s.boxes()}
    assert set(current) == {k for k, v in last_state.items() if v is not None}
    for box_id, state in current.items():
        expected = dict(last_state[box_id])
        assert expected.pop("updated") <= state.pop("updated")
        assert state == expected, f"box {box_id} does not match its last action"
    for image in s.images():
        assert image.review_state == reviews.get(image.id, "unseen"), f"image {image.id}"


def _check_batches_are_whole(s: ProjectStore) -> int:
    """Every ``batch_start`` of the child is followed by its 3 draws and its ``batch_end``
    (one transaction: all five rows or none). Returns the number of batches."""
    log = s.actions()
    starts = [i for i, a in enumerate(log) if a.kind == "batch_start"]
    for i in starts:
        rows = log[i : i + 5]
        kinds = [a.kind for a in rows]
        assert kinds == ["batch_start", "draw", "draw", "draw", "batch_end"], kinds
        assert rows[0].payload == rows[-1].payload
        assert [a.id for a in rows] == list(range(rows[0].id, rows[0].id + 5))
    assert len(starts) == len(s.actions(kind="batch_end"))
    return len(starts)


def test_kill_loses_no_returned_action(project: Path) -> None:
    """SIGKILL a writer at random moments: every action it reported survives, file is sound."""
    rng = random.Random(20240611)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    printed: list[int] = []
    kills = 10
    batches = 0
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(project), str(k), "100000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            for _ in range(rng.randint(1, 25)):
                line = proc.stdout.readline()
                assert line, f"child died early: {proc.stderr.read()}"
                printed.append(int(line))
            time.sleep(rng.uniform(0, 0.004))  # land inside a later transaction
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        with ProjectStore.open(project) as s:
            assert s.integrity_check() == "ok"
            ids = {a.id for a in s.actions()}
            missing = set(printed) - ids
            assert not missing, f"kill {k}: actions {sorted(missing)} were lost"
            _check_boxes_match_log(s)
            batches += _check_batches_are_whole(s)
    assert len(printed) >= kills
    assert batches > 0, "no batch transaction ran"


def test_kill_inside_a_transaction_leaves_nothing(project: Path) -> None:
    """SIGKILL while a transaction() block is open after three writes: none of them is kept."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with ProjectStore.open(project) as s:
        before = _state(s)
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(project), "0", "1", "hang"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line == "inside\n", f"child died early: {proc.stderr.read()}"
        raw = sqlite3.connect(project / STORE_FILENAME)  # a reader is not blocked (WAL)
        try:  # nothing of the open block is visible
            assert raw.execute("SELECT count(*) FROM actions").fetchone()[0] == len(before[1])
            assert raw.execute("SELECT count(*) FROM boxes").fetchone()[0] == len(before[2])
        finally:
            raw.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with ProjectStore.open(project) as s:
        assert s.integrity_check() == "ok"
        assert _state(s) == before
        s.draw_box(s.images()[0].id, (0, 0, 4, 4), s.class_id("cat"))  # the lock is free


# -- transactions -------------------------------------------------------------------------


def test_transaction_commits_once(store: ProjectStore) -> None:
    cat = store.class_id("cat")
    img = store.images()[0].id
    with ProjectStore.open(store.project_dir) as other:
        n = store.commit_count
        with sql_commits(store) as commits:
            with store.transaction():
                b = store.draw_box(img, (0, 0, 10, 10), cat)
                store.accept_box(b)
                store.set_review_state(img, "complete")
                assert store.box(b).status == "accepted"  # the block sees its own writes
                assert other.boxes() == [] and other.actions() == []  # nobody else does
            assert len(commits) == 1
        assert store.commit_count == n + 1
        assert [a.kind for a in other.actions()] == ["draw", "accept", "complete"]
        assert other.box(b).status == "accepted"
    # outside a block each write is its own transaction, as before
    with sql_commits(store) as commits:
        store.reject_box(b)
        store.set_review_state(img, "partial")
    assert len(commits) == 2


def test_transaction_rolls_back_everything_on_error(store: ProjectStore) -> None:
    cat = store.class_id("cat")
    img = store.images()[0].id
    before = _state(store)
    with (
        sql_commits(store) as commits,
        pytest.raises(RuntimeError, match="changed my mind"),
        store.transaction(),
    ):
        b = store.draw_box(img, (0, 0, 10, 10), cat)
        store.accept_box(b)
        store.set_review_state(img, "complete")
        raise RuntimeError("changed my mind")
    assert commits == []
    assert _state(store) == before
    # a constraint failure inside a block is a StoreError and rolls back the block too
    with pytest.raises(StoreError, match="rejected by the store"), store.transaction():
        store.draw_box(img, (0, 0, 10, 10), cat)
        store._conn.execute("INSERT INTO boxes (image_id) VALUES (1)")
    assert _state(store) == before
    with ProjectStore.open(store.project_dir) as other:
        assert _state(other) == before


def test_nested_transactions_commit_once(store: ProjectStore) -> None:
    cat, dog = store.class_id("cat"), store.class_id("dog")
    img = store.images()[0].id
    with sql_commits(store) as commits:
        with store.transaction():
            a = store.draw_box(img, (0, 0, 10, 10), cat)
            with store.transaction():
                b = store.draw_box(img, (5, 5, 15, 15), dog)
                with store.transaction():
                    store.accept_box(b)
            # an error caught inside the outer block undoes only the nested block that raised
            with pytest.raises(StoreError), store.transaction():
                store.set_box_class(a, dog)
                store.accept_box(12345)
            assert store.box(a).class_id == cat
            store.reject_box(a)
        assert len(commits) == 1
    assert [x.kind for x in store.actions()] == ["draw", "draw", "accept", "reject"]
    assert (store.box(a).status, store.box(b).status) == ("rejected", "accepted")
    # an error leaving the outermost block rolls back the nested blocks too
    before = _state(store)
    with pytest.raises(KeyError), store.transaction():
        with store.transaction():
            store.delete_box(a)
        store.delete_box(b)
        raise KeyError("oops")
    assert _state(store) == before


def test_failed_write_outside_a_block_commits_nothing(store: ProjectStore) -> None:
    with sql_commits(store) as commits, pytest.raises(StoreError):
        store.accept_box(12345)
    assert commits == []


# -- import -------------------------------------------------------------------------------


def _make_dataset(root: Path, n: int = 5, bad: int | None = None) -> Dataset:
    """n images on disk (64x48 PNGs, content from the path); even ones annotated with one box
    each; image ``bad`` has split 'foo'."""
    root.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        p = tagged_image(root / f"img{i}.png")
        annotated = i % 2 == 0
        boxes = [BoxRecord(1, 2, 11, 12, "rbc" if i else "wbc")] if annotated else []
        images.append(
            ImageRecord(
                path=p,
                width=64,
                height=48,
                boxes=boxes,
                annotated=annotated,
                split="foo" if i == bad else None,
            )
        )
    return Dataset(classes=["rbc", "wbc"], images=images, source=str(root))


def _state(s: ProjectStore) -> tuple:
    info = s.info()
    return (info, s.actions(), s.boxes(), s.images(), s.classes())


def test_import_dataset(project: Path) -> None:
    ds = _make_dataset(project / "data", n=5)
    ds.images[4].split = "test"
    calls: list[tuple[int, int]] = []
    with ProjectStore.open(project) as s:
        summary = s.import_dataset(ds, progress=lambda d, t: calls.append((d, t)))
        assert summary["images_added"] == 5 and summary["boxes_added"] == 3
        assert summary["classes_added"] == ["rbc", "wbc"]
        assert calls[0] == (0, 5) and calls[-1] == (5, 5)
        row = s.image_by_path(ds.images[0].path)
        assert row is not None and row.path == "data/img0.png"
        assert row.sha256 == hashlib.sha256(ds.images[0].path.read_bytes()).hexdigest()
        assert s.abs_path(row) == ds.images[0].path
        assert (row.review_state, row.split) == ("complete", "train")
        un = s.image_by_path(ds.images[1].path)
        assert (un.review_state, un.split) == ("unseen", "pool")
        assert s.image_by_path(ds.images[4].path).split == "test"
        boxes = s.boxes(image_id=row.id)
        assert [(b.status, b.source, b.xyxy) for b in boxes] == [
            ("accepted", "import", (1, 2, 11, 12))
        ]
        assert boxes[0].class_id == s.class_id("wbc")
        assert [a.kind for a in s.actions()] == ["import"]
        # the same images again are skipped untouched, and a new one is added
        s.correct_box(boxes[0].id, xyxy=(5, 5, 20, 20))
        ds2 = _make_dataset(project / "data", n=6)
        summary2 = s.import_dataset(ds2)
        assert summary2["images_added"] == 1 and summary2["images_skipped"] == 5
        assert s.box(boxes[0].id).xyxy == (5, 5, 20, 20)
        assert len(s.actions(kind="import")) == 2


def test_import_outside_project_stores_absolute_path(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path / "elsewhere", n=1)
    summary = store_mod.import_dataset(ds, tmp_path / "proj")
    assert summary["images_added"] == 1
    with ProjectStore.open(tmp_path / "proj") as s:
        row = s.images()[0]
        assert row.path == (tmp_path / "elsewhere" / "img0.png").resolve().as_posix()
        assert s.abs_path(row) == ds.images[0].path


def test_import_is_all_or_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ProjectStore.open(project) as s:
        before = _state(s)
        # a bad split on the 4th image
        with pytest.raises(StoreError, match=r"image 3 .*unknown split 'foo'"):
            s.import_dataset(_make_dataset(project / "d1", n=5, bad=3))
        assert _state(s) == before
        # a box outside its image on the 3rd
        ds = _make_dataset(project / "d2", n=5)
        ds.images[2].boxes.append(BoxRecord(50, 40, 70, 47, "rbc"))
        with pytest.raises(StoreError, match="outside"):
            s.import_dataset(ds)
        assert _state(s) == before
        # a failure in the middle of the write transaction itself
        calls = {"n": 0}
        real_insert = ProjectStore._insert_box

        def failing_insert(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise StoreError("disk on fire")
            return real_insert(self, *args, **kwargs)

        monkeypatch.setattr(ProjectStore, "_insert_box", failing_insert)
        with pytest.raises(StoreError, match="disk on fire"):
            s.import_dataset(_make_dataset(project / "d4", n=5))
        monkeypatch.undo()
        assert _state(s) == before
    with ProjectStore.open(project) as s:
        assert _state(s) == before


# -- predictions, info, scores ------------------------------------------------------------


def test_replace_predictions_never_touches_human_boxes(store: ProjectStore) -> None:
    cat, dog = store.class_id("cat"), store.class_id("dog")
    img = store.images()[0].id
    other_img = store.images()[1].id
    first = store.replace_predictions(
        img, [((0, 0, 10, 10), cat, 0.9), ((20, 20, 30, 30), dog, 0.4)], model_version=1
    )
    other_pred = store.replace_predictions(other_img, [((0, 0, 5, 5), cat, 0.5)], 1)
    store.accept_box(first[0])
    rejected = store.add_box(img, (40, 40, 50, 50), cat, "predicted", 0.3, "model", 1)
    store.reject_box(rejected)
    drawn = store.draw_box(img, (60, 10, 90, 70), dog)
    pseudo = store.add_box(img, (1, 1, 3, 3), dog, "pseudo", 0.99, "model", 1)
    keep = {b.id: b for b in store.boxes(image_id=img) if b.status != "predicted"}
    assert set(keep) == {first[0], rejected, drawn, pseudo}

    new = store.replace_predictions(img, [((5, 5, 15, 15), dog, 0.8)], model_version=2)
    after = store.boxes(image_id=img)
    assert {b.id: b for b in after if b.status != "predicted"} == keep
    preds = [b for b in after if b.status == "predicted"]
    assert [b.id for b in preds] == new and preds[0].model_version == 2
    assert preds[0].source == "model" and preds[0].score == pytest.approx(0.8)
    assert first[1] not in {b.id for b in after}
    assert [b.id for b in store.boxes(image_id=other_img)] == other_pred  # other image intact
    log = store.actions(kind="predict")[-1]
    assert log.payload["removed"] == [first[1]] and log.payload["added"] == new
    # a bad prediction aborts the whole replacement
    with pytest.raises(StoreError, match="outside"):
        store.replace_predictions(img, [((0, 0, 5, 5), cat, 0.1), ((0, 0, 500, 5), cat, 0.1)], 3)
    assert store.boxes(image_id=img) == after


def test_info_counts(store: ProjectStore) -> None:
    cat, dog = store.class_id("cat"), store.class_id("dog")
    a, b = (im.id for im in store.images())
    store.draw_box(a, (0, 0, 10, 10), cat)
    store.draw_box(a, (0, 0, 10, 10), dog)
    store.replace_predictions(b, [((0, 0, 5, 5), cat, 0.5)] * 3, 1)
    store.set_review_state(a, "complete")
    store.add_model_version("models/v1.pt", "fasterrcnn", {"map50": 0.5})
    info = store.info()
    assert info["images"] == 2 and info["boxes"] == 5
    assert info["classes"] == ["cat", "dog"]
    assert info["boxes_by_status"]["drawn"] == 2 and info["boxes_by_status"]["predicted"] == 3
    assert info["boxes_by_status"]["accepted"] == 0
    assert info["boxes_by_class"] == {"cat": 4, "dog": 1}
    assert info["images_by_split"] == {"pool": 1, "train": 1, "val": 0, "test": 0}
    assert info["images_by_review_state"] == {"unseen": 1, "partial": 0, "complete": 1}
    assert info["model_versions"] == 1
    assert info["annotation_seconds"] == pytest.approx(store.annotation_seconds())
    import json

    json.dumps(info)  # JSON-ready for the CLI


def test_model_versions_and_score_cache(store: ProjectStore) -> None:
    assert store.latest_model_version() is None
    v1 = store.add_model_version(store.project_dir / "models" / "v1.pt", "frcnn", {"map": 0.1})
    v2 = store.add_model_version("models/v2.pt", "frcnn", note="second")
    store.set_model_metrics(v2, {"map": 0.3})
    latest = store.latest_model_version()
    assert latest.id == v2 and latest.metrics == {"map": 0.3} and latest.note == "second"
    assert [m.path for m in store.model_versions()] == ["models/v1.pt", "models/v2.pt"]
    assert store.abs_path(store.model_versions()[0]) == store.project_dir / "models" / "v1.pt"

    assert store.get_scores(SHA, v1, "entropy") is None
    payload = bytes(range(256)) * 10
    store.put_scores(SHA, v1, "entropy", payload)
    assert store.get_scores(SHA, v1, "entropy") == payload
    assert store.get_scores(SHA, v2, "entropy") is None
    assert store.get_scores(SHA, v1, "margin") is None
    store.put_scores(SHA, v1, "entropy", b"new")  # overwrite
    store.put_scores_many([(SHA, 0, "random", b"r"), ("ef" * 32, v2, "entropy", b"x")])
    with ProjectStore.open(store.project_dir) as other:
        assert other.get_scores(SHA, v1, "entropy") == b"new"
        assert other.get_scores(SHA, 0, "random") == b"r"
    assert store.clear_scores(v1) == 1
    assert store.get_scores(SHA, v1, "entropy") is None
    assert store.clear_scores() == 2


# -- stored queries -----------------------------------------------------------------------


def _queries(img_a: int, img_b: int) -> list[QueryItem]:
    return [
        QueryItem(image=img_b, score=2.5, breakdown={"entropy": 1.5, "margin": 1.0}),
        QueryItem(image=img_a, score=1.25, unit="box", box=(1.0, 2.0, 30.5, 40.0), index=3),
        QueryItem(image=img_a, score=0.5, unit="box", box=(5.0, 5.0, 9.0, 9.0), index=0),
    ]


def test_stored_queries_survive_a_restart(store: ProjectStore) -> None:
    a, b = (im.id for im in store.images())
    assert store.latest_queries() is None
    items = _queries(a, b)
    settings = {"strategy": "entropy", "unit": "box", "budget": 3, "diversity": None}
    set_id = store.save_queries(items, model_version=4, settings=settings)
    saved = store.query_set(set_id)
    d = store.project_dir
    store.close()
    with ProjectStore.open(d) as s:
        got = s.latest_queries()
        assert got == saved == s.query_set(set_id)
        assert (got.id, got.model_version, got.settings) == (set_id, 4, settings)
        assert (got.strategy, got.unit) == ("entropy", "mixed")
        assert [q.rank for q in got.items] == [0, 1, 2]
        for q, item in zip(got.items, items, strict=True):
            assert (q.image_id, q.unit, q.score, q.box, q.box_index, q.breakdown) == (
                item.image,
                item.unit,
                item.score,
                item.box,
                item.index,
                item.breakdown,
            )
            assert (q.image, q.index) == (item.image, item.index)  # reads like a QueryItem
        assert s.info()["query_sets"] == 1


def test_latest_queries_is_the_newest(store: ProjectStore) -> None:
    a, b = (im.id for im in store.images())
    first = store.save_queries(_queries(a, b), model_version=None, settings={"strategy": "x"})
    second = store.save_queries(_queries(b, a)[:1], model_version=2, settings={})
    latest = store.latest_queries()
    assert latest.id == second > first and latest.model_version == 2
    assert [q.image_id for q in latest.items] == [a]
    assert (latest.strategy, latest.unit) == ("", "image")
    assert len(store.query_set(first).items) == 3
    empty = store.save_queries([], model_version=None, settings={"unit": "region"})
    assert store.latest_queries() == store.query_set(empty)
    assert (store.query_set(empty).items, store.query_set(empty).unit) == ((), "region")
    with pytest.raises(StoreError, match="query set 999 does not exist"):
        store.query_set(999)


def test_save_queries_refuses_bad_items(store: ProjectStore) -> None:
    a, b = (im.id for im in store.images())
    good = _queries(a, b)
    with pytest.raises(StoreError, match="images not in the project: 77"):
        store.save_queries([*good, QueryItem(image=77, score=1.0)], model_version=1, settings={})
    with pytest.raises(StoreError, match="query item 0: score is NaN"):
        store.save_queries([QueryItem(image=a, score=float("nan"))], model_version=1, settings={})
    with pytest.raises(StoreError, match="query item 1: box must be 4"):
        store.save_queries(
            [good[0], QueryItem(image=a, score=1.0, box=(1, 2, 3))], model_version=1, settings={}
        )
    with pytest.raises(StoreError, match="image id must be an integer"):
        store.save_queries([QueryItem(image="a.png", score=1.0)], model_version=1, settings={})
    with pytest.raises(StoreError, match="not JSON-ready"):
        store.save_queries(good, model_version=1, settings={"f": object()})
    assert store.latest_queries() is None  # nothing half-stored
    assert store._conn.execute("SELECT count(*) FROM query_items").fetchone()[0] == 0


def test_stored_queries_take_numpy_values(store: ProjectStore) -> None:
    import numpy as np

    a = np.int64(store.images()[0].id)
    item = QueryItem(
        image=a,
        score=np.float32(0.75),
        unit="region",
        box=np.array([1, 2, 3, 4], np.float32),
        breakdown={"entropy": np.float64(0.5)},
    )
    got = store.query_set(store.save_queries([item], model_version=np.int64(1), settings={}))
    q = got.items[0]
    assert (q.image_id, q.score, q.box, q.breakdown) == (
        int(a),
        0.75,
        (1, 2, 3, 4),
        {"entropy": 0.5},
    )
    assert got.model_version == 1


def test_query_items_go_with_their_image(store: ProjectStore) -> None:
    """Images have no delete method; should one be deleted, its query items go with it."""
    a, b = (im.id for im in store.images())
    set_id = store.save_queries(_queries(a, b), model_version=None, settings={})
    with store._write() as conn:
        conn.execute("DELETE FROM images WHERE id = ?", (a,))
    assert [q.image_id for q in store.query_set(set_id).items] == [b]
    assert store.integrity_check() == "ok"


def test_version_1_store_migrates_to_stored_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written before stored queries (schema 1) opens, migrates and keeps its data."""
    d = tmp_path / "old"
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:1])
    with ProjectStore.create(d) as s:
        assert s.schema_version() == 1
        cat = s.add_class("cat")
        img = s.add_image("a.png", SHA, 100, 80)
        box = s.draw_box(img, (1, 1, 9, 9), cat)
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "query_sets" not in tables
    monkeypatch.undo()
    with ProjectStore.open(d) as s:
        assert s.schema_version() == SCHEMA_VERSION >= 2
        assert s.box(box).xyxy == (1, 1, 9, 9) and [a.kind for a in s.actions()] == ["draw"]
        assert s.latest_queries() is None
        set_id = s.save_queries([QueryItem(image=img, score=1.0)], model_version=None, settings={})
        assert s.query_set(set_id).items[0].image_id == img
        assert s.integrity_check() == "ok"


# -- undo / redo and the cost log ---------------------------------------------------------


def test_undo_redo_restores_state(store: ProjectStore) -> None:
    """Undo and redo (the Annotator's command stack, the one undo system) put back every
    logged state, each step a logged ``undo``/``redo`` action that survives a reopen."""
    cat, dog = store.class_id("cat"), store.class_id("dog")
    img = store.images()[0].id
    ann = Annotator(store)
    assert ann.undo() is None and ann.redo() is None
    pred = store.replace_predictions(img, [((0, 0, 10, 10), cat, 0.6)], 1)[0]
    history: list[tuple[BoxRow | None, BoxRow | None, str]] = []

    def snap() -> tuple[BoxRow | None, BoxRow | None, str]:
        b = store.boxes(image_id=img)
        by_id = {x.id: x for x in b}
        drawn = [x for x in b if x.status == "drawn"]
        return by_id.get(pred), drawn[0] if drawn else None, store.image(img).review_state

    history.append(snap())
    ann.accept(pred)
    history.append(snap())
    ann.correct(pred, (1, 1, 12, 12), class_id=dog)
    history.append(snap())
    drawn = ann.draw(img, (20, 20, 40, 40), cat).box_id
    history.append(snap())
    ann.set_class(drawn, dog)
    history.append(snap())
    ann.complete_image(img)
    history.append(snap())
    ann.delete(pred)
    history.append(snap())

    def same(a, b) -> bool:
        return same_box(a[0], b[0]) and same_box(a[1], b[1]) and a[2] == b[2]

    # undo everything, one step at a time
    for i in range(len(history) - 1, 0, -1):
        undone = ann.undo()
        assert undone is not None
        assert same(snap(), history[i - 1]), f"undo to step {i - 1}"
    assert ann.undo() is None  # 'predict' is a machine action: not undoable
    # redo everything
    for i in range(1, len(history)):
        assert ann.redo() is not None
        assert same(snap(), history[i]), f"redo to step {i}"
    assert ann.redo() is None
    # undo twice, then a new action clears the redo stack
    ann.undo()
    ann.undo()
    assert same(snap(), history[-3])
    ann.reject(pred)
    assert ann.redo() is None
    assert store.box(pred).status == "rejected"
    assert ann.undo().kind == "reject"
    assert same(snap(), history[-3])
    # the undone/redone state survives a reopen, and the log says what happened
    with ProjectStore.open(store.project_dir) as other:
        assert same_box(other.box(pred), history[-3][0])
        last = other.actions()[-1]
        assert last.kind == "undo" and last.ref_id == other.actions(kind="reject")[-1].id
    assert store.integrity_check() == "ok"
    _check_boxes_match_log(store)


def test_stale_undo_changes_nothing(store: ProjectStore) -> None:
    """An undo whose subject changed through another path is refused, the store untouched."""
    cat = store.class_id("cat")
    img = store.images()[0].id
    ann = Annotator(store)
    box = ann.draw(img, (0, 0, 10, 10), cat).box_id
    with ProjectStore.open(store.project_dir) as other:
        other.correct_box(box, xyxy=(1, 1, 5, 5))
    before = _state(store)
    with pytest.raises(StaleCommand):
        ann.undo()
    assert _state(store) == before


def test_restore_box_is_a_logged_inverse(store: ProjectStore) -> None:
    cat = store.class_id("cat")
    img = store.images()[0].id
    box = store.draw_box(img, (1, 1, 5, 5), cat)
    old = store.box(box)
    store.correct_box(box, xyxy=(2, 2, 9, 9))
    aid = store.restore_box(box, old)
    assert same_box(store.box(box), old)
    action = store.actions()[-1]
    assert action.id == aid and action.kind == "restore"
    assert action.payload["before"]["x2"] == 9 and action.payload["after"]["x2"] == 5
    store.restore_box(box, None)  # undo of a draw
    with pytest.raises(StoreError, match=f"box {box} does not exist"):
        store.box(box)
    store.restore_box(box, old)  # redo of a draw: same id again
    assert same_box(store.box(box), old)
    with pytest.raises(StoreError, match="cannot restore"):
        store.restore_box(box + 1, old)
    # the undo system logs its restores as undo/redo of an earlier action
    uid = store.restore_box(box, None, kind="undo", ref_id=aid)
    undo = store.actions()[-1]
    assert (undo.id, undo.kind, undo.box_id, undo.ref_id) == (uid, "undo", box, aid)
    rid = store.set_review_state(img, "complete", kind="redo", ref_id=uid)
    redo = store.actions()[-1]
    assert (redo.id, redo.kind, redo.ref_id, redo.payload) == (
        rid,
        "redo",
        uid,
        {"before": "unseen", "after": "complete"},
    )
    with pytest.raises(StoreError, match="unknown restore kind"):
        store.restore_box(box, old, kind="accept")
    with pytest.raises(StoreError, match="unknown review action kind"):
        store.set_review_state(img, "partial", kind="restore")
    with pytest.raises(StoreError, match="written by the store"):
        store.log_action("undo", img)


def test_dt_and_annotation_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    with ProjectStore.create(tmp_path / "p", clock=clock) as s:
        cat = s.add_class("cat")
        img = s.add_image("a.png", SHA, 50, 50)
        b = s.draw_box(img, (0, 0, 5, 5), cat)  # first action: dt NULL
        clock.t += 4
        s.accept_box(b)  # dt 4
        clock.t += 100
        s.replace_predictions(img, [((0, 0, 3, 3), cat, 0.5)], 1)  # machine: dt NULL
        clock.t += 2
        s.reject_box(b)  # dt 102: since the last *human* action
        clock.t += IDLE_CUTOFF_S + 1
        s.set_review_state(img, "complete")  # idle gap: dt NULL
        clock.t += 7.5
        s.log_action("skip", img)  # dt 7.5
        dts = [(a.kind, a.dt) for a in s.actions()]
        assert dts == [
            ("draw", None),
            ("accept", 4),
            ("predict", None),
            ("reject", 102),
            ("complete", None),
            ("skip", 7.5),
        ]
        assert s.annotation_seconds() == pytest.approx(113.5)
        # recomputed from raw times with another cutoff
        assert s.annotation_seconds(idle_cutoff_s=10) == pytest.approx(11.5)
        assert s.annotation_seconds(idle_cutoff_s=1e9) == pytest.approx(113.5 + IDLE_CUTOFF_S + 1)
        assert s.info()["annotation_seconds"] == pytest.approx(113.5)


# -- errors, paths ------------------------------------------------------------------------


def test_errors_are_clear(store: ProjectStore) -> None:
    cat = store.class_id("cat")
    img = store.images()[0].id
    with pytest.raises(StoreError, match="box 12345 does not exist"):
        store.accept_box(12345)
    with pytest.raises(StoreError, match="image 999 does not exist"):
        store.draw_box(999, (0, 0, 1, 1), cat)
    with pytest.raises(StoreError, match="unknown split 'foo'"):
        store.set_split(img, "foo")
    with pytest.raises(StoreError, match="unknown split 'foo'"):
        store.images(split="foo")
    with pytest.raises(StoreError, match="unknown review state"):
        store.set_review_state(img, "done")
    with pytest.raises(StoreError, match="unknown class 'bird'"):
        store.class_id("bird")
    with pytest.raises(StoreError, match="class 77 does not exist"):
        store.draw_box(img, (0, 0, 1, 1), 77)
    with pytest.raises(StoreError, match="class 'cat' already exists"):
        store.add_class("cat")
    with pytest.raises(StoreError, match="outside the 100x80 image"):
        store.draw_box(img, (0, 0, 101, 10), cat)
    with pytest.raises(StoreError, match="empty"):
        store.draw_box(img, (5, 5, 5, 10), cat)
    with pytest.raises(StoreError, match="finite"):
        store.draw_box(img, (0, 0, float("nan"), 10), cat)
    with pytest.raises(StoreError, match="unknown box status"):
        store.add_box(img, (0, 0, 1, 1), cat, "maybe")
    with pytest.raises(StoreError, match="written by the store"):
        store.log_action("accept", img)
    with pytest.raises(StoreError, match="already in the project"):
        store.add_image("a.png", SHA, 10, 10)
    with pytest.raises(StoreError, match="needs"):
        store.correct_box(1)
    # within half a pixel: clamped, not refused
    b = store.draw_box(img, (-0.3, 0, 100.2, 80.4), cat)
    assert store.box(b).xyxy == (0, 0, 100, 80)
    # nothing half-written by the failures above
    assert [a.kind for a in store.actions()] == ["draw"]


def test_paths_and_lookup(store: ProjectStore, tmp_path: Path) -> None:
    d = store.project_dir
    rows = store.images()
    assert [r.path for r in rows] == ["a.png", "sub/b.png"]
    assert store.image_by_path(d / "sub" / "b.png") == rows[1]
    assert store.image_by_path("sub/b.png") == rows[1]
    assert store.image_by_path(d / "nope.png") is None
    assert store.abs_path(rows[1]) == d / "sub" / "b.png"
    outside = store.add_image(tmp_path / "x" / "c.png", SHA, 5, 5)
    assert store.image(outside).path == (tmp_path / "x" / "c.png").as_posix()
    assert store.abs_path(store.image(outside)) == tmp_path / "x" / "c.png"
    assert [r.id for r in store.images(split="train")] == [rows[1].id]
    assert [r.id for r in store.images(review_state="unseen")] == [r.id for r in store.images()]


def test_file_sha256_streams(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 + 17)
    p.write_bytes(data)
    assert file_sha256(p, chunk_size=1000) == hashlib.sha256(data).hexdigest()


# -- threads ------------------------------------------------------------------------------


def test_snapshots_are_consistent_while_the_gui_writes(store: ProjectStore) -> None:
    """A worker thread with its own connection sees each snapshot as of one moment.

    The main thread alternates ``replace_predictions`` (model version i) and ``draw_box``;
    every snapshot's boxes must agree with the action log up to its ``last_action_id``.
    """
    cat = store.class_id("cat")
    img = store.images()[0].id
    store.replace_predictions(img, [((i, i, i + 5, i + 5), cat, 0.5) for i in range(5)], 0)
    errors: list[BaseException] = []
    seen: list[tuple[int, set[int | None], int, int]] = []
    stop = threading.Event()
    ready = threading.Event()

    def worker() -> None:
        try:
            with ProjectStore.open(store.project_dir) as mine:
                ready.set()
                while not (stop.is_set() and seen):
                    snap = mine.training_snapshot()
                    im = next(s for s in snap.images if s.image.id == img)
                    preds = [b for b in im.boxes if b.status == "predicted"]
                    versions = {b.model_version for b in preds}
                    n_drawn = len(im.boxes_with_status(["drawn"]))
                    seen.append((snap.last_action_id, versions, len(preds), n_drawn))
        except BaseException as exc:
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(10)
    try:
        for i in range(1, 31):
            preds = [((i % 7, 1, i % 7 + 5 + k, 9), cat, 0.1 * k) for k in range(5)]
            store.replace_predictions(img, preds, i)
            store.draw_box(img, (1, 1, 2 + i % 50, 3), cat)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors[0]
    assert seen, "the worker took no snapshot"
    log = store.actions()
    for last_id, versions, n_preds, n_drawn in seen:
        upto = [a for a in log if a.id <= last_id]
        version = [a for a in upto if a.kind == "predict"][-1].payload["model_version"]
        assert n_preds == 5, f"torn snapshot: {n_preds} predictions"
        assert versions == {version}, f"snapshot at action {last_id}: predictions {versions}"
        assert n_drawn == sum(a.kind == "draw" for a in upto), f"snapshot at action {last_id}"


def test_one_store_shared_between_threads(store: ProjectStore) -> None:
    """Sharing one store object is safe too: its lock covers each whole transaction."""
    cat = store.class_id("cat")
    img = store.images()[0].id
    errors: list[BaseException] = []

    def draw_many() -> None:
        try:
            for i in range(20):
                b = store.draw_box(img, (1, 1, 2 + i, 3), cat)
                store.accept_box(b)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=draw_many) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[0]
    assert len(store.boxes(statuses="accepted")) == 60
    assert len(store.actions()) == 120
    assert store.integrity_check() == "ok"


def test_numpy_values_are_accepted(store: ProjectStore) -> None:
    """Detector output arrives as numpy scalars; sqlite3 cannot bind them unconverted."""
    import numpy as np

    cat = np.int64(store.class_id("cat"))
    img = np.int64(store.images()[0].id)
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 30]], np.float32)
    scores = np.array([0.9, 0.2], np.float32)
    ids = store.replace_predictions(img, zip(boxes, [cat, cat], scores, strict=True), np.int64(3))
    rows = store.boxes(image_id=img)
    assert [b.id for b in rows] == ids and rows[0].model_version == 3
    assert isinstance(rows[0].score, float) and rows[1].xyxy == (5, 5, 20, 30)
    store.accept_box(np.int64(ids[0]))
    store.log_action("view", img, payload={"scores": scores, "n": np.int32(2)})
    assert store.actions(kind="view")[0].payload["n"] == 2
    with pytest.raises(StoreError, match="image id must be an integer"):
        store.image(1.5)


def test_existing_box_ids_answers_only_for_boxes_there_now(store: ProjectStore) -> None:
    img = store.images()[0].id
    cat = store.class_id("cat")
    ids = [store.draw_box(img, (i, i, i + 5, i + 5), cat) for i in range(3)]
    store.delete_box(ids[1])
    assert store.existing_box_ids([*ids, ids[0], 10_000]) == {ids[0], ids[2]}
    assert store.existing_box_ids([]) == set()
    many = [store.draw_box(img, (1, 1, 4, 4), cat) for _ in range(3)] + list(
        range(10**6, 10**6 + 1200)
    )
    assert store.existing_box_ids(many) == set(many[:3])  # more ids than one query takes
