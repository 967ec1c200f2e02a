"""Centre clicks -> boxes through the workflow: the one path the widget's click mode, the
notebook ``Session`` and the simulator share (issue 13, item 2).

A person clicks an object's centre (about 1.9 s, Papadopoulos et al. 2017; ``CostModel.click_s``)
with a class; the machine proposes the box (:mod:`napari_al.core.clicks`: the detector's best
candidate of that class containing the click, else a box found in the pixels); the person
answers yes/no on it (the verify keys) or drags it right. Desai et al. 2019 (adaptive
supervision) ask such weak labels first.

- :func:`click_candidates`: the model's low-threshold candidates of one image (Desai et al.:
  ``Detector.predict(candidate=True)``, the engine's threshold 0.01 and 300 boxes, the same
  pass the missed-object suggestions use), with their per-class probabilities.
- :func:`propose_click_box`: the box for a click (no store write). The class probability of a
  candidate is the calibrated P(yes) of its model version where it has a calibration
  (:func:`~napari_al.core.workflow.calibration.stored_calibration`), else the raw one.
- :func:`record_click`: ONE user action: the box stored as ``pseudo`` with source ``click``
  (one transaction, one ``click`` action, charged ``click_s`` by the cost model; the
  annotator's undo deletes it). Until confirmed it trains as a damped noisy label
  (:mod:`napari_al.core.workflow.examples`).
- :func:`click`: all three.

Before a model is trained in the project (no detector, or ``model_version`` 0), the box comes
from the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.clicks import box_from_image, choose_click_box
from napari_al.core.data import HUMAN_STATUSES
from napari_al.core.workflow.calibration import stored_calibration
from napari_al.core.workflow.settings import ClickSettings

if TYPE_CHECKING:
    from napari_al.core.annotator import Annotator, Command
    from napari_al.core.store import ProjectStore

#: The image fallback's first window, in units of the class's median human box side.
WINDOW_PER_BOX = 3.0


@dataclass(frozen=True)
class ClickCandidates:
    """The model's candidate boxes of one image: ``boxes`` ``(N, 4)`` float32 xyxy image
    pixels, ``probs`` ``(N, C)`` float32 probability of each project class (background left
    out), ``model_version`` the store's version of the model (None: not trained here),
    ``labels`` ``(N,)`` int64 the class index each box was predicted for (None: the most
    probable class; region questions use it, :mod:`napari_al.core.workflow.regions`)."""

    boxes: np.ndarray
    probs: np.ndarray
    model_version: int | None = None
    labels: np.ndarray | None = None

    def class_indices(self) -> np.ndarray:
        """``(N,)`` int64: :attr:`labels`, else each box's most probable class."""
        if self.labels is not None:
            return np.asarray(self.labels, np.int64).reshape(-1)
        return np.asarray(self.probs).argmax(axis=1).astype(np.int64).reshape(-1)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class ClickProposal:
    """The box proposed for one click, ready to record.

    ``point``: the click ``(x, y)`` image pixels; ``xyxy``: the box; ``method``: ``model`` or
    ``image``; ``score``: the model box's raw class probability (stored as the box's score,
    None from the image); ``probability``: the probability it was chosen by (the calibrated
    P(yes) where available); ``model_version``: the model it came from.
    """

    image_id: int
    point: tuple[float, float]
    class_id: int
    xyxy: tuple[float, float, float, float]
    method: str
    score: float | None = None
    probability: float | None = None
    model_version: int | None = None


def has_model(detector: Any) -> bool:
    """Whether ``detector`` is a model trained in the project (``model_version`` > 0): only
    then are its boxes worth proposing for a click."""
    return detector is not None and int(getattr(detector, "model_version", 0) or 0) > 0


def click_candidates(detector: Any, pixels: np.ndarray) -> ClickCandidates:
    """The model's low-threshold candidates on one image (``pixels``: as read, any dtype; made
    the detector's uint8 RGB by :func:`napari_al.core.images.to_rgb_uint8`). Runs the model:
    call it off a GUI's main thread."""
    from napari_al.core.images import to_rgb_uint8

    pred = detector.predict([to_rgb_uint8(pixels)], candidate=True)[0]
    probs = np.asarray(pred.probs, np.float32)
    return ClickCandidates(
        boxes=np.asarray(pred.boxes, np.float32).reshape(-1, 4),
        probs=probs[:, 1:].reshape(len(pred), -1),
        model_version=int(detector.model_version or 0) or None,
        labels=np.asarray(pred.labels, np.int64).reshape(-1),
    )


