"""A person's annotation actions with an undo/redo command stack (Qt-free, napari-free).

napari has no undo for Shapes layers (napari issue 1382), so the annotation loop keeps its own,
and it is the project's ONE undo system (the store has none of its own). Every action goes to
the :class:`~napari_al.core.store.ProjectStore` at once, through the store's own methods, and
pushes a :class:`Command` that remembers the box state before and after.

One user action = one transaction = one logged action. Each command (accept, reject, set
class, correct, draw, a centre click that became a box, a "no" to a region question, delete,
complete, a region marked complete, a
:meth:`Annotator.group` of several actions, an undo, a redo) runs inside ONE
:meth:`~napari_al.core.store.ProjectStore.transaction`: exactly one SQLite commit, and an
error leaves the store as it was. A single-box command logs exactly one
action row (a group or the undo of one: one row per box, in the same transaction).

Undo puts the *before* state back with
:meth:`~napari_al.core.store.ProjectStore.restore_box` (and
:meth:`~napari_al.core.store.ProjectStore.set_review_state` for review states); redo puts the
*after* state back. Both are logged actions too, of kind ``undo``/``redo`` with ``ref_id`` the
action undone or redone (:attr:`Command.action_id`), so the log stays a truthful record of the
person's work. A new action clears the redo stack, as in any editor.

Review state. The first box action on an ``unseen`` image also marks it ``partial`` (its
unverified predictions then count as noisy labels in training, Desai et al.); that change is
part of the same command and of the same logged action (payload ``review``: ``{"before":
"unseen", "after": "partial"}``), and is undone with it.

Staleness. The store is the truth and other parties write to it too (a rescoring worker replaces
an image's ``predicted`` boxes). Before undoing, the box must still be in the command's *after*
state (before redoing, in its *before* state); otherwise the command is dropped and
:class:`StaleCommand` is raised instead of overwriting someone else's change.

Groups. Actions done inside :meth:`Annotator.group` (e.g. deleting or accepting several selected
boxes) form one command and one transaction, undone and redone together.

The answers beyond yes/no on a box (rich answers, region questions) are in
:mod:`napari_al.core.answering`, a part of :class:`Annotator`.

Skipping an image changes no data: it is logged (kind ``skip``) but not put on the undo stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from napari_al.core.answering import AnswerActions
from napari_al.core.data import RICH_ANSWERS
from napari_al.core.reviewing import RegionReviewActions
from napari_al.core.store import BoxRow, ProjectStore, ReviewedRegionRow, StoreError

#: Box fields compared to tell whether a box is still in a recorded state (``updated`` and
#: ``created`` are bookkeeping and change on every restore).
_STATE_FIELDS = (
    "image_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "class_id",
    "score",
    "status",
    "source",
    "model_version",
)

#: Command kinds, in the words of the action log (``part``, ``container``, ``several``: rich
#: verification answers, :mod:`napari_al.core.answers`; ``region``: a "no" to a region
#: question, :mod:`napari_al.core.regions`; ``complete_region``: a region marked complete,
#: :mod:`napari_al.core.reviewing`).
COMMAND_KINDS = (
    *("accept", "reject", "set_class", "correct", "draw", "delete", "complete", "click"),
    *RICH_ANSWERS,
    "region",
    "complete_region",
)

#: How many commands the undo stack keeps (older ones fall off the bottom).
MAX_HISTORY = 1000


class StaleCommand(StoreError):
    """The command's subject was changed by someone else since; it was dropped, not applied."""


def same_state(a: BoxRow | None, b: BoxRow | None) -> bool:
    """Whether two box states agree on everything but the ``created``/``updated`` times."""
    if a is None or b is None:
        return a is None and b is None
    return a.id == b.id and all(getattr(a, f) == getattr(b, f) for f in _STATE_FIELDS)


