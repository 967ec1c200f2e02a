"""A project session for scripts and notebooks, with or without a napari viewer.

``napari_al.open_project(path)`` opens the project in a new napari viewer with the widget
docked (``viewer=`` an existing viewer docks it there; ``viewer=False`` opens no viewer at all).
The returned :class:`Session` also runs the round's steps (:mod:`napari_al.core.workflow`)
directly, blocking, on the calling thread: :meth:`Session.predict`, :meth:`Session.rank`,
:meth:`Session.train`, :meth:`Session.evaluate`, :meth:`Session.export`. In a viewer, the
widget's background versions (``session.widget.start_retrain()`` ...) keep the viewer
responsive instead.

A call that fails changes nothing of the session (a failed :meth:`Session.load_detector` keeps
the settings and the model it had); an argument of the wrong type is refused in one line that
names it (:class:`~napari_al.core.workflow.SettingsTypeError`, a TypeError too); results of a
detector with untrained heads come with an
:class:`~napari_al.core.workflow.UntrainedModelWarning`, once per call.

One viewer shows one project: ``open_project(path, viewer=v)`` on a viewer whose Active learning
dock is open already opens ``path`` in that dock (saying so; the session returned for it before
is closed) instead of docking a second one over the same layers (:mod:`.session_viewer`).

This module imports neither Qt nor napari nor torch until a viewer or a model is needed.
"""

from __future__ import annotations