def _scored_probs(store: ProjectStore, candidates: ClickCandidates, calibrated: bool) -> np.ndarray:
    """``candidates.probs`` through the calibration of their model version, class by class."""
    probs = np.asarray(candidates.probs, np.float64)
    cal = stored_calibration(store, candidates.model_version) if calibrated else None
    if cal is None or cal.is_identity or not candidates.model_version:
        return probs
    out = probs.copy()
    for k, c in enumerate(store.classes()[: probs.shape[1]]):
        out[:, k] = cal.map_for(c.name)(probs[:, k])
    return out


def fallback_window(store: ProjectStore, class_id: int, settings: ClickSettings) -> int | None:
    """The image fallback's first window side, pixels: ``settings.window``, else
    :data:`WINDOW_PER_BOX` x the median longer side of the class's human boxes, else None
    (half the image's shorter side)."""
    if settings.window:
        return int(settings.window)
    sides = [
        max(b.x2 - b.x1, b.y2 - b.y1)
        for b in store.boxes(statuses=HUMAN_STATUSES)
        if b.class_id == class_id
    ]
    return round(WINDOW_PER_BOX * float(np.median(sides))) if sides else None


def propose_click_box(
    store: ProjectStore,
    image_id: int,
    point: Sequence[float],
    class_id: int,
    *,
    candidates: ClickCandidates | None = None,
    pixels: np.ndarray | None = None,
    settings: ClickSettings | None = None,
) -> ClickProposal | None:
    """The box for a click of class ``class_id`` at ``point`` (x, y image pixels) on image
    ``image_id``: the best of ``candidates`` (None: no model yet), else one found in the image
    (``pixels``: the image as read; None: read from its file only when needed). None when
    neither finds a box. Writes nothing. Raises StoreError for an unknown image or class and
    ValueError for a click outside the image."""
    from napari_al.core.store import StoreError

    s = settings or ClickSettings()
    row = store.image(image_id)
    x, y = (float(v) for v in point)
    if not (0 <= x < row.width and 0 <= y < row.height):
        raise ValueError(
            f"the click ({x:.1f}, {y:.1f}) is outside the {row.width}x{row.height} image"
        )
    ids = [c.id for c in store.classes()]
    if class_id not in ids:
        raise StoreError(f"class {class_id} does not exist")
    k = ids.index(class_id)
    if candidates is not None and len(candidates):
        probs = _scored_probs(store, candidates, s.calibrated)
        found = choose_click_box(
            (x, y), k, candidates.boxes, probs, sigma=s.sigma, min_probability=s.min_probability
        )
        if found is not None and found.index is not None:
            return ClickProposal(
                int(image_id),
                (x, y),
                int(class_id),
                found.xyxy,
                "model",
                score=float(candidates.probs[found.index, k]),
                probability=found.probability,
                model_version=candidates.model_version,
            )
    if pixels is None:
        from napari_al.core.images import read_image

        pixels = read_image(store.abs_path(row))
    xyxy = box_from_image(
        pixels,
        (x, y),
        window=fallback_window(store, class_id, s),
        min_size=s.min_box,
        max_fraction=s.max_fraction,
    )
    if xyxy is None:
        return None
    return ClickProposal(int(image_id), (x, y), int(class_id), xyxy, "image")


def record_click(annotator: Annotator, proposal: ClickProposal) -> Command:
    """Store the proposed box as one user action (:meth:`Annotator.click`): status
    ``pseudo``, source ``click``, one transaction, one logged ``click``; returns the command
    (its ``box_id`` is the new box; the annotator's undo deletes it)."""
    return annotator.click(
        proposal.image_id,
        proposal.point,
        proposal.xyxy,
        proposal.class_id,
        method=proposal.method,
        score=proposal.score,
        model_version=proposal.model_version if proposal.method == "model" else None,
    )


def click(
    annotator: Annotator,
    image_id: int,
    point: Sequence[float],
    class_id: int,
    detector: Any = None,
    *,
    candidates: ClickCandidates | None = None,
    pixels: np.ndarray | None = None,
    settings: ClickSettings | None = None,
) -> Command | None:
    """A centre click, whole: the model's candidates (``detector`` trained in the project and no
    ``candidates`` given: it runs here, blocking), the proposed box, recorded as one action.
    Returns the command, or None when no box was found (nothing is stored)."""
    store = annotator.store
    if candidates is None and has_model(detector):
        if pixels is None:
            from napari_al.core.images import read_image

            pixels = read_image(store.abs_path(store.image(image_id)))
        candidates = click_candidates(detector, pixels)
    proposal = propose_click_box(
        store, image_id, point, class_id, candidates=candidates, pixels=pixels, settings=settings
    )
    return None if proposal is None else record_click(annotator, proposal)
