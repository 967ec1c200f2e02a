"""A project session for scripts and notebooks, with or without a napari viewer.

``napari_al.open_project(path)`` opens the project in a new napari viewer with the widget
docked (``viewer=`` an existing viewer docks it there; ``viewer=False`` opens no viewer at all).
The returned :class:`Session` also runs the round's steps (:mod:`napari_al.core.workflow`)
directly, blocking, on the calling thread: :meth:`Session.predict`, :meth:`Session.rank`,
:meth:`Session.train`, :meth:`Session.evaluate`, :meth:`Session.export`. In a viewer, the
widget's background versions (``session.widget.start_retrain()`` ...) keep the viewer
responsive instead.

This module imports neither Qt nor napari nor torch until a viewer or a model is needed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_al.core import workflow
from napari_al.core.workflow import ModelSettings, QuerySettings, TrainSettings

if TYPE_CHECKING:
    import napari

    from napari_al.core.annotator import Annotator
    from napari_al.core.selection import QueryItem
    from napari_al.core.store import ProjectStore
    from napari_al.gui.widget import ActiveLearningWidget


class Session:
    """A project open from Python: the store, the detector in use, and optionally a viewer."""

    def __init__(
        self,
        store: ProjectStore,
        viewer: napari.viewer.Viewer | None = None,
        widget: ActiveLearningWidget | None = None,
    ) -> None:
        self._store = store
        self.viewer = viewer
        self.widget = widget
        self._detector: Any = None
        self.model = ModelSettings()
        self.last_queries: list[QueryItem] = []
        self._annotator: Annotator | None = None

    @classmethod
    def open(cls, path: str | Path) -> Session:
        """A headless session (no viewer); a plain folder of images becomes a project."""
        from napari_al.core.project import open_or_init

        return cls(open_or_init(Path(path)))

    # -- state ----------------------------------------------------------------------------

    @property
    def store(self) -> ProjectStore:
        if self.widget is not None and self.widget.store is not None:
            return self.widget.store
        return self._store

    @property
    def project_dir(self) -> Path:
        return self.store.project_dir

    def info(self) -> dict[str, Any]:
        """Counts by split, review state, status and class (as ``napari-al info``)."""
        return self.store.info()

    @property
    def detector(self) -> Any:
        """The detector in use (the widget's when there is a viewer); loaded on first use."""
        if self.widget is not None and self.widget.controller.detector is not None:
            return self.widget.controller.detector
        if self._detector is None:
            self._detector = self.load_detector()
        return self._detector

    def load_detector(self, settings: ModelSettings | None = None, **fields: Any) -> Any:
        """Load the model per ``settings`` with ``fields`` replaced (``arch``, ``weights``,
        ``device``, ``min_size``, ``max_size``; default: the project's latest checkpoint, or a
        fresh pretrained-backbone model). Unknown fields raise TypeError."""
        from napari_al.gui.tasks import ensure_torch

        ensure_torch()
        self.model = dataclasses.replace(settings or self.model, **fields)
        self._detector = workflow.load_model(self.store, self.model)
        self._share_detector()
        return self._detector

    def _share_detector(self) -> None:
        if self.widget is not None and self._detector is not None:
            self.widget.controller.set_detector(self._detector)

    def _model_in_use(self) -> Any:
        """The model that proposes boxes for clicks and answers and finds region questions:
        the viewer's; headless, the one loaded here, else the project's latest model version
        (loaded once, on first use); None while the project has no model. Raises
        :class:`~napari_al.core.workflow.WorkflowError` when that checkpoint cannot be read."""
        if self.widget is not None:
            return self.widget.controller.detector
        if self._detector is None and self.store.latest_model_version() is not None:
            self.load_detector()
        return self._detector

    # -- annotating -----------------------------------------------------------------------

    @property
    def annotator(self) -> Annotator:
        """The person's actions with undo/redo (the viewer's own when there is one)."""
        if self.widget is not None and self.widget.controller.annotator is not None:
            return self.widget.controller.annotator
        if self._annotator is None or self._annotator.store is not self.store:
            from napari_al.core.annotator import Annotator

            self._annotator = Annotator(self.store)
        return self._annotator

    def click(self, image_id: int, x: float, y: float, cls: str | int | None = None) -> int | None:
        """A centre click at ``(x, y)`` (image pixels, pixel edges on integers) on an image,
        as click mode in the viewer: the box the workflow proposes for class ``cls`` (a name
        or a class id; None: the first class) is stored awaiting a yes/no
        (``session.annotator.accept(box_id)`` / ``reject``; ``annotator.undo()`` takes it
        back). The model in use proposes it when it was trained in the project (headless: the
        project's latest model version, loaded on first use), else the image does. Returns the
        new box id, or None when no box was found (nothing stored)."""
        class_id = self._class_id(cls)
        detector = self._model_in_use()
        command = workflow.click(self.annotator, image_id, (x, y), class_id, detector)
        return None if command is None else command.box_id

    def _class_id(self, cls: str | int | None) -> int:
        """A class name or id as its id (None: the first class)."""
        classes = self.store.classes()
        if not classes:
            raise workflow.WorkflowError("the project has no classes; add one first")
        if cls is None:
            return classes[0].id
        return self.store.class_id(cls) if isinstance(cls, str) else int(cls)

    def answer(self, box_id: int, answer: str, cls: str | int | None = None) -> workflow.Answered:
        """A verification answer about a box, as the answer keys in the viewer: ``yes``,
        ``part`` (the box covers part of the object), ``container`` (it contains the object
        and more), ``several`` (several objects), ``wrong_class`` (with ``cls``, the right
        class) or ``no`` (:mod:`napari_al.core.workflow.answers`). Returns what was recorded
        and the follow-up: for ``part``/``container`` a refined box stored ``pseudo``
        (``result.refined_box_id``: answer it with ``session.annotator.accept`` / ``reject``)
        from the model in use when it was trained in the project (headless: the project's
        latest model version, loaded on first use), else from the image's stored predictions;
        for ``several``, click the objects (:meth:`click`). ``session.annotator.undo()`` takes
        the answer back."""
        if answer == "wrong_class" and cls is None:
            raise ValueError(
                "a wrong_class answer needs the right class: "
                "session.answer(box_id, 'wrong_class', 'NAME')"
            )
        class_id = self._class_id(cls) if answer == "wrong_class" else None
        return workflow.answer_box(
            self.annotator, box_id, answer, class_id=class_id, detector=self._model_in_use()
        )

    def region_questions(self, image_id: int) -> list[workflow.RegionQuestion]:
        """The region questions "any more <class> here?" worth asking on an image, best first,
        as the viewer asks them (:func:`napari_al.core.workflow.region_questions`, from the
        candidates of the model in use; none before a model is trained in the project).
        Runs the model on the image: blocking."""
        row = self.store.image(image_id)  # StoreError for an unknown image, model or not
        detector = self._model_in_use()
        if not workflow.has_model(detector):
            return []
        pixels = workflow.load_rgb(self.store.abs_path(row))
        candidates = workflow.click_candidates(detector, pixels)
        return workflow.region_questions(self.store, image_id, candidates)

    def answer_region(self, question: workflow.RegionQuestion, yes: bool) -> int | None:
        """Answer a region question (one logged ``region`` action): no stores the region
        known empty of the class (``annotator.undo()`` takes it back) and returns its box id;
        yes changes no data (returns None): click the missed objects in it next
        (:meth:`click`)."""
        result = workflow.answer_region(self.annotator, question, yes)
        return None if isinstance(result, int) else result.box_id

    # -- the round's steps, blocking ---------------------------------------------------------

    def predict(self, image_ids: list[int] | None = None, progress: Any = None) -> int:
        """Run the detector on images (default: every image not yet complete, pool first);
        their ``predicted`` boxes are replaced. Returns the number of images predicted."""
        done = workflow.predict_images(self.store, self.detector, image_ids, progress=progress)
        self._refresh_view()
        return len(done)

    def rank(
        self, settings: QuerySettings | None = None, *, progress: Any = None, **fields: Any
    ) -> list[QueryItem]:
        """The most informative images, boxes or regions, best first (``fields``: ``strategy``,
        ``unit``, ``budget``, ``diversity``, ``aggregation``, ... of :class:`QuerySettings`).
        The result is stored in the project as its latest query set."""
        query = dataclasses.replace(settings or QuerySettings(), **fields)
        items = workflow.rank_pool(self.store, self.detector, query, progress=progress)
        self.last_queries = items
        if self.widget is not None:
            self.widget.controller.set_queries(items)
        return items

    def train(
        self, settings: TrainSettings | None = None, *, progress: Any = None, **fields: Any
    ) -> workflow.TrainOutcome:
        """Fine-tune the model in use on the project's labels (``fields``: ``steps``,
        ``lambda_d``, ``from_scratch``, ``seed``, ... of :class:`TrainSettings`); records a
        new model version with its labelling effort. Returns the training outcome (nothing
        trained: ``outcome.result.stopped_reason`` ``no_data``; when the images holding the
        boxes were skipped as unreadable, ``outcome.skipped_all`` and ``outcome.result.message``
        names their files).
        Raises :class:`~napari_al.core.store.ProjectBusyError` at once, before a model is
        loaded, when another run (another process, or the widget's job) holds the project."""
        from napari_al.core.store import project_lock

        s = dataclasses.replace(settings or TrainSettings(), **fields)
        with project_lock(self.project_dir, "training"):
            detector = self.load_detector() if s.from_scratch else self.detector
            outcome = workflow.train_model(self.store, detector, s, progress=progress)
        self._detector = detector
        self._share_detector()
        return outcome

    def evaluate(self, split: str = "val") -> dict[str, Any]:
        """mAP of the model in use on a split (``map50``, ``map``, ``per_class``, ...),
        recorded on its model version."""
        return workflow.evaluate_model(self.store, self.detector, split)

    def export(
        self,
        out: str | Path,
        fmt: str = "coco",
        overwrite: bool = False,
        all_images: bool = False,
        copy_images: bool | None = None,
    ) -> Any:
        """Write the human labels (of complete images, unless ``all_images``) as VOC/COCO/YOLO.

        ``copy_images`` (VOC, YOLO): copy the images into ``out`` (YOLO: the ``images/`` +
        ``labels/`` layout Ultralytics trains on); None: only when two images share a file name.
        """
        from napari_al.core.project import export_dataset

        return export_dataset(
            self.store,
            Path(out),
            fmt,
            overwrite=overwrite,
            only_reviewed=not all_images,
            copy_images=copy_images,
        )

    def import_dataset(self, path: str | Path, fmt: str) -> dict[str, Any]:
        """Import a VOC/COCO/YOLO dataset or a folder of images into the project."""
        from napari_al.core.project import import_into

        _, summary = import_into(self.store, Path(path), fmt)
        if self.widget is not None:
            self.widget.refresh()
        return summary

    def _refresh_view(self) -> None:
        if self.widget is not None:
            self.widget.controller.reload()
            self.widget.refresh()

    # -- viewer ----------------------------------------------------------------------------

    def show(self, image_id: int) -> None:
        """Show an image in the viewer (a session with a viewer only)."""
        if self.widget is None:
            raise RuntimeError("this session has no viewer (open it with a viewer)")
        self.widget.show_image(image_id)

    def close(self) -> None:
        """Close the project (every action is already saved)."""
        if self.widget is not None:
            self.widget.close_project()
        elif not self._store.closed:
            self._store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "headless" if self.viewer is None else "in a viewer"
        return f"Session({str(self.project_dir)!r}, {where})"


def open_project(path: str | Path, viewer: napari.viewer.Viewer | bool | None = None) -> Session:
    """Open ``path`` (a project, or a folder of images to start one).

    ``viewer=None``: a new napari viewer with the widget docked; a viewer: dock it there;
    ``viewer=False``: no viewer (headless: ``Session.predict/rank/train/export`` still work).
    """
    if viewer is False:
        return Session.open(path)
    import napari

    from napari_al.gui.widget import ActiveLearningWidget

    if viewer is None or viewer is True:
        viewer = napari.Viewer(title=f"napari-al: {Path(path).name}")
    widget = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Active learning", area="right")
    widget.open_project(path)
    assert widget.store is not None
    return Session(widget.store, viewer=viewer, widget=widget)


__all__ = ["Session", "open_project"]