@dataclass(frozen=True)
class Command:
    """One undoable action: a box change and/or a review-state change of one image.

    ``before``/``after``: the box state (``None``: the box does not exist) around the action;
    ``review_before``/``review_after``: the image's review state around it (both ``None`` when
    the action did not change it).
    """

    kind: str
    image_id: int
    box_id: int | None = None
    before: BoxRow | None = None
    after: BoxRow | None = None
    review_before: str | None = None
    review_after: str | None = None
    #: For a group (several boxes at once, e.g. deleting a selection): the member commands,
    #: in the order they were done. Undone and redone as one.
    parts: tuple[Command, ...] = ()
    #: The id of the action the command logged (the ``ref_id`` of its undo and redo rows);
    #: None for a group (see its parts) and for a command built by hand.
    action_id: int | None = None
    #: A reviewed region the command made (``complete_region``): its id and its state
    #: before/after (None: it does not exist).
    region_id: int | None = None
    region_before: ReviewedRegionRow | None = None
    region_after: ReviewedRegionRow | None = None

    @property
    def leaves(self) -> tuple[Command, ...]:
        """The single-subject commands this command is made of (itself when not a group)."""
        if not self.parts:
            return (self,)
        return tuple(leaf for part in self.parts for leaf in part.leaves)

    @property
    def box_ids(self) -> tuple[int, ...]:
        """Every box the command changed."""
        return tuple(c.box_id for c in self.leaves if c.box_id is not None)

    @property
    def changes_box(self) -> bool:
        return self.box_id is not None

    @property
    def changes_review(self) -> bool:
        return self.review_before is not None and self.review_before != self.review_after


@dataclass(frozen=True)
class Change:
    """What an action, undo or redo changed; passed to :meth:`Annotator.subscribe` listeners.

    ``how``: ``"do"``, ``"undo"`` or ``"redo"``.
    """

    command: Command
    how: str
    box_ids: tuple[int, ...] = field(default_factory=tuple)

    @property
    def image_id(self) -> int:
        return self.command.image_id


Listener = Callable[[Change], None]


