"""Rich verification answers: what a person may say about one shown box, and the refined box
the machine proposes next (torch-free, Qt-free).

Benenson's "Human-in-the-loop annotations" slides (``../shared/seeds``, "Collecting bounding
boxes without drawing any box") let the annotator verify boxes instead of drawing them, with
the answers "yes/no or yes/part/container/mixed/missed", after Papadopoulos et al., "We don't
need no bounding-boxes: training object class detectors using only human verification", CVPR
2016. Issue 13 item 3 takes six answers, each one key (:data:`ANSWERS`):

- ``yes``: the box is right (a full training target; the store's ``accept``);
- ``part``: the box covers only part of the object;
- ``container``: the box contains the object and more;
- ``several``: the box holds several objects (the slides' "mixed");
- ``wrong_class``: the right box with the wrong class (``set_class``, a full target);
- ``no``: no object there (the slides' "missed"; ``reject``: background).

``part``, ``container`` and ``several`` (:data:`RICH_ANSWERS`) say that an object is there but
the box is not its box: the box is not ground truth and not background. It is kept out of
training as a positive and as background (an ignore region, :mod:`napari_al.core.workflow.examples`)
and a follow-up question is asked: for ``part`` and ``container`` a refined box from the nearby
proposals (:func:`refine_box`), then yes/no on it; for ``several`` the person clicks the
objects (centre clicks, :mod:`napari_al.core.clicks`).

**The refined box** (:func:`refine_box`), among the model's candidate boxes of the image with
their class probabilities (the judged box's class; the workflow passes the calibrated P(yes)
where the model version has a calibration):

- ``part``: candidates that hold at least :data:`CONTAIN_FRACTION` of the judged box's area and
  are at least :data:`MIN_AREA_RATIO` times larger;
- ``container``: candidates with at least :data:`CONTAIN_FRACTION` of their own area inside the
  judged box and at least :data:`MIN_AREA_RATIO` times smaller;

the one with the highest class probability (at least ``min_probability``) wins, ties to the
first. Two nested boxes have IoU = the ratio of their areas, so a candidate nested with the
judged box and 1.25 times larger or smaller has IoU <= 0.8 with it: a different box, not a copy
of the one the person just said is wrong.

Boxes are ``(N, 4)`` xyxy image pixels, pixel edges on integers (:mod:`napari_al.core.boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_al.core.boxes import as_xyxy, box_area, inside_fraction
from napari_al.core.data import RICH_ANSWERS as DATA_RICH_ANSWERS

#: The answers to "is this box right?", in the order the keys list them.
ANSWERS = ("yes", "part", "container", "several", "wrong_class", "no")
#: What each answer means, in the person's words.
ANSWER_HELP = {
    "yes": "the box is right",
    "part": "the box covers only part of the object",
    "container": "the box contains the object and more",
    "several": "the box holds several objects",
    "wrong_class": "right box, wrong class",
    "no": "no object there",
}
#: The answers new with issue 13 item 3 (:data:`napari_al.core.data.RICH_ANSWERS`): an object
#: is there, the box is not its box. Each is an action kind of its own in the store's log, and
#: the judged box's source after it (status ``rejected``).
RICH_ANSWERS = DATA_RICH_ANSWERS
#: The answers followed by a refined box to verify.
REFINE_ANSWERS = ("part", "container")
#: The store action each of the older answers is.
ANSWER_ACTIONS = {"yes": "accept", "wrong_class": "set_class", "no": "reject"}

#: A candidate nested with the judged box holds (part) or lies (container) at least this
#: fraction of the smaller box's area inside the larger.
CONTAIN_FRACTION = 0.8
#: A refined box is at least this many times larger (part) or smaller (container) in area than
#: the judged box (nested boxes: IoU <= 1 / 1.25 = 0.8 with it).
MIN_AREA_RATIO = 1.25
#: Lowest class probability of a candidate that may be proposed.
MIN_PROBABILITY = 0.05


def check_answer(answer: str) -> str:
    """``answer`` if it is one of :data:`ANSWERS`; ValueError naming them otherwise."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}: use one of {', '.join(ANSWERS)}")
    return answer


def nested_candidates(
    judged: Sequence[float] | np.ndarray,
    answer: str,
    boxes: np.ndarray | Sequence[Sequence[float]],
    *,
    contain: float = CONTAIN_FRACTION,
    min_area_ratio: float = MIN_AREA_RATIO,
) -> np.ndarray:
    """``(N,)`` bool: which of ``boxes`` (``(N, 4)`` xyxy) could be the object for the
    ``answer`` ``part`` (holds most of ``judged`` and is larger) or ``container`` (lies mostly
    inside ``judged`` and is smaller); module docstring. ValueError for another answer."""
    if answer not in REFINE_ANSWERS:
        raise ValueError(f"only {' and '.join(REFINE_ANSWERS)} have a refined box, not {answer!r}")
    j = as_xyxy(judged)
    if j.shape[0] != 1:
        raise ValueError(f"judged must be one xyxy box, got shape {j.shape}")
    b = as_xyxy(boxes)
    if not len(b):
        return np.zeros(0, bool)
    area_j = float(box_area(j)[0])
    area_b = box_area(b)
    if answer == "part":
        held = inside_fraction(j, b)[0] >= contain
        return held & (area_b >= min_area_ratio * area_j) & (area_j > 0)
    inside = inside_fraction(b, j)[:, 0] >= contain
    return inside & (area_b * min_area_ratio <= area_j) & (area_b > 0)


def refine_box(
    judged: Sequence[float] | np.ndarray,
    answer: str,
    boxes: np.ndarray | Sequence[Sequence[float]],
    probs: np.ndarray | Sequence[Sequence[float]],
    class_index: int,
    *,
    contain: float = CONTAIN_FRACTION,
    min_area_ratio: float = MIN_AREA_RATIO,
    min_probability: float = MIN_PROBABILITY,
) -> int | None:
    """The index of the refined box for a ``part`` or ``container`` answer about ``judged``
    (one xyxy box), or None when no candidate fits.

    ``boxes``: ``(N, 4)`` xyxy image pixels; ``probs``: ``(N, C)`` per-class probabilities
    (foreground classes in the project's order); ``class_index``: the judged box's class. The
    nested candidates (:func:`nested_candidates`) whose class probability is at least
    ``min_probability`` and above 0 compete on that probability; ties go to the first.
    ValueError on mismatched shapes, a class index out of range or another answer.
    """
    b = as_xyxy(boxes)
    p = np.asarray(probs, dtype=np.float64)
    if len(b) == 0:
        nested_candidates(judged, answer, b)  # the answer and the judged box are still checked
        return None
    if p.ndim != 2 or p.shape[0] != b.shape[0]:
        raise ValueError(f"probs must be (N, C) for {b.shape[0]} boxes, got {p.shape}")
    if not 0 <= int(class_index) < p.shape[1]:
        raise ValueError(f"class index {class_index} is not one of the {p.shape[1]} classes")
    pc = p[:, int(class_index)]
    ok = nested_candidates(judged, answer, b, contain=contain, min_area_ratio=min_area_ratio)
    ok &= (pc >= min_probability) & (pc > 0)
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, pc, -1.0)))
