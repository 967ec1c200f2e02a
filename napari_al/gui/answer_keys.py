"""The rich verification answers in the viewer (part of the annotation controller; issue 13,
item 3): Shift+E part, Shift+S container, Shift+K several (:data:`~napari_al.gui.keys.KEYS`).

Each key answers about the selected (or focused) box through the workflow
(:func:`napari_al.core.workflow.answer_box`, the path the notebook ``Session`` and the
simulator share): one action in the store, undone by Ctrl+Z. For part and container the
refined box proposed from the model's boxes is shown selected (purple, ``pseudo``), so W (yes)
and Q (no) answer it; where no box fits, the person is told to draw it (R). For several, click
mode (K) starts on the image, so each object in the box is one click.

The candidates are the model's low-threshold boxes of the image where click mode already
computed them for this image and model (:mod:`napari_al.gui.click_mode`'s cache), else the
image's stored predictions: the model is never run on the main thread for an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.gui.notify import notify_user

if TYPE_CHECKING:
    from napari_al.core.workflow import ClickCandidates
    from napari_al.gui.viewer_state import ImageView


class AnswerKeys:
    """The rich-answer keys of :class:`~napari_al.gui.controller.AnnotationController`."""

    view: ImageView
    detector: Any
    focus_box: int | None
    click_mode: bool
    _click_cache: dict[tuple[int, int, int], ClickCandidates]

    def answer_part(self) -> None:
        """Shift+E: the selected box covers only part of the object."""
        self._run("part", lambda: self._answer("part"))  # type: ignore[attr-defined]

    def answer_container(self) -> None:
        """Shift+S: the selected box contains the object and more."""
        self._run("container", lambda: self._answer("container"))  # type: ignore[attr-defined]

    def answer_several(self) -> None:
        """Shift+K: the selected box holds several objects; click mode starts."""
        self._run("several", lambda: self._answer("several"))  # type: ignore[attr-defined]

    def _cached_candidates(self, image_id: int) -> ClickCandidates | None:
        """Click mode's candidates of the image from the model in use, if computed."""
        det = self.detector
        if not workflow.has_model(det):
            return None
        return self._click_cache.get((image_id, int(det.model_version), id(det)))

    def _answer(self, answer: str) -> None:
        _, annotator = self._require()  # type: ignore[attr-defined]
        ids = self.target_boxes()  # type: ignore[attr-defined]
        image_id = self.view.image_id
        if not ids or image_id is None:
            notify_user("info", f"{answer}: no box selected (click one, or press G)")
            return
        candidates = self._cached_candidates(image_id)
        with annotator.group(answer):
            results = [
                workflow.answer_box(annotator, box_id, answer, candidates=candidates)
                for box_id in ids
            ]
        refined = [r.refined_box_id for r in results if r.refined_box_id is not None]
        if refined:
            self.focus_box = refined[-1]
            self.view.select_boxes(refined)
            notify_user("info", f"{answer}: is the proposed box right? W yes, Q no")
        elif answer == "several":
            if not self.click_mode:
                self.set_click_mode(True)  # type: ignore[attr-defined]
            notify_user("info", "several: click the centre of each object in the box (K ends)")
        else:
            notify_user("info", f"{answer}: the model has no better box here; draw it (R), or undo")