import dataclasses
import numbers
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core import workflow
from napari_al.core.workflow import ModelSettings, QuerySettings, TrainSettings
from napari_al.core.workflow.errors import wrong_type
from napari_al.core.workflow.settings import steps_and_epochs

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
        #: Why this session is closed when another ``open_project`` took over its viewer.
        self._replaced: str | None = None

    @classmethod
    def open(cls, path: str | Path) -> Session:
        """A headless session (no viewer); a plain folder of images becomes a project."""
        from napari_al.core.project import open_or_init

        return cls(open_or_init(Path(path)))

    # -- state ----------------------------------------------------------------------------

    @property
    def store(self) -> ProjectStore:
        if self._replaced is not None:
            raise workflow.WorkflowError(self._replaced)
        if self.widget is not None and self.widget.store is not None:
            return self.widget.store
        return self._store

    def _detach(self, reason: str) -> None:
        """Leave the viewer to another session (``reason``: what each later call says)."""
        self._replaced = reason
        self.widget = None
        self.viewer = None

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
        fresh pretrained-backbone model). The settings stay for later loads (``self.model``)
        once the load succeeded; a load that fails (a device not here, a weights file not
        found) keeps the settings and the model the session had. Unknown fields raise
        TypeError."""
        model = dataclasses.replace(settings or self.model, **fields)
        detector = self._load(model)
        self.model, self._detector = model, detector
        self._share_detector()
        return detector

    def _load(self, model: ModelSettings) -> Any:
        """A detector per ``model``, changing nothing of the session."""
        _ensure_torch()
        return workflow.load_model(self.store, model)

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
        image_id = _whole("image_id", image_id, AN_IMAGE_ID)
        x, y = (
            _number("x", x, "a number (image pixels)"),
            _number("y", y, "a number (image pixels)"),
        )
        class_id = self._class_id(cls)
        detector = self._model_in_use()
        command = workflow.click(self.annotator, image_id, (x, y), class_id, detector)
        return None if command is None else command.box_id

    def _class_id(self, cls: str | int | None) -> int:
        """A class name or id as its id (None: the first class)."""
        if cls is not None and not isinstance(cls, str):
            _whole("cls", cls, "a class name or a class id (a whole number)")
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
        box_id = _whole("box_id", box_id, "a box id (a whole number)")
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
        image_id = _whole("image_id", image_id, AN_IMAGE_ID)
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
        if not isinstance(question, workflow.RegionQuestion):
            raise wrong_type("question", "a question from session.region_questions()", question)
        if not isinstance(yes, bool | np.bool_):
            raise wrong_type("yes", "True or False", yes)
        result = workflow.answer_region(self.annotator, question, bool(yes))
        return None if isinstance(result, int) else result.box_id

    # -- the round's steps, blocking ---------------------------------------------------------

    def predict(self, image_ids: Iterable[int] | int | None = None, progress: Any = None) -> int:
        """Run the detector on images (``image_ids``: a list of image ids, or one; default:
        every image not yet complete, pool first); their ``predicted`` boxes are replaced.
        Returns the number of images predicted."""
        ids = _image_ids(image_ids)
        detector = self.detector
        done = workflow.predict_images(self.store, detector, ids, progress=progress)
        self._refresh_view()
        self._warn_if_untrained(detector)
        return len(done)

    def _warn_if_untrained(self, detector: Any) -> None:
        """An :class:`~napari_al.core.workflow.UntrainedModelWarning` when ``detector`` is no
        model version of the project (as the CLI's ``warning:`` line), once per call that
        returned results."""
        reason = workflow.untrained_reason(self.store, detector)
        if reason is not None:
            warnings.warn(
                f"{reason} (train first: session.train())",
                workflow.UntrainedModelWarning,
                stacklevel=3,
            )

    def rank(
        self, settings: QuerySettings | None = None, *, progress: Any = None, **fields: Any
    ) -> list[QueryItem]:
        """The most informative images, boxes or regions, best first (``fields``: ``strategy``,
        ``unit``, ``budget``, ``diversity``, ``aggregation``, ... of :class:`QuerySettings`).
        The result is stored in the project as its latest query set."""
        query = dataclasses.replace(settings or QuerySettings(), **fields)
        detector = self.detector
        items = workflow.rank_pool(self.store, detector, query, progress=progress)
        self._warn_if_untrained(detector)
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
        Give ``steps`` or ``epochs``, not both (SettingsError, as the CLI's flags).
        Raises :class:`~napari_al.core.store.ProjectBusyError` at once, before a model is
        loaded, when another run (another process, or the widget's job) holds the project.
        A run that trains nothing or fails keeps the model in use (``from_scratch`` too)."""
        from napari_al.core.store import project_lock

        s = dataclasses.replace(settings or TrainSettings(), **fields)
        if s.epochs is not None and "steps" in fields:
            raise steps_and_epochs(s.steps, s.epochs)
        with project_lock(self.project_dir, "training"):
            detector = self._load(self.model) if s.from_scratch else self.detector
            outcome = workflow.train_model(self.store, detector, s, progress=progress)
        if outcome.model_version is not None or not s.from_scratch:
            self._detector = detector
            self._share_detector()
        return outcome

    def evaluate(self, split: str = "val") -> dict[str, Any]:
        """mAP of the model in use on a split (``map50``, ``map``, ``per_class``, ...),
        recorded on its model version."""
        detector = self.detector
        metrics = workflow.evaluate_model(self.store, detector, split)
        self._warn_if_untrained(detector)
        return metrics

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
        image_id = _whole("image_id", image_id, AN_IMAGE_ID)
        if self._replaced is not None:
            raise workflow.WorkflowError(self._replaced)
        if self.widget is None:
            raise RuntimeError("this session has no viewer (open it with a viewer)")
        self.widget.show_image(image_id)

    def close(self) -> None:
        """Close the project (every action is already saved)."""
        if self._replaced is not None:
            return  # the viewer's dock shows another session's project now
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
        if self._replaced is not None:
            where = "closed: its viewer shows another session"
        return f"Session({str(self._store.project_dir)!r}, {where})"


def _ensure_torch() -> None:
    """Load torch for a session's first model step, on the main thread (the conventions of
    :func:`napari_al.gui.tasks.ensure_torch`), or say in user terms what to do instead."""
    from napari_al.gui.tasks import ensure_torch

    try:
        ensure_torch()
    except RuntimeError:
        if threading.current_thread() is threading.main_thread():
            raise
        raise RuntimeError(
            "napari-al loads torch on the main thread, and this session has not loaded it yet: "
            "call session.load_detector() on the main thread first (in a cell of its own, or "
            "before the script starts threads); after that, train, predict, rank and evaluate "
            "may run on other threads"
        ) from None


#: What an image id argument takes, in words.
AN_IMAGE_ID = "an image id (a whole number)"


def _whole(name: str, value: Any, takes: str) -> int:
    """``value`` as an int, or a :class:`~napari_al.core.workflow.SettingsTypeError` naming
    argument ``name`` and what it ``takes`` (numpy integers fit; a bool or float does not)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise wrong_type(name, takes, value)


def _number(name: str, value: Any, what: str) -> float:
    """``value`` as a float, or the error naming argument ``name`` and ``what`` it takes."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise wrong_type(name, what, value)


def _image_ids(image_ids: Iterable[int] | int | None) -> list[int] | None:
    """``predict``'s image ids as a list (one id welcome), each checked; None: the default."""
    if image_ids is None:
        return None
    if isinstance(image_ids, numbers.Integral) and not isinstance(image_ids, bool):
        return [int(image_ids)]
    if isinstance(image_ids, str | bytes) or not isinstance(image_ids, Iterable):
        raise wrong_type("image_ids", "a list of image ids, or one image id", image_ids)
    return [_whole("image_ids", i, "image ids (whole numbers)") for i in image_ids]


def open_project(path: str | Path, viewer: napari.viewer.Viewer | bool | None = None) -> Session:
    """Open ``path`` (a project, or a folder of images to start one).

    ``viewer=None``: a new napari viewer with the widget docked; a viewer: dock it there;
    ``viewer=False``: no viewer (headless: ``Session.predict/rank/train/export`` still work).
    A viewer shows one project: when its Active learning dock is open already, ``path``
    opens in that dock, and the session returned for it before is closed (a
    :class:`~napari_al.gui.session_viewer.ViewerReusedWarning` says so).
    """
    if viewer is False:
        return Session.open(path)
    import napari

    from napari_al.gui import session_viewer
    from napari_al.gui.widget import ActiveLearningWidget

    widget = None
    if viewer is None or viewer is True:
        viewer = napari.Viewer(title=f"napari-al: {Path(path).name}")
    else:
        widget = session_viewer.reusable_widget(viewer)
    if widget is None:
        widget = ActiveLearningWidget(viewer)
        viewer.window.add_dock_widget(widget, name=session_viewer.DOCK_NAME, area="right")
        old_dir = None
    else:
        old_dir = None if widget.store is None else Path(widget.store.project_dir).resolve()
    widget.open_project(path)  # a path it cannot open raises here: the dock keeps its project
    assert widget.store is not None
    session_viewer.hand_over(widget, old_dir, path)
    session = Session(widget.store, viewer=viewer, widget=widget)
    session_viewer.register(widget, session)
    return session


__all__ = ["Session", "open_project"]
