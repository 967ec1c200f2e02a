"""The annotation cost model of the simulated oracle, and counting answers in an action log.

Published human times, each a configurable default (see ``docs/simulation.md``):

- drawing one box: 7.0 s with extreme clicking (Papadopoulos et al., "Extreme clicking for
  efficient object annotation", ICCV 2017; 25.5 s median for the classic two-corner box on
  ImageNet, Su et al. 2012);
- verifying one box yes/no: 1.6 s (Papadopoulos et al., "We don't need no bounding-boxes",
  CVPR 2016);
- changing a box's class: 1.5 s (a label pick in a list; assumed, of the order of the 1.6 s
  yes/no question);
- clicking an object's centre: 1.9 s (1.87 s, Papadopoulos et al., "Training object class
  detectors with click supervision", CVPR 2017), charged for the action kind ``click``: one
  centre click that became a proposed box (:mod:`napari_al.core.clicks`); the yes/no on that
  box is a verification of its own.
- a rich verification answer (``part``, ``container``, ``several``; Benenson's slides,
  :mod:`napari_al.core.answers`): ``verify_s``, the same 1.6 s as a yes/no. No published time
  exists for choosing among six answers; Hick's law (Hick 1952, Hyman 1953: the time to choose
  grows with log2 of the number of choices) says it takes longer than two, by an amount not
  measured for this task, so ``verify_s`` is a lower bound. The follow-up (yes/no on the
  refined box, or the clicks) is charged as its own actions.
- a region question "any more <class> here?" (:mod:`napari_al.core.regions`, action kind
  ``region``): a yes/no answer about a region instead of a box, charged as one verification,
  ``verify_s`` (Papadopoulos et al. 2016's yes/no time; Benenson's annotation dialogs ask
  about regions this way).
- the dialog planner's questions (:mod:`napari_al.core.dialog`; the simulator's ``dialog``
  strategy) are priced from these: a verify question ``verify_s``; a region question
  ``verify_s`` plus its follow-up; a draw question its labels; a missed object labelled by a
  click costs ``click_s + verify_s`` (the click, then the yes/no on its box; Papadopoulos et
  al. 2017), by a drawn box ``draw_s`` (extreme clicking, Papadopoulos et al. 2017).
- ``image_s``: per image reviewed to completion (open, look, mark complete). Not in the published
  per-box figures, so 0 by default.

The simulator charges these by advancing the store's clock before each logged answer, so the
store's own :meth:`~napari_al.core.store.ProjectStore.annotation_seconds` is the cost, exactly as
a person's time would be measured. :func:`count_answers` recovers the answer counts from the
action kinds of the same log, so that the two can be checked against each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from napari_al.core.data import RICH_ANSWERS

#: Action kinds the simulated oracle writes, and what each one is.
#: ``draw``: a box drawn from nothing; ``accept``/``reject``: a yes/no verification;
#: ``set_class``: a verification answered "right box, wrong class" plus a class change;
#: ``correct``: a verification answered "badly placed" plus a redraw;
#: ``complete``: an image marked fully labelled; ``review_state``: an image marked partial;
#: ``click``: a centre click that became a proposed box (:mod:`napari_al.core.clicks`);
#: ``part``/``container``/``several``: a rich verification answer (:mod:`napari_al.core.answers`);
#: ``click_none``: a centre click that found no box (the simulator logs it, so that its answer
#: counts add up to its seconds; the viewer stores nothing for it, its seconds fall into the next
#: action's ``dt``).
#: ``region``: the answer to a region question (:mod:`napari_al.core.regions`).
ORACLE_KINDS = (
    "draw",
    "accept",
    "reject",
    "set_class",
    "correct",
    "complete",
    "review_state",
    "click",
    *RICH_ANSWERS,
    "click_none",
    "region",
)


@dataclass(frozen=True)
class CostModel:
    """Seconds per elementary annotation answer (Papadopoulos et al. 2016, 2017)."""

    draw_s: float = 7.0
    verify_s: float = 1.6
    class_change_s: float = 1.5
    click_s: float = 1.9
    image_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:
                raise ValueError(f"cost {name} must be >= 0 seconds, got {value}")

    @property
    def verify_threshold(self) -> float:
        """The score above which showing a model box for a yes/no answer pays off.

        Verifying costs ``verify_s`` and saves ``draw_s`` when the box is right, so it pays
        when ``P(right) x (draw_s - verify_s) > (1 - P(right)) x verify_s``, i.e. when
        ``P(right) > verify_s / draw_s`` (0.23 with the defaults), for calibrated scores.
        """
        return self.verify_s / self.draw_s if self.draw_s > 0 else 0.0

    # the cost of each store action the oracle makes
    def of_kind(self, kind: str) -> float:
        """Seconds charged for one oracle action of this kind."""
        table = {
            "draw": self.draw_s,
            "accept": self.verify_s,
            "reject": self.verify_s,
            "set_class": self.verify_s + self.class_change_s,
            "correct": self.verify_s + self.draw_s,
            "complete": self.image_s,
            "review_state": 0.0,
            "click": self.click_s,
            **dict.fromkeys(RICH_ANSWERS, self.verify_s),
            "click_none": self.click_s,
            "region": self.verify_s,
        }
        if kind not in table:
            raise ValueError(f"no cost for action kind {kind!r}")
        return table[kind]

    def seconds(self, counts: Counts) -> float:
        """Total seconds of a set of answers, from their counts."""
        return (
            counts.boxes_drawn * self.draw_s
            + counts.verifications * self.verify_s
            + counts.class_changes * self.class_change_s
            + counts.images_completed * self.image_s
            + counts.clicks * self.click_s
            + counts.region_questions * self.verify_s
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Counts:
    """How many elementary answers were given (cumulative).

    ``boxes_drawn`` counts draws and redraws; ``verifications`` every yes/no question asked
    (accepts, rejects, class changes and redraws all start with one, and so is a rich
    answer: part, container or several); ``images`` the distinct
    images the oracle answered anything about; ``images_completed`` those marked complete;
    ``clicks`` centre clicks, those that became proposed boxes (their yes/no answers are
    verifications) and those that found none (``click_none``); ``region_questions`` answers
    to "any more <class> here?".
    """

    boxes_drawn: int = 0
    verifications: int = 0
    class_changes: int = 0
    images: int = 0
    images_completed: int = 0
    clicks: int = 0
    region_questions: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_answers(actions: Iterable[Any]) -> Counts:
    """Answer counts from action rows (anything with ``kind`` and ``image_id``).

    Only :data:`ORACLE_KINDS` count; markers and machine actions are ignored.
    """
    c = Counts()
    images: set[int] = set()
    for a in actions:
        kind = a.kind
        if kind not in ORACLE_KINDS:
            continue
        if a.image_id is not None:
            images.add(int(a.image_id))
        if kind == "draw":
            c.boxes_drawn += 1
        elif kind in ("accept", "reject", *RICH_ANSWERS):
            c.verifications += 1
        elif kind == "set_class":
            c.verifications += 1
            c.class_changes += 1
        elif kind == "correct":
            c.verifications += 1
            c.boxes_drawn += 1
        elif kind == "complete":
            c.images_completed += 1
        elif kind in ("click", "click_none"):
            c.clicks += 1
        elif kind == "region":
            c.region_questions += 1
    c.images = len(images)
    return c
