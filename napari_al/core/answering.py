"""The person's answers to the machine's questions, beyond yes/no on a box: rich verification
answers (part / container / several, :mod:`napari_al.core.answers`) and region questions ("any
more <class> here?", :mod:`napari_al.core.regions`). A part of
:class:`~napari_al.core.annotator.Annotator` (a mixin): one user action = one transaction =
one logged action, on the annotator's undo stack where it changes data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from napari_al.core.data import REFINED_SOURCE, RICH_ANSWERS

if TYPE_CHECKING:
    from napari_al.core.annotator import Command
    from napari_al.core.store import BoxRow, ProjectStore


class AnswerActions:
    """Rich and region answers of :class:`~napari_al.core.annotator.Annotator` (a mixin; the
    annotator provides the store, the stack and the box-command helpers)."""

    store: ProjectStore
    _push: Callable[[Command], Command]
    _existing_box: Callable[[int, str], BoxRow]
    _box_or_none: Callable[[int], BoxRow | None]
    _partial_change: Callable[[int], tuple[str | None, str | None]]
    _new_box_command: Callable[[str, int, Callable[[str], int]], Command]

    def answer(
        self,
        box_id: int,
        answer: str,
        *,
        refined: Iterable[float] | None = None,
        refined_score: float | None = None,
        refined_model_version: int | None = None,
    ) -> Command:
        """A rich verification answer (``part``, ``container`` or ``several``,
        :mod:`napari_al.core.answers`; via ``workflow.answer_box``): the box becomes
        ``rejected`` with source ``answer`` and, with ``refined`` (xyxy image pixels), the
        proposed refined box is added (``pseudo``, source ``refined``, awaiting yes/no). One
        transaction, one logged action of the answer's kind. With a refined box the command
        has two parts, the judged box and the new one (its last ``box_ids`` entry; between them,
        the deletion of an earlier answer's refined box still pending); undo puts
        the judged box back and deletes the refined one, together."""
        from napari_al.core.annotator import Command

        refined = None if refined is None else tuple(float(v) for v in refined)
        with self.store.transaction():
            before = self._existing_box(box_id, answer)
            review_before, review_after = self._partial_change(before.image_id)
            action_id, new_id = self.store.answer_box(
                box_id,
                answer,
                refined=refined,
                refined_score=refined_score,
                refined_model_version=refined_model_version,
                review_state=review_after,
            )
            judged = Command(
                answer,
                before.image_id,
                box_id,
                before,
                self.store.box(box_id),
                review_before,
                review_after,
                action_id=action_id,
            )
            # an earlier answer's proposal still pending is withdrawn; the new one stays last
            parts = (judged, *self._withdraw_refined(before, keep=new_id))
            if new_id is not None:
                row = self.store.box(new_id)
                parts += (Command(answer, row.image_id, new_id, None, row, action_id=action_id),)
        if len(parts) == 1:
            return self._push(judged)
        return self._push(Command(answer, before.image_id, parts=parts))

    def answer_region(
        self,
        image_id: int,
        xyxy: Iterable[float],
        class_id: int,
        yes: bool,
        *,
        expected: float | None = None,
    ) -> Command | int:
        """The answer to "any more <class> in ``xyxy`` (image pixels)?"
        (:mod:`napari_al.core.regions`, via ``workflow.answer_region``), one transaction and
        one logged ``region`` action. No: the region is stored known empty of the class (a
        ``rejected`` box, source ``region``; an unseen image turns partial); returns the
        command, whose undo deletes it. Yes: changes no data (the clicks that follow label
        the objects), so, like :meth:`skip_image`, it is logged but not undoable; returns
        the action id."""
        xyxy = tuple(float(v) for v in xyxy)
        if yes:
            action_id, _ = self.store.answer_region(
                image_id, xyxy, class_id, "yes", expected=expected
            )
            return action_id
        return self._new_box_command(
            "region",
            image_id,
            lambda review: self.store.answer_region(
                image_id, xyxy, class_id, "no", expected=expected, review_state=review
            )[1],
        )

    def _withdraw_refined(self, judged: BoxRow, keep: int | None = None) -> tuple[Command, ...]:
        """A box a person had given a rich answer about (``part``/``container``) is judged
        again: the refined box that answer proposed, still awaiting its yes/no, is deleted in
        the same transaction (the new judgement replaces the answer; undo brings both back).
        ``keep``: a refined box the new judgement itself proposed. Call inside the judging
        transaction."""
        from napari_al.core.annotator import Command

        if judged.source not in RICH_ANSWERS:
            return ()
        proposed = {
            int(a.payload["refined"]["id"])
            for k in RICH_ANSWERS
            for a in self.store.actions(kind=k, image_id=judged.image_id)
            if a.box_id == judged.id and (a.payload.get("refined") or {}).get("id") is not None
        }
        out: list[Command] = []
        for refined_id in sorted(proposed):
            row = self._box_or_none(refined_id)
            if refined_id == keep:
                continue
            if row is None or row.status != "pseudo" or row.source != REFINED_SOURCE:
                continue  # already answered, or gone
            action_id = self.store.delete_box(refined_id)
            out.append(Command("delete", row.image_id, refined_id, row, None, action_id=action_id))
        return tuple(out)