class Annotator(AnswerActions, RegionReviewActions):
    """The user's actions on one project store, with undo and redo.

    Methods raise :class:`~napari_al.core.store.StoreError` for a bad id or an invalid box; the
    store then holds exactly what it held before (one transaction per command, rolled back)
    and the undo stack is unchanged. Listeners are called after the command's commit.
    """

    def __init__(self, store: ProjectStore, max_history: int = MAX_HISTORY) -> None:
        self.store = store
        self.max_history = int(max_history)
        #: Predictions scoring below this are not offered for review (they stay ``predicted``).
        self.min_score = 0.0
        #: When set, decides instead of :attr:`min_score` which predictions are offered for
        #: review (e.g. the workflow's calibrated rule, ``workflow.verify_rule(store).shows``).
        self.shows: Callable[[BoxRow], bool] | None = None
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._listeners: list[Listener] = []
        self._group: list[Command] | None = None

    # -- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(change)`` after every action, undo and redo."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, command: Command, how: str) -> None:
        change = Change(command, how, command.box_ids)
        for listener in list(self._listeners):
            listener(change)

    # -- the stacks ----------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_stack(self) -> tuple[Command, ...]:
        """The commands that can be undone, oldest first."""
        return tuple(self._undo)

    @property
    def redo_stack(self) -> tuple[Command, ...]:
        """The commands that can be redone, the next one to redo last."""
        return tuple(self._redo)

    def clear_history(self) -> None:
        """Forget the undo and redo stacks (e.g. when another project is opened)."""
        self._undo.clear()
        self._redo.clear()

    def _push(self, command: Command) -> Command:
        if self._group is not None:
            self._group.append(command)
            return command
        self._undo.append(command)
        if len(self._undo) > self.max_history:
            del self._undo[: len(self._undo) - self.max_history]
        self._redo.clear()
        self._notify(command, "do")
        return command

    @contextmanager
    def group(self, kind: str = "group") -> Iterator[None]:
        """Actions inside become ONE command (undone and redone together) and ONE store
        transaction (one commit), e.g. deleting or accepting several selected boxes.

        An exception leaving the block rolls back every action of the block and pushes
        nothing. Groups do not nest (an inner group joins the outer one)."""
        if self._group is not None:
            yield
            return
        self._group = []
        try:
            with self.store.transaction():
                yield
            parts = tuple(self._group)
        finally:
            self._group = None
        if len(parts) == 1:
            self._push(parts[0])
        elif parts:
            images = {p.image_id for p in parts}
            image_id = parts[0].image_id if len(images) == 1 else parts[-1].image_id
            self._push(Command(kind, image_id, parts=parts))

    # -- helpers -------------------------------------------------------------------------

    def _partial_change(self, image_id: int) -> tuple[str | None, str | None]:
        """The review change a box action makes: ``("unseen", "partial")`` for an unseen
        image, else ``(None, None)``. Read inside the command's transaction."""
        state = self.store.image(image_id).review_state
        return (state, "partial") if state == "unseen" else (None, None)

    def _box_command(self, kind: str, box_id: int, act: Callable[[str | None], int]) -> Command:
        """Run ``act(review_state)`` (a store box action, which returns its action id) on an
        existing box in one transaction, marking an unseen image partial in the same action."""
        with self.store.transaction():
            before = self._existing_box(box_id, kind)
            review_before, review_after = self._partial_change(before.image_id)
            action_id = act(review_after)
            after = self._box_or_none(box_id)
            withdrawn = self._withdraw_refined(before) if kind != "delete" else ()
        command = Command(
            kind,
            before.image_id,
            box_id,
            before,
            after,
            review_before,
            review_after,
            action_id=action_id,
        )
        if withdrawn:
            return self._push(Command(kind, before.image_id, parts=(command, *withdrawn)))
        return self._push(command)

    def _box_or_none(self, box_id: int) -> BoxRow | None:
        try:
            return self.store.box(box_id)
        except StoreError:
            return None

    def _image_name(self, image_id: int) -> str:
        try:
            return Path(self.store.image(image_id).path).name
        except StoreError:
            return "an image no longer in the project"

    def describe_box(self, box: BoxRow) -> str:
        """A box as the person sees it, for messages: its class, where it is (image pixels,
        rounded) and its image file, e.g. ``the RBC box at x 12-60, y 40-95 of a.jpg``
        (store ids mean nothing on screen)."""
        names = {c.id: c.name for c in self.store.classes()}
        label = names.get(box.class_id, "unlabelled")
        return (
            f"the {label} box at x {box.x1:.0f}-{box.x2:.0f}, y {box.y1:.0f}-{box.y2:.0f} "
            f"of {self._image_name(box.image_id)}"
        )

    def _existing_box(self, box_id: int, kind: str) -> BoxRow:
        """The box to act on; a StoreError in the person's words when it is gone."""
        box = self._box_or_none(box_id)
        if box is None:
            raise StoreError(
                f"the box to {kind.replace('_', ' ')} is no longer in the project (new "
                "predictions replaced it, or it was deleted); nothing was changed"
            )
        return box

    # -- actions -------------------------------------------------------------------------

    def accept(self, box_id: int) -> Command:
        """The box is right as it is: status ``accepted``."""
        return self._box_command(
            "accept", box_id, lambda review: self.store.accept_box(box_id, review_state=review)
        )

    def reject(self, box_id: int) -> Command:
        """The box is wrong (background): status ``rejected``."""
        return self._box_command(
            "reject", box_id, lambda review: self.store.reject_box(box_id, review_state=review)
        )

    def set_class(self, box_id: int, class_id: int) -> Command:
        """Change the box's class (status ``corrected``; a drawn box stays ``drawn``)."""
        return self._box_command(
            "set_class",
            box_id,
            lambda review: self.store.set_box_class(box_id, class_id, review_state=review),
        )

    def correct(
        self,
        box_id: int,
        xyxy: Iterable[float] | None = None,
        class_id: int | None = None,
    ) -> Command:
        """The box was moved/resized (``xyxy``, image pixels) and/or given another class."""
        xyxy = None if xyxy is None else tuple(float(v) for v in xyxy)
        return self._box_command(
            "correct",
            box_id,
            lambda review: self.store.correct_box(box_id, xyxy, class_id, review_state=review),
        )

    def draw(self, image_id: int, xyxy: Iterable[float], class_id: int) -> Command:
        """A new box drawn by the person (status ``drawn``); the command's ``box_id`` is its id."""
        xyxy = tuple(float(v) for v in xyxy)
        return self._new_box_command(
            "draw",
            image_id,
            lambda review: self.store.draw_box(image_id, xyxy, class_id, review_state=review),
        )

    def _new_box_command(self, kind: str, image_id: int, create: Callable[[str], int]) -> Command:
        """One transaction that makes a box on ``image_id`` (``create(review_state)`` returns
        its id; the image turns partial if it was unreviewed), pushed as an undoable command."""
        with self.store.transaction():
            review_before, review_after = self._partial_change(image_id)
            box_id = create(review_after)
            action_id = self.store.last_action_id()
            after = self.store.box(box_id)
        return self._push(
            Command(
                kind,
                after.image_id,
                box_id,
                None,
                after,
                review_before,
                review_after,
                action_id=action_id,
            )
        )

    def click(
        self,
        image_id: int,
        point: Iterable[float],
        xyxy: Iterable[float],
        class_id: int,
        *,
        method: str,
        score: float | None = None,
        model_version: int | None = None,
    ) -> Command:
        """A centre click ``point`` (x, y image pixels) became the proposed box ``xyxy``
        (:mod:`napari_al.core.clicks`, via ``workflow.click``): status ``pseudo``, source
        ``click``, awaiting a yes/no (:meth:`accept`, :meth:`reject`) or a drag fix
        (:meth:`correct`). One transaction, one logged ``click`` action; undo deletes the box.
        The command's ``box_id`` is the new box."""
        xyxy = tuple(float(v) for v in xyxy)
        point = tuple(float(v) for v in point)
        return self._new_box_command(
            "click",
            image_id,
            lambda review: self.store.click_box(
                image_id,
                xyxy,
                class_id,
                point=point,
                method=method,
                score=score,
                model_version=model_version,
                review_state=review,
            ),
        )

    def delete(self, box_id: int) -> Command:
        """Remove the box (the store's log keeps its last state)."""
        return self._box_command(
            "delete", box_id, lambda review: self.store.delete_box(box_id, review_state=review)
        )

    def complete_image(self, image_id: int) -> Command | None:
        """Every object of the image is labelled: review state ``complete``.

        Returns None (and pushes nothing) when the image is complete already.
        """
        with self.store.transaction():
            before = self.store.image(image_id).review_state
            if before == "complete":
                return None
            action_id = self.store.set_review_state(image_id, "complete")
        return self._push(
            Command(
                "complete",
                int(image_id),
                review_before=before,
                review_after="complete",
                action_id=action_id,
            )
        )

    def skip_image(self, image_id: int, reason: str = "") -> int:
        """Move on without labelling the image: logged as ``skip``, no data change, not undoable.

        Returns the action id.
        """
        payload = {"reason": reason} if reason else None
        with self.store.transaction():
            self.store.image(image_id)  # a clear error for a bad id
            return self.store.log_action("skip", image_id=image_id, payload=payload)

    # -- undo / redo ---------------------------------------------------------------------

    def _check(self, command: Command, undo: bool) -> None:
        """Raise :class:`StaleCommand` unless every subject is in the state undo/redo expects."""
        for leaf in command.leaves:
            want_now = leaf.after if undo else leaf.before
            review_now = leaf.review_after if undo else leaf.review_before
            if leaf.changes_box:
                assert leaf.box_id is not None
                if not same_state(self._box_or_none(leaf.box_id), want_now):
                    box = leaf.after or leaf.before
                    raise StaleCommand(
                        f"{self.describe_box(box) if box else 'a box'} was changed elsewhere "
                        f"(new predictions, or another window) since this {leaf.kind}; "
                        f"the {'undo' if undo else 'redo'} was dropped"
                    )
            region_now = leaf.region_after if undo else leaf.region_before
            if leaf.region_id is not None and (
                self.store.reviewed_region_or_none(leaf.region_id) != region_now
            ):
                raise StaleCommand(
                    f"a reviewed region of {self._image_name(leaf.image_id)} was changed "
                    f"elsewhere; the {'undo' if undo else 'redo'} was dropped"
                )
            if leaf.changes_review:
                state = self.store.image(leaf.image_id).review_state
                if state != review_now:
                    raise StaleCommand(
                        f"{self._image_name(leaf.image_id)} is now {state!r}, not "
                        f"{review_now!r}; the {'undo' if undo else 'redo'} of {leaf.kind} "
                        "was dropped"
                    )

    def _apply(self, command: Command, undo: bool) -> None:
        """Put the command's subjects into their before (undo) or after (redo) states, inside
        the caller's transaction: one logged ``undo``/``redo`` action per subject."""
        self._check(command, undo)  # everything first, so a stale command changes nothing
        leaves = command.leaves
        how = "undo" if undo else "redo"
        for leaf in reversed(leaves) if undo else leaves:
            state = leaf.before if undo else leaf.after
            review = leaf.review_before if undo else leaf.review_after
            review = review if leaf.changes_review else None
            if leaf.region_id is not None:
                region = leaf.region_before if undo else leaf.region_after
                self.store.restore_reviewed_region(
                    leaf.region_id, region, kind=how, ref_id=leaf.action_id, review_state=review
                )
            elif leaf.changes_box:
                assert leaf.box_id is not None
                self.store.restore_box(
                    leaf.box_id, state, kind=how, ref_id=leaf.action_id, review_state=review
                )
            elif review is not None:
                self.store.set_review_state(leaf.image_id, review, kind=how, ref_id=leaf.action_id)

    def undo(self) -> Command | None:
        """Undo the newest command; returns it (None: nothing to undo).

        Raises :class:`StaleCommand` (and drops the command) when its subject changed since.
        """
        if not self._undo:
            return None
        command = self._undo.pop()
        try:
            with self.store.transaction():
                self._apply(command, undo=True)
        except StaleCommand:
            raise
        except BaseException:
            self._undo.append(command)  # nothing applied (one transaction, rolled back)
            raise
        self._redo.append(command)
        self._notify(command, "undo")
        return command

    def redo(self) -> Command | None:
        """Redo the most recently undone command; returns it (None: nothing to redo)."""
        if not self._redo:
            return None
        command = self._redo.pop()
        try:
            with self.store.transaction():
                self._apply(command, undo=False)
        except StaleCommand:
            raise
        except BaseException:
            self._redo.append(command)
            raise
        self._undo.append(command)
        self._notify(command, "redo")
        return command

    # -- navigation ----------------------------------------------------------------------

    def unreviewed_boxes(self, image_id: int, *, reviewed_area: bool = False) -> list[BoxRow]:
        """The image's ``predicted`` boxes offered for review (:attr:`shows`, else scoring at
        least :attr:`min_score`), in reading order (top to bottom, left to right); none in an
        area marked complete (:meth:`~napari_al.core.store.ProjectStore.predictions_to_review`:
        the whole image once ``complete``, or a region marked complete) unless
        ``reviewed_area`` (what marking a region left in it, told to the person then)."""
        shows = self.shows or (lambda b: b.score is None or b.score >= self.min_score)
        rows = (
            self.store.boxes(image_id=image_id, statuses="predicted")
            if reviewed_area
            else self.store.predictions_to_review(image_id)
        )
        boxes = [b for b in rows if shows(b)]
        return sorted(boxes, key=lambda b: (b.y1, b.x1, b.id))

    def next_unreviewed_box(self, image_id: int, after_box_id: int | None = None) -> int | None:
        """The id of the next unreviewed box of the image after ``after_box_id`` (wrapping
        around), in reading order; the first one when ``after_box_id`` is None or not an
        unreviewed box any more; None when every box is reviewed."""
        boxes = self.unreviewed_boxes(image_id)
        if not boxes:
            return None
        if after_box_id is None:
            return boxes[0].id
        ids = [b.id for b in boxes]
        if after_box_id in ids:
            return ids[(ids.index(after_box_id) + 1) % len(ids)]
        try:  # a reviewed box: continue from its position in reading order
            ref = self.store.box(after_box_id)
        except StoreError:
            return ids[0]
        key = (ref.y1, ref.x1, ref.id)
        for b in boxes:
            if (b.y1, b.x1, b.id) > key:
                return b.id
        return ids[0]
