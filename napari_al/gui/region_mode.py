"""Region questions in the viewer: "any more <class> here?" (part of the annotation controller;
issue 13, item 4).

For the image on screen the workflow names the regions where the missed-object estimate
expects objects no shown or human box covers (:func:`napari_al.core.workflow.region_questions`,
from the model's candidates kept by click mode, else the round's "possibly missed"
suggestions). The best one is shown as a dashed rectangle in its own layer, ``question``, with
the question and its keys (:data:`~napari_al.gui.keys.KEYS`): Shift+X (no: the region is known
empty of the class, stored as one undoable action) or Shift+M (yes: logged, then click mode
restricted to the region: click every missed object there; K when done). After a no, or
when click mode ends, the next question is shown; a region question of the dialog planner
(:mod:`napari_al.gui.dialog_mode`, J) is shown instead while it is open. Layers change on the
main thread only (the key handlers and the controller's refreshes run there).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow
from napari_al.core.boxes import napari_to_xy, xy_to_napari
from napari_al.core.workflow import RegionQuestion, RegionSettings
from napari_al.gui.notify import notify_user

if TYPE_CHECKING:
    import napari
    from napari.layers import Shapes

    from napari_al.core.annotator import Annotator
    from napari_al.core.store import ProjectStore
    from napari_al.gui.viewer_state import ImageView

#: The layer showing the region question.
QUESTION_LAYER = "question"
#: Edge colour of the question's dashes.
QUESTION_COLOR = "#76ff03"
#: Dashes per side of the region (and as many gaps).
DASHES_PER_SIDE = 8


def dashed_rectangle(xyxy: Sequence[float], dashes: int = DASHES_PER_SIDE) -> list[np.ndarray]:
    """The dashes of a rectangle ``xyxy`` (image pixels) as napari ``line`` shapes, ``(2, 2)``
    ``(row, col)`` arrays: each side cut into ``2 x dashes - 1`` equal pieces, every other one
    drawn (napari's Shapes layer draws no dashed edges)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    n = 2 * int(dashes) - 1
    out: list[np.ndarray] = []
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        for k in range(0, n, 2):
            t0, t1 = k / n, (k + 1) / n
            seg = [(ax + (bx - ax) * t, ay + (by - ay) * t) for t in (t0, t1)]
            out.append(xy_to_napari(seg))
    return out


class RegionMode:
    """Region questions of :class:`~napari_al.gui.controller.AnnotationController` (a mixin)."""

    viewer: napari.viewer.Viewer
    view: ImageView
    store: ProjectStore | None
    annotator: Annotator | None
    detector: Any
    missed: dict[int, list[Any]]
    click_mode: bool
    _click_cache: dict[tuple[int, int, int], Any]

    def _init_region_mode(self) -> None:
        #: Which regions get a question (the workflow's defaults).
        self.region_settings = RegionSettings()
        #: The question shown (None: none on this image).
        self.region_question: RegionQuestion | None = None
        #: The region answered yes, whose missed objects the person is clicking.
        self.region_clicking: RegionQuestion | None = None
        self._question_layer: Shapes | None = None

    # -- the questions --------------------------------------------------------------------

    def _region_candidates(self, image_id: int) -> workflow.ClickCandidates:
        """The model's candidates of the image when click mode has them, else the round's
        possibly missed suggestions."""
        det = self.detector
        if det is not None:
            key = (image_id, int(det.model_version or 0), id(det))
            if key in self._click_cache:
                return self._click_cache[key]
        assert self.store is not None
        version = (det.model_version or None) if det is not None else None
        n = len(self.store.classes())
        return workflow.suggestion_candidates(self.missed.get(image_id, []), n, version)

    def refresh_region_question(self) -> None:
        """Ask the best region question of the image on screen (or none)."""
        image_id = self.view.image_id
        if self.region_clicking is not None and self.region_clicking.image_id == image_id:
            return  # the person is clicking the missed objects of a yes-region
        self.region_clicking = None
        question = None
        if image_id is not None:  # the dialog planner's region question comes first
            question = self.pinned_region(image_id)  # type: ignore[attr-defined]
        if question is None and self.store is not None and image_id is not None:
            questions = workflow.region_questions(
                self.store,
                image_id,
                self._region_candidates(image_id),
                settings=self.region_settings,
                shown=self.view.shows_prediction,
            )
            question = questions[0] if questions else None
        self.region_question = question
        self._draw_question()

    def region_yes(self) -> None:
        """Shift+M: yes, there are more objects of the class here: click mode in the region."""
        self._run("region question", lambda: self._answer_region(True))  # type: ignore[attr-defined]

    def region_no(self) -> None:
        """Shift+X: no more objects of the class here: the region is known empty of it."""
        self._run("region question", lambda: self._answer_region(False))  # type: ignore[attr-defined]

    def _answer_region(self, yes: bool) -> None:
        _, annotator = self._require()  # type: ignore[attr-defined]
        if self.region_clicking is not None:
            notify_user("info", "click the missed objects in the region first; K when done")
            return
        q = self.region_question
        if q is None or q.image_id != self.view.image_id:
            notify_user("info", "no region question on this image")
            return
        workflow.answer_region(annotator, q, yes)  # a no: the controller shows the next one
        if not yes:
            return
        self.set_current_class(q.class_id)  # type: ignore[attr-defined]
        self.region_clicking = q
        self.set_click_mode(True)  # type: ignore[attr-defined]
        self._draw_question()

    # -- click mode in a yes-region --------------------------------------------------------

    def _region_allows(self, image_id: int, point: Sequence[float]) -> bool:
        """Whether a click at ``point`` ``(x, y)`` may make a box: anywhere, unless the person
        is clicking the missed objects of a yes-region, then only inside it."""
        q = self.region_clicking
        if q is None or q.image_id != image_id or q.contains(point):
            return True
        notify_user("info", f"click inside the region ({q.class_name}); K when done")
        return False

    def _end_region_clicks(self) -> None:
        """Click mode ended: the yes-region is done, the next question comes."""
        if self.region_clicking is None:
            return
        self.region_clicking = None
        self.refresh_region_question()

    # -- the layer --------------------------------------------------------------------------

    def _draw_question(self) -> None:
        q = self.region_clicking or self.region_question
        layer = self._question_layer
        alive = layer is not None and layer in self.viewer.layers
        if q is None or q.image_id != self.view.image_id:
            if alive:
                assert layer is not None
                layer.data = []
            return
        if self.region_clicking is not None:
            text = f"click every missed {q.class_name} here (K when done)"
        else:
            text = f"{q.text} Shift+M yes / Shift+X no ({q.expected:.1f} expected)"
        dashes = dashed_rectangle(q.xyxy)
        features = {"text": [text] + [""] * (len(dashes) - 1)}
        if not alive:
            layer = self.viewer.add_shapes(
                name=QUESTION_LAYER,
                ndim=2,
                edge_width=2,
                edge_color=QUESTION_COLOR,
                features={"text": []},
                text={
                    "string": "{text}",
                    "size": 9,
                    "color": QUESTION_COLOR,
                    "anchor": "upper_left",
                },
            )
            self._question_layer = layer
            self.view.activate_boxes()  # the digits are bound on the boxes layer
        assert layer is not None
        if len(layer.data):
            layer.data = []
        layer.add(dashes, shape_type="line", edge_width=2, edge_color=QUESTION_COLOR)
        layer.features = features

    def question_xyxy(self) -> tuple[float, float, float, float] | None:
        """The region the question layer shows, image pixels (None: none), from its dashes."""
        layer = self._question_layer
        if layer is None or layer not in self.viewer.layers or not len(layer.data):
            return None
        xy = napari_to_xy(np.concatenate([np.asarray(d, float) for d in layer.data]))
        return (
            float(xy[:, 0].min()),
            float(xy[:, 1].min()),
            float(xy[:, 0].max()),
            float(xy[:, 1].max()),
        )
