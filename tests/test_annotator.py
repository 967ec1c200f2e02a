"""The annotation command stack: every action reaches the store at once; undo/redo round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import sql_commits

from napari_al.core.annotator import Annotator, Change, StaleCommand, same_state
from napari_al.core.store import BoxRow, ProjectStore, StoreError

SHA = "ab" * 32


@pytest.fixture
def store(tmp_path: Path):
    """Two classes, two 100x80 images, three predicted boxes on image 1."""
    with ProjectStore.create(tmp_path / "proj") as s:
        s.add_class("cat")
        s.add_class("dog")
        s.add_image(tmp_path / "proj" / "a.png", SHA, 100, 80)
        s.add_image(tmp_path / "proj" / "b.png", "cd" * 32, 100, 80)
        s.replace_predictions(
            1,
            [
                ((10, 10, 30, 30), 1, 0.9),
                ((50, 5, 70, 20), 2, 0.6),
                ((5, 50, 20, 70), 1, 0.3),
            ],
            model_version=None,
        )
        yield s


def cat(s: ProjectStore) -> int:
    return s.class_id("cat")


def dog(s: ProjectStore) -> int:
    return s.class_id("dog")


def snapshot(s: ProjectStore) -> tuple:
    """Everything an action could change, times left out."""
    boxes = tuple(
        (b.id, b.image_id, b.xyxy, b.class_id, b.score, b.status, b.source) for b in s.boxes()
    )
    return boxes, tuple((im.id, im.review_state) for im in s.images())


def test_each_action_reaches_the_store_at_once(store: ProjectStore, tmp_path: Path) -> None:
    ann = Annotator(store)
    other = ProjectStore.open(store.project_dir)  # a second connection sees every action
    try:
        ids = [b.id for b in store.boxes(image_id=1)]
        ann.accept(ids[0])
        assert other.box(ids[0]).status == "accepted"
        assert other.image(1).review_state == "partial"  # first action on an unseen image
        ann.reject(ids[1])
        assert other.box(ids[1]).status == "rejected"
        ann.set_class(ids[2], dog(store))
        assert other.box(ids[2]).class_id == dog(store)
        assert other.box(ids[2]).status == "corrected"
        ann.correct(ids[0], (11, 12, 31, 33))
        b = other.box(ids[0])
        assert (b.xyxy, b.status) == ((11, 12, 31, 33), "corrected")
        cmd = ann.draw(1, (60, 40, 90, 70), cat(store))
        drawn = other.box(cmd.box_id)
        assert (drawn.status, drawn.source, drawn.xyxy) == ("drawn", "human", (60, 40, 90, 70))
        ann.delete(ids[1])
        with pytest.raises(StoreError):
            other.box(ids[1])
        ann.complete_image(1)
        assert other.image(1).review_state == "complete"
        first = other.actions(kind="accept")[0]
        assert first.payload["review"] == {"before": "unseen", "after": "partial"}
        assert all("review" not in a.payload for a in other.actions(kind="reject"))
        kinds = [a.kind for a in other.actions() if a.kind not in ("predict",)]
        assert kinds == [
            "accept",  # and the image became partial: the same action
            "reject",
            "set_class",
            "correct",
            "draw",
            "delete",
            "complete",
        ]
    finally:
        other.close()


def test_undo_redo_round_trip_every_kind(store: ProjectStore) -> None:
    ann = Annotator(store)
    ids = [b.id for b in store.boxes(image_id=1)]
    states = [snapshot(store)]
    ann.accept(ids[0])
    states.append(snapshot(store))
    ann.reject(ids[1])
    states.append(snapshot(store))
    ann.set_class(ids[2], dog(store))
    states.append(snapshot(store))
    ann.correct(ids[0], (12, 12, 28, 29), class_id=dog(store))
    states.append(snapshot(store))
    drawn = ann.draw(1, (60, 40, 90, 70), cat(store)).box_id
    states.append(snapshot(store))
    ann.delete(ids[2])
    states.append(snapshot(store))
    ann.complete_image(1)
    states.append(snapshot(store))

    for expected in reversed(states[:-1]):  # undo all the way, checking each step
        assert ann.undo() is not None
        assert snapshot(store) == expected
    assert ann.undo() is None and not ann.can_undo
    assert store.image(1).review_state == "unseen"
    for expected in states[1:]:  # redo all the way
        assert ann.redo() is not None
        assert snapshot(store) == expected
    assert ann.redo() is None
    assert store.box(drawn).status == "drawn"  # redo of a draw keeps the box id


def test_new_action_clears_redo(store: ProjectStore) -> None:
    ann = Annotator(store)
    ids = [b.id for b in store.boxes(image_id=1)]
    ann.accept(ids[0])
    ann.reject(ids[1])
    ann.undo()
    assert ann.can_redo
    ann.accept(ids[2])
    assert not ann.can_redo and ann.redo() is None
    assert store.box(ids[1]).status == "predicted"
    assert [c.kind for c in ann.undo_stack] == ["accept", "accept"]


def test_failed_action_changes_nothing(store: ProjectStore) -> None:
    ann = Annotator(store)
    before = snapshot(store)
    with pytest.raises(StoreError):
        ann.draw(1, (50, 50, 50, 60), cat(store))  # empty box
    with pytest.raises(StoreError):
        ann.correct(store.boxes(image_id=1)[0].id, (-20, 0, 10, 10))  # outside the image
    with pytest.raises(StoreError):
        ann.accept(9999)
    assert snapshot(store) == before
    assert not ann.can_undo


def test_stale_undo_is_dropped_not_applied(store: ProjectStore) -> None:
    ann = Annotator(store)
    box = store.boxes(image_id=1)[0].id
    ann.correct(box, (10, 10, 40, 40))
    store.correct_box(box, (0, 0, 5, 5))  # someone else changes the box meanwhile
    with pytest.raises(StaleCommand):
        ann.undo()
    assert store.box(box).xyxy == (0, 0, 5, 5)
    assert not ann.can_undo and not ann.can_redo


def test_undo_after_rescoring_keeps_new_predictions(store: ProjectStore) -> None:
    ann = Annotator(store)
    box = store.boxes(image_id=1)[0].id
    ann.accept(box)
    store.replace_predictions(1, [((1, 1, 9, 9), 1, 0.5)], model_version=None)
    ann.undo()  # the accepted box goes back to predicted; the new prediction stays
    statuses = sorted(b.status for b in store.boxes(image_id=1))
    assert statuses == ["predicted", "predicted"]
    assert ann.redo() is not None
    assert store.box(box).status == "accepted"


def test_complete_and_skip(store: ProjectStore) -> None:
    ann = Annotator(store)
    assert ann.complete_image(2) is not None
    assert ann.complete_image(2) is None  # already complete: nothing pushed
    n = len(ann.undo_stack)
    action = ann.skip_image(1, reason="blurry")
    assert len(ann.undo_stack) == n  # skipping changes no data and is not undone
    row = store.actions(kind="skip")[-1]
    assert (row.id, row.image_id, row.payload) == (action, 1, {"reason": "blurry"})
    ann.undo()
    assert store.image(2).review_state == "unseen"
    with pytest.raises(StoreError):
        ann.skip_image(42)


def test_listeners_see_do_undo_redo(store: ProjectStore) -> None:
    ann = Annotator(store)
    seen: list[Change] = []
    ann.subscribe(seen.append)
    box = store.boxes(image_id=1)[0].id
    ann.reject(box)
    ann.undo()
    ann.redo()
    assert [(c.how, c.command.kind, c.box_ids, c.image_id) for c in seen] == [
        ("do", "reject", (box,), 1),
        ("undo", "reject", (box,), 1),
        ("redo", "reject", (box,), 1),
    ]
    ann.unsubscribe(seen.append)
    ann.undo()
    assert len(seen) == 3


def test_next_unreviewed_box_in_reading_order(store: ProjectStore) -> None:
    ann = Annotator(store)
    by_y = [b.id for b in sorted(store.boxes(image_id=1), key=lambda b: (b.y1, b.x1))]
    assert ann.next_unreviewed_box(1) == by_y[0]
    assert ann.next_unreviewed_box(1, by_y[0]) == by_y[1]
    assert ann.next_unreviewed_box(1, by_y[2]) == by_y[0]  # wraps around
    ann.accept(by_y[1])
    # a reviewed box: continue after its place in reading order
    assert ann.next_unreviewed_box(1, by_y[1]) == by_y[2]
    ann.accept(by_y[0])
    ann.reject(by_y[2])
    assert ann.next_unreviewed_box(1) is None
    assert ann.next_unreviewed_box(2) is None


def test_history_is_bounded(store: ProjectStore) -> None:
    ann = Annotator(store, max_history=2)
    ids = [b.id for b in store.boxes(image_id=1)]
    for i in ids:
        ann.accept(i)
    assert len(ann.undo_stack) == 2
    ann.clear_history()
    assert not ann.can_undo


def test_same_state_ignores_times(store: ProjectStore) -> None:
    b = store.boxes(image_id=1)[0]
    later = BoxRow(**{**b.to_dict(), "updated": b.updated + 5})
    assert same_state(b, later)
    assert not same_state(b, BoxRow(**{**b.to_dict(), "status": "accepted"}))
    assert same_state(None, None) and not same_state(b, None)


def test_group_is_undone_and_redone_as_one(store: ProjectStore) -> None:
    ann = Annotator(store)
    ids = [b.id for b in store.boxes(image_id=1)]
    start = snapshot(store)
    seen: list[Change] = []
    ann.subscribe(seen.append)
    with ann.group("delete"):
        for i in ids[:2]:
            ann.delete(i)
    assert len(ann.undo_stack) == 1 and [c.how for c in seen] == ["do"]
    cmd = ann.undo_stack[0]
    assert cmd.kind == "delete" and set(cmd.box_ids) == set(ids[:2])
    after = snapshot(store)
    ann.undo()
    assert snapshot(store) == start
    ann.redo()
    assert snapshot(store) == after
    with ann.group():  # a group of one is just that command
        ann.accept(ids[2])
    assert ann.undo_stack[-1].kind == "accept" and not ann.undo_stack[-1].parts


def test_group_is_all_or_nothing(store: ProjectStore) -> None:
    """A group is one transaction: an error inside rolls back every action of the group."""
    ann = Annotator(store)
    ids = [b.id for b in store.boxes(image_id=1)]
    before = snapshot(store)
    n_actions = len(store.actions())
    seen: list[Change] = []
    ann.subscribe(seen.append)
    with pytest.raises(StoreError), ann.group("accept"):
        ann.accept(ids[0])
        ann.accept(9999)
    assert snapshot(store) == before
    assert store.image(1).review_state == "unseen"
    assert len(store.actions()) == n_actions
    assert not ann.can_undo and seen == []
    # an error caught inside the group undoes only the action that failed
    with ann.group("accept"):
        ann.accept(ids[0])
        with pytest.raises(StoreError):
            ann.correct(ids[1], (-50, 0, 10, 10))
        ann.accept(ids[2])
    assert [store.box(i).status for i in ids] == ["accepted", "predicted", "accepted"]
    assert ann.undo() is not None
    assert snapshot(store) == before


# -- one user action = one transaction = one logged action -------------------------------


def test_accept_on_an_unseen_image_is_one_commit_and_one_action(store: ProjectStore) -> None:
    """W on a prediction of an unseen image: accepted and image partial, ONE commit, ONE row."""
    ann = Annotator(store)
    box = store.boxes(image_id=1)[0].id
    last = store.last_action_id()
    n = store.commit_count
    with sql_commits(store) as commits:
        cmd = ann.accept(box)
    assert len(commits) == 1 and store.commit_count == n + 1
    new = store.actions(since_id=last)
    assert len(new) == 1
    row = new[0]
    assert (row.id, row.kind, row.box_id, row.image_id) == (cmd.action_id, "accept", box, 1)
    assert row.payload["review"] == {"before": "unseen", "after": "partial"}
    assert row.payload["after"]["status"] == "accepted"
    assert store.image(1).review_state == "partial"
    # undone together, in one commit and one logged row
    last = store.last_action_id()
    with sql_commits(store) as commits:
        ann.undo()
    assert len(commits) == 1
    (undo,) = store.actions(since_id=last)
    assert (undo.kind, undo.ref_id) == ("undo", cmd.action_id)
    assert undo.payload["review"] == {"before": "partial", "after": "unseen"}
    assert store.image(1).review_state == "unseen" and store.box(box).status == "predicted"
    with sql_commits(store) as commits:
        ann.redo()
    assert len(commits) == 1
    assert store.image(1).review_state == "partial" and store.box(box).status == "accepted"


@pytest.mark.parametrize(
    "act",
    [
        lambda ann, b, c: ann.reject(b),
        lambda ann, b, c: ann.set_class(b, c),
        lambda ann, b, c: ann.correct(b, (1, 1, 9, 9)),
        lambda ann, b, c: ann.delete(b),
        lambda ann, b, c: ann.draw(1, (1, 1, 9, 9), c),
        lambda ann, b, c: ann.complete_image(1),
        lambda ann, b, c: ann.skip_image(1),
    ],
    ids=["reject", "set_class", "correct", "delete", "draw", "complete", "skip"],
)
def test_every_command_is_one_commit_and_one_action(store: ProjectStore, act) -> None:
    ann = Annotator(store)
    box = store.boxes(image_id=1)[0].id
    other_class = dog(store)
    last = store.last_action_id()
    with sql_commits(store) as commits:
        act(ann, box, other_class)
    assert len(commits) == 1
    assert len(store.actions(since_id=last)) == 1


def test_group_undo_redo_are_one_commit_each(store: ProjectStore) -> None:
    ann = Annotator(store)
    ids = [b.id for b in store.boxes(image_id=1)]
    start = snapshot(store)
    last = store.last_action_id()
    with sql_commits(store) as commits, ann.group("delete"):
        for i in ids:
            ann.delete(i)
    assert len(commits) == 1
    rows = store.actions(since_id=last)
    assert [a.kind for a in rows] == ["delete"] * 3  # one row per box, one commit
    assert rows[0].payload["review"] == {"before": "unseen", "after": "partial"}
    assert all("review" not in a.payload for a in rows[1:])
    after = snapshot(store)
    with sql_commits(store) as commits:
        ann.undo()
    assert len(commits) == 1
    assert snapshot(store) == start
    with sql_commits(store) as commits:
        ann.redo()
    assert len(commits) == 1
    assert snapshot(store) == after


def test_stale_undo_commits_nothing(store: ProjectStore) -> None:
    ann = Annotator(store)
    box = store.boxes(image_id=1)[0].id
    ann.accept(box)
    store.reject_box(box)
    before = snapshot(store)
    last = store.last_action_id()
    with sql_commits(store) as commits, pytest.raises(StaleCommand):
        ann.undo()
    assert commits == [] and store.last_action_id() == last and snapshot(store) == before


def test_annotation_seconds_of_a_first_accept(tmp_path: Path) -> None:
    """Marking the image partial in the same action keeps the labelling time as before: the
    gap since the previous human action, counted once."""
    now = [1_000_000.0]
    with ProjectStore.create(tmp_path / "p", clock=lambda: now[0]) as s:
        cls = s.add_class("cat")
        img = s.add_image("a.png", SHA, 50, 50)
        b1, b2 = s.replace_predictions(img, [((0, 0, 5, 5), cls, 0.9)] * 2, 1)
        ann = Annotator(s)
        s.log_action("open", img)
        now[0] += 3.0
        ann.accept(b1)  # marks the image partial too
        now[0] += 2.0
        ann.reject(b2)
        now[0] += 4.0
        ann.undo()
        assert [a.dt for a in s.actions() if a.kind != "predict"] == [None, 3.0, 2.0, 4.0]
        assert s.annotation_seconds() == pytest.approx(9.0)
        assert s.annotation_seconds(idle_cutoff_s=2.5) == pytest.approx(2.0)
